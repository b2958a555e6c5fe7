"""Routes: the record, RTM_*ROUTE bodies and their operations."""
from __future__ import annotations

import ipaddress

from ..record import Record
from .core import *  # noqa: F403 - the codec's constants and helpers

RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26

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

RTN_UNSPEC = 0
RTN_UNICAST = 1
RTN_LOCAL = 2

RTPROT_KERNEL = 2
RTPROT_BOOT = 3
RTPROT_STATIC = 4

RTMSG = struct.Struct("=BBBBBBBBI")


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


def decode_route(body: bytes) -> Route:
    family, dst_len, _src_len, _tos, table, proto, scope, rtype, _flags = RTMSG.unpack_from(body)
    attrs = parse_attrs(body, RTMSG.size)
    if RTA_DST in attrs:
        dst_ip = ip_from_bytes(family, attrs[RTA_DST])
    else:
        dst_ip = ipaddress.IPv4Address(0) if family == AF_INET else ipaddress.IPv6Address(0)
    route = Route(
        dst=ipaddress.ip_network((dst_ip, dst_len)),
        table=u32(attrs[RTA_TABLE]) if RTA_TABLE in attrs else table,
        scope=scope,
        proto=proto,
        type=rtype,
    )
    if RTA_GATEWAY in attrs:
        route.gw = ip_from_bytes(family, attrs[RTA_GATEWAY])
    elif RTA_VIA in attrs:
        via = attrs[RTA_VIA]
        route.gw = ip_from_bytes(u16(via), via[2:])
    if RTA_OIF in attrs:
        route.oif = u32(attrs[RTA_OIF])
    if RTA_PRIORITY in attrs:
        route.priority = u32(attrs[RTA_PRIORITY])
    if RTA_PREFSRC in attrs:
        route.src = ip_from_bytes(family, attrs[RTA_PREFSRC])
    if RTA_METRICS in attrs:
        metrics = parse_attrs(attrs[RTA_METRICS])
        if RTAX_MTU in metrics:
            route.mtu = u32(metrics[RTAX_MTU])
        if RTAX_ADVMSS in metrics:
            route.advmss = u32(metrics[RTAX_ADVMSS])
    return route


class RouteOps:
    """Route operations of the `Netlink` client (a mixin over core.Socket)."""

    def routes(self, family: int | None = None, table: int | None = RT_TABLE_MAIN) -> list[Route]:
        body = RTMSG.pack(family or AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0)
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
        family = family_of(net)
        body = RTMSG.pack(family, net.prefixlen, 0, 0, table if table < 256 else RT_TABLE_UNSPEC, proto, scope, rtype, 0)
        if net.prefixlen:
            body += attr(RTA_DST, net.network_address.packed)
        body += attr_u32(RTA_TABLE, table)
        what = str(net)
        if gw is not None:
            gw_ip = ipaddress.ip_address(gw)
            if gw_ip.version == net.version:
                body += attr(RTA_GATEWAY, gw_ip.packed)
            else:
                body += attr(RTA_VIA, struct.pack("=H", family_of(gw_ip)) + gw_ip.packed)
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

    def put_route(self, route: Route, *, table: int | None = None, replace: bool = True) -> None:
        """Add a copy of a listed route (into `table` when given), keeping its protocol, scope,
        source, metric and metrics; replacing by default, so copying twice is harmless."""
        self.add_route(route.dst, gw=route.gw, oif=route.oif, scope=route.scope, src=route.src,
                       table=route.table if table is None else table, priority=route.priority,
                       mtu=route.mtu, advmss=route.advmss, proto=route.proto, replace=replace)

    def remove_route(self, route: Route) -> None:
        """Delete exactly a listed route (destination, gateway, device, table and metric)."""
        self.delete_route(route.dst, gw=route.gw, oif=route.oif, table=route.table, priority=route.priority)

    def delete_route(self, dst, *, gw=None, oif: int = 0, table: int = RT_TABLE_MAIN, priority: int | None = None) -> None:
        dst = _default_dst(dst, gw)
        # Scope NOWHERE, type and protocol 0: match whatever the route was added with.
        body, what = self._route_body(dst, gw, oif, table, RTN_UNSPEC, 0, RT_SCOPE_NOWHERE)
        if priority is not None:
            body += attr_u32(RTA_PRIORITY, priority)
        self._ack(RTM_DELROUTE, 0, body, f"delete route {what}")

def _default_dst(dst, gw):
    if dst in (None, "default"):
        gw_ip = ipaddress.ip_address(gw) if gw is not None else None
        return "::/0" if gw_ip is not None and gw_ip.version == 6 else "0.0.0.0/0"
    return dst
