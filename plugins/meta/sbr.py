"""sbr: source-based routing for the addresses an earlier plugin gave CNI_IFNAME.

Chained after a main plugin. Without `table`, each address gets a routing
table of its own (the first free one from 100 on) holding the interface's
routes, a default route via the address's gateway, and a rule
`from <address> lookup <table>`; the interface's routes then leave the main
table, so traffic leaves by this interface only when it comes from its
addresses. With `table`, only the rules are added, into that table (whoever
configured the table fills it). DEL removes the rules and the routes in our
tables; what is already gone is success. CHECK finds the rules and tables.
"""
from __future__ import annotations

import ipaddress

from cni.conf import Fields, NetConf
from cni.errors import INTERNAL, CNIError, invalid_config
from cni.link import RTPROT_BOOT, require_link
from cni.netlink import RT_TABLE_MAIN, NetlinkError, Route
from cni.netlink.rule import RuleNetlink, source_rule
from cni.netns import NetnsNotFound, NotANetns, locked
from cni.rollback import Rollback
from cni.skel import Call, plugin
from cni.types import IPConfig, Result

FIRST_TABLE = 100
# main, default and local are never ours to flush, even when a rule points there.
RESERVED_TABLES = frozenset({0, 253, 254, 255})


class SbrConf(NetConf):
    table: int | None = None  # None: a table of our own per address, routes moved into it

    @classmethod
    def load(cls, call: Call) -> "SbrConf":
        f = Fields(call.config)
        table = f.number("table", minimum=1, maximum=2**32 - 1) if f.has("table") else None
        return cls(**cls.common(call.config, call.cni_version), table=table)


def add(call: Call) -> Result:
    conf = SbrConf.load(call)
    prev = conf.require_prev_result()
    ips = addresses(prev, call.ifname)
    with locked(call.netns), RuleNetlink(call.netns) as nl, Rollback() as undo:
        link = require_link(nl, call.ifname, call.netns)
        if conf.table is not None:
            for ip in ips:
                add_rule(nl, ip, conf.table, undo)
        else:
            route_by_source(nl, link.index, ips, undo)
    return prev


def addresses(prev: Result, ifname: str) -> list[IPConfig]:
    ips = prev.ips_of(ifname)
    if not ips:
        raise invalid_config(f'no IP addresses for interface "{ifname}" in prevResult')
    return ips


def add_rule(nl: RuleNetlink, ip: IPConfig, table: int, undo: Rollback) -> None:
    rule = source_rule(ip.address.ip, table)
    try:
        nl.add_rule(rule)
    except NetlinkError as exc:
        raise CNIError(INTERNAL, f"failed to add rule from {ip.address.ip} lookup {table}: {exc}") from None
    undo.push(lambda: nl.delete_rule(rule), f"delete rule from {ip.address.ip}", stage="rule")


def route_by_source(nl: RuleNetlink, oif: int, ips: list[IPConfig], undo: Rollback) -> None:
    """One table per address: rule, default route via its gateway, and the interface's routes.

    The routes leave the main table only at the end: until then a gateway in a
    new table is still reachable through the main table's subnet route.
    """
    used = {rule.table for rule in nl.rules()} | {route.table for route in nl.routes(table=None)}
    moving = [r for r in nl.routes(table=RT_TABLE_MAIN) if r.oif == oif]
    table = next_free_table(used, FIRST_TABLE)
    for ip in ips:
        add_rule(nl, ip, table, undo)
        undo.push(lambda t=table: delete_routes_on(nl, t, oif), f"flush table {table}")
        try:
            if ip.gateway is not None:
                default = ipaddress.ip_network((0, 0) if ip.family == 4 else "::/0")
                nl.add_route(default, gw=ip.gateway, oif=oif, table=table, proto=RTPROT_BOOT)
            for route in moving:
                if belongs_to(route, ip.address):
                    nl.put_route(route, table=table)
        except NetlinkError as exc:
            raise CNIError(INTERNAL, f"failed to route {ip.address.ip} by source in table {table}: {exc}") from None
        used.add(table)
        table = next_free_table(used, table + 1)
    undo.push(lambda: [nl.put_route(r) for r in moving], "put the routes back into the main table")
    for route in moving:
        try:
            nl.remove_route(route)
        except NetlinkError as exc:
            if not exc.gone:
                raise CNIError(INTERNAL, f"failed to delete route {route.dst} from the main table: {exc}") from None


def next_free_table(used: set[int], start: int) -> int:
    table = start
    while table in used:
        table += 1
    return table


def belongs_to(route: Route, address) -> bool:
    """Whether `route` goes into `address`'s table: its source or gateway is in the address's
    subnet, or it names neither (a plain on-link route, which every table gets)."""
    if route.src is None and route.gw is None:
        return True
    return any(ip is not None and ip.version == address.version and ip in address.network
               for ip in (route.src, route.gw))


def delete_routes_on(nl: RuleNetlink, table: int, oif: int) -> None:
    """Every route of `table` through link `oif`; gone ones are fine."""
    for route in nl.routes(table=table):
        if route.oif == oif:
            try:
                nl.remove_route(route)
            except NetlinkError as exc:
                if not exc.gone:
                    raise


def delete(call: Call) -> None:
    conf = SbrConf.load(call)
    if not call.netns:
        return  # the rules and tables live in the container netns and go with it
    try:
        with locked(call.netns), RuleNetlink(call.netns) as nl:
            remove_source_routing(nl, call.ifname, conf)
    except (NetnsNotFound, NotANetns):
        return


def remove_source_routing(nl: RuleNetlink, ifname: str, conf: SbrConf) -> None:
    """Our rules are those from an address of `ifname`, found on the link or in prevResult
    (the link may be gone, its rules not); in default mode their tables' routes on it go too."""
    link = nl.get_link(ifname)
    sources = set()
    if link is not None:
        sources |= {a.address.ip for a in nl.addresses(link.index)}
    if conf.prev_result is not None:
        sources |= {ip.address.ip for ip in conf.prev_result.ips_of(ifname)}
    tables = set()
    for rule in nl.rules():
        if rule.src is None or rule.src.prefixlen != rule.src.max_prefixlen or rule.src.network_address not in sources:
            continue
        if conf.table is not None and rule.table != conf.table:
            continue
        try:
            nl.delete_rule(rule)
        except NetlinkError as exc:
            if not exc.gone:
                raise CNIError(INTERNAL, f"failed to delete rule from {rule.src}: {exc}") from None
        tables.add(rule.table)
    if conf.table is None and link is not None:
        for table in tables - RESERVED_TABLES:
            delete_routes_on(nl, table, link.index)


def check(call: Call) -> None:
    conf = SbrConf.load(call)
    ips = addresses(conf.require_prev_result(), call.ifname)
    with RuleNetlink(call.netns) as nl:
        link = require_link(nl, call.ifname, call.netns)
        rules = nl.rules()
        for ip in ips:
            host = ipaddress.ip_network(ip.address.ip)
            tables = [r.table for r in rules if r.src == host and (conf.table is None or r.table == conf.table)]
            if not tables:
                raise CNIError(INTERNAL, f"no rule routes traffic from {ip.address.ip}")
            if conf.table is None and not any(r.oif == link.index for t in tables for r in nl.routes(table=t)):
                raise CNIError(INTERNAL, f'table {tables[0]} for {ip.address.ip} has no route via "{call.ifname}"')


main = plugin("sbr", add=add, delete=delete, check=check)
