"""scripts/exec-plugins.sh and scripts/priv-net-run.sh, run inside a netns that plays the host.

The built-in "mynet" keeps host-local's default data directory
(/var/lib/cni/networks); the `var_lib_cni` fixture removes whatever of it a
test created.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, needs_root
from runtime_env import frozen_cnitool_available, plugin_dir

pytestmark = needs_root
SCRIPTS = ROOT / "scripts"
VAR_LIB_CNI = Path("/var/lib/cni")


@pytest.fixture
def var_lib_cni():
    """Remove what a test adds under /var/lib/cni (host-local's default dataDir)."""
    chain = [VAR_LIB_CNI, VAR_LIB_CNI / "networks", VAR_LIB_CNI / "networks" / "mynet"]
    existed = [p.exists() for p in chain]
    yield VAR_LIB_CNI / "networks" / "mynet"
    for path, was in reversed(list(zip(chain, existed))):
        if not was and path.exists():
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["source", "frozen"])
def env(request, tmp_path):
    kind = request.param
    if kind == "frozen" and not frozen_cnitool_available():
        pytest.skip("bin/cnitool is not built (run ./build.sh)")
    d, served = plugin_dir(tmp_path, kind)
    if "bridge" not in served or "host-local" not in served:
        pytest.skip("no bridge/host-local plugins available")
    netconf = tmp_path / "net.d"
    netconf.mkdir()
    e = {"PATH": os.environ["PATH"], "NETCONFPATH": str(netconf), "CNI_PATH": str(d),
         "CNI_CACHE_DIR": str(tmp_path / "cache")}
    if kind == "frozen":
        e["CNITOOL"] = str(ROOT / "bin" / "cnitool")
    else:
        e["PYTHON"] = sys.executable
    return e


def script_netns() -> set[str]:
    return {n for n in os.listdir("/run/netns") if n.startswith("cni-")} if os.path.isdir("/run/netns") else set()


def run_in(host, *cmd, env, timeout=120):
    return subprocess.run(["ip", "netns", "exec", host.name, *cmd], env=env, capture_output=True, text=True,
                          timeout=timeout)


def addresses(text: str) -> dict[str, list[str]]:
    return {l["ifname"]: [a["local"] for a in l.get("addr_info", []) if a["family"] == "inet"]
            for l in json.loads(text)}


def reserved(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) if d.exists() else []


def test_priv_net_run_with_the_built_in_network(env, host_ns, var_lib_cni):
    before = script_netns()
    p = run_in(host_ns, str(SCRIPTS / "priv-net-run.sh"), "ip", "-j", "addr", env=env)
    assert p.returncode == 0, p.stderr
    addrs = addresses(p.stdout)
    assert addrs["lo"] == ["127.0.0.1"]
    assert len(addrs["eth0"]) == 1 and addrs["eth0"][0].startswith("10.22.")
    bridge = host_ns.link("cni0")
    assert bridge is not None and bridge["linkinfo"]["info_kind"] == "bridge"
    assert [l for l in host_ns.links() if l.startswith("veth")] == []
    assert reserved(var_lib_cni) == [] and script_netns() == before
    assert os.listdir(Path(env["CNI_CACHE_DIR"]) / "results") == []


def write_two_networks(env, tmp_path):
    netconf = Path(env["NETCONFPATH"])
    (netconf / "10-a.conflist").write_text(json.dumps({"cniVersion": "1.0.0", "name": "a", "plugins": [
        {"type": "bridge", "bridge": "br-a", "isGateway": True,
         "ipam": {"type": "host-local", "subnet": "10.31.0.0/24", "dataDir": str(tmp_path / "ipam")}}]}))
    (netconf / "20-b.conf").write_text(json.dumps({"cniVersion": "0.4.0", "name": "b", "type": "bridge",
                                                   "bridge": "br-b",
                                                   "ipam": {"type": "host-local", "subnet": "10.32.0.0/24",
                                                            "dataDir": str(tmp_path / "ipam")}}))


def test_every_network_in_order_eth0_eth1(env, host_ns, tmp_path):
    write_two_networks(env, tmp_path)
    p = run_in(host_ns, str(SCRIPTS / "priv-net-run.sh"), "ip", "-j", "addr", env=env)
    assert p.returncode == 0, p.stderr
    addrs = addresses(p.stdout)
    assert addrs["eth0"][0].startswith("10.31.0.") and addrs["eth1"][0].startswith("10.32.0.")
    assert reserved(tmp_path / "ipam" / "a") == [] and reserved(tmp_path / "ipam" / "b") == []
    assert [l for l in host_ns.links() if l.startswith("veth")] == []


def test_failing_command_keeps_its_status_and_tears_down(env, host_ns, tmp_path):
    write_two_networks(env, tmp_path)
    before = script_netns()
    p = run_in(host_ns, str(SCRIPTS / "priv-net-run.sh"), "sh", "-c", "exit 7", env=env)
    assert p.returncode == 7
    assert script_netns() == before and [l for l in host_ns.links() if l.startswith("veth")] == []
    assert reserved(tmp_path / "ipam" / "a") == []


def test_ctrl_c_tears_down(env, host_ns, tmp_path):
    write_two_networks(env, tmp_path)
    before = script_netns()
    proc = subprocess.Popen(["ip", "netns", "exec", host_ns.name, str(SCRIPTS / "priv-net-run.sh"), "sh", "-c",
                             "echo ready; exec sleep 60"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert len(reserved(tmp_path / "ipam" / "a")) == 1
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert script_netns() == before
    assert reserved(tmp_path / "ipam" / "a") == [] and reserved(tmp_path / "ipam" / "b") == []
    assert [l for l in host_ns.links() if l.startswith("veth")] == []


def test_failed_add_detaches_the_networks_already_attached(env, host_ns, container_ns, tmp_path):
    write_two_networks(env, tmp_path)
    (Path(env["NETCONFPATH"]) / "30-c.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "c", "plugins": [{"type": "no-such-plugin"}]}))
    p = run_in(host_ns, str(SCRIPTS / "exec-plugins.sh"), "add", "ctr-1", container_ns.path, env=env)
    assert p.returncode == 1
    assert 'plugin type="no-such-plugin" name="c" failed (add)' in p.stderr
    assert container_ns.links() == ["lo"]
    assert reserved(tmp_path / "ipam" / "a") == [] and reserved(tmp_path / "ipam" / "b") == []


def test_exec_plugins_uses_the_given_container_id(env, host_ns, container_ns, tmp_path):
    write_two_networks(env, tmp_path)
    p = run_in(host_ns, str(SCRIPTS / "exec-plugins.sh"), "add", "ctr-42", container_ns.path, env=env)
    assert p.returncode == 0, p.stderr
    results = sorted(os.listdir(Path(env["CNI_CACHE_DIR"]) / "results"))
    assert results == ["a-ctr-42-eth0", "b-ctr-42-eth1"]
    p = run_in(host_ns, str(SCRIPTS / "exec-plugins.sh"), "del", "ctr-42", container_ns.path, env=env)
    assert p.returncode == 0, p.stderr
    assert container_ns.links() == ["lo"] and os.listdir(Path(env["CNI_CACHE_DIR"]) / "results") == []


def test_usage(env):
    for script, args in (("exec-plugins.sh", ()), ("exec-plugins.sh", ("frob", "c", "/x")), ("priv-net-run.sh", ()),
                         ("docker-run.sh", ())):
        p = subprocess.run([str(SCRIPTS / script), *args], env=env, capture_output=True, text=True)
        assert p.returncode == 1 and "usage:" in p.stderr
