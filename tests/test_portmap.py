"""portmap: real traffic through bridge + portmap, rules side by side with Go, DEL, GC, CHECK, rollback.

Each side runs in its own netns playing the host, so the container ID (and the
chain names hashed from it) are the same for ours and Go's, and the whole nat
table can be compared.
"""
from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from conftest import GO_VERSIONS, needs_root
from reliability_env import wait_settled

pytestmark = needs_root

NET = "pmnet"
BRIDGE = "pmbr0"
HOST4, HOST6 = "192.0.2.1", "2001:db8:1::1"
MAPPINGS = [
    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
    {"hostPort": 8053, "containerPort": 53, "protocol": "udp"},
    {"hostPort": 8081, "containerPort": 80, "protocol": "tcp", "hostIP": HOST4},
    {"hostPort": 8082, "containerPort": 80, "protocol": "tcp", "hostIP": HOST6},
    {"hostPort": 8083, "containerPort": 80, "protocol": "sctp", "hostIP": "0.0.0.0"},
]

SERVER = r"""
import socket, sys, threading
def tcp(fam, host):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, 80)); s.listen(8)
    while True:
        c, a = s.accept(); c.sendall(("tcp " + a[0]).encode()); c.close()
def udp(fam, host):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, 53))
    while True:
        d, a = s.recvfrom(100); s.sendto(("udp " + a[0]).encode(), a)
for f, h in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
    for fn in (tcp, udp):
        threading.Thread(target=fn, args=(f, h), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

CLIENT = r"""
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
source_port, timeout = int(sys.argv[4]), float(sys.argv[5])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
try:
    if proto == "tcp":
        s = socket.create_connection((host, port), timeout=timeout); print(s.recv(100).decode())
    else:
        s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(timeout)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", source_port))
        s.sendto(b"hi", (host, port))
        print(s.recvfrom(100)[0].decode())
except OSError as exc:
    print("failed", exc)
"""


def reach(ns, proto: str, host: str, port: int, *, source_port: int = 0, timeout: float = 2) -> str:
    return ns.run(sys.executable, "-c", CLIENT, proto, host, str(port), str(source_port), str(timeout)).stdout.strip()


def host_netns(make_netns):
    """A node: an uplink with HOST4/HOST6 (the host's own addresses), nothing else."""
    ns = make_netns("pycni-host")
    ns.run("ip", "link", "add", "up0", "type", "veth", "peer", "name", "up0p")
    ns.run("ip", "addr", "add", f"{HOST4}/24", "dev", "up0")
    ns.run("ip", "addr", "add", f"{HOST6}/64", "dev", "up0", "nodad")
    ns.run("ip", "link", "set", "up0", "up")
    ns.run("ip", "link", "set", "up0p", "up")
    return ns


def bridge_conf(version: str, data_dir) -> dict:
    return {"cniVersion": version, "name": NET, "type": "bridge", "bridge": BRIDGE, "isGateway": True,
            "ipam": {"type": "host-local", "dataDir": str(data_dir),
                     "ranges": [[{"subnet": "10.77.0.0/24"}], [{"subnet": "fd77::/64"}]],
                     "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}}


def portmap_conf(version: str, prev: dict | None, mappings=MAPPINGS, **extra) -> dict:
    conf = {"cniVersion": version, "name": NET, "type": "portmap", "capabilities": {"portMappings": True},
            "runtimeConfig": {"portMappings": mappings}, **extra}
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def fake_prev(version: str, netns: str, v6: bool = True) -> dict:
    """A prevResult of `version`'s shape for a container at 10.88.0.2/16 (and fd88::2/64)."""
    if version in ("0.1.0", "0.2.0"):
        prev = {"cniVersion": version, "ip4": {"ip": "10.88.0.2/16"}}
        if v6:
            prev["ip6"] = {"ip": "fd88::2/64"}
        return prev
    ips = [{"address": "10.88.0.2/16", "interface": 0}] + ([{"address": "fd88::2/64", "interface": 0}] if v6 else [])
    if version < "1.0.0":
        ips = [dict(ip, version="6" if ":" in ip["address"] else "4") for ip in ips]
    return {"cniVersion": version, "interfaces": [{"name": "eth0", "sandbox": netns}], "ips": ips}


def fake_node(make_netns):
    """A node whose route to 10.88.0.0/16 and fd88::/64 leaves through `pmv0` (route_localnet goes there)."""
    ns = host_netns(make_netns)
    ns.run("ip", "link", "add", "pmv0", "type", "veth", "peer", "name", "pmv0p")
    ns.run("ip", "addr", "add", "10.88.0.1/16", "dev", "pmv0")
    ns.run("ip", "addr", "add", "fd88::1/64", "dev", "pmv0", "nodad")
    ns.run("ip", "link", "set", "pmv0", "up")
    return ns


def nat(ns, family: int = 4) -> list[str]:
    """The nat table without counters and comments of the save; the DNAT jumps sorted
    (the reference prepends them since 1.5, Debian's 1.1.1 appends: the order of one
    container's jumps is all that differs)."""
    tool = "ip6tables-save" if family == 6 else "iptables-save"
    lines = [re.sub(r"\[\d+:\d+\]", "", l) for l in ns.run(tool, "-t", "nat").stdout.splitlines()
             if not l.startswith("#")]
    jumps = sorted(l for l in lines if l.startswith("-A CNI-HOSTPORT-DNAT "))
    return [l for l in lines if not l.startswith("-A CNI-HOSTPORT-DNAT ")] + jumps


def dn_chains(ns) -> list[str]:
    return sorted(l.split()[0][1:] for fam in (4, 6) for l in nat(ns, fam) if l.startswith(":CNI-DN-"))


def localnet(ns) -> dict:
    out = ns.run("sh", "-c", "grep . /proc/sys/net/ipv4/conf/*/route_localnet").stdout
    return dict(line.rsplit(":", 1) for line in out.split())


def nft_rules(ns) -> list[str]:
    out = ns.run("nft", "list", "ruleset").stdout
    return [l.strip() for l in out.splitlines() if "comment" in l and "CNI portmap plugin" not in l]


def run(side, command, conf, host, *, netns="", cid="ctr1", **kw):
    return side.run("portmap", command, conf, containerid=cid, netns=netns, in_netns=host.path, **kw)


# ---- real traffic ----------------------------------------------------------------------


@pytest.fixture
def server(container_ns):
    proc = subprocess.Popen(["ip", "netns", "exec", container_ns.name, sys.executable, "-c", SERVER],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield container_ns
    finally:
        proc.kill()
        proc.wait()


def ptp_conf(version: str, data_dir) -> dict:
    conf = bridge_conf(version, data_dir)
    for key in ("bridge", "isGateway"):
        del conf[key]
    return dict(conf, type="ptp")


@pytest.mark.parametrize("main,backend", [("bridge", "iptables"), ("bridge", "nftables"), ("ptp", "iptables")])
def test_traffic_through_bridge_or_ptp_and_portmap(plugins, make_netns, server, data_dir, main, backend):
    host, ctr = host_netns(make_netns), server
    bconf = (bridge_conf if main == "bridge" else ptp_conf)("1.0.0", data_dir)
    prev = plugins.run(main, "ADD", bconf, netns=ctr.path, in_netns=host.path).ok().json
    host_side = BRIDGE if main == "bridge" else prev["interfaces"][0]["name"]
    wait_settled(host)  # the gateway's IPv6 address leaves DAD
    conf = portmap_conf("1.0.0", prev, backend=backend)
    try:
        assert run(plugins, "ADD", conf, host, netns=ctr.path).ok().json == prev
        run(plugins, "CHECK", conf, host, netns=ctr.path).ok()
        gateway = "10.77.0.1"
        # By the host's own addresses, both families; by a given host address; UDP too.
        assert reach(host, "tcp", HOST4, 8080) == f"tcp {HOST4}"
        assert reach(host, "tcp", HOST6, 8080) == f"tcp {HOST6}"
        assert reach(host, "tcp", HOST4, 8081) == f"tcp {HOST4}"
        assert reach(host, "tcp", HOST6, 8082) == f"tcp {HOST6}"
        assert reach(host, "udp", HOST4, 8053) == f"udp {HOST4}"
        assert reach(host, "udp", HOST6, 8053) == f"udp {HOST6}"
        # Hairpin through 127.0.0.1: DNAT in OUTPUT, masqueraded, route_localnet on the bridge (ptp: the veth).
        assert reach(host, "tcp", "127.0.0.1", 8080) == f"tcp {gateway}"
        assert localnet(host)[f"/proc/sys/net/ipv4/conf/{host_side}/route_localnet"] == "1"
        # A host address mapping serves that address only.
        assert reach(host, "tcp", HOST4, 8082).startswith("failed")
        # DEL as containerd sends it: no netns, no prevResult.
        run(plugins, "DEL", portmap_conf("1.0.0", None, backend=backend), host).ok()
        assert reach(host, "tcp", HOST4, 8080).startswith("failed")
        assert dn_chains(host) == [] and not [l for l in nft_rules(host) if '"ctr1"' in l]
    finally:
        plugins.run(main, "DEL", bconf, netns=ctr.path, in_netns=host.path).ok()


HOST_UDP = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 8053))
print("ready", flush=True)
while True:
    d, a = s.recvfrom(100); s.sendto(b"host", a)
"""


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_stale_udp_flow_is_forgotten(plugins, make_netns, server, data_dir, backend):
    """A UDP flow to the host port tracked before the mapping would keep going where it went: ADD deletes it."""
    host, ctr = host_netns(make_netns), server
    bconf = bridge_conf("1.0.0", data_dir)
    prev = plugins.run("bridge", "ADD", bconf, netns=ctr.path, in_netns=host.path).ok().json
    listener = subprocess.Popen(["ip", "netns", "exec", host.name, sys.executable, "-c", HOST_UDP],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        # A conntrack user: from now on the kernel tracks the node's flows (a real node always does).
        host.run("iptables", "-A", "OUTPUT", "-m", "conntrack", "--ctstate", "NEW", "-j", "ACCEPT")
        # Before the mapping a service of the host answers; the flow is tracked.
        assert reach(host, "udp", HOST4, 8053, source_port=41053) == "host"
        conf = portmap_conf("1.0.0", prev, backend=backend)
        run(plugins, "ADD", conf, host, netns=ctr.path).ok()
        # The same flow (same source port) now reaches the container.
        assert reach(host, "udp", HOST4, 8053, source_port=41053) == f"udp {HOST4}"
        run(plugins, "DEL", conf, host).ok()
    finally:
        listener.kill()
        listener.wait()
        plugins.run("bridge", "DEL", bconf, netns=ctr.path, in_netns=host.path).ok()


# ---- side by side with Go ----------------------------------------------------------------


def test_iptables_side_by_side_with_go_every_version(plugins, go_plugins, make_netns):
    for version in GO_VERSIONS:
        states = []
        for side in (plugins, go_plugins):
            host = fake_node(make_netns)
            before = localnet(host)
            conf = portmap_conf(version, fake_prev(version, "/run/netns/x"))
            out = run(side, "ADD", conf, host, netns="/run/netns/x").ok().json
            added = (nat(host, 4), nat(host, 6), localnet(host))
            assert localnet(host) != before  # pmv0 routes to the container
            run(side, "DEL", portmap_conf(version, None), host).ok()
            states.append((out, added, nat(host, 4), nat(host, 6)))
            host.remove()
        assert states[0] == states[1], version


MANY = [{"hostPort": 10000 + i, "containerPort": 80, "protocol": "tcp"} for i in range(17)]


@pytest.mark.parametrize("extra", [
    {"snat": False},
    {"markMasqBit": 5},
    {"externalSetMarkChain": "KUBE-MARK-MASQ"},
    {"conditionsV4": ["!", "-s", "198.51.100.0/24"], "conditionsV6": ["-s", "fd00::/8"]},
    {"runtimeConfig": {"portMappings": MANY}},  # multiport takes 15 ports a rule
], ids=["no-snat", "mark-bit-5", "external-mark-chain", "conditions", "17-ports"])
def test_iptables_keys_side_by_side_with_go(plugins, go_plugins, make_netns, extra):
    states = []
    for side in (plugins, go_plugins):
        host = fake_node(make_netns)
        for tool in ("iptables", "ip6tables"):
            host.run(tool, "-t", "nat", "-N", "KUBE-MARK-MASQ")
        conf = dict(portmap_conf("1.0.0", fake_prev("1.0.0", "/run/netns/x")), **extra)
        run(side, "ADD", conf, host, netns="/run/netns/x").ok()
        added = (nat(host, 4), nat(host, 6))
        run(side, "DEL", conf, host).ok()
        states.append((added, nat(host, 4), nat(host, 6)))
        host.remove()
    assert states[0] == states[1]


def test_masq_all_marks_every_mapped_connection(plugins, make_netns):
    """masqAll (newer than Debian's 1.1.1): the mark rule matches any source, and no localhost rule is needed."""
    host = fake_node(make_netns)
    conf = dict(portmap_conf("1.0.0", fake_prev("1.0.0", "/run/netns/x"), mappings=MAPPINGS[:1]), masqAll=True)
    run(plugins, "ADD", conf, host, netns="/run/netns/x").ok()
    for family, target in ((4, "10.88.0.2:80"), (6, "[fd88::2]:80")):
        rules = [l.split(" ", 2)[2] for l in nat(host, family) if l.startswith("-A CNI-DN-")]
        assert rules == ["-p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
                         f"-p tcp -m tcp --dport 8080 -j DNAT --to-destination {target}"]


def test_interoperates_with_go(plugins, go_plugins, make_netns):
    """Same chains: either plugin's DEL removes the other's rules; our CHECK accepts Go's.

    (Go's own CHECK looks for each family's rules in both iptables and ip6tables,
    so it fails for every container here: not compared.)
    """
    host = fake_node(make_netns)
    conf = portmap_conf("1.0.0", fake_prev("1.0.0", "/run/netns/x"))
    for adder, other in ((go_plugins, plugins), (plugins, go_plugins)):
        run(adder, "ADD", conf, host, netns="/run/netns/x").ok()
        run(plugins, "CHECK", conf, host, netns="/run/netns/x").ok()
        run(other, "DEL", conf, host).ok()
        assert dn_chains(host) == []


def test_check_ipv4_only_and_missing_rule(plugins, go_plugins, make_netns):
    host = fake_node(make_netns)
    conf = portmap_conf("1.0.0", fake_prev("1.0.0", "/run/netns/x", v6=False))
    run(plugins, "ADD", conf, host, netns="/run/netns/x").ok()
    assert [l for l in nat(host, 6) if "CNI-DN-" in l] == []  # nothing for a family not in use
    run(plugins, "CHECK", conf, host, netns="/run/netns/x").ok()
    # Go looks for the IPv4 rules in ip6tables too and fails (SPEC.md: deliberate).
    assert run(go_plugins, "CHECK", conf, host, netns="/run/netns/x").status == 1
    [dnat] = [l for l in nat(host, 4) if "-j DNAT" in l and "--dport 8080" in l]
    host.run("iptables", "-t", "nat", *("-D" + dnat[2:]).split())
    bad = run(plugins, "CHECK", conf, host, netns="/run/netns/x")
    assert bad.status == 1 and "8080" in bad.json.get("details", ""), bad.out


def test_add_twice_is_one_set_of_rules(plugins, make_netns):
    host = fake_node(make_netns)
    conf = portmap_conf("1.0.0", fake_prev("1.0.0", "/run/netns/x"))
    run(plugins, "ADD", conf, host, netns="/run/netns/x").ok()
    first = (nat(host, 4), nat(host, 6))
    run(plugins, "ADD", conf, host, netns="/run/netns/x").ok()
    assert (nat(host, 4), nat(host, 6)) == first


def test_no_mappings_writes_nothing(plugins, make_netns):
    host = fake_node(make_netns)
    before = (nat(host, 4), nat(host, 6))
    prev = fake_prev("1.0.0", "/run/netns/x")
    out = run(plugins, "ADD", portmap_conf("1.0.0", prev, mappings=[]), host, netns="/run/netns/x").ok().json
    assert out == {**prev, "dns": {}}
    assert (nat(host, 4), nat(host, 6)) == before


# ---- GC, rollback, faults -----------------------------------------------------------------


def test_gc_removes_only_stale_containers_of_this_network(plugins, make_netns):
    host = fake_node(make_netns)
    prev = fake_prev("1.1.0", "/run/netns/x")
    for cid in ("keep", "stale"):
        run(plugins, "ADD", portmap_conf("1.1.0", prev), host, netns="/run/netns/x", cid=cid).ok()
    other = dict(portmap_conf("1.1.0", prev), name="othernet")
    run(plugins, "ADD", other, host, netns="/run/netns/x", cid="stale").ok()
    before = dn_chains(host)
    gc = {"cniVersion": "1.1.0", "name": NET, "type": "portmap",
          "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    plugins.run("portmap", "GC", gc, in_netns=host.path).ok()
    from cni.portmap.iptables import dnat_chain

    gone = dnat_chain(NET, "stale")
    assert dn_chains(host) == [c for c in before if c != gone]
    assert len(before) == 6 and gone in before
    assert any(":CNI-HOSTPORT-DNAT" in l for l in nat(host, 4))


def test_failed_add_leaves_no_container_rules(plugins, make_netns):
    """The IPv6 restore fails (a match ip6tables does not have): the IPv4 rules go again."""
    host = fake_node(make_netns)
    conf = portmap_conf("1.0.0", fake_prev("1.0.0", "/run/netns/x"), conditionsV6=["-m", "nosuchmatch"])
    out = run(plugins, "ADD", conf, host, netns="/run/netns/x")
    assert out.status == 1 and "Traceback" not in out.err, out
    assert dn_chains(host) == []


def test_killed_add_is_cleaned_by_del(plugins, make_netns):
    host = fake_node(make_netns)
    conf = portmap_conf("1.0.0", fake_prev("1.0.0", "/run/netns/x"))
    out = run(plugins, "ADD", conf, host, netns="/run/netns/x", env={"PYCNI_TEST_KILL_AT": "portmap"})
    assert out.status != 0 and dn_chains(host) != []
    run(plugins, "DEL", portmap_conf("1.0.0", None), host).ok()
    assert dn_chains(host) == []


# ---- nftables --------------------------------------------------------------------------


def test_nftables_rules_check_del(plugins, make_netns):
    host = fake_node(make_netns)
    conf = portmap_conf("1.0.0", fake_prev("1.0.0", "/run/netns/x"), backend="nftables")
    run(plugins, "ADD", conf, host, netns="/run/netns/x").ok()
    assert nft_rules(host) == [
        'tcp dport 8080 dnat to 10.88.0.2:80 comment "ctr1"',
        'udp dport 8053 dnat to 10.88.0.2:53 comment "ctr1"',
        'sctp dport 8083 dnat to 10.88.0.2:80 comment "ctr1"',
        'ip daddr 192.0.2.1 tcp dport 8081 dnat to 10.88.0.2:80 comment "ctr1"',
        'ip saddr 10.88.0.2 ip daddr 10.88.0.2 masquerade comment "ctr1"',
        'ip saddr 127.0.0.1 ip daddr 10.88.0.2 masquerade comment "ctr1"',
        'tcp dport 8080 dnat to [fd88::2]:80 comment "ctr1"',
        'udp dport 8053 dnat to [fd88::2]:53 comment "ctr1"',
        'ip6 daddr 2001:db8:1::1 tcp dport 8082 dnat to [fd88::2]:80 comment "ctr1"',
        'ip6 saddr fd88::2 ip6 daddr fd88::2 masquerade comment "ctr1"',
    ]
    assert dn_chains(host) == []
    run(plugins, "CHECK", conf, host, netns="/run/netns/x").ok()
    handle = host.run("nft", "-a", "list", "chain", "ip6", "cni_hostport", "hostports").stdout
    number = re.search(r"dport 8053 .* handle (\d+)", handle).group(1)
    host.run("nft", "delete", "rule", "ip6", "cni_hostport", "hostports", "handle", number)
    assert run(plugins, "CHECK", conf, host, netns="/run/netns/x").status == 1
    run(plugins, "DEL", portmap_conf("1.0.0", None, backend="nftables"), host).ok()
    assert nft_rules(host) == []


def test_backend_is_nftables_when_only_nft_is_installed(plugins, make_netns, tmp_path):
    import shutil

    for tool in ("nft", "ip"):  # ip: the test enters the host netns with it
        (tmp_path / tool).symlink_to(shutil.which(tool))
    host = fake_node(make_netns)
    conf = portmap_conf("1.0.0", fake_prev("1.0.0", "/run/netns/x"))
    run(plugins, "ADD", conf, host, netns="/run/netns/x", env={"PATH": str(tmp_path)}).ok()
    assert len(nft_rules(host)) == 10 and dn_chains(host) == []
    run(plugins, "DEL", conf, host, env={"PATH": str(tmp_path)}).ok()
    assert nft_rules(host) == []


# ---- the exec stays light -------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["iptables", "nftables"])
def test_add_and_del_import_neither_json_nor_re(make_netns, backend):
    import json
    import os

    from conftest import ROOT

    host = fake_node(make_netns)
    conf = portmap_conf("1.0.0", fake_prev("1.0.0", "/run/netns/x"), backend=backend)
    # -c rather than -m: Python 3.9's runpy imports typing and re itself (see test_jsontext)
    code = "import sys; sys.argv = ['portmap']; from plugins.multicall import main; main()"
    for command in ("ADD", "DEL"):
        env = dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID="light", CNI_NETNS="/run/netns/x",
                   CNI_IFNAME="eth0", CNI_PATH="/nonexistent")
        out = subprocess.run(["ip", "netns", "exec", host.name, sys.executable, "-S", "-X", "importtime", "-c", code],
                             cwd=ROOT, env=env, input=json.dumps(conf).encode(), capture_output=True)
        assert out.returncode == 0, out.stdout
        imported = {line.rsplit("|", 1)[1].strip() for line in out.stderr.decode().splitlines() if "|" in line}
        assert "cni.portmap" in imported
        assert imported & {"json", "re", "typing", "dataclasses", "hashlib", "subprocess", "shutil",
                            "cni.netlink.bridge", "cni.netlink.rule", "cni.netlink.qdisc"} == set(), command


# ---- parallel calls ---------------------------------------------------------------------------


def test_parallel_adds_and_dels_keep_every_container(plugins, make_netns):
    """The shared chains are created once and no ADD wipes another's jumps (the lock file)."""
    from concurrent.futures import ThreadPoolExecutor

    host = fake_node(make_netns)
    cids = [f"par{i}" for i in range(12)]

    def call(command: str, cid: str, index: int):
        prev = fake_prev("1.0.0", "/run/netns/x")
        prev["ips"] = [dict(ip, address=ip["address"].replace(".2/", f".{index + 10}/").replace("::2/", f"::{index + 10}/"))
                       for ip in prev["ips"]]
        mappings = [{"hostPort": 9000 + index, "containerPort": 80, "protocol": "tcp"}]
        return run(plugins, command, portmap_conf("1.0.0", prev, mappings=mappings), host,
                   netns="/run/netns/x" if command == "ADD" else "", cid=cid)

    with ThreadPoolExecutor(12) as pool:
        for out in pool.map(lambda a: call("ADD", *a), [(c, i) for i, c in enumerate(cids)]):
            out.ok()
    from cni.portmap.iptables import dnat_chain

    for family in (4, 6):
        jumps = [l for l in nat(host, family) if l.startswith("-A CNI-HOSTPORT-DNAT ")]
        assert sorted(l.rsplit(" ", 1)[1] for l in jumps) == sorted(dnat_chain(NET, c) for c in cids)
        assert sum(l.startswith("-A PREROUTING ") for l in nat(host, family)) == 1
    with ThreadPoolExecutor(12) as pool:
        for out in pool.map(lambda a: call("DEL", *a), [(c, i) for i, c in enumerate(cids)]):
            out.ok()
    assert dn_chains(host) == []
