"""Helpers of the tests of plugins that give a container one link with host-local
addresses (ptp, macvlan, ipvlan, vlan, dummy): one place for how they call the
plugin, read and compare addresses and results with Go's, and find what host-local still holds."""
from __future__ import annotations

GONE_NETNS = "/run/netns/pycni-gone"  # the netns path a DEL gets once the container is gone


def run_plugin(plugins, plugin_type: str, command: str, conf, ctr, host_ns, **kw):
    """Run `plugin_type` from the netns `host_ns` on container netns `ctr` (None: one that is gone)."""
    kw.setdefault("cni_path", str(plugins.directory))
    netns = ctr.path if ctr else GONE_NETNS
    return plugins.run(plugin_type, command, conf, netns=netns, in_netns=host_ns.path, **kw)


def reservations(data_dir, network: str) -> list[str]:
    """The addresses host-local still holds for `network` under `data_dir` (its files named by
    an IP; not the lock, nor last_reserved_ip.N)."""
    d = data_dir / network
    return sorted(p.name for p in d.iterdir() if "." in p.name[:-2] or ":" in p.name) if d.exists() else []


def global_addrs(ns, ifname: str = "eth0") -> list[str]:
    """The global-scope addresses of `ifname` in `ns`, as "address/prefixlen", sorted."""
    return sorted(f"{a['local']}/{a['prefixlen']}" for e in ns.ip_json("addr", "show", "dev", ifname)
                  for a in e.get("addr_info", []) if a.get("scope") == "global")


def compared_addrs(ns, ifname: str = "eth0") -> list[tuple]:
    """The addresses of `ifname` to compare with Go's: all but the kernel-chosen link-local ones."""
    return sorted((a["family"], a["local"], a["prefixlen"], a.get("scope"))
                  for e in ns.ip_json("addr", "show", "dev", ifname) for a in e["addr_info"] if a.get("scope") != "link")


def mask(result: dict, *, mac: bool = True) -> dict:
    """A result to compare with Go's: the sandbox path (and, unless `mac` is False, MACs) masked."""
    import json
    import re

    text = json.dumps(result, sort_keys=True)
    if mac:
        text = re.sub(r'"mac": "[0-9a-f:]+"', '"mac": "MAC"', text)
    return json.loads(re.sub(r'"sandbox": "[^"]+"', '"sandbox": "NETNS"', text))
