"""tap: a persistent tap device in the container, for a VM monitor (QEMU, Kata, KubeVirt) to open.

ADD makes the tap inside the container netns (owned as configured), sets its
MAC and MTU, enslaves it to a bridge of the container when asked, and either
brings it up (no ipam) or configures IPAM's addresses on it; any failure undoes
every step. DEL releases the addresses and deletes the tap; what is already
gone is success. CHECK compares the tap and its configuration with the
previous result.
"""
from __future__ import annotations

import sys

from cni import ipam
from cni.conf import Fields, NetConf, parse_mac
from cni.errors import INCOMPATIBLE_VERSION, INTERNAL, INVALID_NETWORK_CONFIG, CNIError
from cni.link import (
    as_interface,
    check_interface_config,
    container_interface_index,
    delete_link_if_present,
    require_link,
    set_link_up,
)
from cni.netlink import Netlink
from cni.rollback import Rollback
from cni.skel import Call, plugin
from cni.types import LEGACY, Result

ID_MAX = 2**32 - 2  # (uid_t)-1 means "nobody in particular" to the kernel


class TapConf(NetConf):
    mac: str = ""
    mtu: int = 0  # 0: the kernel's default (1500)
    multi_queue: bool = False
    owner: int | None = None
    group: int | None = None
    selinux_context: str = ""
    bridge: str = ""  # a bridge inside the container netns

    @classmethod
    def load(cls, call: Call, *, lenient: bool = False) -> "TapConf":
        """The configuration; `lenient` (DEL, GC, STATUS) skips what only matters for creating the tap."""
        f = Fields(call.config)
        conf = cls(**cls.common(call.config, call.cni_version),
                   mtu=f.number("mtu", minimum=0, maximum=65535),
                   multi_queue=f.flag("multiQueue"),
                   owner=f.number("owner", minimum=0, maximum=ID_MAX) if f.has("owner") else None,
                   group=f.number("group", minimum=0, maximum=ID_MAX) if f.has("group") else None,
                   selinux_context=f.text("selinuxContext"),
                   bridge=f.text("bridge"))
        if lenient:
            return conf
        # Later wins: "mac" in the configuration, CNI_ARGS MAC, args.cni.mac, runtimeConfig.mac.
        conf.mac = conf.requested_mac(call.cni_args(("MAC",)).get("MAC", "")) or \
            (parse_mac(f.text("mac")) if f.text("mac") else "")
        return conf


def selinux_label(conf: TapConf) -> str:
    """The label to make the tap with: the configured one when SELinux is on."""
    if not conf.selinux_context:
        return ""
    from cni.tuntap import selinux_enabled

    if selinux_enabled():
        return conf.selinux_context
    print(f'tap: SELinux is off: selinuxContext "{conf.selinux_context}" is not applied', file=sys.stderr)
    return ""


def find_bridge(netns: str, name: str):
    with Netlink(netns) as nl:
        link = nl.get_link(name)
    if link is None or link.kind != "bridge":
        what = "not a bridge" if link is not None else "not found"
        raise CNIError(INVALID_NETWORK_CONFIG, f'bridge "{name}" {what} in netns "{netns}"')
    return link


def add(call: Call) -> Result:
    from cni.tuntap import create_tap

    conf = TapConf.load(call)
    layer2 = not conf.ipam_type
    if layer2 and call.cni_version in LEGACY:
        # Refused before anything exists: these versions cannot express a result without addresses.
        raise CNIError(INCOMPATIBLE_VERSION, f"a tap without ipam has no result in version {call.cni_version}")
    bridge = find_bridge(call.netns, conf.bridge) if conf.bridge else None

    with Rollback() as undo:
        link = create_tap(call.netns, call.ifname, multi_queue=conf.multi_queue, owner=conf.owner,
                          group=conf.group, mtu=conf.mtu, mac=conf.mac, selinux_label=selinux_label(conf))
        undo.push(lambda: delete_link_if_present(call.netns, call.ifname), "delete the tap", stage="link")
        if bridge is not None:
            with Netlink(call.netns) as nl:
                nl.set_link(link.index, master=bridge.index)
        if layer2:
            set_link_up(call.netns, call.ifname)
            result = Result(cni_version=call.cni_version)
        else:
            # No carrier until a reader opens the tap: IPv6 duplicate address detection waits for it.
            result = ipam.lease_onto(conf, call, undo, link, announce=True, settle=False)

    result.interfaces = [as_interface(link, sandbox=call.netns)]
    result.dns = conf.dns
    return result


def delete(call: Call) -> None:
    conf = TapConf.load(call, lenient=True)
    ipam.delete(conf, call)
    delete_link_if_present(call.netns, call.ifname)


def check(call: Call) -> None:
    conf = TapConf.load(call)
    if conf.ipam_type:
        ipam.check(conf, call)
    index = container_interface_index(conf.prev_result, call.ifname, call.netns)
    expected = conf.prev_result.interfaces[index]
    with Netlink(call.netns) as nl:
        link = require_link(nl, call.ifname, call.netns)
    want = {"type": "tap", "multi_queue": conf.multi_queue, "persist": True}
    if conf.owner is not None:
        want["owner"] = conf.owner
    if conf.group is not None:
        want["group"] = conf.group
    have = {key: link.info.get(key) for key in want}
    if link.kind != "tun" or have != want:
        raise CNIError(INTERNAL, f'"{call.ifname}" is not the configured tap: {have}, want {want}')
    mac = conf.mac or expected.mac
    if mac and link.mac != mac:
        raise CNIError(INTERNAL, f'"{call.ifname}": MAC is {link.mac}, want {mac}')
    if conf.mtu and link.mtu != conf.mtu:
        raise CNIError(INTERNAL, f'"{call.ifname}": MTU is {link.mtu}, want {conf.mtu}')
    if conf.bridge and link.master != find_bridge(call.netns, conf.bridge).index:
        raise CNIError(INTERNAL, f'"{call.ifname}" is not a port of bridge "{conf.bridge}"')
    check_interface_config(call.netns, call.ifname, conf.prev_result, index)


def status(call: Call) -> None:
    ipam.status(TapConf.load(call, lenient=True), call)


def gc(call: Call) -> None:
    ipam.gc(TapConf.load(call, lenient=True), call)


main = plugin("tap", add=add, delete=delete, check=check, gc=gc, status=status)
