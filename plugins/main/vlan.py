"""vlan: the container gets an 802.1q sub-interface of a trunk port (the master).

ADD makes the tagged link on the master straight inside the container netns
(under a temporary name, then renamed), asks IPAM for addresses and configures
them; any failure undoes every step. DEL releases the addresses and deletes the
link; what is already gone (netns, link, master) is success. CHECK compares the
link (kind, VLAN id, master, MTU, MAC) and its configuration with the previous
result.
"""
from __future__ import annotations

from cni import ipam
from cni.conf import Fields, MasterLinkConf
from cni.errors import INTERNAL, CNIError, invalid_config
from cni.link import (
    check_interface_config,
    check_link,
    check_mtu_within_master,
    container_interface_index,
    create_vlan,
    delete_link_if_present,
    find_master,
    require_master_available,
)
from cni.rollback import Rollback
from cni.skel import Call, plugin
from cni.types import Result


class VlanConf(MasterLinkConf):
    vlan_id: int = 0

    @classmethod
    def load(cls, call: Call, *, lenient: bool = False) -> "VlanConf":
        """The configuration; `lenient` (DEL, GC, STATUS) skips what only matters for creating the link."""
        f = Fields(call.config)
        conf = cls(**cls.common(call.config, call.cni_version),
                   master=f.text("master"),
                   vlan_id=f.number("vlanId", minimum=0, maximum=4094),
                   mtu=f.number("mtu", minimum=0),
                   link_in_container=f.flag("linkInContainer"))
        if lenient:
            return conf
        if not conf.master:
            raise invalid_config('"master" is required: the host interface to make the VLAN link on')
        if not conf.ipam_type:
            raise invalid_config("vlan needs an ipam configuration")
        return conf


def add(call: Call) -> Result:
    conf = VlanConf.load(call)
    master = find_master(conf.master, conf.master_in(call))
    check_mtu_within_master(conf.mtu, master)

    with Rollback() as undo:
        link = create_vlan(call.netns, call.ifname, master, conf.vlan_id,
                           master_in_container=conf.link_in_container, mtu=conf.mtu)
        undo.push(lambda: delete_link_if_present(call.netns, call.ifname), "delete the vlan link", stage="link")
        return ipam.lease_onto(conf, call, undo, link)


def delete(call: Call) -> None:
    conf = VlanConf.load(call, lenient=True)
    ipam.delete(conf, call)
    delete_link_if_present(call.netns, call.ifname)


def check(call: Call) -> None:
    conf = VlanConf.load(call)
    ipam.check(conf, call)
    index = container_interface_index(conf.prev_result, call.ifname, call.netns)
    expected = conf.prev_result.interfaces[index]
    master = find_master(conf.master, conf.master_in(call))
    link = check_link(call.netns, call.ifname, "vlan", None, master, mac=expected.mac)
    if link.info.get("id") != conf.vlan_id:
        raise CNIError(INTERNAL, f'"{call.ifname}": VLAN id is {link.info.get("id")}, want {conf.vlan_id}')
    if conf.mtu and link.mtu != conf.mtu:
        raise CNIError(INTERNAL, f'"{call.ifname}": MTU is {link.mtu}, want {conf.mtu}')
    check_interface_config(call.netns, call.ifname, conf.prev_result, index)


def status(call: Call) -> None:
    conf = VlanConf.load(call, lenient=True)
    if conf.master and not conf.link_in_container:  # a container's master can only be looked at during ADD
        require_master_available(conf.master)
    ipam.status(conf, call)


def gc(call: Call) -> None:
    ipam.gc(VlanConf.load(call, lenient=True), call)


main = plugin("vlan", add=add, delete=delete, check=check, gc=gc, status=status)
