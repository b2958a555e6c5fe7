"""IPAM delegation: run the configured IPAM plugin with our environment and stdin."""
from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (about 4 ms an exec)

from .errors import INTERNAL, INVALID_NETWORK_CONFIG, CNIError
from .invoke import exec_plugin, find_plugin
from .types import Result

if TYPE_CHECKING:
    from .conf import NetConf
    from .rollback import Rollback
    from .skel import Call


def _run(conf: "NetConf", call: "Call", command: str) -> bytes:
    if not conf.ipam_type:
        raise CNIError(INVALID_NETWORK_CONFIG, "ipam: missing type")
    path = find_plugin(conf.ipam_type, call.path)
    env = dict(call.environ)
    env["CNI_COMMAND"] = command
    return exec_plugin(path, env, call.stdin)


def add(conf: "NetConf", call: "Call") -> Result:
    out = _run(conf, call, "ADD")
    result = Result.from_json(out, default_version=conf.cni_version)
    result.cni_version = conf.cni_version
    return result


def lease(conf: "NetConf", call: "Call", undo: "Rollback") -> Result:
    """ADD for a main plugin: addresses it must have, released again if its own ADD fails."""
    result = add(conf, call)
    undo.push(lambda: delete(conf, call), "release the IPAM reservation", stage="ipam")
    if not result.ips:
        raise CNIError(INTERNAL, "IPAM plugin returned missing IP config")
    return result


def lease_onto(conf: "NetConf", call: "Call", undo: "Rollback", link, result: Result | None = None, *,
               announce: bool = False, settle: bool = True) -> Result:
    """ADD's second half for a plugin that made one container link (`link`, a netlink Link):
    addresses leased (released again if ADD fails), put on the link with the routes, and
    the result naming that link as interface 0. A given `result` (addresses a previous
    plugin leased) is put on the link instead of leasing. `announce`: neighbours learn the
    link's MAC for reused addresses at once; `settle`: wait for IPv6 DAD (see
    cni.link.configure_interface)."""
    from .link import announce_address_changes, as_interface, configure_interface

    if result is None:
        result = lease(conf, call, undo)
    for ip in result.ips:
        ip.interface = 0
    if announce:
        announce_address_changes(call.netns, call.ifname)
    configure_interface(call.netns, call.ifname, result, 0, settle=settle)
    result.interfaces = [as_interface(link, sandbox=call.netns)]
    result.dns = conf.dns
    return result


# DEL, GC and STATUS of a configuration without IPAM have nothing to ask: they do nothing.


def delete(conf: "NetConf", call: "Call") -> None:
    if conf.ipam_type:
        _run(conf, call, "DEL")


def check(conf: "NetConf", call: "Call") -> None:
    _run(conf, call, "CHECK")


def gc(conf: "NetConf", call: "Call") -> None:
    if conf.ipam_type:
        _run(conf, call, "GC")


def status(conf: "NetConf", call: "Call") -> None:
    if conf.ipam_type:
        _run(conf, call, "STATUS")
