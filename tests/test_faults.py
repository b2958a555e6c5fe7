"""Faults: a plugin killed mid-ADD, things vanishing between ADD and DEL, a full disk.

Each case ends in success or a clear CNI error, never a traceback, and leaves
no link, reservation or masquerade rule behind once the runtime's DEL ran.
The kill points come from the test-only hook PYCNI_TEST_KILL_AT (cni/rollback.py).
"""
from __future__ import annotations

import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import needs_root
from reliability_env import (chain_caps, chain_conflist, host_veths, ip_files, nat_rules, network, no_traceback,
                             per_container_rules, run_chain, shaping, state, uplink)

pytestmark = needs_root

SUBNET = "10.77.0.0/24"


def config(kind: str, data_dir: Path, version: str = "1.0.0", masq: bool = True) -> dict:
    return network(kind, "faultnet", SUBNET, data_dir, bridge="fbr0", version=version, masq=masq)


def killed(outcome) -> bool:
    return outcome.status in (-9, 137) and outcome.out == ""


# ---- SIGKILL at each stage of ADD, then the runtime's DEL ------------------------------

STAGES = [("bridge", s) for s in ("bridge", "veth", "ipam", "addresses", "masquerade")] + \
         [("ptp", s) for s in ("veth", "ipam", "addresses", "masquerade")] + \
         [("macvlan", s) for s in ("link", "ipam", "addresses")]
# ipvlan runs the same Rollback/checkpoint path as macvlan; this kernel cannot make ipvlan links.


@pytest.mark.parametrize("kind,stage", STAGES, ids=[f"{k}-{s}" for k, s in STAGES])
def test_killed_at_each_stage_then_del_leaves_nothing(plugins, host_ns, container_ns, data_dir, kind, stage):
    if kind == "macvlan":
        uplink(host_ns)
    before_veths = host_veths(host_ns)
    conf = config(kind, data_dir)
    out = plugins.run(kind, "ADD", conf, netns=container_ns.path, in_netns=host_ns.path,
                      env={"PYCNI_TEST_KILL_AT": stage})
    assert killed(out), f"not killed at {stage}: {out}"
    # The kill really happened after the stage: its work is there for DEL to clean.
    if stage in ("veth", "link", "addresses"):
        assert "eth0" in container_ns.links()
    if stage == "ipam":
        assert len(ip_files(data_dir)) == 1
    if stage == "masquerade":
        assert nat_rules(host_ns)

    plugins.run(kind, "DEL", conf, netns=container_ns.path, in_netns=host_ns.path).ok()
    assert container_ns.links() == ["lo"]
    assert host_veths(host_ns) == before_veths
    assert ip_files(data_dir) == {}
    assert nat_rules(host_ns) == []
    # The store and the host still work: the same container can be added again.
    again = plugins.run(kind, "ADD", conf, netns=container_ns.path, in_netns=host_ns.path).ok().json
    assert again["ips"][0]["address"].startswith("10.77.0.") and len(ip_files(data_dir)) == 1
    plugins.run(kind, "DEL", conf, netns=container_ns.path, in_netns=host_ns.path).ok()
    assert ip_files(data_dir) == {} and nat_rules(host_ns) == []


# The same for a bridge + portmap + bandwidth chain run by cni.runtime: the kill stops one
# plugin of the list, the runtime's ADD fails (nothing cached), and its DEL of the whole list,
# with the capability args a runtime passes again, cleans what every plugin had done.
CHAIN_STAGES = ["masquerade", "portmap", "ingress", "ifb", "redirect"]


@pytest.mark.parametrize("stage", CHAIN_STAGES)
def test_chain_killed_at_each_stage_then_runtime_del_leaves_nothing(frozen_plugins, host_ns, container_ns,
                                                                     data_dir, tmp_path, stage):
    cache = tmp_path / "cache"
    conflist = chain_conflist(data_dir)
    op = {"id": "faulty", "netns": container_ns.path, "caps": chain_caps(7)}
    before = shaping(host_ns)
    add, = run_chain(host_ns, frozen_plugins.directory, cache, conflist, [dict(op, command="ADD")],
                     env={"PYCNI_TEST_KILL_AT": stage})
    assert not add["ok"], add
    assert len(ip_files(data_dir)) == 1 and "eth0" in container_ns.links()  # the bridge's work is there
    if stage != "masquerade":
        assert per_container_rules(host_ns, ["10.91.0.2"])  # the DNAT rules too
    if stage in ("ingress", "ifb", "redirect"):
        assert shaping(host_ns)["qdiscs"] and (stage == "ingress" or shaping(host_ns)["ifbs"])

    delete, = run_chain(host_ns, frozen_plugins.directory, cache, conflist, [dict(op, command="DEL")])
    assert delete["ok"], delete
    assert container_ns.links() == ["lo"] and host_veths(host_ns) == []
    assert shaping(host_ns) == before
    assert per_container_rules(host_ns, ["10.91.0.2"]) == []
    assert [l for l in nat_rules(host_ns) if "HOSTPORT" not in l] == []  # portmap's shared chains stay
    assert ip_files(data_dir) == {} and [p for p in cache.rglob("*") if p.is_file()] == []


# ---- things vanish between ADD and DEL ---------------------------------------------------


@pytest.mark.parametrize("kind", ["bridge", "ptp", "macvlan"])
def test_netns_deleted_between_add_and_del(plugins, host_ns, make_netns, data_dir, kind):
    if kind == "macvlan":
        uplink(host_ns)
    ctr = make_netns("pycni-ctr")
    before_veths = host_veths(host_ns)
    conf = config(kind, data_dir)
    plugins.run(kind, "ADD", conf, netns=ctr.path, in_netns=host_ns.path).ok()
    assert ip_files(data_dir)
    path = ctr.path
    ctr.remove()
    for _ in range(2):  # the second DEL finds nothing at all
        out = plugins.run(kind, "DEL", conf, netns=path, in_netns=host_ns.path)
        no_traceback(out)
        out.ok()
    assert host_veths(host_ns) == before_veths
    assert ip_files(data_dir) == {}
    assert nat_rules(host_ns) == []


def test_master_deleted_before_del(plugins, host_ns, container_ns, data_dir):
    uplink(host_ns)
    conf = config("macvlan", data_dir)
    plugins.run("macvlan", "ADD", conf, netns=container_ns.path, in_netns=host_ns.path).ok()
    host_ns.run("ip", "link", "del", "uplink0")  # the kernel takes the macvlan with it
    out = plugins.run("macvlan", "DEL", conf, netns=container_ns.path, in_netns=host_ns.path)
    no_traceback(out)
    out.ok()
    assert container_ns.links() == ["lo"] and ip_files(data_dir) == {}


def test_dhcp_daemon_killed_and_restarted_between_add_and_del(source_plugins, make_netns, host_ns, tmp_path):
    from test_dhcp_env import Daemon, Dnsmasq, Lan, conf, wait_for

    lan = Lan(make_netns, host_ns)
    srv = Dnsmasq(lan.lan, tmp_path)
    daemon = Daemon(host_ns, tmp_path)
    again = None
    try:
        ctr = lan.container()
        cfg = conf(daemon.socket)
        out = source_plugins.run("dhcp", "ADD", cfg, netns=ctr.path, in_netns=host_ns.path).ok().json
        ip = out["ips"][0]["address"].split("/")[0]
        daemon.stop(9)  # SIGKILL: no clean shutdown, a stale socket stays behind
        assert daemon.socket.exists()
        again = Daemon(host_ns, tmp_path)  # replaces the stale socket, resumes the lease from disk
        assert [l["address"] for l in again.leases()] == [out["ips"][0]["address"]]
        res = source_plugins.run("dhcp", "DEL", cfg, netns=ctr.path, in_netns=host_ns.path)
        no_traceback(res)
        res.ok()
        wait_for(lambda: f"DHCPRELEASE(lan0) {ip}" in srv.text(), 5, "DHCPRELEASE")
        assert again.leases() == [] and list(again.state.iterdir()) == []
    finally:
        if again is not None:
            again.stop()
        daemon.stop(9)
        srv.stop()


def test_dhcp_daemon_killed_del_still_succeeds(source_plugins, make_netns, host_ns, tmp_path):
    from test_dhcp_env import Daemon, Dnsmasq, Lan, conf

    lan = Lan(make_netns, host_ns)
    srv = Dnsmasq(lan.lan, tmp_path)
    daemon = Daemon(host_ns, tmp_path)
    try:
        ctr = lan.container()
        cfg = conf(daemon.socket)
        source_plugins.run("dhcp", "ADD", cfg, netns=ctr.path, in_netns=host_ns.path).ok()
        daemon.stop(9)
        res = source_plugins.run("dhcp", "DEL", cfg, netns=ctr.path, in_netns=host_ns.path)
        no_traceback(res)
        res.ok()  # the daemon is gone: DEL warns and succeeds
        assert "warning" in res.err
        add = source_plugins.run("dhcp", "ADD", cfg, netns=ctr.path, in_netns=host_ns.path)
        assert add.status == 1 and add.json["code"] == 11  # clear: try again later
    finally:
        daemon.stop(9)
        srv.stop()


# ---- host-local's store under abuse ----------------------------------------------------------


def host_local_conf(data_dir: Path, subnet: str = "10.88.0.0/24") -> dict:
    return {"cniVersion": "1.0.0", "name": "storenet", "type": "host-local",
            "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(data_dir)}}


def hl(plugins, command: str, conf: dict, containerid: str):
    """host-local alone: it never opens the netns, but ADD needs one named."""
    return plugins.run("host-local", command, conf, containerid=containerid, netns="/run/netns/unused")


def test_lock_file_removed_while_in_use(frozen_plugins, data_dir):
    """Someone deletes `lock` again and again during 24 concurrent ADDs: no address is handed out twice."""
    conf = host_local_conf(data_dir)
    hl(frozen_plugins, "ADD", conf, "first").ok()
    lock = data_dir / "storenet" / "lock"
    stop = threading.Event()
    removed = 0

    def remove_lock() -> None:
        nonlocal removed
        while not stop.is_set():
            try:
                lock.unlink()
                removed += 1
            except FileNotFoundError:
                pass

    remover = threading.Thread(target=remove_lock)
    remover.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            outs = list(pool.map(lambda i: hl(frozen_plugins, "ADD", conf, f"c{i}"),
                                 range(24)))
    finally:
        stop.set()
        remover.join()
    for out in outs:
        no_traceback(out)
        out.ok()
    addresses = [o.json["ips"][0]["address"] for o in outs]
    assert len(set(addresses)) == 24 and removed > 0
    files = ip_files(data_dir)
    assert len(files) == 25
    assert sorted(v for v in files.values()) == sorted([b"first\r\neth0"] + [f"c{i}\r\neth0".encode() for i in range(24)])
    for i in range(24):
        hl(frozen_plugins, "DEL", conf, f"c{i}").ok()
    assert list(ip_files(data_dir).values()) == [b"first\r\neth0"]


@pytest.fixture
def tiny_fs(tmp_path):
    """A 64 KiB tmpfs (few inodes), unmounted at teardown."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=64,mode=755", "pycni-tiny", str(mnt)],
                   check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill_blocks(fs: Path) -> Path:
    filler = fs / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 1024)
        except OSError:
            pass
    return filler


def assert_store_sound(data_dir: Path) -> None:
    """No empty, half-written or temporary file: every IP file holds `<id>\\r\\n<ifname>`."""
    net = data_dir / "storenet"
    if not net.exists():
        return
    for path in net.iterdir():
        assert not path.name.startswith(".pycni-tmp-"), f"temporary file left: {path.name}"
        if path.name == "lock":
            continue
        content = path.read_bytes()
        assert content, f"empty file {path.name}"
        if path.name.startswith("last_reserved_ip."):
            continue
        cid, _, ifname = content.decode().partition("\r\n")
        assert cid and ifname == "eth0", content


def test_full_disk_fails_cleanly_and_recovers(plugins, tiny_fs):
    data_dir = tiny_fs / "networks"
    conf = host_local_conf(data_dir)
    hl(plugins, "ADD", conf, "before").ok()
    filler = fill_blocks(tiny_fs)
    for i in range(3):
        out = hl(plugins, "ADD", conf, f"full{i}")
        no_traceback(out)
        assert out.status == 1 and out.json["code"] == 5, out  # I/O failure, not 999
        assert "No space left" in out.json["details"]
        assert_store_sound(data_dir)
        assert len(ip_files(data_dir)) == 1
    hl(plugins, "DEL", conf, "before").ok()  # DEL needs no space
    assert ip_files(data_dir) == {}
    filler.unlink()
    out = hl(plugins, "ADD", conf, "after").ok()
    assert_store_sound(data_dir) and len(ip_files(data_dir)) == 1 and out.json["ips"]


def test_space_for_the_reservation_only_releases_it(plugins, tiny_fs):
    """One free page: the IP file fits, last_reserved_ip does not; ADD fails and keeps nothing."""
    data_dir = tiny_fs / "networks"
    conf = host_local_conf(data_dir)
    hl(plugins, "ADD", conf, "before").ok()
    filler = fill_blocks(tiny_fs)
    pages = -(-filler.stat().st_size // 4096)
    os.truncate(filler, (pages - 1) * 4096)
    out = hl(plugins, "ADD", conf, "starved")
    no_traceback(out)
    assert out.status == 1 and out.json["code"] == 5, out
    assert "last reserved" in out.json["msg"]  # the reservation itself had succeeded
    assert_store_sound(data_dir)
    assert list(ip_files(data_dir).values()) == [b"before\r\neth0"]


def test_full_disk_through_bridge_leaves_the_host_as_it_was(plugins, host_ns, container_ns, tiny_fs):
    data_dir = tiny_fs / "networks"
    conf = config("bridge", data_dir)
    plugins.run("bridge", "ADD", dict(conf, name="warmup"), containerid="w", netns=container_ns.path,
                in_netns=host_ns.path).ok()  # the bridge exists, with its gateway
    plugins.run("bridge", "DEL", dict(conf, name="warmup"), containerid="w", netns=container_ns.path,
                in_netns=host_ns.path).ok()
    fill_blocks(tiny_fs)
    before = state(host_ns, [container_ns], data_dir)
    out = plugins.run("bridge", "ADD", conf, netns=container_ns.path, in_netns=host_ns.path)
    no_traceback(out)
    assert out.status == 1 and out.json["code"] == 5, out
    after = state(host_ns, [container_ns], data_dir)
    assert after == before
