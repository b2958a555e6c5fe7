"""vrf: ADD/CHECK/DEL in throw-away netns, side by side with Go's vrf.

Needs a kernel with VRF devices; elsewhere these tests skip. Run them for real with
    /work/shared/kernel/vmrun.sh -t 900 -w "$PWD" -- \\
        "$PWD/.venv/bin/python" -m pytest -m needs_kernel_links -q tests/test_vrf.py
The VM is slow: the tests are few, and each covers a whole story; what needs no VRF
device (failures before one is made, DEL of what is gone) runs on the host.
"""
from __future__ import annotations

import pytest

from conftest import Netns, is_root

V4, V4_GW, V6, V6_GW = "10.74.0.5/24", "10.74.0.1", "fd74::5/64", "fd74::1"


def has_vrf() -> bool:
    ns = Netns("pycni-probe")
    try:
        return ns.run("ip", "link", "add", "probe0", "type", "vrf", "table", "10", check=False).returncode == 0
    finally:
        ns.remove()


pytestmark = pytest.mark.skipif(not is_root(), reason="needs root for network namespaces")
# Only what the kernel's VRF devices are needed for runs in the VM (slow: every exec counts).
needs_vrf = pytest.mark.needs_kernel_links
skip_without_vrf = pytest.mark.skipif(is_root() and not has_vrf(), reason="this kernel has no vrf")


def interface_like_a_main_plugin(ns, name: str = "eth0") -> None:
    """`name` as a main plugin leaves it: addresses, an on-link route, routes via gateways."""
    batch = f"""link add {name} type veth peer name {name}p
link set {name}p up
addr add {V4} dev {name}
addr add {V6} dev {name} nodad
link set {name} up
route add default via {V4_GW} dev {name}
route add 10.88.0.0/24 dev {name} scope link
route add 10.89.0.0/16 via 10.88.0.7 dev {name}
route add default via {V6_GW} dev {name}
"""
    ns.run("ip", "-batch", "-", input=batch)


def vrf_conf(version: str, netns: str, ifname: str = "eth0", **extra) -> dict:
    prev = {"cniVersion": version, "interfaces": [{"name": ifname, "sandbox": netns}],
            "ips": [{"interface": 0, "address": V4, "gateway": V4_GW}, {"interface": 0, "address": V6, "gateway": V6_GW}],
            "dns": {}}
    if version in ("0.3.1", "0.4.0"):
        for ip in prev["ips"]:
            ip["version"] = "6" if ":" in ip["address"] else "4"
    conf = {"cniVersion": version, "name": "vrfnet", "type": "vrf", "vrfname": "blue", "prevResult": prev}
    conf.update(extra)
    return conf


def run(plugins, command, conf, ns, ifname="eth0"):
    return plugins.run("vrf", command, conf, netns=ns.path if ns else "", ifname=ifname, timeout=300)


def routes(ns, *, dev: str = "eth0") -> set[tuple]:
    found = set()
    for family in ("-4", "-6"):
        for r in ns.ip_json(family, "route", "show", "table", "all"):
            if r.get("dev") == dev and r.get("type", "unicast") == "unicast" and r.get("table") != "local":
                found.add((r.get("table", "main"), r["dst"], r.get("gateway", ""), r.get("protocol", "boot")))
    return found


def vrf_of(ns, ifname: str = "eth0") -> tuple:
    link = ns.link(ifname)
    master = ns.link(link["master"]) if link.get("master") else None
    table = master["linkinfo"]["info_data"]["table"] if master else None
    return (link.get("master"), table)


def global_v6(ns, ifname: str = "eth0") -> list[str]:
    return [f"{a['local']}/{a['prefixlen']}" for e in ns.ip_json("-6", "addr", "show", "dev", ifname)
            for a in e["addr_info"] if a.get("scope") == "global"]


def without_sandbox(result: dict) -> dict:
    for iface in result.get("interfaces", []):
        iface.pop("sandbox", None)
    return result


@needs_vrf
@skip_without_vrf
def test_side_by_side_with_go_then_check_and_del(plugins, go_plugins, make_netns):
    """One version: the result is prevResult passed through, which test_sbr and the
    bad-input catalogue (versions before 0.3.1 refused) cover for every version."""
    for version in ("1.0.0",):
        ours, theirs = make_netns("pycni-vrf"), make_netns("pycni-vrfgo")
        for ns in (ours, theirs):
            interface_like_a_main_plugin(ns)
        out = run(plugins, "ADD", vrf_conf(version, ours.path), ours).ok()
        go = run(go_plugins, "ADD", vrf_conf(version, theirs.path), theirs).ok()
        assert without_sandbox(out.json) == without_sandbox(go.json)
        # The reference picks table 1 first; both keep the IPv6 address.
        assert vrf_of(ours) == vrf_of(theirs) == ("blue", 1)
        assert global_v6(ours) == global_v6(theirs) == [V6]
        # Go leaves the routes the kernel dropped; we put them into the VRF's table.
        dropped = {("1", "default", V4_GW, "boot"), ("1", "10.88.0.0/24", "", "boot"),
                   ("1", "10.89.0.0/16", "10.88.0.7", "boot"), ("1", "default", V6_GW, "boot")}
        assert routes(ours) == routes(theirs) | dropped
        assert not any(table == "main" for table, *_ in routes(ours))
        run(plugins, "CHECK", vrf_conf(version, ours.path), ours).ok()
        for _ in range(2):
            run(plugins, "DEL", vrf_conf(version, ours.path), ours).ok()
            assert ours.link("blue") is None and not ours.link("eth0").get("master")
        out = run(plugins, "CHECK", vrf_conf(version, ours.path), ours)
        assert out.status == 1 and "blue" in out.json["msg"]
        ours.remove()
        theirs.remove()


@needs_vrf
@skip_without_vrf
def test_shared_vrf_and_a_table_conflict(plugins, make_netns):
    ns = make_netns("pycni-vrf")
    interface_like_a_main_plugin(ns)
    ns.run("ip", "-batch", "-", input="link add eth1 type veth peer name eth1p\nlink add eth2 type veth peer name eth2p\n")
    conf = {n: vrf_conf("1.1.0", ns.path, n, table=42) for n in ("eth0", "eth1", "eth2")}
    run(plugins, "ADD", conf["eth0"], ns, "eth0").ok()
    run(plugins, "ADD", conf["eth1"], ns, "eth1").ok()  # the VRF is reused
    assert vrf_of(ns, "eth0") == vrf_of(ns, "eth1") == ("blue", 42)
    out = run(plugins, "ADD", conf["eth2"] | {"table": 43}, ns, "eth2")
    assert out.status == 1 and out.json["code"] == 7 and "42" in out.json["msg"], out
    assert not ns.link("eth2").get("master")
    out = run(plugins, "CHECK", conf["eth0"] | {"table": 43}, ns, "eth0")
    assert out.status == 1 and "43" in out.json["msg"], out
    # The last interface out takes the VRF with it; a gone link is no failure.
    run(plugins, "DEL", conf["eth0"], ns, "eth0").ok()
    assert ns.link("blue") is not None
    ns.run("ip", "link", "del", "eth1")
    run(plugins, "DEL", conf["eth1"], ns, "eth1").ok()
    assert ns.link("blue") is None


# ---- on any kernel: what fails or ends before a VRF device is made -------------------------------


def test_del_without_netns_or_with_a_vanished_one(plugins, tmp_path):
    gone = tmp_path / "gone"
    conf = vrf_conf("1.0.0", str(gone))
    plugins.run("vrf", "DEL", conf, netns="").ok()
    plugins.run("vrf", "DEL", conf, netns=str(gone)).ok()
    assert not gone.exists()


def test_del_without_the_vrf_succeeds(plugins, make_netns):
    ns = make_netns("pycni-vrf")
    interface_like_a_main_plugin(ns)
    run(plugins, "DEL", vrf_conf("1.0.0", ns.path), ns).ok()


def test_failed_add_leaves_nothing(plugins, make_netns):
    ns = make_netns("pycni-vrf")
    interface_like_a_main_plugin(ns)
    ns.run("ip", "link", "add", "br0", "type", "bridge")
    before = ns.ip_json("-d", "link", "show"), routes(ns)
    out = run(plugins, "ADD", vrf_conf("1.0.0", ns.path, vrfname="br0"), ns)
    assert out.status == 1 and "not a VRF" in out.json["msg"], out
    assert (ns.ip_json("-d", "link", "show"), routes(ns)) == before
    ns.run("ip", "link", "set", "eth0", "master", "br0")
    before = ns.ip_json("-d", "link", "show"), routes(ns)
    out = run(plugins, "ADD", vrf_conf("1.0.0", ns.path), ns)
    assert out.status == 1 and "master" in out.json["msg"], out
    assert (ns.ip_json("-d", "link", "show"), routes(ns)) == before  # no VRF made (Go leaves one)
