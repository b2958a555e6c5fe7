"""Shared fixtures: network namespaces made by the tests, and running plugins.

A test never touches the root namespace: a netns plays the host (bridges,
masters, iptables rules live there) and one netns per container. Plugins run as
separate processes, either from source (`python -m plugins NAME`) or frozen
(`bin/NAME`), entered into the host netns before exec.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "bin"
GO_BIN = Path("/usr/lib/cni")
ALL_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
GO_VERSIONS = ALL_VERSIONS[:-1]  # Debian's Go plugins (1.1.1) stop at 1.0.0
sys.path.insert(0, str(ROOT))
from plugins import registry  # noqa: E402 - needs ROOT on the path

# Every plugin of the registry (its tools speak no CNI_COMMAND): new plugins need no edit here.
PLUGIN_NAMES = tuple(name for name in registry.PLUGINS if name not in registry.TOOLS)


def is_root() -> bool:
    return os.geteuid() == 0


needs_root = pytest.mark.skipif(not is_root(), reason="needs root for network namespaces")


# ---- the tools the tests exec ----------------------------------------------------

TEST_PACKAGES = ROOT / "packaging" / "test-packages.txt"
_MISSING_TOOLS = pytest.StashKey[dict]()  # what pytest_sessionstart found, for the summary


def missing_test_tools(search_path: str | None = None) -> dict[str, list[str]]:
    """Package -> those of its commands (packaging/test-packages.txt) this machine lacks."""
    import shutil

    missing: dict[str, list[str]] = {}
    for line in TEST_PACKAGES.read_text().splitlines():
        package, *commands = line.split("#", 1)[0].split() or [""]
        absent = [c for c in commands
                  if not (os.access(c, os.X_OK) if "/" in c else shutil.which(c, path=search_path))]
        if absent:
            missing[package] = absent
    return missing


def describe_missing(missing: dict[str, list[str]]) -> str:
    tools = ", ".join(f"{' '.join(commands)} ({package})" for package, commands in missing.items())
    return (f"the tests need commands this machine lacks: {tools}. "
            f"`./build.sh test` installs them; by hand: apt-get install {' '.join(missing)}")


def pytest_sessionstart(session) -> None:
    # Under ./build.sh test (and CI) the whole suite is meant to run, after build.sh installed
    # the list: a tool still missing stops the run here, named, instead of failing hundreds of
    # tests on "No such file or directory". A hand-run pytest goes on and says it at the end.
    missing = missing_test_tools()
    session.config.stash[_MISSING_TOOLS] = missing
    if missing and os.environ.get("PYCNI_REQUIRE_FROZEN"):
        raise pytest.UsageError(describe_missing(missing))


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    missing = config.stash.get(_MISSING_TOOLS, {})
    if missing:
        terminalreporter.section("missing tools", sep="-", yellow=True)
        terminalreporter.write_line(describe_missing(missing), yellow=True)


# ---- namespaces ----------------------------------------------------------------


class Netns:
    """A named netns under /run/netns, removed with everything in it."""

    def __init__(self, prefix: str = "pycni") -> None:
        self.name = f"{prefix}-{secrets.token_hex(4)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.path = f"/run/netns/{self.name}"
        self.run("ip", "link", "set", "lo", "up")

    def run(self, *cmd: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *cmd], check=check,
                              capture_output=True, text=True, **kw)

    def ip_json(self, *args: str) -> Any:
        out = self.run("ip", "-j", *args).stdout
        return json.loads(out) if out.strip() else []

    def link(self, name: str) -> dict | None:
        r = self.run("ip", "-j", "-d", "link", "show", "dev", name, check=False)
        if r.returncode != 0:
            return None
        return json.loads(r.stdout)[0]

    def links(self) -> list[str]:
        return [l["ifname"] for l in self.ip_json("link", "show")]

    def remove(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], check=False, capture_output=True)

    def watch_links(self) -> "LinkWatch":
        """Record every MAC each link of this netns has had from now on (see LinkWatch)."""
        return LinkWatch(self)


# Prints "NAME MAC" for every RTM_NEWLINK of the netns it runs in; "ready" once subscribed.
# When stdin closes, it reads what is still queued and exits.
LINK_WATCH = r"""
import os, select, socket, struct, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.bind((0, 1))  # RTMGRP_LINK
print("ready", flush=True)
def report(data):
    while len(data) >= 16:
        length, kind = struct.unpack_from("=IH", data)
        if kind == 16:  # RTM_NEWLINK
            attrs, name, mac, at = data[:length], "", "", 32
            while at + 4 <= length:
                alen, atype = struct.unpack_from("=HH", attrs, at)
                value = attrs[at + 4:at + alen]
                if atype == 1:
                    mac = ":".join("%02x" % b for b in value)
                elif atype == 3:
                    name = value.rstrip(b"\0").decode()
                at += (alen + 3) & ~3
            print(name, mac, flush=True)
        data = data[(length + 3) & ~3:]
while True:
    ready, _, _ = select.select([s, sys.stdin], [], [])
    if s in ready:
        report(s.recv(1 << 16))
    elif not sys.stdin.read():
        while True:
            try:
                report(s.recv(1 << 16, socket.MSG_DONTWAIT))
            except BlockingIOError:
                sys.exit(0)
"""


class LinkWatch:
    """The MACs links had over time, from the kernel's link notifications (not by polling, so
    a change undone a moment later is seen too). Use as a context manager; history() ends it."""

    def __init__(self, ns: Netns) -> None:
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, "-c", LINK_WATCH],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline() == "ready\n", "the link watcher did not start"

    def history(self) -> dict[str, list[str]]:
        """Each link name -> the MACs it had, in order, repeats folded."""
        out, _ = self.proc.communicate(timeout=10)
        seen: dict[str, list[str]] = {}
        for line in out.splitlines():
            name, _, mac = line.partition(" ")
            macs = seen.setdefault(name, [])
            if mac and (not macs or macs[-1] != mac):
                macs.append(mac)
        return seen

    def __enter__(self) -> "LinkWatch":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def make_netns() -> Iterator:
    made: list[Netns] = []

    def make(prefix: str = "pycni") -> Netns:
        ns = Netns(prefix)
        made.append(ns)
        return ns

    yield make
    for ns in reversed(made):
        ns.remove()


@pytest.fixture
def host_ns(make_netns) -> Netns:
    """A netns that plays the node; plugins run inside it."""
    return make_netns("pycni-host")


@pytest.fixture
def container_ns(make_netns) -> Netns:
    return make_netns("pycni-ctr")


# ---- running plugins -----------------------------------------------------------


@dataclass
class Outcome:
    status: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out) if self.out.strip() else None

    def ok(self) -> "Outcome":
        assert self.status == 0, f"plugin failed ({self.status}): {self.out} {self.err}"
        return self


def source_bin_dir(tmp_root: Path) -> Path:
    """A CNI_PATH directory whose entries run our plugins from source."""
    d = tmp_root / "srcbin"
    d.mkdir(exist_ok=True)
    for name in PLUGIN_NAMES:
        script = d / name
        script.write_text(
            f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m plugins {name} \"$@\"\n")
        script.chmod(0o755)
    return d


@dataclass
class PluginSet:
    """Where a test's plugins come from: `source` or `frozen` (bin/), or Go's."""

    kind: str
    directory: Path

    def path_for(self, name: str) -> str:
        return str(self.directory / name)

    def run(self, name: str, command: str, conf: Any, *, containerid: str = "ctr1", netns: str = "",
            ifname: str = "eth0", args: str = "", cni_path: str | None = None, env: dict | None = None,
            in_netns: str | None = None, timeout: float = 60, wrapper: tuple[str, ...] = ()) -> Outcome:
        stdin = conf if isinstance(conf, (str, bytes)) else json.dumps(conf)
        if isinstance(stdin, str):
            stdin = stdin.encode()
        environ = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command,
                   "CNI_CONTAINERID": containerid, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
                   "CNI_ARGS": args, "CNI_PATH": cni_path if cni_path is not None else str(self.directory)}
        environ = {k: v for k, v in environ.items() if v != ""}
        if env:
            environ.update(env)
        cmd = [*wrapper, self.path_for(name)]  # wrapper: a command that execs its arguments (unshare ...)
        if in_netns:
            cmd = ["ip", "netns", "exec", os.path.basename(in_netns)] + cmd
        p = subprocess.run(cmd, input=stdin, env=environ, capture_output=True, timeout=timeout)
        return Outcome(p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))


def frozen_available() -> bool:
    return (BIN / "host-local").exists()


@pytest.fixture(scope="session")
def source_plugins(tmp_path_factory) -> PluginSet:
    return PluginSet("source", source_bin_dir(tmp_path_factory.mktemp("plugins")))


@pytest.fixture(scope="session")
def frozen_plugins() -> PluginSet:
    if not frozen_available():
        if os.environ.get("PYCNI_REQUIRE_FROZEN"):
            pytest.fail("bin/ is not built, but PYCNI_REQUIRE_FROZEN is set")
        pytest.skip("bin/ is not built (run ./build.sh)")
    return PluginSet("frozen", BIN)


@pytest.fixture(params=["source", "frozen"])
def plugins(request, source_plugins) -> PluginSet:
    """Each test using this runs against the source entrypoints and the frozen bin/."""
    if request.param == "source":
        return source_plugins
    return request.getfixturevalue("frozen_plugins")


@pytest.fixture(scope="session")
def go_plugins() -> PluginSet:
    if not (GO_BIN / "host-local").exists():
        pytest.skip("Go reference plugins not installed (apt-get install containernetworking-plugins)")
    return PluginSet("go", GO_BIN)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    d = tmp_path / "networks"
    d.mkdir()
    return d


def has_link_kind(kind: str) -> bool:
    """Whether this kernel can create links of `kind` (ipvlan, vlan, dummy)."""
    ns = Netns("pycni-probe")
    try:
        if kind in ("ipvlan", "vlan", "macvlan"):
            ns.run("ip", "link", "add", "probe0", "type", "veth", "peer", "name", "probe1")
            extra = {"ipvlan": ["mode", "l2"], "vlan": ["id", "10"], "macvlan": ["mode", "bridge"]}[kind]
            r = ns.run("ip", "link", "add", "link", "probe0", "name", "probe2", "type", kind, *extra, check=False)
        else:
            r = ns.run("ip", "link", "add", "probe2", "type", kind, check=False)
        return r.returncode == 0
    finally:
        ns.remove()


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked arm64 (the arm64 release under emulation) run only when -m names arm64:
    CI runs them as their own step after the arm64 build, so the default run leaves them out."""
    if "arm64" in (config.getoption("markexpr") or ""):
        return
    kept = [item for item in items if item.get_closest_marker("arm64") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("arm64")])
        items[:] = kept
