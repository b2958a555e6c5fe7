"""bandwidth (chained): limit the rate of a container's traffic in each direction.

ADD finds the host end of the container's veth (the peer of CNI_IFNAME, listed
in prevResult) and shapes it with token bucket filters (see cni/bandwidth.py):
ingress with a TBF on the host end, egress through an ifb device. The result is
prevResult, plus the ifb when egress is shaped. A failed ADD removes what it made.
DEL removes the ifb and the qdiscs on the host end, also without the netns.
CHECK compares the qdiscs with the configuration.

`shapedSubnets` / `unshapedSubnets` switch the root qdiscs to HTB classes that
limit only (or all but) traffic to those subnets. Limits come from the top-level keys or, when none of those is given, from the
runtime's `bandwidth` capability (runtimeConfig.bandwidth).
"""
from __future__ import annotations

from cni import bandwidth
from cni.bandwidth import Limits
from cni.conf import Fields, NetConf
from cni.errors import invalid_config
from cni.rollback import Rollback
from cni.skel import Call, Plugin
from cni.types import Interface, Result
from cni.version import starting_from

RATE_KEYS = ("ingressRate", "ingressBurst", "egressRate", "egressBurst")
MAX_BURST = 8 * (2**32 - 1)  # the kernel keeps the bucket in a u32 of bytes


def _subnets(f: Fields, key: str) -> tuple:
    import ipaddress

    found = []
    for text in f.texts(key):
        try:
            found.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise invalid_config(f"bad subnet {text!r} in {key}") from None
    return tuple(found)


def _limits(f: Fields, direction: str, subnets: tuple, exclude: bool) -> Limits:
    rate = f.number(f"{direction}Rate", minimum=0)
    burst = f.number(f"{direction}Burst", minimum=0)
    if rate and not burst:
        raise invalid_config("if rate is set, burst must also be set", f"{direction}Rate {rate}")
    if burst and not rate:
        raise invalid_config("if burst is set, rate must also be set", f"{direction}Burst {burst}")
    if burst >= MAX_BURST:
        raise invalid_config("burst cannot be more than 4GB", f"{direction}Burst {burst}")
    if (rate or burst) and (rate < 8 or burst < 8):
        raise invalid_config(f"{direction}Rate and {direction}Burst are bits: at least 8 (one byte)")
    return Limits(rate=rate, burst=burst, subnets=subnets, exclude=exclude)


class BandwidthConf(NetConf):
    ingress: Limits
    egress: Limits

    @classmethod
    def load(cls, call: Call, *, lenient: bool = False) -> "BandwidthConf":
        """The configuration; `lenient` (DEL) accepts it without prevResult."""
        top = Fields(call.config)
        source = top
        if not any(top.has(k) for k in RATE_KEYS):
            runtime = Fields(call.config.get("runtimeConfig"), "runtimeConfig")
            if runtime.has("bandwidth"):
                source = runtime.sub("bandwidth")
        shaped, unshaped = _subnets(source, "shapedSubnets"), _subnets(source, "unshapedSubnets")
        if shaped and unshaped:
            raise invalid_config("unshapedSubnets and shapedSubnets cannot be both specified, "
                                 "one of them should be discarded")
        subnets, exclude = (unshaped, True) if unshaped else (shaped, False)
        conf = cls(**cls.common(call.config, call.cni_version), ingress=_limits(source, "ingress", subnets, exclude),
                   egress=_limits(source, "egress", subnets, exclude))
        if conf.prev_result is None and not lenient:
            raise invalid_config("must be called as chained plugin (no prevResult)")
        return conf

    def host_names(self) -> list[str]:
        return [i.name for i in self.prev_result.interfaces if not i.sandbox] if self.prev_result else []


def add(call: Call) -> Result:
    conf = BandwidthConf.load(call)
    result = conf.prev_result
    if not conf.ingress and not conf.egress:
        return result
    from cni.netlink.qdisc import QdiscNetlink

    host = bandwidth.host_veth(call.netns, call.ifname, conf.host_names())
    ticks = bandwidth.tick_in_usec()
    with Rollback() as undo, QdiscNetlink() as nl:
        if conf.ingress:
            bandwidth.shape_ingress(nl, host, conf.ingress, ticks)
            undo.push(lambda: bandwidth.remove_qdisc(host, root=True), "remove the host's root qdisc", stage="ingress")
        if conf.egress:
            ifb = bandwidth.ifb_name(conf.name, call.container_id)
            mac = bandwidth.create_ifb(nl, ifb, host)
            undo.push(lambda: bandwidth.delete_ifb(ifb), "delete the ifb", stage="ifb")
            bandwidth.add_ingress_qdisc(nl, host)
            undo.push(lambda: bandwidth.remove_qdisc(host, root=False), "remove the redirect", stage="redirect")
            bandwidth.redirect_to_ifb(nl, host, ifb)
            bandwidth.shape_ifb(nl, ifb, conf.egress, ticks)
            result.interfaces.append(Interface(name=ifb, mac=mac))
    return result


def delete(call: Call) -> None:
    conf = BandwidthConf.load(call, lenient=True)
    shaped = conf.ingress or conf.egress
    bandwidth.teardown(conf.name, call.container_id, conf.host_names() if shaped else [])


def check(call: Call) -> None:
    conf = BandwidthConf.load(call)
    if not conf.ingress and not conf.egress:
        return
    from cni.netlink.qdisc import QdiscNetlink

    host = bandwidth.host_veth(call.netns, call.ifname, conf.host_names())
    ticks = bandwidth.tick_in_usec()
    with QdiscNetlink() as nl:
        if conf.ingress:
            bandwidth.check_shaping(nl, host, conf.ingress, ticks)
        if conf.egress:
            ifb = bandwidth.ifb_name(conf.name, call.container_id)
            bandwidth.check_shaping(nl, ifb, conf.egress, ticks)
            bandwidth.check_redirect(nl, host, ifb)


main = Plugin("bandwidth", add=add, delete=delete, check=check,
              supported=starting_from("0.3.0"))  # as the reference; plugins/registry.py FIRST_VERSION
