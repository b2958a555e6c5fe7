"""Links: the record, RTM_*LINK message bodies for each kind we create, and their operations."""
from __future__ import annotations

import errno as _errno

from ..record import Record
from .core import *  # noqa: F403 - the codec's constants and helpers

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19

# --- links --------------------------------------------------------------------

IFF_UP = 0x1
IFF_PROMISC = 0x100
IFF_ALLMULTI = 0x200

IFLA_ADDRESS = 1
IFLA_BROADCAST = 2
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_PROTINFO = 12
IFLA_TXQLEN = 13
IFLA_OPERSTATE = 16
IFLA_IFALIAS = 20
IFLA_LINKINFO = 18
IFLA_AF_SPEC = 26
IFLA_NET_NS_FD = 28
IFLA_EXT_MASK = 29
IFLA_PROMISCUITY = 30
IFLA_LINK_NETNSID = 37

IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
IFLA_INFO_SLAVE_KIND = 4
IFLA_INFO_SLAVE_DATA = 5

VETH_INFO_PEER = 1

IFLA_MACVLAN_MODE = 1
IFLA_MACVLAN_FLAGS = 2
IFLA_MACVLAN_BC_QUEUE_LEN = 7
IFLA_MACVLAN_BC_QUEUE_LEN_USED = 8
MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8, "source": 16}

IFLA_IPVLAN_MODE = 1
IFLA_IPVLAN_FLAGS = 2
IPVLAN_MODES = {"l2": 0, "l3": 1, "l3s": 2}

IFLA_VLAN_ID = 1
IFLA_VLAN_PROTOCOL = 5
VLAN_PROTOCOLS = {0x8100: "802.1Q", 0x88A8: "802.1ad"}

IFLA_VRF_TABLE = 1

IFLA_TUN_OWNER = 1
IFLA_TUN_GROUP = 2
IFLA_TUN_TYPE = 3
IFLA_TUN_PI = 4
IFLA_TUN_VNET_HDR = 5
IFLA_TUN_PERSIST = 6
IFLA_TUN_MULTI_QUEUE = 7
TUN_TYPES = {1: "tun", 2: "tap"}

IFLA_BR_FORWARD_DELAY = 1
IFLA_BR_HELLO_TIME = 2
IFLA_BR_MAX_AGE = 3
IFLA_BR_AGEING_TIME = 4
IFLA_BR_STP_STATE = 5
IFLA_BR_PRIORITY = 6
IFLA_BR_VLAN_FILTERING = 7
IFLA_BR_VLAN_DEFAULT_PVID = 39

IFLA_BRPORT_STATE = 1
IFLA_BRPORT_PRIORITY = 2
IFLA_BRPORT_COST = 3
IFLA_BRPORT_MODE = 4  # hairpin
IFLA_BRPORT_GUARD = 5
IFLA_BRPORT_PROTECT = 6
IFLA_BRPORT_FAST_LEAVE = 7
IFLA_BRPORT_LEARNING = 8
IFLA_BRPORT_UNICAST_FLOOD = 9
IFLA_BRPORT_PROXYARP = 10
IFLA_BRPORT_MCAST_FLOOD = 27
IFLA_BRPORT_BCAST_FLOOD = 30
IFLA_BRPORT_NEIGH_SUPPRESS = 32
IFLA_BRPORT_ISOLATED = 33

RTEXT_FILTER_SKIP_STATS = 1 << 3

OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")

IFINFOMSG = struct.Struct("=BxHiII")


class Link(Record):
    index: int = 0
    name: str = ""
    kind: str = ""
    mac: str = ""
    mtu: int = 0
    flags: int = 0
    up: bool = False
    operstate: str = "unknown"
    master: int = 0
    link: int = 0
    link_netnsid: int | None = None
    promisc: bool = False
    allmulti: bool = False
    info: dict
    txqlen: int = 0
    # Not in the first API sketch: what the link is enslaved as ("bridge" for a
    # bridge port) and the decoded slave data (IFLA_BRPORT_* for bridge ports).
    slave_kind: str = ""
    slave_info: dict
    # IFLA_IFALIAS: free text the administrator (or host-device, with a link's host name) set.
    alias: str = ""

    def __init__(self, **values: object) -> None:
        self.info, self.slave_info = {}, {}
        super().__init__(**values)


# --- message bodies: encode --------------------------------------------------------


def ifinfomsg(index: int = 0, *, family: int = AF_UNSPEC, flags: int = 0, change: int = 0) -> bytes:
    return IFINFOMSG.pack(family, 0, index, flags, change)


def _newlink_body(
    name: str,
    kind: str,
    *,
    data: bytes = b"",
    link: int = 0,
    mtu: int = 0,
    mac: str | None = None,
    netns_fd: int | None = None,
    extra: bytes = b"",
) -> bytes:
    body = ifinfomsg() + attr_str(IFLA_IFNAME, name)
    if link:
        body += attr_u32(IFLA_LINK, link)
    if mtu:
        body += attr_u32(IFLA_MTU, mtu)
    if mac:
        body += attr(IFLA_ADDRESS, mac_to_bytes(mac))
    if netns_fd is not None:
        body += attr_u32(IFLA_NET_NS_FD, netns_fd)
    body += extra
    info = attr_str(IFLA_INFO_KIND, kind)
    if data:
        info += attr(IFLA_INFO_DATA, data)
    return body + attr(IFLA_LINKINFO, info)


def veth_body(name, peer_name, *, peer_netns_fd=None, mtu=0, mac=None, peer_mac=None, txqlen=None) -> bytes:
    peer = ifinfomsg() + attr_str(IFLA_IFNAME, peer_name)
    if mtu:
        peer += attr_u32(IFLA_MTU, mtu)
    if txqlen is not None:
        peer += attr_u32(IFLA_TXQLEN, txqlen)
    if peer_mac:
        peer += attr(IFLA_ADDRESS, mac_to_bytes(peer_mac))
    if peer_netns_fd is not None:
        peer += attr_u32(IFLA_NET_NS_FD, peer_netns_fd)
    extra = attr_u32(IFLA_TXQLEN, txqlen) if txqlen is not None else b""
    return _newlink_body(name, "veth", data=attr(VETH_INFO_PEER, peer), mtu=mtu, mac=mac, extra=extra)


def bridge_body(name, *, mtu=0, mac=None, vlan_filtering=None) -> bytes:
    data = b""
    if vlan_filtering is not None:
        data += attr_u8(IFLA_BR_VLAN_FILTERING, 1 if vlan_filtering else 0)
    return _newlink_body(name, "bridge", data=data, mtu=mtu, mac=mac)


def macvlan_body(name, master_index, mode="bridge", *, mtu=0, mac=None, netns_fd=None, bcqueuelen=None) -> bytes:
    try:
        data = attr_u32(IFLA_MACVLAN_MODE, MACVLAN_MODES[mode])
    except KeyError:
        raise ValueError(f"unknown macvlan mode {mode!r}") from None
    if bcqueuelen is not None:
        data += attr_u32(IFLA_MACVLAN_BC_QUEUE_LEN, bcqueuelen)
    return _newlink_body(name, "macvlan", data=data, link=master_index, mtu=mtu, mac=mac, netns_fd=netns_fd)


def ipvlan_body(name, master_index, mode="l2", *, mtu=0, netns_fd=None) -> bytes:
    try:
        data = attr_u16(IFLA_IPVLAN_MODE, IPVLAN_MODES[mode])
    except KeyError:
        raise ValueError(f"unknown ipvlan mode {mode!r}") from None
    return _newlink_body(name, "ipvlan", data=data, link=master_index, mtu=mtu, netns_fd=netns_fd)


def vlan_body(name, master_index, vlan_id, *, mtu=0, netns_fd=None) -> bytes:
    if not 0 <= vlan_id <= 4094:
        raise ValueError(f"invalid VLAN id {vlan_id}")
    data = attr_u16(IFLA_VLAN_ID, vlan_id)
    return _newlink_body(name, "vlan", data=data, link=master_index, mtu=mtu, netns_fd=netns_fd)


def dummy_body(name, *, mtu=0, netns_fd=None) -> bytes:
    return _newlink_body(name, "dummy", mtu=mtu, netns_fd=netns_fd)


def ifb_body(name, *, mtu=0, txqlen=None) -> bytes:
    extra = attr_u32(IFLA_TXQLEN, txqlen) if txqlen is not None else b""
    return _newlink_body(name, "ifb", mtu=mtu, extra=extra)


def vrf_body(name, table) -> bytes:
    """A VRF device whose routes live in routing table `table`."""
    return _newlink_body(name, "vrf", data=attr_u32(IFLA_VRF_TABLE, table))


# --- message bodies: decode --------------------------------------------------------


def _decode_info_data(kind: str, data: bytes) -> dict:
    attrs = parse_attrs(data)
    info: dict = {}
    if kind in ("macvlan", "macvtap"):
        if IFLA_MACVLAN_MODE in attrs:
            mode = u32(attrs[IFLA_MACVLAN_MODE])
            info["mode"] = next((n for n, v in MACVLAN_MODES.items() if v == mode), str(mode))
        if IFLA_MACVLAN_FLAGS in attrs:
            info["flags"] = u16(attrs[IFLA_MACVLAN_FLAGS])
        if IFLA_MACVLAN_BC_QUEUE_LEN in attrs:
            info["bcqueuelen"] = u32(attrs[IFLA_MACVLAN_BC_QUEUE_LEN])
        if IFLA_MACVLAN_BC_QUEUE_LEN_USED in attrs:
            info["usedbcqueuelen"] = u32(attrs[IFLA_MACVLAN_BC_QUEUE_LEN_USED])
    elif kind in ("ipvlan", "ipvtap"):
        if IFLA_IPVLAN_MODE in attrs:
            mode = u16(attrs[IFLA_IPVLAN_MODE])
            info["mode"] = next((n for n, v in IPVLAN_MODES.items() if v == mode), str(mode))
        if IFLA_IPVLAN_FLAGS in attrs:
            info["flags"] = u16(attrs[IFLA_IPVLAN_FLAGS])
    elif kind == "vlan":
        if IFLA_VLAN_ID in attrs:
            info["id"] = u16(attrs[IFLA_VLAN_ID])
        if IFLA_VLAN_PROTOCOL in attrs:
            proto = struct.unpack_from("!H", attrs[IFLA_VLAN_PROTOCOL])[0]
            info["protocol"] = VLAN_PROTOCOLS.get(proto, hex(proto))
    elif kind == "vrf":
        if IFLA_VRF_TABLE in attrs:
            info["table"] = u32(attrs[IFLA_VRF_TABLE])
    elif kind == "tun":
        if IFLA_TUN_TYPE in attrs:
            info["type"] = TUN_TYPES.get(u8(attrs[IFLA_TUN_TYPE]), str(u8(attrs[IFLA_TUN_TYPE])))
        for key, kid in (("owner", IFLA_TUN_OWNER), ("group", IFLA_TUN_GROUP)):
            if kid in attrs:  # absent: nobody in particular
                info[key] = u32(attrs[kid])
        for key, kid in (("pi", IFLA_TUN_PI), ("vnet_hdr", IFLA_TUN_VNET_HDR), ("persist", IFLA_TUN_PERSIST),
                         ("multi_queue", IFLA_TUN_MULTI_QUEUE)):
            if kid in attrs:
                info[key] = bool(u8(attrs[kid]))
    elif kind == "bridge":
        if IFLA_BR_VLAN_FILTERING in attrs:
            info["vlan_filtering"] = bool(u8(attrs[IFLA_BR_VLAN_FILTERING]))
        for key, kid in (
            ("forward_delay", IFLA_BR_FORWARD_DELAY),
            ("hello_time", IFLA_BR_HELLO_TIME),
            ("max_age", IFLA_BR_MAX_AGE),
            ("ageing_time", IFLA_BR_AGEING_TIME),
            ("stp_state", IFLA_BR_STP_STATE),
        ):
            if kid in attrs:
                info[key] = u32(attrs[kid])
        if IFLA_BR_PRIORITY in attrs:
            info["priority"] = u16(attrs[IFLA_BR_PRIORITY])
        if IFLA_BR_VLAN_DEFAULT_PVID in attrs:
            info["vlan_default_pvid"] = u16(attrs[IFLA_BR_VLAN_DEFAULT_PVID])
    return info


# IFLA_BRPORT_* attributes we decode, as (name, is_flag); all flags are u8.
_BRPORT_ATTRS = {
    IFLA_BRPORT_STATE: ("state", False),
    IFLA_BRPORT_PRIORITY: ("priority", False),
    IFLA_BRPORT_COST: ("cost", False),
    IFLA_BRPORT_MODE: ("hairpin", True),
    IFLA_BRPORT_GUARD: ("guard", True),
    IFLA_BRPORT_PROTECT: ("root_block", True),
    IFLA_BRPORT_FAST_LEAVE: ("fastleave", True),
    IFLA_BRPORT_LEARNING: ("learning", True),
    IFLA_BRPORT_UNICAST_FLOOD: ("flood", True),
    IFLA_BRPORT_PROXYARP: ("proxy_arp", True),
    IFLA_BRPORT_MCAST_FLOOD: ("mcast_flood", True),
    IFLA_BRPORT_BCAST_FLOOD: ("bcast_flood", True),
    IFLA_BRPORT_NEIGH_SUPPRESS: ("neigh_suppress", True),
    IFLA_BRPORT_ISOLATED: ("isolated", True),
}


def decode_brport(data: bytes) -> dict:
    out: dict = {}
    for kind, value in iter_attrs(data):
        known = _BRPORT_ATTRS.get(kind)
        if known is None:
            continue
        name, is_flag = known
        if is_flag or len(value) == 1:
            out[name] = bool(value[0]) if is_flag else value[0]
        elif len(value) == 2:
            out[name] = u16(value)
        else:
            out[name] = u32(value)
    return out


def decode_link(body: bytes) -> Link:
    """A Link from an RTM_NEWLINK body (ifinfomsg + attributes)."""
    _family, _type, index, flags, _change = IFINFOMSG.unpack_from(body)
    attrs = parse_attrs(body, IFINFOMSG.size)
    link = Link(index=index, name="", flags=flags, up=bool(flags & IFF_UP), promisc=bool(flags & IFF_PROMISC),
                allmulti=bool(flags & IFF_ALLMULTI))
    if IFLA_IFNAME in attrs:
        link.name = cstr(attrs[IFLA_IFNAME])
    if IFLA_ADDRESS in attrs:
        link.mac = mac_str(attrs[IFLA_ADDRESS])
    if IFLA_MTU in attrs:
        link.mtu = u32(attrs[IFLA_MTU])
    if IFLA_TXQLEN in attrs:
        link.txqlen = u32(attrs[IFLA_TXQLEN])
    if IFLA_IFALIAS in attrs:
        link.alias = cstr(attrs[IFLA_IFALIAS])
    if IFLA_OPERSTATE in attrs:
        state = u8(attrs[IFLA_OPERSTATE])
        link.operstate = OPERSTATES[state] if state < len(OPERSTATES) else str(state)
    if IFLA_MASTER in attrs:
        link.master = u32(attrs[IFLA_MASTER])
    if IFLA_LINK in attrs:
        link.link = u32(attrs[IFLA_LINK])
    if IFLA_LINK_NETNSID in attrs:
        link.link_netnsid = s32(attrs[IFLA_LINK_NETNSID])
    if IFLA_LINKINFO in attrs:
        info = parse_attrs(attrs[IFLA_LINKINFO])
        if IFLA_INFO_KIND in info:
            link.kind = cstr(info[IFLA_INFO_KIND])
        if IFLA_INFO_DATA in info:
            link.info = _decode_info_data(link.kind, info[IFLA_INFO_DATA])
        if IFLA_INFO_SLAVE_KIND in info:
            link.slave_kind = cstr(info[IFLA_INFO_SLAVE_KIND])
        if link.slave_kind == "bridge" and IFLA_INFO_SLAVE_DATA in info:
            link.slave_info = decode_brport(info[IFLA_INFO_SLAVE_DATA])
    return link


class LinkOps:
    """Link operations of the `Netlink` client (a mixin over core.Socket)."""

    def _get_link(self, body: bytes, operation: str) -> Link | None:
        try:
            replies = self.request(RTM_GETLINK, 0, body, operation)
        except NetlinkError as exc:
            if exc.errno in (_errno.ENODEV, _errno.ENOENT):
                return None
            raise
        for mtype, payload in replies:
            if mtype == RTM_NEWLINK:
                return decode_link(payload)
        return None

    def get_link(self, name: str) -> Link | None:
        body = ifinfomsg() + attr_str(IFLA_IFNAME, name) + attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        return self._get_link(body, f'get link "{name}"')

    def get_link_by_index(self, index: int) -> Link | None:
        body = ifinfomsg(index) + attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        return self._get_link(body, f"get link {index}")

    def links(self) -> list[Link]:
        body = ifinfomsg() + attr_u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
        return [decode_link(p) for t, p in self._dump(RTM_GETLINK, body, "list links") if t == RTM_NEWLINK]

    def _create(self, body: bytes, what: str) -> None:
        self._ack(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, body, f"create {what}")

    def create_veth(self, name, peer_name, *, peer_netns_fd=None, mtu=0, mac=None, peer_mac=None,
                    txqlen=None) -> None:
        body = veth_body(name, peer_name, peer_netns_fd=peer_netns_fd, mtu=mtu, mac=mac, peer_mac=peer_mac,
                         txqlen=txqlen)
        self._create(body, f'veth "{name}" (peer "{peer_name}")')

    def create_ifb(self, name, *, mtu=0, txqlen=None) -> None:
        self._create(ifb_body(name, mtu=mtu, txqlen=txqlen), f'ifb "{name}"')

    def create_bridge(self, name, *, mtu=0, mac=None, vlan_filtering=None) -> None:
        self._create(bridge_body(name, mtu=mtu, mac=mac, vlan_filtering=vlan_filtering), f'bridge "{name}"')

    def create_macvlan(self, name, master_index, mode="bridge", *, mtu=0, mac=None, netns_fd=None, bcqueuelen=None) -> None:
        body = macvlan_body(name, master_index, mode, mtu=mtu, mac=mac, netns_fd=netns_fd, bcqueuelen=bcqueuelen)
        self._create(body, f'macvlan "{name}"')

    def create_ipvlan(self, name, master_index, mode="l2", *, mtu=0, netns_fd=None) -> None:
        self._create(ipvlan_body(name, master_index, mode, mtu=mtu, netns_fd=netns_fd), f'ipvlan "{name}"')

    def create_vlan(self, name, master_index, vlan_id, *, mtu=0, netns_fd=None) -> None:
        self._create(vlan_body(name, master_index, vlan_id, mtu=mtu, netns_fd=netns_fd), f'vlan "{name}"')

    def create_dummy(self, name, *, mtu=0, netns_fd=None) -> None:
        self._create(dummy_body(name, mtu=mtu, netns_fd=netns_fd), f'dummy "{name}"')

    def create_vrf(self, name, table) -> None:
        self._create(vrf_body(name, table), f'vrf "{name}" (table {table})')

    def set_link(
        self,
        index: int,
        *,
        up: bool | None = None,
        master: int | None = None,
        mtu: int | None = None,
        mac: str | None = None,
        name: str | None = None,
        netns_fd: int | None = None,
        promisc: bool | None = None,
        allmulti: bool | None = None,
        txqlen: int | None = None,
        alias: str | None = None,
    ) -> None:
        """Change a link in one RTM_NEWLINK.

        The kernel applies the netns move first, then address, MTU and name, then
        master, then the flags, so a down link can be renamed and brought up in
        one call (kernels before 6.2 refuse to rename a link that is up: EBUSY).
        An `alias` of "" clears the link's alias.
        """
        flags = change = 0
        if up is not None:
            change |= IFF_UP
            flags |= IFF_UP if up else 0
        if promisc is not None:
            change |= IFF_PROMISC
            flags |= IFF_PROMISC if promisc else 0
        if allmulti is not None:
            change |= IFF_ALLMULTI
            flags |= IFF_ALLMULTI if allmulti else 0
        body = ifinfomsg(index, flags=flags, change=change)
        if netns_fd is not None:
            body += attr_u32(IFLA_NET_NS_FD, netns_fd)
        if mac is not None:
            body += attr(IFLA_ADDRESS, mac_to_bytes(mac))
        if mtu is not None:
            body += attr_u32(IFLA_MTU, mtu)
        if name is not None:
            body += attr_str(IFLA_IFNAME, name)
        if master is not None:
            body += attr_u32(IFLA_MASTER, master)
        if txqlen is not None:
            body += attr_u32(IFLA_TXQLEN, txqlen)
        if alias is not None:
            # Without a terminating NUL, as the kernel counts the length; empty clears it.
            body += attr(IFLA_IFALIAS, alias.encode())
        self._ack(RTM_NEWLINK, 0, body, f"set link {index}")

    def delete_link(self, index: int, *, missing_ok: bool = False) -> None:
        """Delete link `index`; with `missing_ok` one already gone is success (undo, DEL)."""
        try:
            self._ack(RTM_DELLINK, 0, ifinfomsg(index), f"delete link {index}")
        except NetlinkError as exc:
            if not (missing_ok and exc.gone):
                raise

    def delete_link_if_unused(self, index: int) -> None:
        """Delete master link `index` (a bridge, a VRF) unless some link is still enslaved to it
        (another ADD may have attached one meanwhile); gone is success."""
        if any(link.master == index for link in self.links()):
            return
        self.delete_link(index, missing_ok=True)

    def wait_oper_up(self, index: int, timeout: float = 5.0) -> bool:
        """Wait until the link's operstate is "up"; False after `timeout` seconds.

        Link notifications wake us up at once; a re-read every 100 ms covers
        notifications lost to a full socket buffer.
        """
        import select
        import time

        deadline = time.monotonic() + timeout
        self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_LINK)
        try:
            while True:
                link = self.get_link_by_index(index)
                if link is None:
                    raise NetlinkError(_errno.ENODEV, f"wait for link {index} to come up")
                if link.operstate == "up":
                    return True
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    ready, _, _ = select.select([self._sock], [], [], min(left, 0.1))
                    if not ready:
                        break  # re-read the link
                    try:
                        data = self._recv()
                    except OSError as exc:
                        if exc.errno == _errno.ENOBUFS:
                            break
                        raise
                    if any(t == RTM_NEWLINK and decode_link(p).index == index for t, _f, s, p in self._messages(data) if s == 0):
                        break
        finally:
            self._sock.setsockopt(SOL_NETLINK, NETLINK_DROP_MEMBERSHIP, RTNLGRP_LINK)
