"""dummy: the container gets a dummy link carrying the addresses IPAM hands out.

A dummy link sends nothing anywhere; it gives a container (or a VM inside it)
addresses that routing elsewhere makes reachable. ADD makes the link inside the
container netns, asks IPAM for addresses and configures them; any failure
undoes every step. DEL releases the addresses and deletes the link; what is
already gone is success. CHECK compares the link (kind, MAC, up) and its
addresses with the previous result.
"""
from __future__ import annotations

from cni import ipam
from cni.conf import Fields, NetConf
from cni.errors import INTERNAL, CNIError, invalid_config
from cni.link import (
    check_interface_config,
    check_link,
    container_interface_index,
    create_dummy,
    delete_link_if_present,
)
from cni.rollback import Rollback
from cni.skel import Call, plugin
from cni.types import Result


class DummyConf(NetConf):
    mtu: int = 0  # 0: the kernel's default

    @classmethod
    def load(cls, call: Call, *, lenient: bool = False) -> "DummyConf":
        """The configuration; `lenient` (DEL, GC, STATUS) does not insist on ipam."""
        f = Fields(call.config)
        conf = cls(**cls.common(call.config, call.cni_version), mtu=f.number("mtu", minimum=0, maximum=65535))
        if not lenient and not conf.ipam_type:
            raise invalid_config("dummy interface requires an IPAM configuration")
        return conf


def add(call: Call) -> Result:
    conf = DummyConf.load(call)
    with Rollback() as undo:
        link = create_dummy(call.netns, call.ifname, mtu=conf.mtu)
        undo.push(lambda: delete_link_if_present(call.netns, call.ifname), "delete the dummy link", stage="link")
        return ipam.lease_onto(conf, call, undo, link)


def delete(call: Call) -> None:
    conf = DummyConf.load(call, lenient=True)
    ipam.delete(conf, call)
    delete_link_if_present(call.netns, call.ifname)


def check(call: Call) -> None:
    conf = DummyConf.load(call)
    ipam.check(conf, call)
    index = container_interface_index(conf.prev_result, call.ifname, call.netns)
    link = check_link(call.netns, call.ifname, "dummy", None, mac=conf.prev_result.interfaces[index].mac)
    if not link.up:
        raise CNIError(INTERNAL, f'"{call.ifname}" is down')
    check_interface_config(call.netns, call.ifname, conf.prev_result, index)


def status(call: Call) -> None:
    conf = DummyConf.load(call, lenient=True)
    ipam.status(conf, call)


def gc(call: Call) -> None:
    ipam.gc(DummyConf.load(call, lenient=True), call)


main = plugin("dummy", add=add, delete=delete, check=check, gc=gc, status=status)
