"""Helpers for the runtime-side tests (cnitool, scripts, podman).

`plugin_dir()` builds a CNI_PATH directory holding bridge, host-local and the
rest: ours (source wrappers or the frozen bin/) where the plugin exists, Go's
from /usr/lib/cni where it does not yet, so these tests follow the suite as it
grows. `cnitool_cmd()` is the matching cnitool.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from conftest import BIN, GO_BIN, ROOT

NEEDED = ("bridge", "host-local", "ptp", "macvlan", "portmap", "loopback", "static", "tuning", "sbr")


def ours_exists(name: str, kind: str) -> bool:
    from plugins import registry

    module = registry.PLUGINS.get(name)
    if module is None:
        return False
    if kind == "frozen":
        return (BIN / name).exists()
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def source_wrapper(directory: Path, name: str) -> None:
    script = directory / name
    script.write_text(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m plugins {name} \"$@\"\n")
    script.chmod(0o755)


def plugin_dir(tmp: Path, kind: str) -> tuple[Path, dict[str, str]]:
    """A CNI_PATH dir for `kind` ("source" or "frozen"); and who serves each plugin ("ours"/"go")."""
    d = tmp / f"cni-bin-{kind}"
    d.mkdir(exist_ok=True)
    served = {}
    for name in NEEDED:
        if ours_exists(name, kind):
            if kind == "frozen":
                os.symlink(BIN / name, d / name)
            else:
                source_wrapper(d, name)
            served[name] = "ours"
        elif (GO_BIN / name).exists():
            os.symlink(GO_BIN / name, d / name)
            served[name] = "go"
    return d, served


def cnitool_cmd(kind: str) -> list[str]:
    if kind == "frozen":
        return [str(BIN / "cnitool")]
    return [sys.executable, "-m", "plugins", "cnitool"]


def cnitool_env(kind: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    if kind == "source":
        env["PYTHONPATH"] = str(ROOT)
    return env


def frozen_cnitool_available() -> bool:
    return (BIN / "cnitool").exists() and shutil.which(str(BIN / "cnitool")) is not None
