"""Policy routing rules: the record, RTM_*RULE bodies (fib_rule_hdr + FRA_*) and their operations."""
from __future__ import annotations

import ipaddress

from ..record import Record
from . import Netlink
from .core import *  # noqa: F403 - the codec's constants and helpers

RTM_NEWRULE = 32
RTM_DELRULE = 33
RTM_GETRULE = 34

FRA_DST = 1
FRA_SRC = 2
FRA_IIFNAME = 3
FRA_GOTO = 4
FRA_PRIORITY = 6
FRA_FWMARK = 10
FRA_TABLE = 15
FRA_FWMASK = 16
FRA_OIFNAME = 17
FRA_PROTOCOL = 21

FR_ACT_TO_TBL = 1
FR_ACT_GOTO = 2
FR_ACT_NOP = 3
FR_ACT_BLACKHOLE = 6
FR_ACT_UNREACHABLE = 7
FR_ACT_PROHIBIT = 8

# struct fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action; flags.
FIB_RULE_HDR = struct.Struct("=BBBBBBBBI")


class Rule(Record):
    """One rule; `src`/`dst` None match every address, `priority` None lets the kernel pick."""

    family: int = AF_INET
    src: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    table: int = RT_TABLE_UNSPEC
    priority: int | None = None
    action: int = FR_ACT_TO_TBL
    iifname: str = ""
    oifname: str = ""
    fwmark: int = 0
    protocol: int = 0


def decode_rule(body: bytes) -> Rule:
    family, dst_len, src_len, _tos, table, _r1, _r2, action, _flags = FIB_RULE_HDR.unpack_from(body)
    attrs = parse_attrs(body, FIB_RULE_HDR.size)
    rule = Rule(family=family, action=action, table=u32(attrs[FRA_TABLE]) if FRA_TABLE in attrs else table)
    if FRA_SRC in attrs:
        rule.src = ipaddress.ip_network((ip_from_bytes(family, attrs[FRA_SRC]), src_len))
    if FRA_DST in attrs:
        rule.dst = ipaddress.ip_network((ip_from_bytes(family, attrs[FRA_DST]), dst_len))
    # The kernel leaves FRA_PRIORITY out of a dump when it is 0 (the local table's rule).
    rule.priority = u32(attrs[FRA_PRIORITY]) if FRA_PRIORITY in attrs else 0
    if FRA_IIFNAME in attrs:
        rule.iifname = cstr(attrs[FRA_IIFNAME])
    if FRA_OIFNAME in attrs:
        rule.oifname = cstr(attrs[FRA_OIFNAME])
    if FRA_FWMARK in attrs:
        rule.fwmark = u32(attrs[FRA_FWMARK])
    if FRA_PROTOCOL in attrs:
        rule.protocol = u8(attrs[FRA_PROTOCOL])
    return rule


def rule_body(rule: Rule) -> bytes:
    """The request for `rule`: its selectors and action; the table always as FRA_TABLE too."""
    src_len = rule.src.prefixlen if rule.src is not None else 0
    dst_len = rule.dst.prefixlen if rule.dst is not None else 0
    table = rule.table if rule.table < 256 else RT_TABLE_UNSPEC
    body = FIB_RULE_HDR.pack(rule.family, dst_len, src_len, 0, table, 0, 0, rule.action, 0)
    if rule.src is not None:
        body += attr(FRA_SRC, rule.src.network_address.packed)
    if rule.dst is not None:
        body += attr(FRA_DST, rule.dst.network_address.packed)
    if rule.priority is not None:
        body += attr_u32(FRA_PRIORITY, rule.priority)
    if rule.table:
        body += attr_u32(FRA_TABLE, rule.table)
    if rule.iifname:
        body += attr_str(FRA_IIFNAME, rule.iifname)
    if rule.oifname:
        body += attr_str(FRA_OIFNAME, rule.oifname)
    if rule.fwmark:
        body += attr_u32(FRA_FWMARK, rule.fwmark)
    if rule.protocol:
        body += attr_u8(FRA_PROTOCOL, rule.protocol)
    return body


def _describe(rule: Rule) -> str:
    text = f"from {rule.src or 'all'}"
    if rule.dst is not None:
        text += f" to {rule.dst}"
    return text + f" lookup {rule.table}"


def source_rule(ip, table: int) -> Rule:
    """`from <ip> lookup <table>`: the address alone (/32 or /128), as source-based routing needs."""
    ip = ipaddress.ip_address(ip)
    return Rule(family=family_of(ip), src=ipaddress.ip_network(ip), table=table)


class RuleOps:
    """Rule operations (a mixin over core.Socket; see RuleNetlink)."""

    def rules(self, family: int | None = None) -> list[Rule]:
        """Every rule of `family` (default: IPv4 and IPv6)."""
        out: list[Rule] = []
        for fam in (family,) if family else (AF_INET, AF_INET6):
            body = FIB_RULE_HDR.pack(fam, 0, 0, 0, 0, 0, 0, 0, 0)
            out += [decode_rule(p) for t, p in self._dump(RTM_GETRULE, body, "list rules") if t == RTM_NEWRULE]
        return out

    def add_rule(self, rule: Rule) -> None:
        self._ack(RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, rule_body(rule), f"add rule {_describe(rule)}")

    def delete_rule(self, rule: Rule) -> None:
        """Delete the first rule matching `rule`'s selectors, action, table and (if set) priority."""
        self._ack(RTM_DELRULE, 0, rule_body(rule), f"delete rule {_describe(rule)}")


class RuleNetlink(RuleOps, Netlink):
    """`Netlink` with policy routing rules (sbr's client)."""
