"""Port mapping (the `portmap` plugin): host ports forwarded to a container.

The configuration and the mappings are read and checked here; the rules are
written by `cni.portmap.iptables` or `cni.portmap.nftables`, loaded only when
rules are touched. Every name and comment the rules carry is derived from
network and container, so DEL and GC need neither the netns nor prevResult.
"""
from __future__ import annotations

import ipaddress

from ..conf import Fields, NetConf
from ..errors import INTERNAL, CNIError, invalid_config
from ..record import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (about 4 ms an exec)

if TYPE_CHECKING:
    from ..skel import Call
    from ..types import IPInterface, Result

IPTABLES, NFTABLES = "iptables", "nftables"
PROTOCOLS = ("tcp", "udp", "sctp")
DEFAULT_MARK_BIT = 13  # Kubernetes uses 14 and 15, Calico 20-31


class PortMapping(Record):
    """One `portMappings` entry; `host_ip` is "" when not given."""

    host_port: int = 0
    container_port: int = 0
    protocol: str = "tcp"
    host_ip: str = ""

    def host_family(self) -> int:
        return ipaddress.ip_address(self.host_ip).version if self.host_ip else 0

    def applies_to(self, family: int) -> bool:
        """A mapping with a host address serves only that address's family."""
        return not self.host_ip or self.host_family() == family

    def destination(self) -> str:
        """The host address to match, or "" for any local address (none given, or 0.0.0.0 / ::)."""
        if not self.host_ip or ipaddress.ip_address(self.host_ip).is_unspecified:
            return ""
        return self.host_ip


def parse_mappings(items: list) -> list[PortMapping]:
    """`runtimeConfig.portMappings`; a bad port, protocol or host address is code 7."""
    mappings = []
    for n, item in enumerate(items):
        f = Fields(item, f"runtimeConfig.portMappings[{n}]")
        host_port = f.number("hostPort", minimum=1, maximum=65535) if f.has("hostPort") else 0
        container_port = f.number("containerPort", minimum=1, maximum=65535) if f.has("containerPort") else 0
        if not host_port:
            raise invalid_config(f"Invalid host port number: {host_port}", f"{f.where}: hostPort must be 1 to 65535")
        if not container_port:
            raise invalid_config(f"Invalid container port number: {container_port}",
                                 f"{f.where}: containerPort must be 1 to 65535")
        protocol = f.text("protocol").lower()
        if protocol not in PROTOCOLS:
            raise invalid_config(f'invalid protocol "{f.text("protocol")}" in {f.where}: want tcp, udp or sctp')
        host_ip = f.text("hostIP").strip()
        if host_ip:
            try:
                host_ip = str(ipaddress.ip_address(host_ip))
            except ValueError:
                raise invalid_config(f'invalid hostIP "{host_ip}" in {f.where}') from None
        mappings.append(PortMapping(host_port=host_port, container_port=container_port,
                                    protocol=protocol, host_ip=host_ip))
    return mappings


def _conditions_backend(conditions: list[str]) -> str:
    """iptables matches start with a hyphen ("-d", "-m") or a negation ("!", "-s"); nftables expressions never do.

    (The reference takes a leading "!" for nftables, and so refuses negated iptables conditions.)
    """
    if not conditions or not conditions[0]:
        return ""
    return IPTABLES if conditions[0].startswith("-") or conditions[0] == "!" else NFTABLES


def detect_backend() -> str:
    """iptables unless only nft is installed, as the reference chooses."""
    from ..netfilter import ipt_available, nft_available

    if not ipt_available(4) and nft_available():
        return NFTABLES
    return IPTABLES


class PortmapConf(NetConf):
    snat: bool = True
    masq_all: bool = False
    mark_bit: int = DEFAULT_MARK_BIT
    external_set_mark_chain: str = ""  # set: that chain marks for masquerading, we create none
    conditions_v4: list
    conditions_v6: list
    backend: str = IPTABLES
    mappings: list

    def __init__(self, **values: object) -> None:
        self.conditions_v4, self.conditions_v6, self.mappings = [], [], []
        super().__init__(**values)

    @classmethod
    def load(cls, call: Call, *, lenient: bool = False) -> "PortmapConf":
        """The configuration; `lenient` (DEL, GC) skips the mappings' checks: they are not needed to clean up."""
        raw = call.config
        f = Fields(raw)
        if f.has("markMasqBit") and f.has("externalSetMarkChain"):
            raise invalid_config("Cannot specify externalSetMarkChain and markMasqBit")
        conf = cls(**cls.common(raw, call.cni_version),
                   snat=f.flag("snat", True),
                   masq_all=f.flag("masqAll"),
                   mark_bit=f.number("markMasqBit", DEFAULT_MARK_BIT, minimum=0, maximum=31),
                   external_set_mark_chain=f.text("externalSetMarkChain"),
                   conditions_v4=f.texts("conditionsV4"),
                   conditions_v6=f.texts("conditionsV6"))
        if f.has("externalSetMarkChain") and not conf.external_set_mark_chain:
            raise invalid_config("externalSetMarkChain must not be empty")
        conf.backend = conf._choose_backend(f)
        items = Fields(conf.runtime_config, "runtimeConfig").items("portMappings")
        if lenient:
            conf.mappings = items  # only their presence matters to DEL
        else:
            conf.mappings = parse_mappings(items)
        return conf

    def _choose_backend(self, f: Fields) -> str:
        requested = f.text("backend")
        if requested and requested not in (IPTABLES, NFTABLES):
            raise invalid_config(f'unrecognized backend "{requested}": want iptables or nftables')
        specific = {IPTABLES: [], NFTABLES: []}
        if self.external_set_mark_chain:
            specific[IPTABLES].append("externalSetMarkChain")
        for key, conditions in (("conditionsV4", self.conditions_v4), ("conditionsV6", self.conditions_v6)):
            kind = _conditions_backend(conditions)
            if kind:
                specific[kind].append(key)
        backend = requested or detect_backend()
        wrong = NFTABLES if backend == IPTABLES else IPTABLES
        if specific[wrong]:
            raise invalid_config(f"{backend} backend was requested but configuration contains "
                                 f"{wrong}-specific options {specific[wrong]}")
        return backend

    def conditions(self, family: int) -> list[str]:
        return self.conditions_v6 if family == 6 else self.conditions_v4

    def require_prev_result(self, message: str = "must be called as chained plugin",
                            details: str = "portmap needs a prevResult") -> Result:
        return super().require_prev_result(message, details)


def container_addresses(prev: Result, ifname: str) -> dict[int, IPInterface]:
    """The first address of each family on the container's interface `ifname` (an address
    naming no interface counts; one of a host-side interface does not)."""
    found: dict[int, IPInterface] = {}
    for ip in prev.ips_of(ifname, in_sandbox=True):
        found.setdefault(ip.family, ip.address)
    return found


def backend_module(backend: str):
    if backend == NFTABLES:
        from . import nftables as module
    else:
        from . import iptables as module
    return module


# ---- host settings around the rules -----------------------------------------------


def enable_localnet_routing(container_ip: ipaddress.IPv4Address) -> None:
    """Let 127.0.0.1-sourced (hairpin) traffic leave through the interface that routes to the container.

    The kernel drops 127/8 crossing a routing boundary as martian unless the
    outgoing interface has route_localnet. Shared by every container behind that
    interface, so it is never turned off again (as in the reference).
    """
    from .. import sysctl
    from ..netlink import AF_INET, Netlink

    with Netlink() as nl:
        routes = [r for r in nl.routes(AF_INET) if r.oif and container_ip in r.dst]
        if not routes:
            return
        best = max(routes, key=lambda r: (r.dst.prefixlen, -r.priority))
        link = nl.get_link_by_index(best.oif)
    if link is not None:
        try:
            sysctl.set(f"/proc/sys/net/ipv4/conf/{link.name}/route_localnet", "1")
        except OSError as exc:
            raise CNIError(INTERNAL, f"unable to enable route_localnet on {link.name}: {exc.strerror}") from None


def flush_udp_conntrack(mappings: list[PortMapping], family: int) -> None:
    """Forget UDP flows to the mapped host ports: a flow tracked before the rules existed would bypass them.

    Over ctnetlink, as the reference does it; like the reference, a failure here
    does not fail ADD (it is reported on stderr).
    """
    ports = sorted({m.host_port for m in mappings if m.protocol == "udp" and m.applies_to(family)})
    if not ports:
        return
    import sys

    from ..netlink.conntrack import IPPROTO_UDP, Conntrack
    from ..netlink.core import AF_INET, AF_INET6

    try:
        with Conntrack() as ct:
            for port in ports:
                ct.delete_by_destination_port(AF_INET6 if family == 6 else AF_INET, IPPROTO_UDP, port)
    except OSError as exc:
        print(f"portmap: failed to delete stale UDP conntrack entries: {exc}", file=sys.stderr)
