"""sbr: source-based routing, side by side with Go's sbr on identical netns, and chained for real.

The side-by-side tests build the same interface (addresses, routes) in two
throw-away netns, run our sbr in one and /usr/lib/cni/sbr in the other, and
compare results, `ip rule` and `ip route show table all`. The chained tests
run our ptp, bridge and macvlan first, then sbr, then CHECK of both (the main
plugin must find its routes in sbr's tables), then DEL in reverse order.
"""
from __future__ import annotations

import json
import os

import pytest

from conftest import ALL_VERSIONS, GO_VERSIONS, needs_root
from reliability_env import uplink

pytestmark = needs_root

V4, V4_GW, V6, V6_GW = "10.71.0.5/24", "10.71.0.1", "fd71::5/64", "fd71::1"
V4_B = "10.72.0.9/24"  # a second IPv4 address, in another subnet, without a gateway


def interface_like_a_main_plugin(ns, *, second_v4: bool = False) -> None:
    """eth0 as ptp/macvlan leave it: addresses, the IPAM routes, an IPv6 default route; a peer
    link beside it whose routes must stay where they are."""
    ns.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0")
    ns.run("ip", "link", "set", "other0", "up")
    ns.run("ip", "addr", "add", V4, "dev", "eth0")
    if second_v4:
        ns.run("ip", "addr", "add", V4_B, "dev", "eth0")
    ns.run("ip", "addr", "add", V6, "dev", "eth0", "nodad")
    ns.run("ip", "link", "set", "eth0", "up")
    ns.run("ip", "route", "add", "default", "via", V4_GW, "dev", "eth0")
    ns.run("ip", "route", "add", "10.99.0.0/16", "via", V4_GW, "dev", "eth0")
    ns.run("ip", "-6", "route", "add", "default", "via", V6_GW, "dev", "eth0")
    ns.run("ip", "addr", "add", "192.168.71.1/24", "dev", "other0")


def prev_result(version: str, netns: str, *, second_v4: bool = False) -> dict:
    if version in ("0.1.0", "0.2.0"):
        return {"cniVersion": version, "ip4": {"ip": V4, "gateway": V4_GW}, "ip6": {"ip": V6, "gateway": V6_GW},
                "dns": {}}
    ips = [{"address": V4, "gateway": V4_GW}] + ([{"address": V4_B}] if second_v4 else []) + \
          [{"address": V6, "gateway": V6_GW}]
    for ip in ips:
        ip["interface"] = 0
        if version in ("0.3.0", "0.3.1", "0.4.0"):
            ip["version"] = "6" if ":" in ip["address"] else "4"
    return {"cniVersion": version, "interfaces": [{"name": "eth0", "sandbox": netns}], "ips": ips,
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.99.0.0/16", "gw": V4_GW}], "dns": {}}


def sbr_conf(version: str, netns: str, **extra) -> dict:
    conf = {"cniVersion": version, "name": "sbrnet", "type": "sbr", "prevResult": prev_result(version, netns)}
    conf.update(extra)
    return conf


def routing(ns) -> dict:
    """Rules of both families and every route but the local table's (kernel-made, per address)."""
    rules = ns.ip_json("-4", "rule", "show") + ns.ip_json("-6", "rule", "show")
    routes = [r for r in ns.ip_json("-4", "route", "show", "table", "all") + ns.ip_json("-6", "route", "show", "table", "all")
              if r.get("table") != "local"]
    return {"rules": rules, "routes": routes}


def our_rules(ns) -> list[dict]:
    return [r for r in routing(ns)["rules"] if r.get("src") != "all"]


def tables_with_routes(ns) -> set[str]:
    return {r.get("table", "main") for r in routing(ns)["routes"]}


def run(plugins, command, conf, ns, **kw):
    return plugins.run("sbr", command, conf, netns=ns.path if ns else "", **kw)


def without_sandbox(result: dict) -> dict:
    for iface in result.get("interfaces", []):
        iface.pop("sandbox", None)
    return result


# ---- side by side with Go ----------------------------------------------------------------


def test_same_rules_tables_and_results_as_go(plugins, go_plugins, make_netns):
    for version in GO_VERSIONS:
        ours, theirs = make_netns("pycni-sbr"), make_netns("pycni-sbrgo")
        for ns in (ours, theirs):
            interface_like_a_main_plugin(ns)
        out = run(plugins, "ADD", sbr_conf(version, ours.path), ours).ok()
        go = run(go_plugins, "ADD", sbr_conf(version, theirs.path), theirs).ok()
        assert without_sandbox(out.json) == without_sandbox(go.json), version
        assert routing(ours) == routing(theirs), version
        # What that state is: one table per address, from 100 on; the interface's routes left main.
        assert [(r["src"], r["table"]) for r in our_rules(ours)] == [("10.71.0.5", "100"), ("fd71::5", "101")]
        assert tables_with_routes(ours) == {"100", "101", "main"}
        assert all(r["dev"] == "other0" for r in routing(ours)["routes"] if r.get("table", "main") == "main")
        ours.remove()
        theirs.remove()


def test_every_version_passes_prev_result_through(plugins, make_netns):
    for version in ALL_VERSIONS:
        ns = make_netns("pycni-sbr")
        interface_like_a_main_plugin(ns)
        conf = sbr_conf(version, ns.path)
        out = run(plugins, "ADD", conf, ns).ok()
        assert out.json == conf["prevResult"] | {"cniVersion": version}, version
        ns.remove()


def test_two_addresses_of_one_family_get_a_table_each(plugins, go_plugins, make_netns):
    ours, theirs = make_netns("pycni-sbr"), make_netns("pycni-sbrgo")
    for ns, plugin_set in ((ours, plugins), (theirs, go_plugins)):
        interface_like_a_main_plugin(ns, second_v4=True)
        conf = sbr_conf("1.0.0", ns.path, prevResult=prev_result("1.0.0", ns.path, second_v4=True))
        run(plugin_set, "ADD", conf, ns).ok()
    assert routing(ours) == routing(theirs)
    # Each new rule goes before the last (the kernel counts priorities down from 32765).
    assert sorted((r["table"], r["src"], r["priority"]) for r in our_rules(ours)) == [
        ("100", "10.71.0.5", 32765), ("101", "10.72.0.9", 32764), ("102", "fd71::5", 32765)]


def test_table_taken_by_a_rule_is_skipped(plugins, make_netns):
    ns = make_netns("pycni-sbr")
    interface_like_a_main_plugin(ns)
    ns.run("ip", "rule", "add", "from", "10.123.0.0/16", "lookup", "100")
    run(plugins, "ADD", sbr_conf("1.0.0", ns.path), ns).ok()
    assert sorted((r["src"], r["table"]) for r in our_rules(ns)) == [("10.123.0.0", "100"), ("10.71.0.5", "101"),
                                                                    ("fd71::5", "102")]
    run(plugins, "DEL", sbr_conf("1.0.0", ns.path), ns).ok()
    assert [r["src"] for r in our_rules(ns)] == ["10.123.0.0"]  # not ours: stays


# ---- HEAD's `table` --------------------------------------------------------------------------


def test_configured_table_gets_the_rules_and_routes_stay(plugins, make_netns):
    ns = make_netns("pycni-sbr")
    interface_like_a_main_plugin(ns)
    before = routing(ns)
    conf = sbr_conf("1.1.0", ns.path, table=5001)
    run(plugins, "ADD", conf, ns).ok()
    assert [(r["src"], r["table"]) for r in our_rules(ns)] == [("10.71.0.5", "5001"), ("fd71::5", "5001")]
    assert routing(ns)["routes"] == before["routes"]
    run(plugins, "CHECK", conf, ns).ok()
    run(plugins, "DEL", conf, ns).ok()
    assert routing(ns) == before


# ---- DEL ------------------------------------------------------------------------------------


def test_del_removes_rules_and_tables_and_is_idempotent(plugins, make_netns):
    ns = make_netns("pycni-sbr")
    interface_like_a_main_plugin(ns)
    conf = sbr_conf("1.0.0", ns.path)
    run(plugins, "ADD", conf, ns).ok()
    run(plugins, "CHECK", conf, ns).ok()
    for _ in range(2):
        run(plugins, "DEL", conf, ns).ok()
        assert our_rules(ns) == [] and tables_with_routes(ns) == {"main"}
    out = run(plugins, "CHECK", conf, ns)
    assert out.status == 1 and "no rule" in out.json["msg"]


def test_del_after_the_link_is_gone_still_removes_the_rules(plugins, make_netns):
    """The rules outlive the link; prevResult names their addresses (1.0.0 sends it on DEL)."""
    ns = make_netns("pycni-sbr")
    interface_like_a_main_plugin(ns)
    conf = sbr_conf("1.0.0", ns.path)
    run(plugins, "ADD", conf, ns).ok()
    ns.run("ip", "link", "del", "eth0")
    assert len(our_rules(ns)) == 2
    run(plugins, "DEL", conf, ns).ok()
    assert our_rules(ns) == []


def test_del_without_netns_or_with_a_vanished_one(plugins, tmp_path):
    gone = tmp_path / "netns-gone"
    conf = sbr_conf("1.0.0", str(gone))
    plugins.run("sbr", "DEL", conf, netns="").ok()
    plugins.run("sbr", "DEL", conf, netns=str(gone)).ok()
    assert not gone.exists()  # Go's lock creates an empty file here


def test_check_fails_when_a_rule_is_removed(plugins, make_netns):
    ns = make_netns("pycni-sbr")
    interface_like_a_main_plugin(ns)
    conf = sbr_conf("1.0.0", ns.path)
    run(plugins, "ADD", conf, ns).ok()
    ns.run("ip", "-6", "rule", "del", "from", "fd71::5", "lookup", "101")
    out = run(plugins, "CHECK", conf, ns)
    assert out.status == 1 and "fd71::5" in out.json["msg"], out


# ---- failure --------------------------------------------------------------------------------


def test_failed_add_leaves_nothing(plugins, make_netns):
    """The second address's gateway is unreachable: its default route fails after the first
    address's rule, table and routes are in place; all of it must go."""
    ns = make_netns("pycni-sbr")
    interface_like_a_main_plugin(ns)
    before = routing(ns)
    prev = prev_result("1.0.0", ns.path)
    prev["ips"][1]["gateway"] = "fd99::1"
    out = run(plugins, "ADD", sbr_conf("1.0.0", ns.path, prevResult=prev), ns)
    assert out.status == 1 and "Traceback" not in out.err, out
    assert routing(ns) == before


@pytest.mark.parametrize("prev,msg", [(None, "prevResult"), ({"cniVersion": "1.0.0", "ips": []}, "no IP addresses")])
def test_add_needs_addresses_from_a_previous_plugin(plugins, make_netns, prev, msg):
    ns = make_netns("pycni-sbr")
    conf = sbr_conf("1.0.0", ns.path, prevResult=prev)
    out = run(plugins, "ADD", {k: v for k, v in conf.items() if v is not None}, ns)
    assert out.status == 1 and out.json["code"] == 7 and msg in out.json["msg"], out


# ---- chained for real: the main plugin's CHECK finds its routes in sbr's tables ------------------


def main_conf(kind: str, data_dir) -> dict:
    ipam = {"type": "host-local", "dataDir": str(data_dir),
            "ranges": [[{"subnet": "10.73.0.0/24"}], [{"subnet": "fd73::/64"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}, {"dst": "10.98.0.0/16"}]}
    conf = {"cniVersion": "1.0.0", "name": "chain", "type": kind, "ipam": ipam}
    if kind == "bridge":
        conf.update(bridge="sbrbr0", isGateway=True)
    elif kind == "macvlan":
        conf.update(master="uplink0")
    return conf


@pytest.mark.parametrize("kind", ["ptp", "bridge", "macvlan"])
def test_chained_after_a_main_plugin(plugins, host_ns, container_ns, data_dir, kind):
    if kind == "macvlan":
        uplink(host_ns)
    kw = dict(netns=container_ns.path, in_netns=host_ns.path)
    first = main_conf(kind, data_dir)
    result = plugins.run(kind, "ADD", first, **kw).ok().json
    sbr = {"cniVersion": "1.0.0", "name": "chain", "type": "sbr", "prevResult": result}
    final = plugins.run("sbr", "ADD", sbr, **kw).ok().json
    assert final == result
    assert {r["table"] for r in our_rules(container_ns)} == {"100", "101"}
    for conf in (first, sbr):
        plugins.run(conf["type"], "CHECK", conf | {"prevResult": final}, **kw).ok()
    for conf in (sbr, first):
        plugins.run(conf["type"], "DEL", conf | {"prevResult": final}, **kw).ok()
    assert our_rules(container_ns) == [] and tables_with_routes(container_ns) <= {"main"}
    assert container_ns.links() == ["lo"]
    assert not any(p.name[0].isdigit() for p in (data_dir / "chain").iterdir() if p.is_file())
