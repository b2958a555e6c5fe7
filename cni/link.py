"""Links, addresses and routes as the plugins use them, on top of cni.netlink.

One place for what several plugins do: a veth pair across two namespaces,
configuring an interface from a result, deleting a link that may be gone.
"""
from __future__ import annotations

import errno
import ipaddress
import os

from . import sysctl
from .conf import same_mac
from .errors import INTERNAL, INVALID_NETWORK_CONFIG, PLUGIN_NOT_AVAILABLE, CNIError
from .netlink import Link, Netlink, NetlinkError
from .netns import NetnsNotFound, NotANetns, entered, open_netns
from .rollback import checkpoint
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

    Like the reference: both ends get txqlen 0 (a veth has no queue; the
    reference's netlink library sends 0), and the host end ignores router
    advertisements, so no route can appear through a container's port.
    """
    host_fd = current_netns_fd()
    try:
        with Netlink(container_netns) as ctr, Netlink() as host:
            if ctr.get_link(ifname) is not None:
                raise CNIError(INTERNAL, f'container veth name provided ({ifname}) already exists')
            for _ in range(10):
                peer = host_name or random_veth_name()
                try:
                    ctr.create_veth(ifname, peer, peer_netns_fd=host_fd, mtu=mtu, mac=container_mac or None,
                                    txqlen=0)
                except NetlinkError as exc:
                    if exc.errno != errno.EEXIST:
                        raise CNIError(INTERNAL, f"failed to make veth pair: {exc}") from None
                    if ctr.get_link(ifname) is not None:
                        raise CNIError(INTERNAL, f'container veth name provided ({ifname}) already exists')
                    if host_name:
                        raise CNIError(INTERNAL, f'host veth name "{host_name}" already exists') from None
                    continue  # the random host name clashed: draw another
                host_link = require_link(host, peer)
                sysctl.set_if_present(f"net/ipv6/conf/{peer}/accept_ra", "0")
                return host_link, require_link(ctr, ifname, container_netns)
            raise CNIError(INTERNAL, "failed to find a free veth name")
    finally:
        os.close(host_fd)


def configure_interface(netns: str, ifname: str, result: Result, index: int, *, settle: bool = True) -> None:
    """Put the result's addresses (those for interface `index`) and routes on `ifname`.

    A route without a gateway goes via the first gateway of its family among
    the addresses; the link is brought up before routes are added. Returns once
    IPv6 duplicate address detection is over, as the reference does: until then
    the container cannot use its addresses, not even as a route's source.
    `settle=False` skips that wait, for a link without carrier (a tap before its
    reader attaches), where detection only starts once the carrier comes.
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
                                 mtu=route.mtu, advmss=route.advmss, proto=RTPROT_BOOT,
                                 # the reference adds every route with scope universe unless told
                                 scope=route.scope if route.scope is not None else RT_SCOPE_UNIVERSE)
                except NetlinkError as exc:
                    if exc.errno == errno.EEXIST:
                        continue  # the kernel added it with the address, or IPAM listed it twice
                    raise CNIError(INTERNAL, f'failed to add route {route.dst} via {gw} on "{ifname}": {exc}') from None
    if settle and any(ip.family == 6 for ip in mine):
        wait_ipv6_settled(netns, ifname)
    checkpoint("addresses")


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
    via the interface's gateway. A route listed without a table passes in the
    main table or in any table through this interface: sbr and vrf, later in
    the chain, move the interface's routes into tables of their own.
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
            def in_place(r) -> bool:
                if route.table is None:
                    return r.table == 254 or r.oif == link.index
                return r.table == route.table

            if not any(r.dst == route.dst and in_place(r) and (route.gw is None or r.gw == route.gw)
                       for r in installed):
                via = f" via {route.gw}" if route.gw is not None else ""
                raise CNIError(INTERNAL, f"{ifname}: route to {route.dst}{via} not found")


# ---- links on a master (macvlan, ipvlan), made inside the container netns ------------


def default_route_interface(netns: str = "") -> str:
    """The interface of the first default route (IPv4 before IPv6) in `netns` (default: here)."""
    from .netlink import AF_INET, AF_INET6

    with Netlink(netns or None) as nl:
        for family in (AF_INET, AF_INET6):
            for route in nl.routes(family=family):
                if route.dst.prefixlen == 0 and route.oif:
                    link = nl.get_link_by_index(route.oif)
                    if link is not None:
                        return link.name
    where = f' in netns "{netns}"' if netns else ""
    raise CNIError(INVALID_NETWORK_CONFIG, f"no default route interface found{where}",
                   'set "master" in the configuration')


def find_master(name: str, netns: str = "") -> Link:
    """The master link `name` in `netns` (default: here); no name: the default-route interface."""
    name = name or default_route_interface(netns)
    with Netlink(netns or None) as nl:
        link = nl.get_link(name)
    if link is None:
        where = f' in netns "{netns}"' if netns else ""
        raise CNIError(INVALID_NETWORK_CONFIG, f'master "{name}" not found{where}')
    return link


def require_master_available(name: str) -> None:
    """STATUS of a plugin that makes links on a master: that master (no name: the
    default-route interface) exists here, else code 50, plugin not available."""
    try:
        find_master(name)
    except CNIError as exc:
        raise CNIError(PLUGIN_NOT_AVAILABLE, exc.msg, exc.details) from None


def check_mtu_within_master(mtu: int, master: Link) -> None:
    """A link on a master cannot be larger than it; 0 means "the master's MTU"."""
    if mtu > master.mtu:
        raise CNIError(INVALID_NETWORK_CONFIG,
                       f'invalid MTU {mtu}: must be 0 to {master.mtu} (the MTU of master "{master.name}")')


def create_macvlan(netns: str, ifname: str, master: Link, mode: str, *, master_in_container: bool = False,
                   mtu: int = 0, mac: str = "", bcqueuelen: int | None = None) -> Link:
    """A macvlan on `master`, created in `netns` and named `ifname` there (down)."""
    def create(nl: Netlink, name: str, netns_fd: int | None) -> None:
        nl.create_macvlan(name, master.index, mode, mtu=mtu, mac=mac or None, netns_fd=netns_fd,
                          bcqueuelen=bcqueuelen)

    return _create_on_master(netns, ifname, master_in_container, create, "macvlan")


def create_ipvlan(netns: str, ifname: str, master: Link, mode: str, *, master_in_container: bool = False,
                  mtu: int = 0) -> Link:
    """An ipvlan on `master`, created in `netns` and named `ifname` there (down)."""
    def create(nl: Netlink, name: str, netns_fd: int | None) -> None:
        nl.create_ipvlan(name, master.index, mode, mtu=mtu, netns_fd=netns_fd)

    return _create_on_master(netns, ifname, master_in_container, create, "ipvlan")


def create_vlan(netns: str, ifname: str, master: Link, vlan_id: int, *, master_in_container: bool = False,
                mtu: int = 0) -> Link:
    """An 802.1q link with `vlan_id` on `master`, created in `netns` and named `ifname` there (down)."""
    def create(nl: Netlink, name: str, netns_fd: int | None) -> None:
        nl.create_vlan(name, master.index, vlan_id, mtu=mtu, netns_fd=netns_fd)

    return _create_on_master(netns, ifname, master_in_container, create, "vlan")


def create_dummy(netns: str, ifname: str, *, mtu: int = 0) -> Link:
    """A dummy link made inside `netns` and named `ifname` there (down)."""
    def create(nl: Netlink, name: str, netns_fd: int | None) -> None:
        nl.create_dummy(name, mtu=mtu, netns_fd=netns_fd)

    # No master: made from inside the container, so a host link of the same name never matters.
    return _create_on_master(netns, ifname, True, create, "dummy")


def _create_on_master(netns: str, ifname: str, master_in_container: bool, create, kind: str) -> Link:
    """Create under a temporary name straight into `netns`, then rename to `ifname`.

    The link never exists in the host netns, so it cannot clash with a host
    interface called `ifname`; with a random first name, EEXIST on creation can
    only be a clash of that name (drawn again), and EEXIST on the rename means
    `ifname` is taken in the container. A failed rename removes the link.
    """
    with Netlink(netns) as ctr:
        if ctr.get_link(ifname) is not None:
            raise CNIError(INTERNAL, f'interface "{ifname}" already exists in netns "{netns}"')
        if master_in_container:
            temp = _create_with_free_name(ctr, create, None, kind)
        else:
            target_fd = open_netns(netns)
            try:
                with Netlink() as host:
                    temp = _create_with_free_name(host, create, target_fd, kind)
            finally:
                os.close(target_fd)
        link = require_link(ctr, temp, netns)
        try:
            # txqlen 0 as the reference leaves it: these links have no queue, the
            # number only shows in `ip link`, which then reads the same side by side.
            ctr.set_link(link.index, name=ifname, txqlen=0)
        except NetlinkError as exc:
            _delete_quietly(ctr, link.index)
            raise CNIError(INTERNAL, f'failed to rename {kind} "{temp}" to "{ifname}": {exc}') from None
        return require_link(ctr, ifname, netns)


def _create_with_free_name(nl: Netlink, create, netns_fd: int | None, kind: str) -> str:
    for _ in range(10):
        temp = "cni" + os.urandom(4).hex()
        try:
            create(nl, temp, netns_fd)
            return temp
        except NetlinkError as exc:
            if exc.errno != errno.EEXIST:
                raise CNIError(INTERNAL, f"failed to create {kind}: {exc}") from None
    raise CNIError(INTERNAL, f"failed to create {kind}: no free temporary name")


def _delete_quietly(nl: Netlink, index: int) -> None:
    try:
        nl.delete_link(index)
    except NetlinkError:
        pass


def check_link(netns: str, ifname: str, kind: str, mode: str | None, master: Link | None = None,
                         mac: str = "") -> Link:
    """CHECK: `ifname` in `netns` is a `kind` link (in `mode`, on `master`, with `mac`: each when given)."""
    with Netlink(netns) as nl:
        link = require_link(nl, ifname, netns)
    if link.kind != kind:
        raise CNIError(INTERNAL, f'"{ifname}" is not a {kind} link (kind "{link.kind}")')
    if mode is not None and link.info.get("mode") != mode:
        raise CNIError(INTERNAL, f'"{ifname}": {kind} mode is {link.info.get("mode")}, want {mode}')
    if mac and not same_mac(link.mac, mac):
        raise CNIError(INTERNAL, f'"{ifname}": MAC is {link.mac}, want {mac}')
    if master is not None and link.link != master.index:
        raise CNIError(INTERNAL, f'"{ifname}" is not on master "{master.name}"')
    return link


# ---- a host link lent to a container (host-device) ----------------------------------------


def move_link_into(netns: str, ifname: str, host_link: Link) -> Link:
    """Move `host_link` from the current netns into `netns`, named `ifname` there (down).

    Its host name goes into the link alias, where `return_link_to_host` finds
    it. The move carries a random temporary name, so neither the host name nor
    `ifname` can clash on the way in (the kernel moves first, then renames); a
    failed rename to `ifname` moves the link straight back.
    """
    with Netlink(netns) as ctr:
        if ctr.get_link(ifname) is not None:
            raise CNIError(INTERNAL, f'interface "{ifname}" already exists in netns "{netns}"')
        temp = "cni" + os.urandom(4).hex()
        target_fd = open_netns(netns)
        try:
            with Netlink() as host:
                host.set_link(host_link.index, up=False, netns_fd=target_fd, name=temp, alias=host_link.name)
        except NetlinkError as exc:
            raise CNIError(INTERNAL, f'failed to move "{host_link.name}" into netns "{netns}": {exc}') from None
        finally:
            os.close(target_fd)
        link = require_link(ctr, temp, netns)
        try:
            ctr.set_link(link.index, name=ifname)
        except NetlinkError as exc:
            return_link_to_host(netns, temp, up=host_link.up)
            raise CNIError(INTERNAL, f'failed to rename "{host_link.name}" to "{ifname}": {exc}') from None
        return require_link(ctr, ifname, netns)


def return_link_to_host(netns: str, ifname: str, fallback_name: str = "", up: bool = False) -> None:
    """Move `ifname` from `netns` back to the current netns: down (`up`: up again, as a
    failed ADD found it), under the name in its alias (else `fallback_name`, else
    `ifname`), alias cleared.

    A gone netns or link is success. A host link already holding that name is
    an error before anything moves, so a retry finds the link where it was.
    """
    if not netns:
        return
    try:
        ctr = Netlink(netns)
    except (NetnsNotFound, NotANetns):
        return
    with ctr:
        link = ctr.get_link(ifname)
        if link is None:
            return
        name = link.alias or fallback_name or ifname
        with Netlink() as host:
            if host.get_link(name) is not None:
                raise CNIError(INTERNAL, f'cannot move "{ifname}" back to the host as "{name}": '
                                         "the host has a link of that name")
        host_fd = current_netns_fd()
        try:
            # One message: the kernel moves first (the link goes down with it), then renames it in
            # the host, clears the alias and sets the flags.
            ctr.set_link(link.index, up=up, netns_fd=host_fd, name=name, alias="")
        except NetlinkError as exc:
            if not exc.gone:
                raise CNIError(INTERNAL, f'failed to move "{ifname}" back to the host as "{name}": {exc}') from None
        finally:
            os.close(host_fd)


def announce_address_changes(netns: str, ifname: str) -> None:
    """arp_notify and ndisc_notify on `ifname`: neighbours learn a reused IP's new MAC at once.

    Must run before the addresses are added and the link comes up: that is when
    the kernel sends the unsolicited announcements.
    """
    with entered(netns):
        # Absolute paths: an interface name may contain dots, which sysctl names cannot.
        sysctl.set_if_present(f"/proc/sys/net/ipv4/conf/{ifname}/arp_notify", "1")
        sysctl.set_if_present(f"/proc/sys/net/ipv6/conf/{ifname}/ndisc_notify", "1")


ETH_P_ARP = 0x0806


def announce_new_mac(ifname: str, mac: str, addresses: list) -> None:
    """After `ifname` (in the current netns) took `mac`: an ARP request for each IPv4 address
    from itself, broadcast, so that neighbours that knew the address update its MAC. Best
    effort, as with the reference: a link that is down or a refused send changes nothing else.

    With arp_notify on (macvlan and ipvlan set it), the kernel already sent such an ARP for
    every address of the link when the MAC changed; a second one from here would only cost
    the time the kernel takes to close a packet socket (an RCU grace period, about 9 ms).
    """
    import _socket  # the C module: socket.py's enums cost every exec milliseconds (as in cni.netlink)

    ipv4 = [ip for ip in addresses if ip.version == 4]
    if not ipv4 or _arp_notify(ifname):
        return
    hw = bytes.fromhex(mac.replace(":", ""))
    try:
        sock = _socket.socket(_socket.AF_PACKET, _socket.SOCK_DGRAM | _socket.SOCK_CLOEXEC,
                              _socket.htons(ETH_P_ARP))
    except OSError:
        return
    try:
        for ip in ipv4:
            # htype Ethernet, ptype IPv4, hlen 6, plen 4, op request; target MAC broadcast, target IP itself.
            payload = b"\x00\x01\x08\x00\x06\x04\x00\x01" + hw + ip.packed + b"\xff" * 6 + ip.packed
            sock.sendto(payload, (ifname, ETH_P_ARP, 0, 0, b"\xff" * 6))
    except OSError:
        pass
    finally:
        sock.close()


def _arp_notify(ifname: str) -> bool:
    """Whether the kernel announces `ifname`'s addresses itself (the larger of all's and the link's)."""
    try:
        return any(sysctl.get(f"/proc/sys/net/ipv4/conf/{name}/arp_notify") != "0" for name in ("all", ifname))
    except OSError:
        return False


def set_link_up(netns: str, ifname: str) -> None:
    with Netlink(netns or None) as nl:
        nl.set_link(require_link(nl, ifname, netns).index, up=True)


# ---- IPv6 duplicate address detection ------------------------------------------------


def wait_ipv6_settled(netns: str, ifname: str, timeout: float = 10.0) -> None:
    """Wait until no IPv6 address on `ifname` is tentative (DAD done); fail on DAD failure.

    Until then the container cannot use the address (not even as a route's
    source); the reference waits the same way after configuring IPv6.
    """
    import time

    from .netlink import AF_INET6, IFA_F_DADFAILED, IFA_F_TENTATIVE

    deadline = time.monotonic() + timeout
    with Netlink(netns or None) as nl:
        link = require_link(nl, ifname, netns)
        while True:
            addrs = nl.addresses(link.index, family=AF_INET6)
            failed = [a for a in addrs if a.flags & IFA_F_DADFAILED]
            if failed:
                raise CNIError(INTERNAL, f'{ifname}: duplicate address detection failed for {failed[0].address}')
            if not any(a.flags & IFA_F_TENTATIVE for a in addrs):
                return
            if time.monotonic() > deadline:
                raise CNIError(INTERNAL, f"{ifname}: IPv6 addresses still tentative after {timeout:g}s")
            time.sleep(0.05)


# ---- point-to-point routing (ptp) ------------------------------------------------------


def route_subnets_via_gateway(netns: str, ifname: str, ips: list) -> None:
    """Container side of a point-to-point link, for each address with a gateway.

    The kernel's on-link route for the address's subnet is replaced by a
    link-scope route to the gateway alone and the subnet via that gateway (both
    with the address as source): every packet, even to a neighbour in the same
    subnet, goes to the host end.
    """
    from .netlink import RT_SCOPE_LINK

    with Netlink(netns) as nl:
        link = require_link(nl, ifname, netns)
        for ip in ips:
            if ip.gateway is None:
                continue
            subnet, host_bits = ip.address.network, ip.address.max_prefixlen
            try:
                nl.delete_route(subnet, oif=link.index)
            except NetlinkError as exc:
                if not exc.gone:  # a /32 address has no subnet route
                    raise CNIError(INTERNAL, f'failed to delete route {subnet} on "{ifname}": {exc}') from None
            for dst, gw, scope in ((f"{ip.gateway}/{host_bits}", None, RT_SCOPE_LINK),
                                   (subnet, ip.gateway, RT_SCOPE_UNIVERSE)):
                try:
                    nl.add_route(dst, gw=gw, oif=link.index, scope=scope, src=ip.address.ip, proto=RTPROT_BOOT)
                except NetlinkError as exc:
                    if exc.errno != errno.EEXIST:
                        raise CNIError(INTERNAL, f'failed to add route {dst} on "{ifname}": {exc}') from None


def add_gateway_side(host_ifname: str, ips: list) -> None:
    """Host side of a point-to-point link, in the current netns: the link up, each
    gateway as a host address on it, and a host route to each container address."""
    from .netlink import RT_SCOPE_HOST

    with Netlink() as nl:
        link = require_link(nl, host_ifname)
        nl.set_link(link.index, up=True)  # IPv6 routes need the link up
        for ip in ips:
            bits = ip.address.max_prefixlen
            if ip.gateway is not None:
                try:
                    nl.add_address(link.index, f"{ip.gateway}/{bits}")
                except NetlinkError as exc:
                    if exc.errno != errno.EEXIST:  # two addresses sharing one gateway
                        raise CNIError(INTERNAL, f'failed to add {ip.gateway} to "{host_ifname}": {exc}') from None
            try:
                nl.add_route(f"{ip.address.ip}/{bits}", oif=link.index, scope=RT_SCOPE_HOST, proto=RTPROT_BOOT)
            except NetlinkError as exc:
                if exc.errno != errno.EEXIST:
                    raise CNIError(INTERNAL, f"failed to add host route to {ip.address.ip}: {exc}") from None


# ---- CHECK: what the previous result says -----------------------------------------------


def container_interface_index(prev: Result | None, ifname: str, netns: str) -> int:
    """CHECK: the index of `ifname` in `netns` among the previous result's interfaces."""
    if prev is None:
        raise CNIError(INVALID_NETWORK_CONFIG, "required prevResult missing")
    for index, iface in enumerate(prev.interfaces):
        if iface.name == ifname and iface.sandbox == netns:
            return index
    raise CNIError(INTERNAL, f'prevResult has no interface "{ifname}" in sandbox "{netns}"')


def check_point_to_point(netns: str, ifname: str, prev: Result, index: int) -> None:
    """CHECK for ptp: `ifname` is a veth whose peer, here, is the result's host interface,
    carrying each gateway with a host route to each address; the container routes
    each subnet via its gateway."""
    host_names = [i.name for i in prev.interfaces if not i.sandbox]
    if len(host_names) != 1:
        raise CNIError(INTERNAL, "prevResult must name exactly one host interface")
    mine = [ip for ip in prev.ips if ip.interface == index]
    with Netlink(netns) as ctr, Netlink() as host:
        ctr_link = require_link(ctr, ifname, netns)
        host_link = host.get_link(host_names[0])
        if ctr_link.kind != "veth" or host_link is None or host_link.kind != "veth" \
                or host_link.link != ctr_link.index or ctr_link.link != host_link.index:
            raise CNIError(INTERNAL, f'"{ifname}" is not the peer of host veth "{host_names[0]}"')
        host_addrs = {a.address for a in host.addresses(host_link.index)}
        host_routes = [r for r in host.routes() if r.oif == host_link.index]
        # In any table: sbr or vrf later in the chain may have moved them.
        ctr_routes = [r for r in ctr.routes(table=None) if r.oif == ctr_link.index]
    for ip in mine:
        bits = ip.address.max_prefixlen
        if ip.gateway is not None and ipaddress.ip_interface(f"{ip.gateway}/{bits}") not in host_addrs:
            raise CNIError(INTERNAL, f'host veth "{host_names[0]}": missing gateway address {ip.gateway}/{bits}')
        if not any(r.dst == ipaddress.ip_network(f"{ip.address.ip}/{bits}") for r in host_routes):
            raise CNIError(INTERNAL, f"host route to {ip.address.ip} not found")
        if ip.gateway is not None and not any(r.dst == ip.address.network and r.gw == ip.gateway for r in ctr_routes):
            raise CNIError(INTERNAL, f"{ifname}: route to {ip.address.network} via {ip.gateway} not found")
