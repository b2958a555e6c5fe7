"""The arm64 release, proven on this amd64 machine under emulation (`pytest -m arm64`).

`./build.sh release --arch arm64` freezes the plugins in a Debian 11 arm64 root whose programs
run under qemu-user (binfmt_misc hands every aarch64 ELF file to qemu-aarch64-static). The
archive it makes is installed here with its own scripts/install.sh, and the installed arm64
executables run the same scenarios, with the same assertions, as the amd64 ones: the test
functions of test_host_local.py, test_bridge.py, test_macvlan.py, test_ptp.py and test_dhcp.py
are called with a plugin set whose executables are the arm64 ones.

What emulation gives and what it does not (measured on this machine):
  - the kernel is the host's: route netlink, veths across netns, setns into a network
    namespace, sysctls and AF_PACKET all work for the emulated process (an exec costs about
    18x the CPU of a native one);
  - the dynamic loader and libc come from the arm64 root (QEMU_LD_PREFIX);
  - qemu-user answers ENOSYS for the NS_GET_NSTYPE ioctl: cni/netns.py then checks for an nsfs
    file instead (tests/test_netns.py covers that path natively);
  - a program the plugin starts (iptables, nft, ip) is the host's amd64 one: the kernel, not
    qemu, runs it. What is tested is the plugin's logic on arm64, not arm64 iptables.
What cannot be tested this way is listed in UNDER_EMULATION_NOT_TESTED below, each with its
reason; those cases appear in the run as skips that say why.

These tests run only when selected with `-m arm64` (CI runs them as their own step after the
arm64 build; conftest.py keeps them out of the default run). Budget: the whole CI step, cold
build included, in 15 minutes.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

import cni
import test_bridge
import test_dhcp
import test_host_local
import test_macvlan
import test_ptp
from conftest import ALL_VERSIONS, ROOT, PluginSet, is_root, needs_root
from plugins import registry
from test_bridge import bed  # noqa: F401  (fixtures the borrowed tests use)
from test_dhcp import lan as dhcp_lan  # noqa: F401
from test_dhcp_env import Daemon, Dnsmasq
from test_macvlan import lan  # noqa: F401
from test_release import (CNI_PLUGINS, GLIBC_FLOOR, elf_files, glibc_symbol_versions, plain_env, readme_glibc_symbol,
                          run)

pytestmark = [needs_root, pytest.mark.arm64, pytest.mark.frozen]

ARCH_ROOT = ROOT / "build" / "bullseye-arm64" / "root"
DIST = ROOT / "dist"
NAME = f"pycni-linux-arm64-{cni.__version__}"
EM_AARCH64 = 0xB7  # ELF e_machine of AArch64

UNDER_EMULATION_NOT_TESTED = {
    "test_faults.py (SIGKILL at every rollback stage)":
        "hundreds of plugin execs: at about 18x the CPU per exec under emulation it alone would exceed this step's "
        "15-minute budget; the rollback code is the same Python bytecode as amd64's, where it runs",
    "test_podman.py / podman on the installed plugins":
        "podman, conmon and runc would run amd64 containers on amd64 tools: it proves nothing "
        "more than bridge ADD/DEL here, at minutes of emulated time",
    "test_release.py's Debian 11 container test (chroot with the node's plugin dir mounted)":
        "the same binaries already run inside the arm64 Debian 11 root in the build's own verify step",
    "netfilter/generic/sock-diag netlink":
        "qemu-user answers 'Protocol not supported' for every netlink family but route: portmap's flush "
        "of UDP conntrack entries (ctnetlink) cannot run emulated; everything else uses route netlink and "
        "reaches iptables/nft through the (host's) programs",
    "setns into a mount namespace":
        "not emulated by qemu-user; no plugin does it (only network namespaces)",
    "ipvlan, 802.1q vlan, dummy links":
        "this kernel has none (as for amd64: tests marked needs_kernel_links run in the QEMU VM)",
    "timings (test_load.py, bench/)":
        "an emulated exec costs about 18x the CPU of a native one (Documentation/performance.md): "
        "the numbers would describe qemu, not an arm64 CPU",
}


def _arch_of(path: Path) -> int:
    with open(path, "rb") as f:
        header = f.read(20)
    return int.from_bytes(header[18:20], "little")


class EmulatedPlugins(PluginSet):
    """The installed arm64 executables; qemu finds their loader and libc in the arm64 root."""

    def run(self, *args, env: dict | None = None, **kw):
        return super().run(*args, env={"QEMU_LD_PREFIX": str(ARCH_ROOT), **(env or {})}, **kw)


def emulated_env(**extra: str) -> dict[str, str]:
    return plain_env(QEMU_LD_PREFIX=str(ARCH_ROOT), **extra)


@pytest.fixture(scope="session")
def arm64_release(tmp_path_factory) -> Path:
    """The unpacked arm64 archive (built by ./build.sh release --arch arm64; a no-op when up to date)."""
    if not is_root():
        pytest.skip("the release build needs root (debootstrap, chroot, binfmt_misc)")
    p = subprocess.run([str(ROOT / "build.sh"), "release", "--arch", "arm64"], capture_output=True, text=True,
                       timeout=3000)
    assert p.returncode == 0, f"./build.sh release --arch arm64 failed:\n{p.stdout[-3000:]}\n{p.stderr[-5000:]}"
    where = tmp_path_factory.mktemp("arm64-release")
    with tarfile.open(DIST / f"{NAME}.tgz") as archive:
        archive.extractall(where)
    return where / NAME


@pytest.fixture(scope="session")
def arm64_prefix(arm64_release, tmp_path_factory) -> Path:
    """The archive installed by its own install.sh, told the node is aarch64."""
    prefix = tmp_path_factory.mktemp("arm64-cni") / "bin"
    p = run([arm64_release / "scripts" / "install.sh", "--prefix", prefix], plain_env(PYCNI_NODE_ARCH="aarch64"))
    assert p.returncode == 0, p.stderr.decode()
    return prefix


@pytest.fixture
def plugins(arm64_prefix) -> PluginSet:
    """Overrides conftest's `plugins` for the borrowed tests: the arm64 executables only."""
    return EmulatedPlugins("arm64", arm64_prefix)


# ---- the archive ------------------------------------------------------------------------------


def test_archive_layout_names_and_sums_match_the_amd64_ones(arm64_release):
    for tool, suffix in (("sha256sum", "sha256"), ("sha512sum", "sha512")):
        sums = DIST / f"{NAME}.tgz.{suffix}"
        assert sums.read_text().split()[1] == f"{NAME}.tgz"
        p = subprocess.run([tool, "-c", sums.name], cwd=DIST, capture_output=True, text=True)
        assert p.returncode == 0 and "OK" in p.stdout, p.stdout + p.stderr
    with tarfile.open(DIST / f"{NAME}.tgz") as archive:
        assert all(n == NAME or n.startswith(NAME + "/") for n in archive.getnames())
        assert {(m.uid, m.gid) for m in archive.getmembers()} == {(0, 0)}
    top, bin_ = arm64_release, arm64_release / "bin"
    for doc in ("README.md", "LICENSE", "scripts/install.sh", "deploy/systemd/cni-dhcp.service"):
        assert (top / doc).read_bytes() == (ROOT / doc).read_bytes(), doc
    runtime = os.readlink(bin_ / "pycni").rsplit("/", 1)[0]
    assert re.fullmatch(rf"pycni-{re.escape(cni.__version__)}-[0-9a-f]{{12}}", runtime)
    assert sorted(p.name for p in bin_.iterdir()) == sorted([*registry.PLUGINS, "pycni", runtime])
    assert all(os.readlink(bin_ / name) == "pycni" for name in registry.PLUGINS)
    build = dict(line.split(" ", 1) for line in (top / "BUILD").read_text().splitlines())
    assert build["runtime"] == runtime and "debian-bullseye" in build["built-on"]
    assert list((bin_ / runtime / "pycni-lib" / "cni").glob("_setns*.so")), "cni/_setns was not built"


def test_every_elf_file_is_aarch64_and_readme_states_its_newest_glibc_symbol(arm64_release):
    newest = glibc_symbol_versions(arm64_release / "bin")
    wrong = [elf for elf in elf_files(arm64_release / "bin") if _arch_of(elf) != EM_AARCH64]
    assert not wrong, f"not aarch64: {wrong}"
    assert max(newest.values()) <= GLIBC_FLOOR, newest
    assert max(newest.values()) == readme_glibc_symbol("arm64"), newest


def test_install_refuses_the_arm64_archive_on_this_amd64_node(arm64_release, tmp_path):
    if os.uname().machine != "x86_64":
        pytest.skip("this machine is not amd64")
    prefix, k3s = tmp_path / "cni-bin", tmp_path / "k3s"
    k3s.mkdir()
    for args in (["--prefix", prefix], ["--prefix", prefix, "--dry-run"], ["--k3s"]):
        p = run([arm64_release / "scripts" / "install.sh", *args], plain_env(PYCNI_K3S_DIR=str(k3s)))
        assert p.returncode == 1 and p.stdout == b"", (args, p.stdout, p.stderr)
        assert p.stderr.decode().strip() == (
            "install.sh: this release is built for linux-arm64, but this node is x86_64 (linux-amd64): "
            "nothing was installed; use the pycni-linux-amd64 archive of this version"), args
    assert not prefix.exists() and list(k3s.iterdir()) == []


def test_every_plugin_answers_version_and_about_text(arm64_release, arm64_prefix):
    commit = dict(line.split(" ", 1) for line in (arm64_release / "BUILD").read_text().splitlines())["commit"]
    for name in CNI_PLUGINS:
        p = run([arm64_prefix / name], emulated_env(CNI_COMMAND="VERSION"), b'{"cniVersion":"0.4.0"}')
        assert p.returncode == 0, (name, p.stdout, p.stderr)
        assert "1.1.0" in json.loads(p.stdout)["supportedVersions"], name
    for name in ("bridge", "host-local", "dhcp"):
        p = run([arm64_prefix / name], emulated_env())
        lines = p.stderr.decode().splitlines()
        assert p.returncode == 0 and lines[:2] == [f"CNI {name} plugin {cni.__version__}", f"commit {commit}"], lines


def test_the_executable_is_emulated_not_native(arm64_prefix):
    """A guard for every test below: without the arm64 root's loader the runtime cannot start."""
    p = run([arm64_prefix / "host-local"], plain_env(CNI_COMMAND="VERSION", QEMU_LD_PREFIX="/nonexistent"), b"{}")
    assert p.returncode != 0 and b"supportedVersions" not in p.stdout


# ---- the plugins, with the assertions of their amd64 tests ---------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_host_local_add_check_del(plugins, data_dir, version):
    test_host_local.test_add_check_del_every_version(plugins, data_dir, version)


def test_host_local_gc(plugins, data_dir):
    test_host_local.test_gc_frees_stale_reservations_only(plugins, data_dir)


@pytest.mark.parametrize("version", ["0.2.0", "0.4.0", "1.1.0"])
def test_bridge_add_check_del(bed, version):  # noqa: F811
    test_bridge.test_add_check_del_dual_stack(bed, version)


def test_bridge_check_notices_what_changed(bed):  # noqa: F811
    test_bridge.test_check_notices_what_changed(bed)


def test_macvlan_add_check_del_every_version(plugins, lan, make_netns, data_dir):  # noqa: F811
    test_macvlan.test_add_check_del_every_version(plugins, lan, make_netns, data_dir)


def test_ptp_add_check_del_every_version(plugins, host_ns, make_netns, data_dir):
    test_ptp.test_add_check_del_every_version(plugins, host_ns, make_netns, data_dir)


@pytest.fixture
def arm64_servers(dhcp_lan, host_ns, tmp_path, arm64_prefix, monkeypatch):  # noqa: F811
    """dnsmasq (the host's) and the arm64 dhcp daemon, stopped by PID."""
    monkeypatch.setenv("QEMU_LD_PREFIX", str(ARCH_ROOT))  # Daemon passes os.environ on
    started = []

    def start(dnsmasq: tuple = (), ping: bool = False):
        srv = Dnsmasq(dhcp_lan.lan, tmp_path, extra=dnsmasq, ping=ping)
        started.append(srv)
        daemon = Daemon(host_ns, tmp_path, executable=str(arm64_prefix / "dhcp"))
        started.append(daemon)
        return srv, daemon

    yield start
    for thing in reversed(started):
        thing.stop()


def test_dhcp_daemon_against_dnsmasq(plugins, dhcp_lan, host_ns, arm64_servers):  # noqa: F811
    test_dhcp.test_add_check_del(plugins, dhcp_lan, host_ns, arm64_servers)


@pytest.mark.parametrize("what", sorted(UNDER_EMULATION_NOT_TESTED))
def test_not_tested_under_emulation(what):
    pytest.skip(f"{what}: {UNDER_EMULATION_NOT_TESTED[what]}")
