"""DHCP option names and the ipam `request` / `provide` keys.

Shared by the plugin (validation, resolving `fromArg`) and the daemon (building
messages), so it stays stdlib-only and small.
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (about 4 ms an exec)
if TYPE_CHECKING:
    from typing import Any

from ..conf import Fields
from ..errors import invalid_config

SUBNET_MASK = 1
ROUTER = 3
DNS_SERVERS = 6
HOST_NAME = 12
DOMAIN_NAME = 15
STATIC_ROUTES = 33
REQUESTED_IP = 50
LEASE_TIME = 51
MESSAGE_TYPE = 53
SERVER_ID = 54
PARAMETER_LIST = 55
MESSAGE = 56
MAX_MESSAGE_SIZE = 57
RENEWAL_TIME = 58
REBINDING_TIME = 59
VENDOR_CLASS = 60
CLIENT_ID = 61
CLASSLESS_ROUTES = 121

# Requested unless an entry of `request` says skipDefault.
DEFAULT_REQUEST = (SUBNET_MASK, ROUTER)

# Names as written in network configurations; several spellings are in use.
NAMES = {
    "subnet-mask": SUBNET_MASK,
    "time-offset": 2,
    "router": ROUTER,
    "routers": ROUTER,
    "time-server": 4,
    "domain-name-server": DNS_SERVERS,
    "domain-name-servers": DNS_SERVERS,
    "dns-server": DNS_SERVERS,
    "log-server": 7,
    "host-name": HOST_NAME,
    "hostname": HOST_NAME,
    "domain-name": DOMAIN_NAME,
    "interface-mtu": 26,
    "broadcast-address": 28,
    "static-routes": STATIC_ROUTES,
    "static-route": STATIC_ROUTES,
    "ntp-servers": 42,
    "vendor-specific": 43,
    "requested-ip-address": REQUESTED_IP,
    "ip-address-lease-time": LEASE_TIME,
    "dhcp-server-identifier": SERVER_ID,
    "renewal-time": RENEWAL_TIME,
    "rebinding-time": REBINDING_TIME,
    "vendor-class-identifier": VENDOR_CLASS,
    "class-id": VENDOR_CLASS,
    "dhcp-client-identifier": CLIENT_ID,
    "client-identifier": CLIENT_ID,
    "client-id": CLIENT_ID,
    "user-class": 77,
    "client-fqdn": 81,
    "domain-search": 119,
    "classless-static-route": CLASSLESS_ROUTES,
    "classless-static-routes": CLASSLESS_ROUTES,
    "classless-route": CLASSLESS_ROUTES,
}

# The client writes these itself; a configuration may not provide them.
RESERVED = (0, 255, REQUESTED_IP, MESSAGE_TYPE, SERVER_ID, PARAMETER_LIST, 52, MAX_MESSAGE_SIZE)


def option_code(value: Any, where: str) -> int:
    """A name from NAMES or a decimal code 1-254 (as a number or a string)."""
    if isinstance(value, bool):
        raise invalid_config(f"{where}: invalid DHCP option {value!r}")
    if isinstance(value, int):
        code = value
    elif isinstance(value, str):
        text = value.strip().lower()
        if text in NAMES:
            return NAMES[text]
        if not text.isdigit():
            raise invalid_config(f"{where}: unknown DHCP option {value!r}",
                                 "use a decimal option code or one of: " + ", ".join(sorted(NAMES)))
        code = int(text)
    else:
        raise invalid_config(f"{where}: DHCP option must be a name or a number", repr(value)[:100])
    if not 1 <= code <= 254:
        raise invalid_config(f"{where}: DHCP option code {code} out of range 1-254")
    return code


def requested(ipam: dict) -> list[int]:
    """The parameter request list (option 55) for the ipam `request` key."""
    entries = Fields(ipam, "ipam").items("request")
    skip_default = False
    codes: list[int] = []
    for i, entry in enumerate(entries):
        f = Fields(entry, f"ipam.request[{i}]")
        if f.flag("skipDefault"):
            skip_default = True
        if f.has("option"):
            codes.append(option_code(f.data["option"], f"ipam.request[{i}].option"))
    wanted = ([] if skip_default else list(DEFAULT_REQUEST)) + codes
    return list(dict.fromkeys(wanted))


def provided(ipam: dict, cni_args: str) -> list[tuple[int, str]]:
    """(code, text) pairs to send for the ipam `provide` key; `fromArg` reads CNI_ARGS.

    A `fromArg` naming an argument the runtime did not pass is skipped, as pods
    without that argument should still get an address.
    """
    entries = Fields(ipam, "ipam").items("provide")
    out: list[tuple[int, str]] = []
    args: dict[str, str] | None = None
    for i, entry in enumerate(entries):
        where = f"ipam.provide[{i}]"
        f = Fields(entry, where)
        if not f.has("option"):
            raise invalid_config(f"{where}: missing option")
        code = option_code(f.data["option"], f"{where}.option")
        if code in RESERVED:
            raise invalid_config(f"{where}: option {code} is set by the DHCP client itself")
        if f.has("value") and f.has("fromArg"):
            raise invalid_config(f"{where}: give value or fromArg, not both")
        if f.has("fromArg"):
            if args is None:
                args = loose_args(cni_args)
            value = args.get(f.text("fromArg"))
            if value is None or value == "":
                continue
        elif f.has("value"):
            value = f.text("value")
        else:
            raise invalid_config(f"{where}: needs value or fromArg")
        if len(value.encode()) > 255:
            raise invalid_config(f"{where}: value longer than 255 bytes")
        out.append((code, value))
    return out


def loose_args(text: str) -> dict[str, str]:
    """CNI_ARGS as a dict. Keys are not checked: the runtime passes Kubernetes
    keys to every plugin, and `fromArg` may name any of them."""
    from ..args import parse_args

    keys = tuple(item.split("=", 1)[0] for item in text.split(";") if item)
    return parse_args(text, keys)
