"""Addresses: the record, RTM_*ADDR bodies and their operations."""
from __future__ import annotations

import ipaddress

from ..record import Record
from .core import *  # noqa: F403 - the codec's constants and helpers

RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22

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

IFADDRMSG = struct.Struct("=BBBBI")


class Address(Record):
    index: int = 0
    address: ipaddress.IPv4Interface | ipaddress.IPv6Interface
    scope: int = RT_SCOPE_UNIVERSE
    flags: int = 0

    @property
    def family(self) -> int:
        return AF_INET if self.address.version == 4 else AF_INET6


def decode_address(body: bytes) -> Address:
    family, prefixlen, flags8, scope, index = IFADDRMSG.unpack_from(body)
    attrs = parse_attrs(body, IFADDRMSG.size)
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
    # point-to-point links, and the only one present for IPv6.
    raw = attrs.get(IFA_LOCAL) or attrs[IFA_ADDRESS]
    ip = ip_from_bytes(family, raw)
    flags = u32(attrs[IFA_FLAGS]) if IFA_FLAGS in attrs else flags8
    return Address(index=index, address=ipaddress.ip_interface((ip, prefixlen)), scope=scope, flags=flags)


class AddressOps:
    """Address operations of the `Netlink` client (a mixin over core.Socket)."""

    def addresses(self, index: int | None = None, family: int | None = None) -> list[Address]:
        body = IFADDRMSG.pack(family or AF_UNSPEC, 0, 0, 0, 0)
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
        family = family_of(iface)
        raw = iface.ip.packed
        scope = RT_SCOPE_HOST if iface.ip.is_loopback else RT_SCOPE_UNIVERSE
        body = IFADDRMSG.pack(family, iface.network.prefixlen, flags & 0xFF, scope, index)
        body += attr(IFA_LOCAL, raw) + attr(IFA_ADDRESS, raw)
        if family == AF_INET and iface.network.prefixlen < 31:
            body += attr(IFA_BROADCAST, iface.network.broadcast_address.packed)
        if flags > 0xFF:
            body += attr_u32(IFA_FLAGS, flags)
        mode = NLM_F_CREATE | (NLM_F_REPLACE if replace else NLM_F_EXCL)
        self._ack(RTM_NEWADDR, mode, body, f"add address {iface} on link {index}")

    def delete_address(self, index: int, address) -> None:
        iface = ipaddress.ip_interface(address)
        family = family_of(iface)
        body = IFADDRMSG.pack(family, iface.network.prefixlen, 0, 0, index) + attr(IFA_LOCAL, iface.ip.packed)
        self._ack(RTM_DELADDR, 0, body, f"delete address {iface} on link {index}")
