"""macvlan: the container gets a link of its own, with its own MAC, on a host interface.

ADD makes a macvlan on the master straight inside the container netns, asks
IPAM for addresses (none configured: a plain layer-2 link that is only brought
up) and configures them; any failure undoes every step. DEL releases the
addresses and deletes the link; what is already gone (netns, link, master) is
success. CHECK compares the link and its configuration with the previous result.
"""
from __future__ import annotations


from cni import ipam
from cni.conf import Fields, MasterLinkConf, parse_mac
from cni.errors import INCOMPATIBLE_VERSION, CNIError, invalid_config
from cni.link import (
    as_interface,
    check_interface_config,
    check_link,
    check_mtu_within_master,
    container_interface_index,
    create_macvlan,
    delete_link_if_present,
    find_master,
    require_master_available,
    set_link_up,
)
from cni.rollback import Rollback
from cni.skel import Call, plugin
from cni.types import LEGACY, Result

MODES = ("bridge", "private", "vepa", "passthru")


class MacvlanConf(MasterLinkConf):
    mode: str = "bridge"
    mac: str = ""
    bcqueuelen: int | None = None

    @classmethod
    def load(cls, call: Call, *, lenient: bool = False) -> "MacvlanConf":
        """The configuration; `lenient` (DEL, GC, STATUS) skips what only matters for creating the link."""
        f = Fields(call.config)
        conf = cls(**cls.common(call.config, call.cni_version),
                   master=f.text("master"),
                   mode=f.text("mode") or "bridge",
                   mtu=f.number("mtu", minimum=0),
                   link_in_container=f.flag("linkInContainer"),
                   bcqueuelen=f.number("bcqueuelen", minimum=0, maximum=2**32 - 1) if f.has("bcqueuelen") else None)
        if lenient:
            return conf
        if conf.mode not in MODES:
            raise invalid_config(f'unknown macvlan mode "{conf.mode}"', f"want one of {', '.join(MODES)}")
        # Later wins: "mac" in the configuration, CNI_ARGS MAC, args.cni.mac, runtimeConfig.mac.
        conf.mac = conf.requested_mac(call.cni_args(("MAC",)).get("MAC", "")) or \
            (parse_mac(f.text("mac")) if f.text("mac") else "")
        return conf


def add(call: Call) -> Result:
    conf = MacvlanConf.load(call)
    master = find_master(conf.master, conf.master_in(call))
    check_mtu_within_master(conf.mtu, master)
    layer2 = not conf.ipam_type
    if layer2 and call.cni_version in LEGACY:
        # Refused before anything exists: these versions cannot express a result without addresses.
        raise CNIError(INCOMPATIBLE_VERSION, f"a macvlan without ipam has no result in version {call.cni_version}")

    with Rollback() as undo:
        link = create_macvlan(call.netns, call.ifname, master, conf.mode, master_in_container=conf.link_in_container,
                              mtu=conf.mtu, mac=conf.mac, bcqueuelen=conf.bcqueuelen)
        undo.push(lambda: delete_link_if_present(call.netns, call.ifname), "delete the macvlan", stage="link")

        if layer2:
            set_link_up(call.netns, call.ifname)
            result = Result(cni_version=call.cni_version)
        else:
            result = ipam.lease_onto(conf, call, undo, link, announce=True)

    result.interfaces = [as_interface(link, sandbox=call.netns)]
    result.dns = conf.dns
    return result


def delete(call: Call) -> None:
    conf = MacvlanConf.load(call, lenient=True)
    ipam.delete(conf, call)
    delete_link_if_present(call.netns, call.ifname)


def check(call: Call) -> None:
    conf = MacvlanConf.load(call)
    if conf.ipam_type:
        ipam.check(conf, call)
    index = container_interface_index(conf.prev_result, call.ifname, call.netns)
    expected = conf.prev_result.interfaces[index]
    master = find_master(conf.master, conf.master_in(call))
    check_link(call.netns, call.ifname, "macvlan", conf.mode, master, mac=conf.mac or expected.mac)
    check_interface_config(call.netns, call.ifname, conf.prev_result, index)


def status(call: Call) -> None:
    conf = MacvlanConf.load(call, lenient=True)
    if not conf.link_in_container:  # a container's master can only be looked at during ADD
        require_master_available(conf.master)
    ipam.status(conf, call)


def gc(call: Call) -> None:
    conf = MacvlanConf.load(call, lenient=True)
    ipam.gc(conf, call)


main = plugin("macvlan", add=add, delete=delete, check=check, gc=gc, status=status)
