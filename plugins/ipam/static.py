"""static IPAM: exactly the addresses, routes and DNS the configuration names.

Nothing is reserved, so DEL and GC have nothing to free. Addresses come from
`ipam.addresses`, plus CNI_ARGS `IP` (with `GATEWAY` for those); a non-empty
`args.cni.ips` replaces them all, and a non-empty `runtimeConfig.ips` replaces
those in turn, as the reference does.
"""
from __future__ import annotations

import ipaddress

from cni.conf import Fields, NetConf
from cni.errors import INTERNAL, INVALID_NETWORK_CONFIG, CNIError, invalid_config
from cni.record import Record
from cni.skel import Call, plugin
from cni.types import DNS, IPAddress, IPConfig, IPInterface, Result, Route
from cni.version import at_least


class StaticConf(Record):
    addresses: list[IPConfig]
    routes: list[Route]
    dns: DNS

    def __init__(self, addresses: list[IPConfig], routes: list[Route], dns: DNS) -> None:
        self.addresses, self.routes, self.dns = addresses, routes, dns


def _cidr(text: object, where: str) -> IPInterface:
    """An address with its prefix length; a plain IP is refused, as by the reference."""
    if not isinstance(text, str):
        raise invalid_config(f"{where} must be a string in CIDR notation")
    stripped = text.strip()
    try:
        if "/" not in stripped:
            raise ValueError
        return ipaddress.ip_interface(stripped)
    except ValueError:
        raise invalid_config(f"{where}: invalid CIDR address {text!r} (want address/prefix)") from None


def _gateway(text: object, address: IPInterface, where: str) -> IPAddress:
    if not isinstance(text, str):
        raise invalid_config(f"{where} must be a string")
    try:
        gateway = ipaddress.ip_address(text.strip())
    except ValueError:
        raise invalid_config(f"{where}: invalid IP address {text!r}") from None
    if gateway.version != address.version:
        raise invalid_config(f"{where}: {gateway} is not an IPv{address.version} address like {address}")
    return gateway


def _configured(ipam: Fields) -> list[IPConfig]:
    out = []
    for i, item in enumerate(ipam.items("addresses")):
        entry = Fields(item, f"ipam.addresses[{i}]")
        address = _cidr(entry.data.get("address"), f"{entry.where}.address")
        gateway = _gateway(entry.data["gateway"], address, f"{entry.where}.gateway") if entry.has("gateway") else None
        out.append(IPConfig(address=address, gateway=gateway))
    return out


def _from_cni_args(call: Call) -> list[IPConfig]:
    """CNI_ARGS IP; each GATEWAY goes to the IP addresses whose subnet holds it (later wins)."""
    env = call.cni_args(("IP", "GATEWAY"))
    out = [IPConfig(address=_cidr(text, "CNI_ARGS IP"))
           for text in (t.strip() for t in env.get("IP", "").split(",")) if text]
    for text in (t.strip() for t in env.get("GATEWAY", "").split(",")):
        if not text:
            continue
        try:
            gateway = ipaddress.ip_address(text)
        except ValueError:
            raise invalid_config(f"CNI_ARGS GATEWAY: invalid IP address {text!r}") from None
        for ip in out:
            if gateway in ip.address.network:
                ip.gateway = gateway
    return out


def _listed(values: list, where: str) -> list[IPConfig]:
    return [IPConfig(address=_cidr(text, f"{where}[{i}]")) for i, text in enumerate(values)]


def load(call: Call, *, env_args: bool = True) -> StaticConf:
    """The configuration; every problem is code 7 naming the field at fault."""
    conf = NetConf.parse(call.config, call.cni_version)
    if "ipam" not in call.config or call.config["ipam"] is None:
        raise CNIError(INVALID_NETWORK_CONFIG, "IPAM config missing 'ipam' key")
    ipam = Fields(conf.ipam, "ipam")

    addresses = _configured(ipam) + (_from_cni_args(call) if env_args else [])
    args_ips = conf.cni_args().items("ips")
    if args_ips:
        addresses = _listed(args_ips, "args.cni.ips")
    runtime_ips = Fields(conf.runtime_config, "runtimeConfig").items("ips")
    if runtime_ips:
        addresses = _listed(runtime_ips, "runtimeConfig.ips")
    if not at_least(call.cni_version, "0.3.0"):
        for family in (4, 6):
            if sum(1 for ip in addresses if ip.family == family) > 1:
                raise invalid_config(f"CNI version {call.cni_version} does not support more than 1 address per family")

    routes = []
    for i, item in enumerate(ipam.items("routes")):
        try:
            routes.append(Route.from_dict(item))
        except ValueError as exc:
            raise invalid_config(f"ipam.routes[{i}]: {exc}") from None
    try:
        dns = DNS.from_dict(conf.ipam.get("dns"))
    except ValueError as exc:
        raise invalid_config(f"ipam.dns: {exc}") from None
    return StaticConf(addresses=addresses, routes=routes, dns=dns)


def add(call: Call) -> Result:
    conf = load(call)
    return Result(cni_version=call.cni_version, ips=conf.addresses, routes=conf.routes, dns=conf.dns)


def delete(call: Call) -> None:
    """Nothing was reserved; a configuration ADD would refuse must not block DEL."""


def check(call: Call) -> None:
    """Every address the configuration names is in prevResult, with its gateway."""
    conf = load(call)
    prev = NetConf.parse(call.config, call.cni_version).prev_result
    if prev is None:
        raise CNIError(INVALID_NETWORK_CONFIG, "required prevResult missing")
    for want in conf.addresses:
        got = next((ip for ip in prev.ips if ip.address.ip == want.address.ip), None)
        if got is None:
            raise CNIError(INTERNAL, f"static: address {want.address} is not in prevResult for {call.ifname}")
        if want.gateway is not None and got.gateway != want.gateway:
            raise CNIError(INTERNAL, f"static: address {want.address} on {call.ifname} has gateway "
                                     f"{got.gateway}, configured {want.gateway}")


def gc(call: Call) -> None:
    """Nothing is reserved, so nothing can be stale."""


def status(call: Call) -> None:
    """Always ready once the configuration is valid."""
    load(call, env_args=False)


main = plugin("static", add, delete, check, gc, status)
