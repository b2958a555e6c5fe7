"""tap: a persistent tap in the container, opened by a process there as its owner; every key and version.

No Go oracle (Debian's 1.1.1 has no tap): the expected behaviour is the
reference HEAD's documented one (Documentation/tap.md).
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ALL_VERSIONS, needs_root

pytestmark = needs_root

NAME = "tapnet"
IFNAME = "tap0"
OWNER, GROUP = 1234, 2345

# Attaches to the tap by name as uid/gid (argv), sends an ARP request for argv[4] and prints the
# replier's MAC; EPERM on attaching prints "denied". /dev/net/tun is opened before dropping root
# (this machine's node is mode 0600): the kernel checks owner and group at TUNSETIFF.
READER = r"""
import fcntl, os, select, struct, sys, time
name, uid, gid, target = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
fd = os.open("/dev/net/tun", os.O_RDWR)
os.setgroups([]); os.setgid(gid); os.setuid(uid)
try:
    fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH22x", name.encode(), 0x0002 | 0x1000))
except PermissionError:
    print("denied"); sys.exit(0)
me, my_ip = bytes.fromhex("020000000009"), bytes([10, 56, 0, 9])
arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + me + my_ip + bytes(6) + bytes(int(x) for x in target.split("."))
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    os.write(fd, b"\xff" * 6 + me + b"\x08\x06" + arp)
    ready, _, _ = select.select([fd], [], [], 0.5)
    while ready:
        frame = os.read(fd, 4096)
        if frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x02":
            print(frame[6:12].hex(":")); sys.exit(0)
        ready, _, _ = select.select([fd], [], [], 0)
print("no reply"); sys.exit(1)
"""


def make_conf(version: str, data_dir=None, *, dual: bool = False, **extra) -> dict:
    conf = {"cniVersion": version, "name": NAME, "type": "tap"}
    if data_dir is not None:
        conf["ipam"] = {"type": "host-local", "dataDir": str(data_dir),
                        "ranges": [[{"subnet": "10.56.0.0/24"}]] + ([[{"subnet": "fd56::/64"}]] if dual else []),
                        "routes": [{"dst": "10.98.0.0/16"}]}
        conf["dns"] = {"nameservers": ["10.56.0.53"]}
    conf.update(extra)
    return conf


def run(plugins, command, conf, ctr, *, netns=None, **kw):
    kw.setdefault("cni_path", str(plugins.directory))
    kw.setdefault("ifname", IFNAME)
    return plugins.run("tap", command, conf, netns=netns if netns is not None else ctr.path, **kw)


def tun_info(ns, name=IFNAME) -> dict:
    link = ns.link(name)
    return dict(link["linkinfo"]["info_data"], kind=link["linkinfo"]["info_kind"], mac=link["address"],
                mtu=link["mtu"], up="UP" in link["flags"], master=link.get("master"))


def reservations(data_dir) -> list[str]:
    d = data_dir / NAME
    return sorted(p.name for p in d.iterdir() if re.match(r"^[0-9a-f.:]+$", p.name)) if d.exists() else []


def addrs(ns, name=IFNAME) -> list[str]:
    return sorted(f"{a['local']}/{a['prefixlen']}" for e in ns.ip_json("addr", "show", "dev", name)
                  for a in e.get("addr_info", []) if a.get("scope") == "global")


def open_as(ns, uid, gid, target="10.56.0.2", name=IFNAME) -> str:
    import sys
    return ns.run(sys.executable, "-c", READER, name, str(uid), str(gid), target, check=False).stdout.strip()


# ---- the lifecycle, every version ----------------------------------------------------------


def test_add_check_del_every_version(plugins, make_netns, data_dir):
    for version in ALL_VERSIONS:
        ctr = make_netns("pycni-ctr")
        dual = version in ("0.2.0", "1.0.0")
        conf = make_conf(version, data_dir / version, dual=dual)
        out = run(plugins, "ADD", conf, ctr).ok().json
        info = tun_info(ctr)
        assert info["kind"] == "tun" and info["type"] == "tap" and info["persist"] and info["up"]
        assert not info["pi"] and "user" not in info and "group" not in info
        assert addrs(ctr) == ["10.56.0.2/24"] + (["fd56::2/64"] if dual else [])
        assert ctr.run("sysctl", "-n", f"net.ipv4.conf.{IFNAME}.arp_notify").stdout.strip() == "1"
        assert ctr.ip_json("route", "show", "10.98.0.0/16")[0]["gateway"] == "10.56.0.1"
        if version in ("0.1.0", "0.2.0"):
            assert out["ip4"]["ip"] == "10.56.0.2/24"
        else:
            assert out["interfaces"] == [{"name": IFNAME, "mac": info["mac"], "sandbox": ctr.path}]
            assert all(ip["interface"] == 0 for ip in out["ips"])
        assert out["dns"] == {"nameservers": ["10.56.0.53"]}
        if version not in ("0.1.0", "0.2.0", "0.3.0", "0.3.1"):
            run(plugins, "CHECK", dict(conf, prevResult=out), ctr).ok()
        run(plugins, "DEL", conf, ctr).ok()
        assert ctr.links() == ["lo"] and reservations(data_dir / version) == []
        run(plugins, "DEL", conf, ctr).ok()
        ctr.remove()


def test_layer2_without_ipam(plugins, make_netns):
    for version in ALL_VERSIONS:
        ctr = make_netns("pycni-ctr")
        out = run(plugins, "ADD", make_conf(version), ctr)
        if version in ("0.1.0", "0.2.0"):
            assert out.status == 1 and out.json["code"] == 1 and ctr.links() == ["lo"], out
            continue
        info = tun_info(ctr)
        assert out.ok().json == {"cniVersion": version, "dns": {},
                                 "interfaces": [{"name": IFNAME, "mac": info["mac"], "sandbox": ctr.path}]}
        assert info["up"] and addrs(ctr) == []
        if version not in ("0.3.0", "0.3.1"):
            run(plugins, "CHECK", dict(make_conf(version), prevResult=out.json), ctr).ok()
        run(plugins, "DEL", make_conf(version), ctr).ok()
        assert ctr.links() == ["lo"]


# ---- each key --------------------------------------------------------------------------------


def test_keys_owner_group_mtu_mac_multiqueue(plugins, container_ns):
    conf = make_conf("1.1.0", owner=OWNER, group=GROUP, mtu=1400, mac="02:56:00:00:00:07", multiQueue=True)
    out = run(plugins, "ADD", conf, container_ns).ok().json
    info = tun_info(container_ns)
    assert (info["user"], info["group"], info["mtu"], info["mac"], info["multi_queue"]) == \
        (OWNER, GROUP, 1400, "02:56:00:00:00:07", True)
    assert out["interfaces"][0]["mac"] == "02:56:00:00:00:07"
    run(plugins, "CHECK", dict(conf, prevResult=out), container_ns).ok()
    assert run(plugins, "CHECK", dict(conf, owner=OWNER + 1, prevResult=out), container_ns).status == 1
    assert run(plugins, "CHECK", dict(conf, multiQueue=False, prevResult=out), container_ns).status == 1
    run(plugins, "DEL", conf, container_ns).ok()
    assert container_ns.links() == ["lo"]


def test_mac_from_cni_args_and_runtime_config(plugins, container_ns):
    conf = make_conf("1.0.0", mac="02:56:00:00:00:01")
    out = run(plugins, "ADD", conf, container_ns, args="IgnoreUnknown=1;MAC=02:56:00:00:00:02").ok().json
    assert out["interfaces"][0]["mac"] == "02:56:00:00:00:02"
    run(plugins, "DEL", conf, container_ns).ok()
    conf["runtimeConfig"] = {"mac": "02:56:00:00:00:03"}
    out = run(plugins, "ADD", conf, container_ns, args="IgnoreUnknown=1;MAC=02:56:00:00:00:02").ok().json
    assert out["interfaces"][0]["mac"] == tun_info(container_ns)["mac"] == "02:56:00:00:00:03"
    run(plugins, "DEL", conf, container_ns).ok()


def test_owner_opens_it_and_exchanges_a_frame_others_cannot(plugins, container_ns, data_dir):
    conf = make_conf("1.0.0", data_dir, owner=OWNER, group=GROUP)
    run(plugins, "ADD", conf, container_ns).ok()
    mac = tun_info(container_ns)["mac"]
    assert open_as(container_ns, OWNER, GROUP) == mac  # the kernel answered ARP through the tap
    # With both set, the kernel wants both: the owner outside the group is refused, and so is
    # a member of the group who is not the owner.
    assert open_as(container_ns, OWNER, 99) == "denied"
    assert open_as(container_ns, 4321, GROUP) == "denied"
    assert tun_info(container_ns)["persist"]  # the readers closed it: still there
    run(plugins, "DEL", conf, container_ns).ok()
    assert container_ns.links() == ["lo"]


def test_bridge_in_the_container(plugins, container_ns):
    container_ns.run("ip", "link", "add", "vmbr0", "type", "bridge")
    conf = make_conf("1.0.0", bridge="vmbr0")
    out = run(plugins, "ADD", conf, container_ns).ok().json
    assert tun_info(container_ns)["master"] == "vmbr0"
    run(plugins, "CHECK", dict(conf, prevResult=out), container_ns).ok()
    container_ns.run("ip", "link", "set", IFNAME, "nomaster")
    assert run(plugins, "CHECK", dict(conf, prevResult=out), container_ns).status == 1
    run(plugins, "DEL", conf, container_ns).ok()
    assert container_ns.links() == ["lo", "vmbr0"]
    for missing in ("nosuchbr", "lo"):  # absent, or not a bridge: nothing made
        out = run(plugins, "ADD", make_conf("1.0.0", bridge=missing), container_ns)
        assert out.status == 1 and out.json["code"] == 7, out
        assert container_ns.links() == ["lo", "vmbr0"]


def test_selinux_context_ignored_with_a_note_when_selinux_is_off(plugins, container_ns):
    import os
    if os.path.exists("/sys/fs/selinux/enforce"):
        pytest.skip("SELinux is on here: the context would be applied")
    conf = make_conf("1.0.0", selinuxContext="system_u:system_r:svirt_t:s0:c1,c2")
    out = run(plugins, "ADD", conf, container_ns).ok()
    assert "SELinux is off" in out.err and tun_info(container_ns)["persist"]
    run(plugins, "DEL", conf, container_ns).ok()


# ---- failures leave nothing -------------------------------------------------------------------


def test_failed_ipam_leaves_nothing(plugins, container_ns, data_dir):
    conf = make_conf("1.0.0", data_dir)
    conf["ipam"]["type"] = "no-such-ipam"
    out = run(plugins, "ADD", conf, container_ns)
    assert out.status == 1 and "Traceback" not in out.err
    assert container_ns.links() == ["lo"]


def test_existing_tap_of_that_name_is_left_alone(plugins, container_ns):
    container_ns.run("ip", "tuntap", "add", "mode", "tap", "name", IFNAME, "user", "77")
    out = run(plugins, "ADD", make_conf("1.0.0", owner=OWNER), container_ns)
    assert out.status == 1 and "already exists" in out.json["msg"]
    assert tun_info(container_ns)["user"] == 77 and container_ns.links() == ["lo", IFNAME]


@pytest.mark.parametrize("stage", ["link", "ipam", "addresses"])
def test_killed_at_each_stage_then_del_leaves_nothing(plugins, container_ns, data_dir, stage):
    conf = make_conf("1.0.0", data_dir)
    out = run(plugins, "ADD", conf, container_ns, env={"PYCNI_TEST_KILL_AT": stage})
    assert out.status in (-9, 137) and out.out == "", out
    assert IFNAME in container_ns.links()
    run(plugins, "DEL", conf, container_ns).ok()
    assert container_ns.links() == ["lo"] and reservations(data_dir) == []


def test_del_without_the_container(plugins, make_netns, data_dir):
    ctr = make_netns("pycni-ctr")
    conf = make_conf("1.0.0", data_dir)
    run(plugins, "DEL", conf, ctr).ok()  # never added
    run(plugins, "ADD", conf, ctr).ok()
    run(plugins, "DEL", conf, None, netns="").ok()  # containerd: no CNI_NETNS; IPAM released
    assert reservations(data_dir) == []
    path = ctr.path
    ctr.remove()  # the tap goes with the netns
    run(plugins, "DEL", conf, None, netns=path).ok()


# ---- load ---------------------------------------------------------------------------------------


def test_32_concurrent_adds_then_dels(frozen_plugins, make_netns, data_dir):
    n = 32
    containers = [make_netns("pycni-ld") for _ in range(n)]
    conf = make_conf("1.0.0", data_dir, owner=OWNER)

    def call(command, i):
        return run(frozen_plugins, command, conf, containers[i], containerid=f"load{i}", timeout=120)

    with ThreadPoolExecutor(n) as pool:
        adds = list(pool.map(lambda i: call("ADD", i), range(n)))
    for out in adds:
        assert "Traceback" not in out.err
        out.ok()
    assert len({out.json["ips"][0]["address"] for out in adds}) == n and len(reservations(data_dir)) == n
    assert all(tun_info(ns)["user"] == OWNER and tun_info(ns)["up"] for ns in containers)
    with ThreadPoolExecutor(n) as pool:
        dels = list(pool.map(lambda i: call("DEL", i), range(n)))
    for out in dels:
        out.ok()
    assert all(ns.links() == ["lo"] for ns in containers) and reservations(data_dir) == []
