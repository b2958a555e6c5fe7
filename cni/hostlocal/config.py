"""host-local configuration: range sets, routes, requested IPs, resolv.conf.

Every problem is an invalid-configuration error (code 7) naming the range set
at fault. Range sets are numbered after runtimeConfig.ipRanges and the legacy
top-level range have been prepended, which is also the index of their
`last_reserved_ip.<i>` file.
"""
from __future__ import annotations

import ipaddress
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (about 4 ms an exec)
if TYPE_CHECKING:
    from typing import Any, Optional

from ..conf import Fields, NetConf, check_data_dir
from ..errors import invalid_config
from ..record import Record
from ..types import DNS, IPAddress, IPNetwork, Route
from ..version import at_least

DEFAULT_DATA_DIR = "/var/lib/cni/networks"


class Range(Record):
    subnet: IPNetwork
    start: IPAddress
    end: IPAddress
    gateway: IPAddress

    @property
    def family(self) -> int:
        return self.subnet.version

    def contains(self, ip: IPAddress) -> bool:
        return ip.version == self.family and self.start <= ip <= self.end

    def overlaps(self, other: "Range") -> bool:
        return self.family == other.family and self.start <= other.end and other.start <= self.end

    def excluded(self) -> set[int]:
        """Addresses of the range never handed out: its gateway, network and broadcast."""
        out = {int(self.gateway), int(self.subnet.network_address)}
        if self.family == 4:
            out.add(int(self.subnet.broadcast_address))
        return {i for i in out if int(self.start) <= i <= int(self.end)}

    def usable(self, ip: IPAddress) -> bool:
        return self.contains(ip) and int(ip) not in self.excluded()

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


class RangeSet(Record):
    ranges: list[Range]

    def __init__(self, ranges: list[Range]) -> None:
        self.ranges = ranges

    @property
    def family(self) -> int:
        return self.ranges[0].family

    def find(self, ip: IPAddress) -> Optional[Range]:
        return next((r for r in self.ranges if r.contains(ip)), None)

    def overlaps(self, other: "RangeSet") -> bool:
        return any(a.overlaps(b) for a in self.ranges for b in other.ranges)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.ranges)


class HostLocalConf(Record):
    name: str = ""
    cni_version: str = ""
    range_sets: list[RangeSet]
    routes: list[Route]
    data_dir: str = DEFAULT_DATA_DIR
    resolv_conf: str = ""
    requested: list[IPAddress]

    def __init__(self, **values: object) -> None:
        self.range_sets, self.routes, self.requested = [], [], []
        super().__init__(**values)


# ---- ranges ---------------------------------------------------------------------


def _address(text: Any, where: str) -> IPAddress:
    if not isinstance(text, str):
        raise invalid_config(f"{where} must be a string")
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise invalid_config(f"{where}: invalid IP address {text!r}") from None


def parse_range(data: Any, where: str) -> Range:
    f = Fields(data, where)
    text = f.text("subnet")
    if not text:
        raise invalid_config(f"{where}: subnet is required")
    try:
        iface = ipaddress.ip_interface(text.strip())
    except ValueError:
        raise invalid_config(f"{where}: invalid subnet {text!r}") from None
    if "/" not in text:
        raise invalid_config(f"{where}: subnet {text!r} needs a prefix length")
    subnet = iface.network
    if iface.ip != subnet.network_address:
        raise invalid_config(f"{where}: subnet {text} has host bits set; the network address is "
                             f"{subnet.network_address}/{subnet.prefixlen}")
    if subnet.prefixlen > subnet.max_prefixlen - 2:
        raise invalid_config(f"{where}: subnet {subnet} is too small to allocate from")

    first = subnet.network_address + 1
    last = subnet.broadcast_address - 1 if subnet.version == 4 else subnet.broadcast_address
    start = _address(data["rangeStart"], f"{where}.rangeStart") if f.has("rangeStart") else first
    end = _address(data["rangeEnd"], f"{where}.rangeEnd") if f.has("rangeEnd") else last
    gateway = _address(data["gateway"], f"{where}.gateway") if f.has("gateway") else first
    for key, ip in (("rangeStart", start), ("rangeEnd", end), ("gateway", gateway)):
        if ip.version != subnet.version or ip not in subnet:
            raise invalid_config(f"{where}: {key} {ip} is not in subnet {subnet}")
    if start > end:
        raise invalid_config(f"{where}: rangeStart {start} is after rangeEnd {end}")
    return Range(subnet=subnet, start=start, end=end, gateway=gateway)


def parse_range_set(data: Any, where: str) -> RangeSet:
    if not isinstance(data, list):
        raise invalid_config(f"{where} must be a list of ranges")
    if not data:
        raise invalid_config(f"{where} is empty")
    ranges = [parse_range(item, f"{where}[{i}]") for i, item in enumerate(data)]
    if len({r.family for r in ranges}) > 1:
        raise invalid_config(f"{where}: mixed address families in one range set")
    for i, a in enumerate(ranges):
        for b in ranges[i + 1:]:
            if a.overlaps(b):
                raise invalid_config(f"{where}: ranges {a} and {b} overlap")
    return RangeSet(ranges)


def validate_sets(sets: list[RangeSet], cni_version: str) -> None:
    if not sets:
        raise invalid_config("host-local: no IP ranges specified")
    for i, a in enumerate(sets):
        for j in range(i + 1, len(sets)):
            if a.overlaps(sets[j]):
                raise invalid_config(f"range set {i} ({a}) overlaps with range set {j} ({sets[j]})")
    if not at_least(cni_version, "0.3.0"):
        for family in (4, 6):
            if sum(1 for s in sets if s.family == family) > 1:
                raise invalid_config(f"CNI version {cni_version} does not support more than 1 address per family")


# ---- requested addresses ------------------------------------------------------------


def _requested(text: Any, where: str) -> IPAddress:
    """One requested address; a CIDR form ("10.1.2.5/24") names its address."""
    if not isinstance(text, str):
        raise invalid_config(f"{where} must contain strings")
    try:
        return ipaddress.ip_interface(text.strip()).ip
    except ValueError:
        raise invalid_config(f"{where}: invalid IP address {text!r}") from None


def requested_ips(conf: NetConf, env_ip: str) -> list[IPAddress]:
    """CNI_ARGS IP (comma-separated), then args.cni.ips, then runtimeConfig.ips."""
    found: list[IPAddress] = []
    for text in filter(None, (t.strip() for t in env_ip.split(","))):
        found.append(_requested(text, "CNI_ARGS IP"))
    found.extend(_requested(t, "args.cni.ips") for t in conf.cni_args().items("ips"))
    found.extend(_requested(t, "runtimeConfig.ips") for t in Fields(conf.runtime_config, "runtimeConfig").items("ips"))
    unique: list[IPAddress] = []
    for ip in found:
        if ip not in unique:
            unique.append(ip)
    return unique


def assign_requested(sets: list[RangeSet], requested: list[IPAddress]) -> dict[int, IPAddress]:
    """Map each requested address to the one range set it must come from."""
    chosen: dict[int, IPAddress] = {}
    for ip in requested:
        index = next((i for i, s in enumerate(sets) if s.find(ip)), None)
        if index is None:
            raise invalid_config(f"requested IP {ip} is not in any range set")
        rng = sets[index].find(ip)
        assert rng is not None
        if ip == rng.gateway:
            raise invalid_config(f"requested IP {ip} is the gateway of range set {index}")
        if not rng.usable(ip):
            raise invalid_config(f"requested IP {ip} is the network or broadcast address of {rng.subnet}")
        if index in chosen:
            raise invalid_config(f"requested IPs {chosen[index]} and {ip} both fall in range set {index}; "
                                 "one address per range set")
        chosen[index] = ip
    return chosen


# ---- resolv.conf ------------------------------------------------------------------


def read_resolv_conf(path: str) -> DNS:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError as exc:
        raise invalid_config(f"could not read resolvConf {path}", exc.strerror or str(exc)) from None
    dns = DNS()
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith(("#", ";")):
            continue
        key, values = words[0], words[1:]
        if key == "nameserver" and values:
            dns.nameservers.append(values[0])
        elif key == "domain" and values:
            dns.domain = values[0]
        elif key == "search":
            dns.search.extend(values)
        elif key == "options":
            dns.options.extend(values)
    return dns


# ---- the whole configuration --------------------------------------------------------


def parse(raw: dict, cni_version: str, env_ip: str = "", strict: bool = True) -> HostLocalConf:
    """The host-local configuration of a call. `strict=False` (DEL, GC) reads only
    what releasing needs, so a later-broken range never blocks cleanup."""
    conf = NetConf.parse(raw, cni_version)
    ipam = Fields(conf.ipam, "ipam")
    out = HostLocalConf(name=conf.name, cni_version=cni_version,
                        data_dir=check_data_dir(ipam.text("dataDir", DEFAULT_DATA_DIR)))
    if not strict:
        return out

    sets: list[RangeSet] = []
    runtime_ranges = Fields(conf.runtime_config, "runtimeConfig").items("ipRanges")
    sets.extend(parse_range_set(s, f"runtimeConfig.ipRanges[{i}]") for i, s in enumerate(runtime_ranges))
    if ipam.has("subnet"):
        legacy = {k: conf.ipam[k] for k in ("subnet", "rangeStart", "rangeEnd", "gateway") if k in conf.ipam}
        sets.append(parse_range_set([legacy], "ipam (top-level subnet)"))
    sets.extend(parse_range_set(s, f"ipam.ranges[{i}]") for i, s in enumerate(ipam.items("ranges")))
    validate_sets(sets, cni_version)
    out.range_sets = sets

    for i, item in enumerate(ipam.items("routes")):
        try:
            out.routes.append(Route.from_dict(item))
        except ValueError as exc:
            raise invalid_config(f"ipam.routes[{i}]: {exc}") from None
    out.resolv_conf = ipam.text("resolvConf")
    out.requested = requested_ips(conf, env_ip)
    return out
