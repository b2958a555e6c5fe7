"""Each plugin's ADD loads only what it needs: every call is a new process, and every
module it imports is paid on every ADD (Documentation/performance.md).

A plugin runs from source under `-X importtime`, which lists every module the process
loads, started through plugins.multicall as the frozen executable starts it, in network
namespaces the test makes. Each case names modules that must not load on that path:
the stdlib modules kept off every plugin, and per plugin what only another command or
another plugin needs. Putting one back on the path fails its case.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, needs_root
from plugins import registry

pytestmark = needs_root

# json imports re, which imports enum; typing, dataclasses (inspect, ast), subprocess
# (signal, threading, selectors), socket (enum, selectors), shutil (fnmatch, re), hashlib
# (OpenSSL through _hashlib): each costs milliseconds of an exec and has a light replacement.
# socket.py and struct.py wrap C modules (_socket, _struct) that are used directly instead.
NEVER = {"json", "re", "enum", "typing", "dataclasses", "inspect", "subprocess", "signal", "threading",
         "selectors", "socket", "struct", "shutil", "fnmatch", "hashlib", "_hashlib", "contextlib", "pyroute2"}
# Objects of the netlink package that one plugin each needs (cni/netlink/__init__.py).
NETLINK_EXTRAS = {"cni.netlink.bridge", "cni.netlink.rule", "cni.netlink.qdisc", "cni.netlink.conntrack"}
MASQUERADE = {"cni.masq", "cni.netfilter", "cni.digest"}

HOST_END = "imp-h0"


def host_local(data_dir) -> dict:
    return {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": "10.98.0.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}


def veth_pair(host, ctr) -> dict:
    """What a main plugin leaves for a chained one: a veth with an address, and its prevResult."""
    host.run("ip", "link", "add", HOST_END, "type", "veth", "peer", "name", "eth0", "netns", ctr.name)
    host.run("ip", "link", "set", HOST_END, "up")
    ctr.run("ip", "link", "set", "eth0", "up")
    ctr.run("ip", "addr", "add", "10.98.0.2/24", "dev", "eth0")
    return {"cniVersion": "1.0.0", "interfaces": [{"name": HOST_END}, {"name": "eth0", "sandbox": ctr.path}],
            "ips": [{"address": "10.98.0.2/24", "gateway": "10.98.0.1", "interface": 1}]}


def master_link(host, ctr) -> None:
    host.run("ip", "link", "add", "imp-m0", "type", "veth", "peer", "name", "imp-m1")
    host.run("ip", "link", "set", "imp-m0", "up")


# (plugin, config keys beyond name/type/cniVersion, host setup, modules that must not load besides NEVER)
CASES = {
    "host-local": (lambda d, prev: {"ipam": host_local(d)}, None,
                   {"cni.netlink", "cni.link", "cni.netns", "cni.invoke", "select"}),
    "bridge": (lambda d, prev: {"bridge": "imp-br0", "isGateway": True, "ipam": host_local(d)}, None,
               MASQUERADE | NETLINK_EXTRAS - {"cni.netlink.bridge"} | {"cni.spoofcheck"}),
    "ptp": (lambda d, prev: {"ipam": host_local(d)}, None, MASQUERADE | NETLINK_EXTRAS),
    "macvlan": (lambda d, prev: {"master": "imp-m0", "ipam": host_local(d)}, master_link,
                MASQUERADE | NETLINK_EXTRAS),
    "tuning": (lambda d, prev: {"mtu": 1400, "promisc": True, "dataDir": str(d), "prevResult": prev}, veth_pair,
               NETLINK_EXTRAS | {"cni.link", "cni.ipam", "cni.invoke"}),
    "bandwidth": (lambda d, prev: {"ingressRate": 1_000_000, "ingressBurst": 80_000, "egressRate": 2_000_000,
                                   "egressBurst": 80_000, "prevResult": prev}, veth_pair,
                  NETLINK_EXTRAS - {"cni.netlink.qdisc"} | {"cni.link", "cni.ipam", "cni.invoke"}),
    "firewall": (lambda d, prev: {"backend": "iptables", "prevResult": prev}, veth_pair,
                 {"cni.netlink", "cni.link", "cni.firewalld", "cni.digest"}),
}


def imports_of_add(name: str, conf: dict, host, ctr, cni_path: str) -> set[str]:
    env = dict(os.environ, CNI_COMMAND="ADD", CNI_CONTAINERID="imports1", CNI_NETNS=ctr.path,
               CNI_IFNAME="eth0", CNI_PATH=cni_path)
    # -c rather than -m: Python 3.9's runpy loads importlib.util, which imports typing and re
    # itself; the frozen executable starts plugins.multicall without runpy.
    run = f"import sys; sys.argv = [{name!r}]; from plugins.multicall import main; main()"
    out = subprocess.run(["ip", "netns", "exec", host.name, sys.executable, "-S", "-X", "importtime", "-c", run],
                         cwd=ROOT, env=env, input=json.dumps(conf).encode(), capture_output=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert json.loads(out.stdout)["cniVersion"] == "1.0.0"
    return {line.rsplit("|", 1)[1].strip() for line in out.stderr.decode().splitlines() if "|" in line}


@pytest.mark.parametrize("name", list(CASES))
def test_add_loads_only_what_it_needs(name, make_netns, source_plugins, tmp_path):
    keys, setup, unneeded = CASES[name]
    host, ctr = make_netns("pycni-imp-host"), make_netns("pycni-imp-ctr")
    prev = setup(host, ctr) if setup else None
    conf = {"cniVersion": "1.0.0", "name": "light", "type": name, **keys(tmp_path, prev)}
    # A delegate (host-local) runs from source in a process of its own, which -X importtime does
    # not follow: the list is this plugin's alone, and shows that exec'ing it needs no subprocess.
    imported = imports_of_add(name, conf, host, ctr, str(source_plugins.directory))
    assert {"cni.jsontext", registry.PLUGINS[name]} <= imported  # the listing covers the plugin's own imports
    assert imported & (NEVER | unneeded) == set()
