"""ipvlan: ADD/CHECK/DEL in a netns playing the host, every spec version, side by side with Go.

Needs a kernel with ipvlan; elsewhere these tests skip. Run them for real with
    /work/shared/kernel/vmrun.sh -t 900 -w /work/main -- \\
        /work/main/.venv/bin/python -m pytest -m needs_kernel_links tests/test_ipvlan.py
"""
from __future__ import annotations

import json

import pytest

from conftest import has_link_kind, is_root
from link_env import compared_addrs, global_addrs, mask, reservations, run_plugin

pytestmark = [
    pytest.mark.needs_kernel_links,
    pytest.mark.skipif(not is_root(), reason="needs root for network namespaces"),
    pytest.mark.skipif(is_root() and not has_link_kind("ipvlan"), reason="this kernel has no ipvlan"),
]

# Under the VM's software emulation every call costs seconds, so these tests run what ships
# (the frozen bin/) rather than source and frozen both, and one version per result shape
# (legacy ip4/ip6, 0.3/0.4 with ips[].version, 1.x); the shapes themselves are tested on the host.
SHAPES = ("0.2.0", "0.4.0", "1.1.0")
GO_SHAPES = ("0.2.0", "0.4.0", "1.0.0")


@pytest.fixture
def plugins(frozen_plugins):
    return frozen_plugins


MASTER = "ipv0"
NAME = "ipvnet"
V4_SUBNET, V6_SUBNET = "10.55.0.0/24", "fd55::/64"


def make_conf(version: str, data_dir, *, dual: bool = True, **extra) -> dict:
    ranges = [[{"subnet": V4_SUBNET}]] + ([[{"subnet": V6_SUBNET}]] if dual else [])
    conf = {"cniVersion": version, "name": NAME, "type": "ipvlan", "master": MASTER,
            "dns": {"nameservers": ["10.55.0.53"]},
            "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": ranges,
                     "routes": [{"dst": "10.99.0.0/16"}]}}
    conf.update(extra)
    return {k: v for k, v in conf.items() if v is not None}


@pytest.fixture
def lan(host_ns):
    """The master: a veth end in the host netns whose peer is up, and a default route over it."""
    host_ns.run("ip", "link", "add", MASTER, "type", "veth", "peer", "name", "ipv0peer")
    host_ns.run("ip", "link", "set", "ipv0peer", "up")
    host_ns.run("ip", "link", "set", MASTER, "up")
    host_ns.run("ip", "addr", "add", "192.168.55.2/24", "dev", MASTER)
    host_ns.run("ip", "route", "add", "default", "via", "192.168.55.1", "dev", MASTER)
    return host_ns


def run(plugins, command, conf, ctr, host_ns, **kw):
    return run_plugin(plugins, "ipvlan", command, conf, ctr, host_ns, timeout=300, **kw)


def ping(ns, address: str) -> None:
    ns.run("busybox", "ping", "-c", "1", "-W", "5", address)


def assert_nothing_left(ctr, host_ns, data_dir, host_links_before):
    if ctr is not None:
        assert ctr.links() == ["lo"], ctr.links()
    assert host_ns.links() == host_links_before
    assert reservations(data_dir, NAME) == []


# ---- the lifecycle, every version ---------------------------------------------------------


def test_add_check_del_each_result_shape(plugins, lan, make_netns, data_dir):
    for version in SHAPES:
        ctr = make_netns("pycni-ctr")
        conf = make_conf(version, data_dir / version)
        out = run(plugins, "ADD", conf, ctr, lan).ok().json
        assert out["cniVersion"] == version
        link = ctr.link("eth0")
        assert link["linkinfo"]["info_kind"] == "ipvlan"
        assert link["linkinfo"]["info_data"]["mode"] == "l2"
        assert link["link_index"] == lan.link(MASTER)["ifindex"]
        assert link["address"] == lan.link(MASTER)["address"]  # ipvlan shares the master's MAC
        assert global_addrs(ctr) == ["10.55.0.2/24", "fd55::2/64"]
        assert ctr.ip_json("route", "show", "10.99.0.0/16")[0]["gateway"] == "10.55.0.1"
        assert out["dns"] == {"nameservers": ["10.55.0.53"]}
        if version in ("0.1.0", "0.2.0"):
            assert out["ip4"]["ip"] == "10.55.0.2/24" and out["ip6"]["ip"] == "fd55::2/64"
        else:
            assert out["interfaces"] == [{"name": "eth0", "mac": link["address"], "sandbox": ctr.path}]
            assert [ip["interface"] for ip in out["ips"]] == [0, 0]
        if version not in ("0.1.0", "0.2.0", "0.3.0", "0.3.1"):
            run(plugins, "CHECK", dict(conf, prevResult=out), ctr, lan).ok()
        run(plugins, "DEL", conf, ctr, lan).ok()
        assert ctr.links() == ["lo"]
        assert reservations(data_dir / version, NAME) == []
        run(plugins, "DEL", conf, ctr, lan).ok()
        ctr.remove()


@pytest.mark.parametrize("mode", ["l2", "l3", "l3s"])
def test_two_containers_on_one_master_talk(plugins, lan, make_netns, data_dir, mode):
    a, b = make_netns("pycni-ctr"), make_netns("pycni-ctr")
    conf = make_conf("1.0.0", data_dir, mode=mode)
    out = run(plugins, "ADD", conf, a, lan, containerid="a").ok().json
    run(plugins, "ADD", conf, b, lan, containerid="b").ok()
    assert a.link("eth0")["linkinfo"]["info_data"]["mode"] == mode
    ping(a, "10.55.0.3")
    ping(b, "fd55::2")
    run(plugins, "CHECK", dict(conf, prevResult=out), a, lan, containerid="a").ok()
    for ctr, cid in ((a, "a"), (b, "b")):
        run(plugins, "DEL", conf, ctr, lan, containerid=cid).ok()
    assert a.links() == ["lo"] and b.links() == ["lo"]


# ---- chained after another plugin ----------------------------------------------------------


def test_chained_without_ipam_applies_prev_result(plugins, lan, container_ns):
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": MASTER}],
            "ips": [{"address": "10.55.0.77/24", "gateway": "10.55.0.1", "interface": 0}],
            "routes": [{"dst": "10.98.0.0/16"}]}
    conf = {"cniVersion": "1.0.0", "name": NAME, "type": "ipvlan", "prevResult": prev}  # master from prevResult
    out = run(plugins, "ADD", conf, container_ns, lan).ok().json
    assert container_ns.link("eth0")["link_index"] == lan.link(MASTER)["ifindex"]
    assert global_addrs(container_ns) == ["10.55.0.77/24"]
    assert container_ns.ip_json("route", "show", "10.98.0.0/16")[0]["gateway"] == "10.55.0.1"
    assert out["interfaces"][0]["name"] == "eth0" and out["ips"][0]["interface"] == 0
    run(plugins, "CHECK", dict(conf, prevResult=out), container_ns, lan).ok()
    run(plugins, "DEL", conf, container_ns, lan).ok()
    assert container_ns.links() == ["lo"]


def test_chained_prev_result_must_name_one_interface(plugins, lan, container_ns):
    before = lan.links()
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": MASTER}, {"name": "other"}],
            "ips": [{"address": "10.55.0.77/24", "interface": 0}]}
    conf = {"cniVersion": "1.0.0", "name": NAME, "type": "ipvlan", "prevResult": prev}
    out = run(plugins, "ADD", conf, container_ns, lan)
    assert out.status == 1 and out.json["code"] == 7 and "exactly one" in out.json["msg"], out.out
    assert container_ns.links() == ["lo"] and lan.links() == before


# ---- keys, invalid configuration, failures -------------------------------------------------------


def test_default_master_is_the_default_route_interface(plugins, lan, container_ns, data_dir):
    conf = make_conf("1.0.0", data_dir, dual=False, master=None)
    run(plugins, "ADD", conf, container_ns, lan).ok()
    assert container_ns.link("eth0")["link_index"] == lan.link(MASTER)["ifindex"]
    run(plugins, "DEL", conf, container_ns, lan).ok()


def test_link_in_container(plugins, host_ns, container_ns, data_dir):
    container_ns.run("ip", "link", "add", "inner0", "type", "veth", "peer", "name", "inner1")
    container_ns.run("ip", "link", "set", "inner1", "up")
    container_ns.run("ip", "link", "set", "inner0", "up")
    conf = make_conf("1.0.0", data_dir, dual=False, master="inner0", linkInContainer=True, mtu=1300)
    out = run(plugins, "ADD", conf, container_ns, host_ns).ok().json
    link = container_ns.link("eth0")
    assert link["link"] == "inner0" and link["mtu"] == 1300
    run(plugins, "CHECK", dict(conf, prevResult=out), container_ns, host_ns).ok()
    run(plugins, "DEL", conf, container_ns, host_ns).ok()
    assert sorted(container_ns.links()) == ["inner0", "inner1", "lo"]


@pytest.mark.parametrize("extra, text", [
    ({"mode": "l4"}, "unknown ipvlan mode"),
    ({"mtu": 9000}, "invalid MTU 9000"),
    ({"master": "nosuch0"}, 'master "nosuch0" not found'),
    ({"ipam": None}, "ipam"),
])
def test_invalid_config_is_code_7_and_leaves_nothing(plugins, lan, container_ns, data_dir, extra, text):
    before = lan.links()
    out = run(plugins, "ADD", make_conf("1.0.0", data_dir, **extra), container_ns, lan)
    assert out.status == 1 and out.json["code"] == 7 and text in out.json["msg"], out.out
    assert_nothing_left(container_ns, lan, data_dir, before)


def test_failures_at_every_step_leave_nothing(plugins, lan, make_netns, data_dir):
    before = lan.links()
    ctr = make_netns("pycni-ctr")
    bad_ipam = make_conf("1.0.0", data_dir)
    bad_ipam["ipam"]["ranges"] = [[{"subnet": "10.55.0.0/33"}]]
    assert run(plugins, "ADD", bad_ipam, ctr, lan).status == 1
    assert_nothing_left(ctr, lan, data_dir, before)
    unreachable = make_conf("1.0.0", data_dir)
    unreachable["ipam"]["routes"] = [{"dst": "10.99.0.0/16", "gw": "192.0.2.1"}]
    out = run(plugins, "ADD", unreachable, ctr, lan)
    assert out.status == 1 and "route" in out.json["msg"], out.out
    assert_nothing_left(ctr, lan, data_dir, before)
    out = run(plugins, "ADD", make_conf("1.0.0", data_dir), None, lan)
    assert out.status == 1 and "netns" in out.json["msg"], out.out
    assert_nothing_left(None, lan, data_dir, before)


def test_del_succeeds_when_things_are_gone(plugins, lan, make_netns, data_dir):
    conf = make_conf("1.0.0", data_dir, dual=False)
    ctr = make_netns("pycni-ctr")
    run(plugins, "ADD", conf, ctr, lan, containerid="n").ok()
    ctr.remove()
    run(plugins, "DEL", conf, ctr, lan, containerid="n").ok()
    ctr = make_netns("pycni-ctr")
    run(plugins, "ADD", conf, ctr, lan, containerid="l").ok()
    ctr.run("ip", "link", "del", "eth0")
    run(plugins, "DEL", conf, ctr, lan, containerid="l").ok()
    run(plugins, "ADD", conf, ctr, lan, containerid="m").ok()
    lan.run("ip", "link", "del", MASTER)
    run(plugins, "DEL", conf, ctr, lan, containerid="m").ok()
    assert ctr.links() == ["lo"]
    assert reservations(data_dir, NAME) == []


def test_check_notices_drift(plugins, lan, container_ns, data_dir):
    conf = make_conf("1.0.0", data_dir, dual=False)
    out = run(plugins, "ADD", conf, container_ns, lan).ok().json
    assert run(plugins, "CHECK", dict(conf, mode="l3", prevResult=out), container_ns, lan).status == 1
    assert run(plugins, "CHECK", conf, container_ns, lan).json["code"] == 7  # no prevResult
    container_ns.run("ip", "addr", "flush", "dev", "eth0")
    assert run(plugins, "CHECK", dict(conf, prevResult=out), container_ns, lan).status == 1
    run(plugins, "DEL", conf, container_ns, lan).ok()


# ---- side by side with Go ---------------------------------------------------------------------


def netns_state(ns) -> dict:
    link = ns.link("eth0")
    addrs = compared_addrs(ns)
    routes = sorted(json.dumps(r, sort_keys=True) for fam in ("-4", "-6")
                    for r in ns.ip_json(fam, "route", "show", "table", "main"))
    return {"kind": link["linkinfo"]["info_kind"], "mode": link["linkinfo"]["info_data"]["mode"],
            "mtu": link["mtu"], "txqlen": link.get("txqlen"), "flags": sorted(link["flags"]),
            "addrs": addrs, "routes": routes}


def test_same_as_go(frozen_plugins, go_plugins, lan, make_netns, tmp_path):
    for version in GO_SHAPES:
        states, results = [], []
        for plugins in (frozen_plugins, go_plugins):
            ctr = make_netns("pycni-ctr")
            conf = make_conf(version, tmp_path / f"{plugins.kind}-{version}", mtu=1400)
            results.append(mask(run(plugins, "ADD", conf, ctr, lan).ok().json, mac=False))
            states.append(netns_state(ctr))
            run(plugins, "DEL", conf, ctr, lan).ok()
            ctr.remove()
        assert results[0] == results[1], version
        assert states[0] == states[1], version
