"""DHCPv4 messages (RFC 2131/2132) and the IPv4/UDP framing around them.

The client sends through an AF_PACKET socket because the interface has no
address while it acquires one, so the IP and UDP headers are built here.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from . import options as opt

BOOTREQUEST, BOOTREPLY = 1, 2
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
TYPE_NAMES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM"}
MAGIC = b"\x63\x82\x53\x63"
FLAG_BROADCAST = 0x8000
SERVER_PORT, CLIENT_PORT = 67, 68
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")

ZERO = ipaddress.IPv4Address(0)
BROADCAST = ipaddress.IPv4Address("255.255.255.255")


@dataclass
class Message:
    op: int = BOOTREQUEST
    xid: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: ipaddress.IPv4Address = ZERO
    yiaddr: ipaddress.IPv4Address = ZERO
    siaddr: ipaddress.IPv4Address = ZERO
    giaddr: ipaddress.IPv4Address = ZERO
    chaddr: bytes = b""
    options: dict[int, bytes] = field(default_factory=dict)

    @property
    def type(self) -> int:
        value = self.options.get(opt.MESSAGE_TYPE, b"")
        return value[0] if len(value) == 1 else 0

    def encode(self) -> bytes:
        head = _HEADER.pack(self.op, 1, 6, 0, self.xid, self.secs, self.flags, self.ciaddr.packed,
                            self.yiaddr.packed, self.siaddr.packed, self.giaddr.packed,
                            self.chaddr.ljust(16, b"\0"), b"", b"")
        body = bytearray(MAGIC)
        # The message type goes first: some servers look for it there.
        order = sorted(self.options, key=lambda c: (c != opt.MESSAGE_TYPE, 0))
        for code in order:
            value = self.options[code]
            for start in range(0, max(len(value), 1), 255):  # RFC 3396: long options repeat
                chunk = value[start:start + 255]
                body += bytes((code, len(chunk))) + chunk
        body.append(255)
        msg = head + bytes(body)
        return msg.ljust(300, b"\0")  # BOOTP minimum, which some relays insist on

    @classmethod
    def decode(cls, data: bytes) -> "Message":
        if len(data) < _HEADER.size + 4 or data[_HEADER.size:_HEADER.size + 4] != MAGIC:
            raise ValueError("not a DHCP message")
        (op, _htype, hlen, _hops, xid, secs, flags, ci, yi, si, gi, ch, _sname,
         _file) = _HEADER.unpack_from(data)
        options: dict[int, bytes] = {}
        i = _HEADER.size + 4
        while i < len(data):
            code = data[i]
            if code == 255:
                break
            if code == 0:
                i += 1
                continue
            if i + 1 >= len(data):
                raise ValueError("truncated option")
            length = data[i + 1]
            value = data[i + 2:i + 2 + length]
            if len(value) != length:
                raise ValueError(f"truncated option {code}")
            options[code] = options.get(code, b"") + value
            i += 2 + length
        v4 = ipaddress.IPv4Address
        return cls(op=op, xid=xid, secs=secs, flags=flags, ciaddr=v4(ci), yiaddr=v4(yi), siaddr=v4(si),
                   giaddr=v4(gi), chaddr=ch[:min(hlen, 16)], options=options)

    # ---- typed option reads -----------------------------------------------------

    def address(self, code: int) -> ipaddress.IPv4Address | None:
        value = self.options.get(code, b"")
        return ipaddress.IPv4Address(value[:4]) if len(value) >= 4 else None

    def addresses(self, code: int) -> list[ipaddress.IPv4Address]:
        value = self.options.get(code, b"")
        return [ipaddress.IPv4Address(value[i:i + 4]) for i in range(0, len(value) - len(value) % 4, 4)]

    def seconds(self, code: int) -> int | None:
        value = self.options.get(code, b"")
        return struct.unpack("!I", value[:4])[0] if len(value) >= 4 else None


def client_id(identifier: str) -> bytes:
    """Option 61 value: type 0 (not a hardware address) and the text."""
    return b"\0" + identifier.encode()


def option_bytes(code: int, text: str) -> bytes:
    """A `provide` value on the wire: text, except where the option carries addresses."""
    if code == opt.CLIENT_ID:
        return client_id(text)
    return text.encode()


# ---- routes ---------------------------------------------------------------------


def classless_routes(value: bytes) -> list[tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]]:
    """Option 121 (RFC 3442): width, significant destination octets, router."""
    routes = []
    i = 0
    while i < len(value):
        width = value[i]
        if width > 32:
            raise ValueError(f"option 121: invalid prefix length {width}")
        octets = (width + 7) // 8
        end = i + 1 + octets + 4
        if end > len(value):
            raise ValueError("option 121: truncated")
        dst = value[i + 1:i + 1 + octets].ljust(4, b"\0")
        gw = value[i + 1 + octets:end]
        routes.append((ipaddress.IPv4Network((dst, width), strict=False), ipaddress.IPv4Address(gw)))
        i = end
    return routes


def static_routes(value: bytes) -> list[tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]]:
    """Option 33: destination and router pairs; the destination's class gives the mask."""
    routes = []
    for i in range(0, len(value) - len(value) % 8, 8):
        dst = ipaddress.IPv4Address(value[i:i + 4])
        first = value[i]
        prefix = 8 if first < 128 else 16 if first < 192 else 24 if first < 224 else 32
        net = ipaddress.IPv4Network((dst, prefix), strict=False)
        if net.network_address != dst:
            net = ipaddress.IPv4Network((dst, 32))
        routes.append((net, ipaddress.IPv4Address(value[i + 4:i + 8])))
    return routes


def encode_classless_routes(routes: list[tuple[str, str]]) -> bytes:
    out = bytearray()
    for dst, gw in routes:
        net = ipaddress.IPv4Network(dst)
        octets = (net.prefixlen + 7) // 8
        out += bytes((net.prefixlen,)) + net.network_address.packed[:octets] + ipaddress.IPv4Address(gw).packed
    return bytes(out)


# ---- IPv4/UDP framing -------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(payload: bytes, src: ipaddress.IPv4Address, dst: ipaddress.IPv4Address,
          sport: int = CLIENT_PORT, dport: int = SERVER_PORT) -> bytes:
    """An IPv4 datagram carrying `payload` in UDP (what a SOCK_DGRAM packet socket sends)."""
    udp_len = 8 + len(payload)
    pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + payload
    csum = _checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0x10, 20 + udp_len, 0, 0, 64, 17, 0, src.packed, dst.packed)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    return ip + udp


def unframe(packet: bytes, dport: int = CLIENT_PORT) -> bytes | None:
    """The UDP payload of an IPv4 datagram to `dport`, or None.

    Checksums are not verified: packets crossing a veth may carry a partial
    checksum the kernel never completes for local delivery to a packet socket.
    """
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 17:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if struct.unpack("!H", packet[6:8])[0] & 0x3FFF:  # a fragment
        return None
    if len(packet) < ihl + 8:
        return None
    _sport, port, length = struct.unpack("!HHH", packet[ihl:ihl + 6])
    if port != dport or length < 8:
        return None
    return packet[ihl + 8:ihl + length]


def source_address(packet: bytes) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(packet[12:16])
