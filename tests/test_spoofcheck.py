"""MAC spoof check rules in a netns that plays the host."""
from __future__ import annotations

import json

from cni import netns, spoofcheck
from conftest import needs_root

pytestmark = needs_root


def comments(ns) -> list[str]:
    r = ns.run("nft", "-j", "list", "table", "bridge", "nat", check=False)
    if r.returncode != 0:
        return []
    return sorted({i["rule"].get("comment", "") for i in json.loads(r.stdout)["nftables"] if "rule" in i})


def test_setup_teardown_and_gc(host_ns):
    with netns.entered(host_ns.path):
        spoofcheck.setup("vethaaaa0001", "02:00:00:00:00:01", "ctr1", "eth0")
        spoofcheck.setup("vethaaaa0002", "02:00:00:00:00:02", "ctr2", "eth0")
        spoofcheck.setup("vethaaaa0003", "02:00:00:00:00:03", "ctr3", "net1")
    assert comments(host_ns) == ["macspoofchk-ctr1-eth0", "macspoofchk-ctr2-eth0", "macspoofchk-ctr3-net1"]
    rules = host_ns.run("nft", "list", "table", "bridge", "nat").stdout
    assert 'iifname "vethaaaa0001" jump cni-br-iface-ctr1-eth0' in rules
    assert "ether saddr 02:00:00:00:00:01 return" in rules
    with netns.entered(host_ns.path):
        spoofcheck.teardown("ctr1", "eth0")
        spoofcheck.teardown("ctr1", "eth0")  # gone already: fine
        spoofcheck.gc({"vethaaaa0003"})  # only ctr3's port still exists
    assert comments(host_ns) == ["macspoofchk-ctr3-net1"]
    assert "cni-br-iface-ctr2-eth0" not in host_ns.run("nft", "list", "table", "bridge", "nat").stdout


def test_teardown_without_table(host_ns):
    with netns.entered(host_ns.path):
        spoofcheck.teardown("nobody", "eth0")
    assert comments(host_ns) == []
