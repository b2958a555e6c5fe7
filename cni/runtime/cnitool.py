"""cnitool: add, check, delete, garbage-collect or query a network by hand.

    cnitool add|check|del <network> <netns path>
    cnitool gc|status <network> [<netns path>]
    cnitool list
    cnitool doctor [--json] [--root DIR] [--bin-dir DIR] [--conf-dir DIR] [--kernel]

Environment, as the upstream tool reads it: NETCONFPATH (default
/etc/cni/net.d), CNI_PATH, CNI_ARGS (K=V;K=V), CAP_ARGS (a JSON object of
capability arguments), CNI_IFNAME (default eth0; `-i/--ifname` wins). The
container ID is `cnitool-` and the first 20 hex digits of the SHA-512 of the
absolute netns path.

pycni additions: CNI_CONTAINERID overrides that container ID (the scripts pass
the runtime's own), CNI_CACHE_DIR moves the result cache (default
/var/lib/cni), `list` prints the network names of NETCONFPATH in file order,
and `doctor` examines the node's CNI setup (cni/runtime/doctor.py).
"""
from __future__ import annotations

import json
import os
import sys
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (about 4 ms an exec)
if TYPE_CHECKING:
    from typing import Mapping, TextIO

from ..digest import sha512_hex
from ..errors import CNIError
from .cache import DEFAULT_CACHE_DIR
from .conf import DEFAULT_CONF_DIR, load_network, load_networks
from .network import Runtime, RuntimeConf

NETNS_COMMANDS = ("add", "check", "del")
NETWORK_COMMANDS = ("gc", "status")


class UsageError(Exception):
    pass


def usage(prog: str = "cnitool") -> str:
    lines = [f"{prog}: add, check, remove, gc or status network interfaces from a network namespace"]
    for cmd in NETNS_COMMANDS:
        lines.append(f"  {prog} {cmd:<6} <net> <netns>")
    for cmd in NETWORK_COMMANDS:
        lines.append(f"  {prog} {cmd:<6} <net>")
    lines.append(f"  {prog} list")
    lines.append(f"  {prog} doctor [--json] [--root DIR] [--bin-dir DIR] [--conf-dir DIR] [--kernel]")
    lines.append("options: -i, --ifname NAME   interface name (default: $CNI_IFNAME or eth0)")
    return "\n".join(lines) + "\n"


def container_id_for(netns: str) -> str:
    """The upstream tool's container ID for a netns path."""
    return "cnitool-" + sha512_hex(netns)[:20]


def parse_cni_args(text: str) -> list[tuple[str, str]]:
    pairs = []
    for pair in text.split(";"):
        kv = pair.split("=")
        if len(kv) != 2 or not kv[0] or not kv[1]:
            raise UsageError(f'invalid CNI_ARGS pair "{pair}"')
        pairs.append((kv[0], kv[1]))
    return pairs


def parse_capability_args(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"CAP_ARGS is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError("CAP_ARGS must be a JSON object")
    return value


def _split_options(args: list[str]) -> tuple[list[str], str]:
    positional, ifname = [], ""
    it = iter(args)
    for arg in it:
        if arg in ("-i", "--ifname"):
            ifname = next(it, "")
            if not ifname:
                raise UsageError(f"{arg} needs an interface name")
        elif arg.startswith("--ifname="):
            ifname = arg.split("=", 1)[1]
        elif arg in ("-h", "--help"):
            raise UsageError("")
        else:
            positional.append(arg)
    return positional, ifname


def run(args: list[str], environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    if args[:1] == ["doctor"]:
        return run_doctor(args[1:], environ, out, err)
    try:
        positional, ifname = _split_options(args)
    except UsageError as exc:
        if str(exc):
            err.write(f"{exc}\n")
        err.write(usage())
        return 1
    command = positional[0] if positional else ""
    need = 1 if command in NETWORK_COMMANDS else 2
    if command == "list":
        need = 0
    if command not in NETNS_COMMANDS + NETWORK_COMMANDS + ("list",) or len(positional) < 1 + need:
        err.write(usage())
        return 1
    netdir = environ.get("NETCONFPATH") or DEFAULT_CONF_DIR
    try:
        if command == "list":
            networks, broken = load_networks(netdir)
            for message in broken:
                err.write(f"skipping {message}\n")
            out.write("".join(f"{n.name}\n" for n in networks))
            return 0
        net = load_network(netdir, positional[1])
        runtime = Runtime([p for p in environ.get("CNI_PATH", "").split(os.pathsep) if p],
                          cache_dir=environ.get("CNI_CACHE_DIR") or DEFAULT_CACHE_DIR, environ=environ)
        if command == "gc":
            runtime.gc(net)
            return 0
        if command == "status":
            runtime.status(net)
            return 0
        rt = runtime_conf(positional[2], ifname, environ)
        if command == "add":
            result = runtime.add(net, rt)
            out.write(result.to_json(net.cni_version) + "\n")
        elif command == "check":
            runtime.check(net, rt)
        else:
            runtime.delete(net, rt)
        return 0
    except (CNIError, UsageError) as exc:
        err.write(f"{exc}\n")
        return 1
    except Exception as exc:  # never a traceback, unless asked for
        if environ.get("PYCNI_DEBUG"):
            import traceback

            traceback.print_exc(file=err)
        err.write(f"cnitool: unexpected {type(exc).__name__}: {exc}\n")
        return 1


def run_doctor(args: list[str], environ: Mapping[str, str], out: TextIO, err: TextIO) -> int:
    """The doctor is imported only for its own subcommand: the other commands stay as light."""
    from .doctor import ERROR, main

    try:
        return main(args, environ, out, err)
    except Exception as exc:  # exit 2 (could not inspect), never a traceback unless asked for
        if environ.get("PYCNI_DEBUG"):
            import traceback

            traceback.print_exc(file=err)
        err.write(f"cnitool doctor: unexpected {type(exc).__name__}: {exc}\n")
        return ERROR


def runtime_conf(netns: str, ifname: str, environ: Mapping[str, str]) -> RuntimeConf:
    netns = os.path.abspath(netns)
    cni_args = environ.get("CNI_ARGS", "")
    caps = environ.get("CAP_ARGS", "")
    return RuntimeConf(
        container_id=environ.get("CNI_CONTAINERID") or container_id_for(netns),
        netns=netns,
        ifname=ifname or environ.get("CNI_IFNAME") or "eth0",
        args=parse_cni_args(cni_args) if cni_args else [],
        capability_args=parse_capability_args(caps) if caps else {},
    )


def cli(args: list[str]) -> None:
    """The multicall entry: `bin/cnitool ...`."""
    status = run(list(args), os.environ, sys.stdout, sys.stderr)
    sys.stdout.flush()
    sys.exit(status)


if __name__ == "__main__":
    cli(sys.argv[1:])
