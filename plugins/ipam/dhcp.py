"""dhcp IPAM: addresses leased by the DHCP daemon, which keeps them renewed.

`dhcp` is the plugin (one request to the daemon per CNI call, stdlib only);
`dhcp daemon [flags]` is the daemon itself (cni/dhcp/daemon.py).
"""
from __future__ import annotations

import ipaddress
import sys

from cni.conf import Fields, NetConf
from cni.record import Record
from cni.dhcp import DEFAULT_SOCKET, options, wire
from cni.errors import PLUGIN_NOT_AVAILABLE, UNKNOWN_CONTAINER, CNIError, invalid_config
from cni.skel import Call, plugin
from cni.types import IPConfig, Result, Route

ADD_TIMEOUT = 300.0  # above the daemon's default -resendtimeout (62 s): the daemon answers first
SHORT_TIMEOUT = 30.0
STATUS_TIMEOUT = 5.0


class DhcpConf(Record):
    name: str = ""
    socket: str = DEFAULT_SOCKET
    request: list
    provide: list
    priority: int = 0
    prev_ips: list

    def __init__(self, **values: object) -> None:
        self.request, self.provide, self.prev_ips = [], [], []
        super().__init__(**values)

    @classmethod
    def parse(cls, call: Call, lenient: bool = False) -> "DhcpConf":
        net = NetConf.parse(call.config, call.cni_version)
        ipam = Fields(net.ipam, "ipam")
        conf = cls(name=net.name, socket=ipam.text("daemonSocketPath", DEFAULT_SOCKET))
        if not conf.socket.startswith("/"):
            raise invalid_config("ipam.daemonSocketPath must be an absolute path", conf.socket)
        if not lenient:
            conf.request = options.requested(net.ipam)
            conf.provide = options.provided(net.ipam, call.args)
            conf.priority = ipam.number("priority", 0, minimum=0, maximum=0xFFFFFFFF)
            if net.prev_result is not None:
                conf.prev_ips = [ip.address.ip for ip in net.prev_result.ips]
        return conf


def attachment(conf: DhcpConf, call: Call) -> dict:
    return {"containerID": call.container_id, "network": conf.name, "ifname": call.ifname, "netns": call.netns}


def add(call: Call) -> Result:
    conf = DhcpConf.parse(call)
    params = dict(attachment(conf, call), request=conf.request, provide=conf.provide)
    return lease_result(wire.request(conf.socket, "add", params, ADD_TIMEOUT), conf, call.cni_version)


def delete(call: Call) -> None:
    conf = DhcpConf.parse(call, lenient=True)
    try:
        wire.request(conf.socket, "del", attachment(conf, call), SHORT_TIMEOUT)
    except CNIError as err:  # the daemon or the lease being gone is what DEL wants anyway
        sys.stderr.write(f"dhcp: warning: lease not released: {err}\n")


def check(call: Call) -> None:
    conf = DhcpConf.parse(call)
    lease = wire.request(conf.socket, "check", attachment(conf, call), SHORT_TIMEOUT)
    held = ipaddress.ip_interface(lease["address"]).ip
    if conf.prev_ips and held not in conf.prev_ips:
        raise CNIError(UNKNOWN_CONTAINER, f"the lease holds {held}, prevResult has {', '.join(map(str, conf.prev_ips))}")


def gc(call: Call) -> None:
    conf = DhcpConf.parse(call, lenient=True)
    valid = sorted([cid, ifname] for cid, ifname in call.valid_attachments())
    wire.request(conf.socket, "gc", {"network": conf.name, "valid": valid}, SHORT_TIMEOUT)


def status(call: Call) -> None:
    conf = DhcpConf.parse(call, lenient=True)
    try:
        wire.request(conf.socket, "status", {}, STATUS_TIMEOUT)
    except CNIError as err:
        raise CNIError(PLUGIN_NOT_AVAILABLE, err.msg, err.details) from None


def lease_result(lease: dict, conf: DhcpConf, version: str) -> Result:
    gateway = lease.get("gateway")
    ip = IPConfig(address=ipaddress.ip_interface(lease["address"]),
                  gateway=ipaddress.ip_address(gateway) if gateway else None)
    routes = [Route(dst=ipaddress.ip_network(r["dst"]), gw=ipaddress.ip_address(r["gw"]) if r.get("gw") else None,
                    priority=conf.priority)
              for r in lease.get("routes") or []]
    return Result(cni_version=version, ips=[ip], routes=routes)


main = plugin("dhcp", add=add, delete=delete, check=check, gc=gc, status=status)


def cli(args: list[str]) -> None:
    """`dhcp daemon [flags]` runs the daemon; anything else is a CNI call."""
    if args and args[0] == "daemon":
        from cni.dhcp.daemon import run

        sys.exit(run(args[1:]))
    main.main()
