"""firewall: real forwarding through a DROP policy, side by side with Go, DEL without prevResult, rollback."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Netns, needs_root
from reliability_env import no_traceback, pings

pytestmark = needs_root

NAME = "fwnet"
GO_FW_VERSIONS = ("0.4.0", "1.0.0")  # Debian's Go firewall supports 0.4.0 and 1.0.0
OUR_MARK = re.compile(r' -m comment --comment "name: \\"[^"\\]*\\" id: \\"[^"\\]*\\" ifname: \\"[^"\\]*\\""')


def prev_result(version: str, ip4: str = "10.77.0.5/24", ip6: str = "fd77::5/64", bridge: str = "fwbr0") -> dict:
    ips = [{"address": ip4, "gateway": "10.77.0.1", "interface": 2}, {"address": ip6, "interface": 2}]
    if version == "0.4.0":
        for ip in ips:
            ip["version"] = "4" if "." in ip["address"] else "6"
    return {"cniVersion": version,
            "interfaces": [{"name": bridge, "mac": "0a:58:0a:4d:00:01"}, {"name": "veth1234", "mac": "0a:58:0a:4d:00:02"},
                           {"name": "eth0", "mac": "0a:58:0a:4d:00:05", "sandbox": "/run/netns/x"}],
            "ips": ips, "dns": {}}


def fw_conf(version: str, prev: dict | None = None, **extra) -> dict:
    conf = {"cniVersion": version, "name": NAME, "type": "firewall", **extra}
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def run(plugins, command, conf, host, cid="ctr1", **kw):
    return plugins.run("firewall", command, conf, containerid=cid, netns=kw.pop("netns", "/run/netns/gone"),
                       in_netns=host.path, **kw)


def filter_rules(ns) -> list[str]:
    """The filter table of both families, without counters and comments lines."""
    out = []
    for tool in ("iptables-save", "ip6tables-save"):
        out += [f"{tool[:3]} {l}" for l in ns.run(tool, "-t", "filter").stdout.splitlines()
                if l.startswith(("-A", ":")) and not l.startswith((":INPUT", ":OUTPUT"))]
    return out


def address_rules(ns) -> list[str]:
    return [l for l in filter_rules(ns) if l.split()[1:3] == ["-A", "CNI-FORWARD"] and "-j ACCEPT" in l]


# ---- the rules let forwarded traffic through -----------------------------------------------


@pytest.fixture
def routed(make_netns, data_dir, source_plugins):
    """A ptp container behind a host whose FORWARD policy is DROP, and an outside netns beyond the host."""
    host, ctr, outside = make_netns("pycni-host"), make_netns("pycni-ctr"), make_netns("pycni-out")
    host.run("ip", "link", "add", "out0", "type", "veth", "peer", "name", "out1", "netns", outside.name)
    host.run("ip", "addr", "add", "192.168.77.1/24", "dev", "out0")
    host.run("ip", "link", "set", "out0", "up")
    outside.run("ip", "addr", "add", "192.168.77.2/24", "dev", "out1")
    outside.run("ip", "link", "set", "out1", "up")
    outside.run("ip", "route", "add", "10.77.0.0/24", "via", "192.168.77.1")
    host.run("iptables", "-P", "FORWARD", "DROP")
    ptp = {"cniVersion": "1.0.0", "name": NAME, "type": "ptp",
           "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": str(data_dir),
                    "routes": [{"dst": "0.0.0.0/0"}]}}
    out = source_plugins.run("ptp", "ADD", ptp, netns=ctr.path, in_netns=host.path).ok()
    yield host, ctr, outside, out.json
    source_plugins.run("ptp", "DEL", ptp, netns=ctr.path, in_netns=host.path)


def test_forwarding_is_accepted_until_del(plugins, routed):
    host, ctr, outside, prev = routed
    assert not pings(ctr, "192.168.77.2"), "FORWARD DROP should stop the container's traffic"
    conf = fw_conf("1.0.0", prev)
    out = run(plugins, "ADD", conf, host, netns=ctr.path).ok()
    assert out.json == prev
    assert pings(ctr, "192.168.77.2")
    run(plugins, "CHECK", conf, host, netns=ctr.path).ok()
    # containerd's DEL: no netns, and a runtime that lost its cache sends no prevResult
    run(plugins, "DEL", fw_conf("1.0.0"), host, netns="").ok()
    assert not pings(ctr, "192.168.77.2")
    assert address_rules(host) == []
    failed = run(plugins, "CHECK", conf, host, netns=ctr.path)
    assert failed.status == 1 and "not found" in failed.json["msg"]
    shared = [l for l in filter_rules(host) if "CNI-" in l]
    assert any(l.endswith("-j CNI-FORWARD") for l in shared), "the shared chains stay, as in Go"
    run(plugins, "DEL", fw_conf("1.0.0"), host).ok()  # again: nothing there is success


# ---- side by side with Go ----------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["", "open", "same-bridge"])
@pytest.mark.parametrize("version", GO_FW_VERSIONS)
def test_same_rules_and_result_as_go(plugins, go_plugins, make_netns, version, policy):
    ours, theirs = make_netns("pycni-host"), make_netns("pycni-go")
    extra = {"ingressPolicy": policy} if policy else {}
    extra["iptablesAdminChainName"] = "CNI-MY-ADMIN"
    first, second = prev_result(version), prev_result(version, "10.77.0.6/24", "fd77::6/64")
    results = []
    for impl, host in ((plugins, ours), (go_plugins, theirs)):
        for cid, prev in (("ctr1", first), ("ctr2", second), ("ctr2", second)):  # a repeated ADD adds nothing
            out = run(impl, "ADD", fw_conf(version, prev, backend="iptables", **extra), host, cid).ok()
        results.append(out.json)
    assert results[0] == results[1] and results[0]["cniVersion"] == version
    assert [OUR_MARK.sub("", l) for l in filter_rules(ours)] == filter_rules(theirs)
    assert len(address_rules(ours)) == 8
    for impl, host in ((plugins, ours), (go_plugins, theirs)):
        run(impl, "CHECK", fw_conf(version, first, backend="iptables", **extra), host).ok()
        run(impl, "DEL", fw_conf(version, first, backend="iptables", **extra), host).ok()
    assert [OUR_MARK.sub("", l) for l in filter_rules(ours)] == filter_rules(theirs)
    assert len(address_rules(ours)) == 4 and all("10.77.0.6/32" in l or "fd77::6/128" in l for l in address_rules(ours))


def test_del_removes_rules_go_wrote(plugins, go_plugins, host_ns):
    """A node moving from Go's firewall to ours: DEL with prevResult removes Go's unmarked rules."""
    conf = fw_conf("1.0.0", prev_result("1.0.0"))
    run(go_plugins, "ADD", conf, host_ns).ok()
    assert len(address_rules(host_ns)) == 4
    run(plugins, "CHECK", conf, host_ns).ok()
    run(plugins, "DEL", conf, host_ns).ok()
    assert address_rules(host_ns) == []


def test_versions(plugins, go_plugins, host_ns):
    for impl in (plugins, go_plugins):
        out = run(impl, "ADD", fw_conf("0.3.1", prev_result("1.0.0")), host_ns)
        assert out.status == 1 and out.json["code"] == 1, out.out
    assert filter_rules(host_ns) == [f"{t} {l}" for t in ("ipt", "ip6") for l in (":FORWARD ACCEPT [0:0]",)]
    out = run(plugins, "ADD", fw_conf("1.1.0", prev_result("1.1.0")), host_ns).ok()
    assert out.json["cniVersion"] == "1.1.0" and len(address_rules(host_ns)) == 4


def test_gc_removes_only_stale_attachments(plugins, host_ns):
    for cid, last in (("live", 5), ("stale", 6), ("other-if", 7)):
        prev = prev_result("1.1.0", f"10.77.0.{last}/24", f"fd77::{last}/64")
        ifname = "net1" if cid == "other-if" else "eth0"
        run(plugins, "ADD", fw_conf("1.1.0", prev), host_ns, cid, ifname=ifname).ok()
    other_net = fw_conf("1.1.0", prev_result("1.1.0", "10.77.0.8/24", "fd77::8/64"))
    other_net["name"] = "othernet"
    run(plugins, "ADD", other_net, host_ns, "stale").ok()
    gc = fw_conf("1.1.0", **{"cni.dev/valid-attachments": [{"containerID": "live", "ifname": "eth0"},
                                                           {"containerID": "other-if", "ifname": "eth0"}]})
    run(plugins, "GC", gc, host_ns).ok()
    left = " ".join(address_rules(host_ns))
    assert "10.77.0.5/32" in left and "10.77.0.8/32" in left and "fd77::8/128" in left
    assert "10.77.0.6/32" not in left and "10.77.0.7/32" not in left and "fd77::7/128" not in left
    assert len(address_rules(host_ns)) == 8


# ---- failures leave nothing -------------------------------------------------------------------------


def test_failed_ipv6_undoes_ipv4(plugins, host_ns, tmp_path):
    """ip6tables-restore fails after IPv4 was written: the IPv4 lines are undone, chains included."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "ip6tables-restore").write_text("#!/bin/sh\necho 'ip6tables-restore: broken on purpose' >&2\nexit 1\n")
    (fake / "ip6tables-restore").chmod(0o755)
    before = filter_rules(host_ns)
    env = {"PATH": f"{fake}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}
    out = run(plugins, "ADD", fw_conf("1.0.0", prev_result("1.0.0"), ingressPolicy="same-bridge"), host_ns, env=env)
    no_traceback(out)
    assert out.status == 1 and "broken on purpose" in out.json["msg"]
    assert filter_rules(host_ns) == before


def test_unknown_ingress_policy_writes_nothing(plugins, go_plugins, host_ns):
    conf = fw_conf("1.0.0", prev_result("1.0.0"), ingressPolicy="isolated")
    out = run(plugins, "ADD", conf, host_ns)
    assert out.status == 1 and out.json["code"] == 7
    assert filter_rules(host_ns) == [f"{t} :FORWARD ACCEPT [0:0]" for t in ("ipt", "ip6")]
    run(plugins, "DEL", conf, host_ns).ok()  # DEL of what ADD refused succeeds
    go = run(go_plugins, "ADD", conf, host_ns)
    assert go.status == 1 and address_rules(host_ns), "Go writes its rules before refusing the policy"


def test_killed_after_rules_then_del_cleans(plugins, host_ns):
    conf = fw_conf("1.0.0", prev_result("1.0.0"))
    out = run(plugins, "ADD", conf, host_ns, env={"PYCNI_TEST_KILL_AT": "iptables"})
    assert out.status == -signal.SIGKILL
    assert len(address_rules(host_ns)) == 4
    run(plugins, "DEL", fw_conf("1.0.0"), host_ns, netns="").ok()
    assert address_rules(host_ns) == []


# ---- firewalld -------------------------------------------------------------------------------------


@pytest.fixture
def private_bus(tmp_path):
    """A D-Bus daemon of our own (no firewalld on it): the plugin finds it through DBUS_SYSTEM_BUS_ADDRESS."""
    address = f"unix:path={tmp_path}/bus"
    proc = subprocess.Popen(["dbus-daemon", "--session", "--nofork", f"--address={address}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):
            if (tmp_path / "bus").exists():
                break
            time.sleep(0.05)
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)


def test_firewalld_backend_names_what_is_missing(plugins, host_ns, private_bus, tmp_path):
    conf = fw_conf("1.0.0", prev_result("1.0.0"), backend="firewalld")
    out = run(plugins, "ADD", conf, host_ns, env={"DBUS_SYSTEM_BUS_ADDRESS": private_bus})
    no_traceback(out)
    assert out.status == 1 and "firewalld is not running" in out.json["msg"], out.out
    nobus = run(plugins, "ADD", conf, host_ns, env={"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path}/none"})
    assert nobus.status == 1 and "no D-Bus system bus" in nobus.json["msg"], nobus.out
    run(plugins, "DEL", conf, host_ns, env={"DBUS_SYSTEM_BUS_ADDRESS": private_bus}).ok()
    assert filter_rules(host_ns) == [f"{t} :FORWARD ACCEPT [0:0]" for t in ("ipt", "ip6")]
    # podman's backend "": firewalld is not on the bus, so iptables it is
    default = fw_conf("0.4.0", prev_result("0.4.0"), backend="")
    run(plugins, "ADD", default, host_ns, env={"DBUS_SYSTEM_BUS_ADDRESS": private_bus}).ok()
    assert len(address_rules(host_ns)) == 4
    run(plugins, "DEL", default, host_ns, env={"DBUS_SYSTEM_BUS_ADDRESS": private_bus}).ok()
    assert address_rules(host_ns) == []


def firewalld_root() -> Path | None:
    """Where firewalld is: installed (/), or its Debian packages extracted with dpkg -x into
    PYCNI_FIREWALLD_ROOT (firewalld python3-firewall python3-nftables python3-dbus python3-gi
    gir1.2-glib-2.0): installing the package would start it in the root netns."""
    root = Path(os.environ.get("PYCNI_FIREWALLD_ROOT", "/"))
    return root if (root / "usr/sbin/firewalld").exists() else None


def bus_call(address: str, dest: str, path: str, method: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["dbus-send", "--system", "--print-reply", f"--dest={dest}", path, method,
                           *[f"string:{a}" for a in args]], env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address},
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def real_firewalld(tmp_path_factory):
    """A real firewalld on a private bus, in a netns of its own (its nftables rules stay there)."""
    root = firewalld_root()
    if root is None:
        pytest.skip("firewalld not installed (apt-get install firewalld, or set PYCNI_FIREWALLD_ROOT)")
    tmp = tmp_path_factory.mktemp("firewalld")
    (tmp / "etc").mkdir()
    address = f"unix:path={tmp}/bus"
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address}
    if str(root) != "/":
        env["PYTHONPATH"] = str(root / "usr/lib/python3/dist-packages")
        env["GI_TYPELIB_PATH"] = str(root / "usr/lib/x86_64-linux-gnu/girepository-1.0")
    ns = Netns("pycni-fwd")
    bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", f"--address={address}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    daemon = None
    try:
        for _ in range(50):
            if (tmp / "bus").exists():
                break
            time.sleep(0.05)
        daemon = subprocess.Popen(
            ["ip", "netns", "exec", ns.name, "/usr/bin/python3", str(root / "usr/sbin/firewalld"), "--nofork",
             "--nopid", "--default-config", str(root / "usr/lib/firewalld"), "--system-config", str(tmp / "etc"),
             "--log-target", "console"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            reply = bus_call(address, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                             "org.freedesktop.DBus.NameHasOwner", "org.fedoraproject.FirewallD1")
            if reply.stdout.split()[-1:] == ["true"]:
                break
            assert daemon.poll() is None, "firewalld exited"
            time.sleep(0.1)
        else:
            pytest.fail("firewalld did not appear on the bus")
        yield ns, address
    finally:
        for proc in (daemon, bus):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        ns.remove()


def zone_sources(address: str, zone: str = "trusted") -> list[str]:
    out = bus_call(address, "org.fedoraproject.FirewallD1", "/org/fedoraproject/FirewallD1",
                   "org.fedoraproject.FirewallD1.zone.getSources", zone).stdout
    return sorted(re.findall(r'string "([^"]+)"', out))


@pytest.mark.parametrize("version", GO_FW_VERSIONS)
def test_real_firewalld_same_as_go(plugins, go_plugins, real_firewalld, version):
    """The empty backend finds firewalld running and uses it, ours and Go's alike; no iptables rule."""
    ns, address = real_firewalld
    conf = fw_conf(version, prev_result(version), backend="")
    env = {"DBUS_SYSTEM_BUS_ADDRESS": address}
    for impl in (plugins, go_plugins):
        out = run(impl, "ADD", conf, ns, env=env).ok()
        assert out.json["ips"] == prev_result(version)["ips"]
        assert zone_sources(address) == ["10.77.0.5/32", "fd77::5/128"], impl.kind
        run(impl, "CHECK", conf, ns, env=env).ok()
        run(impl, "DEL", conf, ns, env=env, netns="").ok()
        assert zone_sources(address) == [], impl.kind
        run(impl, "DEL", conf, ns, env=env).ok()
    assert address_rules(ns) == []
    failed = run(plugins, "CHECK", conf, ns, env=env)
    assert failed.status == 1 and "failed to find the address" in failed.json["msg"]


def test_real_firewalld_failed_add_takes_back_its_sources(plugins, real_firewalld):
    """The IPv6 address is already in another zone: firewalld refuses it, the IPv4 one is removed again."""
    ns, address = real_firewalld
    env = {"DBUS_SYSTEM_BUS_ADDRESS": address}
    bus_call(address, "org.fedoraproject.FirewallD1", "/org/fedoraproject/FirewallD1",
             "org.fedoraproject.FirewallD1.zone.addSource", "public", "fd77::5/128")
    try:
        conf = fw_conf("1.0.0", prev_result("1.0.0"), backend="firewalld", firewalldZone="trusted")
        out = run(plugins, "ADD", conf, ns, env=env)
        no_traceback(out)
        assert out.status == 1 and "fd77::5/128" in out.json["msg"], out.out
        assert zone_sources(address) == []
        assert zone_sources(address, "public") == ["fd77::5/128"]
    finally:
        bus_call(address, "org.fedoraproject.FirewallD1", "/org/fedoraproject/FirewallD1",
                 "org.fedoraproject.FirewallD1.zone.removeSource", "public", "fd77::5/128")


def test_parallel_adds_share_the_chains_once(plugins, host_ns):
    """32 containers at once: the shared jumps appear once (the lock), every address gets its rules, all go on DEL."""
    from concurrent.futures import ThreadPoolExecutor

    def conf(i: int) -> dict:
        return fw_conf("1.0.0", prev_result("1.0.0", f"10.77.{i // 200}.{i % 200 + 2}/16", f"fd77::{i + 2:x}/64"),
                       ingressPolicy="same-bridge")

    with ThreadPoolExecutor(16) as pool:
        outs = list(pool.map(lambda i: run(plugins, "ADD", conf(i), host_ns, f"ctr{i}"), range(32)))
    assert all(o.status == 0 for o in outs), [o.out for o in outs if o.status]
    rules = filter_rules(host_ns)
    for family in ("ipt", "ip6"):
        mine = [l for l in rules if l.startswith(family)]
        assert sum(l.endswith("-j CNI-FORWARD") for l in mine) == 1
        assert sum(l.endswith("-j CNI-ADMIN") for l in mine) == 1
        assert sum(l.endswith("-j CNI-ISOLATION-STAGE-1") for l in mine) == 1
    assert len(address_rules(host_ns)) == 32 * 4
    with ThreadPoolExecutor(16) as pool:
        outs = list(pool.map(lambda i: run(plugins, "DEL", fw_conf("1.0.0"), host_ns, f"ctr{i}", netns=""), range(32)))
    assert all(o.status == 0 for o in outs), [o.out for o in outs if o.status]
    assert address_rules(host_ns) == []
