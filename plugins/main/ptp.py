"""ptp: a veth pair per container, routed point-to-point through the host.

ADD creates the pair (host end `veth<8 hex>`), asks IPAM for addresses and
configures the container end so that everything, even a neighbour in the same
subnet, goes via the gateway; the host end carries each gateway as a host
address and a host route to each container address. With ipMasq, traffic
leaving the subnet is masqueraded. Any failure undoes every step.
DEL releases the addresses, deletes the pair and removes the masquerade rules,
also when the netns is already gone. CHECK compares both ends with the previous
result.
"""
from __future__ import annotations


from cni import ipam
from cni.conf import Fields, NetConf
from cni.errors import invalid_config
from cni.link import (
    add_gateway_side,
    as_interface,
    check_interface_config,
    check_point_to_point,
    configure_interface,
    container_interface_index,
    delete_link_if_present,
    enable_forwarding,
    route_subnets_via_gateway,
    setup_veth,
)
from cni.rollback import Rollback, checkpoint
from cni.skel import Call, plugin
from cni.types import Result


class PtpConf(NetConf):
    ip_masq: bool = False
    ip_masq_backend: str = ""  # "" lets cni.masq choose
    mtu: int = 0  # 0: the kernel default

    @classmethod
    def load(cls, call: Call, *, lenient: bool = False) -> "PtpConf":
        """The configuration; `lenient` (DEL, GC) accepts one without ipam."""
        f = Fields(call.config)
        conf = cls(**cls.common(call.config, call.cni_version),
                   ip_masq=f.flag("ipMasq"),
                   ip_masq_backend=f.text("ipMasqBackend"),
                   mtu=f.number("mtu", minimum=0, maximum=65535))
        if not conf.ipam_type and not lenient:
            raise invalid_config("ptp needs an ipam configuration")
        return conf


def add(call: Call) -> Result:
    conf = PtpConf.load(call)
    if conf.ip_masq:
        from cni import masq  # iptables/nft tooling: loaded only when masquerading

        backend = masq.choose_backend(conf.ip_masq_backend)

    with Rollback() as undo:
        host, container = setup_veth(call.netns, call.ifname, mtu=conf.mtu)
        undo.push(lambda: delete_link_if_present(call.netns, call.ifname), "delete the veth pair", stage="veth")

        result = ipam.lease(conf, call, undo)
        result.interfaces = [as_interface(host), as_interface(container, sandbox=call.netns)]
        for ip in result.ips:
            ip.interface = 1

        enable_forwarding({ip.family for ip in result.ips})
        add_gateway_side(host.name, result.ips)  # also brings the host end up: the container end needs carrier
        configure_interface(call.netns, call.ifname, result, 1)  # returns after IPv6 DAD: the routes
        route_subnets_via_gateway(call.netns, call.ifname, result.ips)  # below use the addresses as source

        if conf.ip_masq:
            undo.push(lambda: masq.teardown(conf.name, call.container_id), "remove masquerading")
            masq.setup(conf.name, call.container_id, [ip.address for ip in result.ips], backend)
            checkpoint("masquerade")

    result.dns = conf.dns
    return result


def delete(call: Call) -> None:
    conf = PtpConf.load(call, lenient=True)
    ipam.delete(conf, call)
    delete_link_if_present(call.netns, call.ifname)  # the host end goes with it
    if conf.ip_masq:
        from cni import masq

        masq.teardown(conf.name, call.container_id)  # needs neither the netns nor the addresses


def check(call: Call) -> None:
    conf = PtpConf.load(call)
    ipam.check(conf, call)
    index = container_interface_index(conf.prev_result, call.ifname, call.netns)
    check_interface_config(call.netns, call.ifname, conf.prev_result, index)
    check_point_to_point(call.netns, call.ifname, conf.prev_result, index)


def gc(call: Call) -> None:
    conf = PtpConf.load(call, lenient=True)
    ipam.gc(conf, call)
    if conf.ip_masq:
        from cni import masq

        masq.gc(conf.name, {container_id for container_id, _ in call.valid_attachments()})


def status(call: Call) -> None:
    ipam.status(PtpConf.load(call), call)


main = plugin("ptp", add=add, delete=delete, check=check, gc=gc, status=status)
