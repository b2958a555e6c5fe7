"""Running a list of plugins (cni.runtime.network.Runtime) against recording fake plugins.

The fake plugins log what they receive (command, CNI_* variables, stdin) and
answer like a plugin of the requested version: ADD adds one interface and,
first in a chain, one address to the previous result.
"""
from __future__ import annotations

import json
import os
import sys

import pytest

from cni.errors import INCOMPATIBLE_VERSION, INVALID_ENV, CNIError
from cni.runtime.cache import Cache, Entry
from cni.runtime.conf import list_from_bytes
from cni.runtime.network import PluginFailed, Runtime, RuntimeConf
from cni.types import Result
from conftest import ALL_VERSIONS, ROOT

FAKE = r'''#!{python}
import json, os, sys
sys.path.insert(0, {root!r})
from cni.types import Result, Interface, IPConfig
import ipaddress
kind = os.path.basename(sys.argv[0])
env = os.environ
data = sys.stdin.buffer.read()
conf = json.loads(data) if data else {{}}
with open(env["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"type": kind, "command": env.get("CNI_COMMAND"), "stdin": conf,
                          "env": {{k: v for k, v in env.items() if k.startswith("CNI_")}}}}) + "\n")
command = env.get("CNI_COMMAND")
version = conf.get("cniVersion") or "0.1.0"
if command == "VERSION":
    print(json.dumps({{"cniVersion": "1.1.0", "supportedVersions": env.get("FAKE_VERSIONS", "1.0.0 1.1.0").split()}}))
    sys.exit(0)
fail = (conf.get("fail") or {{}}).get(command)
if fail:
    print(json.dumps({{"cniVersion": version, "code": fail[0], "msg": fail[1], "details": fail[2] if len(fail) > 2 else ""}}))
    sys.exit(1)
if command == "ADD":
    if conf.get("garbage"):
        print("not json")
        sys.exit(0)
    prev = conf.get("prevResult")
    result = Result.from_dict(prev, version) if prev else Result(cni_version=version)
    result.interfaces.append(Interface(name=kind + "0", sandbox=env.get("CNI_NETNS", "")))
    if not result.ips:
        result.ips.append(IPConfig(address=ipaddress.ip_interface("10.1.2.3/24"), interface=len(result.interfaces) - 1))
    print(result.to_json(version))
'''


@pytest.fixture
def fake(tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    script = d / "fake.py"
    script.write_text(FAKE.format(python=sys.executable, root=str(ROOT)))
    script.chmod(0o755)
    for name in ("a", "b", "c"):
        os.symlink(script, d / name)
    log = tmp_path / "log.jsonl"

    class Fake:
        cache_dir = tmp_path / "cache"
        runtime = Runtime([str(tmp_path / "nowhere"), str(d)], cache_dir=str(tmp_path / "cache"),
                          environ={"PATH": os.environ["PATH"], "FAKE_LOG": str(log), "CNI_COMMAND": "junk"})

        @staticmethod
        def calls():
            if not log.exists():
                return []
            calls = [json.loads(line) for line in log.read_text().splitlines()]
            log.unlink()
            return calls

    return Fake


def network(version="1.0.0", plugins=None, **extra):
    plugins = plugins or [{"type": "a"}, {"type": "b"}]
    return list_from_bytes(json.dumps({"cniVersion": version, "name": "net", "plugins": plugins, **extra}).encode())


RT = RuntimeConf(container_id="ctr1", netns="/run/netns/x", ifname="eth1", args=[("K", "V"), ("IgnoreUnknown", "1")])


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_add_chains_prev_result_and_injects_name_and_version(fake, version):
    net = network(version, [{"type": "a", "name": "other", "cniVersion": "0.0.1", "x": 1}, {"type": "b"}])
    result = fake.runtime.add(net, RT)
    calls = fake.calls()
    assert [c["type"] for c in calls] == ["a", "b"]
    for call in calls:
        assert call["command"] == "ADD"
        assert call["stdin"]["name"] == "net" and call["stdin"]["cniVersion"] == version
        assert call["env"] == {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "ctr1", "CNI_NETNS": "/run/netns/x",
                               "CNI_IFNAME": "eth1", "CNI_ARGS": "K=V;IgnoreUnknown=1",
                               "CNI_PATH": os.pathsep.join(fake.runtime.path)}
    assert calls[0]["stdin"]["x"] == 1 and "prevResult" not in calls[0]["stdin"]
    prev = Result.from_dict(calls[1]["stdin"]["prevResult"])
    assert prev.ips[0].address.ip.exploded == "10.1.2.3"
    assert result.cni_version == version and str(result.ips[0].address) == "10.1.2.3/24"
    if version not in ("0.1.0", "0.2.0"):
        assert [i.name for i in result.interfaces] == ["a0", "b0"]
    entry = Cache(str(fake.cache_dir)).load("net", "ctr1", "eth1")
    assert entry.config == net.raw and entry.netns == "/run/netns/x" and entry.cni_args == RT.args
    assert entry.result == json.loads(json.dumps(result.to_dict(version)))


def test_runtime_config_holds_only_declared_and_supplied_capabilities(fake):
    net = network(plugins=[
        {"type": "a", "capabilities": {"portMappings": True, "mac": False, "ips": True},
         "runtimeConfig": {"static": 1}},
        {"type": "b"},
        {"type": "c", "capabilities": {"bandwidth": True}}])
    rt = RuntimeConf(container_id="ctr1", netns="/x", ifname="eth0",
                     capability_args={"portMappings": [{"hostPort": 80}], "mac": "aa:bb:cc:dd:ee:ff", "other": 1})
    fake.runtime.add(net, rt)
    a, b, c = (call["stdin"] for call in fake.calls())
    assert a["runtimeConfig"] == {"portMappings": [{"hostPort": 80}]}
    assert "runtimeConfig" not in b and "runtimeConfig" not in c
    assert all("capabilities" not in conf for conf in (a, b, c))
    assert Cache(str(fake.cache_dir)).load("net", "ctr1", "eth0").capability_args == rt.capability_args


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_del_runs_in_reverse_with_the_cached_result_from_0_4_0(fake, version):
    net = network(version)
    added = fake.runtime.add(net, RT)
    fake.calls()
    fake.runtime.delete(net, RT)
    calls = fake.calls()
    assert [(c["type"], c["command"]) for c in calls] == [("b", "DEL"), ("a", "DEL")]
    for call in calls:
        if version in ("0.1.0", "0.2.0", "0.3.0", "0.3.1"):
            assert "prevResult" not in call["stdin"]
        else:
            assert call["stdin"]["prevResult"] == added.to_dict(version)
    assert Cache(str(fake.cache_dir)).load("net", "ctr1", "eth1") is None
    fake.runtime.delete(net, RT)  # nothing cached: still runs, still fine
    assert [c["command"] for c in fake.calls()] == ["DEL", "DEL"]


def test_del_goes_on_past_a_failing_plugin_and_keeps_the_cache_entry(fake):
    """A plugin whose DEL fails (or is missing) must not leak what the others hold."""
    net = network("1.0.0", [{"type": "a"}, {"type": "missing"}, {"type": "b", "fail": {"DEL": [7, "no"]}}])
    fake.runtime.add(network("1.0.0"), RT)
    fake.calls()
    with pytest.raises(CNIError) as err:
        fake.runtime.delete(net, RT)
    assert "no" in str(err.value)  # the first failure in DEL order (b) is the one reported
    assert [(c["type"], c["command"]) for c in fake.calls()] == [("b", "DEL"), ("a", "DEL")]
    assert Cache(str(fake.cache_dir)).load("net", "ctr1", "eth1") is not None


def test_del_with_an_unreadable_cache_entry_still_tears_down(fake):
    cache = Cache(str(fake.cache_dir))
    cache.save(Entry(container_id="ctr1", network="net", ifname="eth1", result={"cniVersion": "1.0.0",
                                                                                "ips": "garbage"}))
    fake.runtime.delete(network(), RT)
    assert [("prevResult" in c["stdin"]) for c in fake.calls()] == [False, False]
    assert cache.load("net", "ctr1", "eth1") is None


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_check(fake, version):
    net = network(version)
    if version in ("0.1.0", "0.2.0", "0.3.0", "0.3.1"):
        with pytest.raises(CNIError) as info:
            fake.runtime.check(net, RT)
        assert info.value.code == INCOMPATIBLE_VERSION and "does not support the CHECK command" in info.value.msg
        assert fake.calls() == []
        return
    added = fake.runtime.add(net, RT)
    fake.calls()
    fake.runtime.check(net, RT)
    calls = fake.calls()
    assert [(c["type"], c["command"]) for c in calls] == [("a", "CHECK"), ("b", "CHECK")]
    assert all(c["stdin"]["prevResult"] == added.to_dict(version) for c in calls)
    fake.runtime.check(network(version, disableCheck=True), RT)
    assert fake.calls() == []


def test_plugin_errors_name_the_plugin_and_network_and_keep_the_code(fake):
    net = network(plugins=[{"type": "a"}, {"type": "b", "fail": {"ADD": [11, "busy", "try later"],
                                                                   "DEL": [7, "bad conf"]}}])
    with pytest.raises(PluginFailed) as info:
        fake.runtime.add(net, RT)
    assert str(info.value) == 'plugin type="b" name="net" failed (add): busy; try later'
    assert info.value.code == 11
    assert Cache(str(fake.cache_dir)).load("net", "ctr1", "eth1") is None
    fake.calls()
    with pytest.raises(PluginFailed, match=r'^plugin type="b" name="net" failed \(delete\): bad conf$'):
        fake.runtime.delete(net, RT)


def test_missing_plugin_and_bad_output_are_reported_with_the_plugin(fake):
    with pytest.raises(PluginFailed, match=r'plugin type="zz" name="net" failed \(add\): failed to find plugin "zz"'):
        fake.runtime.add(network(plugins=[{"type": "zz"}]), RT)
    with pytest.raises(PluginFailed, match=r'plugin type="a" name="net" failed \(add\): failed to parse result'):
        fake.runtime.add(network(plugins=[{"type": "a", "garbage": True}]), RT)


@pytest.mark.parametrize("rt", [
    RuntimeConf(container_id="", ifname="eth0"), RuntimeConf(container_id="../x", ifname="eth0"),
    RuntimeConf(container_id="ctr\n", ifname="eth0"), RuntimeConf(container_id="c", ifname="a/b"),
    RuntimeConf(container_id="c", ifname="x" * 16)])
def test_bad_attachment_names_are_refused_before_any_plugin_runs(fake, rt):
    with pytest.raises(CNIError) as info:
        fake.runtime.add(network(), rt)
    assert info.value.code == INVALID_ENV
    with pytest.raises(CNIError):
        fake.runtime.delete(network(), rt)
    assert fake.calls() == []


def test_gc_deletes_stale_attachments_then_gcs_each_plugin_with_the_valid_ones(fake):
    net = network("1.1.0")
    keep = RuntimeConf(container_id="keep", netns="/k", ifname="eth0")
    stale = RuntimeConf(container_id="stale", netns="/s", ifname="eth0", args=[("A", "B")],
                        capability_args={"mac": "x"})
    fake.runtime.add(net, keep)
    fake.runtime.add(net, stale)
    other = network("1.1.0")
    other.name = "other"
    fake.runtime.add(other, stale)
    fake.calls()
    fake.runtime.gc(net, valid=[("keep", "eth0")])
    calls = fake.calls()
    assert [(c["type"], c["command"], c["env"].get("CNI_CONTAINERID")) for c in calls] == [
        ("b", "DEL", "stale"), ("a", "DEL", "stale"), ("a", "GC", ""), ("b", "GC", "")]
    assert calls[0]["env"]["CNI_NETNS"] == "/s" and calls[0]["env"]["CNI_ARGS"] == "A=B"
    for gc in calls[2:]:
        assert gc["stdin"]["cni.dev/valid-attachments"] == [{"containerID": "keep", "ifname": "eth0"}]
        assert gc["stdin"]["name"] == "net" and "prevResult" not in gc["stdin"]
    cache = Cache(str(fake.cache_dir))
    assert {(e.network, e.container_id) for e in cache.entries()} == {("net", "keep"), ("other", "stale")}


def test_gc_without_valid_attachments_frees_everything_and_old_versions_skip_plugin_gc(fake):
    fake.runtime.add(network("1.0.0"), RT)
    fake.calls()
    fake.runtime.gc(network("1.0.0"))
    assert [c["command"] for c in fake.calls()] == ["DEL", "DEL"]
    fake.runtime.gc(network("1.1.0"))
    calls = fake.calls()
    assert [c["command"] for c in calls] == ["GC", "GC"]
    assert all("cni.dev/valid-attachments" not in c["stdin"] for c in calls)
    fake.runtime.gc(network("1.1.0", disableGC=True))
    assert fake.calls() == []


def test_gc_collects_every_failure(fake):
    net = network("1.1.0", plugins=[{"type": "a", "fail": {"GC": [7, "a broke"]}},
                                    {"type": "b", "fail": {"GC": [7, "b broke"]}}])
    with pytest.raises(CNIError) as info:
        fake.runtime.gc(net, valid=[])
    assert "a broke" in info.value.msg and "b broke" in info.value.msg


def test_status_stops_at_the_first_failure_with_its_code(fake):
    fake.runtime.status(network("1.1.0"))
    assert [c["command"] for c in fake.calls()] == ["STATUS", "STATUS"]
    fake.runtime.status(network("1.0.0"))
    assert fake.calls() == []
    net = network("1.1.0", plugins=[{"type": "a", "fail": {"STATUS": [50, "not ready"]}}, {"type": "b"}])
    with pytest.raises(PluginFailed) as info:
        fake.runtime.status(net)
    assert info.value.code == 50 and "not ready" in info.value.msg
    assert [c["type"] for c in fake.calls()] == ["a"]


def test_version_probing_and_validation(fake):
    assert fake.runtime.version_info("a") == ["1.0.0", "1.1.0"]
    call = fake.calls()[0]
    assert call["command"] == "VERSION" and call["stdin"] == {"cniVersion": "1.1.0"}
    assert fake.runtime.validate(network("1.0.0", plugins=[{"type": "a", "capabilities": {"mac": True}}])) == ["mac"]
    with pytest.raises(CNIError, match='does not support config version "0.3.1"'):
        fake.runtime.validate(network("0.3.1"))
    with pytest.raises(CNIError, match="failed to find plugin"):
        fake.runtime.validate(network("1.0.0", plugins=[{"type": "zz"}]))


def test_version_of_a_plugin_that_predates_version_is_0_1_0(tmp_path):
    script = tmp_path / "old"
    script.write_text("#!/bin/sh\necho '{}'\n")
    script.chmod(0o755)
    assert Runtime([str(tmp_path)], cache_dir=str(tmp_path / "c")).version_info("old") == ["0.1.0"]
