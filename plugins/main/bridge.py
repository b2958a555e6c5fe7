"""bridge: each container on a Linux bridge of the host, through a veth pair.

ADD creates (or reuses) the bridge, a veth pair with one end in the container,
asks IPAM for addresses, configures the container end and, as a gateway, the
bridge; optional masquerade and MAC spoof check. A failed ADD undoes all of it.
DEL succeeds whatever is already gone. See Documentation/bridge.md.
"""
from __future__ import annotations

import ipaddress

from cni.conf import Fields, NetConf, same_mac
from cni.errors import INCOMPATIBLE_VERSION, INTERNAL, INVALID_NETWORK_CONFIG, CNIError, invalid_config
from cni.skel import Call, plugin
from cni.types import Interface, IPConfig, Result, Route

DEFAULT_BRIDGE = "cni0"
PORT_UP_TIMEOUT = 5.0
# Interfaces of the result, by position: ips[].interface points at the container end.
BRIDGE_INDEX, HOST_INDEX, CONTAINER_INDEX = 0, 1, 2


class BridgeConf(NetConf):
    bridge: str = DEFAULT_BRIDGE
    is_gateway: bool = False
    is_default_gateway: bool = False
    force_address: bool = False
    ip_masq: bool = False
    ip_masq_backend: str = ""
    mtu: int = 0
    hairpin_mode: bool = False
    promisc_mode: bool = False
    vlan: int = 0
    vlan_trunk: tuple = ()  # ((first, last), ...) VLAN id ranges
    preserve_default_vlan: bool = True
    mac_spoof_check: bool = False
    enable_dad: bool = False
    disable_container_interface: bool = False
    port_isolation: bool = False
    mac: str = ""

    @property
    def layer3(self) -> bool:
        return bool(self.ipam_type)

    @classmethod
    def load(cls, call: Call) -> "BridgeConf":
        raw = call.config
        f = Fields(raw)
        conf = cls(
            **cls.common(raw, call.cni_version),
            bridge=f.text("bridge") or DEFAULT_BRIDGE,
            is_gateway=f.flag("isGateway"),
            is_default_gateway=f.flag("isDefaultGateway"),
            force_address=f.flag("forceAddress"),
            ip_masq=f.flag("ipMasq"),
            ip_masq_backend=f.text("ipMasqBackend"),
            mtu=f.number("mtu", minimum=0, maximum=65535),
            hairpin_mode=f.flag("hairpinMode"),
            promisc_mode=f.flag("promiscMode"),
            vlan=f.number("vlan", minimum=0, maximum=4094),
            vlan_trunk=_vlan_trunk(f),
            preserve_default_vlan=f.flag("preserveDefaultVlan", True),
            mac_spoof_check=f.flag("macspoofchk"),
            enable_dad=f.flag("enabledad"),
            disable_container_interface=f.flag("disableContainerInterface"),
            port_isolation=f.flag("portIsolation"),
        )
        conf.mac = conf.requested_mac(call.cni_args(("MAC",)).get("MAC", ""))
        if len(conf.bridge.encode()) > 15 or any(c in "/: " for c in conf.bridge):
            raise invalid_config(f'invalid bridge name "{conf.bridge}"')
        if conf.ip_masq_backend:  # only a named backend needs checking: cni.masq loads only then
            from cni import masq

            masq.validate_backend(conf.ip_masq_backend)
        if conf.hairpin_mode and conf.promisc_mode:
            raise invalid_config("cannot set hairpinMode and promiscMode at the same time")
        if conf.vlan and conf.vlan_trunk:
            raise invalid_config("cannot set vlan and vlanTrunk at the same time")
        if conf.disable_container_interface and conf.layer3:
            raise invalid_config("cannot use IPAM when disableContainerInterface is set")
        if conf.layer3 and conf.is_default_gateway:
            conf.is_gateway = True
        return conf

    @classmethod
    def load_for_delete(cls, call: Call) -> "BridgeConf":
        """Only what DEL and GC need: a key ADD would reject must not block cleanup."""
        f = Fields(call.config)
        return cls(**cls.common(call.config, call.cni_version), ip_masq=f.flag("ipMasq"),
                   mac_spoof_check=f.flag("macspoofchk"))


def _vlan_trunk(f: Fields) -> list:
    ranges = []
    for entry in f.items("vlanTrunk"):
        item = Fields(entry, "vlanTrunk[]")
        if item.has("id"):
            vid = item.number("id", minimum=1, maximum=4094)
            ranges.append((vid, vid))
        if item.has("minID") or item.has("maxID"):
            if not (item.has("minID") and item.has("maxID")):
                raise invalid_config("vlanTrunk: minID and maxID must be set together")
            first = item.number("minID", minimum=1, maximum=4094)
            last = item.number("maxID", minimum=1, maximum=4094)
            if first > last:
                raise invalid_config(f"vlanTrunk: minID {first} is greater than maxID {last}")
            ranges.append((first, last))
        if not (item.has("id") or item.has("minID") or item.has("maxID")):
            raise invalid_config("vlanTrunk: each entry needs id, or minID and maxID")
    return ranges


# ---- ADD ---------------------------------------------------------------------------------


def add(call: Call) -> Result:
    from cni import ipam
    from cni.link import as_interface, configure_interface, set_link_up, setup_veth
    from cni.netlink.bridge import BridgeNetlink
    from cni.rollback import Rollback

    conf = BridgeConf.load(call)
    if not conf.layer3 and call.cni_version in ("0.1.0", "0.2.0"):
        # Those versions have no result without an IP: fail before creating anything.
        raise CNIError(INCOMPATIBLE_VERSION, "cannot convert: no valid IP addresses",
                       f"a bridge without ipam (L2 mode) needs cniVersion 0.3.0 or later, not {call.cni_version}")
    result = Result(cni_version=conf.cni_version)
    # The socket outlives the rollback: undo steps use it.
    with BridgeNetlink() as host, Rollback() as undo:
        bridge = ensure_bridge(host, conf, undo)
        host_end, container_end = setup_veth(call.netns, call.ifname, mtu=conf.mtu, container_mac=conf.mac)
        undo.push(lambda: _delete_container_end(call), "delete the veth pair", stage="veth")
        attach_port(host, bridge.index, host_end.index, conf)
        if conf.mac_spoof_check:
            from cni import spoofcheck

            spoofcheck.setup(host_end.name, container_end.mac, call.container_id, call.ifname)
            undo.push(lambda: spoofcheck.teardown(call.container_id, call.ifname), "remove the MAC spoof check")
        result.interfaces = [as_interface(bridge), as_interface(host_end),
                             as_interface(container_end, sandbox=call.netns)]

        if conf.layer3:
            leased = ipam.lease(conf, call, undo)
            take_ipam_result(result, leased, conf)
            set_container_sysctls(call.netns, call.ifname, conf.enable_dad)
            configure_interface(call.netns, call.ifname, result, CONTAINER_INDEX)
        elif not conf.disable_container_interface:
            set_link_up(call.netns, call.ifname)

        if not conf.disable_container_interface and not host.wait_oper_up(host_end.index, PORT_UP_TIMEOUT):
            state = getattr(host.get_link_by_index(host_end.index), "operstate", "gone")
            raise CNIError(INTERNAL, f'bridge port "{host_end.name}" did not come up: state {state}')
        if conf.is_gateway:
            gateway_iface = ensure_gateways(host, bridge, result, conf, undo)
            if gateway_iface is not None:
                result.interfaces.append(gateway_iface)
        if conf.ip_masq and conf.layer3:
            from cni import masq

            masq.setup(conf.name, call.container_id, [ip.address for ip in result.ips],
                       masq.choose_backend(conf.ip_masq_backend))
            undo.push(lambda: masq.teardown(conf.name, call.container_id), "remove the masquerade rules", stage="masquerade")
    return result


def ensure_bridge(host, conf: BridgeConf, undo):
    """The bridge `conf.bridge`, created if missing, up; a non-bridge of that name is an error."""
    from cni import sysctl
    from cni.netlink import NetlinkError

    vlan_filtering = True if (conf.vlan or conf.vlan_trunk) else None
    created = False
    try:
        host.create_bridge(conf.bridge, mtu=conf.mtu, vlan_filtering=vlan_filtering)
        created = True
    except NetlinkError as exc:
        if exc.errno != 17:  # EEXIST: reuse it (or another ADD made it just now)
            raise CNIError(INTERNAL, f'failed to create bridge "{conf.bridge}": {exc}') from None
    link = host.get_link(conf.bridge)
    if link is None:
        raise CNIError(INTERNAL, f'bridge "{conf.bridge}" vanished while being set up')
    if created:
        undo.push(lambda: host.delete_link_if_unused(link.index), f'delete bridge "{conf.bridge}"', stage="bridge")
    if link.kind != "bridge":
        raise CNIError(INTERNAL, f'"{conf.bridge}" already exists but is not a bridge')
    # The plugin owns the bridge's routes: router advertisements must not add any.
    sysctl.set_if_present(f"/proc/sys/net/ipv6/conf/{conf.bridge}/accept_ra", "0")
    try:
        # Pin the bridge's own MAC before any port of this ADD joins: unpinned, the kernel
        # gives the bridge the lowest port MAC and changes it as ports come and go. This is
        # the address the reference leaves on a gateway bridge (it sets the MAC it read
        # before its port joined); we pin it in every mode, so CHECK holds on L2 bridges too.
        host.set_link(link.index, up=True, promisc=True if conf.promisc_mode else None, mac=link.mac)
    except NetlinkError as exc:
        raise CNIError(INTERNAL, f'failed to set bridge "{conf.bridge}" up: {exc}') from None
    return link


def attach_port(host, bridge_index: int, port_index: int, conf: BridgeConf) -> None:
    """Enslave the host end to the bridge, up, with hairpin, isolation and VLANs."""
    from cni.netlink import NetlinkError

    try:
        host.set_link(port_index, master=bridge_index, up=True)
        host.set_bridge_port(port_index, hairpin=True if conf.hairpin_mode else None,
                             isolated=True if conf.port_isolation else None)
        if conf.vlan:
            if not conf.preserve_default_vlan:
                for entry in host.bridge_vlans(port_index):
                    host.bridge_vlan_del(port_index, entry["vid"])
            host.bridge_vlan_add(port_index, conf.vlan, pvid=True, untagged=True)
        for first, last in conf.vlan_trunk:
            host.bridge_vlan_add(port_index, first, vid_end=last if last != first else None)
    except NetlinkError as exc:
        raise CNIError(INTERNAL, f"failed to attach port {port_index} to bridge {conf.bridge}: {exc}") from None


def take_ipam_result(result: Result, leased: Result, conf: BridgeConf) -> None:
    """IPAM's addresses, routes and DNS, with gateways and default routes as configured."""
    result.ips = [IPConfig(ip.address, ip.gateway, CONTAINER_INDEX) for ip in leased.ips]
    result.routes = list(leased.routes)
    result.dns = leased.dns if conf.dns.is_empty() else conf.dns
    for ip in result.ips:
        if ip.gateway is None and conf.is_gateway:
            ip.gateway = ip.address.network.network_address + 1
    if conf.is_default_gateway:
        for family in (4, 6):
            first = next((ip for ip in result.ips if ip.family == family), None)
            has_default = any(r.dst.version == family and r.dst.prefixlen == 0 for r in result.routes)
            if first is not None and not has_default:
                default = ipaddress.ip_network("0.0.0.0/0" if family == 4 else "::/0")
                result.routes.append(Route(dst=default, gw=first.gateway))


def set_container_sysctls(netns: str, ifname: str, enable_dad: bool) -> None:
    from cni import sysctl
    from cni.netns import entered

    # Absolute paths: an interface name may contain dots, which sysctl names cannot.
    with entered(netns):
        if enable_dad:
            sysctl.set_if_present(f"/proc/sys/net/ipv6/conf/{ifname}/enhanced_dad", "1")
            sysctl.set_if_present(f"/proc/sys/net/ipv6/conf/{ifname}/accept_dad", "1")
        else:
            sysctl.set_if_present(f"/proc/sys/net/ipv6/conf/{ifname}/accept_dad", "0")
        sysctl.set_if_present(f"/proc/sys/net/ipv4/conf/{ifname}/arp_notify", "1")


def ensure_gateways(host, bridge, result: Result, conf: BridgeConf, undo) -> Interface | None:
    """Gateway addresses (with the IPAM prefix) on the bridge, or on its VLAN interface; forwarding on."""
    from cni.link import enable_forwarding

    gateways = [ipaddress.ip_interface((ip.gateway, ip.address.network.prefixlen))
                for ip in result.ips if ip.gateway is not None]
    if not gateways:
        return None
    target, reported = bridge, None
    if conf.vlan:
        target = ensure_vlan_gateway_link(host, bridge, conf, undo)
        reported = Interface(name=target.name, mac=target.mac)
    for family in (4, 6):
        for gw in [g for g in gateways if g.version == family]:
            ensure_address(host, target, gw, conf.force_address)
    enable_forwarding({g.version for g in gateways})
    return reported


def ensure_address(host, link, address, force: bool) -> None:
    """Put `address` on `link`; another IPv4 address there (or an overlapping IPv6 one) is
    replaced with forceAddress and an error without."""
    from cni.netlink import AF_INET, AF_INET6, NetlinkError

    for existing in host.addresses(link.index, family=AF_INET if address.version == 4 else AF_INET6):
        have = existing.address
        if have == address:
            return
        overlaps = address.version == 4 or address.ip in have.network or have.ip in address.network
        if not overlaps:
            continue
        if not force:
            raise CNIError(INTERNAL, f'"{link.name}" already has an IP address different from {address}')
        try:
            host.delete_address(link.index, have)
        except NetlinkError as exc:
            if not exc.gone:
                raise CNIError(INTERNAL, f'failed to remove {have} from "{link.name}": {exc}') from None
    try:
        host.add_address(link.index, address)
    except NetlinkError as exc:
        if exc.errno != 17:  # EEXIST: a concurrent ADD put it there
            raise CNIError(INTERNAL, f'could not add IP address {address} to "{link.name}": {exc}') from None


def ensure_vlan_gateway_link(host, bridge, conf: BridgeConf, undo):
    """The host-side veth `<bridge>.<vlan>` carrying the gateway of a VLAN, as the reference does."""
    from cni.link import delete_link_if_present, setup_veth
    from cni.netns import current_path

    name = f"{bridge.name}.{conf.vlan}"
    link = host.get_link(name)
    if link is not None:
        return link
    if len(name) > 15:
        raise CNIError(INTERNAL, f'VLAN gateway interface name "{name}" is too long')
    here = current_path()
    peer, link = setup_veth(here, name, mtu=bridge.mtu)
    undo.push(lambda: delete_link_if_present(here, name), f'delete "{name}"')
    port_conf = BridgeConf(bridge=conf.bridge, vlan=conf.vlan, preserve_default_vlan=conf.preserve_default_vlan)
    attach_port(host, bridge.index, peer.index, port_conf)
    host.set_link(link.index, up=True)
    return host.get_link(name)


def _delete_container_end(call: Call) -> None:
    from cni.link import delete_link_if_present

    delete_link_if_present(call.netns, call.ifname)


# ---- DEL ---------------------------------------------------------------------------------


def delete(call: Call) -> None:
    from cni import ipam
    from cni.link import delete_link_if_present

    conf = BridgeConf.load_for_delete(call)
    delete_link_if_present(call.netns, call.ifname)  # an empty or vanished netns is success
    if conf.layer3:
        ipam.delete(conf, call)
    if conf.mac_spoof_check:
        from cni import spoofcheck

        spoofcheck.teardown(call.container_id, call.ifname)
    if conf.ip_masq:
        from cni import masq

        masq.teardown(conf.name, call.container_id)  # needs neither the netns nor the addresses


# ---- CHECK -------------------------------------------------------------------------------


def check(call: Call) -> None:
    from cni import ipam
    from cni.link import check_interface_config
    from cni.netlink import Netlink

    conf = BridgeConf.load(call)
    prev = conf.prev_result
    if prev is None:
        raise CNIError(INVALID_NETWORK_CONFIG, "required prevResult missing")
    if conf.layer3:
        ipam.check(conf, call)
    bridge_entry = next((i for i in prev.interfaces if i.name == conf.bridge and not i.sandbox), None)
    index, container_entry = next(((n, i) for n, i in enumerate(prev.interfaces)
                                   if i.name == call.ifname and i.sandbox), (None, None))
    if container_entry is None or container_entry.sandbox != call.netns:
        found = container_entry.sandbox if container_entry else "none"
        raise CNIError(INTERNAL, f"sandbox in prevResult ({found}) does not match the netns {call.netns}")
    with Netlink() as host, Netlink(call.netns) as ctr:
        bridge = host.get_link(conf.bridge)
        if bridge is None:
            raise CNIError(INTERNAL, f"bridge {conf.bridge} in the host netns was not found")
        if bridge.kind != "bridge":
            raise CNIError(INTERNAL, f'"{conf.bridge}" is not a bridge (it is a {bridge.kind or "device"})')
        if bridge_entry is not None and bridge_entry.mac and not same_mac(bridge_entry.mac, bridge.mac):
            raise CNIError(INTERNAL, f"bridge {conf.bridge} has MAC {bridge.mac}, prevResult says {bridge_entry.mac}")
        if conf.promisc_mode and not bridge.promisc:
            raise CNIError(INTERNAL, f"bridge {conf.bridge} is configured promiscuous but is not")
        inside = ctr.get_link(call.ifname)
        if inside is None:
            raise CNIError(INTERNAL, f"interface {call.ifname} in the container was not found")
        if inside.kind != "veth":
            raise CNIError(INTERNAL, f"interface {call.ifname} in the container is not a veth")
        if container_entry.mac and not same_mac(container_entry.mac, inside.mac):
            raise CNIError(INTERNAL, f"interface {call.ifname} has MAC {inside.mac}, prevResult says {container_entry.mac}")
        peer = host.get_link_by_index(inside.link) if inside.link else None
        if peer is None or peer.kind != "veth" or peer.master != bridge.index \
                or not any(i.name == peer.name and not i.sandbox for i in prev.interfaces):
            raise CNIError(INTERNAL, f"the host end of {call.ifname} on bridge {conf.bridge} was not found")
        for entry in prev.interfaces:
            if entry.name == peer.name and entry.mac and not same_mac(entry.mac, peer.mac):
                raise CNIError(INTERNAL, f"interface {peer.name} has MAC {peer.mac}, prevResult says {entry.mac}")
    check_interface_config(call.netns, call.ifname, prev, index)


# ---- GC and STATUS -----------------------------------------------------------------------


def gc(call: Call) -> None:
    from cni import ipam, masq

    conf = BridgeConf.load_for_delete(call)
    if conf.layer3:
        ipam.gc(conf, call)
    masq.gc(conf.name, {cid for cid, _ifname in call.valid_attachments()})
    if conf.mac_spoof_check:
        from cni import spoofcheck
        from cni.netlink import Netlink

        with Netlink() as host:
            spoofcheck.gc({link.name for link in host.links()})


def status(call: Call) -> None:
    from cni import ipam

    conf = BridgeConf.load_for_delete(call)
    if conf.layer3:
        ipam.status(conf, call)


main = plugin("bridge", add=add, delete=delete, check=check, gc=gc, status=status)
