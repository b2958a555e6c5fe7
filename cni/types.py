"""Results in the 1.x shape, parsed from and printed as every spec version.

A plugin builds one `Result`; the skel converts it exactly once, when printing,
to the version of the request. Parsed results (prevResult, an IPAM delegate's
output) of any version are up-converted to the same shape.
"""
from __future__ import annotations

import ipaddress
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (about 4 ms an exec)

from . import jsontext
from . import version as versions
from .errors import DECODE_FAILURE, INCOMPATIBLE_VERSION, CNIError
from .record import Record

if TYPE_CHECKING:  # annotations only: importing typing costs every exec ~4 ms
    from typing import Any, Union

    IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
    IPInterface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]
    IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
else:  # at run time the aliases are what isinstance() takes
    IPAddress = (ipaddress.IPv4Address, ipaddress.IPv6Address)
    IPInterface = (ipaddress.IPv4Interface, ipaddress.IPv6Interface)
    IPNetwork = (ipaddress.IPv4Network, ipaddress.IPv6Network)

LEGACY = ("0.1.0", "0.2.0")


def _want_str(data: dict, key: str, where: str, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise ValueError(f"{where}: missing {key!r}")
        return None
    if not isinstance(value, str):
        raise ValueError(f"{where}: {key!r} must be a string")
    return value


def _want_int(data: dict, key: str, where: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{where}: {key!r} must be an integer")
    return value


def parse_cidr(text: str) -> IPInterface:
    """An address with prefix, as in results ("10.0.0.2/24"); host bits allowed."""
    if "/" not in text:
        raise ValueError(f"invalid CIDR address: {text}")
    return ipaddress.ip_interface(text)


def parse_net(text: str) -> IPNetwork:
    """A route destination; host bits are masked off as the reference does."""
    if "/" not in text:
        raise ValueError(f"invalid CIDR address: {text}")
    return ipaddress.ip_network(text, strict=False)


class Interface(Record):
    name: str = ""
    mac: str = ""
    sandbox: str = ""
    mtu: int = 0  # 1.1.0
    socket_path: str = ""  # 1.1.0
    pci_id: str = ""  # 1.1.0

    def __init__(self, name: str = "", mac: str = "", sandbox: str = "", **more: object) -> None:
        super().__init__(name=name, mac=mac, sandbox=sandbox, **more)

    def to_dict(self, version: str) -> dict:
        out: dict[str, Any] = {"name": self.name}
        if self.mac:
            out["mac"] = self.mac
        if self.mtu and versions.at_least(version, "1.1.0"):
            out["mtu"] = self.mtu
        if self.sandbox:
            out["sandbox"] = self.sandbox
        if self.socket_path and versions.at_least(version, "1.1.0"):
            out["socketPath"] = self.socket_path
        if self.pci_id and versions.at_least(version, "1.1.0"):
            out["pciID"] = self.pci_id
        return out

    @classmethod
    def from_dict(cls, data: Any) -> "Interface":
        if not isinstance(data, dict):
            raise ValueError("interfaces: each entry must be an object")
        return cls(
            name=_want_str(data, "name", "interface", required=True) or "",
            mac=_want_str(data, "mac", "interface") or "",
            sandbox=_want_str(data, "sandbox", "interface") or "",
            mtu=_want_int(data, "mtu", "interface") or 0,
            socket_path=_want_str(data, "socketPath", "interface") or "",
            pci_id=_want_str(data, "pciID", "interface") or "",
        )


class IPConfig(Record):
    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None  # index into Result.interfaces

    def __init__(self, address: IPInterface, gateway: IPAddress | None = None, interface: int | None = None) -> None:
        self.address = address
        self.gateway = gateway
        self.interface = interface

    @property
    def family(self) -> int:
        return self.address.version

    def to_dict(self, version: str) -> dict:
        out: dict[str, Any] = {}
        if not versions.at_least(version, "1.0.0"):
            out["version"] = str(self.family)
        if self.interface is not None:
            out["interface"] = self.interface
        out["address"] = str(self.address)
        if self.gateway is not None:
            out["gateway"] = str(self.gateway)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> "IPConfig":
        if not isinstance(data, dict):
            raise ValueError("ips: each entry must be an object")
        address = parse_cidr(_want_str(data, "address", "ips", required=True) or "")
        gw_text = _want_str(data, "gateway", "ips")
        gateway = ipaddress.ip_address(gw_text) if gw_text else None
        if gateway is not None and gateway.version != address.version:
            raise ValueError(f"ips: gateway {gateway} is not of the family of {address}")
        ver = data.get("version")
        if ver is not None and ver not in ("4", "6"):
            raise ValueError(f"ips: invalid version {ver!r}")
        if ver is not None and ver != str(address.version):
            raise ValueError(f"ips: version {ver} does not match address {address}")
        iface = _want_int(data, "interface", "ips")
        if iface is not None and iface < 0:
            raise ValueError("ips: interface index must not be negative")
        return cls(address=address, gateway=gateway, interface=iface)


class Route(Record):
    dst: IPNetwork
    gw: IPAddress | None = None
    # 1.1.0 fields
    mtu: int = 0
    advmss: int = 0
    priority: int = 0
    table: int | None = None
    scope: int | None = None

    def __init__(self, dst: IPNetwork, gw: IPAddress | None = None, **more: object) -> None:
        super().__init__(**more)
        self.dst = dst
        self.gw = gw

    def to_dict(self, version: str) -> dict:
        out: dict[str, Any] = {"dst": str(self.dst)}
        if self.gw is not None:
            out["gw"] = str(self.gw)
        if versions.at_least(version, "1.1.0"):
            if self.mtu:
                out["mtu"] = self.mtu
            if self.advmss:
                out["advmss"] = self.advmss
            if self.priority:
                out["priority"] = self.priority
            if self.table is not None:
                out["table"] = self.table
            if self.scope is not None:
                out["scope"] = self.scope
        return out

    @classmethod
    def from_dict(cls, data: Any) -> "Route":
        if not isinstance(data, dict):
            raise ValueError("routes: each entry must be an object")
        dst = parse_net(_want_str(data, "dst", "routes", required=True) or "")
        gw_text = _want_str(data, "gw", "routes")
        gw = ipaddress.ip_address(gw_text) if gw_text else None
        if gw is not None and gw.version != dst.version:
            raise ValueError(f"routes: gateway {gw} is not of the family of {dst}")
        return cls(
            dst=dst,
            gw=gw,
            mtu=_want_int(data, "mtu", "routes") or 0,
            advmss=_want_int(data, "advmss", "routes") or 0,
            priority=_want_int(data, "priority", "routes") or 0,
            table=_want_int(data, "table", "routes"),
            scope=_want_int(data, "scope", "routes"),
        )


class DNS(Record):
    nameservers: list[str]
    domain: str = ""
    search: list[str]
    options: list[str]

    def __init__(self, nameservers: list[str] | None = None, domain: str = "", search: list[str] | None = None,
                 options: list[str] | None = None) -> None:
        self.nameservers = list(nameservers or [])
        self.domain = domain
        self.search = list(search or [])
        self.options = list(options or [])

    def is_empty(self) -> bool:
        return not (self.nameservers or self.domain or self.search or self.options)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> "DNS":
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError("dns must be an object")

        def strings(key: str) -> list[str]:
            value = data.get(key)
            if value is None:
                return []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"dns: {key!r} must be a list of strings")
            return list(value)

        return cls(
            nameservers=strings("nameservers"),
            domain=_want_str(data, "domain", "dns") or "",
            search=strings("search"),
            options=strings("options"),
        )


class Result(Record):
    """A result in the 1.x shape; `cni_version` is the version it will be printed as."""

    cni_version: str = versions.CURRENT
    interfaces: list[Interface]
    ips: list[IPConfig]
    routes: list[Route]
    dns: DNS

    def __init__(self, cni_version: str = versions.CURRENT, interfaces: list[Interface] | None = None,
                 ips: list[IPConfig] | None = None, routes: list[Route] | None = None,
                 dns: DNS | None = None) -> None:
        self.cni_version = cni_version
        self.interfaces = list(interfaces or [])
        self.ips = list(ips or [])
        self.routes = list(routes or [])
        self.dns = dns if dns is not None else DNS()

    def copy(self) -> "Result":
        return Result.from_dict(self.to_dict(versions.CURRENT), versions.CURRENT).with_version(self.cni_version)

    def ips_of(self, ifname: str, *, in_sandbox: bool = False) -> list[IPConfig]:
        """The addresses of interface `ifname`: those naming it, and those naming no interface;
        `in_sandbox` also drops those of an interface without a sandbox (a host-side one)."""
        def named(index: int) -> bool:
            iface = self.interfaces[index]
            return iface.name == ifname and (bool(iface.sandbox) or not in_sandbox)

        return [ip for ip in self.ips
                if ip.interface is None or ip.interface >= len(self.interfaces) or named(ip.interface)]

    def with_version(self, cni_version: str) -> "Result":
        self.cni_version = cni_version
        return self

    # ---- printing -------------------------------------------------------------

    def to_dict(self, version: str | None = None) -> dict:
        """The result as the JSON object of `version` (default: its own version)."""
        version = version or self.cni_version
        if version not in versions.SUPPORTED_VERSIONS:
            raise CNIError(INCOMPATIBLE_VERSION, f"cannot convert result to unsupported version {version}")
        if version in LEGACY:
            return self._to_legacy(version)
        out: dict[str, Any] = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = [i.to_dict(version) for i in self.interfaces]
        if self.ips:
            out["ips"] = [i.to_dict(version) for i in self.ips]
        if self.routes:
            out["routes"] = [r.to_dict(version) for r in self.routes]
        out["dns"] = self.dns.to_dict()
        return out

    def _to_legacy(self, version: str) -> dict:
        out: dict[str, Any] = {"cniVersion": version}
        found = False
        for family, key in ((4, "ip4"), (6, "ip6")):
            first = next((ip for ip in self.ips if ip.family == family), None)
            if first is None:
                continue
            found = True
            block: dict[str, Any] = {"ip": str(first.address)}
            if first.gateway is not None:
                block["gateway"] = str(first.gateway)
            routes = [r.to_dict("0.2.0") for r in self.routes if r.dst.version == family]
            if routes:
                block["routes"] = routes
            out[key] = block
        if not found:
            raise CNIError(INCOMPATIBLE_VERSION, "cannot convert: no valid IP addresses")
        out["dns"] = self.dns.to_dict()
        return out

    def to_json(self, version: str | None = None) -> str:
        return jsontext.dumps(self.to_dict(version), indent=4)

    # ---- parsing --------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any, default_version: str = versions.IMPLICIT) -> "Result":
        """Parse a result of any supported version; raises ValueError when malformed."""
        if not isinstance(data, dict):
            raise ValueError("result must be a JSON object")
        version = data.get("cniVersion") or default_version
        if not isinstance(version, str) or version not in versions.SUPPORTED_VERSIONS:
            raise ValueError(f"unsupported result version {version!r}")
        if version in LEGACY:
            return cls._from_legacy(data, version)

        def entries(key: str) -> list:
            value = data.get(key)
            if value is None:
                return []
            if not isinstance(value, list):
                raise ValueError(f"{key!r} must be a list")
            return value

        result = cls(
            cni_version=version,
            interfaces=[Interface.from_dict(i) for i in entries("interfaces")],
            ips=[IPConfig.from_dict(i) for i in entries("ips")],
            routes=[Route.from_dict(r) for r in entries("routes")],
            dns=DNS.from_dict(data.get("dns")),
        )
        for ip in result.ips:
            if ip.interface is not None and ip.interface >= len(result.interfaces):
                raise ValueError(f"ips: interface index {ip.interface} out of range")
        return result

    @classmethod
    def _from_legacy(cls, data: dict, version: str) -> "Result":
        result = cls(cni_version=version, dns=DNS.from_dict(data.get("dns")))
        for family, key in ((4, "ip4"), (6, "ip6")):
            block = data.get(key)
            if block is None:
                continue
            if not isinstance(block, dict):
                raise ValueError(f"{key} must be an object")
            address = parse_cidr(_want_str(block, "ip", key, required=True) or "")
            if address.version != family:
                raise ValueError(f"{key}: {address} is not an IPv{family} address")
            gw_text = _want_str(block, "gateway", key)
            gateway = ipaddress.ip_address(gw_text) if gw_text else None
            result.ips.append(IPConfig(address=address, gateway=gateway))
            routes = block.get("routes") or []
            if not isinstance(routes, list):
                raise ValueError(f"{key}: routes must be a list")
            result.routes.extend(Route.from_dict(r) for r in routes)
        return result

    @classmethod
    def from_json(cls, text: str | bytes, default_version: str = versions.IMPLICIT) -> "Result":
        """Parse a delegate's printed result; a malformed one is a decoding failure."""
        try:
            return cls.from_dict(jsontext.loads(text), default_version)
        except (ValueError, TypeError) as exc:
            raise CNIError(DECODE_FAILURE, "failed to parse result", str(exc)) from None
