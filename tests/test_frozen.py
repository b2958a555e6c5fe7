"""The frozen layout itself: bin/pycni + bin/pycni-lib/ and one symlink per plugin.

What a runtime relies on when it execs bin/<name>: the link name selects the
plugin, the runtime directory is found through the link, nothing is unpacked to
$TMPDIR, bin/ can be copied elsewhere as a whole, and a child process sees none
of PyInstaller's environment.
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import BIN, ROOT, needs_root

pytestmark = pytest.mark.frozen

import cni
from cni import invoke
from cni.skel import Plugin
from plugins import registry


def _load_entries():
    spec = importlib.util.spec_from_file_location("pycni_packaging_entries", ROOT / "packaging" / "entries.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENTRIES = _load_entries()
SHIPPED = ENTRIES.entries()


def cni_plugin_names() -> list[str]:
    """Shipped entries that speak the CNI protocol (cnitool, for one, does not)."""
    return [name for name in sorted(SHIPPED) if isinstance(getattr(registry.module(name), "main", None), Plugin)]


@pytest.fixture(scope="module")
def frozen_bin() -> Path:
    if not (BIN / "pycni").is_file():
        if os.environ.get("PYCNI_REQUIRE_FROZEN"):
            pytest.fail("bin/pycni is not built, but PYCNI_REQUIRE_FROZEN is set")
        pytest.skip("bin/ is not built (run ./build.sh)")
    return BIN


def run(path: Path | str, env: dict[str, str] | None = None, stdin: bytes = b"", args: tuple[str, ...] = (),
        **kw) -> subprocess.CompletedProcess:
    environ = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    environ.update(env or {})
    return subprocess.run([str(path), *args], input=stdin, env=environ, capture_output=True, timeout=60, **kw)


def in_process(name: str, env: dict[str, str], stdin: bytes) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = registry.load(name).run(env, io.BytesIO(stdin), out, err)
    return status, out.getvalue(), err.getvalue()


# ---- layout ---------------------------------------------------------------------


def test_shared_runtime_is_onedir(frozen_bin):
    exe = frozen_bin / "pycni"
    assert os.access(exe, os.X_OK) and not exe.is_symlink()
    assert (frozen_bin / "pycni-lib").is_dir()
    assert (frozen_bin / "pycni-lib" / "cni").is_dir() and (frozen_bin / "pycni-lib" / "plugins").is_dir()
    # One Python: linked into bin/pycni (from a static libpython), or pycni-lib's libpython.
    libs = list((frozen_bin / "pycni-lib").glob("libpython3*.so*"))
    needed = subprocess.run(["ldd", str(exe)], capture_output=True, text=True, check=True).stdout
    assert len(libs) <= 1 and ("libpython" in needed) == bool(libs), (libs, needed)


def test_every_shipped_entry_is_a_relative_link_to_the_shared_executable(frozen_bin):
    assert SHIPPED, "no registry entry has a module: nothing would be shipped"
    for name in SHIPPED:
        link = frozen_bin / name
        assert link.is_symlink(), f"bin/{name} is missing or not a symlink"
        assert os.readlink(link) == "pycni", f"bin/{name} -> {os.readlink(link)}: must be the relative name"
        assert link.resolve() == (frozen_bin / "pycni").resolve()


def test_no_link_without_a_module(frozen_bin):
    for name in ENTRIES.missing():
        assert not os.path.lexists(frozen_bin / name), f"bin/{name} exists but its module does not"


def test_registry_names_in_bin_are_all_links(frozen_bin):
    for name in registry.PLUGINS:
        path = frozen_bin / name
        if os.path.lexists(path):
            assert path.is_symlink() and path.resolve() == (frozen_bin / "pycni").resolve()


def test_pyroute2_is_not_bundled_unless_the_dhcp_daemon_imports_it(frozen_bin):
    bundled = (frozen_bin / "pycni-lib" / "pyroute2").exists()
    assert bundled == ENTRIES.dhcp_needs_pyroute2()


# ---- protocol basics through the links ----------------------------------------------


@pytest.mark.parametrize("version", ["0.1.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_version_answer_matches_the_source_plugin(frozen_bin, version):
    names = cni_plugin_names()
    if not names:
        pytest.skip("no CNI plugin module has landed yet")
    stdin = json.dumps({"cniVersion": version}).encode()
    for name in names:
        env = {"CNI_COMMAND": "VERSION"}
        p = run(frozen_bin / name, env, stdin)
        assert p.returncode == 0, (name, p.stdout, p.stderr)
        answer = json.loads(p.stdout)
        status, expected, _ = in_process(name, env, stdin)
        assert status == 0
        assert answer == json.loads(expected), name
        assert answer["cniVersion"] == "1.1.0" and "1.1.0" in answer["supportedVersions"]


def test_no_command_prints_the_about_line_and_exits_0(frozen_bin):
    names = cni_plugin_names()
    if not names:
        pytest.skip("no CNI plugin module has landed yet")
    for name in names:
        p = run(frozen_bin / name)
        assert p.returncode == 0, (name, p.stderr)
        assert p.stdout == b""
        first = p.stderr.decode().splitlines()[0]
        assert first == f"CNI {name} plugin {cni.__version__}", first


def test_unknown_command_is_a_cni_error_not_a_traceback(frozen_bin):
    names = cni_plugin_names()
    if not names:
        pytest.skip("no CNI plugin module has landed yet")
    name = names[0]
    p = run(frozen_bin / name, {"CNI_COMMAND": "FROB"}, b"{}")
    assert p.returncode == 1
    err = json.loads(p.stdout)
    assert err["code"] == 4 and "Traceback" not in p.stderr.decode()


def test_shared_executable_by_its_own_name_takes_the_plugin_as_argument(frozen_bin):
    p = run(frozen_bin / "pycni")
    assert p.returncode == 2 and b"usage: pycni PLUGIN" in p.stderr
    names = cni_plugin_names()
    if names:
        p = run(frozen_bin / "pycni", {"CNI_COMMAND": "VERSION"}, b"{}", args=(names[0],))
        assert p.returncode == 0 and json.loads(p.stdout)["supportedVersions"]


# ---- where it runs -------------------------------------------------------------------


@needs_root
def test_runs_with_a_noexec_tmp(frozen_bin, tmp_path):
    """Nothing is unpacked and executed from /tmp or $TMPDIR (onefile would be)."""
    names = cni_plugin_names()
    if not names:
        pytest.skip("no CNI plugin module has landed yet")
    noexec = tmp_path / "noexec"
    noexec.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "noexec,size=8m", "tmpfs", str(noexec)], check=True)
    try:
        probe = noexec / "probe"
        probe.write_text("#!/bin/sh\nexit 0\n")
        probe.chmod(0o755)
        with pytest.raises(PermissionError):  # the mount really is noexec
            subprocess.run([str(probe)])
        env = {"CNI_COMMAND": "VERSION", "TMPDIR": str(noexec)}
        for name in names:
            p = run(frozen_bin / name, env, b"{}")
            assert p.returncode == 0 and json.loads(p.stdout)["supportedVersions"], (name, p.stderr)
        # /tmp itself noexec, in a private mount namespace; bin/ is copied outside /tmp first,
        # since the checkout may live there.
        outside = Path(tempfile.mkdtemp(prefix="pycni-test-frozen-", dir="/var/tmp"))
        try:
            subprocess.run(["cp", "-a", str(frozen_bin), str(outside / "bin")], check=True)
            script = (f"mount -t tmpfs -o noexec,size=8m tmpfs /tmp && "
                      f"CNI_COMMAND=VERSION {outside / 'bin' / names[0]} </dev/null")
            p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                               capture_output=True, timeout=60)
            assert p.returncode == 0 and json.loads(p.stdout)["supportedVersions"], p.stderr
        finally:
            shutil.rmtree(outside, ignore_errors=True)
        assert list(noexec.iterdir()) == [probe], "the frozen executable wrote to TMPDIR"
    finally:
        subprocess.run(["umount", str(noexec)], check=False)


def test_a_copy_of_bin_runs_from_its_new_place(frozen_bin, tmp_path):
    names = cni_plugin_names()
    if not names:
        pytest.skip("no CNI plugin module has landed yet")
    copy = tmp_path / "opt-cni-bin"
    subprocess.run(["cp", "-a", str(frozen_bin), str(copy)], check=True)
    for name in names:
        assert os.readlink(copy / name) == "pycni"
        p = run(copy / name, {"CNI_COMMAND": "VERSION"}, b"{}")
        assert p.returncode == 0 and json.loads(p.stdout)["supportedVersions"], (name, p.stderr)
    # The copy uses its own runtime: with it gone, the copy must fail, not fall back to bin/.
    shutil.rmtree(copy / "pycni-lib")
    p = run(copy / names[0], {"CNI_COMMAND": "VERSION"}, b"{}")
    assert p.returncode != 0


# ---- what children inherit --------------------------------------------------------------


def test_clean_environ_strips_the_frozen_runtime(monkeypatch):
    env = {"PATH": "/usr/bin", "_PYI_ARCHIVE_FILE": "/opt/cni/bin/pycni", "_PYI_PARENT_PROCESS_LEVEL": "1",
           "_PYI_APPLICATION_HOME_DIR": "/opt/cni/bin/pycni-lib", "_PYI_LINUX_PROCESS_NAME": "bridge",
           "_MEIPASS2": "/tmp/_MEI1", "LD_LIBRARY_PATH": "/opt/cni/bin/pycni-lib:/site/lib",
           "LD_LIBRARY_PATH_ORIG": "/site/lib", "CNI_COMMAND": "ADD"}
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", "/opt/cni/bin/pycni-lib", raising=False)  # PyInstaller's bootloader
    clean = invoke.clean_environ(env)
    assert not [k for k in clean if k.startswith("_PYI") or k.startswith("_MEI")]
    assert clean["LD_LIBRARY_PATH"] == "/site/lib" and "LD_LIBRARY_PATH_ORIG" not in clean
    assert clean["PATH"] == "/usr/bin" and clean["CNI_COMMAND"] == "ADD"
    del env["LD_LIBRARY_PATH_ORIG"]
    assert "LD_LIBRARY_PATH" not in invoke.clean_environ(env)


def test_clean_environ_keeps_library_path_when_not_frozen(monkeypatch):
    monkeypatch.delattr(sys, "frozen", raising=False)
    monkeypatch.delattr(sys, "_MEIPASS", raising=False)
    clean = invoke.clean_environ({"LD_LIBRARY_PATH": "/site/lib", "_PYI_ARCHIVE_FILE": "x"})
    assert clean == {"LD_LIBRARY_PATH": "/site/lib"}


def test_clean_environ_keeps_the_callers_library_path_under_our_launcher(monkeypatch):
    """Our launcher sets no library path, so the caller's own reaches the child unchanged."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.delattr(sys, "_MEIPASS", raising=False)
    clean = invoke.clean_environ({"LD_LIBRARY_PATH": "/site/lib", "PATH": "/usr/bin"})
    assert clean == {"LD_LIBRARY_PATH": "/site/lib", "PATH": "/usr/bin"}


ENV_DUMP_PLUGIN = """#!/bin/sh
env > "{dump}/$CNI_COMMAND.env"
if [ "$CNI_COMMAND" = VERSION ]; then
  echo '{{"cniVersion":"1.1.0","supportedVersions":["0.3.1","0.4.0","1.0.0","1.1.0"]}}'
fi
exit 0
"""


def test_a_child_of_the_frozen_runtime_sees_no_pyinstaller_environment(frozen_bin, tmp_path):
    """cnitool (frozen) execs a plugin that records its environment."""
    if "cnitool" not in SHIPPED:
        pytest.skip("cnitool has not landed in the registry")
    dump, plugin_dir, conf_dir = tmp_path / "dump", tmp_path / "plugins", tmp_path / "net.d"
    for d in (dump, plugin_dir, conf_dir):
        d.mkdir()
    script = plugin_dir / "envdump"
    script.write_text(ENV_DUMP_PLUGIN.format(dump=dump))
    script.chmod(0o755)
    (conf_dir / "10-envdump.conf").write_text(json.dumps({"cniVersion": "1.1.0", "name": "envdump",
                                                           "type": "envdump"}))
    env = {"NETCONFPATH": str(conf_dir), "CNI_PATH": str(plugin_dir), "CNI_CACHE_DIR": str(tmp_path / "cache")}
    for library_path in ("/site/lib", None):  # the caller's own library path, then none at all
        for old in dump.glob("*.env"):
            old.unlink()
        caller = dict(env, LD_LIBRARY_PATH=library_path) if library_path else env
        p = run(frozen_bin / "cnitool", caller, args=("status", "envdump"))
        assert p.returncode == 0, (p.stdout, p.stderr)
        records = list(dump.glob("*.env"))
        assert records, "the delegate never ran"
        for record in records:
            child = dict(line.split("=", 1) for line in record.read_text().splitlines() if "=" in line)
            assert not [k for k in child if k.startswith(("_PYI", "_MEI"))], (record.name, child)
            assert child.get("LD_LIBRARY_PATH") == library_path, "the frozen runtime's library path leaked"
            assert "LD_LIBRARY_PATH_ORIG" not in child
            assert child["CNI_COMMAND"] in ("STATUS", "VERSION")


# ---- the launcher (packaging/launcher.c) -------------------------------------------------


def elf_objects(runtime: Path) -> list[Path]:
    found = []
    for path in sorted(runtime.rglob("*.so*")):
        if path.is_file() and not path.is_symlink() and path.read_bytes()[:4] == b"\x7fELF":
            found.append(path)
    return found


def test_bundled_libraries_resolve_inside_the_runtime(frozen_bin):
    """What PyInstaller's LD_LIBRARY_PATH did, RUNPATHs do: every shared object in pycni-lib
    that needs a library the bundle carries gets the bundle's copy, with a clean environment."""
    runtime = frozen_bin / "pycni-lib"
    bundled = {p.name for p in runtime.iterdir() if ".so" in p.name}
    checked = 0
    for obj in [frozen_bin / "pycni", *elf_objects(runtime)]:
        p = subprocess.run(["ldd", str(obj)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
        assert p.returncode == 0, (obj, p.stderr)
        for line in p.stdout.splitlines():
            name, _, where = line.strip().partition(" => ")
            if name in bundled:
                resolved = where.split(" (")[0]
                assert Path(resolved).resolve() == (runtime / name).resolve(), (obj.name, name, resolved)
                checked += 1
    assert checked >= 1  # at least zlib's libz (and a shared libpython, when the launcher uses one)


def test_the_launcher_starts_python_with_one_exec(frozen_bin, tmp_path):
    """One execve per plugin call: PyInstaller's bootloader made two (it execs itself to set
    LD_LIBRARY_PATH), which our launcher replaces with RUNPATHs set at build time."""
    trace = tmp_path / "trace"
    p = subprocess.run(["strace", "-f", "-e", "trace=execve", "-o", str(trace), str(frozen_bin / "bridge")],
                       env={"CNI_COMMAND": "VERSION", "LANG": "C"}, capture_output=True, timeout=60)
    assert p.returncode == 0 and json.loads(p.stdout)["supportedVersions"], p.stderr
    execs = [line for line in trace.read_text().splitlines() if "execve(" in line and "= 0" in line]
    assert len(execs) == 1, execs
