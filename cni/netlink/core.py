"""The netlink codec and socket: message framing, attributes, errors, request/ack/dump.

Every kernel object (links, addresses, routes, bridge ports, and what later
plugins need) builds its messages with these helpers and sends them through
one `Socket`; cni.netlink composes the operations into the `Netlink` client.
"""
from __future__ import annotations

import errno as _errno
import ipaddress
import os
# The C module itself: socket.py wraps it in enums and selectors that cost every
# exec a few milliseconds, and a raw netlink socket needs none of that.
import _socket as socket
# The C module too: struct.py only re-exports it, and would be one more file per exec.
import _struct as struct

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

RTNLGRP_LINK = 1

AF_UNSPEC = 0
AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6
AF_BRIDGE = 7

# Shared by addresses, routes and rules.
RT_TABLE_UNSPEC = 0
RT_TABLE_MAIN = 254
RT_TABLE_LOCAL = 255

RT_SCOPE_UNIVERSE = 0
RT_SCOPE_SITE = 200
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
RT_SCOPE_NOWHERE = 255

# errnos that mean "the thing is not there (any more)": DEL treats them as done.
GONE_ERRNOS = frozenset({_errno.ENODEV, _errno.ENOENT, _errno.EADDRNOTAVAIL, _errno.ESRCH})

NLMSGHDR = struct.Struct("=IHHII")
NLATTR = struct.Struct("=HH")

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


# --- attribute codec --------------------------------------------------------------


def align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, data: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    size = NLATTR.size + len(data)
    return NLATTR.pack(size, kind) + data + b"\0" * (align(size) - size)


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
    while offset + NLATTR.size <= end:
        size, kind = NLATTR.unpack_from(data, offset)
        if size < NLATTR.size or offset + size > end:
            break
        yield kind & NLA_TYPE_MASK, bytes(data[offset + NLATTR.size : offset + size])
        offset += align(size)


def u8(b: bytes) -> int:
    return b[0]


def u16(b: bytes) -> int:
    return struct.unpack_from("=H", b)[0]


def u32(b: bytes) -> int:
    return struct.unpack_from("=I", b)[0]


def s32(b: bytes) -> int:
    return struct.unpack_from("=i", b)[0]


def cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode(errors="replace")


def mac_to_bytes(mac: str) -> bytes:
    raw = bytes(int(part, 16) for part in mac.split(":"))
    if len(raw) != 6:
        raise ValueError(f"invalid MAC address {mac!r}")
    return raw


def mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def ip_from_bytes(family: int, raw: bytes):
    if family == AF_INET:
        return ipaddress.IPv4Address(raw[:4])
    return ipaddress.IPv6Address(raw[:16])


def family_of(ip) -> int:
    return AF_INET if ip.version == 4 else AF_INET6


def _ext_ack_message(body: bytes, msg_flags: int) -> str:
    """The NLMSGERR_ATTR_MSG text of an NLMSG_ERROR body, or ""."""
    if not msg_flags & NLM_F_ACK_TLVS or len(body) < 4 + NLMSGHDR.size:
        return ""
    offset = 4 + NLMSGHDR.size
    if not msg_flags & NLM_F_CAPPED:
        offset = 4 + align(NLMSGHDR.unpack_from(body, 4)[0])
    text = parse_attrs(body, offset).get(NLMSGERR_ATTR_MSG)
    return cstr(text) if text else ""


# --- the client ----------------------------------------------------------------------


class Socket:
    """One netlink socket (NETLINK_ROUTE unless a subclass says otherwise), bound to
    the netns at `netns` (or the current one).

    The object operations (cni.netlink.link, addr, route, bridge) are mixins over it.
    """

    PROTOCOL = NETLINK_ROUTE

    def __init__(self, netns: str | None = None) -> None:
        self._seq = 0
        self._buf = bytearray(_RECV_BUFSIZE)
        self.netns = netns
        if netns:
            from ..netns import entered

            with entered(netns):
                self._sock = self._open()
        else:
            self._sock = self._open()

    def _open(self) -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, self.PROTOCOL)
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

    def __enter__(self) -> Socket:
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
        while offset + NLMSGHDR.size <= len(data):
            length, mtype, mflags, seq, _pid = NLMSGHDR.unpack_from(data, offset)
            if length < NLMSGHDR.size or offset + length > len(data):
                break
            yield mtype, mflags, seq, bytes(data[offset + NLMSGHDR.size : offset + length])
            offset += align(length)

    def _send(self, msg_type: int, flags: int, body: bytes) -> int:
        self._seq += 1
        header = NLMSGHDR.pack(NLMSGHDR.size + len(body), msg_type, flags | NLM_F_REQUEST, self._seq, 0)
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
                        err = -s32(payload) if len(payload) >= 4 else 0
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
