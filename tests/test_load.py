"""Load: 32 concurrent ADDs then 32 concurrent DELs per plugin and of a bridge + portmap + bandwidth
chain through our runtime library; two ADDs racing to create one bridge.

Frozen plugins only, to keep the suite short (the code paths are the same
from source). Container netns are made before the burst, so only plugin calls
run concurrently.
"""
from __future__ import annotations

import ipaddress
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import needs_root
from reliability_env import (chain_caps, chain_conflist, host_veths, ip_files, nat_rules, network, no_traceback,
                             per_container_rules, pings, run_chain, shaping, uplink)

pytestmark = needs_root

N = 32


def burst(fn, items):
    with ThreadPoolExecutor(N) as pool:
        return list(pool.map(fn, items))


def config(kind: str, data_dir) -> dict:
    return network(kind, f"load-{kind}", "10.90.0.0/24", data_dir, bridge="ldbr0")


@pytest.mark.parametrize("kind", ["bridge", "macvlan", "ptp"])
def test_32_concurrent_adds_then_dels(frozen_plugins, host_ns, make_netns, data_dir, kind):
    if kind == "macvlan":
        uplink(host_ns)
    containers = [make_netns("pycni-ld") for _ in range(N)]
    conf = config(kind, data_dir)

    def call(command, i):
        return frozen_plugins.run(kind, command, conf, containerid=f"load{i}", netns=containers[i].path,
                                  in_netns=host_ns.path, timeout=120)

    adds = burst(lambda i: call("ADD", i), range(N))
    for out in adds:
        no_traceback(out)
        out.ok()
    addresses = [out.json["ips"][0]["address"] for out in adds]
    assert len(set(addresses)) == N, addresses
    assert len(ip_files(data_dir)) == N
    for ns, address in zip(containers, addresses):
        inside = ns.ip_json("addr", "show", "dev", "eth0")[0]
        assert "UP" in inside["flags"]
        assert address in [f"{a['local']}/{a['prefixlen']}" for a in inside["addr_info"] if a["family"] == "inet"]
    if kind == "macvlan":  # macvlans on one master in bridge mode reach each other
        first = addresses[0].split("/")[0]
        assert all(pings(ns, first) for ns in containers[1:])
    else:  # the gateway: the bridge, or the host end of each ptp pair
        gateway = adds[0].json["ips"][0]["gateway"]
        assert all(pings(ns, gateway) for ns in containers)
    if kind == "bridge":
        ports = [l for l in host_ns.ip_json("-d", "link", "show", "master", "ldbr0")]
        assert len(ports) == N
    if kind != "macvlan":
        assert len(host_veths(host_ns)) == N and len(nat_rules(host_ns)) >= N

    dels = burst(lambda i: call("DEL", i), range(N))
    for out in dels:
        no_traceback(out)
        out.ok()
    assert ip_files(data_dir) == {}
    assert host_veths(host_ns) == []
    assert nat_rules(host_ns) == []
    assert all(ns.links() == ["lo"] for ns in containers)


def test_two_adds_racing_to_create_the_same_bridge(frozen_plugins, host_ns, make_netns, data_dir):
    for round_ in range(6):
        bridge = f"race{round_}"
        conf = dict(config("bridge", data_dir), bridge=bridge, name=f"race{round_}", ipMasq=False)
        pair = [make_netns("pycni-race") for _ in range(2)]
        outs = burst(lambda i: frozen_plugins.run("bridge", "ADD", conf, containerid=f"r{round_}-{i}",
                                                  netns=pair[i].path, in_netns=host_ns.path), range(2))
        for out in outs:
            no_traceback(out)
            out.ok()
        assert {o.json["interfaces"][0]["name"] for o in outs} == {bridge}
        ports = host_ns.ip_json("link", "show", "master", bridge)
        assert len(ports) == 2
        assert ipaddress.ip_interface(outs[0].json["ips"][0]["address"]) != \
            ipaddress.ip_interface(outs[1].json["ips"][0]["address"])
        for i in range(2):
            frozen_plugins.run("bridge", "DEL", conf, containerid=f"r{round_}-{i}", netns=pair[i].path,
                               in_netns=host_ns.path).ok()
    assert host_veths(host_ns) == [] and ip_files(data_dir) == {}


def test_32_concurrent_chains_then_dels_half_without_netns(frozen_plugins, host_ns, make_netns, data_dir, tmp_path):
    """bridge + portmap + bandwidth, each container with its own host port and shaping, as cni.runtime
    runs a conflist. Half the DELs come with the netns, half with an empty CNI_NETNS after the sandbox
    is gone (as containerd sends them): either way the host keeps nothing of any container."""
    containers = [make_netns("pycni-ch") for _ in range(N)]
    cache = tmp_path / "cache"
    conflist = chain_conflist(data_dir)
    before_shaping = shaping(host_ns)

    adds = run_chain(host_ns, frozen_plugins.directory, cache, conflist,
                     [{"command": "ADD", "id": f"chain{i}", "netns": ns.path, "caps": chain_caps(i)}
                      for i, ns in enumerate(containers)])
    assert [a for a in adds if not a["ok"]] == []
    addresses = [a["result"]["ips"][0]["address"] for a in adds]
    assert len(set(addresses)) == N
    assert len(ip_files(data_dir)) == N and len([p for p in cache.rglob("*") if p.is_file()]) == N
    veths = [a["result"]["interfaces"][1]["name"] for a in adds]
    ifbs = [a["result"]["interfaces"][-1]["name"] for a in adds]
    assert sorted(host_veths(host_ns)) == sorted(veths) and len(set(ifbs)) == N
    shaped = shaping(host_ns)
    assert sorted(shaped["ifbs"]) == sorted(ifbs)
    for veth, ifb in zip(veths, ifbs):  # ingress: tbf on the host end; egress: redirect to the ifb's tbf
        assert {(veth, "tbf"), (veth, "ingress"), (ifb, "tbf")} <= set(shaped["qdiscs"]), veth
    rules = "\n".join(per_container_rules(host_ns, addresses))
    for i, address in enumerate(addresses):  # each container's DNAT to its own port, and its masquerade
        ip = address.split("/")[0]
        assert f"--to-destination {ip}:80" in rules or f"dnat to {ip}:80" in rules, ip
        assert str(20000 + i) in rules
    assert len(set(re.findall(r"CNI-[0-9a-f]{24}\b", rules))) == N  # bridge's masquerade chain per container

    for ns in containers[N // 2:]:  # the sandbox is gone before the runtime's DEL
        ns.remove()
    dels = run_chain(host_ns, frozen_plugins.directory, cache, conflist,
                     [{"command": "DEL", "id": f"chain{i}", "netns": ns.path if i < N // 2 else "",
                       "caps": chain_caps(i)} for i, ns in enumerate(containers)])
    assert [d for d in dels if not d["ok"]] == []
    assert host_veths(host_ns) == []
    assert shaping(host_ns) == before_shaping
    assert per_container_rules(host_ns, addresses) == []
    assert ip_files(data_dir) == {}
    assert [p for p in cache.rglob("*") if p.is_file()] == []
    assert all(ns.links() == ["lo"] for ns in containers[:N // 2])
