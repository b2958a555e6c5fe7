"""loopback: bring `lo` up in the container's network namespace.

CNI_IFNAME is ignored: this plugin only ever handles `lo`. ADD sets it up and
answers with the previous result when chained, else with `lo` and the
loopback addresses the kernel gave it (127.0.0.1/8, ::1/128). DEL sets it
down and is done when the netns is missing or not given (containerd's DEL).
CHECK fails when `lo` is down.
"""
from __future__ import annotations

from cni.conf import NetConf
from cni.errors import INTERNAL, CNIError
from cni.netns import NetnsNotFound
from cni.skel import Call, plugin
from cni.types import Interface, IPConfig, Result

LOOPBACK = "lo"


def _loopback(nl):
    link = nl.get_link(LOOPBACK)
    if link is None:
        raise CNIError(INTERNAL, f'failed to find link "{LOOPBACK}"')
    return link


def _set_up(netns: str, up: bool) -> list:
    """Set `lo` up or down; its addresses, each checked to be a loopback address."""
    from cni.netlink import Netlink  # not cni.link: its imports cost this small plugin ~5 ms

    with Netlink(netns) as nl:
        link = _loopback(nl)
        nl.set_link(link.index, up=up)
        if not up:
            return []
        addresses = [a.address for a in nl.addresses(link.index)]
    for address in addresses:
        if not address.ip.is_loopback:
            raise CNIError(INTERNAL, f'loopback interface found with non-loopback address "{address.ip}"')
    return addresses


def add(call: Call) -> Result:
    conf = NetConf.parse(call.config, call.cni_version)
    addresses = _set_up(call.netns, True)
    if conf.prev_result is not None:
        return conf.prev_result
    result = Result(interfaces=[Interface(name=LOOPBACK, mac="00:00:00:00:00:00", sandbox=call.netns)])
    for family in (4, 6):  # the first address of each family, as the reference reports them
        first = next((a for a in addresses if a.version == family), None)
        if first is not None:
            result.ips.append(IPConfig(address=first, interface=0))
    return result


def delete(call: Call) -> None:
    NetConf.parse(call.config, call.cni_version)
    if not call.netns:
        return  # containerd sends DEL without a netns: nothing to set down
    try:
        _set_up(call.netns, False)
    except NetnsNotFound:
        pass  # the namespace is gone, and `lo` with it


def check(call: Call) -> None:
    NetConf.parse(call.config, call.cni_version)
    from cni.netlink import Netlink

    with Netlink(call.netns) as nl:
        if not _loopback(nl).up:
            raise CNIError(INTERNAL, "loopback interface is down")


main = plugin("loopback", add=add, delete=delete, check=check)
