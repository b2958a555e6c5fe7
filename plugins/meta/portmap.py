"""portmap: forward host ports to the container (chained after bridge, ptp, ...).

ADD reads the container's addresses from prevResult and the mappings from the
`portMappings` capability, writes DNAT rules for each family in use (iptables
or nftables, as the reference chooses), masquerades hairpin and localhost
traffic when `snat` is on, and answers with prevResult unchanged. A failed
ADD removes what it wrote. DEL and GC find the rules from network and
container alone: no netns or prevResult needed.
"""
from __future__ import annotations

from cni.portmap import PortmapConf, backend_module, container_addresses
from cni.rollback import Rollback, checkpoint
from cni.skel import Call, plugin
from cni.types import Result


def add(call: Call) -> Result:
    conf = PortmapConf.load(call)
    prev = conf.require_prev_result()
    if not conf.mappings:
        return prev
    addresses = container_addresses(prev, call.ifname)
    if not addresses:
        return prev
    rules = backend_module(conf.backend)
    with Rollback() as undo:
        undo.push(lambda: rules.unforward(conf, call.container_id), "remove the port mappings")
        rules.forward(conf, call.container_id, addresses)
        checkpoint("portmap")
        if conf.snat and 4 in addresses:
            from cni.portmap import enable_localnet_routing

            enable_localnet_routing(addresses[4].ip)
    from cni.portmap import flush_udp_conntrack

    for family in sorted(addresses):
        flush_udp_conntrack(conf.mappings, family)
    return prev


def delete(call: Call) -> None:
    conf = PortmapConf.load(call, lenient=True)
    if conf.mappings:  # as the reference: without mappings ADD wrote nothing (GC catches what a runtime forgot)
        backend_module(conf.backend).unforward(conf, call.container_id)


def check(call: Call) -> None:
    conf = PortmapConf.load(call)
    prev = conf.require_prev_result()
    if conf.mappings:
        backend_module(conf.backend).check(conf, call.container_id, container_addresses(prev, call.ifname))


def gc(call: Call) -> None:
    conf = PortmapConf.load(call, lenient=True)
    keep = {container_id for container_id, _ in call.valid_attachments()}
    if conf.backend == "iptables":
        from cni.portmap import iptables

        iptables.gc(conf.name, keep)
    # nftables: the reference's rules carry only the container ID, not the network, so
    # GC cannot tell another network's containers from stale ones and leaves them.


main = plugin("portmap", add=add, delete=delete, check=check, gc=gc)
