"""The bridge plugin side by side with Go's (/usr/lib/cni/bridge, 1.1.1).

Each scenario runs Go in one host netns and ours in another, with identical
inputs (same network name, container ID, IPAM binary and ranges), then compares
the result JSON (MACs, veth names and netns paths masked) and the state of both
worlds: links, addresses, routes, NAT and nftables rules, sysctls. Only keys the
Go 1.1.1 bridge knows are used here.

MACs are random, so they are compared by their relations: which MAC the bridge
keeps, whether it is a port's, whether the result says what the links have.
Known, deliberate differences are listed in Documentation/bridge.md and are
not compared: the bridge MAC is pinned by us in every mode (Go pins it only as a
gateway), and link-local IPv6 addresses follow the random MACs.
"""
from __future__ import annotations

import json
import re

import pytest

from conftest import GO_BIN, GO_VERSIONS, needs_root

pytestmark = needs_root

NET = "sidebyside"
BRIDGE = "brcmp0"
IPAM_V4 = [{"subnet": "10.20.0.0/24"}]
IPAM_V6 = [{"subnet": "fd20::/64"}]

MAC = re.compile(r"\b[0-9a-f]{2}(:[0-9a-f]{2}){5}\b")
VETH = re.compile(r"\bveth[0-9a-f]{8}\b")


def mask(text: str, netns_path: str) -> str:
    if netns_path:
        text = text.replace(netns_path, "SANDBOX")
    return VETH.sub("VETH", MAC.sub("MAC", text))


class World:
    """One host netns and its containers, driven by one plugin set."""

    def __init__(self, plugins, make_netns, data_dir) -> None:
        self.plugins = plugins
        self.host = make_netns("pycni-cmp-h")
        self.containers = {}
        self.make_netns = make_netns
        self.data_dir = data_dir

    def ctr(self, cid: str):
        if cid not in self.containers:
            self.containers[cid] = self.make_netns("pycni-cmp-c")
        return self.containers[cid]

    def run(self, command: str, conf: dict, cid: str = "c1"):
        conf = json.loads(json.dumps(conf).replace("@DATA@", str(self.data_dir)))
        ctr = self.ctr(cid)
        out = self.plugins.run("bridge", command, conf, containerid=cid, netns=ctr.path, in_netns=self.host.path,
                               cni_path=str(GO_BIN))
        return out, ctr

    # -- state, normalised ------------------------------------------------------------------

    def state(self) -> dict:
        world = {"host": ns_state(self.host, host=True)}
        for cid, ctr in sorted(self.containers.items()):
            world[cid] = ns_state(ctr, host=False)
        text = json.dumps(world, indent=1, sort_keys=True)
        for ctr in self.containers.values():
            text = text.replace(ctr.name, "CTRNS")
        world = json.loads(mask(text, ""))
        for state in world.values():
            for key, value in state.items():
                if isinstance(value, list):
                    state[key] = sorted(value, key=lambda v: json.dumps(v, sort_keys=True))
        return world


def settle(ns, timeout: float = 5.0) -> None:
    """Let IPv6 DAD finish: the local and anycast routes of an address appear only then."""
    import time

    deadline = time.monotonic() + timeout
    while ns.run("ip", "-6", "addr", "show", "tentative").stdout.strip() and time.monotonic() < deadline:
        time.sleep(0.05)


def ns_state(ns, host: bool) -> dict:
    settle(ns)
    links = {}
    index_name = {}
    for link in ns.ip_json("-d", "link", "show"):
        index_name[link["ifindex"]] = link["ifname"]
    for link in ns.ip_json("-d", "link", "show"):
        info = link.get("linkinfo", {})
        slave = info.get("info_slave_data", {})
        links[link["ifname"]] = {
            "name": link["ifname"],
            "kind": info.get("info_kind", ""),
            "mtu": link["mtu"],
            # Carrier follows the ports asynchronously: not part of what the plugins set.
            "flags": sorted(f for f in link["flags"] if f not in ("LOWER_UP", "NO-CARRIER")),
            "master": link.get("master", ""),
            "promiscuity": link.get("promiscuity"),
            "port": {k: slave.get(k) for k in ("hairpin", "isolated", "learning", "flood", "state") if k in slave},
        }
    addrs = sorted(f"{a['ifname']} {i['local']}/{i['prefixlen']} {i.get('scope')}"
                   for a in ns.ip_json("addr", "show") for i in a.get("addr_info", [])
                   if not i["local"].startswith("fe80"))
    routes = []
    for family in ("-4", "-6"):
        for r in ns.ip_json(family, "route", "show", "table", "all"):
            if r["dst"].startswith(("fe80", "ff00")) or r.get("type") == "multicast":
                continue
            routes.append(" ".join(str(r.get(k, "")) for k in ("type", "dst", "gateway", "dev", "protocol", "scope",
                                                               "metric", "table", "prefsrc")))
    knobs = ("ipv4.conf.{}.arp_notify", "ipv6.conf.{}.accept_dad", "ipv6.conf.{}.enhanced_dad",
             "ipv6.conf.{}.accept_ra", "ipv6.conf.{}.disable_ipv6", "ipv6.conf.{}.forwarding")
    for name, entry in links.items():
        if name != "lo":
            entry["sysctls"] = {k.format("IF"): sysctl(ns, "net." + k.format(name)) for k in knobs}
    sysctls = {n: sysctl(ns, n) for n in ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")}
    state = {"links": list(links.values()), "addrs": addrs, "routes": sorted(routes), "sysctls": sysctls}
    if host:
        state["nat"] = sorted(line for tool in ("iptables-save", "ip6tables-save")
                              for line in ns.run(tool, "-t", "nat").stdout.splitlines()
                              if line.startswith(("-A", ":CNI")))
        state["nft_bridge"] = ns.run("nft", "list", "table", "bridge", "nat", check=False).stdout
    return state


def sysctl(ns, name: str) -> str:
    return ns.run("sysctl", "-n", name, check=False).stdout.strip()


@pytest.fixture
def worlds(go_plugins, source_plugins, make_netns, tmp_path):
    (tmp_path / "go").mkdir()
    (tmp_path / "ours").mkdir()
    return World(go_plugins, make_netns, tmp_path / "go"), World(source_plugins, make_netns, tmp_path / "ours")


def base(version: str, **keys) -> dict:
    conf = {"cniVersion": version, "name": NET, "type": "bridge", "bridge": BRIDGE,
            "ipam": {"type": "host-local", "dataDir": "@DATA@", "ranges": [IPAM_V4, IPAM_V6]}}
    conf.update(keys)
    return conf


SCENARIOS = {
    "gateway-masq": dict(isGateway=True, ipMasq=True),
    "default-gateway": dict(isDefaultGateway=True),
    "plain": dict(),
    "hairpin-mtu-mac": dict(hairpinMode=True, mtu=1400, runtimeConfig={"mac": "02:42:00:00:00:07"}),
    "promisc": dict(promiscMode=True, isGateway=True),
    "enabledad": dict(enabledad=True, isGateway=True),
    "macspoofchk": dict(macspoofchk=True, isGateway=True),
    "routes": dict(isGateway=True, ipam={"type": "host-local", "dataDir": "@DATA@", "ranges": [IPAM_V4],
                                          "routes": [{"dst": "10.60.0.0/16"}, {"dst": "10.61.0.0/16",
                                                                                 "gw": "10.20.0.254"}]}),
    "l2": dict(ipam={}),
}


def assert_same_state(go, ours) -> None:
    import difflib

    want = json.dumps(go.state(), indent=1, sort_keys=True).splitlines()
    got = json.dumps(ours.state(), indent=1, sort_keys=True).splitlines()
    diff = "\n".join(difflib.unified_diff(want, got, "go", "ours", lineterm="", n=4))
    assert not diff, diff


def compare(go, ours, conf: dict, cids=("c1",)) -> None:
    for cid in cids:
        g, gctr = go.run("ADD", conf, cid)
        o, octr = ours.run("ADD", conf, cid)
        assert g.status == o.status == 0, (g.out, o.out)
        assert mask(o.out, octr.path) == mask(g.out, gctr.path)
    assert_same_state(go, ours)
    for cid in cids:
        g, _ = go.run("DEL", conf, cid)
        o, _ = ours.run("DEL", conf, cid)
        assert g.status == o.status == 0, (g.out, o.out)
    assert_same_state(go, ours)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_same_result_and_state_as_go(worlds, scenario, version):
    go, ours = worlds
    compare(go, ours, base(version, **SCENARIOS[scenario]), cids=("c1", "c2"))


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0"])
def test_legacy_versions_same_as_go(worlds, version):
    go, ours = worlds
    compare(go, ours, base(version, isGateway=True, ipMasq=True))


def test_check_agrees_with_go(worlds):
    go, ours = worlds
    conf = base("1.0.0", isDefaultGateway=True)
    verdicts = []
    for world in (go, ours):
        out, ctr = world.run("ADD", conf)
        prev = {**conf, "prevResult": out.json}
        ok, _ = world.run("CHECK", prev)
        ctr.run("ip", "route", "del", "default")
        broken, _ = world.run("CHECK", prev)
        verdicts.append((ok.status, broken.status))
        world.run("DEL", conf)
    assert verdicts[0] == verdicts[1] == (0, 1)


def test_veth_txqlen_as_go(worlds):
    go, ours = worlds
    conf = base("1.0.0", ipam={})
    qlens = []
    for world in (go, ours):
        out, ctr = world.run("ADD", conf)
        host_veth = out.json["interfaces"][1]["name"]
        qlens.append((world.host.link(host_veth).get("txqlen", 0), ctr.link("eth0").get("txqlen", 0)))
        world.run("DEL", conf)
    assert qlens[0] == qlens[1]


def bridge_mac_relations(world: World, conf: dict) -> dict:
    """How the bridge's MAC relates to its creation, its ports and the results, while three
    containers come and one goes (MACs are random: only relations compare across worlds)."""
    results = []
    with world.host.watch_links() as watch:
        for cid in ("c1", "c2", "c3"):
            out, _ = world.run("ADD", conf, cid)
            assert out.status == 0, out.out
            results.append(out.json)
        out, _ = world.run("DEL", conf, "c2")
        assert out.status == 0, out.out
        history = watch.history()
    created, now = history[BRIDGE][0], world.host.link(BRIDGE)["address"]
    ports = {link["ifname"]: link["address"] for link in world.host.ip_json("link", "show", "master", BRIDGE)}
    relations = {
        "bridge ends on its creation MAC": now == created,
        "bridge MAC is no port's": now not in ports.values(),
        "ports keep their own MACs": all(history[name] == [mac] for name, mac in ports.items()),
        "port count": len(ports),
    }
    if "interfaces" in results[0]:  # 0.1.0 and 0.2.0 results have none
        relations["results name the live bridge MAC"] = [r["interfaces"][0]["mac"] == now for r in results]
        relations["results name the host veth MACs"] = [
            r["interfaces"][1]["mac"] == history[r["interfaces"][1]["name"]][-1] for r in results]
        first_bridge, first_port = results[0]["interfaces"][:2]
        relations["first result: the bridge has its port's MAC"] = first_bridge["mac"] == first_port["mac"]
    for cid in ("c1", "c3"):
        world.run("DEL", conf, cid)
    return relations


@pytest.mark.parametrize("version", GO_VERSIONS)
def test_bridge_mac_as_go_for_a_gateway(worlds, version):
    go, ours = worlds
    conf = base(version, isGateway=True)
    want = bridge_mac_relations(go, conf)
    assert bridge_mac_relations(ours, conf) == want
    assert want["bridge ends on its creation MAC"] and want["bridge MAC is no port's"], "Go changed"


def test_l2_bridge_mac_differs_from_go_as_documented(worlds):
    """Without a gateway Go leaves the bridge unpinned: it takes its ports' MACs, and each
    result reports the MAC of that moment. We keep and report the creation MAC (our extension)."""
    go, ours = worlds
    relations = [bridge_mac_relations(world, base("1.0.0", ipam={})) for world in (go, ours)]
    assert relations[0]["first result: the bridge has its port's MAC"] is True
    assert relations[0]["bridge MAC is no port's"] is False
    assert relations[1]["first result: the bridge has its port's MAC"] is False
    assert relations[1]["bridge MAC is no port's"] and relations[1]["bridge ends on its creation MAC"]
    assert all(relations[1]["results name the live bridge MAC"])
