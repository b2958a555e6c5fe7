"""scripts/install.sh's decisions, on a stand-in release and plugin directories in tmp.

The release here is the layout of bin/ (a runtime directory, the `pycni` link, one link
per registry name) around a tiny script, so these run in a second without the release
build; test_release.py installs the real archive and runs what it installed.
k3s's plugin directory is laid out as k3s makes it: a multi-call `cni` binary and one link
to it per plugin k3s ships. Which names are k3s's comes from what the directory holds,
whichever flag named the directory.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import cni
from conftest import ROOT
from plugins import registry

INSTALL_SH = ROOT / "scripts" / "install.sh"
# What k3s links to its multi-call binary (its data/<hash>/bin/, copied into data/cni/).
K3S_LINKS = ("bridge", "host-local", "loopback", "portmap", "bandwidth", "firewall", "flannel")
OURS = sorted(registry.PLUGINS)
SHARED = [n for n in OURS if n in K3S_LINKS]  # names both ship: k3s's unless --all
ONLY_OURS = [n for n in OURS if n not in K3S_LINKS]


def install(*args: str, k3s_dir: Path | None = None, release: Path, code: int = 0) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    if k3s_dir is not None:
        env["PYCNI_K3S_DIR"] = str(k3s_dir)
    p = subprocess.run([str(INSTALL_SH), *args, "--from", str(release)], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == code, (args, p.returncode, p.stdout, p.stderr)
    return p


@pytest.fixture
def release(tmp_path) -> Path:
    """A release bin/: the runtime directory, the pycni link into it, a link per plugin."""
    bin_dir = tmp_path / "release" / "bin"
    runtime = bin_dir / f"pycni-{cni.__version__}-0123456789ab"
    (runtime / "pycni-lib").mkdir(parents=True)
    (runtime / "pycni").write_text('#!/bin/sh\necho "pycni as ${0##*/}"\n')
    (runtime / "pycni").chmod(0o755)
    os.symlink(f"{runtime.name}/pycni", bin_dir / "pycni")
    for name in OURS:
        os.symlink("pycni", bin_dir / name)
    return bin_dir


def k3s_data(root: Path, shape: str) -> Path:
    """k3s's stable plugin directory under `root`, returned; `shape` says how it looks:
    flat      the multi-call `cni` file in the directory, its links beside it (-> cni)
    k3s       as k3s makes it: data/<hash>/bin/ holds `cni` and its links; data/cni/ holds
              absolute links to data/<hash>/bin/cni, one for `cni` and one per plugin
    unmounted the same links as seen from a container that mounts only data/cni: dangling
    """
    plugin_dir = root / "data" / "cni"
    plugin_dir.mkdir(parents=True)
    if shape == "flat":
        (plugin_dir / "cni").write_bytes(b"\x7fELF k3s multi-call cni")
        (plugin_dir / "cni").chmod(0o755)
        for name in K3S_LINKS:
            os.symlink("cni", plugin_dir / name)
        return plugin_dir
    bin_dir = root / "data" / "2f4e6a8b" / "bin"
    multicall = bin_dir / "cni"
    if shape == "k3s":
        bin_dir.mkdir(parents=True)
        multicall.write_bytes(b"\x7fELF k3s multi-call cni")
        multicall.chmod(0o755)
        for name in K3S_LINKS:
            os.symlink("cni", bin_dir / name)
        os.symlink(bin_dir.parent, root / "data" / "current")
    for name in ("cni", *K3S_LINKS):
        os.symlink(multicall, plugin_dir / name)
    return plugin_dir


def snapshot(directory: Path) -> dict[str, str]:
    """Each name -> its link target or its bytes: what "left untouched" compares."""
    return {p.name: f"-> {os.readlink(p)}" if p.is_symlink() else "dir" if p.is_dir() else
            p.read_bytes().decode(errors="replace") for p in directory.iterdir()}


def plugin_lines(out: str) -> list[str]:
    """The output lines about single plugins (the runtime's own lines left out)."""
    def about(line: str) -> str:  # "NAME: ..." or "removed NAME..."
        words = line.replace(":", " ").replace(",", " ").split() or [""]
        return words[1] if words[0] == "removed" and len(words) > 1 else words[0]

    return sorted(line for line in out.splitlines() if about(line) in OURS)


@pytest.mark.parametrize("shape", ["flat", "k3s", "unmounted"])
@pytest.mark.parametrize("named_by", ["--prefix", "--k3s"])
def test_k3s_links_are_kept_in_any_directory_unless_all(release, tmp_path, shape, named_by):
    plugin_dir = k3s_data(tmp_path / "rancher", shape)
    theirs = snapshot(plugin_dir)
    where = ["--prefix", str(plugin_dir)] if named_by == "--prefix" else ["--k3s"]
    k3s_env = {"k3s_dir": plugin_dir, "release": release}

    out = install(*where, **k3s_env).stdout
    assert plugin_lines(out) == sorted(
        [f"{n}: skipped, k3s ships its own {n} here (--all replaces it)" for n in SHARED]
        + [f"{n}: installed" for n in ONLY_OURS])
    assert {n: v for n, v in snapshot(plugin_dir).items() if n in theirs} == theirs, "k3s's links were touched"
    assert all(os.readlink(plugin_dir / n) == "pycni" for n in ONLY_OURS)

    out = install(*where, "--all", **k3s_env).stdout
    assert plugin_lines(out) == sorted([f"{n}: installed (in place of k3s's own {n})" for n in SHARED]
                                       + [f"{n}: up to date" for n in ONLY_OURS])
    assert all(os.readlink(plugin_dir / n) == "pycni" for n in OURS)
    assert {n: v for n, v in snapshot(plugin_dir).items() if n in theirs and n not in OURS} == \
        {n: v for n, v in theirs.items() if n not in OURS}, "names we do not ship were touched"

    out = install(*where, "--uninstall", **k3s_env).stdout
    if shape == "k3s":  # k3s's bin/ shows what its links were: they are put back
        assert plugin_lines(out) == sorted([f"removed {n}, k3s's own {n} is back" for n in SHARED]
                                           + [f"removed {n}" for n in ONLY_OURS])
        assert snapshot(plugin_dir) == theirs
    else:
        assert plugin_lines(out) == sorted(f"removed {n}" for n in OURS)
        assert snapshot(plugin_dir) == {n: v for n, v in theirs.items() if n not in OURS}


def test_the_cni_binary_is_recognised_by_any_path_and_nothing_else_is(release, tmp_path):
    plugin_dir = k3s_data(tmp_path / "rancher", "k3s")
    data = plugin_dir.parent
    for name in ("bridge", "host-local"):
        os.unlink(plugin_dir / name)
    os.symlink("../current/bin/bridge", plugin_dir / "bridge")  # a chain ending in cni
    os.link(data / "2f4e6a8b" / "bin" / "cni", plugin_dir / "host-local")  # a hard link
    shutil.copy(data / "2f4e6a8b" / "bin" / "cni", plugin_dir / "ptp")  # a copy
    os.symlink("/usr/lib/cni/macvlan", plugin_dir / "macvlan")  # another plugin set: replaced
    (plugin_dir / "ipvlan").write_text("#!/bin/sh\nexit 0\n")  # a script of its own: replaced
    os.symlink("../current/bin/dhcp", plugin_dir / "dhcp")  # dangling, not to cni: replaced
    out = install("--prefix", str(plugin_dir), release=release).stdout
    for name in ("bridge", "host-local", "ptp"):
        assert f"{name}: skipped, k3s ships its own {name} here (--all replaces it)" in out
    assert os.readlink(plugin_dir / "bridge") == "../current/bin/bridge"
    assert not (plugin_dir / "host-local").is_symlink() and not (plugin_dir / "ptp").is_symlink()
    for name in ("macvlan", "ipvlan", "dhcp"):
        assert f"{name}: installed\n" in out and os.readlink(plugin_dir / name) == "pycni", name
    out = install("--prefix", str(plugin_dir), "--uninstall", "--only", "bridge,macvlan", release=release).stdout
    assert "bridge: k3s's own bridge, left alone" in out and "removed macvlan" in out
    assert os.readlink(plugin_dir / "bridge") == "../current/bin/bridge"


def test_outside_k3s_a_name_called_cni_protects_nothing_else(release, tmp_path):
    """Without a `cni` binary to point at, links are judged by their target only."""
    prefix = tmp_path / "opt" / "cni" / "bin"
    prefix.mkdir(parents=True)
    os.symlink("/usr/lib/cni/bridge", prefix / "bridge")
    (prefix / "host-local").write_text("#!/bin/sh\n")
    out = install("--prefix", str(prefix), release=release).stdout
    assert plugin_lines(out) == sorted(f"{n}: installed" for n in OURS)
    assert all(os.readlink(prefix / n) == "pycni" for n in OURS)


@pytest.mark.parametrize("order", ["k3s-first", "prefix-first"])
def test_k3s_and_prefix_together_are_refused(release, tmp_path, order):
    plugin_dir = k3s_data(tmp_path / "rancher", "flat")
    theirs = snapshot(plugin_dir)
    other = tmp_path / "elsewhere"
    args = ["--k3s", "--prefix", str(other)] if order == "k3s-first" else ["--prefix", str(other), "--k3s"]
    p = install(*args, k3s_dir=plugin_dir, release=release, code=2)
    assert p.stdout == "" and "give either --k3s or --prefix DIR, not both" in p.stderr
    assert str(plugin_dir) in p.stderr
    assert not other.exists() and snapshot(plugin_dir) == theirs


def test_k3s_without_its_directory_stops_unless_create(release, tmp_path):
    missing = tmp_path / "var" / "lib" / "rancher" / "k3s" / "data" / "cni"
    for extra in ([], ["--dry-run"], ["--all"]):
        p = install("--k3s", *extra, k3s_dir=missing, release=release, code=1)
        assert p.stdout == ""
        assert f"no k3s plugin directory {missing}" in p.stderr and "--create makes the directory" in p.stderr
        assert not (tmp_path / "var").exists()
    out = install("--k3s", "--uninstall", k3s_dir=missing, release=release).stdout
    assert out == f"nothing installed in {missing}\n" and not (tmp_path / "var").exists()
    p = install("--prefix", str(missing), "--create", release=release, code=2)
    assert "--create goes with --k3s" in p.stderr and not (tmp_path / "var").exists()

    out = install("--k3s", "--create", k3s_dir=missing, release=release).stdout
    assert plugin_lines(out) == sorted(f"{n}: installed" for n in OURS)
    assert all(os.readlink(missing / n) == "pycni" for n in OURS)
