"""macvlan: ADD/CHECK/DEL in a netns playing the host, every spec version, side by side with Go."""
from __future__ import annotations

import json

import pytest

from conftest import ALL_VERSIONS, GO_VERSIONS, needs_root
from link_env import compared_addrs, global_addrs, mask, reservations, run_plugin

pytestmark = needs_root

MASTER = "mv0"
NAME = "mvnet"
V4_SUBNET, V6_SUBNET = "10.88.0.0/24", "fd88::/64"


def make_conf(version: str, data_dir, *, dual: bool = True, **extra) -> dict:
    ranges = [[{"subnet": V4_SUBNET}]] + ([[{"subnet": V6_SUBNET}]] if dual else [])
    conf = {"cniVersion": version, "name": NAME, "type": "macvlan", "master": MASTER,
            "dns": {"nameservers": ["10.88.0.53"], "search": ["example.test"]},
            "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": ranges,
                     "routes": [{"dst": "10.99.0.0/16"}]}}
    conf.update(extra)
    return {k: v for k, v in conf.items() if v is not None}


@pytest.fixture
def lan(host_ns):
    """The master: a veth end in the host netns whose peer is up, and a default route over it."""
    host_ns.run("ip", "link", "add", MASTER, "type", "veth", "peer", "name", "mv0peer")
    host_ns.run("ip", "link", "set", "mv0peer", "up")
    host_ns.run("ip", "link", "set", MASTER, "up")
    host_ns.run("ip", "addr", "add", "192.168.77.2/24", "dev", MASTER)
    host_ns.run("ip", "route", "add", "default", "via", "192.168.77.1", "dev", MASTER)
    return host_ns


def run(plugins, command, conf, ctr, host_ns, **kw):
    return run_plugin(plugins, "macvlan", command, conf, ctr, host_ns, **kw)


def assert_nothing_left(ctr, host_ns, data_dir, host_links_before):
    if ctr is not None:
        assert ctr.links() == ["lo"], ctr.links()
    assert host_ns.links() == host_links_before
    assert reservations(data_dir, NAME) == []


# ---- the lifecycle, every version ---------------------------------------------------------


def test_add_check_del_every_version(plugins, lan, make_netns, data_dir):
    for version in ALL_VERSIONS:
        ctr = make_netns("pycni-ctr")
        conf = make_conf(version, data_dir / version)  # host-local hands out round-robin: one store each
        out = run(plugins, "ADD", conf, ctr, lan).ok().json
        assert out["cniVersion"] == version
        link = ctr.link("eth0")
        assert link["linkinfo"]["info_kind"] == "macvlan"
        assert link["linkinfo"]["info_data"]["mode"] == "bridge"
        assert link["link_index"] == lan.link(MASTER)["ifindex"]
        assert "UP" in link["flags"]
        assert global_addrs(ctr) == ["10.88.0.2/24", "fd88::2/64"]
        assert ctr.run("sysctl", "-n", "net.ipv4.conf.eth0.arp_notify").stdout.strip() == "1"
        assert ctr.run("sysctl", "-n", "net.ipv6.conf.eth0.ndisc_notify").stdout.strip() == "1"
        routes = ctr.ip_json("route", "show", "10.99.0.0/16")
        assert routes and routes[0]["gateway"] == "10.88.0.1"
        assert not ctr.ip_json("route", "show", "default"), "macvlan must not invent a default route"
        assert out["dns"] == {"nameservers": ["10.88.0.53"], "search": ["example.test"]}
        if version in ("0.1.0", "0.2.0"):
            assert out["ip4"]["ip"] == "10.88.0.2/24" and out["ip6"]["ip"] == "fd88::2/64"
        else:
            assert out["interfaces"] == [{"name": "eth0", "mac": link["address"], "sandbox": ctr.path}]
            assert [ip["interface"] for ip in out["ips"]] == [0, 0]
            assert [ip["address"] for ip in out["ips"]] == ["10.88.0.2/24", "fd88::2/64"]
        if version not in ("0.1.0", "0.2.0", "0.3.0", "0.3.1"):
            run(plugins, "CHECK", dict(conf, prevResult=out), ctr, lan).ok()
        run(plugins, "DEL", conf, ctr, lan).ok()
        assert ctr.links() == ["lo"]
        assert reservations(data_dir / version, NAME) == []
        run(plugins, "DEL", conf, ctr, lan).ok()  # twice: still success
        ctr.remove()


def test_two_containers_on_one_master_talk(plugins, lan, make_netns, data_dir):
    a, b = make_netns("pycni-ctr"), make_netns("pycni-ctr")
    conf = make_conf("1.0.0", data_dir)
    run(plugins, "ADD", conf, a, lan, containerid="a").ok()
    run(plugins, "ADD", conf, b, lan, containerid="b").ok()
    a.run("busybox", "ping", "-c", "1", "-W", "2", "10.88.0.3")
    b.run("busybox", "ping", "-c", "1", "-W", "2", "10.88.0.2")
    a.run("busybox", "ping", "-c", "1", "-W", "2", "fd88::3")  # the plugin waited for DAD: no retry needed
    for ctr, cid in ((a, "a"), (b, "b")):
        run(plugins, "DEL", conf, ctr, lan, containerid=cid).ok()


def test_layer2_without_ipam(plugins, lan, make_netns):
    for version in ALL_VERSIONS:
        ctr = make_netns("pycni-ctr")
        conf = {"cniVersion": version, "name": NAME, "type": "macvlan", "master": MASTER, "ipam": {}}
        out = run(plugins, "ADD", conf, ctr, lan)
        if version in ("0.1.0", "0.2.0"):
            # Those versions cannot express a result without addresses: refused, and nothing made.
            assert out.status == 1 and out.json["code"] == 1, out.out
            assert ctr.links() == ["lo"]
        else:
            out.ok()
            assert out.json["interfaces"][0]["name"] == "eth0" and "ips" not in out.json
            assert "UP" in ctr.link("eth0")["flags"]
            assert global_addrs(ctr) == []
            if version not in ("0.3.0", "0.3.1"):
                run(plugins, "CHECK", dict(conf, prevResult=out.json), ctr, lan).ok()
        run(plugins, "DEL", conf, ctr, lan).ok()
        assert ctr.links() == ["lo"]
        ctr.remove()


# ---- keys ------------------------------------------------------------------------------------


def test_default_master_is_the_default_route_interface(plugins, lan, container_ns, data_dir):
    conf = make_conf("1.0.0", data_dir, dual=False, master=None)
    run(plugins, "ADD", conf, container_ns, lan).ok()
    assert container_ns.link("eth0")["link_index"] == lan.link(MASTER)["ifindex"]
    run(plugins, "DEL", conf, container_ns, lan).ok()


def test_no_default_route_is_a_clear_error(plugins, host_ns, container_ns, data_dir):
    before = host_ns.links()
    out = run(plugins, "ADD", make_conf("1.0.0", data_dir, master=None), container_ns, host_ns)
    assert out.status == 1 and out.json["code"] == 7 and "no default route interface" in out.json["msg"]
    assert_nothing_left(container_ns, host_ns, data_dir, before)


def test_mode_mtu_bcqueuelen_and_mac(plugins, lan, make_netns, data_dir):
    for mode in ("private", "vepa", "passthru"):
        ctr = make_netns("pycni-ctr")
        mac = None if mode == "passthru" else "02:00:00:aa:bb:cc"  # passthru keeps the master's MAC
        conf = make_conf("1.0.0", data_dir, dual=False, mode=mode, mtu=1400, bcqueuelen=123, mac=mac)
        out = run(plugins, "ADD", conf, ctr, lan).ok().json
        link = ctr.link("eth0")
        assert link["linkinfo"]["info_data"]["mode"] == mode
        assert link["mtu"] == 1400
        if mac:
            assert link["address"] == "02:00:00:aa:bb:cc" == out["interfaces"][0]["mac"]
            assert link["linkinfo"]["info_data"].get("bcqueuelen") == 123
        run(plugins, "CHECK", dict(conf, prevResult=out), ctr, lan).ok()
        run(plugins, "DEL", conf, ctr, lan).ok()
        ctr.remove()


def test_mac_from_cni_args_and_runtime_config(plugins, lan, make_netns, data_dir):
    conf = make_conf("1.0.0", data_dir, dual=False, mac="02:00:00:00:00:01")
    ctr = make_netns("pycni-ctr")
    run(plugins, "ADD", conf, ctr, lan, args="IgnoreUnknown=1;K8S_POD_NAME=x;MAC=02:00:00:00:00:02").ok()
    assert ctr.link("eth0")["address"] == "02:00:00:00:00:02"
    run(plugins, "DEL", conf, ctr, lan).ok()
    runtime = dict(conf, runtimeConfig={"mac": "02:00:00:00:00:03"})
    run(plugins, "ADD", runtime, ctr, lan, args="IgnoreUnknown=1;MAC=02:00:00:00:00:02").ok()
    assert ctr.link("eth0")["address"] == "02:00:00:00:00:03"
    run(plugins, "DEL", runtime, ctr, lan).ok()


def test_link_in_container(plugins, host_ns, container_ns, data_dir):
    container_ns.run("ip", "link", "add", "inner0", "type", "veth", "peer", "name", "inner1")
    container_ns.run("ip", "link", "set", "inner1", "up")
    container_ns.run("ip", "link", "set", "inner0", "up")
    conf = make_conf("1.0.0", data_dir, dual=False, master="inner0", linkInContainer=True)
    out = run(plugins, "ADD", conf, container_ns, host_ns).ok().json
    link = container_ns.link("eth0")
    assert link["link"] == "inner0" and "link_netnsid" not in link
    run(plugins, "CHECK", dict(conf, prevResult=out), container_ns, host_ns).ok()
    run(plugins, "DEL", conf, container_ns, host_ns).ok()
    assert sorted(container_ns.links()) == ["inner0", "inner1", "lo"]


# ---- invalid configuration and failures leave nothing behind ----------------------------------


@pytest.mark.parametrize("extra, text", [
    ({"mode": "bogus"}, "unknown macvlan mode"),
    ({"mtu": 9000}, "invalid MTU 9000"),
    ({"mtu": -1}, "mtu"),
    ({"master": "nosuch0"}, 'master "nosuch0" not found'),
    ({"mac": "02:00:zz:00:00:01"}, "invalid mac"),
])
def test_invalid_config_is_code_7_and_leaves_nothing(plugins, lan, container_ns, data_dir, extra, text):
    before = lan.links()
    out = run(plugins, "ADD", make_conf("1.0.0", data_dir, **extra), container_ns, lan)
    assert out.status == 1 and out.json["code"] == 7 and text in out.json["msg"], out.out
    assert_nothing_left(container_ns, lan, data_dir, before)


def test_failures_at_every_step_leave_nothing(plugins, lan, make_netns, data_dir):
    before = lan.links()
    # IPAM fails: the link made before it goes again.
    ctr = make_netns("pycni-ctr")
    bad_ipam = make_conf("1.0.0", data_dir)
    bad_ipam["ipam"]["ranges"] = [[{"subnet": "10.88.0.0/33"}]]
    out = run(plugins, "ADD", bad_ipam, ctr, lan)
    assert out.status == 1, out.out
    assert_nothing_left(ctr, lan, data_dir, before)
    # Configuring fails after IPAM: the link and the reservation go again.
    unreachable = make_conf("1.0.0", data_dir)
    unreachable["ipam"]["routes"] = [{"dst": "10.99.0.0/16", "gw": "192.0.2.1"}]
    out = run(plugins, "ADD", unreachable, ctr, lan)
    assert out.status == 1 and "route" in out.json["msg"], out.out
    assert_nothing_left(ctr, lan, data_dir, before)
    # The interface name is taken in the container: that link is left alone, nothing is added.
    ctr.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer")
    out = run(plugins, "ADD", make_conf("1.0.0", data_dir), ctr, lan)
    assert out.status == 1 and "already exists" in out.json["msg"], out.out
    assert sorted(ctr.links()) == ["eth0", "eth0peer", "lo"] and reservations(data_dir, NAME) == []
    # The netns is gone.
    out = run(plugins, "ADD", make_conf("1.0.0", data_dir), None, lan)
    assert out.status == 1 and "netns" in out.json["msg"], out.out
    assert_nothing_left(None, lan, data_dir, before)


def test_del_succeeds_when_things_are_gone(plugins, lan, make_netns, data_dir):
    conf = make_conf("1.0.0", data_dir, dual=False)
    # The netns is gone.
    ctr = make_netns("pycni-ctr")
    run(plugins, "ADD", conf, ctr, lan, containerid="n").ok()
    ctr.remove()
    run(plugins, "DEL", conf, ctr, lan, containerid="n").ok()
    # The link is gone.
    ctr = make_netns("pycni-ctr")
    run(plugins, "ADD", conf, ctr, lan, containerid="l").ok()
    ctr.run("ip", "link", "del", "eth0")
    run(plugins, "DEL", conf, ctr, lan, containerid="l").ok()
    # The master is gone (its macvlans with it); Go fails here.
    run(plugins, "ADD", conf, ctr, lan, containerid="m").ok()
    lan.run("ip", "link", "del", MASTER)
    run(plugins, "DEL", conf, ctr, lan, containerid="m").ok()
    assert ctr.links() == ["lo"]
    assert reservations(data_dir, NAME) == []


def test_check_notices_drift(plugins, lan, container_ns, data_dir):
    conf = make_conf("1.0.0", data_dir, dual=False)
    out = run(plugins, "ADD", conf, container_ns, lan).ok().json
    wrong_mode = dict(conf, mode="private", prevResult=out)
    assert run(plugins, "CHECK", wrong_mode, container_ns, lan).status == 1
    wrong_mac = json.loads(json.dumps(out))
    wrong_mac["interfaces"][0]["mac"] = "02:00:00:00:00:99"
    assert run(plugins, "CHECK", dict(conf, prevResult=wrong_mac), container_ns, lan).status == 1
    assert run(plugins, "CHECK", conf, container_ns, lan).json["code"] == 7  # no prevResult
    container_ns.run("ip", "addr", "flush", "dev", "eth0")
    assert run(plugins, "CHECK", dict(conf, prevResult=out), container_ns, lan).status == 1
    run(plugins, "DEL", conf, container_ns, lan).ok()


def test_status_reports_a_missing_master(plugins, lan):
    conf = {"cniVersion": "1.1.0", "name": NAME, "type": "macvlan", "master": MASTER}
    assert run(plugins, "STATUS", conf, None, lan, containerid="", ifname="").status == 0
    out = run(plugins, "STATUS", dict(conf, master="nosuch0"), None, lan, containerid="", ifname="")
    assert out.status == 1 and out.json["code"] == 50


# ---- side by side with Go ---------------------------------------------------------------------


def netns_state(ns) -> dict:
    """What a container sees, with MACs and kernel-chosen link-local addresses masked."""
    link = ns.link("eth0")
    addrs = compared_addrs(ns)
    routes = [{k: v for k, v in r.items() if k != "expires"} for fam in ("-4", "-6")
              for r in ns.ip_json(fam, "route", "show", "table", "all") if r.get("table") != "local"]
    return {"kind": link["linkinfo"]["info_kind"], "mode": link["linkinfo"]["info_data"]["mode"],
            "mtu": link["mtu"], "txqlen": link.get("txqlen"), "flags": sorted(link["flags"]),
            "addrs": addrs, "routes": sorted(json.dumps(r, sort_keys=True) for r in routes),
            "arp_notify": ns.run("sysctl", "-n", "net.ipv4.conf.eth0.arp_notify").stdout.strip()}


def test_same_as_go(source_plugins, go_plugins, lan, make_netns, tmp_path):
    for version in GO_VERSIONS:
        states, results = [], []
        for plugins in (source_plugins, go_plugins):
            ctr = make_netns("pycni-ctr")
            data_dir = tmp_path / f"{plugins.kind}-{version}"
            conf = make_conf(version, data_dir, mtu=1400)
            results.append(mask(run(plugins, "ADD", conf, ctr, lan).ok().json))
            states.append(netns_state(ctr))
            run(plugins, "DEL", conf, ctr, lan).ok()
            ctr.remove()
        assert results[0] == results[1], version
        assert states[0] == states[1], version
