"""Links, addresses and routes as the plugins use them, on top of cni.netlink.

One place for what several plugins do: a veth pair across two namespaces,
configuring an interface from a result, deleting a link that may be gone.
"""
from __future__ import annotations

import errno
import ipaddress
import os
from typing import Iterator

from . import sysctl
from .errors import INTERNAL, CNIError
from .netlink import Link, Netlink, NetlinkError
from .netns import NetnsNotFound, NotANetns, entered
from .types import Interface, IPInterface, Result

RT_SCOPE_UNIVERSE = 0
# Routes the reference plugins add carry the kernel default protocol "boot";
# matching it keeps `ip route` output identical side by side.
RTPROT_BOOT = 3


def random_veth_name() -> str:
    return "veth" + os.urandom(4).hex()


def current_netns_fd() -> int:
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def as_interface(link: Link, sandbox: str = "") -> Interface:
    return Interface(name=link.name, mac=link.mac, sandbox=sandbox)


def require_link(nl: Netlink, name: str, where: str = "") -> Link:
    link = nl.get_link(name)
    if link is None:
        raise CNIError(INTERNAL, f'failed to find link "{name}"{" in " + where if where else ""}')
    return link


def setup_veth(container_netns: str, ifname: str, *, mtu: int = 0, container_mac: str = "",
               host_name: str = "") -> tuple[Link, Link]:
    """Create a veth pair inside the container netns with its peer in the current netns.

    The host end gets a random `veth<8 hex>` name unless `host_name` is given;
    a clash with an existing host link is retried with a new name. Returns
    (host end, container end); both are down, the container end is not yet
    configured. The caller registers the undo.
    """
    host_fd = current_netns_fd()
    try:
        with Netlink(container_netns) as ctr, Netlink() as host:
            if ctr.get_link(ifname) is not None:
                raise CNIError(INTERNAL, f'container veth name provided ({ifname}) already exists')
            for _ in range(10):
                peer = host_name or random_veth_name()
                try:
                    ctr.create_veth(ifname, peer, peer_netns_fd=host_fd, mtu=mtu, mac=container_mac or None)
                except NetlinkError as exc:
                    if exc.errno != errno.EEXIST:
                        raise CNIError(INTERNAL, f"failed to make veth pair: {exc}") from None
                    if ctr.get_link(ifname) is not None:
                        raise CNIError(INTERNAL, f'container veth name provided ({ifname}) already exists')
                    if host_name:
                        raise CNIError(INTERNAL, f'host veth name "{host_name}" already exists') from None
                    continue  # the random host name clashed: draw another
                host_link = require_link(host, peer)
                return host_link, require_link(ctr, ifname, container_netns)
            raise CNIError(INTERNAL, "failed to find a free veth name")
    finally:
        os.close(host_fd)


def configure_interface(netns: str, ifname: str, result: Result, index: int) -> None:
    """Put the result's addresses (those for interface `index`) and routes on `ifname`.

    A route without a gateway goes via the first gateway of its family among
    the addresses; the link is brought up before routes are added.
    """
    mine = [ip for ip in result.ips if ip.interface == index]
    with entered(netns):
        with Netlink() as nl:
            link = require_link(nl, ifname, netns)
            if any(ip.family == 6 for ip in mine):
                sysctl.set_if_present(f"net/ipv6/conf/{ifname}/disable_ipv6", "0")
            gateways: dict[int, object] = {}
            for ip in mine:
                try:
                    nl.add_address(link.index, ip.address)
                except NetlinkError as exc:
                    raise CNIError(INTERNAL, f'failed to add IP addr {ip.address} to "{ifname}": {exc}') from None
                if ip.gateway is not None:
                    gateways.setdefault(ip.family, ip.gateway)
            nl.set_link(link.index, up=True)
            for route in result.routes:
                gw = route.gw if route.gw is not None else gateways.get(route.dst.version)
                try:
                    nl.add_route(route.dst, gw=gw, oif=link.index, priority=route.priority,
                                 table=route.table if route.table is not None else 254,
                                 mtu=route.mtu, advmss=route.advmss, scope=route.scope, proto=RTPROT_BOOT)
                except NetlinkError as exc:
                    if exc.errno == errno.EEXIST:
                        continue  # the kernel added it with the address, or IPAM listed it twice
                    raise CNIError(INTERNAL, f'failed to add route {route.dst} via {gw} on "{ifname}": {exc}') from None


def delete_link_if_present(netns: str, ifname: str) -> list[IPInterface]:
    """Delete `ifname` in `netns`; return its global addresses. Gone (netns or link) is success."""
    if not netns:
        return []
    try:
        with Netlink(netns) as nl:
            link = nl.get_link(ifname)
            if link is None:
                return []
            addrs = [a.address for a in nl.addresses(link.index) if a.scope == RT_SCOPE_UNIVERSE]
            try:
                nl.delete_link(link.index)
            except NetlinkError as exc:
                if not exc.gone:
                    raise CNIError(INTERNAL, f'failed to delete "{ifname}": {exc}') from None
            return addrs
    except (NetnsNotFound, NotANetns):
        return []


def enable_forwarding(families: set[int]) -> None:
    """IP forwarding in the current netns for the given address families."""
    if 4 in families:
        sysctl.set("net/ipv4/ip_forward", "1")
    if 6 in families:
        sysctl.set_if_present("net/ipv6/conf/all/forwarding", "1")


def check_interface_config(netns: str, ifname: str, result: Result, index: int) -> None:
    """CHECK: every address of interface `index` and every route of `result` is in place.

    A route listed without a gateway passes whether it was installed on-link or
    via the interface's gateway.
    """
    mine = [ip for ip in result.ips if ip.interface == index]
    with Netlink(netns) as nl:
        link = require_link(nl, ifname, netns)
        present = {(a.address.ip, a.address.network.prefixlen) for a in nl.addresses(link.index)}
        for ip in mine:
            if (ip.address.ip, ip.address.network.prefixlen) not in present:
                raise CNIError(INTERNAL, f'{ifname}: missing address {ip.address}')
        installed = nl.routes(table=None)
        for route in result.routes:
            table = route.table if route.table is not None else 254
            if not any(r.dst == route.dst and r.table == table and (route.gw is None or r.gw == route.gw)
                       for r in installed):
                via = f" via {route.gw}" if route.gw is not None else ""
                raise CNIError(INTERNAL, f"{ifname}: route to {route.dst}{via} not found")
