"""Bad input, as a catalogue: every case against every plugin that reads that input.

Each case must answer with the right CNI error code on stdout, exit 1, print no
traceback, and leave the host exactly as it was: links, addresses, routes, nat
rules (iptables and nft) of the host netns, the container netns, and the files
of the host-local data dir (`lock` aside: it is made on first use, as Go does).
Cases that fail only after a link exists prove the rollback as well.

The base configuration of each plugin is valid (test_base_configurations_are_valid),
so each case differs from a working call by exactly its one bad input.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, NamedTuple

import pytest

from conftest import Netns, needs_root
from reliability_env import no_traceback, state, uplink, wait_settled

pytestmark = needs_root

ALL = ("bridge", "macvlan", "ipvlan", "ptp", "vlan", "dummy", "host-device", "tap", "host-local", "dhcp", "loopback", "portmap", "firewall", "bandwidth",
       "static", "tuning")
MAIN = ("bridge", "macvlan", "ipvlan", "ptp", "vlan", "dummy", "tap")
# Plugins whose links this kernel may lack: their base ADD reaches the kernel and fails there.
KERNEL_KINDS = {"ipvlan": "ipvlan", "vlan": "vlan", "dummy": "dummy"}
MTU_USERS = MAIN + ("tuning",)
# Plugins whose ADD reaches host-local with the same configuration (ipvlan cannot make its link here).
IPAM_USERS = ("bridge", "macvlan", "ptp", "tap", "host-local")
# Plugins that read CNI_ARGS themselves or through host-local.
ARGS_USERS = ("bridge", "macvlan", "ptp", "tap", "host-local", "static", "tuning")
# tuning changes this link of the container (made by the world fixture) instead of making one.
TUNED = "tun0"
DELETE = object()


class World(NamedTuple):
    host: Netns
    ctr: Netns
    data_dir: Path
    tmp: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("badinput")
    host, ctr = Netns("pycni-host"), Netns("pycni-ctr")
    try:
        uplink(host)
        # bandwidth shapes the host end of a container veth listed in prevResult
        host.run("ip", "link", "add", "bwveth0", "type", "veth", "peer", "name", "bweth0", "netns", ctr.name)
        host.run("ip", "link", "set", "bwveth0", "up")
        host.run("ip", "link", "add", "hdbad0", "type", "veth", "peer", "name", "hdbad0p")  # host-device's
        wait_settled(host)
        (tmp / "networks").mkdir()
        noexec = tmp / "noexec"
        noexec.mkdir()
        (noexec / "host-local").write_text("#!/bin/sh\necho should not run\n")  # mode 0644
        ctr.run("ip", "link", "add", TUNED, "type", "veth", "peer", "name", "tun1")
        yield World(host, ctr, tmp / "networks", tmp)
    finally:
        ctr.remove()
        host.remove()


def base(plugin: str, w: World) -> dict:
    ipam = {"type": "host-local", "subnet": "10.66.0.0/24", "dataDir": str(w.data_dir)}
    conf: dict[str, Any] = {"cniVersion": "1.0.0", "name": "badnet", "type": plugin, "ipam": ipam}
    if plugin == "bridge":
        conf.update(bridge="bbr0", isGateway=True, ipMasq=True)
    elif plugin == "ptp":
        conf.update(ipMasq=True)
    elif plugin in ("macvlan", "ipvlan"):
        conf.update(master="uplink0")
    elif plugin == "vlan":
        conf.update(master="uplink0", vlanId=5)
    elif plugin == "host-device":
        conf.update(device="hdbad0")
    elif plugin == "dhcp":
        conf["ipam"] = {"type": "dhcp", "daemonSocketPath": str(w.tmp / "no-daemon.sock")}
    elif plugin == "portmap":
        conf.update(capabilities={"portMappings": True},
                    runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
                    prevResult={"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": w.ctr.path}],
                                "ips": [{"address": "10.66.0.2/24", "interface": 0},
                                        {"address": "fd66::2/64", "interface": 0}]})
    elif plugin == "firewall":
        conf.update(backend="iptables", prevResult=FIREWALL_PREV)
    elif plugin == "bandwidth":
        conf.update(ingressRate=8000, ingressBurst=800, egressRate=8000, egressBurst=800,
                    prevResult={"cniVersion": "1.0.0", "interfaces": [{"name": "bwveth0"}, {"name": "bweth0", "sandbox": w.ctr.path}],
                                "ips": [{"address": "10.66.0.5/24", "interface": 1}]})
    elif plugin == "static":
        conf["ipam"] = {"type": "static", "addresses": [{"address": "10.66.0.5/24", "gateway": "10.66.0.1"}]}
    elif plugin == "tuning":
        # Its saved values would land in the compared data dir: a failed ADD must leave none.
        del conf["ipam"]
        conf.update(mtu=1400, sysctl={"net.ipv4.conf.IFNAME.arp_filter": "1"}, dataDir=str(w.data_dir / "tuning"),
                    prevResult={"cniVersion": "1.0.0", "interfaces": [{"name": TUNED, "sandbox": w.ctr.path}],
                                "ips": [{"address": "10.66.0.9/24", "interface": 0}]})
    return conf


FIREWALL_PREV = {"cniVersion": "1.0.0", "interfaces": [{"name": "bbr0"}, {"name": "veth0"}, {"name": "eth0", "sandbox": "/x"}],
                 "ips": [{"address": "10.66.0.5/24", "gateway": "10.66.0.1", "interface": 2}]}


# ---- building cases ----------------------------------------------------------------------


def _apply(target: dict, changes: dict) -> None:
    for key, value in changes.items():
        if value is DELETE:
            target.pop(key, None)
        else:
            target[key] = value


def top(**changes) -> Callable:
    def edit(conf: dict, w: World) -> dict:
        _apply(conf, changes)
        return conf
    return edit


def in_ipam(**changes) -> Callable:
    def edit(conf: dict, w: World) -> dict:
        _apply(conf.setdefault("ipam", {}), changes)  # tuning has none of its own
        return conf
    return edit


def in_mapping(**changes) -> Callable:
    def edit(conf: dict, w: World) -> dict:
        _apply(conf["runtimeConfig"]["portMappings"][0], changes)
        return conf
    return edit


def raw(data: bytes) -> Callable:
    return lambda conf, w: data


def keep(conf: dict, w: World) -> dict:
    return conf


def with_text(tail: str) -> Callable:
    """The configuration's JSON text with `tail` spliced in before its last brace (duplicate keys)."""
    return lambda conf, w: (json.dumps(conf)[:-1] + ", " + tail + "}").encode()


def both(*edits: Callable) -> Callable:
    def edit(conf: dict, w: World) -> dict:
        for one in edits:
            conf = one(conf, w)
        return conf
    return edit


def truncated(conf: dict, w: World) -> bytes:
    text = json.dumps(conf).encode()
    return text[: len(text) // 2]


class Case(NamedTuple):
    id: str
    plugins: tuple
    code: int
    edit: Callable = keep
    run: dict = {}  # overrides of PluginSet.run keywords (containerid, netns, ifname, args, cni_path, command)
    msg: str = ""


CASES = [
    # -- standard input that is not a configuration
    Case("json-malformed", ALL, 6, raw(b'{"cniVersion": "1.0.0", "name": ')),
    Case("json-truncated", ALL, 6, truncated),
    Case("json-array", ALL, 6, raw(b"[]")),
    Case("json-string", ALL, 6, raw(b'"bridge"')),
    Case("json-null", ALL, 6, raw(b"null")),
    Case("stdin-empty", ALL, 6, raw(b"")),
    Case("stdin-not-utf8", ALL, 6, raw(b"\xff\xfe{\x00")),
    Case("stdin-10MB-junk", ALL, 6, raw(b"x" * (10 << 20))),
    Case("stdin-10MB-bad-version", ALL, 1, top(padding="p" * (10 << 20), cniVersion="9.9.9")),
    Case("json-deeply-nested", ALL, 6, raw(b'{"a":' * 200000)),
    # -- versions
    Case("version-unknown", ALL, 1, top(cniVersion="9.9.9")),
    Case("version-not-a-string", ALL, 7, top(cniVersion=1.0)),
    # -- network names
    Case("name-missing", ALL, 7, top(name=DELETE)),
    Case("name-empty", ALL, 7, top(name="")),
    Case("name-slash", ALL, 7, top(name="../evil")),
    Case("name-dotdot", ALL, 7, top(name="..")),
    Case("name-number", ALL, 7, top(name=42)),
    # -- environment
    Case("command-unknown", ALL, 4, run={"command": "ATTACH"}),
    Case("env-no-containerid", ALL, 4, run={"containerid": ""}, msg="CNI_CONTAINERID"),
    Case("env-no-netns", ALL, 4, run={"netns": ""}, msg="CNI_NETNS"),
    Case("env-no-ifname", ALL, 4, run={"ifname": ""}, msg="CNI_IFNAME"),
    Case("env-no-path", ALL, 4, run={"cni_path": ""}, msg="CNI_PATH"),
    Case("cid-slash", ALL, 4, run={"containerid": "a/b"}),
    Case("cid-dotdot", ALL, 4, run={"containerid": ".."}),
    Case("cid-traversal", ALL, 4, run={"containerid": "../../etc/passwd"}),
    Case("cid-newline", ALL, 4, run={"containerid": "abc\n"}),
    Case("ifname-16-bytes", ALL, 4, run={"ifname": "x" * 16}),
    Case("ifname-16-utf8-bytes", ALL, 4, run={"ifname": "é" * 8}),
    Case("ifname-slash", ALL, 4, run={"ifname": "eth/0"}),
    Case("ifname-dot", ALL, 4, run={"ifname": "."}),
    Case("ifname-dotdot", ALL, 4, run={"ifname": ".."}),
    Case("ifname-space", ALL, 4, run={"ifname": "eth 0"}),
    Case("ifname-colon", ALL, 4, run={"ifname": "eth:0"}),
    Case("args-malformed", ARGS_USERS, 4, run={"args": "IP"}),
    Case("args-unknown-key", ARGS_USERS, 4, run={"args": "FOO=bar"}),
    Case("args-ignoreunknown-garbage", ARGS_USERS, 4, run={"args": "IgnoreUnknown=maybe"}),
    # -- prevResult
    Case("prevresult-string", ALL, 7, top(prevResult="x")),
    Case("prevresult-list", ALL, 7, top(prevResult=[])),
    Case("prevresult-unknown-version", ALL, 7, top(prevResult={"cniVersion": "7.7.7", "ips": []})),
    Case("prevresult-bad-address", ALL, 7,
         top(prevResult={"cniVersion": "1.0.0", "ips": [{"address": "nonsense"}]})),
    # -- wrong types and ranges in the main plugins' keys
    Case("mtu-negative", MTU_USERS, 7, top(mtu=-1)),
    Case("mtu-70000", MTU_USERS, 7, top(mtu=70000)),
    Case("mtu-string", MTU_USERS, 7, top(mtu="1500")),
    Case("mtu-float", MTU_USERS, 7, top(mtu=1500.5)),
    Case("mtu-bool", MTU_USERS, 7, top(mtu=True)),
    Case("ipmasq-string", ("bridge", "ptp"), 7, top(ipMasq="true")),
    Case("ipmasq-backend-unknown", ("bridge", "ptp"), 7, top(ipMasqBackend="pf")),
    Case("isgateway-string", ("bridge",), 7, top(isGateway="yes")),
    Case("hairpin-number", ("bridge",), 7, top(hairpinMode=1)),
    Case("vlan-4095", ("bridge",), 7, top(vlan=4095)),
    Case("vlan-negative", ("bridge",), 7, top(vlan=-1)),
    Case("vlantrunk-min-after-max", ("bridge",), 7, top(vlanTrunk=[{"minID": 10, "maxID": 5}])),
    Case("vlantrunk-not-a-list", ("bridge",), 7, top(vlanTrunk={"id": 5})),
    Case("bridge-name-16-bytes", ("bridge",), 7, top(bridge="b" * 16)),
    Case("bridge-name-slash", ("bridge",), 7, top(bridge="br/0")),
    Case("mode-unknown", ("macvlan", "ipvlan"), 7, top(mode="bogus")),
    Case("master-number", ("macvlan", "ipvlan", "vlan"), 7, top(master=5)),
    Case("master-absent", ("macvlan", "ipvlan", "vlan"), 7, top(master="nosuchdev0")),
    Case("master-missing", ("vlan",), 7, top(master=DELETE)),
    Case("vlanid-4095", ("vlan",), 7, top(vlanId=4095)),
    Case("vlanid-negative", ("vlan",), 7, top(vlanId=-1)),
    Case("vlanid-string", ("vlan",), 7, top(vlanId="5")),
    Case("ipam-missing", ("vlan", "dummy"), 7, top(ipam=DELETE)),
    Case("mac-invalid", ("bridge", "macvlan", "tap", "tuning"), 7, top(runtimeConfig={"mac": "zz:00:00:00:00:01"})),
    # -- portmap: the mappings and the keys around them; nothing may be written
    Case("portmap-no-prevresult", ("portmap",), 7, top(prevResult=DELETE)),
    Case("portmap-hostport-zero", ("portmap",), 7, in_mapping(hostPort=0)),
    Case("portmap-hostport-70000", ("portmap",), 7, in_mapping(hostPort=70000)),
    Case("portmap-hostport-string", ("portmap",), 7, in_mapping(hostPort="8080")),
    Case("portmap-hostport-missing", ("portmap",), 7, in_mapping(hostPort=DELETE)),
    Case("portmap-containerport-negative", ("portmap",), 7, in_mapping(containerPort=-80)),
    Case("portmap-protocol-icmp", ("portmap",), 7, in_mapping(protocol="icmp")),
    Case("portmap-protocol-missing", ("portmap",), 7, in_mapping(protocol=DELETE)),
    Case("portmap-hostip-garbage", ("portmap",), 7, in_mapping(hostIP="10.0.0.300")),
    Case("portmap-hostip-number", ("portmap",), 7, in_mapping(hostIP=10)),
    Case("portmap-mapping-not-an-object", ("portmap",), 7, top(runtimeConfig={"portMappings": [8080]})),
    Case("portmap-mappings-not-a-list", ("portmap",), 7, top(runtimeConfig={"portMappings": {"hostPort": 1}})),
    Case("portmap-markbit-32", ("portmap",), 7, top(markMasqBit=32)),
    Case("portmap-markbit-and-external-chain", ("portmap",), 7, top(markMasqBit=14, externalSetMarkChain="KUBE-MARK-MASQ")),
    Case("portmap-backend-unknown", ("portmap",), 7, top(backend="pf")),
    Case("portmap-nft-conditions-on-iptables", ("portmap",), 7, top(backend="iptables", conditionsV4=["ip saddr 1.2.3.4"])),
    Case("portmap-external-chain-on-nftables", ("portmap",), 7, top(backend="nftables", externalSetMarkChain="X")),
    Case("portmap-snat-string", ("portmap",), 7, top(snat="false")),
    Case("portmap-conditions-not-strings", ("portmap",), 7, top(conditionsV4=[1, 2])),
    # -- the ipam object
    Case("ipam-not-an-object", ALL, 7, top(ipam="host-local")),
    Case("ipam-type-number", ALL, 7, in_ipam(type=5)),
    Case("ipam-type-relative-path", ("bridge", "macvlan", "ptp", "host-device", "tap"), 7, in_ipam(type="../host-local")),
    Case("ipam-type-absolute-path", ("bridge", "macvlan", "ptp", "host-device", "tap"), 7, in_ipam(type="/usr/lib/cni/host-local")),
    Case("ipam-type-dotdot", ("bridge", "macvlan", "ptp", "host-device", "tap"), 7, in_ipam(type="..")),
    Case("cni-path-not-executable", ("bridge", "macvlan", "ptp", "host-device", "tap"), 999, msg="failed to find plugin",
         run={"cni_path": "@noexec"}),
    Case("cni-path-missing-dir", ("bridge", "macvlan", "ptp", "host-device", "tap"), 999, msg="failed to find plugin",
         run={"cni_path": "/nonexistent/pycni"}),
    # -- host-local's ranges, reached directly and through the main plugins
    Case("subnet-prefix-33", IPAM_USERS, 7, in_ipam(subnet="10.66.0.0/33")),
    Case("subnet-garbage", IPAM_USERS, 7, in_ipam(subnet="banana")),
    Case("subnet-host-bits", IPAM_USERS, 7, in_ipam(subnet="10.66.0.5/24")),
    Case("subnet-number", IPAM_USERS, 7, in_ipam(subnet=10)),
    Case("range-ipv6-start-in-ipv4", IPAM_USERS, 7, in_ipam(rangeStart="fd00::5")),
    Case("range-start-after-end", IPAM_USERS, 7, in_ipam(rangeStart="10.66.0.200", rangeEnd="10.66.0.100")),
    Case("range-start-outside", IPAM_USERS, 7, in_ipam(rangeStart="10.99.0.5")),
    Case("gateway-octet-300", IPAM_USERS, 7, in_ipam(gateway="10.66.0.300")),
    Case("ranges-not-a-list", IPAM_USERS, 7, in_ipam(ranges="10.67.0.0/24")),
    Case("ranges-empty-set", IPAM_USERS, 7, in_ipam(subnet=DELETE, ranges=[[]])),
    Case("no-ranges-at-all", IPAM_USERS, 7, in_ipam(subnet=DELETE)),
    Case("routes-bad-dst", IPAM_USERS + ("static",), 7, in_ipam(routes=[{"dst": "0.0.0.0/99"}])),
    Case("datadir-relative", IPAM_USERS, 7, in_ipam(dataDir="relative/dir")),
    Case("datadir-dotdot", IPAM_USERS, 7, in_ipam(dataDir="/tmp/../etc")),
    Case("args-ip-garbage", IPAM_USERS + ("static",), 7, run={"args": "IgnoreUnknown=1;IP=banana"}),
    Case("runtime-ips-garbage", IPAM_USERS + ("static",), 7, top(runtimeConfig={"ips": ["banana"]})),
    Case("requested-ip-outside", IPAM_USERS, 7, top(args={"cni": {"ips": ["192.168.5.5"]}})),
    # -- the firewall plugin's keys: refused before any rule is written
    Case("fw-backend-unknown", ("firewall",), 7, top(backend="pf")),
    Case("fw-backend-number", ("firewall",), 7, top(backend=1)),
    Case("fw-ingress-policy-unknown", ("firewall",), 7, top(ingressPolicy="isolated")),
    Case("fw-ingress-policy-list", ("firewall",), 7, top(ingressPolicy=["same-bridge"])),
    Case("fw-same-bridge-no-interfaces", ("firewall",), 7,
         top(ingressPolicy="same-bridge", prevResult={"cniVersion": "1.0.0", "ips": FIREWALL_PREV["ips"]})),
    Case("fw-admin-chain-29-chars", ("firewall",), 7, top(iptablesAdminChainName="C" * 29)),
    Case("fw-admin-chain-space", ("firewall",), 7, top(iptablesAdminChainName="CNI ADMIN")),
    Case("fw-admin-chain-option", ("firewall",), 7, top(iptablesAdminChainName="-j")),
    Case("fw-zone-number", ("firewall",), 7, top(firewalldZone=5)),
    Case("fw-no-prevresult", ("firewall",), 7, top(prevResult=DELETE)),
    Case("fw-version-0.3.1", ("firewall",), 1, top(cniVersion="0.3.1")),
    # -- the bandwidth plugin's keys
    Case("bw-rate-without-burst", ("bandwidth",), 7, top(ingressBurst=DELETE), msg="burst must also be set"),
    Case("bw-burst-without-rate", ("bandwidth",), 7, top(egressRate=DELETE), msg="rate must also be set"),
    Case("bw-rate-negative", ("bandwidth",), 7, top(ingressRate=-8000)),
    Case("bw-rate-string", ("bandwidth",), 7, top(ingressRate="8kbit")),
    Case("bw-rate-float", ("bandwidth",), 7, top(egressRate=8000.5)),
    Case("bw-burst-4GB", ("bandwidth",), 7, top(egressBurst=8 * (2**32 - 1)), msg="4GB"),
    Case("bw-rate-below-one-byte", ("bandwidth",), 7, top(ingressRate=4)),
    Case("bw-both-subnet-lists", ("bandwidth",), 7, top(shapedSubnets=["10.0.0.0/8"], unshapedSubnets=["10.1.0.0/16"])),
    Case("bw-subnets-not-strings", ("bandwidth",), 7, top(shapedSubnets=[10])),
    Case("bw-subnet-garbage", ("bandwidth",), 7, top(unshapedSubnets=["10.0.0.0/40"])),
    Case("bw-runtime-not-an-object", ("bandwidth",), 7,
         top(ingressRate=DELETE, ingressBurst=DELETE, egressRate=DELETE, egressBurst=DELETE,
             runtimeConfig={"bandwidth": "fast"})),
    Case("bw-runtime-rate-without-burst", ("bandwidth",), 7,
         top(ingressRate=DELETE, ingressBurst=DELETE, egressRate=DELETE, egressBurst=DELETE,
             runtimeConfig={"bandwidth": {"egressRate": 8000}})),
    Case("bw-no-prevresult", ("bandwidth",), 7, top(prevResult=DELETE)),
    Case("bw-version-0.2.0", ("bandwidth",), 1, top(cniVersion="0.2.0")),
    # -- host-device's selectors
    Case("hostdev-no-selector", ("host-device",), 7, top(device=DELETE)),
    Case("hostdev-two-selectors", ("host-device",), 7, top(hwaddr="02:00:00:00:00:01")),
    Case("hostdev-deviceid-and-device", ("host-device",), 7, top(runtimeConfig={"deviceID": "0000:00:1f.6"})),
    Case("hostdev-device-absent", ("host-device",), 7, top(device="nosuchdev0")),
    Case("hostdev-device-number", ("host-device",), 7, top(device=5)),
    Case("hostdev-hwaddr-invalid", ("host-device",), 7, top(device=DELETE, hwaddr="zz:00:00:00:00:01")),
    Case("hostdev-kernelpath-relative", ("host-device",), 7, top(device=DELETE, kernelpath="sys/devices/pci0")),
    Case("hostdev-kernelpath-outside-sys", ("host-device",), 7, top(device=DELETE, kernelpath="/etc")),
    Case("hostdev-kernelpath-dotdot", ("host-device",), 7, top(device=DELETE, kernelpath="/sys/devices/../../etc")),
    Case("hostdev-pci-traversal", ("host-device",), 7, top(device=DELETE, pciBusID="../../../../etc")),
    Case("hostdev-pci-absent", ("host-device",), 7, top(device=DELETE, pciBusID="0000:ff:1f.7")),
    Case("hostdev-deviceid-number", ("host-device",), 7, top(device=DELETE, runtimeConfig={"deviceID": 5})),
    # -- tap's keys
    Case("tap-mac-key-invalid", ("tap",), 7, top(mac="02:00:00:00:00")),
    Case("tap-owner-negative", ("tap",), 7, top(owner=-1)),
    Case("tap-owner-string", ("tap",), 7, top(owner="1000")),
    Case("tap-owner-too-big", ("tap",), 7, top(owner=2**32 - 1)),
    Case("tap-group-float", ("tap",), 7, top(group=10.5)),
    Case("tap-multiqueue-string", ("tap",), 7, top(multiQueue="yes")),
    Case("tap-bridge-absent", ("tap",), 7, top(bridge="nosuchbr0")),
    Case("tap-bridge-not-a-bridge", ("tap",), 7, top(bridge="lo")),
    Case("tap-bridge-number", ("tap",), 7, top(bridge=3)),
    Case("tap-selinux-number", ("tap",), 7, top(selinuxContext=5)),
    # -- static's keys
    Case("static-no-ipam", ("static",), 7, top(ipam=DELETE), msg="ipam"),
    Case("static-address-plain-ip", ("static",), 7, in_ipam(addresses=[{"address": "10.66.0.5"}]),
         msg="ipam.addresses[0].address"),
    Case("static-address-number", ("static",), 7, in_ipam(addresses=[{"address": 5}]), msg="ipam.addresses[0].address"),
    Case("static-addresses-not-a-list", ("static",), 7, in_ipam(addresses="10.66.0.5/24")),
    Case("static-gateway-other-family", ("static",), 7,
         in_ipam(addresses=[{"address": "10.66.0.5/24", "gateway": "fd00::1"}]), msg="ipam.addresses[0].gateway"),
    Case("static-route-gw-other-family", ("static",), 7, in_ipam(routes=[{"dst": "0.0.0.0/0", "gw": "fd00::1"}]),
         msg="ipam.routes[0]"),
    Case("static-dns-not-an-object", ("static",), 7, in_ipam(dns="10.66.0.53"), msg="ipam.dns"),
    Case("static-legacy-two-ipv4", ("static",), 7,
         both(top(cniVersion="0.2.0"), in_ipam(addresses=[{"address": "10.66.0.5/24"}, {"address": "10.66.0.6/24"}])),
         msg="does not support more than 1 address per family"),
    Case("static-args-gateway-garbage", ("static",), 7, run={"args": "IP=10.66.0.7/24;GATEWAY=banana"}),
    # -- tuning's keys (a failure after the first sysctl or link change proves the rollback)
    Case("tuning-no-prevresult", ("tuning",), 7, top(prevResult=DELETE), msg="prevResult"),
    Case("sysctl-outside-net", ("tuning",), 7, top(sysctl={"kernel.hostname": "evil"}), msg="invalid net sysctl key"),
    Case("sysctl-net-itself", ("tuning",), 7, top(sysctl={"net": "1"}), msg="invalid net sysctl key"),
    Case("sysctl-args-outside-net", ("tuning",), 7, top(args={"cni": {"sysctl": {"kernel.hostname": "evil"}}})),
    Case("sysctl-not-an-object", ("tuning",), 7, top(sysctl=["net.core.somaxconn=5"])),
    Case("sysctl-value-number", ("tuning",), 7, top(sysctl={"net.core.somaxconn": 5})),
    Case("sysctl-duplicated", ("tuning",), 7,
         with_text('"sysctl": {"net.core.somaxconn": "100", "net.core.somaxconn": "200"}'), msg="duplicated"),
    Case("sysctl-unknown-knob", ("tuning",), 7,
         top(sysctl={"net.ipv4.conf.IFNAME.arp_filter": "1", "net.ipv4.no_such_knob": "1"})),
    Case("tuning-mac-multicast", ("tuning",), 7, top(mac="01:00:5e:00:00:01"), msg="MAC address"),
    Case("tuning-mac-short", ("tuning",), 7, top(mac="c2:00:00:00:00")),
    Case("txqlen-negative", ("tuning",), 7, top(txQLen=-1)),
    Case("txqlen-string", ("tuning",), 7, top(txQLen="1000")),
    Case("promisc-string", ("tuning",), 7, top(promisc="true")),
    Case("allmulti-number", ("tuning",), 7, top(allmulti=1)),
    Case("tuning-args-mtu-string", ("tuning",), 7, top(args={"cni": {"mtu": "1400"}})),
    Case("tuning-datadir-relative", ("tuning",), 7, top(dataDir="run/tuning")),
    # -- the dhcp plugin's keys
    Case("dhcp-socket-relative", ("dhcp",), 7, in_ipam(daemonSocketPath="run/dhcp.sock")),
    Case("dhcp-priority-negative", ("dhcp",), 7, in_ipam(priority=-1)),
    Case("dhcp-request-not-a-list", ("dhcp",), 7, in_ipam(request="routers")),
]

PAIRS = [(case, plugin) for case in CASES for plugin in case.plugins]


@pytest.fixture
def shipped(request, source_plugins):
    """The catalogue runs once per pair, against what ships: the frozen bin/ when it is
    built (always under ./build.sh test), the source entrypoints otherwise. The pairs
    grow with every plugin; running each twice doubled the suite's longest file for no
    new path (test_base_configurations_are_valid still covers both)."""
    from conftest import frozen_available

    if frozen_available() or os.environ.get("PYCNI_REQUIRE_FROZEN"):
        return request.getfixturevalue("frozen_plugins")
    return source_plugins


def test_catalogue_is_big_enough():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case,plugin", PAIRS, ids=[f"{c.id}-{p}" for c, p in PAIRS])
def test_bad_input(shipped, world, case, plugin):
    conf = case.edit(base(plugin, world), world)
    kw = dict(containerid="badctr", netns=world.ctr.path, ifname=TUNED if plugin == "tuning" else "eth0",
              in_netns=world.host.path)
    kw.update(case.run)
    command = kw.pop("command", "ADD")
    if kw.get("cni_path") == "@noexec":
        kw["cni_path"] = str(world.tmp / "noexec")
    before = state(world.host, [world.ctr], world.data_dir)
    out = shipped.run(plugin, command, conf, **kw)
    no_traceback(out)
    assert out.status == 1, out
    assert out.json["code"] == case.code, out.out[:2000]
    assert case.msg in out.json["msg"]
    assert state(world.host, [world.ctr], world.data_dir) == before


def test_base_configurations_are_valid(plugins, world):
    """Without the bad input each call works (or, for dhcp, reaches the missing daemon)."""
    from conftest import has_link_kind

    for plugin in ALL:
        conf = base(plugin, world)
        kw = dict(containerid="goodctr", netns=world.ctr.path, in_netns=world.host.path)
        if plugin == "bandwidth":
            kw["ifname"] = "bweth0"
        elif plugin == "tuning":
            kw["ifname"] = TUNED
        out = plugins.run(plugin, "ADD", conf, **kw)
        if plugin == "dhcp":
            assert out.json["code"] == 11 and "not running" in out.json["msg"], out
            continue
        if plugin in KERNEL_KINDS and not has_link_kind(KERNEL_KINDS[plugin]):
            assert out.json["code"] == 999, out  # made it past every check to the kernel
            continue
        out.ok()
        plugins.run(plugin, "DEL", conf, **kw).ok()


# ---- chained plugins (sbr, vrf): their own keys, on an interface a main plugin made -------------

CHAINED = ("sbr", "vrf")
CHAINED_IF = "sbr0"


def chained_base(plugin: str, w: World) -> dict:
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": CHAINED_IF, "sandbox": w.ctr.path}],
            "ips": [{"interface": 0, "address": "10.67.0.5/24", "gateway": "10.67.0.1"}]}
    conf: dict[str, Any] = {"cniVersion": "1.0.0", "name": "badnet", "type": plugin, "prevResult": prev}
    if plugin == "vrf":
        conf["vrfname"] = "badvrf"
    return conf


CHAINED_CASES = [
    Case("prevresult-missing", CHAINED, 7, top(prevResult=DELETE), msg="prevResult"),
    Case("prevresult-no-ips", ("sbr",), 7, top(prevResult={"cniVersion": "1.0.0"}), msg="no IP addresses"),
    Case("prevresult-other-interface", ("sbr",), 7,
         top(prevResult={"cniVersion": "1.0.0", "interfaces": [{"name": "eth9"}],
                         "ips": [{"interface": 0, "address": "10.67.0.5/24"}]})),
    Case("sbr-table-string", ("sbr",), 7, top(table="100")),
    Case("sbr-table-zero", ("sbr",), 7, top(table=0)),
    Case("sbr-table-negative", ("sbr",), 7, top(table=-1)),
    Case("sbr-table-2-32", ("sbr",), 7, top(table=2**32)),
    Case("vrfname-missing", ("vrf",), 7, top(vrfname=DELETE), msg="vrf name"),
    Case("vrfname-empty", ("vrf",), 7, top(vrfname="")),
    Case("vrfname-16-bytes", ("vrf",), 7, top(vrfname="v" * 16)),
    Case("vrfname-slash", ("vrf",), 7, top(vrfname="a/b")),
    Case("vrfname-number", ("vrf",), 7, top(vrfname=5)),
    Case("vrf-table-string", ("vrf",), 7, top(table="10")),
    Case("vrf-table-negative", ("vrf",), 7, top(table=-1)),
    Case("vrf-del-without-vrfname", ("vrf",), 7, top(vrfname=DELETE), run={"command": "DEL"}),
    Case("vrf-interface-absent", ("vrf",), 999, run={"ifname": "nosuch0"}, msg="nosuch0"),
    Case("sbr-interface-absent", ("sbr",), 999, top(prevResult={"cniVersion": "1.0.0", "ips": [{"address": "10.67.0.5/24"}]}),
         run={"ifname": "nosuch0"}, msg="nosuch0"),
    Case("chained-netns-gone", CHAINED, 999, run={"netns": "/run/netns/pycni-gone"}),
]
CHAINED_PAIRS = [(case, plugin) for case in CHAINED_CASES for plugin in case.plugins]


def routing(ns: Netns) -> list:
    return [ns.ip_json(family, *what) for family in ("-4", "-6") for what in (("rule",), ("route", "show", "table", "all"))]


@pytest.mark.parametrize("case,plugin", CHAINED_PAIRS, ids=[f"{c.id}-{p}" for c, p in CHAINED_PAIRS])
def test_chained_bad_input(plugins, world, case, plugin):
    conf = case.edit(chained_base(plugin, world), world)
    kw = dict(containerid="badctr", netns=world.ctr.path, ifname=CHAINED_IF, in_netns=world.host.path)
    kw.update(case.run)
    command = kw.pop("command", "ADD")
    before = state(world.host, [world.ctr], world.data_dir), routing(world.ctr)
    out = plugins.run(plugin, command, conf, **kw)
    no_traceback(out)
    assert out.status == 1, out
    assert out.json["code"] == case.code, out.out[:2000]
    assert case.msg in out.json["msg"]
    assert (state(world.host, [world.ctr], world.data_dir), routing(world.ctr)) == before


def test_chained_base_configurations_are_valid(plugins, world):
    """With sbr0 present the base call works (vrf: up to the kernel, which may lack VRFs)."""
    world.ctr.run("ip", "link", "add", CHAINED_IF, "type", "veth", "peer", "name", CHAINED_IF + "p")
    try:
        world.ctr.run("ip", "addr", "add", "10.67.0.5/24", "dev", CHAINED_IF)
        world.ctr.run("ip", "link", "set", CHAINED_IF, "up")
        kw = dict(containerid="goodctr", netns=world.ctr.path, ifname=CHAINED_IF, in_netns=world.host.path)
        for plugin in CHAINED:
            conf = chained_base(plugin, world)
            out = plugins.run(plugin, "ADD", conf, **kw)
            if plugin == "vrf" and out.status and "could not add VRF" in out.json["msg"]:
                continue  # made it past every check to the kernel
            out.ok()
            plugins.run(plugin, "DEL", conf, **kw).ok()
    finally:
        world.ctr.run("ip", "link", "del", CHAINED_IF, check=False)
