"""The bridge plugin, as root: a netns plays the host, one netns per container.

Every scenario runs against the source and the frozen entrypoints (`plugins`)
and, where it applies, for every spec version. Side-by-side comparisons with
the Go reference live in test_bridge_vs_go.py.
"""
from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ALL_VERSIONS, GO_BIN, needs_root

pytestmark = needs_root

NET = "bridgetest"
BRIDGE = "brtest0"
V4, V6 = "10.10.0.0/24", "fd10::/64"

# No ping binary on the test machines: an ICMP echo over a raw socket, retried
# until the deadline (IPv6 gateways are tentative for a moment after ADD).
PING = r"""
import ipaddress, os, select, socket, struct, sys, time
dst = ipaddress.ip_address(sys.argv[1]); deadline = time.time() + float(sys.argv[2])
v6 = dst.version == 6
fam, proto, kind = (socket.AF_INET6, socket.IPPROTO_ICMPV6, 128) if v6 else (socket.AF_INET, socket.IPPROTO_ICMP, 8)
s = socket.socket(fam, socket.SOCK_RAW, proto)
ident = os.getpid() & 0xFFFF
def csum(b):
    b += b"\0" * (len(b) % 2); t = sum(struct.unpack("!%dH" % (len(b) // 2), b)); t = (t >> 16) + (t & 0xFFFF); t += t >> 16
    return ~t & 0xFFFF
seq = 0
while time.time() < deadline:
    seq += 1
    pkt = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + b"pycni"
    if not v6:
        pkt = pkt[:2] + struct.pack("!H", csum(pkt)) + pkt[4:]
    try:
        s.sendto(pkt, (str(dst), 0))
    except OSError:
        time.sleep(0.2); continue
    end = min(deadline, time.time() + 0.5)
    while time.time() < end:
        r, _, _ = select.select([s], [], [], max(0, end - time.time()))
        if not r:
            break
        data, addr = s.recvfrom(2048)
        icmp = data if v6 else data[(data[0] & 0xF) * 4:]
        want = 129 if v6 else 0
        if icmp[0] == want and struct.unpack("!H", icmp[4:6])[0] == ident and addr[0].split("%")[0] == str(dst):
            sys.exit(0)
sys.exit(1)
"""


def ping(ns, address, timeout: float = 5.0) -> bool:
    r = ns.run(sys.executable, "-c", PING, str(address), str(timeout), check=False)
    return r.returncode == 0


def ours_host_local() -> bool:
    return importlib.util.find_spec("plugins.ipam.host_local") is not None


class Bed:
    """One test's world: the plugin set, a host netns, containers, IPAM state."""

    def __init__(self, plugins, host, make_netns, data_dir: Path) -> None:
        self.plugins, self.host, self.make_netns, self.data_dir = plugins, host, make_netns, data_dir
        go_ipam = plugins.kind == "go" or not ours_host_local()
        self.ipam_path = str(GO_BIN) if go_ipam else str(plugins.directory)
        self.go_ipam = go_ipam

    def need_version(self, version: str) -> None:
        if self.go_ipam and version == "1.1.0":
            pytest.skip("IPAM is Go's host-local 1.1.1 (ours not landed yet), which has no spec 1.1.0")

    def ipam(self, *subnets: str, **extra) -> dict:
        ranges = [[{"subnet": s}] for s in (subnets or (V4, V6))]
        return {"type": "host-local", "dataDir": str(self.data_dir), "ranges": ranges, **extra}

    def conf(self, version: str = "1.0.0", ipam: dict | None = None, **keys) -> dict:
        self.need_version(version)
        conf = {"cniVersion": version, "name": NET, "type": "bridge", "bridge": BRIDGE}
        if ipam is None:
            ipam = self.ipam()
        if ipam:
            conf["ipam"] = ipam
        conf.update(keys)
        return conf

    def container(self):
        return self.make_netns("pycni-ctr")

    def run(self, command: str, conf, ctr=None, cid: str = "ctr1", ifname: str = "eth0", netns: str | None = None,
            **kw):
        if netns is None:
            netns = ctr.path if ctr is not None else ""
        kw.setdefault("cni_path", self.ipam_path)
        return self.plugins.run("bridge", command, conf, containerid=cid, netns=netns, ifname=ifname,
                                in_netns=self.host.path, **kw)

    def reserved(self) -> set[str]:
        d = self.data_dir / NET
        if not d.exists():
            return set()
        return {p.name for p in d.iterdir() if p.name[0].isdigit() or ":" in p.name}

    def host_links(self) -> list[str]:
        return self.host.links()

    def veths(self) -> list[str]:
        return [n for n in self.host.links() if n.startswith("veth")]

    def nat(self) -> str:
        return (self.host.run("iptables-save", "-t", "nat").stdout + self.host.run("ip6tables-save", "-t", "nat").stdout
                + self.host.run("nft", "list", "ruleset").stdout)


@pytest.fixture
def bed(plugins, host_ns, make_netns, data_dir) -> Bed:
    return Bed(plugins, host_ns, make_netns, data_dir)


def with_prev(conf: dict, result: dict) -> dict:
    return {**conf, "prevResult": result}


def addrs(ns, ifname: str) -> set[str]:
    out = set()
    for a in ns.ip_json("addr", "show", "dev", ifname):
        for info in a.get("addr_info", []):
            if info.get("scope") == "global":
                out.add(f"{info['local']}/{info['prefixlen']}")
    return out


def routes(ns, family: str = "-4") -> list[dict]:
    return ns.ip_json(family, "route", "show")


def sysctl(ns, name: str) -> str:
    return ns.run("sysctl", "-n", name).stdout.strip()


def assert_clean(bed: Bed, *, bridge_kept: bool) -> None:
    """Nothing of the attachment is left: no veth, no reservation, no NAT rule."""
    assert bed.veths() == []
    assert bed.reserved() == set()
    assert "CNI-" not in bed.nat() and "macspoofchk" not in bed.nat()
    assert (BRIDGE in bed.host_links()) == bridge_kept


# ---- ADD / CHECK / DEL over every version -------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_add_check_del_dual_stack(bed, version):
    ctr = bed.container()
    conf = bed.conf(version, isGateway=True, ipMasq=True)
    out = bed.run("ADD", conf, ctr).ok().json
    assert out["cniVersion"] == version

    if version in ("0.1.0", "0.2.0"):
        assert out["ip4"]["ip"] == "10.10.0.2/24" and out["ip4"]["gateway"] == "10.10.0.1"
        assert out["ip6"]["ip"] == "fd10::2/64" and out["ip6"]["gateway"] == "fd10::1"
        assert "interfaces" not in out
    else:
        names = [i["name"] for i in out["interfaces"]]
        assert names[0] == BRIDGE and names[1].startswith("veth") and len(names[1]) == 12 and names[2] == "eth0"
        assert out["interfaces"][2]["sandbox"] == ctr.path and "sandbox" not in out["interfaces"][1]
        assert [ip["address"] for ip in out["ips"]] == ["10.10.0.2/24", "fd10::2/64"]
        assert all(ip["interface"] == 2 for ip in out["ips"])
        assert [ip["gateway"] for ip in out["ips"]] == ["10.10.0.1", "fd10::1"]
        assert ("version" in out["ips"][0]) == (version in ("0.3.0", "0.3.1", "0.4.0"))
        # The reported MACs are the real ones.
        assert bed.host.link(BRIDGE)["address"] == out["interfaces"][0]["mac"]
        assert bed.host.link(names[1])["address"] == out["interfaces"][1]["mac"]
        assert ctr.link("eth0")["address"] == out["interfaces"][2]["mac"]

    # Container side: addresses, link up, sysctls.
    assert addrs(ctr, "eth0") == {"10.10.0.2/24", "fd10::2/64"}
    assert ctr.link("eth0")["operstate"] == "UP"
    assert sysctl(ctr, "net.ipv4.conf.eth0.arp_notify") == "1"
    assert sysctl(ctr, "net.ipv6.conf.eth0.accept_dad") == "0"
    # Host side: one port on the bridge, gateway addresses on the bridge, forwarding.
    veth = bed.veths()
    assert len(veth) == 1 and bed.host.link(veth[0])["master"] == BRIDGE
    assert bed.host.link(BRIDGE)["linkinfo"]["info_kind"] == "bridge"
    assert addrs(bed.host, BRIDGE) == {"10.10.0.1/24", "fd10::1/64"}
    assert sysctl(bed.host, "net.ipv4.ip_forward") == "1"
    assert sysctl(bed.host, "net.ipv6.conf.all.forwarding") == "1"
    assert sysctl(bed.host, f"net.ipv6.conf.{BRIDGE}.accept_ra") == "0"
    assert "-A POSTROUTING -s 10.10.0.2/32" in bed.nat() and "-A POSTROUTING -s fd10::2/128" in bed.nat()
    assert bed.reserved() == {"10.10.0.2", "fd10::2"}
    assert ping(ctr, "10.10.0.1") and ping(ctr, "fd10::1")

    if version not in ("0.1.0", "0.2.0", "0.3.0", "0.3.1"):
        bed.run("CHECK", with_prev(conf, out), ctr).ok()

    bed.run("DEL", conf, ctr).ok()
    assert_clean(bed, bridge_kept=True)
    assert ctr.links() == ["lo"]
    bed.run("DEL", conf, ctr).ok()  # a second DEL is fine


def test_two_containers_reach_each_other(bed):
    conf = bed.conf(isGateway=True)
    a, b = bed.container(), bed.container()
    ra = bed.run("ADD", conf, a, cid="a").ok().json
    rb = bed.run("ADD", conf, b, cid="b").ok().json
    ip_b4, ip_b6 = (ipaddress.ip_interface(ip["address"]).ip for ip in rb["ips"])
    ip_a4 = ipaddress.ip_interface(ra["ips"][0]["address"]).ip
    assert ping(a, ip_b4) and ping(b, ip_a4) and ping(a, ip_b6)
    assert ping(a, "10.10.0.1") and ping(b, "fd10::1")
    assert len(bed.veths()) == 2
    # The bridge MAC is pinned: it stays what the first result said while ports come and go.
    assert bed.host.link(BRIDGE)["address"] == ra["interfaces"][0]["mac"] == rb["interfaces"][0]["mac"]
    bed.run("DEL", conf, a, cid="a").ok()
    assert bed.host.link(BRIDGE)["address"] == ra["interfaces"][0]["mac"]
    bed.run("CHECK", with_prev(conf, rb), b, cid="b").ok()
    bed.run("DEL", conf, b, cid="b").ok()
    assert_clean(bed, bridge_kept=True)


@pytest.mark.parametrize("mode", ["gateway", "l2"])
def test_bridge_keeps_its_own_mac_as_containers_come_and_go(bed, mode):
    """The bridge keeps the MAC it was created with (the reference's end state as a gateway;
    pinned in L2 mode too, our extension): never a port's, never changing, as reported."""
    conf = bed.conf(isGateway=True) if mode == "gateway" else bed.conf(ipam={})
    results, ctrs = {}, {cid: bed.container() for cid in ("a", "b", "c", "d")}
    with bed.host.watch_links() as watch:
        for cid in ("a", "b", "c"):
            results[cid] = bed.run("ADD", conf, ctrs[cid], cid=cid).ok().json
        bed.run("DEL", conf, ctrs["a"], cid="a").ok()
        results["d"] = bed.run("ADD", conf, ctrs["d"], cid="d").ok().json
        bed.run("DEL", conf, ctrs["b"], cid="b").ok()
        history = watch.history()
    created = history[BRIDGE][0]
    assert history[BRIDGE] == [created], "the bridge MAC changed while ports came and went"
    assert bed.host.link(BRIDGE)["address"] == created
    for cid in ("a", "b", "c", "d"):
        bridge, host_end, _ = results[cid]["interfaces"]
        assert bridge["mac"] == created, cid
        assert history[host_end["name"]] == [host_end["mac"]], f"{cid}: the host veth's MAC changed"
        assert host_end["mac"] != created, f"{cid}: the bridge has its port's MAC"
    for cid in ("c", "d"):
        bed.run("CHECK", with_prev(conf, results[cid]), ctrs[cid], cid=cid).ok()
        bed.run("DEL", conf, ctrs[cid], cid=cid).ok()
    assert_clean(bed, bridge_kept=True)
    assert bed.host.link(BRIDGE)["address"] == created


def test_default_bridge_name_and_no_gateway(bed):
    conf = bed.conf(ipam=bed.ipam(V4))
    del conf["bridge"]
    ctr = bed.container()
    out = bed.run("ADD", conf, ctr).ok().json
    assert out["interfaces"][0]["name"] == "cni0"
    assert addrs(bed.host, "cni0") == set()  # not a gateway: no address on the bridge
    assert "gateway" in out["ips"][0]  # host-local still names one
    bed.run("DEL", conf, ctr).ok()


# ---- L2 mode --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_l2_mode_without_ipam(bed, version):
    ctr = bed.container()
    conf = bed.conf(version, ipam={})
    outcome = bed.run("ADD", conf, ctr)
    if version in ("0.1.0", "0.2.0"):
        # Those versions cannot express a result without an IP: refused before anything is made.
        assert outcome.status == 1 and outcome.json["code"] == 1
        assert bed.veths() == [] and BRIDGE not in bed.host_links() and ctr.links() == ["lo"]
        return
    out = outcome.ok().json
    assert "ips" not in out and len(out["interfaces"]) == 3
    assert ctr.link("eth0")["operstate"] == "UP"
    assert addrs(ctr, "eth0") == set()
    if version not in ("0.3.0", "0.3.1"):
        bed.run("CHECK", with_prev(conf, out), ctr).ok()  # the reference fails here; we don't
    bed.run("DEL", conf, ctr).ok()
    assert bed.veths() == []


def test_disable_container_interface(bed):
    ctr = bed.container()
    conf = bed.conf(ipam={}, disableContainerInterface=True)
    bed.run("ADD", conf, ctr).ok()
    assert "UP" not in ctr.link("eth0")["flags"]
    bed.run("DEL", conf, ctr).ok()
    bad = bed.run("ADD", bed.conf(disableContainerInterface=True), ctr)
    assert bad.status == 1 and bad.json["code"] == 7


# ---- keys -------------------------------------------------------------------------------------


def test_port_flags_mtu_promisc(bed):
    ctr = bed.container()
    conf = bed.conf(mtu=1400, hairpinMode=True, portIsolation=True, ipam=bed.ipam(V4))
    out = bed.run("ADD", conf, ctr).ok().json
    port = bed.host.link(out["interfaces"][1]["name"])
    assert port["linkinfo"]["info_slave_data"]["hairpin"] is True
    assert port["linkinfo"]["info_slave_data"]["isolated"] is True
    assert port["mtu"] == 1400 and ctr.link("eth0")["mtu"] == 1400 and bed.host.link(BRIDGE)["mtu"] == 1400
    bed.run("DEL", conf, ctr).ok()

    conf = bed.conf(promiscMode=True, ipam=bed.ipam(V4))
    out = bed.run("ADD", conf, ctr).ok().json
    assert "PROMISC" in bed.host.link(BRIDGE)["flags"]
    assert bed.host.link(out["interfaces"][1]["name"])["linkinfo"]["info_slave_data"]["hairpin"] is False
    bed.run("CHECK", with_prev(conf, out), ctr).ok()
    bed.host.run("ip", "link", "set", BRIDGE, "promisc", "off")
    bad = bed.run("CHECK", with_prev(conf, out), ctr)
    assert bad.status == 1 and "promiscuous" in bad.json["msg"]
    bed.run("DEL", conf, ctr).ok()


@pytest.mark.parametrize("source", ["CNI_ARGS", "args", "runtimeConfig"])
def test_mac_precedence(bed, source):
    ctr = bed.container()
    conf = bed.conf(ipam=bed.ipam(V4))
    env_args = "IgnoreUnknown=1;MAC=02:00:00:00:00:01"
    if source in ("args", "runtimeConfig"):
        conf["args"] = {"cni": {"mac": "02:00:00:00:00:02"}}
    if source == "runtimeConfig":
        conf["runtimeConfig"] = {"mac": "02:00:00:00:00:03"}
    want = {"CNI_ARGS": "02:00:00:00:00:01", "args": "02:00:00:00:00:02", "runtimeConfig": "02:00:00:00:00:03"}
    out = bed.run("ADD", conf, ctr, args=env_args).ok().json
    assert out["interfaces"][2]["mac"] == want[source] == ctr.link("eth0")["address"]
    bed.run("DEL", conf, ctr, args=env_args).ok()


def test_enabledad_sysctls(bed):
    ctr = bed.container()
    conf = bed.conf(enabledad=True)
    bed.run("ADD", conf, ctr).ok()
    assert sysctl(ctr, "net.ipv6.conf.eth0.accept_dad") == "1"
    assert sysctl(ctr, "net.ipv6.conf.eth0.enhanced_dad") == "1"
    bed.run("DEL", conf, ctr).ok()


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0"])
def test_is_default_gateway(bed, version):
    ctr = bed.container()
    conf = bed.conf(version, isDefaultGateway=True)
    out = bed.run("ADD", conf, ctr).ok().json
    assert {"dst": "0.0.0.0/0", "gw": "10.10.0.1"} in out["routes"]
    assert {"dst": "::/0", "gw": "fd10::1"} in out["routes"]
    assert addrs(bed.host, BRIDGE) == {"10.10.0.1/24", "fd10::1/64"}  # implies isGateway
    assert [r["gateway"] for r in routes(ctr) if r["dst"] == "default"] == ["10.10.0.1"]
    assert [r["gateway"] for r in routes(ctr, "-6") if r["dst"] == "default"] == ["fd10::1"]
    bed.run("CHECK", with_prev(conf, out), ctr).ok()
    bed.run("DEL", conf, ctr).ok()


def test_is_default_gateway_with_ipam_default_route(bed):
    """IPAM already routes the default (without gw): no second default route.

    The reference appends one more and fails with "file exists"."""
    ctr = bed.container()
    conf = bed.conf(isDefaultGateway=True, ipam=bed.ipam(V4, routes=[{"dst": "0.0.0.0/0"}, {"dst": "10.50.0.0/16"}]))
    out = bed.run("ADD", conf, ctr).ok().json
    assert [r for r in out["routes"] if r["dst"] == "0.0.0.0/0"] == [{"dst": "0.0.0.0/0"}]
    table = {r["dst"]: r.get("gateway") for r in routes(ctr)}
    assert table["default"] == "10.10.0.1" and table["10.50.0.0/16"] == "10.10.0.1"  # missing gw: the gateway
    bed.run("CHECK", with_prev(conf, out), ctr).ok()
    bed.run("DEL", conf, ctr).ok()


def test_dns_from_conf_wins_over_ipam(bed, tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 9.9.9.9\nsearch ipam.example\n")
    ctr = bed.container()
    conf = bed.conf(ipam=bed.ipam(V4, resolvConf=str(resolv)))
    out = bed.run("ADD", conf, ctr).ok().json
    assert out["dns"]["nameservers"] == ["9.9.9.9"]
    bed.run("DEL", conf, ctr).ok()
    conf["dns"] = {"nameservers": ["1.1.1.1"]}
    out = bed.run("ADD", conf, ctr).ok().json
    assert out["dns"] == {"nameservers": ["1.1.1.1"]}
    bed.run("DEL", conf, ctr).ok()


def test_force_address(bed):
    ctr = bed.container()
    bed.host.run("ip", "link", "add", BRIDGE, "type", "bridge")
    bed.host.run("ip", "addr", "add", "10.10.0.99/24", "dev", BRIDGE)
    conf = bed.conf(isGateway=True, ipam=bed.ipam(V4))
    bad = bed.run("ADD", conf, ctr)
    assert bad.status == 1 and "already has an IP address different from 10.10.0.1/24" in bad.json["msg"]
    assert_clean(bed, bridge_kept=True)  # the bridge was there before: it stays
    assert ctr.links() == ["lo"] and addrs(bed.host, BRIDGE) == {"10.10.0.99/24"}
    conf["forceAddress"] = True
    bed.run("ADD", conf, ctr).ok()
    assert addrs(bed.host, BRIDGE) == {"10.10.0.1/24"}
    bed.run("DEL", conf, ctr).ok()


@pytest.mark.parametrize("version", ["0.4.0", "1.0.0", "1.1.0"])
def test_macspoofchk(bed, version):
    ctr = bed.container()
    conf = bed.conf(version, macspoofchk=True, isGateway=True, ipam=bed.ipam(V4))
    out = bed.run("ADD", conf, ctr, cid="spoof1").ok().json
    host_veth, mac = out["interfaces"][1]["name"], out["interfaces"][2]["mac"]
    rules = bed.host.run("nft", "list", "table", "bridge", "nat").stdout
    chain = "cni-br-iface-spoof1-eth0"
    assert f'iifname "{host_veth}" jump {chain} comment "macspoofchk-spoof1-eth0"' in rules
    assert f"ether saddr {mac} return" in rules and "drop" in rules and f"chain {chain}-mac" in rules
    assert ping(ctr, "10.10.0.1")
    # A frame with another source MAC is dropped on the bridge.
    ctr.run("ip", "link", "set", "eth0", "address", "02:66:66:66:66:66")
    ctr.run("ip", "neigh", "flush", "all")
    bed.host.run("ip", "neigh", "flush", "all")
    assert not ping(ctr, "10.10.0.1", timeout=1.5)
    bed.run("DEL", conf, ctr, cid="spoof1").ok()
    assert "macspoofchk" not in bed.host.run("nft", "list", "ruleset").stdout
    bed.run("DEL", conf, ctr, cid="spoof1").ok()


def test_masquerade_nftables_backend(bed):
    ctr = bed.container()
    conf = bed.conf(ipMasq=True, ipMasqBackend="nftables", ipam=bed.ipam(V4))
    bed.run("ADD", conf, ctr).ok()
    assert "masquerade" in bed.host.run("nft", "list", "table", "inet", "cni_plugins_masquerade").stdout
    assert "CNI-" not in bed.host.run("iptables-save", "-t", "nat").stdout
    bed.run("DEL", conf, ctr).ok()
    assert "10.10.0.2" not in bed.nat()


# ---- configuration errors -------------------------------------------------------------------


@pytest.mark.parametrize("keys, words", [
    ({"vlan": 4095}, "vlan"),
    ({"vlan": -1}, "vlan"),
    ({"vlanTrunk": [{"minID": 10}]}, "together"),
    ({"vlanTrunk": [{"minID": 20, "maxID": 10}]}, "greater"),
    ({"vlanTrunk": [{"id": 0}]}, "vlanTrunk"),
    ({"vlan": 5, "vlanTrunk": [{"id": 6}]}, "same time"),
    ({"hairpinMode": True, "promiscMode": True}, "same time"),
    ({"ipMasqBackend": "pf"}, "ipMasqBackend"),
    ({"mtu": "big"}, "mtu"),
    ({"bridge": "a-very-long-bridge-name"}, "bridge"),
    ({"runtimeConfig": {"mac": "zz"}}, "mac"),
])
def test_invalid_config_creates_nothing(bed, keys, words):
    ctr = bed.container()
    out = bed.run("ADD", bed.conf(**keys), ctr)
    assert out.status == 1 and out.json["code"] == 7 and words in out.json["msg"], out.out
    assert BRIDGE not in bed.host_links() and ctr.links() == ["lo"]
    # DEL does not trip over what ADD refuses.
    bed.run("DEL", bed.conf(**keys), ctr).ok()


def test_existing_non_bridge_is_an_error(bed):
    ctr = bed.container()
    bed.host.run("ip", "link", "add", BRIDGE, "type", "veth", "peer", "name", "other0")
    out = bed.run("ADD", bed.conf(), ctr)
    assert out.status == 1 and "is not a bridge" in out.json["msg"]
    assert ctr.links() == ["lo"] and bed.reserved() == set()
    assert bed.host.link(BRIDGE)["linkinfo"]["info_kind"] == "veth"  # not ours: untouched


def test_existing_container_interface_is_an_error(bed):
    ctr = bed.container()
    ctr.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
    out = bed.run("ADD", bed.conf(), ctr)
    assert out.status == 1 and "already exists" in out.json["msg"]
    assert_clean(bed, bridge_kept=False)
    assert "eth0" in ctr.links()


# ---- failure leaves nothing behind ------------------------------------------------------------


def test_rollback_on_ipam_error(bed):
    ctr = bed.container()
    conf = bed.conf(ipam={"type": "host-local", "dataDir": str(bed.data_dir), "ranges": [[{"subnet": "bogus"}]]})
    out = bed.run("ADD", conf, ctr)
    assert out.status == 1
    assert_clean(bed, bridge_kept=False)  # the bridge this ADD created goes too
    assert ctr.links() == ["lo"]


def test_rollback_on_missing_ipam_plugin(bed):
    ctr = bed.container()
    out = bed.run("ADD", bed.conf(ipam={"type": "no-such-ipam"}), ctr)
    assert out.status == 1 and "no-such-ipam" in out.json["msg"]
    assert_clean(bed, bridge_kept=False)


def test_rollback_on_empty_ipam_result(bed, tmp_path):
    fake = tmp_path / "ipambin"
    fake.mkdir()
    script = fake / "empty-ipam"
    script.write_text('#!/bin/sh\ncat >/dev/null\necho \'{"cniVersion":"1.0.0","ips":[]}\'\n')
    script.chmod(0o755)
    ctr = bed.container()
    out = bed.run("ADD", bed.conf(ipam={"type": "empty-ipam"}), ctr, cni_path=str(fake))
    assert out.status == 1 and "missing IP config" in out.json["msg"]
    assert_clean(bed, bridge_kept=False)


def test_rollback_when_netns_vanishes_mid_add(bed, tmp_path):
    """The IPAM step deletes the container netns: the ADD fails and undoes the rest."""
    ctr = bed.container()
    wrap = tmp_path / "ipambin"
    wrap.mkdir()
    script = wrap / "vanishing"
    script.write_text(f'#!/bin/sh\nip netns delete {ctr.name}\nexec {bed.ipam_path}/host-local "$@"\n')
    script.chmod(0o755)
    ipam = bed.ipam(V4)
    ipam["type"] = "vanishing"
    conf = bed.conf(ipam=ipam, isGateway=True)
    out = bed.run("ADD", conf, ctr, cni_path=f"{wrap}:{bed.ipam_path}")
    assert out.status == 1, out.out
    assert not os.path.exists(ctr.path)
    assert_clean(bed, bridge_kept=False)
    bed.run("DEL", conf, ctr, cni_path=f"{wrap}:{bed.ipam_path}").ok()  # the netns is gone: still fine


def test_rollback_when_masquerade_fails(bed, tmp_path):
    """The last step fails: veth, reservation, gateway-side state of this ADD are undone."""
    tools = tmp_path / "failing-tools"
    tools.mkdir()
    for name in ("iptables-restore", "ip6tables-restore"):
        (tools / name).write_text("#!/bin/sh\necho refused >&2\nexit 1\n")
        (tools / name).chmod(0o755)
    ctr = bed.container()
    conf = bed.conf(ipMasq=True, macspoofchk=True)
    out = bed.run("ADD", conf, ctr, env={"PATH": f"{tools}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}"})
    assert out.status == 1 and "refused" in out.json["msg"]
    assert_clean(bed, bridge_kept=False)
    assert ctr.links() == ["lo"]


def test_rollback_keeps_a_bridge_in_use(bed):
    """A failed ADD on a bridge another container uses removes only its own things."""
    a, b = bed.container(), bed.container()
    good = bed.conf(ipam=bed.ipam(V4))
    bed.run("ADD", good, a, cid="a").ok()
    bed.host.run("ip", "addr", "add", "10.10.0.99/24", "dev", BRIDGE)
    bad = bed.run("ADD", bed.conf(isGateway=True, ipam=bed.ipam(V4)), b, cid="b")
    assert bad.status == 1
    assert len(bed.veths()) == 1 and bed.reserved() == {"10.10.0.2"} and b.links() == ["lo"]
    bed.run("DEL", good, a, cid="a").ok()


def vlan_filtering_supported(ns) -> bool:
    ns.run("ip", "link", "add", "vprobe", "type", "bridge", "vlan_filtering", "1", check=False)
    ok = ns.link("vprobe") is not None
    ns.run("ip", "link", "del", "vprobe", check=False)
    return ok


def test_rollback_on_vlan_the_bridge_refuses(bed):
    if vlan_filtering_supported(bed.host):
        pytest.skip("this kernel filters bridge VLANs: the failure is injected only where it refuses them")
    ctr = bed.container()
    bed.host.run("ip", "link", "add", BRIDGE, "type", "bridge")
    out = bed.run("ADD", bed.conf(vlan=100), ctr)
    assert out.status == 1 and "vlan" in out.json["msg"].lower()
    assert_clean(bed, bridge_kept=True)
    assert ctr.links() == ["lo"]


@pytest.mark.needs_kernel_links
def test_vlan_and_trunk(bed):
    if not vlan_filtering_supported(bed.host):
        pytest.skip("kernel without bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)")
    ctr, trunk = bed.container(), bed.container()
    conf = bed.conf(vlan=100, ipam=bed.ipam(V4), preserveDefaultVlan=False)
    out = bed.run("ADD", conf, ctr).ok().json
    vlans = json.loads(bed.host.run("bridge", "-j", "vlan", "show", "dev", out["interfaces"][1]["name"]).stdout)
    assert [v["vlan"] for v in vlans[0]["vlans"]] == [100]
    tconf = bed.conf(vlanTrunk=[{"id": 5}, {"minID": 10, "maxID": 12}], ipam={})
    tout = bed.run("ADD", tconf, trunk, cid="t").ok().json
    vlans = json.loads(bed.host.run("bridge", "-j", "vlan", "show", "dev", tout["interfaces"][1]["name"]).stdout)
    assert {v["vlan"] for v in vlans[0]["vlans"]} >= {1, 5, 10}
    bed.run("DEL", conf, ctr).ok()
    bed.run("DEL", tconf, trunk, cid="t").ok()


# ---- DEL is forgiving ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_del_after_netns_is_gone_still_cleans_up(bed, version):
    ctr = bed.container()
    conf = bed.conf(version, ipMasq=True, macspoofchk=version not in ("0.1.0", "0.2.0"))
    bed.run("ADD", conf, ctr).ok()
    assert "-A POSTROUTING -s 10.10.0.2/32" in bed.nat()
    ctr.remove()
    bed.run("DEL", conf, ctr).ok()
    assert_clean(bed, bridge_kept=True)
    bed.run("DEL", conf, netns="").ok()


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_del_of_unknown_container_and_empty_netns(bed, version):
    ctr = bed.container()
    conf = bed.conf(version, ipMasq=True)
    bed.run("DEL", conf, ctr, cid="never-added").ok()
    bed.run("DEL", conf, netns="").ok()
    bed.run("DEL", conf, netns="/run/netns/does-not-exist").ok()


# ---- CHECK ----------------------------------------------------------------------------------------


def test_check_notices_what_changed(bed):
    ctr = bed.container()
    conf = bed.conf(isDefaultGateway=True)
    out = bed.run("ADD", conf, ctr).ok().json
    prev = with_prev(conf, out)
    bed.run("CHECK", prev, ctr).ok()

    missing = bed.run("CHECK", conf, ctr)
    assert missing.status == 1 and "prevResult" in missing.json["msg"]

    wrong_mac = json.loads(json.dumps(prev))
    wrong_mac["prevResult"]["interfaces"][2]["mac"] = "02:12:34:56:78:9a"
    assert bed.run("CHECK", wrong_mac, ctr).status == 1

    other = bed.container()
    wrong_sandbox = json.loads(json.dumps(prev))
    assert bed.run("CHECK", wrong_sandbox, other).status == 1

    ctr.run("ip", "route", "del", "default")
    gone_route = bed.run("CHECK", prev, ctr)
    assert gone_route.status == 1 and "route" in gone_route.json["msg"]

    ctr.run("ip", "addr", "del", "10.10.0.2/24", "dev", "eth0")
    gone_addr = bed.run("CHECK", prev, ctr)
    assert gone_addr.status == 1 and "10.10.0.2" in gone_addr.json["msg"]

    port = out["interfaces"][1]["name"]
    bed.host.run("ip", "link", "set", port, "nomaster")
    assert bed.run("CHECK", prev, ctr).status == 1
    bed.run("DEL", conf, ctr).ok()
    assert bed.run("CHECK", prev, ctr).status == 1


# ---- GC and STATUS (1.1.0) --------------------------------------------------------------------------


def test_gc_removes_stale_masquerade_and_reservations(bed):
    a, b = bed.container(), bed.container()
    conf = bed.conf("1.1.0", ipMasq=True, ipam=bed.ipam(V4))
    bed.run("ADD", conf, a, cid="keep").ok()
    bed.run("ADD", conf, b, cid="stale").ok()
    b.remove()
    gc_conf = {**conf, "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]}
    bed.run("GC", gc_conf).ok()
    nat = bed.nat()
    assert "10.10.0.2" in nat and "10.10.0.3" not in nat
    assert bed.reserved() == {"10.10.0.2"}
    bed.run("DEL", conf, a, cid="keep").ok()
    assert_clean(bed, bridge_kept=True)


def test_status_forwards_to_ipam(bed):
    conf = bed.conf("1.1.0")
    bed.run("STATUS", conf).ok()
    bed.run("STATUS", bed.conf("1.1.0", ipam={})).ok()
    broken = bed.run("STATUS", bed.conf("1.1.0", ipam={"type": "no-such-ipam"}))
    assert broken.status == 1


def test_gc_and_status_need_1_1_0(bed):
    out = bed.run("GC", bed.conf("1.0.0"))
    assert out.status == 1 and out.json["code"] == 1


# ---- light imports --------------------------------------------------------------------------------


def test_module_import_is_light():
    """The plugin module itself pulls in no netlink, IPAM or masquerade code."""
    code = ("import sys; import plugins.main.bridge; "
            "print(','.join(m for m in ('cni.netlink','cni.masq','cni.ipam','cni.link','subprocess','pyroute2') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(Path(__file__).resolve().parent.parent), check=True).stdout.strip()
    assert out == ""
