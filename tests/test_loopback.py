"""loopback: ADD/CHECK/DEL in throw-away netns, every spec version, side by side with Go."""
from __future__ import annotations

import pytest

from conftest import ALL_VERSIONS, GO_VERSIONS, needs_root

pytestmark = needs_root

PREV = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
        "ips": [{"address": "10.9.0.2/24", "interface": 0}]}


def conf(version: str, **extra) -> dict:
    return {"cniVersion": version, "name": "lonet", "type": "loopback", **extra}


def lo(ns) -> dict:
    [link] = ns.ip_json("addr", "show", "dev", "lo")
    return {"up": "UP" in link["flags"],
            "addrs": sorted(f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"])}


def expected_result(version: str, netns: str) -> dict:
    """The spec's shape for each version (Go prints the 1.0 shape for all of them: see SPEC.md)."""
    if version in ("0.1.0", "0.2.0"):
        return {"cniVersion": version, "ip4": {"ip": "127.0.0.1/8"}, "ip6": {"ip": "::1/128"}, "dns": {}}
    ips = [{"interface": 0, "address": "127.0.0.1/8"}, {"interface": 0, "address": "::1/128"}]
    if version < "1.0.0":
        ips = [dict(ip, version=v) for ip, v in zip(ips, ("4", "6"))]
    return {"cniVersion": version,
            "interfaces": [{"name": "lo", "mac": "00:00:00:00:00:00", "sandbox": netns}],
            "ips": ips, "dns": {}}


def test_add_check_del_every_version(plugins, make_netns):
    for version in ALL_VERSIONS:
        ns = make_netns("pycni-ctr")
        ns.run("ip", "link", "set", "lo", "down")
        # CNI_IFNAME is ignored: the plugin only ever handles lo
        out = plugins.run("loopback", "ADD", conf(version), netns=ns.path, ifname="eth5").ok().json
        assert out == expected_result(version, ns.path)
        assert lo(ns) == {"up": True, "addrs": ["127.0.0.1/8", "::1/128"]}
        if version >= "0.4.0":
            plugins.run("loopback", "CHECK", conf(version), netns=ns.path).ok()
        plugins.run("loopback", "DEL", conf(version), netns=ns.path).ok()
        assert not lo(ns)["up"]
        if version >= "0.4.0":
            bad = plugins.run("loopback", "CHECK", conf(version), netns=ns.path)
            assert bad.status == 1 and bad.json["msg"] == "loopback interface is down", bad


def test_chained_passes_prev_result_through(plugins, container_ns):
    out = plugins.run("loopback", "ADD", conf("1.0.0", prevResult=PREV), netns=container_ns.path).ok().json
    assert out == {**PREV, "dns": {}}


@pytest.mark.parametrize("netns", ["", "/run/netns/pycni-gone"])
def test_del_without_netns_succeeds(plugins, netns):
    plugins.run("loopback", "DEL", conf("1.0.0"), netns=netns).ok()


def test_side_by_side_with_go(plugins, go_plugins, make_netns):
    """The same link state; the same result where Go prints the version's real shape (1.0.0)."""
    for version in GO_VERSIONS:
        states, results = [], []
        for side in (plugins, go_plugins):
            ns = make_netns("pycni-ctr")
            ns.run("ip", "link", "set", "lo", "down")
            out = side.run("loopback", "ADD", conf(version), netns=ns.path).ok().json
            results.append({**out, "interfaces": [dict(i, sandbox="X") for i in out.get("interfaces", [])]})
            states.append(lo(ns))
            side.run("loopback", "DEL", conf(version), netns=ns.path).ok()
            states.append(lo(ns))
        assert states[0:2] == states[2:4], version
        if version == "1.0.0":
            assert results[0] == results[1]
        if version >= "0.3.0":
            prev = dict(PREV, cniVersion=version)
            if version < "1.0.0":
                prev["ips"] = [dict(ip, version="4") for ip in PREV["ips"]]
            chained = [side.run("loopback", "ADD", conf(version, prevResult=prev), netns=ns.path).ok().json
                       for side in (plugins, go_plugins)]
            assert chained[0] == chained[1], version


def test_check_fails_on_missing_netns(plugins):
    out = plugins.run("loopback", "CHECK", conf("1.0.0"), netns="/run/netns/pycni-gone")
    assert out.status == 1 and out.json["code"] != 0, out
