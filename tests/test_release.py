"""The release: dist/pycni-linux-<arch>-<version>.tgz, scripts/install.sh and deploy/.

The archive is built once per session by `./build.sh release` (a no-op when dist/ is up
to date; CI builds it before the suite). It is frozen in a Debian 11 root so that it runs
on glibc 2.31: the ELF files are checked for newer symbol versions, and the plugins are
run inside that root too, from a plugin directory mounted where a container would see it.
install.sh is run for real into scratch prefixes: every mode, upgrades between two
builds while a loop keeps exec'ing a plugin, and podman running containers on the result.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path

import pytest

import cni
from conftest import GO_BIN, ROOT, is_root, needs_root
from plugins import registry

pytestmark = [needs_root, pytest.mark.frozen]

DIST = ROOT / "dist"
CHROOT = ROOT / "build" / "bullseye" / "root"
GLIBC_FLOOR = (2, 31)


def _arch() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


NAME = f"pycni-linux-{_arch()}-{cni.__version__}"
CNI_PLUGINS = sorted(n for n in registry.PLUGINS if n not in registry.TOOLS)


def plain_env(**extra: str) -> dict[str, str]:
    return dict({"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, **extra)


def run(argv, env=None, stdin: bytes = b"", timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], input=stdin, env=env or plain_env(), capture_output=True,
                          timeout=timeout)


class Release:
    def __init__(self, tgz: Path, tree: Path) -> None:
        self.tgz, self.tree = tgz, tree
        self.bin = tree / "bin"
        self.install_sh = tree / "scripts" / "install.sh"
        self.runtime = os.readlink(self.bin / "pycni").rsplit("/", 1)[0]

    def install(self, *args: str, check: bool = True, source: Path | None = None,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        argv = [self.install_sh, *args] + (["--from", source] if source else [])
        p = run(argv, env=env)
        if check:
            assert p.returncode == 0, (args, p.stdout.decode(), p.stderr.decode())
        return p


@pytest.fixture(scope="session")
def release(tmp_path_factory) -> Release:
    if not is_root():
        pytest.skip("the release build needs root (debootstrap, chroot)")
    p = subprocess.run([str(ROOT / "build.sh"), "release"], capture_output=True, text=True, timeout=3000)
    assert p.returncode == 0, f"./build.sh release failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    tgz = DIST / f"{NAME}.tgz"
    assert tgz.is_file(), f"./build.sh release did not produce {tgz}"
    where = tmp_path_factory.mktemp("release")
    with tarfile.open(tgz) as archive:
        archive.extractall(where)
    return Release(tgz, where / NAME)


def second_build(release: Release, where: Path, tag: str) -> Path:
    """The release's bin/ under another runtime name: what an upgrade to another build looks like."""
    other = where / f"bin-{tag}"
    shutil.copytree(release.bin, other, symlinks=True)
    runtime = f"pycni-{cni.__version__}-{tag}"
    os.rename(other / release.runtime, other / runtime)
    os.unlink(other / "pycni")
    os.symlink(f"{runtime}/pycni", other / "pycni")
    return other


def host_local_conf(data_dir: Path, version: str = "1.0.0", subnet: str = "10.123.0.0/24") -> bytes:
    return json.dumps({"cniVersion": version, "name": "rel", "type": "host-local",
                       "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": subnet}]]}}
                      ).encode()


def host_local_add_del(plugin_dir: Path, data_dir: Path, container: str = "rel1") -> None:
    env = plain_env(CNI_CONTAINERID=container, CNI_NETNS="/proc/self/ns/net", CNI_IFNAME="eth0",
                    CNI_PATH=str(plugin_dir))
    conf = host_local_conf(data_dir)
    p = run([plugin_dir / "host-local"], dict(env, CNI_COMMAND="ADD"), conf)
    assert p.returncode == 0, (p.stdout, p.stderr)
    address = json.loads(p.stdout)["ips"][0]["address"]
    assert address.startswith("10.123.0.")
    assert (data_dir / "rel" / address.split("/")[0]).read_text().startswith(container)
    p = run([plugin_dir / "host-local"], dict(env, CNI_COMMAND="DEL"), conf)
    assert p.returncode == 0 and p.stdout == b"", (p.stdout, p.stderr)
    assert not (data_dir / "rel" / address.split("/")[0]).exists()


def version_of_every_plugin(plugin_dir: Path) -> None:
    for name in CNI_PLUGINS:
        p = run([plugin_dir / name], plain_env(CNI_COMMAND="VERSION"), b'{"cniVersion":"0.4.0"}')
        assert p.returncode == 0, (name, p.stdout, p.stderr)
        assert "1.1.0" in json.loads(p.stdout)["supportedVersions"], name


def tree(prefix: Path) -> dict[str, str]:
    """What a prefix holds: path -> link target or file size (for "nothing changed" checks)."""
    out = {}
    if not prefix.exists():
        return out
    for path in sorted(prefix.rglob("*")):
        key = str(path.relative_to(prefix))
        out[key] = f"-> {os.readlink(path)}" if path.is_symlink() else ("dir" if path.is_dir() else
                                                                          str(path.stat().st_size))
    return out


# ---- the archive -------------------------------------------------------------------------------


def test_checksum_files_verify(release):
    for tool, suffix in (("sha256sum", "sha256"), ("sha512sum", "sha512")):
        sums = DIST / f"{NAME}.tgz.{suffix}"
        assert sums.read_text().split() == [sums.read_text().split()[0], f"{NAME}.tgz"]
        p = subprocess.run([tool, "-c", sums.name], cwd=DIST, capture_output=True, text=True)
        assert p.returncode == 0 and "OK" in p.stdout, p.stdout + p.stderr


def test_archive_holds_bin_as_it_must_land_and_the_documents(release):
    with tarfile.open(release.tgz) as archive:
        names = archive.getnames()
        owners = {(m.uid, m.gid) for m in archive.getmembers()}
    assert all(n == NAME or n.startswith(NAME + "/") for n in names), "everything under one top directory"
    assert owners == {(0, 0)}
    top = release.tree
    for doc in ("README.md", "LICENSE", "deploy/systemd/cni-dhcp.service", "deploy/systemd/cni-dhcp.socket"):
        assert (top / doc).read_bytes() == (ROOT / doc).read_bytes(), doc
    assert "Apache License" in (top / "LICENSE").read_text() and "Version 2.0" in (top / "LICENSE").read_text()
    assert (top / "scripts" / "install.sh").read_bytes() == (ROOT / "scripts" / "install.sh").read_bytes()
    assert os.access(top / "scripts" / "install.sh", os.X_OK)
    # bin/: the runtime directory, the one link to it, one link per registry entry.
    assert re.fullmatch(rf"pycni-{re.escape(cni.__version__)}-[0-9a-f]{{12}}", release.runtime)
    assert os.readlink(release.bin / "pycni") == f"{release.runtime}/pycni"
    assert sorted(p.name for p in release.bin.iterdir()) == sorted([*registry.PLUGINS, "pycni", release.runtime])
    for name in registry.PLUGINS:
        assert os.readlink(release.bin / name) == "pycni", name
    runtime = release.bin / release.runtime
    assert os.access(runtime / "pycni", os.X_OK) and (runtime / "pycni-lib" / "cni").is_dir()
    # Debian 11's static libpython3.9 is linked into the launcher: no shared one beside it.
    assert not list((runtime / "pycni-lib").glob("libpython3*.so*"))
    assert "libpython" not in subprocess.run(["ldd", str(runtime / "pycni")], capture_output=True, text=True).stdout


def test_runtime_directory_name_is_a_digest_of_its_contents(release):
    runtime = release.bin / release.runtime
    listing = subprocess.run("find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum", shell=True,
                             cwd=runtime, capture_output=True, text=True, check=True).stdout
    assert release.runtime.endswith("-" + listing[:12])


def test_build_file_names_version_commit_and_the_build_root(release):
    build = dict(line.split(" ", 1) for line in (release.tree / "BUILD").read_text().splitlines())
    assert build["version"] == cni.__version__
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", build["commit"]), build
    assert build["runtime"] == release.runtime
    assert "debian-bullseye" in build["built-on"] and "glibc-2.31" in build["built-on"]
    history = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-t", build["commit"].split("-")[0]],
                             capture_output=True, text=True)
    assert history.stdout.strip() == "commit", "the baked commit is not in this repository"


def elf_files(directory: Path) -> list[Path]:
    found = []
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def glibc_symbol_versions(directory: Path) -> dict[str, tuple[int, ...]]:
    """ELF file (relative to `directory`) -> the newest GLIBC_x.y symbol version it asks for (objdump -T)."""
    if shutil.which("objdump") is None:
        pytest.fail("objdump (binutils) is needed for this check")
    elves = elf_files(directory)
    assert len(elves) >= 5 and any(p.name == "pycni" for p in elves)
    newest = {}
    for elf in elves:
        dump = subprocess.run(["objdump", "-T", str(elf)], capture_output=True, text=True)
        assert dump.returncode == 0, f"objdump -T {elf}: {dump.stderr}"
        versions = [tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_(\d+\.\d+(?:\.\d+)?)", dump.stdout)]
        if versions:
            newest[str(elf.relative_to(directory))] = max(versions)
    return newest


def readme_glibc_symbol(arch: str) -> tuple[int, ...]:
    """The newest glibc symbol version README's supported-nodes table states for an archive."""
    row = re.search(rf"^\| `pycni-linux-{arch}-<v>\.tgz` \|.*?\| GLIBC_(\d+\.\d+) \|", (ROOT / "README.md").read_text(),
                    re.M)
    assert row, f"README's supported-nodes table has no GLIBC_x.y for {arch}"
    return tuple(map(int, row.group(1).split(".")))


def test_no_elf_file_needs_a_glibc_newer_than_2_31_and_readme_states_the_newest(release):
    newest = glibc_symbol_versions(release.bin)
    too_new = {elf: v for elf, v in newest.items() if v[:2] > GLIBC_FLOOR}
    assert not too_new, f"symbol versions above glibc {GLIBC_FLOOR}: {too_new}"
    assert max(newest.values()) == readme_glibc_symbol(_arch()), newest


def test_setns_helper_is_built_and_ctypes_left_out(release):
    """The release root has a compiler: setns comes from cni/_setns.c, so ctypes is not bundled."""
    libs = list(release.bin.glob("pycni-*/pycni-lib"))
    assert libs, "no runtime directory in the bundle"
    lib = libs[0]
    assert list((lib / "cni").glob("_setns*.so")), "cni/_setns was not built in the release root"
    assert not (lib / "ctypes").exists() and not list(lib.rglob("_ctypes*"))


def test_about_text_gives_version_and_commit(release):
    commit = dict(line.split(" ", 1) for line in (release.tree / "BUILD").read_text().splitlines())["commit"]
    for name in CNI_PLUGINS:
        p = run([release.bin / name])
        assert p.returncode == 0 and p.stdout == b"", (name, p.stderr)
        lines = p.stderr.decode().splitlines()
        assert lines[0] == f"CNI {name} plugin {cni.__version__}" and lines[1] == f"commit {commit}", lines


# ---- install.sh ----------------------------------------------------------------------------------


def test_install_into_an_empty_prefix_and_run_from_there(release, tmp_path):
    prefix = tmp_path / "opt" / "cni" / "bin"
    out = release.install("--prefix", str(prefix)).stdout.decode()
    assert f"runtime {release.runtime} installed" in out
    assert sorted(p.name for p in prefix.iterdir()) == sorted([*registry.PLUGINS, "pycni", release.runtime])
    assert os.readlink(prefix / "pycni") == f"{release.runtime}/pycni"
    assert not [p for p in prefix.iterdir() if ".pycni-new." in p.name], "a temporary name was left behind"
    version_of_every_plugin(prefix)
    host_local_add_del(prefix, tmp_path / "ipam")
    # Again: nothing to do, nothing changes.
    before = tree(prefix)
    assert "host-local: up to date" in release.install("--prefix", str(prefix)).stdout.decode()
    assert tree(prefix) == before


def test_install_refuses_an_archive_of_another_architecture(release, tmp_path):
    """An amd64 archive on an arm64 node would install and then fail every exec: refused up front."""
    prefix = tmp_path / "cni-bin"
    for machine, node in (("aarch64", "arm64"), ("armv7l", "arm")):
        p = release.install("--prefix", str(prefix), check=False, env=plain_env(PYCNI_NODE_ARCH=machine))
        assert p.returncode == 1 and p.stdout == b"", (p.stdout, p.stderr)
        assert p.stderr.decode().strip() == (
            f"install.sh: this release is built for linux-{_arch()}, but this node is {machine} (linux-{node}): "
            f"nothing was installed; use the pycni-linux-{node} archive of this version")
        assert not prefix.exists()
    # The node's own architecture (however uname spells it) installs; uninstall never checks.
    release.install("--prefix", str(prefix), env=plain_env(PYCNI_NODE_ARCH=os.uname().machine))
    release.install("--prefix", str(prefix), "--uninstall", env=plain_env(PYCNI_NODE_ARCH="aarch64"))
    assert list(prefix.iterdir()) == []


def test_temporary_names_of_a_killed_install_are_cleaned_up(release, tmp_path):
    prefix = tmp_path / "cni-bin"
    release.install("--prefix", str(prefix))
    dead = subprocess.Popen(["true"])
    dead.wait()  # a PID that no longer runs
    stale_dir = prefix / f".{release.runtime}.pycni-new.{dead.pid}"
    stale_dir.mkdir()
    (stale_dir / "half-a-file").write_bytes(b"\0" * 100)
    os.symlink("pycni", prefix / f".bridge.pycni-new.{dead.pid}")
    live = prefix / f".ptp.pycni-new.{os.getpid()}"  # an install still running: not ours to remove
    os.symlink("pycni", live)
    release.install("--prefix", str(prefix))
    assert [p.name for p in prefix.iterdir() if ".pycni-new." in p.name] == [live.name]


def test_dry_run_writes_nothing(release, tmp_path):
    prefix = tmp_path / "cni-bin"
    p = release.install("--prefix", str(prefix), "--dry-run")
    assert not prefix.exists()
    assert b"[dry run]" in p.stdout and b"bridge: installed" in p.stdout
    release.install("--prefix", str(prefix))
    before = tree(prefix)
    upgrade = second_build(release, tmp_path, "0123456789ab")
    release.install("--prefix", str(prefix), "--dry-run", source=upgrade)
    release.install("--prefix", str(prefix), "--dry-run", "--uninstall")
    release.install("--prefix", str(prefix), "--dry-run", "--uninstall", "--only", "ptp")
    units = tmp_path / "units"
    release.install("--prefix", str(prefix), "--dry-run", "--dhcp-units", env=plain_env(SYSTEMD_DIR=str(units)))
    assert tree(prefix) == before and not units.exists()


def test_a_k3s_directory_keeps_k3s_links_and_gets_them_back(release, tmp_path):
    """The archive's install.sh in k3s's layout, named by --prefix; every case of which names
    are k3s's is in test_install.py."""
    from test_install import K3S_LINKS, k3s_data, snapshot

    k3s = k3s_data(tmp_path / "rancher", "k3s")
    theirs = snapshot(k3s)
    out = release.install("--prefix", str(k3s)).stdout.decode()
    for name in set(K3S_LINKS) & set(registry.PLUGINS):
        assert f"{name}: skipped, k3s ships its own {name} here (--all replaces it)" in out
    assert {n: v for n, v in snapshot(k3s).items() if n in theirs} == theirs, "k3s's links were replaced"
    for name in CNI_PLUGINS:
        if name not in K3S_LINKS:
            assert f"{name}: installed\n" in out, name
            assert run([k3s / name], plain_env(CNI_COMMAND="VERSION"), b"{}").returncode == 0, name
    out = release.install("--prefix", str(k3s), "--all").stdout.decode()
    assert "host-local: installed (in place of k3s's own host-local)" in out
    host_local_add_del(k3s, tmp_path / "ipam")
    out = release.install("--prefix", str(k3s), "--uninstall").stdout.decode()
    assert "removed host-local, k3s's own host-local is back" in out
    assert snapshot(k3s) == theirs


def test_doctor_from_the_archive_on_a_k3s_node_it_was_installed_on(release, tmp_path):
    """The release's cnitool (Python 3.9: no tomllib) examines a node tree that install.sh filled."""
    from node_tree import FAKE_K3S_CNI, K3S, K3S_LINKS, conflist, link, write

    node = tmp_path / "node"
    k3s = node / K3S / "data" / "cni"
    write(k3s / "cni", FAKE_K3S_CNI, 0o755)
    for name in K3S_LINKS:
        link(k3s / name, "cni")
    release.install("--prefix", str(k3s))
    write(node / K3S / "agent/etc/containerd/config.toml",
          f'version = 2\n[plugins."io.containerd.grpc.v1.cri".cni]\n  bin_dir = "/{K3S}/data/cni"\n'
          f'  conf_dir = "/{K3S}/agent/etc/cni/net.d"\n')
    conflist(node, f"/{K3S}/agent/etc/cni/net.d", "10-lan.conflist", {"cniVersion": "1.0.0", "name": "lan",
             "plugins": [{"type": "macvlan", "master": "eth1", "ipam": {"type": "host-local", "subnet": "10.9.0.0/24"}},
                         {"type": "portmap", "capabilities": {"portMappings": True}}]})
    p = run([k3s / "cnitool", "doctor", "--root", node, "--json"])
    assert p.returncode == 0 and p.stderr == b"", (p.stdout, p.stderr)
    report = json.loads(p.stdout)
    (setup,) = report["setups"]
    assert (setup["runtime"], setup["source"]) == ("k3s", f"/{K3S}/agent/etc/containerd/config.toml")
    plugins = {p["type"]: p for p in setup["networks"][0]["plugins"]}
    commit = (release.tree / "BUILD").read_text().split("commit ", 1)[1].split()[0]
    assert (plugins["macvlan"]["owner"], plugins["macvlan"]["version"], plugins["macvlan"]["build"]) == (
        "pycni", cni.__version__, commit)
    assert plugins["macvlan"]["resolved"] == f"/{K3S}/data/cni/{release.runtime}/pycni"
    assert plugins["host-local"]["owner"] == "k3s" and plugins["portmap"]["owner"] == "k3s"


def test_outside_k3s_our_names_replace_whatever_is_there(release, tmp_path):
    prefix = tmp_path / "cni-bin"
    prefix.mkdir()
    (prefix / "bridge").write_text("#!/bin/sh\nexit 3\n")
    (prefix / "bridge").chmod(0o755)
    (prefix / "flannel").write_text("#!/bin/sh\nexit 0\n")
    release.install("--prefix", str(prefix))
    assert os.readlink(prefix / "bridge") == "pycni"
    assert (prefix / "flannel").read_text() == "#!/bin/sh\nexit 0\n", "a plugin we do not ship was touched"


def test_only_installs_the_names_given_and_the_runtime(release, tmp_path):
    prefix = tmp_path / "cni-bin"
    release.install("--prefix", str(prefix), "--only", "host-local,macvlan")
    assert sorted(p.name for p in prefix.iterdir()) == sorted(["host-local", "macvlan", "pycni", release.runtime])
    host_local_add_del(prefix, tmp_path / "ipam")
    p = release.install("--prefix", str(prefix), "--only", "host-local,frobnicate", check=False)
    assert p.returncode == 2 and b"frobnicate" in p.stderr
    assert sorted(p.name for p in prefix.iterdir()) == sorted(["host-local", "macvlan", "pycni", release.runtime])


def test_uninstall_removes_ours_and_nothing_else(release, tmp_path):
    prefix = tmp_path / "cni-bin"
    prefix.mkdir()
    (prefix / "flannel").write_text("#!/bin/sh\n")
    os.symlink("flannel", prefix / "flannel-link")
    release.install("--prefix", str(prefix))
    out = release.install("--prefix", str(prefix), "--uninstall", "--only", "ptp,bridge").stdout.decode()
    assert "removed ptp" in out and "runtime kept" in out
    assert not os.path.lexists(prefix / "ptp") and not os.path.lexists(prefix / "bridge")
    version_of_every_plugin_but = [n for n in CNI_PLUGINS if n not in ("ptp", "bridge")]
    for name in version_of_every_plugin_but:
        assert run([prefix / name], plain_env(CNI_COMMAND="VERSION"), b"{}").returncode == 0, name
    release.install("--prefix", str(prefix), "--uninstall")
    assert sorted(p.name for p in prefix.iterdir()) == ["flannel", "flannel-link"]


def test_upgrade_keeps_the_previous_runtime_and_removes_older_ones(release, tmp_path):
    prefix = tmp_path / "cni-bin"
    b, c = second_build(release, tmp_path, "bbbbbbbbbbbb"), second_build(release, tmp_path, "cccccccccccc")
    rb, rc = os.readlink(b / "pycni").split("/")[0], os.readlink(c / "pycni").split("/")[0]
    release.install("--prefix", str(prefix))
    out = release.install("--prefix", str(prefix), source=b).stdout.decode()
    assert f"pycni -> {rb}/pycni (was {release.runtime})" in out
    runtimes = lambda: sorted(p.name for p in prefix.iterdir() if p.is_dir() and not p.is_symlink())
    assert runtimes() == sorted([release.runtime, rb])
    release.install("--prefix", str(prefix), source=c)
    assert runtimes() == sorted([rb, rc]) and os.readlink(prefix / "pycni") == f"{rc}/pycni"
    version_of_every_plugin(prefix)


def test_an_unversioned_bin_copied_in_earlier_is_replaced(release, tmp_path):
    """`cp -a bin/. /opt/cni/bin/` of a development build: pycni a file beside pycni-lib/."""
    prefix = tmp_path / "cni-bin"
    prefix.mkdir()
    shutil.copy(release.bin / release.runtime / "pycni", prefix / "pycni")
    (prefix / "pycni-lib" / "cni").mkdir(parents=True)
    os.symlink("pycni", prefix / "bridge")
    release.install("--prefix", str(prefix))
    assert not (prefix / "pycni-lib").exists() and os.readlink(prefix / "pycni") == f"{release.runtime}/pycni"
    version_of_every_plugin(prefix)


def test_replacing_while_a_runtime_execs_the_plugin_never_fails(release, tmp_path):
    """Upgrades back and forth between two builds while host-local ADD/DEL runs in a loop."""
    prefix = tmp_path / "cni-bin"
    other = second_build(release, tmp_path, "aaaaaaaaaaaa")
    release.install("--prefix", str(prefix))
    failures: list = []
    calls = [0]
    stop = threading.Event()

    def exec_loop(index: int) -> None:
        data = tmp_path / f"ipam-{index}"
        while not stop.is_set():
            try:
                host_local_add_del(prefix, data, container=f"loop{index}")
                p = run([prefix / "bridge"])  # the about text: imports the plugin from the runtime
                assert p.returncode == 0 and p.stderr.startswith(b"CNI bridge plugin"), p.stderr
                calls[0] += 1
            except (AssertionError, OSError, ValueError) as exc:  # a missing file, a bad answer
                failures.append(f"{type(exc).__name__}: {str(exc)[:500]}")

    threads = [threading.Thread(target=exec_loop, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    try:
        for round_no in range(16):
            release.install("--prefix", str(prefix), source=other if round_no % 2 == 0 else None)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not failures, failures[:3]
    assert calls[0] >= 4, "the loop hardly ran: the test proves nothing"


def test_dhcp_units_are_installed_for_the_prefix_and_removed(release, tmp_path):
    prefix, units = tmp_path / "cni-bin", tmp_path / "systemd"
    env = plain_env(SYSTEMD_DIR=str(units))
    out = release.install("--prefix", str(prefix), "--dhcp-units", env=env).stdout.decode()
    service = (units / "cni-dhcp.service").read_text()
    assert f"ExecStart={prefix}/dhcp daemon" in service and "/opt/cni/bin" not in service
    assert (units / "cni-dhcp.socket").read_text() == (ROOT / "deploy/systemd/cni-dhcp.socket").read_text()
    assert "enable cni-dhcp.socket yourself" in out, "systemctl must not run for a staging unit dir"
    release.install("--prefix", str(prefix), "--uninstall", "--dhcp-units", env=env)
    assert list(units.iterdir()) == [] and list(prefix.iterdir()) == []


# ---- where the installed plugins run ---------------------------------------------------------------


def test_runs_with_a_noexec_or_read_only_tmp(release, tmp_path):
    # The prefix must live outside /tmp, which is mounted over below; so may the checkout
    # itself (CI clones wherever it likes), hence /var/tmp rather than build/.
    outside = Path(tempfile.mkdtemp(prefix="pycni-test-release-", dir="/var/tmp"))
    prefix = outside / "cni-bin"
    release.install("--prefix", str(prefix))
    noexec = tmp_path / "noexec"
    noexec.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "noexec,size=8m", "tmpfs", str(noexec)], check=True)
    try:
        for name in CNI_PLUGINS:
            p = run([prefix / name], plain_env(CNI_COMMAND="VERSION", TMPDIR=str(noexec)), b"{}")
            assert p.returncode == 0, (name, p.stderr)
        # /tmp neither executable nor writable, in a private mount namespace.
        script = (f"mount -t tmpfs -o ro,noexec,size=8m tmpfs /tmp && {prefix}/host-local 2>&1 >/dev/null | head -n1 "
                  f"&& echo '{{}}' | CNI_COMMAND=VERSION {prefix}/bridge")
        p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], capture_output=True,
                           timeout=60)
        assert p.returncode == 0 and b"CNI host-local plugin" in p.stdout and b"supportedVersions" in p.stdout
        assert list(noexec.iterdir()) == [], "the frozen executable wrote to TMPDIR"
    finally:
        subprocess.run(["umount", str(noexec)], check=False)
        shutil.rmtree(outside, ignore_errors=True)


ENV_DUMP = """#!/bin/sh
env > "{dump}/$CNI_COMMAND.env"
[ "$CNI_COMMAND" = VERSION ] && echo '{{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}}'
exit 0
"""


def test_children_of_the_installed_runtime_see_no_pyinstaller_environment(release, tmp_path):
    prefix, dump, conf = tmp_path / "cni-bin", tmp_path / "dump", tmp_path / "net.d"
    release.install("--prefix", str(prefix))
    dump.mkdir()
    conf.mkdir()
    (prefix / "envdump").write_text(ENV_DUMP.format(dump=dump))
    (prefix / "envdump").chmod(0o755)
    (conf / "10-envdump.conf").write_text(json.dumps({"cniVersion": "1.1.0", "name": "envdump", "type": "envdump"}))
    env = plain_env(NETCONFPATH=str(conf), CNI_PATH=str(prefix), CNI_CACHE_DIR=str(tmp_path / "cache"))
    p = run([prefix / "cnitool", "status", "envdump"], env)
    assert p.returncode == 0, (p.stdout, p.stderr)
    records = list(dump.glob("*.env"))
    assert records, "the delegate never ran"
    for record in records:
        child = dict(line.split("=", 1) for line in record.read_text().splitlines() if "=" in line)
        assert not [k for k in child if k.startswith(("_PYI", "_MEI", "LD_LIBRARY_PATH"))], child


def in_bullseye(script: str, binds: dict[Path, str]) -> subprocess.CompletedProcess:
    """Run a shell script in the Debian 11 root, with host dirs bind-mounted (a private mount ns)."""
    mounts = []
    for host, inside in binds.items():
        mounts.append(f"mkdir -p {CHROOT}{inside} && mount --bind {host} {CHROOT}{inside}")
    outer = " && ".join(mounts + [f"exec chroot {CHROOT} /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "
                                  f"/bin/sh -ec \"$0\""])
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", outer, script],
                          capture_output=True, text=True, timeout=300)


def test_installed_plugins_run_in_a_debian_11_container_that_mounts_the_host_dir(release, tmp_path):
    """The DaemonSet case: the node's plugin dir seen at another path from a glibc 2.31 root."""
    if not (CHROOT / "usr" / "bin" / "python3.9").exists():
        pytest.fail(f"{CHROOT} has no python3.9: the release build should have made it")
    prefix, ipam = tmp_path / "node-cni-bin", tmp_path / "ipam"
    release.install("--prefix", str(prefix))
    ipam.mkdir()
    script = f"""
        test "$(ldd --version | head -n1 | sed 's/.* //')" = 2.31
        for p in {' '.join(CNI_PLUGINS)}; do
            echo '{{}}' | CNI_COMMAND=VERSION /host/cni/$p | grep -q '"1.1.0"'
        done
        /host/cni/ptp 2>&1 | head -n1
        export CNI_CONTAINERID=deb11 CNI_NETNS=/proc/self/ns/net CNI_IFNAME=eth0 CNI_PATH=/host/cni
        echo '{host_local_conf(Path("/ipam")).decode()}' | CNI_COMMAND=ADD /host/cni/host-local
        test -f /ipam/rel/10.123.0.2
        echo '{host_local_conf(Path("/ipam")).decode()}' | CNI_COMMAND=DEL /host/cni/host-local
        test ! -e /ipam/rel/10.123.0.2
        echo done
    """
    try:
        p = in_bullseye(script, {prefix: "/host/cni", ipam: "/ipam"})
    finally:
        for mountpoint in ("host/cni", "host", "ipam"):
            try:
                (CHROOT / mountpoint).rmdir()
            except OSError:
                pass
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"CNI ptp plugin {cni.__version__}" in p.stdout and '"10.123.0.2/24"' in p.stdout
    assert p.stdout.rstrip().endswith("done")


def test_unit_tests_pass_under_debian_11_python_3_9(release):
    p = subprocess.run([str(ROOT / "packaging" / "release.sh"), "py39", "tests/test_types.py", "tests/test_skel.py",
                        "tests/test_args.py", "tests/test_conf.py", "tests/test_host_local_config.py",
                        "tests/test_jsontext.py", "tests/test_nodeconfig.py"],
                       capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert re.search(r"\d+ passed", p.stdout) and "failed" not in p.stdout


# ---- a real runtime on the installed directory --------------------------------------------------------


def test_podman_runs_a_container_on_the_installed_plugins(release, tmp_path, host_ns):
    import test_podman

    missing = test_podman.missing_tools()
    if missing:
        pytest.skip(f"needs podman, runc, busybox-static: missing {missing}")
    # /opt/cni/bin as a node has it: the Go plugins first, then ours installed over them.
    prefix = tmp_path / "opt-cni-bin"
    prefix.mkdir()
    for go in ("loopback", "portmap", "bridge", "host-local"):
        if (GO_BIN / go).exists():
            shutil.copy(GO_BIN / go, prefix / go)
    release.install("--prefix", str(prefix))
    assert os.readlink(prefix / "bridge") == "pycni" and os.readlink(prefix / "host-local") == "pycni"
    chain = [Path("/run/runc"), Path("/var/lib/cni"), Path("/var/lib/cni/results")]
    existed = [p.exists() for p in chain]
    podman = test_podman.Podman(tmp_path, host_ns, prefix)
    try:
        podman.network()
        nat_before = test_podman.nat_rules(host_ns)
        podman.run("run", "-d", "--name", "c1", "--network", "pycnitest", "--ip", test_podman.FIXED_IP, "--rootfs",
                   str(podman.rootfs), "sleep", "1000")
        addr = podman.run("exec", "c1", "ip", "-o", "-4", "addr", "show", "eth0").stdout
        assert f"inet {test_podman.FIXED_IP}/24" in addr
        podman.run("exec", "c1", "ping", "-c", "1", "-W", "5", test_podman.GATEWAY)
        podman.run("rm", "-f", "-t", "0", "c1")
        assert [l for l in host_ns.links() if l.startswith("veth")] == []
        assert test_podman.nat_rules(host_ns) == nat_before
    finally:
        podman.cleanup()
        for path, was in reversed(list(zip(chain, existed))):
            if not was and path.exists():
                try:
                    path.rmdir()
                except OSError:
                    pass


# ---- deploy/ ------------------------------------------------------------------------------------------


def test_daemonset_manifest_is_valid_and_says_what_the_node_needs():
    yaml = pytest.importorskip("yaml")
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "k3s" / "pycni-daemonset.yaml").read_text()) if d]
    assert len(docs) == 1
    ds = docs[0]
    assert ds["apiVersion"] == "apps/v1" and ds["kind"] == "DaemonSet"
    spec = ds["spec"]["template"]["spec"]
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    assert spec["hostNetwork"] is True
    volumes = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    (init,) = spec["initContainers"]
    assert init["command"] == ["/opt/pycni/scripts/install.sh"] and "--k3s" in init["args"]
    assert {m["mountPath"] for m in init["volumeMounts"]} == {"/var/lib/rancher/k3s/data/cni"}
    (daemon,) = spec["containers"]
    assert daemon["securityContext"]["privileged"] is True
    mounts = {m["mountPath"]: m for m in daemon["volumeMounts"]}
    assert volumes[mounts["/run/netns"]["name"]] == "/run/netns"
    assert mounts["/run/netns"]["mountPropagation"] == "HostToContainer"
    assert volumes[mounts["/run/cni"]["name"]] == "/run/cni"
    script = " ".join(daemon["command"] + daemon["args"])
    assert "rm -f /run/cni/dhcp.sock" in script and "/var/lib/rancher/k3s/data/cni/dhcp daemon" in script
    assert script.index("rm -f /run/cni/dhcp.sock") < script.index("dhcp daemon")
    for container in (init, daemon):
        assert container["image"] == f"pycni:{cni.__version__}", "image tag and version disagree"


def test_dockerfile_builds_the_image_from_the_release_archive():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^FROM debian:bullseye-slim$", text, re.M)
    assert re.search(rf"^ARG VERSION={re.escape(cni.__version__)}$", text, re.M)
    assert "ADD dist/pycni-linux-${ARCH}-${VERSION}.tgz /opt/" in text
    # The archive of the platform being built: BuildKit's TARGETARCH is amd64 or arm64, the archives' names.
    assert re.search(r"^ARG TARGETARCH=amd64$", text, re.M) and re.search(r"^ARG ARCH=\$\{TARGETARCH\}$", text, re.M)
    assert "/opt/pycni/scripts/install.sh" in text
