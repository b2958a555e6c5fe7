"""ipvlan: the container gets a link on a host interface (the master), sharing its MAC.

ADD makes an ipvlan on the master straight inside the container netns and
configures the addresses IPAM hands out; chained after another plugin without
ipam, it applies the addresses of the previous result instead (and takes that
result's single interface as the default master). Any failure undoes every
step. DEL releases the addresses and deletes the link; what is already gone
(netns, link, master) is success. CHECK compares the link and its
configuration with the previous result.
"""
from __future__ import annotations

from cni import ipam
from cni.conf import Fields, MasterLinkConf
from cni.errors import invalid_config
from cni.link import (
    check_interface_config,
    check_link,
    check_mtu_within_master,
    container_interface_index,
    create_ipvlan,
    delete_link_if_present,
    find_master,
    require_master_available,
)
from cni.rollback import Rollback
from cni.skel import Call, plugin
from cni.types import Result

MODES = ("l2", "l3", "l3s")


class IpvlanConf(MasterLinkConf):
    mode: str = "l2"

    @classmethod
    def load(cls, call: Call, *, lenient: bool = False) -> "IpvlanConf":
        """The configuration; `lenient` (DEL, GC, STATUS) skips what only matters for creating the link."""
        f = Fields(call.config)
        conf = cls(**cls.common(call.config, call.cni_version),
                   master=f.text("master"),
                   mode=f.text("mode") or "l2",
                   mtu=f.number("mtu", minimum=0),
                   link_in_container=f.flag("linkInContainer"))
        if lenient:
            return conf
        if conf.mode not in MODES:
            raise invalid_config(f'unknown ipvlan mode "{conf.mode}"', f"want one of {', '.join(MODES)}")
        if not conf.ipam_type and conf.prev_result is None:
            raise invalid_config("ipvlan needs an ipam configuration unless it is chained after another plugin")
        return conf

    @property
    def chained_addresses(self) -> bool:
        """Chained without ipam: the previous result's addresses are the ones to apply."""
        return not self.ipam_type and self.prev_result is not None

    def master_name(self) -> str:
        if self.master or self.prev_result is None:
            return self.master  # "" → find_master uses the default-route interface
        named = [i.name for i in self.prev_result.interfaces if i.name]
        if len(self.prev_result.interfaces) != 1 or len(named) != 1:
            raise invalid_config('chained ipvlan without "master": prevResult must have exactly one named interface')
        return named[0]


def add(call: Call) -> Result:
    conf = IpvlanConf.load(call)
    master = find_master(conf.master_name(), conf.master_in(call))
    check_mtu_within_master(conf.mtu, master)
    if conf.chained_addresses and not conf.prev_result.ips:
        raise invalid_config("chained ipvlan without ipam: prevResult has no addresses to apply")

    with Rollback() as undo:
        link = create_ipvlan(call.netns, call.ifname, master, conf.mode, master_in_container=conf.link_in_container,
                             mtu=conf.mtu)
        undo.push(lambda: delete_link_if_present(call.netns, call.ifname), "delete the ipvlan", stage="link")

        chained = None
        if conf.chained_addresses:
            chained = conf.prev_result.copy()
            chained.cni_version = call.cni_version
        return ipam.lease_onto(conf, call, undo, link, chained)


def delete(call: Call) -> None:
    conf = IpvlanConf.load(call, lenient=True)
    ipam.delete(conf, call)
    delete_link_if_present(call.netns, call.ifname)


def check(call: Call) -> None:
    conf = IpvlanConf.load(call)
    if conf.ipam_type:
        ipam.check(conf, call)
    index = container_interface_index(conf.prev_result, call.ifname, call.netns)
    # At CHECK, prevResult is this plugin's own result: only an explicit master can be compared.
    master = find_master(conf.master, conf.master_in(call)) if conf.master else None
    check_link(call.netns, call.ifname, "ipvlan", conf.mode, master)
    check_interface_config(call.netns, call.ifname, conf.prev_result, index)


def status(call: Call) -> None:
    conf = IpvlanConf.load(call, lenient=True)
    if not conf.link_in_container and conf.prev_result is None:  # otherwise the master is known only at ADD
        require_master_available(conf.master)
    ipam.status(conf, call)


def gc(call: Call) -> None:
    conf = IpvlanConf.load(call, lenient=True)
    ipam.gc(conf, call)


main = plugin("ipvlan", add=add, delete=delete, check=check, gc=gc, status=status)
