"""sysctls under /proc/sys, read and written in the current network namespace.

Callers that need a container's sysctls write them inside `netns.entered(...)`:
/proc/sys/net resolves against the namespace of the thread that opens it.
"""
from __future__ import annotations

import os


def _path(name: str) -> str:
    """'net.ipv4.ip_forward', 'net/ipv6/conf/eth0.100/accept_ra' or an absolute path.

    The dotted form cannot name an interface whose name contains a dot, so a
    name with a slash is taken as a path below /proc/sys as it is.
    """
    if name.startswith("/"):
        return name
    if "/" in name:
        return "/proc/sys/" + name
    return "/proc/sys/" + name.replace(".", "/")


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
