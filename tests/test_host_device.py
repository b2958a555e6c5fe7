"""host-device: a host link lent to a container and given back, every selector, side by side with Go.

The devices are veth ends and macvlans the test makes in its host netns. PCI
lookups (pciBusID, runtimeConfig.deviceID, a DPDK driver) run the plugin in a
private mount namespace where a fake /sys/bus/pci/devices tree is bind-mounted.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from conftest import ALL_VERSIONS, GO_VERSIONS, Outcome, needs_root

pytestmark = needs_root

DEV, PEER = "hd0", "hd0peer"
NAME = "hdnet"
IFNAME = "net1"
PCI_ADDR, DPDK_ADDR = "0000:00:1f.6", "0000:00:1f.7"


def make_conf(version: str, data_dir=None, *, dual: bool = True, **extra) -> dict:
    conf = {"cniVersion": version, "name": NAME, "type": "host-device"}
    if data_dir is not None:
        conf["ipam"] = {"type": "host-local", "dataDir": str(data_dir),
                        "ranges": [[{"subnet": "10.55.0.0/24"}]] + ([[{"subnet": "fd55::/64"}]] if dual else []),
                        "routes": [{"dst": "10.99.0.0/16"}]}
        conf["dns"] = {"nameservers": ["10.55.0.53"]}
    conf.update(extra)
    return {k: v for k, v in conf.items() if v is not None}


@pytest.fixture
def host(host_ns):
    """The device: one end of a veth pair in the host netns, up, with a known MAC; its peer stays."""
    host_ns.run("ip", "link", "add", DEV, "address", "02:55:00:00:00:01", "type", "veth", "peer", "name", PEER)
    host_ns.run("ip", "link", "set", PEER, "up")
    host_ns.run("ip", "link", "set", DEV, "up")
    return host_ns


def run(plugins, command, conf, ctr, host_ns, *, netns=None, fake_sys=None, **kw) -> Outcome:
    kw.setdefault("cni_path", str(plugins.directory))
    kw.setdefault("ifname", IFNAME)
    netns = ctr.path if netns is None and ctr is not None else (netns or "")
    if fake_sys is None:
        return plugins.run("host-device", command, conf, netns=netns, in_netns=host_ns.path, **kw)
    return run_with_fake_sys(plugins, command, conf, netns, host_ns, fake_sys, **kw)


def run_with_fake_sys(plugins, command, conf, netns, host_ns, fake_sys, *, ifname, cni_path, env=None) -> Outcome:
    """The plugin inside the host netns and a private mount namespace where `fake_sys`
    is /sys/bus/pci/devices (nothing of it is seen outside that process)."""
    environ = {"PATH": os.environ["PATH"], "CNI_COMMAND": command, "CNI_CONTAINERID": "ctr1",
               "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_PATH": cni_path, **(env or {})}
    script = 'mount --bind "$0" /sys/bus/pci/devices && exec "$@"'
    cmd = ["ip", "netns", "exec", host_ns.name, "unshare", "-m", "--propagation", "private",
           "sh", "-c", script, str(fake_sys), plugins.path_for("host-device")]
    p = subprocess.run(cmd, input=json.dumps(conf).encode(), env={k: v for k, v in environ.items() if v},
                       capture_output=True, timeout=60)
    return Outcome(p.returncode, p.stdout.decode(), p.stderr.decode())


@pytest.fixture
def fake_sys(tmp_path):
    """A /sys/bus/pci/devices with a NIC driven by a kernel driver (its interface: hd0) and one
    bound to vfio-pci (DPDK: no interface)."""
    root = tmp_path / "pci"
    (root / PCI_ADDR / "net" / DEV).mkdir(parents=True)
    (tmp_path / "drivers" / "ixgbe").mkdir(parents=True)
    (tmp_path / "drivers" / "vfio-pci").mkdir(parents=True)
    (root / PCI_ADDR / "driver").symlink_to(tmp_path / "drivers" / "ixgbe")
    (root / DPDK_ADDR).mkdir()
    (root / DPDK_ADDR / "driver").symlink_to(tmp_path / "drivers" / "vfio-pci")
    return root


def reservations(data_dir) -> list[str]:
    d = data_dir / NAME
    return sorted(p.name for p in d.iterdir() if re.match(r"^[0-9a-f.:]+$", p.name)) if d.exists() else []


def link_state(ns, name) -> dict | None:
    """What a runtime or admin sees of a link: name, MAC, flags, MTU, qlen, alias, addresses."""
    link = ns.link(name)
    if link is None:
        return None
    addrs = ns.ip_json("addr", "show", "dev", name)
    return {"name": link["ifname"], "mac": link["address"], "flags": sorted(link["flags"]),
            "mtu": link["mtu"], "qlen": link.get("txqlen"), "alias": link.get("ifalias", ""),
            "operstate": link["operstate"],
            "addrs": sorted(f"{a['local']}/{a['prefixlen']}" for e in addrs for a in e.get("addr_info", [])
                            if a.get("scope") == "global")}


def routes(ns) -> list:
    return sorted(json.dumps({k: r.get(k) for k in ("dst", "gateway", "dev", "protocol", "scope")}, sort_keys=True)
                  for fam in ("-4", "-6") for r in ns.ip_json(fam, "route", "show") if r.get("dst") != "fe80::/64")


def assert_given_back(host_ns, ctr, *, up=False):
    state = link_state(host_ns, DEV)
    assert state is not None, host_ns.links()
    assert state["alias"] == "" and state["addrs"] == []
    assert ("UP" in state["flags"]) == up
    assert state["mac"] == "02:55:00:00:00:01"
    if ctr is not None:
        assert ctr.links() == ["lo"]


# ---- the lifecycle, every version -------------------------------------------------------


def test_add_check_del_every_version(plugins, host, make_netns, data_dir):
    for version in ALL_VERSIONS:
        ctr = make_netns("pycni-ctr")
        # IPv6 where the result's shape differs (legacy ip6, ips): each waits for DAD.
        dual = version in ("0.2.0", "1.0.0")
        v6 = ["fd55::2/64"] if dual else []
        conf = make_conf(version, data_dir / version, dual=dual, device=DEV)
        out = run(plugins, "ADD", conf, ctr, host).ok().json
        assert out["cniVersion"] == version
        assert DEV not in host.links()
        state = link_state(ctr, IFNAME)
        assert state["alias"] == DEV and state["mac"] == "02:55:00:00:00:01" and "UP" in state["flags"]
        assert state["addrs"] == ["10.55.0.2/24"] + v6
        assert any('"10.99.0.0/16"' in r and '"10.55.0.1"' in r for r in routes(ctr))
        if version in ("0.1.0", "0.2.0"):
            assert out["ip4"]["ip"] == "10.55.0.2/24" and out.get("ip6", {}).get("ip") == (v6 or [None])[0]
        else:
            assert out["interfaces"] == [{"name": IFNAME, "mac": "02:55:00:00:00:01", "sandbox": ctr.path}]
            assert [ip["interface"] for ip in out["ips"]] == [0] * (1 + len(v6))
        assert out["dns"] == {"nameservers": ["10.55.0.53"]}
        if version not in ("0.1.0", "0.2.0", "0.3.0", "0.3.1"):
            run(plugins, "CHECK", dict(conf, prevResult=out), ctr, host).ok()
        run(plugins, "DEL", conf, ctr, host).ok()
        assert_given_back(host, ctr)
        assert reservations(data_dir / version) == []
        run(plugins, "DEL", conf, ctr, host).ok()  # twice: still success
        ctr.remove()
        host.run("ip", "link", "set", DEV, "up")


def test_without_ipam(plugins, host, container_ns):
    for version in ALL_VERSIONS:
        out = run(plugins, "ADD", make_conf(version, device=DEV), container_ns, host)
        if version in ("0.1.0", "0.2.0"):
            # No result without addresses in these versions: refused before anything moves.
            assert out.status == 1 and out.json["code"] == 1, out.out
            assert link_state(host, DEV)["alias"] == "" and container_ns.links() == ["lo"]
            continue
        assert out.ok().json == {"cniVersion": version, "dns": {},
                                 "interfaces": [{"name": IFNAME, "mac": "02:55:00:00:00:01",
                                                 "sandbox": container_ns.path}]}
        assert "UP" in link_state(container_ns, IFNAME)["flags"]
        run(plugins, "DEL", make_conf(version), container_ns, host).ok()
        assert_given_back(host, container_ns)


# ---- selectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("selector", ["hwaddr", "kernelpath", "pciBusID", "deviceID"])
def test_each_selector(plugins, host, container_ns, fake_sys, selector):
    conf = make_conf("1.0.0")
    fake = None
    if selector == "hwaddr":
        conf["hwaddr"] = "02:55:00:00:00:01"
    elif selector == "kernelpath":
        # Virtual links are listed under /sys/devices/virtual/net, sorted: hd0 comes first.
        conf["kernelpath"] = "/sys/devices/virtual"
    elif selector == "pciBusID":
        conf["pciBusID"], fake = PCI_ADDR, fake_sys
    else:  # the SR-IOV device plugin's choice overrides a configured pciBusID
        conf["runtimeConfig"], fake = {"deviceID": PCI_ADDR}, fake_sys
    out = run(plugins, "ADD", conf, container_ns, host, fake_sys=fake).ok().json
    assert out["interfaces"][0]["mac"] == "02:55:00:00:00:01"
    assert link_state(container_ns, IFNAME)["alias"] == DEV
    run(plugins, "DEL", conf, container_ns, host, fake_sys=fake).ok()
    assert_given_back(host, container_ns)


def test_macvlan_device_comes_back_on_its_master(plugins, host, container_ns, data_dir):
    host.run("ip", "link", "add", "hdmv", "link", PEER, "type", "macvlan", "mode", "bridge")
    conf = make_conf("1.0.0", data_dir, device="hdmv")
    run(plugins, "ADD", conf, container_ns, host).ok()
    link = container_ns.link(IFNAME)
    assert link["linkinfo"]["info_kind"] == "macvlan" and link.get("ifalias") == "hdmv"
    run(plugins, "DEL", conf, container_ns, host).ok()
    back = host.link("hdmv")
    assert back["link"] == PEER and back["linkinfo"]["info_kind"] == "macvlan" and back.get("ifalias", "") == "" and container_ns.links() == ["lo"]


def test_dpdk_device_is_not_moved(plugins, go_plugins, host, make_netns, fake_sys, data_dir):
    """A device bound to vfio-pci has no kernel link: only IPAM runs. Go numbers its addresses
    as interface 0 of an empty interface list; ours carry no interface index."""
    for impl in (plugins, go_plugins):
        ctr = make_netns("pycni-ctr")
        conf = make_conf("1.0.0", data_dir / impl.kind, pciBusID=DPDK_ADDR)
        out = run(impl, "ADD", conf, ctr, host, fake_sys=fake_sys).ok().json
        assert "interfaces" not in out and [ip["address"] for ip in out["ips"]] == ["10.55.0.2/24", "fd55::2/64"]
        assert [ip.get("interface") for ip in out["ips"]] == ([0, 0] if impl.kind == "go" else [None, None])
        assert ctr.links() == ["lo"] and link_state(host, DEV)["alias"] == ""
        run(impl, "DEL", conf, ctr, host, fake_sys=fake_sys).ok()
        assert reservations(data_dir / impl.kind) == []


# ---- side by side with Go -----------------------------------------------------------------


@pytest.mark.parametrize("version", ["0.2.0", "0.3.1", "1.0.0"])
def test_same_as_go(plugins, go_plugins, host, make_netns, tmp_path, version):
    seen = {}
    for impl in (go_plugins, plugins):
        ctr = make_netns("pycni-ctr")
        conf = make_conf(version, tmp_path / impl.kind, device=DEV)
        out = run(impl, "ADD", conf, ctr, host).ok().json
        if "interfaces" in out:
            out["interfaces"][0]["sandbox"] = "SANDBOX"
        inside = (link_state(ctr, IFNAME), routes(ctr))
        run(impl, "DEL", conf, ctr, host).ok()
        back = link_state(host, DEV)
        back.pop("alias")  # Go leaves the alias set: we clear it (a deliberate difference)
        seen[impl.kind] = (out, inside, back, ctr.links())
        host.run("ip", "link", "set", DEV, "up")
    assert seen[plugins.kind] == seen["go"]


def test_check_accepts_an_ipam_route_without_gateway_go_does_not(plugins, go_plugins, host, container_ns, data_dir):
    conf = make_conf("1.0.0", data_dir, device=DEV)
    conf["ipam"]["ranges"] = [[{"subnet": "10.55.0.0/24"}]]
    out = run(plugins, "ADD", conf, container_ns, host).ok().json
    prev = dict(conf, prevResult=out)
    run(plugins, "CHECK", prev, container_ns, host).ok()
    assert run(go_plugins, "CHECK", prev, container_ns, host).status == 1
    container_ns.run("ip", "addr", "flush", "dev", IFNAME)
    assert run(plugins, "CHECK", prev, container_ns, host).status == 1
    run(plugins, "DEL", conf, container_ns, host).ok()


# ---- failures leave nothing ----------------------------------------------------------------


def test_failed_ipam_moves_the_device_back_up(plugins, host, container_ns, data_dir):
    conf = make_conf("1.0.0", data_dir, device=DEV)
    conf["ipam"]["type"] = "no-such-ipam"
    out = run(plugins, "ADD", conf, container_ns, host)
    assert out.status == 1 and "Traceback" not in out.err, out
    assert_given_back(host, container_ns, up=True)


def test_ifname_taken_in_container_moves_nothing(plugins, host, container_ns):
    container_ns.run("ip", "link", "add", IFNAME, "type", "veth", "peer", "name", "other")
    out = run(plugins, "ADD", make_conf("1.0.0", device=DEV), container_ns, host)
    assert out.status == 1 and "already exists" in out.json["msg"]
    assert link_state(host, DEV)["alias"] == "" and "UP" in link_state(host, DEV)["flags"]


def test_missing_device_is_a_config_error(plugins, host, container_ns, fake_sys):
    for key, value, fake in (("device", "nosuch0", None), ("hwaddr", "02:55:00:00:00:99", None),
                             ("kernelpath", "/sys/devices/nosuch", None), ("pciBusID", "0000:00:1f.5", fake_sys)):
        out = run(plugins, "ADD", make_conf("1.0.0", **{key: value}), container_ns, host, fake_sys=fake)
        assert out.status == 1 and out.json["code"] == 7, (key, out)
    assert container_ns.links() == ["lo"]


@pytest.mark.parametrize("stage", ["link", "ipam", "addresses"])
def test_killed_at_each_stage_then_del_leaves_nothing(plugins, host, container_ns, data_dir, stage):
    conf = make_conf("1.0.0", data_dir, device=DEV)
    out = run(plugins, "ADD", conf, container_ns, host, env={"PYCNI_TEST_KILL_AT": stage})
    assert out.status in (-9, 137) and out.out == "", out
    assert IFNAME in container_ns.links()
    run(plugins, "DEL", conf, container_ns, host).ok()
    assert_given_back(host, container_ns)
    assert reservations(data_dir) == []


# ---- DEL without the container --------------------------------------------------------------


def test_del_with_empty_netns_releases_ipam(plugins, host, container_ns, data_dir):
    conf = make_conf("1.0.0", data_dir, device=DEV)
    run(plugins, "ADD", conf, container_ns, host).ok()
    run(plugins, "DEL", conf, None, host).ok()  # containerd: no CNI_NETNS
    assert reservations(data_dir) == []
    assert IFNAME in container_ns.links()  # out of reach without the netns
    run(plugins, "DEL", conf, container_ns, host).ok()  # a later DEL with the netns still gives it back
    assert_given_back(host, container_ns)


def test_del_of_a_container_never_added(plugins, go_plugins, host, container_ns):
    conf = make_conf("1.0.0", device=DEV)
    run(plugins, "DEL", conf, container_ns, host).ok()
    assert run(go_plugins, "DEL", conf, container_ns, host).status == 1  # the reference fails
    run(plugins, "DEL", conf, None, host, netns="/run/netns/pycni-gone").ok()


def test_virtual_device_goes_with_a_deleted_netns(plugins, host, make_netns):
    """What the kernel does when the netns is destroyed before DEL: a veth (or any link made
    through rtnetlink) is destroyed with it, its peer too; a physical NIC would return to
    the root netns instead (not testable here)."""
    ctr = make_netns("pycni-ctr")
    conf = make_conf("1.0.0", device=DEV)
    run(plugins, "ADD", conf, ctr, host).ok()
    path = ctr.path
    ctr.remove()
    run(plugins, "DEL", conf, None, host, netns=path).ok()
    deadline = time.monotonic() + 10  # the kernel dismantles a netns in the background
    while PEER in host.links() and time.monotonic() < deadline:
        time.sleep(0.05)
    links = host.links()
    assert DEV not in links and PEER not in links
