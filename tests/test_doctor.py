"""`cnitool doctor` on node-shaped trees built under a temporary root (`--root`).

The main tree is a k3s node (its multi-call `cni` with seven links, pycni
installed beside them) next to a system containerd whose config points
elsewhere. It holds exactly four problems: a plugin that is missing, a
cniVersion k3s's host-local does not support, a dhcp network without a daemon
and one stale host-local reservation. The report must name those and nothing
else, in text and JSON, from source and from the frozen bin/cnitool.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import BIN, ROOT, is_root
from node_tree import (EXPECTED, FAKE_COMMIT, K3S, K3S_HASH, K3S_VERSIONS, OUR_VERSIONS, conflist, install_fake_pycni,
                       k3s_node, link, write)
from runtime_env import cnitool_cmd, cnitool_env, frozen_cnitool_available

class Doctor:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.cmd = cnitool_cmd(kind) + ["doctor"]
        self.env = cnitool_env(kind)

    def run(self, *args: str, netns: str = "", env: dict | None = None, user: int | None = None):
        cmd = self.cmd + list(args)
        if user is not None:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        return subprocess.run(cmd, env=dict(self.env, **(env or {})), capture_output=True, text=True, timeout=120)

    def report(self, root: Path, *args: str, **kw) -> tuple[int, dict]:
        p = self.run("--root", str(root), "--json", *args, **kw)
        assert p.stderr == "", p.stderr
        return p.returncode, json.loads(p.stdout)


@pytest.fixture(params=["source", "frozen"])
def doctor(request) -> Doctor:
    if request.param == "frozen" and not frozen_cnitool_available():
        pytest.skip("bin/cnitool is not built (run ./build.sh)")
    return Doctor(request.param)


def kinds(report: dict) -> set[tuple[str, str, str]]:
    return {(p["kind"], p.get("network", ""), p.get("plugin", "")) for p in report["problems"]}


def plugin(report: dict, runtime: str, network: str, plugin_type: str) -> dict:
    setup = next(s for s in report["setups"] if s["runtime"] == runtime)
    net = next(n for n in setup["networks"] if n["name"] == network)
    return next(p for p in net["plugins"] if p["type"] == plugin_type)


def test_k3s_node_report_names_exactly_its_problems(doctor, tmp_path):
    root = k3s_node(tmp_path / "node")
    status, report = doctor.report(root)
    assert status == 1 and report["status"] == "problems"
    assert kinds(report) == EXPECTED, report["problems"]
    assert len(report["problems"]) == 4
    by_kind = {p["kind"]: p for p in report["problems"]}
    assert by_kind["stale-reservation"]["file"] == "/var/lib/cni/networks/macnet/10.10.0.6"
    assert "gone-ctr/net1" in by_kind["stale-reservation"]["message"]
    assert '"1.1.0"' in by_kind["unsupported-version"]["message"]
    assert "/run/cni/dhcp.sock" in by_kind["dhcp-daemon"]["message"]
    assert f"/{K3S}/data/cni" in by_kind["missing-plugin"]["message"]
    # the runtimes and their directories, found without being told
    setups = {s["runtime"]: s for s in report["setups"]}
    assert set(setups) == {"containerd", "k3s"}
    assert setups["containerd"]["binDirs"] == ["/usr/local/lib/cni"]
    assert setups["containerd"]["confDir"] == "/etc/cni/custom.d"
    assert setups["k3s"]["binDirs"] == [f"/{K3S}/data/cni"] and setups["k3s"]["source"] == ""
    assert setups["k3s"]["confDir"] == f"/{K3S}/agent/etc/cni/net.d"
    # the order a runtime loads files in, and the one containerd picks
    assert [n["name"] for n in setups["k3s"]["networks"]] == ["cbr0", "macnet", "dhcpnet", "ipvnet"]
    assert [n["loaded"] for n in setups["containerd"]["networks"]] == [True, False]
    # whose plugins they are
    bridge = plugin(report, "k3s", "cbr0", "portmap")
    assert bridge["owner"] == "k3s" and bridge["resolved"] == f"/{K3S}/data/{K3S_HASH}/bin/cni"
    assert bridge["version"] == "CNI plugins plugin v1.2.0-k3s1"
    assert bridge["supportedVersions"] == K3S_VERSIONS
    macvlan = plugin(report, "k3s", "macnet", "macvlan")
    assert macvlan["owner"] == "pycni" and macvlan["version"] == "0.1.0" and macvlan["build"] == FAKE_COMMIT
    assert plugin(report, "k3s", "macnet", "host-local")["role"] == "ipam"
    assert plugin(report, "k3s", "ipvnet", "ipvlan")["owner"] == "missing"
    assert report["notChecked"] == [{"what": "masquerade rules", "why": report["notChecked"][0]["why"]}]


def test_text_report_has_one_line_per_problem(doctor, tmp_path):
    root = k3s_node(tmp_path / "node")
    p = doctor.run("--root", str(root))
    assert p.returncode == 1 and p.stderr == ""
    problems = [line for line in p.stdout.splitlines() if "PROBLEM" in line]
    assert len(problems) == 4 and all("; fix: " in line for line in problems), p.stdout
    text = "\n".join(problems)
    for needle in ('failed to find plugin "ipvlan"', 'does not support cniVersion "1.1.0"',
                   "no dhcp daemon listens on /run/cni/dhcp.sock", "10.10.0.6 of network macnet"):
        assert text.count(needle) == 1, (needle, p.stdout)
    assert p.stdout.rstrip().endswith("4 problems found")
    # grouped by network: each problem sits under its network's heading
    lines = p.stdout.splitlines()
    heading = next(i for i, l in enumerate(lines) if l.strip().startswith('network "ipvnet"'))
    assert 'failed to find plugin "ipvlan"' in "\n".join(lines[heading:heading + 4])


def test_fixing_the_problems_makes_the_report_clean(doctor, tmp_path):
    root = k3s_node(tmp_path / "node")
    install_fake_pycni_names(root, ("ipvlan",))
    conf = root / K3S / "agent/etc/cni/net.d/20-macnet.conflist"
    conf.write_text(conf.read_text().replace('"1.1.0"', '"1.0.0"'))
    (root / "var/lib/cni/networks/macnet/10.10.0.6").unlink()
    with fake_dhcp_daemon(root / "run/cni/dhcp.sock"):
        status, report = doctor.report(root)
    assert (status, report["problems"], report["status"]) == (0, [], "ok")


def install_fake_pycni_names(root: Path, names: tuple[str, ...]) -> None:
    for name in names:
        link(root / K3S / "data/cni" / name, "pycni")


class fake_dhcp_daemon:
    """Answers STATUS in pycni's dhcp protocol on `path` while the block runs."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(4)
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    conn.sendall(b'{"pycni-dhcp": 1, "ok": true, "result": {}}\n')
                except OSError:
                    pass

    def __enter__(self) -> "fake_dhcp_daemon":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        stop_listening(self.server)
        self.thread.join(timeout=5)


def stop_listening(server: socket.socket) -> None:
    try:
        server.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept()
    except OSError:
        pass
    server.close()


def test_go_dhcp_daemon_on_the_socket_is_named_for_our_plugin(tmp_path):
    root = tmp_path / "node"
    install_fake_pycni(root, "/opt/cni/bin", ("macvlan", "dhcp"))
    conflist(root, "/etc/cni/net.d", "10-d.conflist", {"cniVersion": "1.0.0", "name": "d", "plugins": [
        {"type": "macvlan", "ipam": {"type": "dhcp", "daemonSocketPath": "/run/other/dhcp.sock"}}]})
    path = root / "run/other/dhcp.sock"
    path.parent.mkdir(parents=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer_http() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=answer_http, daemon=True)
    thread.start()
    try:
        status, report = Doctor("source").report(root, "--conf-dir", "/etc/cni/net.d")
    finally:
        stop_listening(server)
        thread.join(timeout=5)
    assert status == 1 and kinds(report) == {("dhcp-daemon", "d", "dhcp")}
    assert "speaks HTTP" in report["problems"][0]["message"]
    assert report["setups"][0]["runtime"] == "command line"


def test_broken_file_first_blocks_containerd_and_the_rest_is_checked(tmp_path):
    root = tmp_path / "node"
    write(root / "usr/bin/containerd", "", 0o755)  # containerd without a config file: its defaults
    install_fake_pycni(root, "/opt/cni/bin", ("bridge", "host-local"))
    write(root / "etc/cni/net.d/05-broken.conf", '{"cniVersion": "1.0.0", "name": ')
    conflist(root, "/etc/cni/net.d", "10-ok.conflist", {"cniVersion": "1.0.0", "name": "ok", "plugins": [
        {"type": "bridge", "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}}]})
    status, report = Doctor("source").report(root)
    assert status == 1 and kinds(report) == {("invalid-config", "", "")}
    problem = report["problems"][0]
    assert problem["file"] == "/etc/cni/net.d/05-broken.conf" and "loads no network at all" in problem["fix"]
    setup = report["setups"][0]
    assert (setup["runtime"], setup["binDirs"], setup["maxConfNum"]) == ("containerd", ["/opt/cni/bin"], 1)
    assert [n["loaded"] for n in setup["networks"]] == [True, False]


def test_empty_node_and_missing_root(tmp_path):
    (tmp_path / "empty").mkdir()
    status, report = Doctor("source").report(tmp_path / "empty")
    assert status == 1 and kinds(report) == {("no-config", "", "")}
    assert report["setups"][0]["runtime"] == "default"
    p = Doctor("source").run("--root", str(tmp_path / "nowhere"))
    assert p.returncode == 2 and "cannot inspect" in p.stdout
    p = Doctor("source").run("--frobnicate")
    assert p.returncode == 2 and "unknown argument" in p.stderr


def test_environment_and_podman_and_crio_setups(tmp_path):
    root = tmp_path / "node"
    install_fake_pycni(root, "/usr/libexec/cni", ("bridge", "host-local"))
    install_fake_pycni(root, "/opt/other", ("ptp", "host-local"))
    write(root / "etc/containers/containers.conf", '[network]\nnetwork_backend = "cni"\n'
          'cni_plugin_dirs = [\n  "/usr/libexec/cni",  # ours\n]\n')
    write(root / "etc/crio/crio.conf.d/10-net.conf", '[crio.network]\nnetwork_dir = "/etc/crio/net.d"\n'
          'plugin_dirs = ["/opt/other"]\n')
    conflist(root, "/etc/cni/net.d", "87-podman.conflist", {"cniVersion": "1.0.0", "name": "podman", "plugins": [
        {"type": "bridge", "ipam": {"type": "host-local", "subnet": "10.88.0.0/16"}}]})
    conflist(root, "/etc/crio/net.d", "10-crio.conflist", {"cniVersion": "1.0.0", "name": "crio", "plugins": [
        {"type": "ptp", "ipam": {"type": "host-local", "subnet": "10.85.0.0/16"}}]})
    status, report = Doctor("source").report(root, env={"NETCONFPATH": "/etc/crio/net.d", "CNI_PATH": "/opt/other"})
    assert status == 0, report["problems"]
    setups = [(s["runtime"], s["binDirs"], s["confDir"]) for s in report["setups"]]
    assert setups == [("cri-o, environment", ["/opt/other"], "/etc/crio/net.d"),
                      ("podman", ["/usr/libexec/cni"], "/etc/cni/net.d")]


@pytest.fixture
def shared_tmp():
    """A directory another user can enter (pytest's own tmp_path is root's alone)."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="pycni-doctor-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_not_root_reports_what_it_could_not_check(shared_tmp):
    if not is_root():
        pytest.skip("needs root to switch to another user")
    root = k3s_node(shared_tmp / "node")
    os.chmod(root / "var/lib/cni/results", 0o700)  # as libcni makes it
    p = Doctor("source").run("--root", str(root), "--json", user=65534)
    assert p.stderr == ""
    report = json.loads(p.stdout)
    assert p.returncode == 1 and kinds(report) == EXPECTED - {("stale-reservation", "macnet", "")}
    assert report["notChecked"] == [
        {"what": "stale state", "why": "the result cache /var/lib/cni/results cannot be read (needs root)"}]
    # readable cache, unreadable leases: the reservations themselves are what is not checked
    os.chmod(root / "var/lib/cni/results", 0o755)
    os.chmod(root / "var/lib/cni/results/macnet-live-ctr-eth0", 0o644)
    report = json.loads(Doctor("source").run("--root", str(root), "--json", user=65534).stdout)
    assert kinds(report) == EXPECTED - {("stale-reservation", "macnet", "")}
    assert {"what": "host-local reservations of macnet in /var/lib/cni/networks", "why": "needs root"} \
        in report["notChecked"]


@pytest.mark.skipif(not is_root(), reason="needs root for a network namespace")
def test_stale_masquerade_chains_in_the_node_netns(doctor, tmp_path, host_ns):
    from cni import masq

    root = tmp_path / "node"
    install_fake_pycni(root, "/opt/cni/bin", ("bridge", "host-local"))
    conflist(root, "/etc/cni/net.d", "10-mynet.conflist", {"cniVersion": "1.0.0", "name": "mynet", "plugins": [
        {"type": "bridge", "ipMasq": True, "ipam": {"type": "host-local", "subnet": "10.22.0.0/16"}}]})
    entry = {"kind": "cniCacheV1", "containerId": "live-ctr", "config": "", "ifName": "eth0", "networkName": "mynet"}
    write(root / "var/lib/cni/results/mynet-live-ctr-eth0", json.dumps(entry), 0o600)
    rules = ["*nat"]
    for cid, ip in (("live-ctr", "10.22.0.2"), ("gone-ctr", "10.22.0.3")):
        chain, comment = masq.chain_name("mynet", cid), json.dumps(masq.rule_comment("mynet", cid))
        rules += [f":{chain} - [0:0]", f"-A {chain} ! -d 224.0.0.0/4 -j MASQUERADE -m comment --comment {comment}",
                  f"-A POSTROUTING -s {ip}/32 -j {chain} -m comment --comment {comment}"]
    host_ns.run("iptables-restore", "-w", "--noflush", input="\n".join(rules + ["COMMIT"]) + "\n")
    status, report = doctor.report(root, "--kernel", netns=host_ns.name)
    gone = masq.chain_name("mynet", "gone-ctr")
    assert status == 1 and kinds(report) == {("stale-masquerade", "mynet", gone)}, report["problems"]
    assert "gone-ctr" in report["problems"][0]["message"]
    # the nftables backend: one rule per container address, told apart by a hashed comment
    table = f"inet {masq.NFT_TABLE} {masq.NFT_CHAIN}"
    nft = [f"add table inet {masq.NFT_TABLE}",
           f"add chain {table} {{ type nat hook postrouting priority srcnat; }}"]
    for cid, ip in (("live-ctr", "10.22.0.2"), ("gone-ctr", "10.22.0.3"), ("other", "10.23.0.4")):
        network = "mynet" if cid != "other" else "removed-net"
        nft.append(f"add rule {table} ip saddr {ip} masquerade comment {json.dumps(masq.nft_comment(network, cid))}")
    host_ns.run("nft", "-f", "-", input="\n".join(nft) + "\n")
    status, report = doctor.report(root, "--kernel", netns=host_ns.name)
    assert status == 1 and kinds(report) == {("stale-masquerade", "mynet", gone),
                                             ("stale-masquerade", "mynet", masq.NFT_TABLE),
                                             ("stale-masquerade", "", masq.NFT_TABLE)}, report["problems"]
    messages = [p["message"] for p in report["problems"] if p["plugin"] == masq.NFT_TABLE]
    assert masq.nft_comment("mynet", "gone-ctr") in messages[0] + messages[1]
    assert masq.nft_comment("removed-net", "other") in messages[0] + messages[1]
    assert all(masq.nft_comment("mynet", "live-ctr") not in m for m in messages)
    status, report = doctor.report(root, netns=host_ns.name)  # files only: the rules are not looked at
    assert status == 0 and report["notChecked"][0]["what"] == "masquerade rules"


def test_our_frozen_plugins_are_recognised_as_ours(tmp_path):
    if not (BIN / "pycni").exists() or not (BIN / "pycni-lib").is_dir():
        pytest.skip("bin/ is not built (run ./build.sh)")
    root = tmp_path / "node"
    shutil.copytree(BIN, root / "opt/cni/bin", symlinks=True)
    conflist(root, "/etc/cni/net.d", "10-mynet.conflist", {"cniVersion": "1.1.0", "name": "mynet", "plugins": [
        {"type": "bridge", "ipam": {"type": "host-local", "subnet": "10.22.0.0/16"}}]})
    status, report = Doctor("source").report(root, "--bin-dir", "/opt/cni/bin")
    assert status == 0, report["problems"]
    import cni

    build = (BIN / "pycni-lib/cni/BUILD").read_text().split()[-1] if (BIN / "pycni-lib/cni/BUILD").exists() else ""
    for name in ("bridge", "host-local"):
        info = plugin(report, "command line", "mynet", name)
        assert (info["owner"], info["version"], info.get("build", "")) == ("pycni", cni.__version__, build)
        assert info["resolved"] == "/opt/cni/bin/pycni" and info["supportedVersions"] == OUR_VERSIONS


def test_other_commands_do_not_import_the_doctor():
    code = ("import sys, io; from cni.runtime import cnitool; "
            "cnitool.run(['list'], {'NETCONFPATH': '/nonexistent'}, io.StringIO(), io.StringIO()); "
            "print(sorted(m for m in sys.modules if m.startswith('cni.runtime.') or m in ('subprocess', 'tomllib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "doctor" not in out and "nodeconfig" not in out and "toml" not in out
