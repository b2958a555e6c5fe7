"""ptp: ADD/CHECK/DEL in a netns playing the host, every spec version, side by side with Go."""
from __future__ import annotations

import json
import re
import shutil

import pytest

from conftest import ALL_VERSIONS, GO_VERSIONS, needs_root
from link_env import compared_addrs, global_addrs, reservations, run_plugin

pytestmark = needs_root

NAME = "ptpnet"
V4_SUBNET, V6_SUBNET = "10.66.0.0/24", "fd66::/64"


def make_conf(version: str, data_dir, *, dual: bool = True, **extra) -> dict:
    ranges = [[{"subnet": V4_SUBNET}]] + ([[{"subnet": V6_SUBNET}]] if dual else [])
    routes = [{"dst": "0.0.0.0/0"}] + ([{"dst": "::/0"}] if dual else [])
    conf = {"cniVersion": version, "name": NAME, "type": "ptp", "ipMasq": True, "mtu": 1400,
            "dns": {"nameservers": ["10.66.0.53"]},
            "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": ranges, "routes": routes}}
    conf.update(extra)
    return {k: v for k, v in conf.items() if v is not None}


def run(plugins, command, conf, ctr, host_ns, **kw):
    return run_plugin(plugins, "ptp", command, conf, ctr, host_ns, **kw)


def ping(ns, address: str) -> None:
    ns.run("busybox", "ping", "-c", "1", "-W", "2", address)


def masq_rules(host_ns) -> list[str]:
    """iptables rules and chains of the plugins, and the rules of their nftables table."""
    lines = []
    for tool in ("iptables-save", "ip6tables-save"):
        lines += [l for l in host_ns.run(tool, "-t", "nat").stdout.splitlines() if "CNI-" in l]
    if shutil.which("nft"):
        table = host_ns.run("nft", "list", "table", "inet", "cni_plugins_masquerade", check=False).stdout
        lines += [l.strip() for l in table.splitlines() if l.strip().endswith("\"") and "masquerade" in l]
    return lines


def host_veths(host_ns) -> list[str]:
    return [n for n in host_ns.links() if n.startswith("veth")]


def assert_nothing_left(ctr, host_ns, data_dir):
    if ctr is not None:
        assert ctr.links() == ["lo"], ctr.links()
    assert host_veths(host_ns) == []
    assert reservations(data_dir, NAME) == []
    assert masq_rules(host_ns) == []


# ---- the lifecycle, every version ---------------------------------------------------------


def test_add_check_del_every_version(plugins, host_ns, make_netns, data_dir):
    for version in ALL_VERSIONS:
        ctr = make_netns("pycni-ctr")
        conf = make_conf(version, data_dir / version)
        out = run(plugins, "ADD", conf, ctr, host_ns).ok().json
        assert out["cniVersion"] == version
        [veth] = host_veths(host_ns)
        assert re.fullmatch(r"veth[0-9a-f]{8}", veth)
        assert ctr.link("eth0")["mtu"] == 1400 == host_ns.link(veth)["mtu"]
        # Point to point: the host end holds the gateways, the container reaches its subnet via them.
        assert global_addrs(host_ns, veth) == ["10.66.0.1/32", "fd66::1/128"]
        assert host_ns.ip_json("route", "show", "10.66.0.2/32")[0]["dev"] == veth
        assert host_ns.ip_json("-6", "route", "show", "fd66::2/128")[0]["dev"] == veth
        subnet = ctr.ip_json("route", "show", V4_SUBNET)
        assert subnet[0]["gateway"] == "10.66.0.1" and subnet[0]["prefsrc"] == "10.66.0.2"
        assert ctr.ip_json("route", "show", "10.66.0.1")[0]["scope"] == "link"
        assert ctr.ip_json("route", "show", "default")[0]["gateway"] == "10.66.0.1"
        assert ctr.ip_json("-6", "route", "show", V6_SUBNET)[0]["gateway"] == "fd66::1"
        ping(host_ns, "10.66.0.2")
        ping(ctr, "10.66.0.1")
        ping(ctr, "fd66::1")
        assert len(masq_rules(host_ns)) == 8  # per family: the chain, a jump, an ACCEPT and a MASQUERADE
        assert out["dns"] == {"nameservers": ["10.66.0.53"]}
        if version in ("0.1.0", "0.2.0"):
            assert out["ip4"]["ip"] == "10.66.0.2/24" and out["ip6"]["gateway"] == "fd66::1"
        else:
            host_mac, ctr_mac = host_ns.link(veth)["address"], ctr.link("eth0")["address"]
            assert out["interfaces"] == [{"name": veth, "mac": host_mac},
                                         {"name": "eth0", "mac": ctr_mac, "sandbox": ctr.path}]
            assert [ip["interface"] for ip in out["ips"]] == [1, 1]
        if version not in ("0.1.0", "0.2.0", "0.3.0", "0.3.1"):
            run(plugins, "CHECK", dict(conf, prevResult=out), ctr, host_ns).ok()
        run(plugins, "DEL", conf, ctr, host_ns).ok()
        assert_nothing_left(ctr, host_ns, data_dir / version)
        run(plugins, "DEL", conf, ctr, host_ns).ok()
        ctr.remove()


def test_two_containers_reach_each_other_through_the_host(plugins, host_ns, make_netns, data_dir):
    a, b = make_netns("pycni-ctr"), make_netns("pycni-ctr")
    conf = make_conf("1.0.0", data_dir, ipMasq=False)
    run(plugins, "ADD", conf, a, host_ns, containerid="a").ok()
    run(plugins, "ADD", conf, b, host_ns, containerid="b").ok()
    ping(a, "10.66.0.3")
    ping(b, "fd66::2")
    for ctr, cid in ((a, "a"), (b, "b")):
        run(plugins, "DEL", conf, ctr, host_ns, containerid=cid).ok()
    assert host_veths(host_ns) == []


@pytest.mark.skipif(not shutil.which("nft"), reason="nft is not installed")
def test_nftables_masquerade_removed_when_netns_is_gone(plugins, host_ns, make_netns, data_dir):
    conf = make_conf("1.0.0", data_dir, ipMasqBackend="nftables")
    ctr = make_netns("pycni-ctr")
    run(plugins, "ADD", conf, ctr, host_ns).ok()
    assert len([l for l in masq_rules(host_ns) if "masquerade" in l]) == 2
    ctr.remove()
    run(plugins, "DEL", conf, ctr, host_ns).ok()
    assert_nothing_left(None, host_ns, data_dir)


def test_iptables_masquerade_removed_when_netns_is_gone(plugins, host_ns, make_netns, data_dir):
    """The reference leaks these rules: it reads the addresses from the gone netns."""
    conf = make_conf("1.0.0", data_dir)
    ctr = make_netns("pycni-ctr")
    run(plugins, "ADD", conf, ctr, host_ns).ok()
    ctr.remove()
    run(plugins, "DEL", conf, ctr, host_ns).ok()
    assert_nothing_left(None, host_ns, data_dir)


# ---- invalid configuration and failures leave nothing behind ----------------------------------


@pytest.mark.parametrize("extra, text", [
    ({"ipam": None}, "ipam"),
    ({"mtu": -5}, "mtu"),
    ({"ipMasqBackend": "pf"}, "ipMasqBackend"),
    ({"ipMasq": "yes"}, "ipMasq"),
])
def test_invalid_config_is_code_7_and_leaves_nothing(plugins, host_ns, container_ns, data_dir, extra, text):
    out = run(plugins, "ADD", make_conf("1.0.0", data_dir, **extra), container_ns, host_ns)
    assert out.status == 1 and out.json["code"] == 7 and text in out.json["msg"], out.out
    assert_nothing_left(container_ns, host_ns, data_dir)


def test_failures_at_every_step_leave_nothing(plugins, host_ns, make_netns, data_dir):
    ctr = make_netns("pycni-ctr")
    # IPAM fails: the veth pair made before it goes again.
    bad_ipam = make_conf("1.0.0", data_dir)
    bad_ipam["ipam"]["ranges"] = [[{"subnet": "10.66.0.0/33"}]]
    assert run(plugins, "ADD", bad_ipam, ctr, host_ns).status == 1
    assert_nothing_left(ctr, host_ns, data_dir)
    # The MTU is refused by the kernel.
    out = run(plugins, "ADD", make_conf("1.0.0", data_dir, mtu=70000), ctr, host_ns)
    assert out.status == 1, out.out
    assert_nothing_left(ctr, host_ns, data_dir)
    # Configuring fails after IPAM: pair and reservation go again, no masquerade stays.
    unreachable = make_conf("1.0.0", data_dir)
    unreachable["ipam"]["routes"] = [{"dst": "10.99.0.0/16", "gw": "192.0.2.1"}]
    out = run(plugins, "ADD", unreachable, ctr, host_ns)
    assert out.status == 1 and "route" in out.json["msg"], out.out
    assert_nothing_left(ctr, host_ns, data_dir)
    # The netns is gone.
    out = run(plugins, "ADD", make_conf("1.0.0", data_dir), None, host_ns)
    assert out.status == 1 and "netns" in out.json["msg"], out.out
    assert_nothing_left(None, host_ns, data_dir)


def test_del_succeeds_when_the_link_is_gone(plugins, host_ns, container_ns, data_dir):
    conf = make_conf("1.0.0", data_dir)
    run(plugins, "ADD", conf, container_ns, host_ns).ok()
    container_ns.run("ip", "link", "del", "eth0")
    run(plugins, "DEL", conf, container_ns, host_ns).ok()
    assert_nothing_left(container_ns, host_ns, data_dir)


def test_check_notices_drift(plugins, host_ns, container_ns, data_dir):
    conf = make_conf("1.0.0", data_dir, dual=False)
    out = run(plugins, "ADD", conf, container_ns, host_ns).ok().json
    run(plugins, "CHECK", dict(conf, prevResult=out), container_ns, host_ns).ok()
    assert run(plugins, "CHECK", conf, container_ns, host_ns).json["code"] == 7  # no prevResult
    [veth] = host_veths(host_ns)
    host_ns.run("ip", "addr", "del", "10.66.0.1/32", "dev", veth)
    assert "gateway" in run(plugins, "CHECK", dict(conf, prevResult=out), container_ns, host_ns).json["msg"]
    host_ns.run("ip", "addr", "add", "10.66.0.1/32", "dev", veth)
    container_ns.run("ip", "route", "del", V4_SUBNET)
    assert run(plugins, "CHECK", dict(conf, prevResult=out), container_ns, host_ns).status == 1
    run(plugins, "DEL", conf, container_ns, host_ns).ok()


# ---- side by side with Go ---------------------------------------------------------------------


def netns_state(host_ns, ctr) -> dict:
    """Both ends as `ip` shows them, with MACs, veth names and link-local addresses masked."""
    [veth] = host_veths(host_ns)

    def routes(ns):
        found = [r for fam in ("-4", "-6") for r in ns.ip_json(fam, "route", "show", "table", "main")]
        return sorted(json.dumps(r, sort_keys=True).replace(veth, "VETH") for r in found)

    def link(ns, dev):
        l = ns.link(dev)
        return {"kind": l["linkinfo"]["info_kind"], "mtu": l["mtu"], "txqlen": l.get("txqlen"),
                "flags": sorted(l["flags"])}

    return {"host_addrs": compared_addrs(host_ns, veth), "host_routes": routes(host_ns), "host_link": link(host_ns, veth),
            "ctr_addrs": compared_addrs(ctr, "eth0"), "ctr_routes": routes(ctr), "ctr_link": link(ctr, "eth0"),
            "forwarding": host_ns.run("sysctl", "-n", "net.ipv4.ip_forward").stdout.strip(),
            "masq": sorted(re.sub(r"CNI-[0-9a-f]+", "CHAIN", l) for l in masq_rules(host_ns))}


def mask(result: dict) -> dict:
    text = re.sub(r'"mac": "[0-9a-f:]+"', '"mac": "MAC"', json.dumps(result, sort_keys=True))
    text = re.sub(r"veth[0-9a-f]{8}", "VETH", text)
    return json.loads(re.sub(r'"sandbox": "[^"]+"', '"sandbox": "NETNS"', text))


def test_same_as_go(source_plugins, go_plugins, make_netns, tmp_path):
    for version in GO_VERSIONS:
        states, results = [], []
        for plugins in (source_plugins, go_plugins):
            host, ctr = make_netns("pycni-host"), make_netns("pycni-ctr")
            conf = make_conf(version, tmp_path / f"{plugins.kind}-{version}")
            results.append(mask(run(plugins, "ADD", conf, ctr, host).ok().json))
            states.append(netns_state(host, ctr))
            run(plugins, "DEL", conf, ctr, host).ok()
            host.remove()
            ctr.remove()
        assert results[0] == results[1], version
        assert states[0] == states[1], version
