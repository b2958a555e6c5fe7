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


def delete(conf: "NetConf", call: "Call") -> None:
    _run(conf, call, "DEL")


def check(conf: "NetConf", call: "Call") -> None:
    _run(conf, call, "CHECK")


def gc(conf: "NetConf", call: "Call") -> None:
    _run(conf, call, "GC")


def status(conf: "NetConf", call: "Call") -> None:
    _run(conf, call, "STATUS")
