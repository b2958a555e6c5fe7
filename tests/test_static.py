"""static IPAM: results in every version side by side with Go, precedence of the address
sources, refusals, the commands with nothing to free, and macvlan + static in a netns."""
from __future__ import annotations

import json
import sys

import pytest

from conftest import ALL_VERSIONS, BIN, GO_VERSIONS, needs_root

LEGACY = ("0.1.0", "0.2.0")


def run(plugin_set, command: str, conf, **kw):
    """static never enters the netns, but runtimes always name one for ADD and CHECK."""
    kw.setdefault("netns", "/var/run/netns/pycni-unused")
    return plugin_set.run("static", command, conf, **kw)


def netconf(version: str = "1.0.0", **ipam) -> dict:
    return {"cniVersion": version, "name": "st", "type": "macvlan", "ipam": {"type": "static", **ipam}}


DUAL = dict(addresses=[{"address": "10.9.0.5/24", "gateway": "10.9.0.1"}, {"address": "fd09::5/64"}],
            routes=[{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.9.0.254"},
                    {"dst": "::/0", "gw": "fd09::1"}],
            dns={"nameservers": ["10.9.0.53"], "domain": "example.org", "search": ["a.example.org"],
                 "options": ["ndots:2"]})

# (id, ipam keys, top-level keys, CNI_ARGS): each answered identically by Go and by us.
SAME_AS_GO = [
    ("dual-stack", DUAL, {}, ""),
    ("no-addresses", {}, {}, ""),
    ("cni-args-ip-and-gateway", {"addresses": [{"address": "10.9.0.5/24"}]}, {},
     "IP=10.8.0.7/24, 10.9.0.7/24;GATEWAY=10.9.0.1"),
    ("cni-args-gateway-only-for-cni-args-ips", {"addresses": [{"address": "10.9.0.5/24"}]}, {},
     "IP=fd08::7/64;GATEWAY=10.9.0.1,fd08::1"),
    ("args-cni-ips-replace-all", {"addresses": [{"address": "10.9.0.5/24", "gateway": "10.9.0.1"}]},
     {"args": {"cni": {"ips": ["10.7.0.9/16", "fd07::9/64"]}}}, "IP=10.8.0.7/24"),
    ("runtime-config-ips-win", {"addresses": [{"address": "10.9.0.5/24"}]},
     {"args": {"cni": {"ips": ["10.7.0.9/16"]}}, "runtimeConfig": {"ips": ["10.6.0.9/24"]}}, ""),
    ("host-bits-kept", {"addresses": [{"address": "10.9.0.255/23"}]}, {}, "IgnoreUnknown=1;K8S_POD_NAME=p"),
]


@pytest.mark.parametrize("version", GO_VERSIONS)
@pytest.mark.parametrize("case", SAME_AS_GO, ids=[c[0] for c in SAME_AS_GO])
def test_same_as_go(source_plugins, go_plugins, version, case):
    _, ipam, top, args = case
    conf = {**netconf(version, **ipam), **top}
    ours, go = run(source_plugins, "ADD", conf, args=args), run(go_plugins, "ADD", conf, args=args)
    if go.status != 0:  # legacy versions cannot print a result without addresses
        assert ours.status == 1 and ours.json["msg"] == go.json["msg"], (ours.out, go.out)
        return
    assert ours.ok().json == go.json


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_every_command_every_version(plugins, version):
    conf = netconf(version, **DUAL)
    res = run(plugins, "ADD", conf).ok().json
    assert res["cniVersion"] == version and "interfaces" not in res
    if version in LEGACY:
        assert res["ip4"] == {"ip": "10.9.0.5/24", "gateway": "10.9.0.1",
                              "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.9.0.254"}]}
        assert res["ip6"] == {"ip": "fd09::5/64", "routes": [{"dst": "::/0", "gw": "fd09::1"}]}
    else:
        assert [ip["address"] for ip in res["ips"]] == ["10.9.0.5/24", "fd09::5/64"]
        assert ("version" in res["ips"][0]) == (version < "1.0.0")
    assert res["dns"] == DUAL["dns"]
    run(plugins, "DEL", conf).ok()
    run(plugins, "DEL", conf, netns="").ok()  # containerd's DEL names no netns
    if version >= "0.4.0":
        run(plugins, "CHECK", {**conf, "prevResult": res}).ok()
    if version >= "1.1.0":
        run(plugins, "GC", {**conf, "cni.dev/valid-attachments": []}).ok()
        run(plugins, "STATUS", conf).ok()


def test_1_1_0_route_fields(source_plugins):
    """mtu, advmss, priority, table and scope are printed from 1.1.0 on, and dropped below."""
    route = {"dst": "10.50.0.0/16", "gw": "10.9.0.1", "mtu": 1400, "advmss": 1360, "priority": 5, "table": 100,
             "scope": 0}
    conf = netconf("1.1.0", addresses=[{"address": "10.9.0.5/24"}], routes=[route])
    assert run(source_plugins, "ADD", conf).ok().json["routes"] == [route]
    conf["cniVersion"] = "1.0.0"
    assert run(source_plugins, "ADD", conf).ok().json["routes"] == [{"dst": "10.50.0.0/16", "gw": "10.9.0.1"}]


@pytest.mark.parametrize("version", LEGACY)
def test_legacy_versions_refuse_two_addresses_of_a_family(source_plugins, version):
    conf = netconf(version, addresses=[{"address": "10.9.0.5/24"}])
    out = run(source_plugins, "ADD", conf, args="IP=10.9.0.6/24")
    assert out.status == 1 and out.json["code"] == 7
    assert out.json["msg"] == f"CNI version {version} does not support more than 1 address per family"
    one_each = netconf(version, addresses=[{"address": "10.9.0.5/24"}, {"address": "fd09::5/64"}])
    run(source_plugins, "ADD", one_each).ok()


@pytest.mark.parametrize("ipam,args,field", [
    ({"addresses": [{"address": "10.9.0.5"}]}, "", "ipam.addresses[0].address"),
    ({"addresses": [{"address": "10.9.0.5/24", "gateway": "fd09::1"}]}, "", "ipam.addresses[0].gateway"),
    ({"addresses": [{"address": "10.9.0.5/24", "gateway": "10.9.0.300"}]}, "", "ipam.addresses[0].gateway"),
    ({"addresses": [{"gateway": "10.9.0.1"}]}, "", "ipam.addresses[0].address"),
    ({"addresses": ["10.9.0.5/24"]}, "", "ipam.addresses[0]"),
    ({"routes": [{"dst": "10.50.0.0"}]}, "", "ipam.routes[0]"),
    ({"routes": [{"dst": "10.50.0.0/16", "gw": "fd09::1"}]}, "", "ipam.routes[0]"),
    ({"dns": {"nameservers": "10.9.0.53"}}, "", "ipam.dns"),
    ({}, "IP=10.9.0.5", "CNI_ARGS IP"),
    ({}, "IP=10.9.0.5/24;GATEWAY=nonsense", "CNI_ARGS GATEWAY"),
])
def test_invalid_input_is_code_7_naming_the_field(source_plugins, ipam, args, field):
    out = run(source_plugins, "ADD", netconf(**ipam), args=args)
    assert out.status == 1 and out.json["code"] == 7, out.out
    assert out.json["msg"].startswith(field), out.json["msg"]


def test_capability_and_args_ips_must_be_cidrs(source_plugins):
    for top, field in (({"runtimeConfig": {"ips": ["10.9.0.5"]}}, "runtimeConfig.ips[0]"),
                       ({"args": {"cni": {"ips": ["10.9.0.5/24", 7]}}}, "args.cni.ips[1]")):
        out = run(source_plugins, "ADD", {**netconf(), **top})
        assert out.status == 1 and out.json["code"] == 7 and out.json["msg"].startswith(field), out.out


def test_missing_ipam_is_code_7_but_del_succeeds(source_plugins):
    conf = {"cniVersion": "1.0.0", "name": "st", "type": "static"}
    out = run(source_plugins, "ADD", conf)
    assert out.status == 1 and out.json["code"] == 7 and "ipam" in out.json["msg"]
    run(source_plugins, "DEL", conf).ok()


def test_check_compares_prev_result(source_plugins):
    conf = netconf(addresses=[{"address": "10.9.0.5/24", "gateway": "10.9.0.1"}])
    missing = run(source_plugins, "CHECK", conf)
    assert missing.status == 1 and missing.json["code"] == 7 and "prevResult" in missing.json["msg"]
    good = {"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.5/24", "gateway": "10.9.0.1"}]}
    run(source_plugins, "CHECK", {**conf, "prevResult": good}).ok()
    for prev in ({"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.5/24", "gateway": "10.9.0.254"}]},
                 {"cniVersion": "1.0.0", "ips": [{"address": "10.9.0.6/24"}]}):
        out = run(source_plugins, "CHECK", {**conf, "prevResult": prev})
        assert out.status == 1 and "10.9.0.5/24" in out.json["msg"], out.out


def test_a_frozen_main_plugin_serves_static_in_process(monkeypatch):
    from cni import invoke

    if not (BIN / "static").exists():
        pytest.skip("bin/ is not built (run ./build.sh)")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(BIN / "pycni"))
    assert invoke._ours_in_process(str(BIN / "static")) == "static"


# ---- macvlan + static, in a netns playing the host, side by side with Go ---------------


def container_state(ns) -> dict:
    addrs = [(a["family"], a["local"], a["prefixlen"]) for l in ns.ip_json("addr", "show", "dev", "eth0")
             for a in l["addr_info"] if a.get("scope") == "global"]
    routes = [(r["dst"], r.get("gateway")) for fam in ("-4", "-6") for r in ns.ip_json(fam, "route", "show")
              if not r["dst"].startswith("fe80")]
    return {"addrs": sorted(addrs), "routes": sorted(routes, key=str)}


@needs_root
@pytest.mark.parametrize("version", ["0.3.1", "1.0.0"])
def test_macvlan_with_static_same_as_go(source_plugins, go_plugins, make_netns, version):
    from reliability_env import uplink, wait_settled

    seen = {}
    for plugin_set in (source_plugins, go_plugins):
        host, ctr = make_netns("pycni-host"), make_netns("pycni-ctr")
        uplink(host)
        conf = {"cniVersion": version, "name": "st", "type": "macvlan", "master": "uplink0",
                "ipam": {"type": "static", **DUAL}}
        kw = dict(netns=ctr.path, in_netns=host.path, cni_path=str(plugin_set.directory))
        res = plugin_set.run("macvlan", "ADD", conf, **kw).ok().json
        wait_settled(ctr)
        if version >= "0.4.0":  # macvlan's CHECK asks static's CHECK too
            plugin_set.run("macvlan", "CHECK", {**conf, "prevResult": res}, **kw).ok()
        for iface in res["interfaces"]:
            iface.pop("mac"), iface.pop("sandbox")
        seen[plugin_set.kind] = (res, container_state(ctr))
        plugin_set.run("macvlan", "DEL", conf, **kw).ok()
        assert ctr.links() == ["lo"]
    assert seen["source"] == seen["go"]
