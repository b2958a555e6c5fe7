"""cni.netlink against the kernel, `ip -j -d` and pyroute2's decoder.

Every kernel test works inside netns it creates (make_netns, prefix "nltest");
the fixture deletes them, and everything in them, even when a test fails.
The codec tests at the bottom need no kernel: they encode requests and decode
them back, with our decoder and with pyroute2's.
"""
from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
import struct
import subprocess
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cni import netlink as nlmod
from cni.netlink import bridge as nlbridge
from cni.netlink import rule as nlrule
from cni.netlink import (
    AF_BRIDGE,
    IFA_F_NODAD,
    IFA_F_PERMANENT,
    IFA_F_TENTATIVE,
    Address,
    Link,
    Netlink,
    NetlinkError,
    Route,
    decode_link,
)


class Client(nlbridge.BridgeNetlink, nlrule.RuleNetlink):
    """One socket with every operation these tests exercise."""


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

MAC_A = "02:aa:00:00:00:01"
MAC_B = "02:aa:00:00:00:02"
MAC_C = "02:aa:00:00:00:03"


# ---- fixtures and helpers -----------------------------------------------------------


@pytest.fixture
def ns(make_netns):
    netns = make_netns("nltest")
    # No kernel-made IPv6 link-local addresses (nor their fe80::/64 routes): the kernel adds
    # them asynchronously once a link has carrier, so two dumps taken one after the other (ours,
    # then pyroute2's or ip's) could disagree about them.
    netns.run("sysctl", "-qw", "net.ipv6.conf.default.addr_gen_mode=1")
    return netns


@pytest.fixture
def nl(ns):
    with Client(ns.path) as client:
        yield client


@pytest.fixture
def netns_fd():
    """Open netns files by path; all closed at the end."""
    fds: list[int] = []

    def open_fd(path: str) -> int:
        fds.append(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        return fds[-1]

    yield open_fd
    for fd in fds:
        os.close(fd)


def ip_link(ns, name: str) -> dict:
    data = ns.link(name)
    assert data is not None, f"ip does not see {name}"
    return data


def pyroute(ns):
    from pyroute2 import NetNS

    return NetNS(ns.name)


def make_veth(nl: Netlink, name: str, peer: str, **kw) -> tuple[Link, Link]:
    nl.create_veth(name, peer, **kw)
    return nl.get_link(name), nl.get_link(peer)


def skip_if_unsupported(exc: NetlinkError, what: str) -> None:
    if exc.errno == errno.EOPNOTSUPP:
        pytest.skip(f"kernel has no {what} ({exc})")


def check_link_against_ip(ns, link: Link) -> None:
    ref = ip_link(ns, link.name)
    assert ref["ifindex"] == link.index
    assert ref["address"] == link.mac
    assert ref["mtu"] == link.mtu
    assert ref["txqlen"] == link.txqlen
    assert ref["operstate"].lower() == link.operstate
    assert ("UP" in ref["flags"]) == link.up
    assert ("PROMISC" in ref["flags"]) == link.promisc
    assert ("ALLMULTI" in ref["flags"]) == link.allmulti
    assert ref.get("linkinfo", {}).get("info_kind", "") == link.kind
    if link.master:
        assert ref["master"] == ip_link_name(ns, link.master)
    else:
        assert "master" not in ref
    if "link_netnsid" in ref:
        assert ref["link_netnsid"] == link.link_netnsid
    if "link_index" in ref:
        assert ref["link_index"] == link.link


def ip_link_name(ns, index: int) -> str:
    return next(l["ifname"] for l in ns.ip_json("link", "show") if l["ifindex"] == index)


def check_link_against_pyroute2(ns, link: Link) -> None:
    with pyroute(ns) as ipr:
        ref = ipr.get_links(link.index)[0]
    assert ref.get("ifname") == link.name
    assert ref.get("address") == link.mac
    assert ref.get("mtu") == link.mtu
    assert ref["flags"] == link.flags
    assert (ref.get("IFLA_LINK") or 0) == link.link
    assert (ref.get("IFLA_MASTER") or 0) == link.master
    assert ref.get("IFLA_OPERSTATE").lower() == link.operstate
    assert ref.get("IFLA_LINK_NETNSID") == link.link_netnsid
    assert (ref.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") or "") == link.kind


# ---- links ------------------------------------------------------------------------------


@needs_root
def test_veth_with_peer_created_in_another_netns(make_netns, netns_fd):
    host, ctr = make_netns("nltest"), make_netns("nltest")
    with Netlink(host.path) as nl_host, Netlink(ctr.path) as nl_ctr:
        nl_host.create_veth("nlveth0", "nleth0", peer_netns_fd=netns_fd(ctr.path), mtu=1400, mac=MAC_A, peer_mac=MAC_B)
        host_end = nl_host.get_link("nlveth0")
        ctr_end = nl_ctr.get_link("nleth0")
        assert nl_host.get_link("nleth0") is None
        assert nl_ctr.get_link("nlveth0") is None

    assert host_end.kind == ctr_end.kind == "veth"
    assert (host_end.mac, ctr_end.mac) == (MAC_A, MAC_B)
    assert host_end.mtu == ctr_end.mtu == 1400
    assert host_end.link == ctr_end.index and ctr_end.link == host_end.index
    assert host_end.link_netnsid is not None and ctr_end.link_netnsid is not None
    for where, link in ((host, host_end), (ctr, ctr_end)):
        check_link_against_ip(where, link)
        check_link_against_pyroute2(where, link)


@needs_root
def test_links_dump_matches_ip_and_pyroute2(ns, nl):
    veth, _peer = make_veth(nl, "nlv0", "nlv1", mtu=1450)
    nl.create_bridge("nlbr0", mac=MAC_C)
    bridge = nl.get_link("nlbr0")
    lower, _ = make_veth(nl, "nlv2", "nlv3")
    nl.create_macvlan("nlmv0", lower.index, "vepa")
    nl.set_link(veth.index, master=bridge.index, up=True)
    nl.set_link(lower.index, promisc=True)
    links = nl.links()
    assert {l.name for l in links} == {"lo", "nlv0", "nlv1", "nlv2", "nlv3", "nlbr0", "nlmv0"}
    assert {l.name for l in links} == set(ns.links())
    for link in links:
        assert nl.get_link_by_index(link.index) == link
        assert nl.get_link(link.name) == link
        check_link_against_ip(ns, link)
        check_link_against_pyroute2(ns, link)


@needs_root
def test_links_dump_spanning_many_datagrams(ns, nl):
    for i in range(40):
        nl.create_veth(f"nlm{i}a", f"nlm{i}b", mtu=1280 + i)
    links = nl.links()
    assert len(links) == 81
    assert sorted(l.name for l in links) == sorted(ns.links())
    assert {l.name: l.mtu for l in links if l.name.startswith("nlm")} == {
        f"nlm{i}{s}": 1280 + i for i in range(40) for s in "ab"
    }


@needs_root
def test_bridge_create_enslave_hairpin_isolated(ns, nl):
    nl.create_bridge("nlbr0", mtu=1400, mac=MAC_C)
    bridge = nl.get_link("nlbr0")
    assert bridge.kind == "bridge" and bridge.mac == MAC_C and bridge.mtu == 1400
    assert bridge.info["vlan_filtering"] is False
    assert ip_link(ns, "nlbr0")["linkinfo"]["info_data"]["vlan_filtering"] == 0

    port, _ = make_veth(nl, "nlport0", "nlpeer0")
    assert nl.bridge_port(port.index) == {}
    nl.set_link(port.index, master=bridge.index)
    port = nl.get_link("nlport0")
    assert port.master == bridge.index and port.slave_kind == "bridge"
    assert nl.bridge_port(port.index)["hairpin"] is False

    nl.set_bridge_port(port.index, hairpin=True, isolated=True, learning=False)
    settings = nl.bridge_port(port.index)
    assert (settings["hairpin"], settings["isolated"], settings["learning"]) == (True, True, False)
    assert nl.get_link("nlport0").slave_info == settings
    slave = ip_link(ns, "nlport0")["linkinfo"]["info_slave_data"]
    assert (slave["hairpin"], slave["isolated"], slave["learning"]) == (True, True, False)
    with pyroute(ns) as ipr:
        ref = ipr.get_links(port.index)[0]
        assert ref.get_nested("IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA", "IFLA_BRPORT_MODE") == 1
        assert ref.get_nested("IFLA_LINKINFO", "IFLA_INFO_SLAVE_DATA", "IFLA_BRPORT_ISOLATED") == 1

    nl.set_bridge_port(port.index, hairpin=False)
    settings = nl.bridge_port(port.index)
    assert (settings["hairpin"], settings["isolated"]) == (False, True)

    nl.set_link(port.index, master=0)
    assert nl.get_link("nlport0").master == 0
    assert "master" not in ip_link(ns, "nlport0")
    assert nl.bridge_port(port.index) == {}


@needs_root
@pytest.mark.needs_kernel_links
def test_bridge_vlan_filtering_and_vlans(ns, nl):
    try:
        nl.create_bridge("nlbr0", vlan_filtering=True)
    except NetlinkError as exc:
        skip_if_unsupported(exc, "bridge VLAN filtering")
        raise
    bridge = nl.get_link("nlbr0")
    assert bridge.info["vlan_filtering"] is True
    assert ip_link(ns, "nlbr0")["linkinfo"]["info_data"]["vlan_filtering"] == 1

    port, _ = make_veth(nl, "nlport0", "nlpeer0")
    nl.set_link(port.index, master=bridge.index)
    nl.bridge_vlan_add(port.index, 10, pvid=True, untagged=True)
    nl.bridge_vlan_add(port.index, 20, vid_end=23)
    nl.bridge_vlan_add(bridge.index, 10, self_=True)
    vlans = {v["vid"]: v for v in nl.bridge_vlans(port.index)}
    assert vlans[10] == {"vid": 10, "pvid": True, "untagged": True}
    assert [vlans[v] for v in range(20, 24)] == [{"vid": v, "pvid": False, "untagged": False} for v in range(20, 24)]
    assert 1 not in vlans or not vlans[1]["pvid"]  # vid 10 took over the pvid
    assert 10 in {v["vid"] for v in nl.bridge_vlans(bridge.index)}

    out = subprocess.run(["ip", "netns", "exec", ns.name, "bridge", "-j", "vlan", "show", "dev", "nlport0"],
                         capture_output=True, text=True, check=True).stdout
    ref = {}
    for entry in json.loads(out)[0]["vlans"]:
        for vid in range(entry["vlan"], entry.get("vlanEnd", entry["vlan"]) + 1):
            ref[vid] = {"vid": vid, "pvid": "PVID" in entry.get("flags", []),
                        "untagged": "Egress Untagged" in entry.get("flags", [])}
    assert ref == vlans

    nl.bridge_vlan_del(port.index, 10)
    nl.bridge_vlan_del(port.index, 20, vid_end=23)
    left = {v["vid"] for v in nl.bridge_vlans(port.index)}
    assert not left & {10, 20, 21, 22, 23}


@needs_root
@pytest.mark.parametrize("mode", ["bridge", "private", "vepa", "passthru", "source"])
def test_macvlan_modes(ns, nl, mode):
    master, _ = make_veth(nl, "nlmaster", "nlmpeer")
    kw = {} if mode == "passthru" else {"mac": MAC_A}
    nl.create_macvlan("nlmv0", master.index, mode, mtu=1400, **kw)
    link = nl.get_link("nlmv0")
    assert link.kind == "macvlan" and link.info["mode"] == mode
    assert link.link == master.index and link.mtu == 1400
    if kw:
        assert link.mac == MAC_A
    assert ip_link(ns, "nlmv0")["linkinfo"]["info_data"]["mode"] == mode
    check_link_against_ip(ns, link)
    check_link_against_pyroute2(ns, link)
    with pyroute(ns) as ipr:
        ref = ipr.get_links(link.index)[0]
        assert ref.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_MACVLAN_MODE") == mode


@needs_root
def test_macvlan_bcqueuelen(ns, nl):
    master, _ = make_veth(nl, "nlmaster", "nlmpeer")
    nl.create_macvlan("nlmv0", master.index, bcqueuelen=3000)
    link = nl.get_link("nlmv0")
    assert link.info["bcqueuelen"] == 3000
    assert ip_link(ns, "nlmv0")["linkinfo"]["info_data"]["bcqueuelen"] == 3000


@needs_root
def test_macvlan_created_into_another_netns(make_netns, netns_fd):
    host, ctr = make_netns("nltest"), make_netns("nltest")
    with Netlink(host.path) as nl_host, Netlink(ctr.path) as nl_ctr:
        master, _ = make_veth(nl_host, "nlmaster", "nlmpeer")
        nl_host.create_macvlan("nleth0", master.index, "private", netns_fd=netns_fd(ctr.path))
        assert nl_host.get_link("nleth0") is None
        link = nl_ctr.get_link("nleth0")
    assert link.kind == "macvlan" and link.info["mode"] == "private"
    assert link.link == master.index and link.link_netnsid is not None
    check_link_against_ip(ctr, link)
    check_link_against_pyroute2(ctr, link)


@needs_root
def test_set_link_every_field(ns, nl):
    veth, peer = make_veth(nl, "nlv0", "nlv1")
    nl.set_link(veth.index, up=True, mtu=1300, mac=MAC_B, txqlen=500, promisc=True, allmulti=True)
    link = nl.get_link_by_index(veth.index)
    assert (link.up, link.mtu, link.mac, link.txqlen, link.promisc, link.allmulti) == (True, 1300, MAC_B, 500, True, True)
    check_link_against_ip(ns, link)
    check_link_against_pyroute2(ns, link)

    nl.set_link(veth.index, promisc=False, allmulti=False)
    link = nl.get_link_by_index(veth.index)
    assert link.up and not link.promisc and not link.allmulti

    # Older kernels refuse to rename a link that is up: down, then rename and up in one call.
    nl.set_link(veth.index, up=False)
    nl.set_link(veth.index, name="nlrenamed", up=True)
    assert nl.get_link("nlv0") is None
    renamed = nl.get_link("nlrenamed")
    assert renamed.index == veth.index and renamed.up
    check_link_against_ip(ns, renamed)


@needs_root
def test_set_link_moves_to_another_netns(make_netns, netns_fd):
    host, ctr = make_netns("nltest"), make_netns("nltest")
    with Netlink(host.path) as nl_host, Netlink(ctr.path) as nl_ctr:
        veth, peer = make_veth(nl_host, "nlv0", "nlv1")
        nl_host.set_link(peer.index, netns_fd=netns_fd(ctr.path))
        assert nl_host.get_link("nlv1") is None
        moved = nl_ctr.get_link("nlv1")
        assert moved is not None and moved.mac == peer.mac
        assert moved.link == veth.index and moved.link_netnsid is not None
        assert nl_host.get_link("nlv0").link_netnsid is not None
        check_link_against_ip(ctr, moved)


@needs_root
def test_delete_link_and_errors(ns, nl):
    veth, peer = make_veth(nl, "nlv0", "nlv1")
    with pytest.raises(NetlinkError) as exc:
        nl.create_veth("nlv0", "nlv9")
    assert exc.value.errno == errno.EEXIST
    assert isinstance(exc.value, OSError)
    assert 'create veth "nlv0"' in str(exc.value)
    with pytest.raises(NetlinkError) as exc:
        nl.create_bridge("nlv0")
    assert exc.value.errno == errno.EEXIST

    nl.delete_link(veth.index)
    assert nl.get_link("nlv0") is None and nl.get_link("nlv1") is None
    assert nl.get_link_by_index(veth.index) is None
    with pytest.raises(NetlinkError) as exc:
        nl.delete_link(veth.index)
    assert exc.value.errno == errno.ENODEV and exc.value.gone
    assert f"delete link {veth.index}" in str(exc.value)


@needs_root
def test_extended_ack_message_in_error(ns, nl):
    veth, _ = make_veth(nl, "nlv0", "nlv1")
    with pytest.raises(NetlinkError) as exc:
        nl.delete_address(veth.index, "10.99.0.1/24")
    assert exc.value.errno == errno.EADDRNOTAVAIL and exc.value.gone
    assert exc.value.ext_msg  # e.g. "ipv4: Address not found"
    assert exc.value.ext_msg in str(exc.value)
    assert "delete address 10.99.0.1/24" in str(exc.value)


@needs_root
@pytest.mark.needs_kernel_links
def test_ipvlan_on_kernel(ns, nl):
    master, _ = make_veth(nl, "nlmaster", "nlmpeer")
    for mode in ("l2", "l3", "l3s"):
        try:
            nl.create_ipvlan(f"nlipv{mode}", master.index, mode, mtu=1400)
        except NetlinkError as exc:
            skip_if_unsupported(exc, "ipvlan")
            raise
        link = nl.get_link(f"nlipv{mode}")
        assert link.kind == "ipvlan" and link.info["mode"] == mode and link.link == master.index
        assert ip_link(ns, link.name)["linkinfo"]["info_data"]["mode"] == mode
        check_link_against_pyroute2(ns, link)


@needs_root
@pytest.mark.needs_kernel_links
def test_vlan_on_kernel(ns, nl):
    master, _ = make_veth(nl, "nlmaster", "nlmpeer")
    try:
        nl.create_vlan("nlvlan42", master.index, 42, mtu=1400)
    except NetlinkError as exc:
        skip_if_unsupported(exc, "802.1q vlan")
        raise
    link = nl.get_link("nlvlan42")
    assert link.kind == "vlan" and link.info["id"] == 42 and link.link == master.index
    assert ip_link(ns, link.name)["linkinfo"]["info_data"]["id"] == 42
    check_link_against_pyroute2(ns, link)


# ---- addresses --------------------------------------------------------------------------


def ip_addrs(ns, name: str) -> set[tuple[str, int]]:
    return {(a["local"], a["prefixlen"]) for a in ns.ip_json("addr", "show", "dev", name)[0]["addr_info"]}


@needs_root
def test_addresses_v4_and_v6(ns, nl):
    veth, peer = make_veth(nl, "nlv0", "nlv1")
    nl.set_link(veth.index, up=True)
    nl.set_link(peer.index, up=True)

    nl.add_address(veth.index, "10.10.0.2/24")
    nl.add_address(veth.index, ipaddress.ip_interface("10.11.0.0/31"))
    nl.add_address(veth.index, "fd00:10::2/64", flags=IFA_F_NODAD)
    nl.add_address(peer.index, "fd00:10::3/64")  # with DAD on an up link: tentative for a while

    info = {a["local"]: a for a in ns.ip_json("addr", "show", "dev", "nlv0")[0]["addr_info"]}
    assert info["10.10.0.2"]["broadcast"] == "10.10.0.255"
    assert "broadcast" not in info["10.11.0.0"]
    assert info["fd00:10::2"].get("nodad") is True

    mine = {str(a.address): a for a in nl.addresses(veth.index)}
    assert {"10.10.0.2/24", "10.11.0.0/31", "fd00:10::2/64"} <= set(mine)
    assert {(str(a.address.ip), a.address.network.prefixlen) for a in nl.addresses(veth.index)} == ip_addrs(ns, "nlv0")
    v6 = mine["fd00:10::2/64"]
    assert v6.flags & IFA_F_NODAD and v6.flags & IFA_F_PERMANENT and not v6.flags & IFA_F_TENTATIVE
    assert isinstance(v6, Address) and v6.index == veth.index and v6.scope == 0
    assert nl.addresses(peer.index, socket.AF_INET6)[0].address == ipaddress.ip_interface("fd00:10::3/64") or any(
        a.address == ipaddress.ip_interface("fd00:10::3/64") for a in nl.addresses(peer.index, socket.AF_INET6))

    assert {str(a.address) for a in nl.addresses(family=socket.AF_INET)} == {"10.10.0.2/24", "10.11.0.0/31", "127.0.0.1/8"}
    assert all(a.address.version == 6 for a in nl.addresses(veth.index, socket.AF_INET6))

    with pyroute(ns) as ipr:
        ref = {(a.get("index"), a.get("address") if a["family"] == socket.AF_INET6 else a.get("local"),
                a["prefixlen"], a["scope"], a.get("IFA_FLAGS")) for a in ipr.get_addr()}
    assert ref == {(a.index, str(a.address.ip), a.address.network.prefixlen, a.scope, a.flags) for a in nl.addresses()}


@needs_root
def test_address_errors_replace_and_delete(ns, nl):
    veth, _ = make_veth(nl, "nlv0", "nlv1")
    nl.add_address(veth.index, "10.10.0.2/24")
    with pytest.raises(NetlinkError) as exc:
        nl.add_address(veth.index, "10.10.0.2/24")
    assert exc.value.errno == errno.EEXIST
    nl.add_address(veth.index, "10.10.0.2/24", replace=True)
    nl.add_address(veth.index, "fd00::2/64", flags=IFA_F_NODAD)
    with pytest.raises(NetlinkError) as exc:
        nl.add_address(veth.index, "fd00::2/64", flags=IFA_F_NODAD)
    assert exc.value.errno == errno.EEXIST

    nl.delete_address(veth.index, "10.10.0.2/24")
    nl.delete_address(veth.index, "fd00::2/64")
    assert ip_addrs(ns, "nlv0") == set()
    assert [a for a in nl.addresses(veth.index) if not a.address.is_link_local] == []
    for gone in ("10.10.0.2/24", "fd00::2/64"):
        with pytest.raises(NetlinkError) as exc:
            nl.delete_address(veth.index, gone)
        assert exc.value.errno == errno.EADDRNOTAVAIL


@needs_root
def test_tentative_address_on_down_link(ns, nl):
    veth, _ = make_veth(nl, "nlv0", "nlv1")
    nl.add_address(veth.index, "fd00::5/64")
    (addr,) = nl.addresses(veth.index, socket.AF_INET6)
    assert addr.flags & IFA_F_TENTATIVE
    assert ns.ip_json("addr", "show", "dev", "nlv0")[0]["addr_info"][0].get("tentative") is True


# ---- routes -------------------------------------------------------------------------------


@pytest.fixture
def routed(ns, nl):
    """An up veth with 10.20.0.2/24 and fd20::2/64 (no DAD) in `ns`."""
    veth, peer = make_veth(nl, "nlv0", "nlv1")
    nl.set_link(veth.index, up=True)
    nl.set_link(peer.index, up=True)
    nl.add_address(veth.index, "10.20.0.2/24")
    nl.add_address(veth.index, "fd20::2/64", flags=IFA_F_NODAD)
    return veth


def route_key(r: Route):
    return (str(r.dst), str(r.gw) if r.gw else None, r.oif, r.table, r.priority)


def pyroute2_routes(ns, table):
    with pyroute(ns) as ipr:
        out = set()
        for r in ipr.get_routes(table=table):
            dst = r.get("RTA_DST") or ("0.0.0.0" if r["family"] == socket.AF_INET else "::")
            net = ipaddress.ip_network(f"{dst}/{r['dst_len']}")
            out.add((str(net), r.get("RTA_GATEWAY"), r.get("RTA_OIF") or 0, r.get("RTA_TABLE"),
                     r.get("RTA_PRIORITY") or 0, r["scope"], r["proto"], r["type"],
                     r.get_nested("RTA_METRICS", "RTAX_MTU") or 0, r.get_nested("RTA_METRICS", "RTAX_ADVMSS") or 0))
        return out


@needs_root
def test_routes_with_and_without_gateway(ns, nl, routed):
    idx = routed.index
    nl.add_route("10.30.0.0/16", gw="10.20.0.1", priority=50, mtu=1300, advmss=1200)
    nl.add_route("10.40.0.0/16", oif=idx)
    nl.add_route("default", gw="10.20.0.1")
    nl.add_route("10.50.0.0/16", oif=idx, src="10.20.0.2", proto=nlmod.RTPROT_BOOT)
    nl.add_route("fd30::/64", gw="fd20::1", priority=100)
    nl.add_route("::/0", gw="fd20::1", oif=idx)
    nl.add_route("10.60.0.0/16", gw="10.20.0.1", table=100)

    mine = {route_key(r): r for r in nl.routes()}
    via = mine[("10.30.0.0/16", "10.20.0.1", idx, 254, 50)]
    assert (via.mtu, via.advmss, via.scope, via.proto, via.type) == (1300, 1200, 0, nlmod.RTPROT_STATIC, 1)
    link_route = mine[("10.40.0.0/16", None, idx, 254, 0)]
    assert link_route.scope == nlmod.RT_SCOPE_LINK
    default = mine[("0.0.0.0/0", "10.20.0.1", idx, 254, 0)]
    assert default.dst == ipaddress.ip_network("0.0.0.0/0")
    src_route = mine[("10.50.0.0/16", None, idx, 254, 0)]
    assert src_route.src == ipaddress.ip_address("10.20.0.2") and src_route.proto == nlmod.RTPROT_BOOT
    assert ("fd30::/64", "fd20::1", idx, 254, 100) in mine
    assert ("::/0", "fd20::1", idx, 254, 1024) in mine  # the kernel's default IPv6 metric
    assert ("10.60.0.0/16", "10.20.0.1", idx, 100, 0) not in mine
    assert [route_key(r) for r in nl.routes(table=100)] == [("10.60.0.0/16", "10.20.0.1", idx, 100, 0)]
    every = nl.routes(table=None)
    assert {r.table for r in every} >= {100, 254, 255}
    assert all(r.family == socket.AF_INET6 for r in nl.routes(socket.AF_INET6))

    for table in (254, 100):
        ours = {(str(r.dst), str(r.gw) if r.gw else None, r.oif, r.table, r.priority, r.scope, r.proto, r.type,
                 r.mtu, r.advmss) for r in nl.routes(table=table)}
        assert ours == pyroute2_routes(ns, table)

    ref = {(r["dst"], r.get("gateway")): r for r in ns.ip_json("route", "show")}
    assert ref[("10.30.0.0/16", "10.20.0.1")]["metric"] == 50
    assert ref[("10.40.0.0/16", None)]["scope"] == "link"
    assert ref[("10.50.0.0/16", None)]["prefsrc"] == "10.20.0.2"
    assert ("default", "10.20.0.1") in ref
    assert {(str(r.dst), str(r.gw) if r.gw else None) for r in nl.routes(socket.AF_INET)} == {
        ("0.0.0.0/0" if d == "default" else str(ipaddress.ip_network(d)), g) for d, g in ref}


@needs_root
def test_route_errors_replace_and_delete(ns, nl, routed):
    idx = routed.index
    nl.add_route("10.30.0.0/16", gw="10.20.0.1")
    with pytest.raises(NetlinkError) as exc:
        nl.add_route("10.30.0.0/16", gw="10.20.0.1")
    assert exc.value.errno == errno.EEXIST
    nl.add_route("10.30.0.0/16", gw="10.20.0.3", replace=True)
    (route,) = [r for r in nl.routes() if str(r.dst) == "10.30.0.0/16"]
    assert str(route.gw) == "10.20.0.3"

    nl.add_route("10.31.0.0/16", gw="10.20.0.1", priority=10)
    nl.add_route("10.31.0.0/16", gw="10.20.0.1", priority=20)
    nl.delete_route("10.31.0.0/16", gw="10.20.0.1", priority=10)
    assert [r.priority for r in nl.routes() if str(r.dst) == "10.31.0.0/16"] == [20]

    nl.add_route("default", gw="10.20.0.1")
    nl.add_route("default", gw="fd20::1")
    nl.delete_route("default", gw="10.20.0.1")
    nl.delete_route("::/0", gw="fd20::1", oif=idx)
    assert not [r for r in nl.routes() if r.dst.prefixlen == 0]

    nl.delete_route("10.30.0.0/16")
    with pytest.raises(NetlinkError) as exc:
        nl.delete_route("10.30.0.0/16")
    assert exc.value.errno == errno.ESRCH and exc.value.gone
    with pytest.raises(NetlinkError) as exc:
        nl.delete_route("fd99::/64")
    assert exc.value.errno == errno.ESRCH


# ---- rules -----------------------------------------------------------------------------------


def ip_rules(ns) -> list[tuple]:
    """(family, priority, src, dst, table, iif, oif, fwmark, action) per rule, from `ip -j rule`."""
    out = []
    for family, flag in ((int(socket.AF_INET), "-4"), (int(socket.AF_INET6), "-6")):
        for r in ns.ip_json(flag, "rule", "show"):
            table = {"local": 255, "main": 254, "default": 253}.get(r.get("table"), r.get("table"))
            src = None if r["src"] == "all" else f"{r['src']}/{r.get('srclen', 128 if ':' in r['src'] else 32)}"
            dst = f"{r['dst']}/{r.get('dstlen', 128 if ':' in r['dst'] else 32)}" if "dst" in r else None
            fwmark = int(r["fwmark"], 16) if "fwmark" in r else 0
            out.append((family, r["priority"], src, dst, int(table) if table is not None else 0, r.get("iif", ""),
                        r.get("oif", ""), fwmark, r.get("action", "lookup")))
    return out


def our_rules(nl) -> list[tuple]:
    actions = {nlrule.FR_ACT_TO_TBL: "lookup", nlrule.FR_ACT_UNREACHABLE: "unreachable"}
    return [(r.family, r.priority, str(r.src) if r.src else None, str(r.dst) if r.dst else None, r.table,
             r.iifname, r.oifname, r.fwmark, actions.get(r.action, r.action)) for r in nl.rules()]


@needs_root
def test_rules_dump_matches_ip_and_pyroute2(ns, nl):
    ns.run("ip", "rule", "add", "from", "10.40.0.5", "lookup", "100")
    ns.run("ip", "rule", "add", "from", "10.41.0.0/16", "to", "10.42.0.0/24", "iif", "lo", "pref", "500",
           "lookup", "70000")
    ns.run("ip", "rule", "add", "fwmark", "0x20", "oif", "lo", "pref", "600", "unreachable")
    ns.run("ip", "-6", "rule", "add", "from", "fd40::5", "lookup", "101")
    assert sorted(our_rules(nl), key=str) == sorted(ip_rules(ns), key=str)
    with pyroute(ns) as ipr:
        ref = sorted((r["family"], r.get("FRA_PRIORITY") or 0, r.get("FRA_TABLE") or r["table"],
                      r.get("FRA_SRC") or "", r["src_len"]) for r in ipr.get_rules())
    ours = sorted((r.family, r.priority, r.table, str(r.src.network_address) if r.src else "",
                   r.src.prefixlen if r.src else 0) for r in nl.rules())
    assert ours == ref


@needs_root
def test_rule_add_delete_and_errors(ns, nl):
    before = ip_rules(ns)
    rule = nlrule.source_rule("10.43.0.5", 100)
    nl.add_rule(rule)
    nl.add_rule(nlrule.source_rule("fd43::5", 70000))
    added = [r for r in ip_rules(ns) if r not in before]
    # No priority asked for: the kernel puts each below the main table's rule.
    assert added == [(socket.AF_INET, 32765, "10.43.0.5/32", None, 100, "", "", 0, "lookup"),
                     (socket.AF_INET6, 32765, "fd43::5/128", None, 70000, "", "", 0, "lookup")]
    fixed = nlrule.Rule(src=ipaddress.ip_network("10.44.0.0/16"), table=7, priority=900)
    nl.add_rule(fixed)
    with pytest.raises(NetlinkError) as exc:
        nl.add_rule(fixed)  # a duplicate only when the priority is the same (none given: the next free)
    assert exc.value.errno == errno.EEXIST
    for r in nl.rules():
        if r.src is not None:
            nl.delete_rule(r)
    assert ip_rules(ns) == before
    with pytest.raises(NetlinkError) as exc:
        nl.delete_rule(rule)
    assert exc.value.gone


# ---- waiting ------------------------------------------------------------------------------


@needs_root
def test_wait_oper_up_on_veth_pair(ns, nl):
    veth, peer = make_veth(nl, "nlv0", "nlv1")
    nl.set_link(veth.index, up=True)
    started = time.monotonic()
    assert nl.wait_oper_up(veth.index, timeout=0.3) is False
    assert time.monotonic() - started >= 0.29

    def bring_peer_up():
        time.sleep(0.2)
        with Netlink(ns.path) as other:
            other.set_link(peer.index, up=True)

    helper = threading.Thread(target=bring_peer_up)
    helper.start()
    try:
        started = time.monotonic()
        assert nl.wait_oper_up(veth.index, timeout=5) is True
        assert time.monotonic() - started < 2
    finally:
        helper.join()
    assert nl.get_link("nlv0").operstate == "up"
    assert ip_link(ns, "nlv0")["operstate"] == "UP"
    # The socket still answers requests after the notifications it received.
    assert nl.get_link_by_index(peer.index).operstate == "up"
    with pytest.raises(NetlinkError) as exc:
        nl.wait_oper_up(9999, timeout=0.1)
    assert exc.value.errno == errno.ENODEV


# ---- codec, without a kernel ------------------------------------------------------------------


class Recorder(Client):
    """A client that records requests instead of sending them."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, int, bytes]] = []

    def request(self, msg_type, flags, body, operation, *, dump=False):
        assert not dump, "the recorder only takes requests that change things"
        self.sent.append((msg_type, flags, body))
        return []


def pyroute2_decode(msg_type: int, flags: int, body: bytes):
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    msg = ifinfmsg(struct.pack("=IHHII", 16 + len(body), msg_type, flags, 1, 0) + body)
    msg.decode()
    return msg


@pytest.mark.parametrize("mode", ["l2", "l3", "l3s"])
def test_ipvlan_encoding(mode):
    rec = Recorder()
    rec.create_ipvlan("nlipv0", 7, mode, mtu=1400, netns_fd=12)
    ((msg_type, flags, body),) = rec.sent
    assert msg_type == nlmod.RTM_NEWLINK and flags == nlmod.NLM_F_CREATE | nlmod.NLM_F_EXCL
    link = decode_link(body)
    assert (link.name, link.kind, link.link, link.mtu, link.info) == ("nlipv0", "ipvlan", 7, 1400, {"mode": mode})
    attrs = nlmod.parse_attrs(body, 16)
    assert nlmod.u32(attrs[nlmod.IFLA_NET_NS_FD]) == 12
    ref = pyroute2_decode(msg_type, flags, body)
    assert ref.get("IFLA_IFNAME") == "nlipv0" and ref.get("IFLA_LINK") == 7 and ref.get("IFLA_NET_NS_FD") == 12
    assert ref.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "ipvlan"
    assert ref.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_IPVLAN_MODE") == nlmod.IPVLAN_MODES[mode]


def test_vlan_encoding():
    rec = Recorder()
    rec.create_vlan("nlvlan42", 5, 42, mtu=1400)
    ((msg_type, flags, body),) = rec.sent
    link = decode_link(body)
    assert (link.name, link.kind, link.link, link.mtu, link.info) == ("nlvlan42", "vlan", 5, 1400, {"id": 42})
    ref = pyroute2_decode(msg_type, flags, body)
    assert ref.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "vlan"
    assert ref.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_VLAN_ID") == 42
    with pytest.raises(ValueError):
        rec.create_vlan("nlbad", 5, 4095)


def test_vlan_decoding_of_pyroute2_encoding():
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

    msg = ifinfmsg()
    msg["index"] = 9
    msg["attrs"] = [
        ("IFLA_IFNAME", "nlvlan7"),
        ("IFLA_LINK", 3),
        ("IFLA_LINKINFO", {"attrs": [
            ("IFLA_INFO_KIND", "vlan"),
            ("IFLA_INFO_DATA", {"attrs": [("IFLA_VLAN_ID", 7), ("IFLA_VLAN_PROTOCOL", 0x88A8)]}),
        ]}),
    ]
    msg.encode()
    link = decode_link(bytes(msg.data[16:]))
    assert (link.index, link.name, link.link, link.kind) == (9, "nlvlan7", 3, "vlan")
    assert link.info == {"id": 7, "protocol": "802.1ad"}


def test_bridge_vlan_encoding():
    rec = Recorder()
    rec.bridge_vlan_add(4, 10, pvid=True, untagged=True)
    rec.bridge_vlan_add(4, 20, vid_end=30)
    rec.bridge_vlan_add(3, 10, self_=True)
    rec.bridge_vlan_del(4, 20, vid_end=30)
    decoded = []
    for msg_type, flags, body in rec.sent:
        family, _t, index, _f, _c = nlmod.IFINFOMSG.unpack_from(body)
        assert family == AF_BRIDGE
        spec = nlmod.parse_attrs(body, 16)[nlmod.IFLA_AF_SPEC]
        entries = [(k, v) for k, v in nlmod.iter_attrs(spec)]
        decoded.append((msg_type, index, [
            ("flags", nlmod.u16(v)) if k == nlbridge.IFLA_BRIDGE_FLAGS else nlbridge.BRIDGE_VLAN_INFO.unpack(v)
            for k, v in entries]))
    P, U, B, E = (nlbridge.BRIDGE_VLAN_INFO_PVID, nlbridge.BRIDGE_VLAN_INFO_UNTAGGED,
                  nlbridge.BRIDGE_VLAN_INFO_RANGE_BEGIN, nlbridge.BRIDGE_VLAN_INFO_RANGE_END)
    assert decoded == [
        (nlmod.RTM_SETLINK, 4, [(P | U, 10)]),
        (nlmod.RTM_SETLINK, 4, [(B, 20), (E, 30)]),
        (nlmod.RTM_SETLINK, 3, [("flags", nlbridge.BRIDGE_FLAGS_SELF), (0, 10)]),
        (nlmod.RTM_DELLINK, 4, [(B, 20), (E, 30)]),
    ]
    ref = pyroute2_decode(*rec.sent[1])
    infos = [a[1] for a in ref.get("IFLA_AF_SPEC")["attrs"] if a[0] == "IFLA_BRIDGE_VLAN_INFO"]
    assert [(i["vid"], i["flags"]) for i in infos] == [(20, B), (30, E)]
    with pytest.raises(ValueError):
        rec.bridge_vlan_add(4, 30, vid_end=20)


def test_bridge_port_encoding_is_nested():
    rec = Recorder()
    rec.set_bridge_port(6, hairpin=True, isolated=False, learning=True)
    rec.set_bridge_port(6)  # nothing to change: nothing sent
    ((msg_type, _flags, body),) = rec.sent
    assert msg_type == nlmod.RTM_SETLINK and body[0] == AF_BRIDGE
    size, kind = struct.unpack_from("=HH", body, 16)
    assert kind == nlmod.IFLA_PROTINFO | nlmod.NLA_F_NESTED
    assert nlmod.decode_brport(body[20:16 + size]) == {"hairpin": True, "isolated": False, "learning": True}


def test_veth_encoding_puts_netns_on_the_peer():
    rec = Recorder()
    rec.create_veth("nlv0", "nleth0", peer_netns_fd=9, mtu=1400, mac=MAC_A, peer_mac=MAC_B)
    ((_t, _f, body),) = rec.sent
    attrs = nlmod.parse_attrs(body, 16)
    assert nlmod.IFLA_NET_NS_FD not in attrs
    info = nlmod.parse_attrs(attrs[nlmod.IFLA_LINKINFO])
    peer = nlmod.parse_attrs(info[nlmod.IFLA_INFO_DATA])[nlmod.VETH_INFO_PEER]
    peer_link = decode_link(peer)
    assert (peer_link.name, peer_link.mac, peer_link.mtu) == ("nleth0", MAC_B, 1400)
    assert nlmod.u32(nlmod.parse_attrs(peer, 16)[nlmod.IFLA_NET_NS_FD]) == 9
    assert decode_link(body).mac == MAC_A


def test_route_and_address_encoding():
    rec = Recorder()
    rec.add_route("default", gw="fd00::1", oif=3, priority=5, mtu=1280, table=1000)
    rec.add_route("10.0.0.0/8", oif=3)
    rec.delete_route("10.0.0.0/8", priority=0)
    rec.add_address(3, "192.168.1.7/24", flags=IFA_F_NODAD | nlmod.IFA_F_NOPREFIXROUTE)
    r1 = nlmod.decode_route(rec.sent[0][2])
    assert (str(r1.dst), str(r1.gw), r1.oif, r1.priority, r1.mtu, r1.table, r1.scope) == (
        "::/0", "fd00::1", 3, 5, 1280, 1000, nlmod.RT_SCOPE_UNIVERSE)
    assert rec.sent[0][2][4] == nlmod.RT_TABLE_UNSPEC  # tables above 255 only travel in RTA_TABLE
    r2 = nlmod.decode_route(rec.sent[1][2])
    assert (str(r2.dst), r2.gw, r2.scope, r2.proto) == ("10.0.0.0/8", None, nlmod.RT_SCOPE_LINK, nlmod.RTPROT_STATIC)
    r3 = nlmod.decode_route(rec.sent[2][2])
    assert (r3.scope, r3.proto, r3.type) == (nlmod.RT_SCOPE_NOWHERE, 0, 0)
    assert rec.sent[2][0] == nlmod.RTM_DELROUTE
    addr_body = rec.sent[3][2]
    addr = nlmod.decode_address(addr_body)
    assert addr.address == ipaddress.ip_interface("192.168.1.7/24") and addr.index == 3
    assert addr.flags == IFA_F_NODAD | nlmod.IFA_F_NOPREFIXROUTE
    attrs = nlmod.parse_attrs(addr_body, 8)
    assert attrs[nlmod.IFA_BROADCAST] == ipaddress.ip_address("192.168.1.255").packed


def test_mode_and_mac_validation():
    rec = Recorder()
    with pytest.raises(ValueError):
        rec.create_macvlan("nlmv", 2, "nonsense")
    with pytest.raises(ValueError):
        rec.create_ipvlan("nlipv", 2, "l4")
    with pytest.raises(ValueError):
        rec.create_bridge("nlbr", mac="02:00:00:00:00")
    assert rec.sent == []


@given(st.lists(st.tuples(st.integers(0, nlmod.NLA_TYPE_MASK), st.binary(max_size=64)), max_size=12))
def test_attribute_roundtrip(items):
    data = b"".join(nlmod.attr(kind, value) for kind, value in items)
    assert len(data) % 4 == 0
    assert list(nlmod.iter_attrs(data)) == items


# ---- transport, with a scripted socket ----------------------------------------------------------


class ScriptedSocket:
    """Hands out prepared datagrams; each entry may depend on the request's seq."""

    def __init__(self, script):
        self.script = list(script)
        self.sent: list[bytes] = []
        self.pending: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        seq = struct.unpack_from("=I", data, 8)[0]
        self.pending.extend(make(seq) for make in self.script.pop(0))
        return len(data)

    def recv_into(self, buf, nbytes=0, flags=0):
        data = self.pending[0]
        if flags & socket.MSG_PEEK:
            buf[: min(len(buf), len(data))] = data[: len(buf)]
            return len(data)
        self.pending.pop(0)
        buf[: len(data)] = data
        return len(data)

    def close(self):
        pass


def nlmsg(msg_type: int, flags: int, seq: int, body: bytes) -> bytes:
    size = 16 + len(body)
    return struct.pack("=IHHII", size, msg_type, flags, seq, 1234) + body + b"\0" * ((-size) % 4)


def scripted(script) -> Client:
    client = Client.__new__(Client)
    client._seq = 0
    client._buf = bytearray(64)  # small, so big datagrams must grow it
    client._sock = ScriptedSocket(script)
    client.netns = None
    return client


def link_body(index: int, name: str) -> bytes:
    return nlmod.ifinfomsg(index) + nlmod.attr_str(nlmod.IFLA_IFNAME, name)


def test_multipart_dump_ignores_other_seqs_and_reruns_interrupted_dumps():
    multi = nlmod.NLM_F_MULTI
    first = [
        lambda s: nlmsg(nlmod.RTM_NEWLINK, multi, s + 100, link_body(99, "stale")),
        lambda s: nlmsg(nlmod.RTM_NEWLINK, multi, s, link_body(1, "lo"))
        + nlmsg(nlmod.RTM_NEWLINK, multi | nlmod.NLM_F_DUMP_INTR, s, link_body(2, "x" * 200)),
        lambda s: nlmsg(nlmod.NLMSG_DONE, multi, s, struct.pack("=i", 0)),
    ]
    second = [
        lambda s: nlmsg(nlmod.RTM_NEWLINK, multi, s, link_body(1, "lo")),
        lambda s: nlmsg(nlmod.RTM_NEWLINK, 0, 0, link_body(77, "mcast")),  # a notification
        lambda s: nlmsg(nlmod.RTM_NEWLINK, multi, s, link_body(3, "y" * 300))
        + nlmsg(nlmod.NLMSG_DONE, multi, s, struct.pack("=i", 0)),
    ]
    client = scripted([first, second])
    assert [(l.index, l.name) for l in client.links()] == [(1, "lo"), (3, "y" * 300)]
    assert len(client._sock.sent) == 2


def test_error_with_extended_ack_and_capped_request():
    def error(seq: int) -> bytes:
        echoed = struct.pack("=IHHII", 40, nlmod.RTM_NEWLINK, 0x605, seq, 0)  # capped: header only
        tlv = nlmod.attr_str(nlmod.NLMSGERR_ATTR_MSG, "Unknown device type")
        return nlmsg(nlmod.NLMSG_ERROR, nlmod.NLM_F_CAPPED | nlmod.NLM_F_ACK_TLVS, seq,
                     struct.pack("=i", -errno.EOPNOTSUPP) + echoed + tlv)

    client = scripted([[error]])
    with pytest.raises(NetlinkError) as exc:
        client.create_ipvlan("nlipv0", 2)
    assert exc.value.errno == errno.EOPNOTSUPP
    assert exc.value.ext_msg == "Unknown device type"
    assert str(exc.value) == 'create ipvlan "nlipv0": Operation not supported (Unknown device type)'
    header = struct.unpack_from("=IHHII", client._sock.sent[0])
    assert header[2] & nlmod.NLM_F_ACK and header[2] & nlmod.NLM_F_REQUEST


def test_ack_ends_a_get_and_enodev_means_none():
    def reply(seq):
        return nlmsg(nlmod.RTM_NEWLINK, 0, seq, link_body(5, "nlv0"))

    def ack(seq):
        return nlmsg(nlmod.NLMSG_ERROR, nlmod.NLM_F_CAPPED, seq, struct.pack("=i", 0) + b"\0" * 16)

    def enodev(seq):
        return nlmsg(nlmod.NLMSG_ERROR, nlmod.NLM_F_CAPPED, seq, struct.pack("=i", -errno.ENODEV) + b"\0" * 16)

    client = scripted([[reply, ack], [enodev]])
    assert client.get_link("nlv0").index == 5
    assert client.get_link("nlv9") is None


def test_module_import_stays_light():
    """Nor does it load the objects only one plugin each needs (bridge, sbr, bandwidth, portmap)."""
    code = ("import sys, cni.netlink; print(sorted(m for m in ('pyroute2', 'cni.netns', 'ctypes', 'json', 'subprocess', "
            "'cni.netlink.bridge', 'cni.netlink.rule', 'cni.netlink.qdisc', 'cni.netlink.conntrack') if m in sys.modules))")
    out = subprocess.run([os.sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == "[]"


def test_bridge_vlans_request_and_decoding():
    def vlan_info(flags: int, vid: int) -> bytes:
        return nlmod.attr(nlbridge.IFLA_BRIDGE_VLAN_INFO, nlbridge.BRIDGE_VLAN_INFO.pack(flags, vid))

    def port(index: int, *infos: bytes) -> bytes:
        spec = nlmod.attr(nlmod.IFLA_AF_SPEC | nlmod.NLA_F_NESTED, b"".join(infos))
        return nlmod.ifinfomsg(index, family=AF_BRIDGE) + nlmod.attr_str(nlmod.IFLA_IFNAME, f"p{index}") + spec

    multi = nlmod.NLM_F_MULTI
    reply = [
        lambda s: nlmsg(nlmod.RTM_NEWLINK, multi, s, port(3, vlan_info(0, 1)))
        + nlmsg(nlmod.RTM_NEWLINK, multi, s, port(4, vlan_info(nlbridge.BRIDGE_VLAN_INFO_PVID | nlbridge.BRIDGE_VLAN_INFO_UNTAGGED, 10),
                                                  vlan_info(0, 20)))
        + nlmsg(nlmod.NLMSG_DONE, multi, s, struct.pack("=i", 0)),
    ]
    client = scripted([reply])
    assert client.bridge_vlans(4) == [{"vid": 10, "pvid": True, "untagged": True},
                                      {"vid": 20, "pvid": False, "untagged": False}]
    sent = client._sock.sent[0]
    _len, msg_type, flags, _seq, _pid = struct.unpack_from("=IHHII", sent)
    assert msg_type == nlmod.RTM_GETLINK and flags & nlmod.NLM_F_DUMP == nlmod.NLM_F_DUMP
    assert sent[16] == AF_BRIDGE
    mask = nlmod.parse_attrs(sent[16:], 16)[nlmod.IFLA_EXT_MASK]
    assert nlmod.u32(mask) == nlbridge.RTEXT_FILTER_BRVLAN
