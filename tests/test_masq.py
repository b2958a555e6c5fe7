"""Masquerade rules in a netns that plays the host: setup, teardown without netns, GC."""
from __future__ import annotations

import ipaddress
import json

import pytest

from cni import masq, netns
from cni.errors import CNIError
from conftest import needs_root

pytestmark = needs_root

IPS = [ipaddress.ip_interface("10.22.0.5/16"), ipaddress.ip_interface("fd22::5/64")]


def nat_rules(ns) -> str:
    return ns.run("iptables-save", "-t", "nat").stdout + ns.run("ip6tables-save", "-t", "nat").stdout


def nft_rules(ns) -> list[dict]:
    r = ns.run("nft", "-j", "list", "ruleset")
    return [i["rule"] for i in json.loads(r.stdout)["nftables"] if "rule" in i]


def test_names_hash_as_the_reference_does():
    """sha512 for chains, sha256 for nft comments: the digests hashlib (OpenSSL) gives."""
    import hashlib

    assert masq.chain_name("mynet", "abc") == "CNI-" + hashlib.sha512(b"mynetabc").hexdigest()[:24]
    assert masq.nft_comment("mynet", "abc") == (f"cni {hashlib.sha256(b'mynet').hexdigest()[:12]} "
                                                f"{hashlib.sha256(b'mynet' + bytes(1) + b'abc').hexdigest()[:24]}")


def test_chain_name_is_deterministic_and_short():
    name = masq.chain_name("mynet", "abc")
    assert name == masq.chain_name("mynet", "abc") != masq.chain_name("mynet", "abd")
    assert name.startswith("CNI-") and len(name) == 28


def test_iptables_setup_and_teardown(host_ns):
    chain = masq.chain_name("net1", "ctr1")
    with netns.entered(host_ns.path):
        masq.setup("net1", "ctr1", IPS, masq.IPTABLES)
    rules = nat_rules(host_ns)
    assert f"-A POSTROUTING -s 10.22.0.5/32 -m comment --comment \"name: \\\"net1\\\" id: \\\"ctr1\\\"\" -j {chain}" in rules
    assert f"-A {chain} -d 10.22.0.0/16" in rules and f"-A {chain} ! -d 224.0.0.0/4" in rules
    assert "-A POSTROUTING -s fd22::5/128" in rules and f"-A {chain} ! -d ff00::/8" in rules
    with netns.entered(host_ns.path):
        masq.teardown("net1", "ctr1")
        masq.teardown("net1", "ctr1")  # already gone: still fine
    assert "CNI-" not in nat_rules(host_ns)


def test_iptables_teardown_leaves_other_containers(host_ns):
    with netns.entered(host_ns.path):
        masq.setup("net1", "a", IPS[:1], masq.IPTABLES)
        masq.setup("net1", "b", [ipaddress.ip_interface("10.22.0.6/16")], masq.IPTABLES)
        masq.teardown("net1", "a")
    rules = nat_rules(host_ns)
    assert masq.chain_name("net1", "a") not in rules and masq.chain_name("net1", "b") in rules


def test_nftables_setup_and_teardown(host_ns):
    with netns.entered(host_ns.path):
        masq.setup("net1", "ctr1", IPS, masq.NFTABLES)
        masq.setup("net1", "ctr2", [ipaddress.ip_interface("10.22.0.6/16")], masq.NFTABLES)
    rules = nft_rules(host_ns)
    assert len([r for r in rules if r.get("comment") == masq.nft_comment("net1", "ctr1")]) == 2
    with netns.entered(host_ns.path):
        masq.teardown("net1", "ctr1")
    comments = [r.get("comment") for r in nft_rules(host_ns)]
    assert comments == [masq.nft_comment("net1", "ctr2")]


@pytest.mark.parametrize("backend", masq.BACKENDS)
def test_gc_keeps_valid_and_other_networks(host_ns, backend):
    with netns.entered(host_ns.path):
        masq.setup("net1", "keep", IPS[:1], backend)
        masq.setup("net1", "stale", [ipaddress.ip_interface("10.22.0.9/16")], backend)
        masq.setup("net2", "other", [ipaddress.ip_interface("10.23.0.9/16")], backend)
        masq.gc("net1", {"keep"})
        after = nat_rules(host_ns) + json.dumps(nft_rules(host_ns))
        for net, cid, kept in (("net1", "keep", True), ("net1", "stale", False), ("net2", "other", True)):
            marker = masq.chain_name(net, cid) if backend == masq.IPTABLES else masq.nft_comment(net, cid)
            assert (marker in after) == kept, (net, cid)
        masq.teardown("net1", "keep")
        masq.teardown("net2", "other")


def test_backend_choice():
    assert masq.choose_backend("nftables") == "nftables"
    assert masq.choose_backend("") in masq.BACKENDS
    with pytest.raises(CNIError) as err:
        masq.choose_backend("ebtables")
    assert err.value.code == 7
