"""sysctls under /proc/sys, read and written in the current network namespace.

Callers that need a container's sysctls write them inside `netns.entered(...)`:
/proc/sys/net resolves against the namespace of the thread that opens it.
"""
from __future__ import annotations

import os


def _path(name: str) -> str:
    return "/proc/sys/" + name.replace(".", "/") if not name.startswith("/") else name


def get(name: str) -> str:
    with open(_path(name)) as f:
        return f.read().strip()


def set(name: str, value: str) -> None:  # noqa: A001 - mirrors the sysctl vocabulary
    fd = os.open(_path(name), os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def set_if_present(name: str, value: str) -> bool:
    """For knobs that may not exist (IPv6 disabled, older kernels): False when absent."""
    try:
        set(name, value)
        return True
    except FileNotFoundError:
        return False
