"""Traffic shaping of a container's veth with token bucket filters, over netlink.

Traffic towards the container (its ingress) leaves the host through the host
end of its veth: a TBF as that link's root qdisc limits it. Traffic from the
container (its egress) enters the host through the same link, where no
shaping qdisc can hold it back; so, as the reference does, an ingress qdisc
on the host end redirects every packet (u32 match-all, mirred egress
redirect) to an `ifb` device, whose root TBF limits it. The ifb is named from
a hash of network and container (`bwp` + 12 hex digits), so DEL finds it
without the netns or prevResult.

With `shapedSubnets` (only traffic to those is limited) or `unshapedSubnets`
(traffic to those is not), the root qdisc is an HTB instead, as in newer
reference releases: class 1:30 carries the limit (ceiling twice the rate),
class 1:1 is practically unlimited, and u32 filters on the destination address
send the listed subnets to one class while the default class takes the rest.

Rates and bursts come in bits (per second) as the configuration gives them;
the kernel takes bytes and, for the bucket size, scheduler ticks. The numbers
are computed exactly as the reference computes them, so both plugins program
identical qdiscs.
"""
from __future__ import annotations

from .digest import sha512_hex
from .errors import INTERNAL, CNIError
from .netlink import Netlink
from .netlink.qdisc import INGRESS_HANDLE, TC_H_INGRESS, TC_H_ROOT, QdiscNetlink, make_handle
from .record import Record

LATENCY_USEC = 25_000.0  # the bucket's queue holds 25 ms worth of the rate, as in the reference
IFB_PREFIX = "bwp"
IFB_NAME_LENGTH = 15
MIN_IFB_TXQLEN = 1000  # an ifb with txqueuelen 0 drops under the tbf: the reference (HEAD) uses at least 1000
ROOT_HANDLE = make_handle(1, 0)
SHAPED_CLASS, UNSHAPED_CLASS = make_handle(1, 0x30), make_handle(1, 1)
UNCAPPED_RATE = 100_000_000_000  # bytes per second: the reference's "no limit" class
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD


class Limits(Record):
    """One direction's limit, in bits per second and bits, and the subnets it applies to
    (all when `subnets` is empty) or does not apply to (`exclude`)."""

    rate: int = 0
    burst: int = 0
    subnets: tuple = ()
    exclude: bool = False

    def __bool__(self) -> bool:
        return self.rate > 0 and self.burst > 0


class Tbf(Record):
    """A TBF's kernel parameters: bytes per second, bytes, ticks."""

    rate: int = 0
    limit: int = 0
    buffer: int = 0


def ifb_name(network: str, container_id: str) -> str:
    return (IFB_PREFIX + sha512_hex(network + container_id))[:IFB_NAME_LENGTH]


def tick_in_usec() -> float:
    """Scheduler ticks per microsecond, from /proc/net/psched (the kernel's own conversion)."""
    try:
        with open("/proc/net/psched") as f:
            t2us, us2t, clock_res = (int(x, 16) for x in f.read().split()[:3])
    except (OSError, ValueError):
        t2us, us2t, clock_res = 1000, 64, 1_000_000  # the values of every kernel since 2.6.x
    return t2us / us2t * (clock_res / 1_000_000)


def _u32(value: float) -> int:
    return int(value) & 0xFFFFFFFF


def tbf_for(limits: Limits, ticks: float) -> Tbf:
    """The reference's arithmetic, float conversions and truncations included."""
    rate = limits.rate // 8
    burst = _u32(limits.burst // 8)
    buffer = _u32(_u32(burst * 1_000_000 / rate) * ticks)
    limit = _u32(rate * LATENCY_USEC / 1_000_000) + burst
    return Tbf(rate=rate, limit=_u32(limit), buffer=buffer)


# ---- finding the host end ------------------------------------------------------------


def host_veth(netns: str, ifname: str, host_names: list[str]) -> str:
    """The host end of the container's `ifname`: its veth peer, which prevResult must list."""
    with Netlink(netns) as ctr:  # a missing netns is a CNI error already
        link = ctr.get_link(ifname)
    if link is None or link.kind != "veth" or link.link <= 0:
        raise CNIError(INTERNAL, f"container interface {ifname} has no veth peer")
    with Netlink() as host:
        peer = host.get_link_by_index(link.link)
    if peer is None:
        raise CNIError(INTERNAL, f"veth peer with index {link.link} is not in host ns")
    if peer.name not in host_names:
        raise CNIError(INTERNAL, "no veth peer of container interface found in host ns")
    return peer.name


# ---- setting up --------------------------------------------------------------------------


def _require(nl: Netlink, name: str):
    link = nl.get_link(name)
    if link is None:
        raise CNIError(INTERNAL, f'failed to find link "{name}"')
    return link


def subnet_keys(subnet) -> list[tuple[int, int, int]]:
    """u32 (mask, value, offset) matching the destination address in `subnet`; one empty key for /0."""
    offset, words = (16, 1) if subnet.version == 4 else (24, 4)
    mask, value = int(subnet.netmask), int(subnet.network_address)
    keys = []
    for i in range(words):
        shift = 32 * (words - 1 - i)
        word_mask = (mask >> shift) & 0xFFFFFFFF
        if word_mask:
            keys.append((word_mask, (value >> shift) & 0xFFFFFFFF, offset + 4 * i))
    return keys or [(0, 0, 0)]


def shape(nl: QdiscNetlink, link_name: str, limits: Limits, ticks: float) -> None:
    """The root qdisc that limits what `link_name` sends: a TBF, or an HTB when subnets are given."""
    index = _require(nl, link_name).index
    tbf = tbf_for(limits, ticks)
    if not limits.subnets:
        nl.add_tbf(index, tbf.rate, tbf.limit, tbf.buffer)
        return
    nl.add_htb(index, (SHAPED_CLASS if limits.exclude else UNSHAPED_CLASS) & 0xFFFF)
    nl.add_htb_class(index, SHAPED_CLASS, ROOT_HANDLE, tbf.rate, 2 * tbf.rate, tbf.buffer, tbf.buffer)
    nl.add_htb_class(index, UNSHAPED_CLASS, ROOT_HANDLE, UNCAPPED_RATE, UNCAPPED_RATE)
    target = UNSHAPED_CLASS if limits.exclude else SHAPED_CLASS
    for subnet in limits.subnets:
        v4 = subnet.version == 4
        nl.add_u32_classifier(index, ROOT_HANDLE, 16 if v4 else 15, ETH_P_IP if v4 else ETH_P_IPV6, target,
                              subnet_keys(subnet))


def shape_ingress(nl: QdiscNetlink, host_name: str, limits: Limits, ticks: float) -> None:
    """Root qdisc on the host end: what the container receives."""
    shape(nl, host_name, limits, ticks)


def create_ifb(nl: Netlink, name: str, host_name: str) -> str:
    """The ifb, up, with the host end's MTU; its MAC for the result."""
    host = _require(nl, host_name)
    nl.create_ifb(name, mtu=host.mtu, txqlen=max(host.txqlen, MIN_IFB_TXQLEN))
    ifb = _require(nl, name)
    nl.set_link(ifb.index, up=True)
    return ifb.mac


def add_ingress_qdisc(nl: QdiscNetlink, host_name: str) -> None:
    nl.add_ingress_qdisc(_require(nl, host_name).index)


def redirect_to_ifb(nl: QdiscNetlink, host_name: str, ifb: str) -> None:
    """A filter on the host end's ingress qdisc sending all it receives to the ifb."""
    host, dev = _require(nl, host_name), _require(nl, ifb)
    nl.add_redirect_filter(host.index, INGRESS_HANDLE, dev.index)


def shape_ifb(nl: QdiscNetlink, ifb: str, limits: Limits, ticks: float) -> None:
    """Root qdisc on the ifb: what the container sends."""
    shape(nl, ifb, limits, ticks)


def _ours(q) -> bool:
    """Our root qdisc (tbf or htb 1:) or the ingress qdisc."""
    if q.parent == TC_H_ROOT:
        return q.kind in ("tbf", "htb") and q.handle == ROOT_HANDLE
    return q.kind == "ingress" and q.parent == TC_H_INGRESS


def remove_qdisc(host_name: str, root: bool) -> None:
    """Undo of one step: the host end's root qdisc (`root`) or its ingress qdisc, when there."""
    with QdiscNetlink() as nl:
        link = nl.get_link(host_name)
        if link is not None:
            for q in nl.qdiscs(link.index):
                if _ours(q) and (q.parent == TC_H_ROOT) == root:
                    nl.delete_qdisc(link.index, q.handle, q.parent)


def delete_ifb(name: str) -> None:
    with QdiscNetlink() as nl:
        link = nl.get_link(name)
        if link is not None and link.kind == "ifb":
            nl.delete_link(link.index)


# ---- tearing down ------------------------------------------------------------------------


def remove_host_shaping(nl: QdiscNetlink, host_index: int) -> None:
    """The root TBF or HTB (handle 1:) and the ingress qdisc of a host end; absent is fine."""
    for q in nl.qdiscs(host_index):
        if _ours(q):
            nl.delete_qdisc(host_index, q.handle, q.parent)


def redirecting_links(nl: QdiscNetlink, ifb_index: int) -> list[int]:
    """Links whose ingress qdisc redirects to the ifb: the host ends that the ifb shapes."""
    found = []
    for q in nl.qdiscs():
        if q.kind == "ingress" and q.parent == TC_H_INGRESS:
            if any(ifb_index in f.redirect_to for f in nl.filters(q.ifindex, q.handle)):
                found.append(q.ifindex)
    return found


def teardown(network: str, container_id: str, host_names: list[str]) -> None:
    """Remove the ifb and, where still there, the qdiscs on the host end; nothing there is success.

    The host end is found by the redirect to the ifb (egress shaping), else by
    name from prevResult, only when it is a veth (never a link we did not shape).
    """
    with QdiscNetlink() as nl:
        ifb = nl.get_link(ifb_name(network, container_id))
        hosts = set(redirecting_links(nl, ifb.index)) if ifb is not None and ifb.kind == "ifb" else set()
        for name in host_names:
            link = nl.get_link(name)
            if link is not None and link.kind == "veth":
                hosts.add(link.index)
        for index in sorted(hosts):
            remove_host_shaping(nl, index)
        if ifb is not None and ifb.kind == "ifb":
            nl.delete_link(ifb.index, missing_ok=True)


# ---- checking -----------------------------------------------------------------------------


def check_shaping(nl: QdiscNetlink, link_name: str, limits: Limits, ticks: float) -> None:
    """The root qdisc of `link_name` is what `shape` makes for `limits`."""
    link = nl.get_link(link_name)
    if link is None:
        raise CNIError(INTERNAL, f'failed to find link "{link_name}"')
    want = tbf_for(limits, ticks)
    roots = [q for q in nl.qdiscs(link.index) if q.parent == TC_H_ROOT]
    kind = "htb" if limits.subnets else "tbf"
    if not roots or roots[0].kind != kind:
        raise CNIError(INTERNAL, f"no {kind} qdisc on {link_name}")
    if kind == "tbf":
        got = roots[0]
        for what in ("rate", "limit", "buffer"):
            if getattr(got, what) != getattr(want, what):
                raise CNIError(INTERNAL, f"tbf on {link_name}: {what} {getattr(got, what)}, want {getattr(want, what)}")
        return
    default = (SHAPED_CLASS if limits.exclude else UNSHAPED_CLASS) & 0xFFFF
    if roots[0].default_class != default:
        raise CNIError(INTERNAL, f"htb on {link_name}: default class {roots[0].default_class:x}, want {default:x}")
    shaped = [c for c in nl.classes(link.index) if c.handle == SHAPED_CLASS]
    if not shaped or (shaped[0].rate, shaped[0].ceil, shaped[0].buffer) != (want.rate, 2 * want.rate, want.buffer):
        raise CNIError(INTERNAL, f"htb on {link_name}: the shaped class does not match the limits")
    target = UNSHAPED_CLASS if limits.exclude else SHAPED_CLASS
    found = {tuple(f.keys) for f in nl.filters(link.index, ROOT_HANDLE) if f.classid == target}
    for subnet in limits.subnets:
        if tuple(subnet_keys(subnet)) not in found:
            raise CNIError(INTERNAL, f"htb on {link_name}: no filter for {subnet}")


def check_redirect(nl: QdiscNetlink, host_name: str, ifb: str) -> None:
    host, dev = nl.get_link(host_name), nl.get_link(ifb)
    if host is None or dev is None:
        raise CNIError(INTERNAL, f'failed to find link "{host_name if host is None else ifb}"')
    if host.index not in redirecting_links(nl, dev.index):
        raise CNIError(INTERNAL, f"no redirect from {host_name} to {ifb}")
