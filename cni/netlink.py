"""A small rtnetlink client on the stdlib: links, addresses, routes, bridge ports.

Every plugin is a fresh process per call, and importing pyroute2 costs about
0.4 s, so the exec'd plugins talk to the kernel through this module instead. It
encodes exactly the messages the plugins need and decodes the replies into
plain records (cni.record).

A socket opened inside a network namespace stays bound to it after the thread
leaves, so `Netlink(netns=path)` enters the namespace only to open its socket.

Errors from the kernel surface as `NetlinkError` carrying the kernel's errno
(EEXIST, ENODEV, ESRCH, ...) and, when the kernel sends one, its extended-ack
message, so callers can tell "already gone" from real failures.
"""
from __future__ import annotations

import errno as _errno
import ipaddress
import os
# The C module itself: socket.py wraps it in enums and selectors that cost every
# exec a few milliseconds, and a raw netlink socket needs none of that.
import _socket as socket
import struct

from .record import Record

# --- netlink core -----------------------------------------------------------

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_DROP_MEMBERSHIP = 2
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4

NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
# Flags on an NLMSG_ERROR reply.
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200

NLMSGERR_ATTR_MSG = 1

NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26

RTNLGRP_LINK = 1

AF_UNSPEC = 0
AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6
AF_BRIDGE = 7

# --- links --------------------------------------------------------------------

IFF_UP = 0x1
IFF_PROMISC = 0x100

IFLA_ADDRESS = 1
IFLA_BROADCAST = 2
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_PROTINFO = 12
IFLA_TXQLEN = 13
IFLA_OPERSTATE = 16
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

IFLA_BRIDGE_FLAGS = 0
IFLA_BRIDGE_VLAN_INFO = 2
BRIDGE_FLAGS_SELF = 2
BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4
BRIDGE_VLAN_INFO_RANGE_BEGIN = 0x8
BRIDGE_VLAN_INFO_RANGE_END = 0x10

RTEXT_FILTER_BRVLAN = 1 << 1
RTEXT_FILTER_SKIP_STATS = 1 << 3

OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")

# --- addresses ------------------------------------------------------------------

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
IFA_FLAGS = 8

IFA_F_SECONDARY = 0x01
IFA_F_NODAD = 0x02
IFA_F_OPTIMISTIC = 0x04
IFA_F_DADFAILED = 0x08
IFA_F_HOMEADDRESS = 0x10
IFA_F_DEPRECATED = 0x20
IFA_F_TENTATIVE = 0x40
IFA_F_PERMANENT = 0x80
IFA_F_NOPREFIXROUTE = 0x200

# --- routes ---------------------------------------------------------------------

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_PREFSRC = 7
RTA_METRICS = 8
RTA_TABLE = 15
RTA_VIA = 18

RTAX_MTU = 2
RTAX_ADVMSS = 8

RT_TABLE_UNSPEC = 0
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255

RT_SCOPE_UNIVERSE = 0
RT_SCOPE_SITE = 200
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
RT_SCOPE_NOWHERE = 255

RTN_UNSPEC = 0
RTN_UNICAST = 1
RTN_LOCAL = 2

RTPROT_KERNEL = 2
RTPROT_BOOT = 3
RTPROT_STATIC = 4

# errnos that mean "the thing is not there (any more)": DEL treats them as done.
GONE_ERRNOS = frozenset({_errno.ENODEV, _errno.ENOENT, _errno.EADDRNOTAVAIL, _errno.ESRCH})

_NLMSGHDR = struct.Struct("=IHHII")
_NLATTR = struct.Struct("=HH")
_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_BRIDGE_VLAN_INFO = struct.Struct("=HH")

_RECV_BUFSIZE = 64 * 1024
_SOCK_RCVBUF = 1024 * 1024


class NetlinkError(OSError):
    """The kernel refused a request; `.errno` is the kernel's errno."""

    def __init__(self, err: int, operation: str, ext_msg: str = "") -> None:
        text = f"{operation}: {os.strerror(err)}"
        if ext_msg:
            text += f" ({ext_msg})"
        super().__init__(err, text)
        self.operation = operation
        self.ext_msg = ext_msg

    def __str__(self) -> str:
        return self.strerror

    @property
    def gone(self) -> bool:
        """True for the errnos that say the object does not exist."""
        return self.errno in GONE_ERRNOS


# --- data -----------------------------------------------------------------------


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
    info: dict
    txqlen: int = 0
    # Not in the first API sketch: what the link is enslaved as ("bridge" for a
    # bridge port) and the decoded slave data (IFLA_BRPORT_* for bridge ports).
    slave_kind: str = ""
    slave_info: dict

    def __init__(self, **values: object) -> None:
        self.info, self.slave_info = {}, {}
        super().__init__(**values)


class Address(Record):
    index: int = 0
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    scope: int = RT_SCOPE_UNIVERSE
    flags: int = 0

    @property
    def family(self) -> int:
        return AF_INET if self.address.version == 4 else AF_INET6


class Route(Record):
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network
    gw: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    oif: int = 0
    table: int = RT_TABLE_MAIN
    scope: int = RT_SCOPE_UNIVERSE
    proto: int = RTPROT_STATIC
    priority: int = 0
    src: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    type: int = RTN_UNICAST
    mtu: int = 0
    advmss: int = 0

    @property
    def family(self) -> int:
        return AF_INET if self.dst.version == 4 else AF_INET6


# --- attribute codec --------------------------------------------------------------


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, data: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    size = _NLATTR.size + len(data)
    return _NLATTR.pack(size, kind) + data + b"\0" * (_align(size) - size)


def attr_u8(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=B", value))


def attr_u16(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=H", value))


def attr_u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def attr_str(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def attr_nested(kind: int, *children: bytes) -> bytes:
    return attr(kind, b"".join(children))


def parse_attrs(data: bytes, offset: int = 0) -> dict[int, bytes]:
    """Attributes from `offset` on, by type (flags masked off); the last one wins."""
    return dict(iter_attrs(data, offset))


def iter_attrs(data: bytes, offset: int = 0):
    """(type, payload) pairs in order; repeated types are all kept."""
    end = len(data)
    while offset + _NLATTR.size <= end:
        size, kind = _NLATTR.unpack_from(data, offset)
        if size < _NLATTR.size or offset + size > end:
            break
        yield kind & NLA_TYPE_MASK, bytes(data[offset + _NLATTR.size : offset + size])
        offset += _align(size)


def _u8(b: bytes) -> int:
    return b[0]


def _u16(b: bytes) -> int:
    return struct.unpack_from("=H", b)[0]


def _u32(b: bytes) -> int:
    return struct.unpack_from("=I", b)[0]


def _s32(b: bytes) -> int:
    return struct.unpack_from("=i", b)[0]


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode(errors="replace")


def mac_to_bytes(mac: str) -> bytes:
    raw = bytes(int(part, 16) for part in mac.split(":"))
    if len(raw) != 6:
        raise ValueError(f"invalid MAC address {mac!r}")
    return raw


def _mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _ip_from_bytes(family: int, raw: bytes):
    if family == AF_INET:
        return ipaddress.IPv4Address(raw[:4])
    return ipaddress.IPv6Address(raw[:16])


# --- message bodies: encode --------------------------------------------------------


def ifinfomsg(index: int = 0, *, family: int = AF_UNSPEC, flags: int = 0, change: int = 0) -> bytes:
    return _IFINFOMSG.pack(family, 0, index, flags, change)


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


# --- message bodies: decode --------------------------------------------------------


def _decode_info_data(kind: str, data: bytes) -> dict:
    attrs = parse_attrs(data)
    info: dict = {}
    if kind in ("macvlan", "macvtap"):
        if IFLA_MACVLAN_MODE in attrs:
            mode = _u32(attrs[IFLA_MACVLAN_MODE])
            info["mode"] = next((n for n, v in MACVLAN_MODES.items() if v == mode), str(mode))
        if IFLA_MACVLAN_FLAGS in attrs:
            info["flags"] = _u16(attrs[IFLA_MACVLAN_FLAGS])
        if IFLA_MACVLAN_BC_QUEUE_LEN in attrs:
            info["bcqueuelen"] = _u32(attrs[IFLA_MACVLAN_BC_QUEUE_LEN])
        if IFLA_MACVLAN_BC_QUEUE_LEN_USED in attrs:
            info["usedbcqueuelen"] = _u32(attrs[IFLA_MACVLAN_BC_QUEUE_LEN_USED])
    elif kind in ("ipvlan", "ipvtap"):
        if IFLA_IPVLAN_MODE in attrs:
            mode = _u16(attrs[IFLA_IPVLAN_MODE])
            info["mode"] = next((n for n, v in IPVLAN_MODES.items() if v == mode), str(mode))
        if IFLA_IPVLAN_FLAGS in attrs:
            info["flags"] = _u16(attrs[IFLA_IPVLAN_FLAGS])
    elif kind == "vlan":
        if IFLA_VLAN_ID in attrs:
            info["id"] = _u16(attrs[IFLA_VLAN_ID])
        if IFLA_VLAN_PROTOCOL in attrs:
            proto = struct.unpack_from("!H", attrs[IFLA_VLAN_PROTOCOL])[0]
            info["protocol"] = VLAN_PROTOCOLS.get(proto, hex(proto))
    elif kind == "bridge":
        if IFLA_BR_VLAN_FILTERING in attrs:
            info["vlan_filtering"] = bool(_u8(attrs[IFLA_BR_VLAN_FILTERING]))
        for key, kid in (
            ("forward_delay", IFLA_BR_FORWARD_DELAY),
            ("hello_time", IFLA_BR_HELLO_TIME),
            ("max_age", IFLA_BR_MAX_AGE),
            ("ageing_time", IFLA_BR_AGEING_TIME),
            ("stp_state", IFLA_BR_STP_STATE),
        ):
            if kid in attrs:
                info[key] = _u32(attrs[kid])
        if IFLA_BR_PRIORITY in attrs:
            info["priority"] = _u16(attrs[IFLA_BR_PRIORITY])
        if IFLA_BR_VLAN_DEFAULT_PVID in attrs:
            info["vlan_default_pvid"] = _u16(attrs[IFLA_BR_VLAN_DEFAULT_PVID])
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
            out[name] = _u16(value)
        else:
            out[name] = _u32(value)
    return out


def decode_link(body: bytes) -> Link:
    """A Link from an RTM_NEWLINK body (ifinfomsg + attributes)."""
    _family, _type, index, flags, _change = _IFINFOMSG.unpack_from(body)
    attrs = parse_attrs(body, _IFINFOMSG.size)
    link = Link(index=index, name="", flags=flags, up=bool(flags & IFF_UP), promisc=bool(flags & IFF_PROMISC))
    if IFLA_IFNAME in attrs:
        link.name = _cstr(attrs[IFLA_IFNAME])
    if IFLA_ADDRESS in attrs:
        link.mac = _mac_str(attrs[IFLA_ADDRESS])
    if IFLA_MTU in attrs:
        link.mtu = _u32(attrs[IFLA_MTU])
    if IFLA_TXQLEN in attrs:
        link.txqlen = _u32(attrs[IFLA_TXQLEN])
    if IFLA_OPERSTATE in attrs:
        state = _u8(attrs[IFLA_OPERSTATE])
        link.operstate = OPERSTATES[state] if state < len(OPERSTATES) else str(state)
    if IFLA_MASTER in attrs:
        link.master = _u32(attrs[IFLA_MASTER])
    if IFLA_LINK in attrs:
        link.link = _u32(attrs[IFLA_LINK])
    if IFLA_LINK_NETNSID in attrs:
        link.link_netnsid = _s32(attrs[IFLA_LINK_NETNSID])
    if IFLA_LINKINFO in attrs:
        info = parse_attrs(attrs[IFLA_LINKINFO])
        if IFLA_INFO_KIND in info:
            link.kind = _cstr(info[IFLA_INFO_KIND])
        if IFLA_INFO_DATA in info:
            link.info = _decode_info_data(link.kind, info[IFLA_INFO_DATA])
        if IFLA_INFO_SLAVE_KIND in info:
            link.slave_kind = _cstr(info[IFLA_INFO_SLAVE_KIND])
        if link.slave_kind == "bridge" and IFLA_INFO_SLAVE_DATA in info:
            link.slave_info = decode_brport(info[IFLA_INFO_SLAVE_DATA])
    return link


def decode_address(body: bytes) -> Address:
    family, prefixlen, flags8, scope, index = _IFADDRMSG.unpack_from(body)
    attrs = parse_attrs(body, _IFADDRMSG.size)
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
    # point-to-point links, and the only one present for IPv6.
    raw = attrs.get(IFA_LOCAL) or attrs[IFA_ADDRESS]
    ip = _ip_from_bytes(family, raw)
    flags = _u32(attrs[IFA_FLAGS]) if IFA_FLAGS in attrs else flags8
    return Address(index=index, address=ipaddress.ip_interface((ip, prefixlen)), scope=scope, flags=flags)


def decode_route(body: bytes) -> Route:
    family, dst_len, _src_len, _tos, table, proto, scope, rtype, _flags = _RTMSG.unpack_from(body)
    attrs = parse_attrs(body, _RTMSG.size)
    if RTA_DST in attrs:
        dst_ip = _ip_from_bytes(family, attrs[RTA_DST])
    else:
        dst_ip = ipaddress.IPv4Address(0) if family == AF_INET else ipaddress.IPv6Address(0)
    route = Route(
        dst=ipaddress.ip_network((dst_ip, dst_len)),
        table=_u32(attrs[RTA_TABLE]) if RTA_TABLE in attrs else table,
        scope=scope,
        proto=proto,
        type=rtype,
    )
    if RTA_GATEWAY in attrs:
        route.gw = _ip_from_bytes(family, attrs[RTA_GATEWAY])
    elif RTA_VIA in attrs:
        via = attrs[RTA_VIA]
        route.gw = _ip_from_bytes(_u16(via), via[2:])
    if RTA_OIF in attrs:
        route.oif = _u32(attrs[RTA_OIF])
    if RTA_PRIORITY in attrs:
        route.priority = _u32(attrs[RTA_PRIORITY])
    if RTA_PREFSRC in attrs:
        route.src = _ip_from_bytes(family, attrs[RTA_PREFSRC])
    if RTA_METRICS in attrs:
        metrics = parse_attrs(attrs[RTA_METRICS])
        if RTAX_MTU in metrics:
            route.mtu = _u32(metrics[RTAX_MTU])
        if RTAX_ADVMSS in metrics:
            route.advmss = _u32(metrics[RTAX_ADVMSS])
    return route


def _family_of(ip) -> int:
    return AF_INET if ip.version == 4 else AF_INET6


def _ext_ack_message(body: bytes, msg_flags: int) -> str:
    """The NLMSGERR_ATTR_MSG text of an NLMSG_ERROR body, or ""."""
    if not msg_flags & NLM_F_ACK_TLVS or len(body) < 4 + _NLMSGHDR.size:
        return ""
    offset = 4 + _NLMSGHDR.size
    if not msg_flags & NLM_F_CAPPED:
        offset = 4 + _align(_NLMSGHDR.unpack_from(body, 4)[0])
    text = parse_attrs(body, offset).get(NLMSGERR_ATTR_MSG)
    return _cstr(text) if text else ""


# --- the client ----------------------------------------------------------------------


class Netlink:
    """One NETLINK_ROUTE socket, bound to the netns at `netns` (or the current one)."""

    def __init__(self, netns: str | None = None) -> None:
        self._seq = 0
        self._buf = bytearray(_RECV_BUFSIZE)
        self.netns = netns
        if netns:
            from .netns import entered

            with entered(netns):
                self._sock = self._open()
        else:
            self._sock = self._open()

    @staticmethod
    def _open() -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCK_RCVBUF)
            for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
                try:
                    sock.setsockopt(SOL_NETLINK, opt, 1)
                except OSError:
                    pass  # older kernels: plain errors without the message
            sock.bind((0, 0))
        except BaseException:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transport --------------------------------------------------------------------

    def _recv(self) -> memoryview:
        # Peek first so an oversized datagram grows the buffer instead of being cut.
        size = self._sock.recv_into(self._buf, len(self._buf), socket.MSG_PEEK | socket.MSG_TRUNC)
        if size > len(self._buf):
            self._buf = bytearray(size)
        size = self._sock.recv_into(self._buf, len(self._buf))
        return memoryview(self._buf)[:size]

    def _messages(self, data: memoryview):
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, mtype, mflags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size or offset + length > len(data):
                break
            yield mtype, mflags, seq, bytes(data[offset + _NLMSGHDR.size : offset + length])
            offset += _align(length)

    def _send(self, msg_type: int, flags: int, body: bytes) -> int:
        self._seq += 1
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), msg_type, flags | NLM_F_REQUEST, self._seq, 0)
        self._sock.send(header + body)
        return self._seq

    def request(self, msg_type: int, flags: int, body: bytes, operation: str, *, dump: bool = False) -> list[tuple[int, bytes]]:
        """Send one message and collect (type, body) replies until the ACK, error or DONE.

        Dumps end at NLMSG_DONE; other requests carry NLM_F_ACK and end at the
        kernel's ACK. An interrupted dump (NLM_F_DUMP_INTR) is run again.
        `dump` is explicit because NLM_F_DUMP shares its bits with
        NLM_F_REPLACE|NLM_F_EXCL.
        """
        flags |= NLM_F_DUMP if dump else NLM_F_ACK
        for _attempt in range(5):
            seq = self._send(msg_type, flags, body)
            replies: list[tuple[int, bytes]] = []
            interrupted = False
            while True:
                done = False
                for mtype, mflags, mseq, payload in self._messages(self._recv()):
                    if mseq != seq:
                        continue  # a stale reply or a multicast notification
                    if mflags & NLM_F_DUMP_INTR:
                        interrupted = True
                    if mtype == NLMSG_ERROR or (mtype == NLMSG_DONE and len(payload) >= 4):
                        err = -_s32(payload) if len(payload) >= 4 else 0
                        if err:
                            raise NetlinkError(err, operation, _ext_ack_message(payload, mflags))
                        if mtype == NLMSG_ERROR or dump:
                            done = True
                            break
                    elif mtype == NLMSG_DONE:
                        done = True
                        break
                    elif mtype in (NLMSG_NOOP, NLMSG_OVERRUN):
                        continue
                    else:
                        replies.append((mtype, payload))
                if done:
                    break
            if not (dump and interrupted):
                return replies
        return replies

    def _ack(self, msg_type: int, flags: int, body: bytes, operation: str) -> None:
        self.request(msg_type, flags, body, operation)

    def _dump(self, msg_type: int, body: bytes, operation: str) -> list[tuple[int, bytes]]:
        return self.request(msg_type, 0, body, operation, dump=True)

    # -- links ------------------------------------------------------------------------

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

    def create_bridge(self, name, *, mtu=0, mac=None, vlan_filtering=None) -> None:
        self._create(bridge_body(name, mtu=mtu, mac=mac, vlan_filtering=vlan_filtering), f'bridge "{name}"')

    def create_macvlan(self, name, master_index, mode="bridge", *, mtu=0, mac=None, netns_fd=None, bcqueuelen=None) -> None:
        body = macvlan_body(name, master_index, mode, mtu=mtu, mac=mac, netns_fd=netns_fd, bcqueuelen=bcqueuelen)
        self._create(body, f'macvlan "{name}"')

    def create_ipvlan(self, name, master_index, mode="l2", *, mtu=0, netns_fd=None) -> None:
        self._create(ipvlan_body(name, master_index, mode, mtu=mtu, netns_fd=netns_fd), f'ipvlan "{name}"')

    def create_vlan(self, name, master_index, vlan_id, *, mtu=0, netns_fd=None) -> None:
        self._create(vlan_body(name, master_index, vlan_id, mtu=mtu, netns_fd=netns_fd), f'vlan "{name}"')

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
        txqlen: int | None = None,
    ) -> None:
        """Change a link in one RTM_NEWLINK.

        The kernel applies the netns move first, then address, MTU and name, then
        master, then the flags, so a down link can be renamed and brought up in
        one call (kernels before 6.2 refuse to rename a link that is up: EBUSY).
        """
        flags = change = 0
        if up is not None:
            change |= IFF_UP
            flags |= IFF_UP if up else 0
        if promisc is not None:
            change |= IFF_PROMISC
            flags |= IFF_PROMISC if promisc else 0
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
        self._ack(RTM_NEWLINK, 0, body, f"set link {index}")

    def delete_link(self, index: int) -> None:
        self._ack(RTM_DELLINK, 0, ifinfomsg(index), f"delete link {index}")

    # -- addresses ---------------------------------------------------------------------

    def addresses(self, index: int | None = None, family: int | None = None) -> list[Address]:
        body = _IFADDRMSG.pack(family or AF_UNSPEC, 0, 0, 0, 0)
        out = []
        for mtype, payload in self._dump(RTM_GETADDR, body, "list addresses"):
            if mtype != RTM_NEWADDR:
                continue
            addr = decode_address(payload)
            if index is not None and addr.index != index:
                continue
            if family and addr.family != family:
                continue
            out.append(addr)
        return out

    def add_address(self, index: int, address, *, flags: int = 0, replace: bool = False) -> None:
        """Add `address` ("10.0.0.2/24" or an ip_interface); IPv4 gets `brd +`."""
        iface = ipaddress.ip_interface(address)
        family = _family_of(iface)
        raw = iface.ip.packed
        scope = RT_SCOPE_HOST if iface.ip.is_loopback else RT_SCOPE_UNIVERSE
        body = _IFADDRMSG.pack(family, iface.network.prefixlen, flags & 0xFF, scope, index)
        body += attr(IFA_LOCAL, raw) + attr(IFA_ADDRESS, raw)
        if family == AF_INET and iface.network.prefixlen < 31:
            body += attr(IFA_BROADCAST, iface.network.broadcast_address.packed)
        if flags > 0xFF:
            body += attr_u32(IFA_FLAGS, flags)
        mode = NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
        self._ack(RTM_NEWADDR, mode, body, f"add address {iface} on link {index}")

    def delete_address(self, index: int, address) -> None:
        iface = ipaddress.ip_interface(address)
        family = _family_of(iface)
        body = _IFADDRMSG.pack(family, iface.network.prefixlen, 0, 0, index) + attr(IFA_LOCAL, iface.ip.packed)
        self._ack(RTM_DELADDR, 0, body, f"delete address {iface} on link {index}")

    # -- routes -------------------------------------------------------------------------

    def routes(self, family: int | None = None, table: int | None = RT_TABLE_MAIN) -> list[Route]:
        body = _RTMSG.pack(family or AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0)
        out = []
        for mtype, payload in self._dump(RTM_GETROUTE, body, "list routes"):
            if mtype != RTM_NEWROUTE:
                continue
            route = decode_route(payload)
            if table is not None and route.table != table:
                continue
            if family and route.family != family:
                continue
            out.append(route)
        return out

    @staticmethod
    def _route_body(dst, gw, oif, table, rtype, proto, scope) -> tuple[bytes, str]:
        net = ipaddress.ip_network(dst, strict=False)
        family = _family_of(net)
        body = _RTMSG.pack(family, net.prefixlen, 0, 0, table if table < 256 else RT_TABLE_UNSPEC, proto, scope, rtype, 0)
        if net.prefixlen:
            body += attr(RTA_DST, net.network_address.packed)
        body += attr_u32(RTA_TABLE, table)
        what = str(net)
        if gw is not None:
            gw_ip = ipaddress.ip_address(gw)
            if gw_ip.version == net.version:
                body += attr(RTA_GATEWAY, gw_ip.packed)
            else:
                body += attr(RTA_VIA, struct.pack("=H", _family_of(gw_ip)) + gw_ip.packed)
            what += f" via {gw_ip}"
        if oif:
            body += attr_u32(RTA_OIF, oif)
            what += f" dev {oif}"
        return body, what

    def add_route(
        self,
        dst,
        *,
        gw=None,
        oif: int = 0,
        scope: int | None = None,
        src=None,
        table: int = RT_TABLE_MAIN,
        priority: int = 0,
        mtu: int = 0,
        advmss: int = 0,
        proto: int = RTPROT_STATIC,
        replace: bool = False,
    ) -> None:
        """Add a unicast route; `dst` "default" or "0.0.0.0/0" is the default route."""
        dst = _default_dst(dst, gw)
        if scope is None:
            scope = RT_SCOPE_UNIVERSE if gw is not None else RT_SCOPE_LINK
        body, what = self._route_body(dst, gw, oif, table, RTN_UNICAST, proto, scope)
        if src is not None:
            body += attr(RTA_PREFSRC, ipaddress.ip_address(src).packed)
        if priority:
            body += attr_u32(RTA_PRIORITY, priority)
        metrics = b""
        if mtu:
            metrics += attr_u32(RTAX_MTU, mtu)
        if advmss:
            metrics += attr_u32(RTAX_ADVMSS, advmss)
        if metrics:
            body += attr(RTA_METRICS, metrics)
        mode = NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
        self._ack(RTM_NEWROUTE, mode, body, f"add route {what}")

    def delete_route(self, dst, *, gw=None, oif: int = 0, table: int = RT_TABLE_MAIN, priority: int | None = None) -> None:
        dst = _default_dst(dst, gw)
        # Scope NOWHERE, type and protocol 0: match whatever the route was added with.
        body, what = self._route_body(dst, gw, oif, table, RTN_UNSPEC, 0, RT_SCOPE_NOWHERE)
        if priority is not None:
            body += attr_u32(RTA_PRIORITY, priority)
        self._ack(RTM_DELROUTE, 0, body, f"delete route {what}")

    # -- bridge ports and VLANs ------------------------------------------------------------

    def set_bridge_port(self, index: int, *, hairpin: bool | None = None, isolated: bool | None = None, learning: bool | None = None) -> None:
        protinfo = b""
        for kind, value in ((IFLA_BRPORT_MODE, hairpin), (IFLA_BRPORT_ISOLATED, isolated), (IFLA_BRPORT_LEARNING, learning)):
            if value is not None:
                protinfo += attr_u8(kind, 1 if value else 0)
        if not protinfo:
            return
        # The bridge reads IFLA_PROTINFO as nested only with the flag; without it,
        # it is the old single-byte port state.
        body = ifinfomsg(index, family=AF_BRIDGE) + attr(IFLA_PROTINFO | NLA_F_NESTED, protinfo)
        self._ack(RTM_SETLINK, 0, body, f"set bridge port {index}")

    def _bridge_dump(self, index: int, ext_mask: int, operation: str) -> list[bytes]:
        body = ifinfomsg(family=AF_BRIDGE) + attr_u32(IFLA_EXT_MASK, ext_mask)
        out = []
        for mtype, payload in self._dump(RTM_GETLINK, body, operation):
            if mtype == RTM_NEWLINK and _IFINFOMSG.unpack_from(payload)[2] == index:
                out.append(payload)
        return out

    def bridge_port(self, index: int) -> dict:
        """IFLA_BRPORT_* settings of a bridge port ({} when `index` is no port)."""
        out: dict = {}
        for payload in self._bridge_dump(index, 0, f"get bridge port {index}"):
            attrs = parse_attrs(payload, _IFINFOMSG.size)
            if IFLA_PROTINFO in attrs:
                out.update(decode_brport(attrs[IFLA_PROTINFO]))
        return out

    @staticmethod
    def _vlan_spec(vid: int, flags: int, self_: bool, vid_end: int | None) -> bytes:
        spec = attr_u16(IFLA_BRIDGE_FLAGS, BRIDGE_FLAGS_SELF) if self_ else b""
        if vid_end is not None and vid_end != vid:
            if vid_end < vid:
                raise ValueError(f"VLAN range {vid}-{vid_end} is empty")
            spec += attr(IFLA_BRIDGE_VLAN_INFO, _BRIDGE_VLAN_INFO.pack(flags | BRIDGE_VLAN_INFO_RANGE_BEGIN, vid))
            spec += attr(IFLA_BRIDGE_VLAN_INFO, _BRIDGE_VLAN_INFO.pack(flags | BRIDGE_VLAN_INFO_RANGE_END, vid_end))
        else:
            spec += attr(IFLA_BRIDGE_VLAN_INFO, _BRIDGE_VLAN_INFO.pack(flags, vid))
        return attr(IFLA_AF_SPEC, spec)

    def bridge_vlan_add(self, index: int, vid: int, *, pvid: bool = False, untagged: bool = False, self_: bool = False, vid_end: int | None = None) -> None:
        flags = (BRIDGE_VLAN_INFO_PVID if pvid else 0) | (BRIDGE_VLAN_INFO_UNTAGGED if untagged else 0)
        body = ifinfomsg(index, family=AF_BRIDGE) + self._vlan_spec(vid, flags, self_, vid_end)
        self._ack(RTM_SETLINK, 0, body, f"add vlan {vid} on link {index}")

    def bridge_vlan_del(self, index: int, vid: int, *, self_: bool = False, vid_end: int | None = None) -> None:
        body = ifinfomsg(index, family=AF_BRIDGE) + self._vlan_spec(vid, 0, self_, vid_end)
        self._ack(RTM_DELLINK, 0, body, f"delete vlan {vid} on link {index}")

    def bridge_vlans(self, index: int) -> list[dict]:
        """[{"vid", "pvid", "untagged"}] of a bridge port (or of the bridge itself)."""
        out = []
        for payload in self._bridge_dump(index, RTEXT_FILTER_BRVLAN, f"list vlans of link {index}"):
            spec = parse_attrs(payload, _IFINFOMSG.size).get(IFLA_AF_SPEC)
            if spec is None:
                continue
            for kind, value in iter_attrs(spec):
                if kind == IFLA_BRIDGE_VLAN_INFO:
                    flags, vid = _BRIDGE_VLAN_INFO.unpack_from(value)
                    out.append({"vid": vid, "pvid": bool(flags & BRIDGE_VLAN_INFO_PVID), "untagged": bool(flags & BRIDGE_VLAN_INFO_UNTAGGED)})
        return out

    # -- waiting ----------------------------------------------------------------------------

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


def _default_dst(dst, gw):
    if dst in (None, "default"):
        gw_ip = ipaddress.ip_address(gw) if gw is not None else None
        return "::/0" if gw_ip is not None and gw_ip.version == 6 else "0.0.0.0/0"
    return dst
