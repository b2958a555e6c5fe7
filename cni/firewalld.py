"""firewalld over D-Bus: put a container's addresses into a zone as sources.

The calls go through `dbus-send` on the system bus (DBUS_SYSTEM_BUS_ADDRESS
when set, as every D-Bus client honours it). Debian's firewalld depends on the
dbus package, which brings dbus-send, so a node that runs firewalld has it.
"""
from __future__ import annotations

import os

from .errors import INTERNAL, CNIError
from .invoke import find_executable, run_tool

DBUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus")
FIREWALLD = ("org.fedoraproject.FirewallD1", "/org/fedoraproject/FirewallD1")
ZONE_INTERFACE = "org.fedoraproject.FirewallD1.zone"
DEFAULT_SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"
ZONE_ALREADY_SET = "ZONE_ALREADY_SET"


def _bus_address() -> str:
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS


def _bus_socket_missing() -> bool:
    """True when the bus is a unix socket path that does not exist: no exec needed to know."""
    address = _bus_address()
    paths = [part[len("unix:path="):].split(",")[0] for part in address.split(";")
             if part.startswith("unix:path=")]
    return len(paths) == len(address.split(";")) and not any(os.path.exists(p) for p in paths)


def _dbus_send(destination: tuple[str, str], method: str, *args: str) -> str:
    """One method call; its printed reply, or CNIError with the D-Bus error in the message."""
    if find_executable("dbus-send") is None:
        raise CNIError(INTERNAL, "firewalld backend: dbus-send not found (install Debian's dbus-bin)")
    cmd = ["dbus-send", "--system", "--print-reply", f"--dest={destination[0]}", destination[1], method]
    return run_tool(cmd + [f"string:{a}" for a in args], what="firewalld")


def is_running() -> bool:
    """Whether firewalld owns its name on the system bus (the reference's test)."""
    if _bus_socket_missing():
        return False
    try:
        reply = _dbus_send(DBUS, "org.freedesktop.DBus.NameHasOwner", FIREWALLD[0])
    except CNIError:
        return False
    return reply.split()[-1:] == ["true"]


def require_running() -> None:
    if _bus_socket_missing():
        raise CNIError(INTERNAL, f"firewalld backend: no D-Bus system bus at {_bus_address()} (is dbus running?)")
    if not is_running():
        raise CNIError(INTERNAL, f"firewalld backend: firewalld is not running ({FIREWALLD[0]} has no owner "
                                 f"on the system bus)")


def add_source(zone: str, source: str) -> bool:
    """Put `source` into `zone`; False when it was already there (then it is not ours to remove)."""
    try:
        _dbus_send(FIREWALLD, f"{ZONE_INTERFACE}.addSource", zone, source)
    except CNIError as err:
        if ZONE_ALREADY_SET in err.msg:
            return False
        raise CNIError(INTERNAL, f"failed to add the address {source} to the {zone} zone", err.msg) from None
    return True


def remove_source(zone: str, source: str) -> None:
    """Take `source` out of `zone`. Errors are ignored, as the reference does: DEL must succeed
    when the source is gone (UNKNOWN_SOURCE) and firewalld's other refusals leave nothing to undo."""
    try:
        _dbus_send(FIREWALLD, f"{ZONE_INTERFACE}.removeSource", zone, source)
    except CNIError:
        pass


def has_source(zone: str, source: str) -> bool:
    reply = _dbus_send(FIREWALLD, f"{ZONE_INTERFACE}.querySource", zone, source)
    return reply.split()[-1:] == ["true"]
