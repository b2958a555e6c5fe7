"""vlan: ADD/CHECK/DEL on a trunk port in a netns playing the host, every spec version, side by side with Go.

Needs a kernel with 802.1q links; elsewhere these tests skip. Run them for real with
    /work/shared/kernel/vmrun.sh -t 900 -w "$PWD" -- "$PWD/.venv/bin/python" -m pytest -m needs_kernel_links tests/test_vlan.py
"""
from __future__ import annotations

import json

import pytest

from conftest import has_link_kind, is_root
from link_env import compared_addrs, global_addrs, mask, reservations, run_plugin

pytestmark = [
    pytest.mark.needs_kernel_links,
    pytest.mark.skipif(not is_root(), reason="needs root for network namespaces"),
    pytest.mark.skipif(is_root() and not has_link_kind("vlan"), reason="this kernel has no 802.1q vlan links"),
]

MASTER, PEER = "trunk0", "trunk1"
# Under the VM's software emulation every call costs seconds: one version per result shape
# (legacy ip4/ip6, 0.3/0.4 with ips[].version, 1.x); the shapes themselves are tested on the host.
SHAPES = ("0.2.0", "0.4.0", "1.1.0")
GO_SHAPES = ("0.2.0", "0.4.0", "1.0.0")
NAME = "vlannet"
VID = 42


def make_conf(version: str, data_dir, *, dual: bool = True, **extra) -> dict:
    ranges = [[{"subnet": "10.56.0.0/24", "rangeStart": "10.56.0.10"}]] + ([[{"subnet": "fd56::/64"}]] if dual else [])
    conf = {"cniVersion": version, "name": NAME, "type": "vlan", "master": MASTER, "vlanId": VID,
            "dns": {"nameservers": ["10.56.0.53"]},
            "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": ranges,
                     "routes": [{"dst": "10.99.0.0/16"}]}}
    conf.update(extra)
    return {k: v for k, v in conf.items() if v is not None}


@pytest.fixture
def trunk(host_ns):
    """The master: a veth end in the host netns; on its peer, VLAN 42 answers as 10.56.0.1."""
    host_ns.run("ip", "link", "add", MASTER, "type", "veth", "peer", "name", PEER)
    for name in (MASTER, PEER):
        host_ns.run("ip", "link", "set", name, "up")
    # The far end of the trunk lives in a netns of its own, so its address is not local to the host.
    return host_ns


@pytest.fixture
def far_end(trunk, make_netns):
    far = make_netns("pycni-far")
    trunk.run("ip", "link", "set", PEER, "netns", far.name)
    far.run("ip", "link", "set", PEER, "up")
    far.run("ip", "link", "add", "link", PEER, "name", "far42", "type", "vlan", "id", str(VID))
    far.run("ip", "addr", "add", "10.56.0.1/24", "dev", "far42")
    far.run("ip", "link", "set", "far42", "up")
    return far


def run(plugins, command, conf, ctr, host_ns, **kw):
    return run_plugin(plugins, "vlan", command, conf, ctr, host_ns, timeout=300, **kw)


def test_add_check_del_each_result_shape(frozen_plugins, trunk, make_netns, data_dir):
    for version in SHAPES:
        ctr = make_netns("pycni-ctr")
        conf = make_conf(version, data_dir / version)
        out = run(frozen_plugins, "ADD", conf, ctr, trunk).ok().json
        assert out["cniVersion"] == version
        link = ctr.link("eth0")
        assert link["linkinfo"]["info_kind"] == "vlan"
        assert link["linkinfo"]["info_data"]["id"] == VID
        assert link["link_index"] == trunk.link(MASTER)["ifindex"]
        assert global_addrs(ctr) == ["10.56.0.10/24", "fd56::2/64"]
        assert ctr.ip_json("route", "show", "10.99.0.0/16")[0]["gateway"] == "10.56.0.1"
        assert out["dns"] == {"nameservers": ["10.56.0.53"]}
        if version in ("0.1.0", "0.2.0"):
            assert out["ip4"]["ip"] == "10.56.0.10/24" and out["ip6"]["ip"] == "fd56::2/64"
        else:
            assert out["interfaces"] == [{"name": "eth0", "mac": link["address"], "sandbox": ctr.path}]
            assert [ip["interface"] for ip in out["ips"]] == [0, 0]
        if version not in ("0.1.0", "0.2.0", "0.3.0", "0.3.1"):
            run(frozen_plugins, "CHECK", dict(conf, prevResult=out), ctr, trunk).ok()
        run(frozen_plugins, "DEL", conf, ctr, trunk).ok()
        assert ctr.links() == ["lo"]
        assert reservations(data_dir / version, NAME) == []
        run(frozen_plugins, "DEL", conf, ctr, trunk).ok()
        ctr.remove()


def test_tagged_traffic_reaches_only_its_vlan(frozen_plugins, far_end, trunk, make_netns, data_dir):
    tagged, other = make_netns("pycni-ctr"), make_netns("pycni-ctr")
    conf = make_conf("1.0.0", data_dir / "a", dual=False)
    run(frozen_plugins, "ADD", conf, tagged, trunk, containerid="a").ok()
    conf_b = make_conf("1.0.0", data_dir / "b", dual=False, vlanId=43)
    run(frozen_plugins, "ADD", conf_b, other, trunk, containerid="b").ok()
    tagged.run("busybox", "ping", "-c", "1", "-W", "5", "10.56.0.1")
    assert other.run("busybox", "ping", "-c", "1", "-W", "2", "10.56.0.1", check=False).returncode != 0
    run(frozen_plugins, "DEL", conf, tagged, trunk, containerid="a").ok()
    run(frozen_plugins, "DEL", conf_b, other, trunk, containerid="b").ok()
    assert tagged.links() == ["lo"] and other.links() == ["lo"]


def test_link_in_container_and_mtu(frozen_plugins, host_ns, container_ns, data_dir):
    container_ns.run("ip", "link", "add", "inner0", "type", "veth", "peer", "name", "inner1")
    container_ns.run("ip", "link", "set", "inner0", "up")
    conf = make_conf("1.0.0", data_dir, dual=False, master="inner0", linkInContainer=True, mtu=1300)
    out = run(frozen_plugins, "ADD", conf, container_ns, host_ns).ok().json
    link = container_ns.link("eth0")
    assert link["link"] == "inner0" and link["mtu"] == 1300
    run(frozen_plugins, "CHECK", dict(conf, prevResult=out), container_ns, host_ns).ok()
    assert run(frozen_plugins, "CHECK", dict(conf, vlanId=7, prevResult=out), container_ns, host_ns).status == 1
    assert run(frozen_plugins, "CHECK", dict(conf, mtu=1200, prevResult=out), container_ns, host_ns).status == 1
    run(frozen_plugins, "DEL", conf, container_ns, host_ns).ok()
    assert sorted(container_ns.links()) == ["inner0", "inner1", "lo"]


@pytest.mark.parametrize("extra, text", [
    ({"master": None}, '"master" is required'),
    ({"master": "nosuch0"}, 'master "nosuch0" not found'),
    ({"vlanId": 4095}, "invalid vlanId 4095"),
    ({"vlanId": "7"}, "vlanId must be"),
    ({"mtu": 9000}, "invalid MTU 9000"),
    ({"ipam": None}, "ipam"),
])
def test_invalid_config_is_code_7_and_leaves_nothing(frozen_plugins, trunk, container_ns, data_dir, extra, text):
    before = trunk.links()
    out = run(frozen_plugins, "ADD", make_conf("1.0.0", data_dir, **extra), container_ns, trunk)
    assert out.status == 1 and out.json["code"] == 7 and text in out.json["msg"], out.out
    assert container_ns.links() == ["lo"] and trunk.links() == before and reservations(data_dir, NAME) == []


def test_failures_leave_nothing_and_del_forgives(frozen_plugins, trunk, make_netns, data_dir):
    before = trunk.links()
    ctr = make_netns("pycni-ctr")
    unreachable = make_conf("1.0.0", data_dir)
    unreachable["ipam"]["routes"] = [{"dst": "10.99.0.0/16", "gw": "192.0.2.1"}]
    out = run(frozen_plugins, "ADD", unreachable, ctr, trunk)
    assert out.status == 1 and "route" in out.json["msg"], out.out
    assert ctr.links() == ["lo"] and trunk.links() == before and reservations(data_dir, NAME) == []
    conf = make_conf("1.0.0", data_dir, dual=False)
    run(frozen_plugins, "ADD", conf, ctr, trunk, containerid="m").ok()
    trunk.run("ip", "link", "del", MASTER)  # the master goes, and the vlan link with it
    run(frozen_plugins, "DEL", conf, ctr, trunk, containerid="m").ok()
    run(frozen_plugins, "DEL", conf, None, trunk, containerid="m").ok()
    assert ctr.links() == ["lo"] and reservations(data_dir, NAME) == []


def netns_state(ns) -> dict:
    link = ns.link("eth0")
    addrs = compared_addrs(ns)
    routes = sorted(json.dumps(r, sort_keys=True) for fam in ("-4", "-6")
                    for r in ns.ip_json(fam, "route", "show", "table", "main"))
    return {"kind": link["linkinfo"]["info_kind"], "data": link["linkinfo"]["info_data"],
            "mtu": link["mtu"], "txqlen": link.get("txqlen"), "flags": sorted(link["flags"]),
            "addrs": addrs, "routes": routes}


def test_same_as_go(frozen_plugins, go_plugins, trunk, make_netns, tmp_path):
    for version in GO_SHAPES:
        states, results = [], []
        for plugins in (frozen_plugins, go_plugins):
            ctr = make_netns("pycni-ctr")
            conf = make_conf(version, tmp_path / f"{plugins.kind}-{version}", mtu=1400)
            results.append(mask(run(plugins, "ADD", conf, ctr, trunk).ok().json))
            states.append(netns_state(ctr))
            run(plugins, "DEL", conf, ctr, trunk).ok()
            ctr.remove()
        assert results[0] == results[1], version
        assert states[0] == states[1], version
