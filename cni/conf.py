"""Network configuration: the keys every plugin shares, and typed reads of the rest.

Wrong types and out-of-range values are invalid-configuration errors (code 7),
never exceptions escaping as tracebacks.
"""
from __future__ import annotations

import ipaddress
import os
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (about 4 ms an exec)

from .errors import INVALID_NETWORK_CONFIG, CNIError, invalid_config
from .record import Record
from .types import DNS, Result

if TYPE_CHECKING:
    from typing import Any

    from .skel import Call

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_CHARS = _ALNUM | frozenset("_.-")


def is_valid_name(text: object) -> bool:
    r"""`^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$`, the shape of network names and container IDs.

    Checked without the re module: compiling patterns at import costs every exec.
    """
    return isinstance(text, str) and text[:1] in _ALNUM and all(c in _NAME_CHARS for c in text)

_TYPE_NAMES = {str: "a string", bool: "a boolean", int: "an integer", list: "a list", dict: "an object"}


class Fields:
    """Typed reads from one JSON object; `where` names it in error messages."""

    def __init__(self, data: Any, where: str = "") -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise invalid_config(f"{where or 'config'} must be a JSON object")
        self.data = data
        self.where = where

    def _get(self, key: str, kind: type) -> Any:
        value = self.data.get(key)
        if value is None:
            return None
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if not ok:
            raise invalid_config(f"{self._name(key)} must be {_TYPE_NAMES[kind]}", f"got {value!r}"[:200])
        return value

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def text(self, key: str, default: str = "") -> str:
        value = self._get(key, str)
        return default if value is None else value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self._get(key, bool)
        return default if value is None else value

    def number(self, key: str, default: int = 0, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self._get(key, int)
        if value is None:
            return default
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            bounds = f"{minimum if minimum is not None else '-inf'} to {maximum if maximum is not None else 'inf'}"
            raise invalid_config(f"invalid {self._name(key)} {value}: must be {bounds}")
        return value

    def items(self, key: str) -> list:
        value = self._get(key, list)
        return [] if value is None else value

    def obj(self, key: str) -> dict:
        value = self._get(key, dict)
        return {} if value is None else value

    def texts(self, key: str) -> list[str]:
        values = self.items(key)
        for v in values:
            if not isinstance(v, str):
                raise invalid_config(f"{self._name(key)} must be a list of strings")
        return values

    def sub(self, key: str) -> "Fields":
        return Fields(self.obj(key), self._name(key))


def validate_network_name(name: Any) -> str:
    if name is None or name == "":
        raise CNIError(INVALID_NETWORK_CONFIG, "missing network name")
    if not is_valid_name(name):
        raise CNIError(INVALID_NETWORK_CONFIG, "invalid network name", str(name)[:200])
    return name


def parse_mac(text: str, where: str = "mac") -> str:
    """A unicast-or-not Ethernet MAC, normalised to lowercase colon form."""
    cleaned = text.strip().lower().replace("-", ":")
    parts = cleaned.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
        raise invalid_config(f"invalid {where} address {text!r}")
    return cleaned


def check_data_dir(path: str) -> str:
    """A plugin's `dataDir`: absolute and without '..', since files are made under it."""
    if not path.startswith("/") or "\0" in path or ".." in path.split("/"):
        raise invalid_config(f"dataDir must be an absolute path without '..': {path!r}")
    return os.path.normpath(path)


def same_mac(a: str, b: str) -> bool:
    """CHECK: a result may carry a MAC in capitals (tuning echoes its `mac` as given)."""
    return a.replace("-", ":").lower() == b.replace("-", ":").lower()


def parse_ip(text: str, where: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise invalid_config(f"invalid IP address in {where}: {text!r}") from None


class NetConf(Record):
    """Keys every plugin configuration has (spec: network configuration).

    A plugin's configuration subclasses this with its own annotated fields and
    their defaults, and builds itself with `cls(**cls.common(raw, version), key=...)`.
    """

    cni_version: str = "0.1.0"
    name: str = ""
    type: str = ""
    ipam: dict
    dns: DNS
    args: dict
    runtime_config: dict
    prev_result: Result | None = None
    raw: dict

    def __init__(self, **values: object) -> None:
        self.ipam, self.dns, self.args, self.runtime_config, self.raw = {}, DNS(), {}, {}, {}
        super().__init__(**values)

    @property
    def ipam_type(self) -> str:
        value = self.ipam.get("type")
        return value if isinstance(value, str) else ""

    @staticmethod
    def common(raw: dict, cni_version: str) -> dict:
        """Keyword arguments for the shared fields, to build a plugin's own conf."""
        f = Fields(raw)
        ipam = f.obj("ipam")
        if ipam and not isinstance(ipam.get("type", ""), str):
            raise invalid_config("ipam.type must be a string")
        try:
            dns = DNS.from_dict(raw.get("dns"))
        except ValueError as exc:
            raise invalid_config(f"invalid dns: {exc}") from None
        prev = None
        if raw.get("prevResult") is not None:
            try:
                prev = Result.from_dict(raw["prevResult"], default_version=cni_version)
            except (ValueError, TypeError) as exc:
                raise invalid_config("could not parse prevResult", str(exc)) from None
        return dict(
            cni_version=cni_version,
            name=f.text("name"),
            type=f.text("type"),
            ipam=ipam,
            dns=dns,
            args=f.obj("args"),
            runtime_config=f.obj("runtimeConfig"),
            prev_result=prev,
            raw=raw,
        )

    @classmethod
    def parse(cls, raw: dict, cni_version: str) -> "NetConf":
        return cls(**cls.common(raw, cni_version))

    # ---- conventions shared by several plugins ---------------------------------

    def require_prev_result(self, message: str = "required prevResult missing",
                            details: str = "this plugin must be called as a chained plugin") -> Result:
        """A chained plugin's input: the previous plugin's result (code 7 when missing); a plugin
        whose reference words the error otherwise passes its own `message` and `details`."""
        if self.prev_result is None:
            raise CNIError(INVALID_NETWORK_CONFIG, message, details)
        return self.prev_result

    def cni_args(self) -> Fields:
        """`args.cni`: arguments the runtime put into the configuration."""
        return Fields(self.args, "args").sub("cni")

    def requested_mac(self, env_mac: str = "") -> str:
        """MAC from CNI_ARGS < args.cni.mac < runtimeConfig.mac (later wins)."""
        mac = env_mac
        cni = self.cni_args()
        if cni.text("mac"):
            mac = cni.text("mac")
        runtime = Fields(self.runtime_config, "runtimeConfig")
        if runtime.text("mac"):
            mac = runtime.text("mac")
        return parse_mac(mac) if mac else ""


class MasterLinkConf(NetConf):
    """Keys of a plugin that makes the container's link on a master (macvlan, ipvlan, vlan)."""

    master: str = ""  # the link to make the container's on; "": the plugin's default, where it has one
    mtu: int = 0  # 0: the master's MTU
    link_in_container: bool = False  # the master lives in the container netns

    def master_in(self, call: Call) -> str:
        """Where to look the master up: "" is the netns the plugin runs in (the host)."""
        return call.netns if self.link_in_container else ""
