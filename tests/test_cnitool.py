"""cnitool end to end: a netns plays the host, another the container.

Plugins are ours where they exist (source or frozen), Go's otherwise (see
runtime_env.plugin_dir); cnitool runs from source and frozen.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ALL_VERSIONS, needs_root
from runtime_env import cnitool_cmd, cnitool_env, frozen_cnitool_available, plugin_dir

pytestmark = needs_root


@dataclass
class Tool:
    kind: str
    cmd: list
    env: dict
    bin: Path
    served: dict
    netconf: Path
    cache: Path
    data: Path
    host: object

    def run(self, *args, env=None, check=False):
        full = dict(self.env, NETCONFPATH=str(self.netconf), CNI_PATH=str(self.bin), CNI_CACHE_DIR=str(self.cache))
        full.update(env or {})
        p = subprocess.run(["ip", "netns", "exec", self.host.name, *self.cmd, *args], env=full,
                           capture_output=True, text=True, timeout=60)
        if check:
            assert p.returncode == 0, f"cnitool {args} failed: {p.stdout} {p.stderr}"
        return p

    def network(self, version="1.0.0", name="mynet", extra_ipam=None, extra=None, file=None):
        ipam = {"type": "host-local", "subnet": "10.22.0.0/16", "dataDir": str(self.data),
                "routes": [{"dst": "0.0.0.0/0"}], **(extra_ipam or {})}
        conf = {"cniVersion": version, "name": name, "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": True, "ipam": ipam, **(extra or {})}]}
        (self.netconf / (file or f"10-{name}.conflist")).write_text(json.dumps(conf))
        return conf

    def max_version(self):
        ours = all(self.served.get(name) == "ours" for name in ("bridge", "host-local"))
        return "1.1.0" if ours else "1.0.0"


@pytest.fixture(params=["source", "frozen"])
def tool(request, tmp_path, host_ns):
    kind = request.param
    if kind == "frozen" and not frozen_cnitool_available():
        pytest.skip("bin/cnitool is not built (run ./build.sh)")
    d, served = plugin_dir(tmp_path, kind)
    if "bridge" not in served or "host-local" not in served:
        pytest.skip("no bridge/host-local plugins available")
    netconf = tmp_path / "net.d"
    netconf.mkdir()
    return Tool(kind, cnitool_cmd(kind), cnitool_env(kind), d, served, netconf, tmp_path / "cache",
                tmp_path / "ipam", host_ns)


def container_id(path: str) -> str:
    return "cnitool-" + hashlib.sha512(path.encode()).hexdigest()[:20]


def reservations(tool, name="mynet"):
    d = tool.data / name
    return sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) if d.exists() else []


def host_veths(tool):
    return [l for l in tool.host.links() if l.startswith("veth")]


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_add_check_del(tool, container_ns, version):
    if version == "1.1.0" and tool.max_version() != "1.1.0":
        pytest.skip("Go's host-local stands in and stops at 1.0.0")
    tool.network(version)
    out = tool.run("add", "mynet", container_ns.path, check=True)
    result = json.loads(out.stdout)
    assert result["cniVersion"] == version
    addrs = [a["local"] for l in container_ns.ip_json("addr", "show", "dev", "eth0") for a in l["addr_info"]
             if a["family"] == "inet"]
    assert len(addrs) == 1 and addrs[0].startswith("10.22.")
    cid = container_id(container_ns.path)
    entry = json.loads((tool.cache / "results" / f"mynet-{cid}-eth0").read_text())
    assert entry["kind"] == "cniCacheV1" and entry["containerId"] == cid and entry["netns"] == container_ns.path
    assert reservations(tool) == addrs and len(host_veths(tool)) == 1
    if version not in ("0.1.0", "0.2.0", "0.3.0", "0.3.1"):
        tool.run("check", "mynet", container_ns.path, check=True)
    else:
        p = tool.run("check", "mynet", container_ns.path)
        assert p.returncode == 1 and "does not support the CHECK command" in p.stderr
    tool.run("del", "mynet", container_ns.path, check=True)
    assert container_ns.link("eth0") is None and host_veths(tool) == [] and reservations(tool) == []
    assert os.listdir(tool.cache / "results") == []
    tool.run("del", "mynet", container_ns.path, check=True)  # twice is fine


def test_ifname_from_env_and_flag_and_relative_netns(tool, container_ns):
    tool.network()
    tool.run("add", "mynet", container_ns.path, env={"CNI_IFNAME": "net1"}, check=True)
    tool.run("-i", "net2", "add", "mynet", container_ns.path, env={"CNI_IFNAME": "net1"}, check=True)
    assert container_ns.link("net1") and container_ns.link("net2")
    rel = os.path.relpath(container_ns.path, os.getcwd())
    tool.run("del", "mynet", rel, "--ifname", "net2", check=True)  # same ID: derived from the absolute path
    tool.run("del", "mynet", container_ns.path, env={"CNI_IFNAME": "net1"}, check=True)
    assert container_ns.link("net1") is None and container_ns.link("net2") is None and reservations(tool) == []


def test_cni_args_and_capability_args_reach_the_plugins(tool, container_ns, make_netns):
    tool.network(extra={"capabilities": {"ips": True}})
    tool.run("add", "mynet", container_ns.path, env={"CNI_ARGS": "IgnoreUnknown=1;IP=10.22.0.77"}, check=True)
    other = make_netns("pycni-ctr")
    out = tool.run("add", "mynet", other.path, env={"CAP_ARGS": json.dumps({"ips": ["10.22.0.99/16"]})},
                   check=True)
    assert json.loads(out.stdout)["ips"][0]["address"] == "10.22.0.99/16"
    assert reservations(tool) == ["10.22.0.77", "10.22.0.99"]
    entry = json.loads((tool.cache / "results" / f"mynet-{container_id(container_ns.path)}-eth0").read_text())
    assert entry["cniArgs"] == [["IgnoreUnknown", "1"], ["IP", "10.22.0.77"]]
    tool.run("del", "mynet", container_ns.path, check=True)
    tool.run("del", "mynet", other.path, check=True)
    assert reservations(tool) == []


@pytest.mark.parametrize("env,message", [
    ({"CNI_ARGS": "A=1;B"}, 'invalid CNI_ARGS pair "B"'),
    ({"CNI_ARGS": "A=1=2"}, 'invalid CNI_ARGS pair "A=1=2"'),
    ({"CAP_ARGS": "{nope"}, "CAP_ARGS is not valid JSON"),
    ({"CAP_ARGS": "[1]"}, "CAP_ARGS must be a JSON object"),
])
def test_bad_environment(tool, container_ns, env, message):
    tool.network()
    p = tool.run("add", "mynet", container_ns.path, env=env)
    assert p.returncode == 1 and message in p.stderr and p.stdout == ""
    assert container_ns.link("eth0") is None


def test_usage_and_unknown_network(tool, container_ns):
    for args in ((), ("add",), ("add", "mynet"), ("frob", "mynet", container_ns.path), ("--ifname",)):
        p = tool.run(*args)
        assert p.returncode == 1 and "add    <net> <netns>" in p.stderr, args
    p = tool.run("add", "mynet", container_ns.path)
    assert p.returncode == 1 and p.stderr.strip() == f"no net configurations found in {tool.netconf}"
    tool.network(name="other")
    p = tool.run("add", "mynet", container_ns.path)
    assert p.returncode == 1 and f'no net configuration with name "mynet" in {tool.netconf}' in p.stderr


def test_plugin_failure_names_plugin_and_network(tool, container_ns):
    tool.network(extra={"mtu": "big"})
    p = tool.run("add", "mynet", container_ns.path)
    assert p.returncode == 1 and p.stderr.startswith('plugin type="bridge" name="mynet" failed (add): ')
    assert host_veths(tool) == [] and container_ns.link("eth0") is None
    assert not (tool.cache / "results").exists() or os.listdir(tool.cache / "results") == []


def test_gc_frees_every_cached_attachment_and_status(tool, container_ns):
    version = tool.max_version()
    tool.network(version)
    tool.run("add", "mynet", container_ns.path, check=True)
    assert len(reservations(tool)) == 1
    tool.run("status", "mynet", check=True)
    tool.run("gc", "mynet", check=True)
    assert container_ns.link("eth0") is None and reservations(tool) == [] and host_veths(tool) == []
    assert os.listdir(tool.cache / "results") == []


def test_list_prints_networks_in_file_order(tool):
    tool.network(name="b", file="20-b.conflist")
    tool.network(name="a", file="30-a.conflist")
    (tool.netconf / "10-c.conf").write_text(json.dumps({"type": "ptp", "name": "c"}))
    (tool.netconf / "15-broken.conflist").write_text("{")
    p = tool.run("list", check=True)
    assert p.stdout.split() == ["c", "b", "a"] and "15-broken.conflist" in p.stderr


def test_a_libcni_style_single_conf_runs_as_a_list(tool, container_ns):
    conf = tool.network()["plugins"][0]
    (tool.netconf / "10-mynet.conflist").unlink()
    (tool.netconf / "10-mynet.conf").write_text(json.dumps({"cniVersion": "0.4.0", "name": "mynet", **conf}))
    result = json.loads(tool.run("add", "mynet", container_ns.path, check=True).stdout)
    assert result["cniVersion"] == "0.4.0" and result["ips"][0]["version"] == "4"
    tool.run("check", "mynet", container_ns.path, check=True)
    tool.run("del", "mynet", container_ns.path, check=True)
    assert reservations(tool) == []


@pytest.mark.parametrize("version", ["0.3.1", "1.0.0"])
def test_network_attachment_definition_macvlan_static_tuning_sbr(tool, container_ns, version):
    """The Multus example: a NetworkAttachmentDefinition's config with macvlan + static, tuning
    and sbr chained; the pod's IP and MAC arrive as capability arguments."""
    from reliability_env import uplink

    uplink(tool.host)
    host_links = sorted(tool.host.links())
    tuning_dir = tool.data / "tuning"
    conf = {"cniVersion": version, "name": "nad", "plugins": [
        {"type": "macvlan", "master": "uplink0", "mode": "bridge", "capabilities": {"ips": True},
         "ipam": {"type": "static", "addresses": [{"address": "10.30.0.5/24", "gateway": "10.30.0.1"}],
                  "routes": [{"dst": "0.0.0.0/0", "gw": "10.30.0.1"}]}},
        {"type": "tuning", "capabilities": {"mac": True}, "mtu": 1400, "dataDir": str(tuning_dir),
         "sysctl": {"net.ipv4.conf.IFNAME.arp_filter": "1"}},
        {"type": "sbr"}]}
    (tool.netconf / "20-nad.conflist").write_text(json.dumps(conf))
    cap = json.dumps({"ips": ["10.30.0.8/24"], "mac": "C2:00:00:30:00:08"})
    out = tool.run("add", "nad", container_ns.path, env={"CAP_ARGS": cap}, check=True)
    result = json.loads(out.stdout)
    assert result["cniVersion"] == version
    assert [i["address"] for i in result["ips"]] == ["10.30.0.8/24"]
    assert [(i["name"], i["mac"]) for i in result["interfaces"]] == [("eth0", "C2:00:00:30:00:08")]
    link = container_ns.link("eth0")
    assert link["address"] == "c2:00:00:30:00:08" and link["mtu"] == 1400 and link["linkinfo"]["info_kind"] == "macvlan"
    assert container_ns.run("cat", "/proc/sys/net/ipv4/conf/eth0/arp_filter").stdout.strip() == "1"
    addrs = [a["local"] for l in container_ns.ip_json("-4", "addr", "show", "dev", "eth0") for a in l["addr_info"]]
    assert addrs == ["10.30.0.8"]
    rules = [r for r in container_ns.ip_json("rule", "show") if r.get("src") == "10.30.0.8"]
    assert len(rules) == 1 and rules[0]["table"] == "100", rules  # sbr: the first free table from 100
    cid = container_id(container_ns.path)
    cached = json.loads((tool.cache / "results" / f"nad-{cid}-eth0").read_text())
    assert cached["result"]["interfaces"][0]["mac"] == "C2:00:00:30:00:08"
    assert os.listdir(tuning_dir) == [f"{cid}_eth0.json"]
    if version >= "0.4.0":
        tool.run("check", "nad", container_ns.path, env={"CAP_ARGS": cap}, check=True)
    tool.run("del", "nad", container_ns.path, env={"CAP_ARGS": cap}, check=True)
    assert container_ns.links() == ["lo"] and sorted(tool.host.links()) == host_links
    assert not [r for r in container_ns.ip_json("rule", "show") if r.get("src") == "10.30.0.8"]
    assert os.listdir(tuning_dir) == [] and os.listdir(tool.cache / "results") == []
    tool.run("del", "nad", container_ns.path, check=True)  # twice is fine
