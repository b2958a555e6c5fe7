"""host-local IPAM: addresses from configured ranges, leased in files on this node."""
from __future__ import annotations

from cni.errors import PLUGIN_NOT_AVAILABLE, UNKNOWN_CONTAINER, CNIError
from cni.hostlocal import config
from cni.hostlocal.allocator import allocate, free_count
from cni.hostlocal.store import Store, owns
from cni.skel import Call, plugin
from cni.types import DNS, Result


def add(call: Call) -> Result:
    env_ip = call.cni_args(("IP",)).get("IP", "")
    conf = config.parse(call.config, call.cni_version, env_ip)
    dns = config.read_resolv_conf(conf.resolv_conf) if conf.resolv_conf else DNS()
    with Store(conf.data_dir, conf.name) as store:
        ips = allocate(conf, store, call.container_id, call.ifname)
    return Result(cni_version=call.cni_version, ips=ips, routes=list(conf.routes), dns=dns)


def delete(call: Call) -> None:
    conf = config.parse(call.config, call.cni_version, strict=False)
    store = Store.existing(conf.data_dir, conf.name)
    if store is None:
        return
    with store:
        store.release_owner(call.container_id, call.ifname)


def check(call: Call) -> None:
    conf = config.parse(call.config, call.cni_version, strict=False)
    store = Store.existing(conf.data_dir, conf.name)
    if store is not None:
        with store:
            if any(owns(owner, call.container_id, call.ifname) for owner in store.leases().values()):
                return
    raise CNIError(UNKNOWN_CONTAINER,
                   f"host-local: no address is reserved for container {call.container_id} interface {call.ifname}")


def gc(call: Call) -> None:
    keep = call.valid_attachments()
    conf = config.parse(call.config, call.cni_version, strict=False)
    store = Store.existing(conf.data_dir, conf.name)
    if store is None:
        return
    kept_ids = {cid for cid, _ in keep}
    with store:
        for ip, (cid, ifname) in store.leases().items():
            if (cid, ifname) not in keep and not (ifname == "" and cid in kept_ids):
                store.release(ip)
        for name in list(store.stale_temps()):  # left by a writer killed mid-write; all writers hold the lock
            store.remove_temp(name)


def status(call: Call) -> None:
    conf = config.parse(call.config, call.cni_version)
    try:
        store = Store(conf.data_dir, conf.name)
    except CNIError as err:
        raise CNIError(PLUGIN_NOT_AVAILABLE, err.msg, err.details) from None
    try:
        with store:
            leases = store.leases()
    except CNIError as err:
        raise CNIError(PLUGIN_NOT_AVAILABLE, err.msg, err.details) from None
    for rs in conf.range_sets:
        if free_count(rs, leases) <= 0:
            raise CNIError(PLUGIN_NOT_AVAILABLE, f"no IP addresses available in range set: {rs}")


main = plugin("host-local", add, delete, check, gc, status)
