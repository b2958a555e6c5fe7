"""Qdiscs, classes and filters: tbf, htb (with classes) and ingress qdiscs; u32 filters that
redirect (mirred) or classify by address.

Only what the bandwidth plugin needs, with no `tc` binary: a node may not have
one. Messages are a `struct tcmsg` followed by TCA_KIND and TCA_OPTIONS.
"""
from __future__ import annotations

import errno as _errno

from ..record import Record
from . import Netlink
from .core import *  # noqa: F403 - the codec's constants and helpers

RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC = 36, 37, 38
RTM_NEWTCLASS, RTM_DELTCLASS, RTM_GETTCLASS = 40, 41, 42
RTM_NEWTFILTER, RTM_DELTFILTER, RTM_GETTFILTER = 44, 45, 46

TCA_KIND, TCA_OPTIONS = 1, 2
TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFFFFF1
INGRESS_HANDLE = 0xFFFF0000  # "ffff:"
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD

TCA_TBF_PARMS, TCA_TBF_RATE64, TCA_TBF_BURST = 1, 4, 6
TCA_HTB_PARMS, TCA_HTB_INIT, TCA_HTB_RATE64, TCA_HTB_CEIL64 = 1, 2, 6, 7
TCA_U32_CLASSID, TCA_U32_SEL, TCA_U32_ACT = 1, 5, 7
TC_U32_TERMINAL = 1
TCA_ACT_KIND, TCA_ACT_OPTIONS = 1, 2
TCA_MIRRED_PARMS = 2
TCA_EGRESS_REDIR = 1
TC_ACT_STOLEN = 4

_TCMSG = struct.Struct("=BxxxiIII")  # family, ifindex, handle, parent, info
_RATESPEC = struct.Struct("=BBHhHI")  # cell_log, linklayer, overhead, cell_align, mpu, rate
_TBF_QOPT = struct.Struct("=12s12sIII")  # rate, peakrate, limit, buffer, mtu
_U32_SEL = struct.Struct("=BBBxHHhhI")  # flags, offshift, nkeys, offmask, off, offoff, hoff, hmask
_U32_KEY = struct.Struct("=IIii")  # mask, val (both big-endian on the wire), off, offmask
_HTB_GLOB = struct.Struct("=IIIII")  # version, rate2quantum, defcls, debug, direct_pkts
_HTB_OPT = struct.Struct("=12s12sIIIII")  # rate, ceil, buffer, cbuffer, quantum, level, prio
_MIRRED = struct.Struct("=IIiiiiI")  # index, capab, action, refcnt, bindcnt, eaction, ifindex


def make_handle(major: int, minor: int) -> int:
    return (major << 16) | minor


class Qdisc(Record):
    ifindex: int = 0
    handle: int = 0
    parent: int = 0
    kind: str = ""
    rate: int = 0  # tbf: bytes per second
    limit: int = 0  # tbf: bytes
    buffer: int = 0  # tbf: ticks
    default_class: int = 0  # htb: minor of the class for unclassified traffic


class TrafficClass(Record):
    """An htb class: rates in bytes per second, buffers in ticks."""

    ifindex: int = 0
    handle: int = 0
    parent: int = 0
    kind: str = ""
    rate: int = 0
    ceil: int = 0
    buffer: int = 0
    cbuffer: int = 0


class Filter(Record):
    ifindex: int = 0
    parent: int = 0
    priority: int = 0
    protocol: int = 0
    kind: str = ""
    classid: int = 0
    keys: list  # u32 (mask, value, offset) triples, mask and value as host integers
    redirect_to: list  # ifindexes of mirred egress redirects, in action order

    def __init__(self, **values: object) -> None:
        self.redirect_to, self.keys = [], []
        super().__init__(**values)


def tcmsg(ifindex: int, handle: int = 0, parent: int = 0, info: int = 0) -> bytes:
    return _TCMSG.pack(0, ifindex, handle, parent, info)


def _ratespec(rate: int) -> bytes:
    return _RATESPEC.pack(0, 0, 0, 0, 0, min(rate, 0xFFFFFFFF))


def _rate64(kind: int, rate: int) -> bytes:
    return attr(kind, struct.pack("=Q", rate)) if rate >= 1 << 32 else b""


def tbf_options(rate: int, limit: int, buffer: int) -> bytes:
    """rate in bytes/s (64-bit through TCA_TBF_RATE64), limit in bytes, buffer in ticks."""
    parms = _TBF_QOPT.pack(_ratespec(rate), bytes(_RATESPEC.size), limit, buffer, 0)
    return attr(TCA_TBF_PARMS, parms) + _rate64(TCA_TBF_RATE64, rate)


def htb_class_options(rate: int, ceil: int, buffer: int, cbuffer: int) -> bytes:
    parms = _HTB_OPT.pack(_ratespec(rate), _ratespec(ceil), buffer, cbuffer, 0, 0, 0)
    return attr(TCA_HTB_PARMS, parms) + _rate64(TCA_HTB_RATE64, rate) + _rate64(TCA_HTB_CEIL64, ceil)


def _decode_class(body: bytes) -> TrafficClass:
    _fam, ifindex, handle, parent, _info = _TCMSG.unpack_from(body)
    attrs = parse_attrs(body, _TCMSG.size)
    c = TrafficClass(ifindex=ifindex, handle=handle, parent=parent,
                     kind=attrs.get(TCA_KIND, b"").rstrip(b"\0").decode())
    opts = parse_attrs(attrs.get(TCA_OPTIONS, b""))
    if c.kind == "htb" and TCA_HTB_PARMS in opts:
        rate, ceil, c.buffer, c.cbuffer, *_rest = _HTB_OPT.unpack_from(opts[TCA_HTB_PARMS])
        c.rate, c.ceil = _RATESPEC.unpack(rate)[5], _RATESPEC.unpack(ceil)[5]
        if TCA_HTB_RATE64 in opts:
            c.rate = struct.unpack("=Q", opts[TCA_HTB_RATE64][:8])[0]
        if TCA_HTB_CEIL64 in opts:
            c.ceil = struct.unpack("=Q", opts[TCA_HTB_CEIL64][:8])[0]
    return c


def _decode_qdisc(body: bytes) -> Qdisc:
    _fam, ifindex, handle, parent, _info = _TCMSG.unpack_from(body)
    attrs = parse_attrs(body, _TCMSG.size)
    q = Qdisc(ifindex=ifindex, handle=handle, parent=parent,
              kind=attrs.get(TCA_KIND, b"").rstrip(b"\0").decode())
    if q.kind == "tbf" and TCA_OPTIONS in attrs:
        opts = parse_attrs(attrs[TCA_OPTIONS])
        if TCA_TBF_PARMS in opts:
            ratespec, _peak, q.limit, q.buffer, _mtu = _TBF_QOPT.unpack_from(opts[TCA_TBF_PARMS])
            q.rate = _RATESPEC.unpack(ratespec)[5]
        if TCA_TBF_RATE64 in opts:
            q.rate = struct.unpack("=Q", opts[TCA_TBF_RATE64][:8])[0]
    if q.kind == "htb" and TCA_OPTIONS in attrs:
        glob = parse_attrs(attrs[TCA_OPTIONS]).get(TCA_HTB_INIT)
        if glob and len(glob) >= _HTB_GLOB.size:
            q.default_class = _HTB_GLOB.unpack_from(glob)[2]
    return q


def _decode_filter(body: bytes) -> Filter:
    _fam, ifindex, _handle, parent, info = _TCMSG.unpack_from(body)
    attrs = parse_attrs(body, _TCMSG.size)
    f = Filter(ifindex=ifindex, parent=parent, priority=info >> 16,
               protocol=struct.unpack("!H", struct.pack("=H", info & 0xFFFF))[0],
               kind=attrs.get(TCA_KIND, b"").rstrip(b"\0").decode())
    opts = parse_attrs(attrs.get(TCA_OPTIONS, b""))
    if TCA_U32_CLASSID in opts:
        f.classid = struct.unpack("=I", opts[TCA_U32_CLASSID][:4])[0]
    sel = opts.get(TCA_U32_SEL, b"")
    if len(sel) >= _U32_SEL.size:
        nkeys = sel[2]
        for i in range(nkeys):
            at = _U32_SEL.size + i * _U32_KEY.size
            if len(sel) >= at + _U32_KEY.size:
                mask, value = struct.unpack_from("!II", sel, at)
                f.keys.append((mask, value, struct.unpack_from("=i", sel, at + 8)[0]))
    for _order, action in iter_attrs(opts.get(TCA_U32_ACT, b"")):
        act = parse_attrs(action)
        if act.get(TCA_ACT_KIND, b"").rstrip(b"\0") != b"mirred":
            continue
        parms = parse_attrs(act.get(TCA_ACT_OPTIONS, b"")).get(TCA_MIRRED_PARMS)
        if parms and len(parms) >= _MIRRED.size:
            fields = _MIRRED.unpack_from(parms)
            if fields[5] == TCA_EGRESS_REDIR:
                f.redirect_to.append(fields[6])
    return f


class QdiscOps:
    """Qdisc and filter operations (a mixin over core.Socket; see QdiscNetlink)."""

    def qdiscs(self: Netlink, ifindex: int = 0) -> list[Qdisc]:
        """Every qdisc, or those of one link."""
        found = [_decode_qdisc(p) for t, p in self.request(RTM_GETQDISC, 0, tcmsg(0), "list qdiscs", dump=True)
                 if t == RTM_NEWQDISC]
        return [q for q in found if not ifindex or q.ifindex == ifindex]

    def add_tbf(self: Netlink, ifindex: int, rate: int, limit: int, buffer: int) -> None:
        """tc qdisc add dev IF root handle 1: tbf ..."""
        body = tcmsg(ifindex, make_handle(1, 0), TC_H_ROOT) + attr_str(TCA_KIND, "tbf") \
            + attr(TCA_OPTIONS, tbf_options(rate, limit, buffer))
        self.request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, body, f"add tbf qdisc on link {ifindex}")

    def add_ingress_qdisc(self: Netlink, ifindex: int) -> None:
        """tc qdisc add dev IF handle ffff: ingress"""
        body = tcmsg(ifindex, INGRESS_HANDLE, TC_H_INGRESS) + attr_str(TCA_KIND, "ingress") + attr(TCA_OPTIONS, b"")
        self.request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, body, f"add ingress qdisc on link {ifindex}")

    def delete_qdisc(self: Netlink, ifindex: int, handle: int, parent: int) -> bool:
        """Remove a qdisc (its filters go with it); False when it was not there."""
        try:
            self.request(RTM_DELQDISC, 0, tcmsg(ifindex, handle, parent), f"delete qdisc on link {ifindex}")
        except NetlinkError as exc:
            if exc.errno in (_errno.ENOENT, _errno.ENODEV, _errno.EINVAL):
                return False
            raise
        return True

    def add_redirect_filter(self: Netlink, ifindex: int, parent: int, target_ifindex: int, *,
                            priority: int = 1, classid: int = make_handle(1, 1)) -> None:
        """tc filter add dev IF parent P protocol all prio 1 u32 match u32 0 0 flowid 1:1
        action mirred egress redirect dev TARGET"""
        sel = _U32_SEL.pack(TC_U32_TERMINAL, 0, 1, 0, 0, 0, 0, 0) + _U32_KEY.pack(0, 0, 0, 0)
        mirred = _MIRRED.pack(0, 0, TC_ACT_STOLEN, 0, 0, TCA_EGRESS_REDIR, target_ifindex)
        action = attr_str(TCA_ACT_KIND, "mirred") + attr(TCA_ACT_OPTIONS, attr(TCA_MIRRED_PARMS, mirred))
        opts = attr_u32(TCA_U32_CLASSID, classid) + attr(TCA_U32_SEL, sel) + attr(TCA_U32_ACT, attr(1, action))
        protocol = struct.unpack("=H", struct.pack("!H", ETH_P_ALL))[0]
        body = tcmsg(ifindex, 0, parent, (priority << 16) | protocol) + attr_str(TCA_KIND, "u32") + attr(TCA_OPTIONS, opts)
        self.request(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL, body, f"add redirect filter on link {ifindex}")

    def add_htb(self: Netlink, ifindex: int, default_class: int) -> None:
        """tc qdisc add dev IF root handle 1: htb default MINOR (r2q 10)"""
        glob = _HTB_GLOB.pack(3, 10, default_class, 0, 0)
        body = tcmsg(ifindex, make_handle(1, 0), TC_H_ROOT) + attr_str(TCA_KIND, "htb") \
            + attr(TCA_OPTIONS, attr(TCA_HTB_INIT, glob))
        self.request(RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, body, f"add htb qdisc on link {ifindex}")

    def add_htb_class(self: Netlink, ifindex: int, classid: int, parent: int, rate: int, ceil: int,
                      buffer: int = 0, cbuffer: int = 0) -> None:
        """tc class add dev IF parent P classid C htb rate R ceil C (rates in bytes/s, buffers in ticks)"""
        body = tcmsg(ifindex, classid, parent) + attr_str(TCA_KIND, "htb") \
            + attr(TCA_OPTIONS, htb_class_options(rate, ceil, buffer, cbuffer))
        self.request(RTM_NEWTCLASS, NLM_F_CREATE | NLM_F_EXCL, body, f"add htb class on link {ifindex}")

    def classes(self: Netlink, ifindex: int) -> list[TrafficClass]:
        replies = self.request(RTM_GETTCLASS, 0, tcmsg(ifindex), f"list classes of link {ifindex}", dump=True)
        return [_decode_class(p) for t, p in replies if t == RTM_NEWTCLASS]

    def add_u32_classifier(self: Netlink, ifindex: int, parent: int, priority: int, protocol: int, classid: int,
                           keys: list) -> None:
        """tc filter add dev IF parent P protocol PROTO prio N u32 match ... flowid C; `keys` are
        (mask, value, offset) with mask and value as host integers (sent big-endian)."""
        sel = _U32_SEL.pack(TC_U32_TERMINAL, 0, len(keys), 0, 0, 0, 0, 0) + b"".join(
            struct.pack("!II", mask, value) + struct.pack("=ii", offset, 0) for mask, value, offset in keys)
        opts = attr_u32(TCA_U32_CLASSID, classid) + attr(TCA_U32_SEL, sel)
        proto = struct.unpack("=H", struct.pack("!H", protocol))[0]
        body = tcmsg(ifindex, 0, parent, (priority << 16) | proto) + attr_str(TCA_KIND, "u32") + attr(TCA_OPTIONS, opts)
        self.request(RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_EXCL, body, f"add u32 filter on link {ifindex}")

    def filters(self: Netlink, ifindex: int, parent: int) -> list[Filter]:
        try:
            replies = self.request(RTM_GETTFILTER, 0, tcmsg(ifindex, 0, parent), f"list filters of link {ifindex}",
                                   dump=True)
        except NetlinkError as exc:
            if exc.errno in (_errno.ENOENT, _errno.ENODEV, _errno.EINVAL):
                return []
            raise
        return [_decode_filter(p) for t, p in replies if t == RTM_NEWTFILTER]


class QdiscNetlink(QdiscOps, Netlink):
    """`Netlink` with qdiscs, classes and filters (the bandwidth plugin's client)."""
