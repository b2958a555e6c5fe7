"""Qdiscs and filters: tbf and ingress qdiscs, u32 filters with a mirred redirect.

Only what the bandwidth plugin needs, with no `tc` binary: a node may not have
one. Messages are a `struct tcmsg` followed by TCA_KIND and TCA_OPTIONS.
"""
from __future__ import annotations

import errno as _errno
import struct

from ..record import Record
from .core import *  # noqa: F403 - the codec's constants and helpers

TYPE_CHECKING = False
if TYPE_CHECKING:
    from . import Netlink

RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC = 36, 37, 38
RTM_NEWTFILTER, RTM_DELTFILTER, RTM_GETTFILTER = 44, 45, 46

TCA_KIND, TCA_OPTIONS = 1, 2
TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFFFFF1
INGRESS_HANDLE = 0xFFFF0000  # "ffff:"
ETH_P_ALL = 0x0003

TCA_TBF_PARMS, TCA_TBF_RATE64, TCA_TBF_BURST = 1, 4, 6
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
_U32_KEY = struct.Struct("=IIii")  # mask, val, off, offmask
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


class Filter(Record):
    ifindex: int = 0
    parent: int = 0
    priority: int = 0
    protocol: int = 0
    kind: str = ""
    classid: int = 0
    redirect_to: list  # ifindexes of mirred egress redirects, in action order

    def __init__(self, **values: object) -> None:
        self.redirect_to = []
        super().__init__(**values)


def tcmsg(ifindex: int, handle: int = 0, parent: int = 0, info: int = 0) -> bytes:
    return _TCMSG.pack(0, ifindex, handle, parent, info)


def tbf_options(rate: int, limit: int, buffer: int) -> bytes:
    """rate in bytes/s (64-bit through TCA_TBF_RATE64), limit in bytes, buffer in ticks."""
    ratespec = _RATESPEC.pack(0, 0, 0, 0, 0, min(rate, 0xFFFFFFFF))
    parms = _TBF_QOPT.pack(ratespec, bytes(_RATESPEC.size), limit, buffer, 0)
    opts = attr(TCA_TBF_PARMS, parms)
    if rate >= 1 << 32:
        opts += attr(TCA_TBF_RATE64, struct.pack("=Q", rate))
    return opts


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
    """Qdisc and filter operations, a mixin of the Netlink client."""

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

    def filters(self: Netlink, ifindex: int, parent: int) -> list[Filter]:
        try:
            replies = self.request(RTM_GETTFILTER, 0, tcmsg(ifindex, 0, parent), f"list filters of link {ifindex}",
                                   dump=True)
        except NetlinkError as exc:
            if exc.errno in (_errno.ENOENT, _errno.ENODEV, _errno.EINVAL):
                return []
            raise
        return [_decode_filter(p) for t, p in replies if t == RTM_NEWTFILTER]
