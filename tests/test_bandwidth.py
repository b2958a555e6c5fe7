"""bandwidth: the qdiscs side by side with Go, chained after bridge, DEL without netns, rollback."""
from __future__ import annotations

import json
import signal

import pytest

from conftest import needs_root
from reliability_env import no_traceback

pytestmark = needs_root

NAME = "bwnet"
HOST_VETH = "vethbw0"
GO_BW_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")  # Debian's Go bandwidth: 0.3.0 and up
LIMITS = {"ingressRate": 8_000_000, "ingressBurst": 80_000, "egressRate": 16_000_000, "egressBurst": 160_000}


def ifb_of(cid: str = "ctr1") -> str:
    import hashlib

    return ("bwp" + hashlib.sha512((NAME + cid).encode()).hexdigest())[:15]


@pytest.fixture
def pair(make_netns):
    """A host netns and a container netns joined by a veth (host end up), as ptp or bridge leave them."""
    def make():
        host, ctr = make_netns("pycni-host"), make_netns("pycni-ctr")
        host.run("ip", "link", "add", HOST_VETH, "mtu", "1400", "type", "veth", "peer", "name", "eth0", "netns", ctr.name)
        host.run("ip", "link", "set", HOST_VETH, "up")
        ctr.run("ip", "link", "set", "eth0", "up")
        return host, ctr
    return make


def prev_result(version: str, ctr) -> dict:
    ip = {"address": "10.99.0.2/24", "gateway": "10.99.0.1", "interface": 1}
    if version in ("0.3.0", "0.3.1", "0.4.0"):
        ip["version"] = "4"
    return {"cniVersion": version, "interfaces": [{"name": HOST_VETH}, {"name": "eth0", "sandbox": ctr.path}],
            "ips": [ip], "dns": {}}


def bw_conf(version: str, prev: dict | None, **limits) -> dict:
    conf = {"cniVersion": version, "name": NAME, "type": "bandwidth", **limits}
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def run(plugins, command, conf, host, ctr, cid="ctr1", **kw):
    return plugins.run("bandwidth", command, conf, containerid=cid, netns=ctr.path if ctr else "",
                       in_netns=host.path, **kw)


def qdiscs(host) -> list[dict]:
    return [q for q in json.loads(host.run("tc", "-j", "qdisc", "show").stdout) if q["kind"] != "noqueue"]


def redirect_filter(host) -> str:
    """The host end's ingress filters; Go adds a second, unreachable mirred action: cut it off."""
    text = host.run("tc", "filter", "show", "dev", HOST_VETH, "ingress", check=False).stdout
    return text.split("\taction order 2:")[0].rstrip()


def ifb_link(host, name: str) -> dict | None:
    link = host.link(name)
    if link is None:
        return None
    return {k: link.get(k) for k in ("mtu", "flags", "operstate", "link_type")} | {"kind": link["linkinfo"]["info_kind"]}


def shaping_state(host) -> dict:
    return {"qdiscs": qdiscs(host), "filter": redirect_filter(host), "ifb": ifb_link(host, ifb_of())}


# ---- side by side with Go ----------------------------------------------------------------------


@pytest.mark.parametrize("version", GO_BW_VERSIONS)
def test_same_qdiscs_and_result_as_go(plugins, go_plugins, pair, version):
    results, states = [], []
    for impl in (plugins, go_plugins):
        host, ctr = pair()
        out = run(impl, "ADD", bw_conf(version, prev_result(version, ctr), **LIMITS), host, ctr).ok()
        result = out.json
        ifb = result["interfaces"][-1]
        assert ifb["name"] == ifb_of() and ifb["mac"] == host.link(ifb_of())["address"]
        ifb["mac"] = "ifb-mac"
        for i in result["interfaces"]:
            i.pop("sandbox", None)
        results.append(result)
        states.append(shaping_state(host))
        if version != "0.3.0" and version != "0.3.1":
            run(impl, "CHECK", bw_conf(version, prev_result(version, ctr), **LIMITS), host, ctr).ok()
    assert results[0] == results[1]
    assert states[0] == states[1]
    assert [q["kind"] for q in states[0]["qdiscs"]] == ["tbf", "ingress", "tbf"]
    assert states[0]["qdiscs"][0]["options"] == {"rate": 1_000_000, "burst": 10_000, "lat": 25_000}
    assert f"Egress Redirect to device {ifb_of()}) stolen" in states[0]["filter"]


def test_versions(plugins, go_plugins, pair):
    host, ctr = pair()
    for impl in (plugins, go_plugins):
        out = run(impl, "ADD", bw_conf("0.2.0", prev_result("1.0.0", ctr), **LIMITS), host, ctr)
        assert out.status == 1 and out.json["code"] == 1, out.out
    assert qdiscs(host) == []
    out = run(plugins, "ADD", bw_conf("1.1.0", prev_result("1.1.0", ctr), **LIMITS), host, ctr).ok()
    assert out.json["cniVersion"] == "1.1.0" and out.json["interfaces"][-1]["name"] == ifb_of()
    run(plugins, "CHECK", bw_conf("1.1.0", prev_result("1.1.0", ctr), **LIMITS), host, ctr).ok()


def test_one_direction_and_none(plugins, pair):
    host, ctr = pair()
    prev = prev_result("1.0.0", ctr)
    out = run(plugins, "ADD", bw_conf("1.0.0", prev), host, ctr).ok()
    assert out.json == prev and qdiscs(host) == []
    out = run(plugins, "ADD", bw_conf("1.0.0", prev, ingressRate=8000, ingressBurst=800), host, ctr).ok()
    assert out.json == prev and [q["kind"] for q in qdiscs(host)] == ["tbf"] and host.link(ifb_of()) is None
    run(plugins, "DEL", bw_conf("1.0.0", prev, ingressRate=8000, ingressBurst=800), host, None).ok()
    assert qdiscs(host) == []
    out = run(plugins, "ADD", bw_conf("1.0.0", prev, egressRate=8000, egressBurst=800), host, ctr).ok()
    assert [q["kind"] for q in qdiscs(host)] == ["ingress", "tbf"] and host.link(ifb_of())["mtu"] == 1400


# ---- chained after a real bridge, with the runtime's capability ---------------------------------------


def test_chained_after_bridge_check_and_del_without_netns(plugins, source_plugins, make_netns, data_dir):
    host, ctr = make_netns("pycni-host"), make_netns("pycni-ctr")
    bridge = {"cniVersion": "1.0.0", "name": NAME, "type": "bridge", "bridge": "bwbr0", "isGateway": True,
              "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "dataDir": str(data_dir)}}
    prev = source_plugins.run("bridge", "ADD", bridge, netns=ctr.path, in_netns=host.path).ok().json
    try:
        veth = prev["interfaces"][1]["name"]
        conf = bw_conf("1.0.0", prev, runtimeConfig={"bandwidth": {k: v for k, v in LIMITS.items()}})
        out = run(plugins, "ADD", conf, host, ctr).ok()
        assert out.json["interfaces"][:3] == prev["interfaces"] and out.json["interfaces"][3]["name"] == ifb_of()
        assert {q["dev"] for q in qdiscs(host)} == {veth, ifb_of()}
        run(plugins, "CHECK", conf, host, ctr).ok()
        host.run("tc", "qdisc", "del", "dev", ifb_of(), "root")
        failed = run(plugins, "CHECK", conf, host, ctr)
        assert failed.status == 1 and "tbf" in failed.json["msg"], failed.out
        # containerd: DEL with an empty CNI_NETNS; here also without prevResult
        run(plugins, "DEL", bw_conf("1.0.0", None, runtimeConfig=conf["runtimeConfig"]), host, None).ok()
        assert qdiscs(host) == [] and host.link(ifb_of()) is None
        run(plugins, "DEL", bw_conf("1.0.0", None), host, None).ok()  # again: nothing there is success
    finally:
        source_plugins.run("bridge", "DEL", bridge, netns=ctr.path, in_netns=host.path)


def test_del_removes_what_go_leaves(plugins, go_plugins, pair):
    """Go's DEL removes only the ifb; ours also the tbf and the redirect on a host end still there."""
    leftovers = []
    for impl in (go_plugins, plugins):
        host, ctr = pair()
        conf = bw_conf("1.0.0", prev_result("1.0.0", ctr), **LIMITS)
        run(impl, "ADD", conf, host, ctr).ok()
        run(impl, "DEL", conf, host, None).ok()
        assert host.link(ifb_of()) is None
        leftovers.append([q["kind"] for q in qdiscs(host)])
    assert leftovers == [["tbf", "ingress"], []]


# ---- failures leave nothing ---------------------------------------------------------------------------


def test_taken_ifb_name_rolls_back_and_keeps_the_other_ifb(plugins, pair):
    host, ctr = pair()
    host.run("ip", "link", "add", ifb_of(), "type", "ifb")
    before = shaping_state(host)
    out = run(plugins, "ADD", bw_conf("1.0.0", prev_result("1.0.0", ctr), **LIMITS), host, ctr)
    no_traceback(out)
    assert out.status == 1, out.out
    assert shaping_state(host) == before and host.link(ifb_of()) is not None


@pytest.mark.parametrize("stage", ["ingress", "ifb", "redirect"])
def test_killed_mid_add_then_del_without_netns_cleans(plugins, pair, stage):
    host, ctr = pair()
    conf = bw_conf("1.0.0", prev_result("1.0.0", ctr), **LIMITS)
    out = run(plugins, "ADD", conf, host, ctr, env={"PYCNI_TEST_KILL_AT": stage})
    assert out.status == -signal.SIGKILL
    assert qdiscs(host) != []
    run(plugins, "DEL", conf, host, None).ok()
    assert qdiscs(host) == [] and host.link(ifb_of()) is None


def test_missing_netns_and_wrong_interface(plugins, pair):
    host, ctr = pair()
    conf = bw_conf("1.0.0", prev_result("1.0.0", ctr), **LIMITS)
    gone = plugins.run("bandwidth", "ADD", conf, netns="/run/netns/pycni-gone", in_netns=host.path)
    no_traceback(gone)
    assert gone.status == 1
    wrong = run(plugins, "ADD", conf, host, ctr, ifname="eth9")
    assert wrong.status == 1 and "no veth peer" in wrong.json["msg"], wrong.out
    unlisted = prev_result("1.0.0", ctr)
    unlisted["interfaces"][0]["name"] = "vethother"
    unlisted = bw_conf("1.0.0", unlisted, **LIMITS)
    out = run(plugins, "ADD", unlisted, host, ctr)
    assert out.status == 1 and "host ns" in out.json["msg"], out.out
    assert qdiscs(host) == [] and host.link(ifb_of()) is None


# ---- shapedSubnets / unshapedSubnets: HTB classes (newer reference releases; not in Debian's Go) ----------


def classes(host, dev: str) -> list[str]:
    return sorted(l.strip() for l in host.run("tc", "class", "show", "dev", dev).stdout.splitlines() if l.strip())


def u32_matches(host, dev: str) -> list[tuple[str, str, str]]:
    """(protocol, flowid, match lines) of each u32 rule under the root qdisc."""
    text = host.run("tc", "filter", "show", "dev", dev).stdout  # root filters only: the ifb and the veth root
    found = []
    for block in text.split("filter parent 1: ")[1:]:
        if "flowid" in block:
            proto = block.split()[1]
            flowid = block.split("flowid ")[1].split()[0]
            found.append((proto, flowid, " ".join(l.strip() for l in block.splitlines() if "match" in l)))
    return sorted(found)


@pytest.mark.parametrize("key", ["shapedSubnets", "unshapedSubnets"])
def test_subnets_make_htb_classes(plugins, pair, key):
    host, ctr = pair()
    subnets = ["10.0.0.0/8", "fd00:1::/48", "192.168.7.9/24"]
    conf = bw_conf("1.1.0", prev_result("1.1.0", ctr), runtimeConfig={"bandwidth": {**LIMITS, key: subnets}})
    run(plugins, "ADD", conf, host, ctr).ok()
    exclude = key == "unshapedSubnets"
    default = "0x30" if exclude else "0x1"
    for dev, rate, ceil in ((HOST_VETH, "8Mbit", "16Mbit"), (ifb_of(), "16Mbit", "32Mbit")):
        root = [q for q in qdiscs(host) if q["dev"] == dev and q.get("root")]
        assert root[0]["kind"] == "htb" and root[0]["options"]["default"] == default, root
        assert classes(host, dev) == sorted([
            "class htb 1:1 root prio 0 rate 800Gbit ceil 800Gbit burst 0b cburst 0b",
            f"class htb 1:30 root prio 0 rate {rate} ceil {ceil} burst {'10000b' if dev == HOST_VETH else '20000b'} "
            f"cburst {'20000b' if dev == HOST_VETH else '40000b'}"])
        flow = "1:1" if exclude else "1:30"
        assert u32_matches(host, dev) == sorted([
            ("ip", flow, "match 0a000000/ff000000 at 16"),
            ("ip", flow, "match c0a80700/ffffff00 at 16"),
            ("ipv6", flow, "match fd000001/ffffffff at 24 match 00000000/ffff0000 at 28")])
    assert f"Egress Redirect to device {ifb_of()}" in redirect_filter(host)
    run(plugins, "CHECK", conf, host, ctr).ok()
    other = json.loads(json.dumps(conf))
    other["runtimeConfig"]["bandwidth"][key] = subnets[:2] + ["172.16.0.0/12"]
    failed = run(plugins, "CHECK", other, host, ctr)
    assert failed.status == 1 and "172.16.0.0/12" in failed.json["msg"], failed.out
    run(plugins, "DEL", bw_conf("1.1.0", None), host, None).ok()
    assert qdiscs(host) == [] and host.link(ifb_of()) is None
