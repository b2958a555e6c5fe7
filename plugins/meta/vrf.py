"""vrf: put the interface an earlier plugin made into a VRF of the container netns.

Chained after a main plugin. ADD creates the VRF `vrfname` (routing table
`table`, or the first table no VRF of the netns uses, from 1 on) or reuses
it, and enslaves CNI_IFNAME. Enslaving cycles the interface: the kernel drops
its IPv6 addresses (unless keep_addr_on_down) and every route through it but
the connected ones, which come back in the VRF's table. ADD puts the global
IPv6 addresses back and every dropped route of the main table, the default
route included, into the VRF's table. DEL releases the interface and deletes
the VRF once no interface is left in it. CHECK finds the interface in the VRF
and the VRF on its table.
"""
from __future__ import annotations

from cni.conf import Fields, NetConf
from cni.errors import INTERNAL, CNIError, invalid_config
from cni.link import require_link, wait_ipv6_settled
from cni.netlink import (
    AF_INET6,
    IFA_F_NODAD,
    IFA_F_NOPREFIXROUTE,
    RT_SCOPE_UNIVERSE,
    RT_TABLE_MAIN,
    RTPROT_KERNEL,
    Link,
    Netlink,
    NetlinkError,
)
from cni.netns import NetnsNotFound, NotANetns
from cni.record import Record
from cni.rollback import Rollback
from cni.skel import Call, plugin, validate_ifname
from cni.types import Result



class VrfConf(NetConf):
    vrf_name: str = ""
    table: int = 0  # 0: the first table no VRF of the netns uses

    @classmethod
    def load(cls, call: Call) -> "VrfConf":
        f = Fields(call.config)
        conf = cls(**cls.common(call.config, call.cni_version), vrf_name=f.text("vrfname"),
                   table=f.number("table", minimum=0, maximum=2**32 - 1))
        if not conf.vrf_name:
            raise invalid_config("configuration is expected to have a valid vrf name", 'set "vrfname"')
        try:
            validate_ifname(conf.vrf_name)
        except CNIError as exc:
            raise invalid_config(f'invalid vrfname "{conf.vrf_name}"', exc.msg) from None
        return conf


class Dropped(Record):
    """What enslaving an interface takes from it: global IPv6 addresses and non-connected routes."""

    addresses: list
    routes: list


def add(call: Call) -> Result:
    conf = VrfConf.load(call)
    prev = conf.require_prev_result()
    with Netlink(call.netns) as nl, Rollback() as undo:
        link = require_link(nl, call.ifname, call.netns)
        if link.master:
            master = nl.get_link_by_index(link.master)
            raise CNIError(INTERNAL, f'interface "{call.ifname}" already has a master: '
                                     f'{master.name if master else link.master}')
        vrf = find_vrf(nl, conf.vrf_name)
        if vrf is None:
            vrf = create_vrf(nl, conf.vrf_name, conf.table or free_table(nl))
            undo.push(lambda: nl.delete_link(vrf.index, missing_ok=True), f'delete vrf "{conf.vrf_name}"', stage="vrf")
        elif conf.table and vrf.info.get("table") != conf.table:
            raise invalid_config(f'VRF "{conf.vrf_name}" already exists with routing table {vrf.info.get("table")}',
                                 f"configured table: {conf.table}")
        dropped = what_enslaving_drops(nl, link)
        try:
            nl.set_link(link.index, master=vrf.index)
        except NetlinkError as exc:
            raise CNIError(INTERNAL, f'could not set VRF "{conf.vrf_name}" as master of "{call.ifname}": {exc}') from None
        undo.push(lambda: release(nl, link.index, dropped), f'release "{call.ifname}"', stage="enslaved")
        restore(nl, link.index, dropped, vrf.info["table"], settle=lambda: wait_ipv6_settled(call.netns, call.ifname))
    return prev


def find_vrf(nl: Netlink, name: str) -> Link | None:
    link = nl.get_link(name)
    if link is not None and link.kind != "vrf":
        raise CNIError(INTERNAL, f'"{name}" exists and is not a VRF (kind "{link.kind}")')
    return link


def free_table(nl: Netlink) -> int:
    """The first table from 1 on that no VRF uses (as the reference picks it)."""
    taken = {link.info.get("table") for link in nl.links() if link.kind == "vrf"}
    table = 1
    while table in taken:
        table += 1
    return table


def create_vrf(nl: Netlink, name: str, table: int) -> Link:
    try:
        nl.create_vrf(name, table)
    except NetlinkError as exc:
        raise CNIError(INTERNAL, f'could not add VRF "{name}": {exc}') from None
    vrf = require_link(nl, name)
    try:
        nl.set_link(vrf.index, up=True)
    except NetlinkError as exc:
        nl.delete_link(vrf.index, missing_ok=True)
        raise CNIError(INTERNAL, f'could not set VRF "{name}" up: {exc}') from None
    return vrf


def what_enslaving_drops(nl: Netlink, link: Link) -> Dropped:
    addresses = [a for a in nl.addresses(link.index, family=AF_INET6) if a.scope == RT_SCOPE_UNIVERSE]
    # Connected routes (protocol kernel) come back by themselves with their addresses.
    routes = [r for r in nl.routes(table=RT_TABLE_MAIN) if r.oif == link.index and r.proto != RTPROT_KERNEL]
    return Dropped(addresses=addresses, routes=routes)


def restore(nl: Netlink, index: int, dropped: Dropped, table: int, *, settle=None) -> None:
    """Put back the dropped addresses, then the dropped routes into `table` (on-link ones first:
    the others' gateways are reached through them). `settle` runs between the two (the wait
    for IPv6 duplicate address detection); without it (an undo) every step is best effort."""
    present = {a.address for a in nl.addresses(index, family=AF_INET6)}
    steps = [lambda a=a: nl.add_address(index, a.address, flags=a.flags & (IFA_F_NODAD | IFA_F_NOPREFIXROUTE))
             for a in dropped.addresses if a.address not in present]
    if settle is not None and dropped.addresses:
        steps.append(settle)
    steps += [lambda r=r: nl.put_route(r, table=table) for r in sorted(dropped.routes, key=lambda r: -r.scope)]
    for step in steps:
        try:
            step()
        except NetlinkError as exc:
            if settle is not None:
                raise CNIError(INTERNAL, f"could not restore the addresses and routes of link {index} "
                                         f"in table {table}: {exc}") from None


def release(nl: Netlink, index: int, dropped: Dropped) -> None:
    """Undo of enslaving: the interface leaves the VRF with its addresses and routes as they were."""
    nl.set_link(index, master=0)
    restore(nl, index, dropped, RT_TABLE_MAIN)


def delete(call: Call) -> None:
    conf = VrfConf.load(call)
    if not call.netns:
        return  # the VRF lives in the container netns and goes with it
    try:
        with Netlink(call.netns) as nl:
            vrf = nl.get_link(conf.vrf_name)
            if vrf is None or vrf.kind != "vrf":
                return
            link = nl.get_link(call.ifname)
            if link is not None and link.master == vrf.index:
                try:
                    nl.set_link(link.index, master=0)
                except NetlinkError as exc:
                    if not exc.gone:
                        raise CNIError(INTERNAL, f'could not release "{call.ifname}" from VRF: {exc}') from None
            nl.delete_link_if_unused(vrf.index)
    except (NetnsNotFound, NotANetns):
        return


def check(call: Call) -> None:
    conf = VrfConf.load(call)
    conf.require_prev_result()
    with Netlink(call.netns) as nl:
        vrf = find_vrf(nl, conf.vrf_name)
        if vrf is None:
            raise CNIError(INTERNAL, f'VRF "{conf.vrf_name}" not found')
        if conf.table and vrf.info.get("table") != conf.table:
            raise CNIError(INTERNAL, f'VRF "{conf.vrf_name}" uses table {vrf.info.get("table")}, want {conf.table}')
        link = require_link(nl, call.ifname, call.netns)
        if link.master != vrf.index:
            raise CNIError(INTERNAL, f'"{call.ifname}" is not in VRF "{conf.vrf_name}"')


# Every version, unlike the reference (0.3.1 on): the interface is CNI_IFNAME, whatever
# the result's shape, and multicall answers VERSION for all plugins alike.
main = plugin("vrf", add=add, delete=delete, check=check)
