"""A real container runtime: podman 4.3 (CNI backend) running containers on our plugins.

Podman gets a private containers.conf (CONTAINERS_CONF), storage, run and
runc state under the test's tmp dir, and runs inside a netns that plays the
host (entered with nsenter --net only: `ip netns exec` remounts /sys and so
hides the cgroup mounts runc needs). The image is a rootfs holding the static
busybox. Podman still keeps its CNI result cache in /var/lib/cni/results and
its container netns under /run/netns; the test checks both are left clean and
removes directories it created.

Plugins: bridge and host-local, ours where they exist (runtime_env.plugin_dir).
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from cni.runtime.cache import Cache, Entry
from conftest import ROOT, needs_root
from runtime_env import frozen_cnitool_available, plugin_dir

pytestmark = needs_root
SUBNET, GATEWAY, FIXED_IP = "10.88.7.0/24", "10.88.7.1", "10.88.7.50"


def static_busybox() -> str | None:
    path = shutil.which("busybox") or ("/bin/busybox" if os.path.exists("/bin/busybox") else None)
    if path is None:
        return None
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return None
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    kinds = [struct.unpack_from("<I", table, i * phentsize)[0] for i in range(phnum)]
    return None if 3 in kinds else path  # PT_INTERP: dynamically linked


def missing_tools() -> list[str]:
    missing = [t for t in ("podman", "runc", "conmon", "nsenter") if shutil.which(t) is None
               and not os.path.exists(f"/usr/bin/{t}") and not os.path.exists(f"/usr/libexec/podman/{t}")]
    if static_busybox() is None:
        missing.append("busybox-static")
    return missing


pytestmark = [needs_root, pytest.mark.skipif(bool(missing_tools()),
                                             reason=f"needs podman, runc, busybox-static: missing {missing_tools()}")]


class Podman:
    def __init__(self, tmp: Path, host, cni_bin: Path) -> None:
        self.tmp, self.host, self.cni_bin = tmp, host, cni_bin
        self.rootfs = tmp / "rootfs"
        (self.rootfs / "bin").mkdir(parents=True)
        for d in ("proc", "sys", "dev", "etc", "tmp"):
            (self.rootfs / d).mkdir()
        shutil.copy(static_busybox(), self.rootfs / "bin" / "busybox")
        for applet in ("sh", "ip", "ping", "sleep", "cat", "hostname"):
            os.symlink("busybox", self.rootfs / "bin" / applet)
        self.netconf = tmp / "net.d"
        self.netconf.mkdir()
        self.ipam = tmp / "ipam"
        conf = tmp / "containers.conf"
        conf.write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            "[network]\n"
            'network_backend = "cni"\n'
            f'cni_plugin_dirs = ["{cni_bin}"]\n'
            f'network_config_dir = "{self.netconf}"\n'
            "[engine]\n"
            'runtime = "runc"\n')
        self.env = {"PATH": os.environ["PATH"], "CONTAINERS_CONF": str(conf), "HOME": str(tmp)}
        # podman refuses a runroot longer than 50 characters: pytest's tmp paths are longer
        self.short = Path(tempfile.mkdtemp(prefix="pycni-pm-", dir="/tmp"))
        self.base = ["podman", "--root", str(tmp / "root"), "--runroot", str(self.short / "rr"), "--tmpdir",
                     str(tmp / "tmp"), "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
                     "--events-backend", "file", "--runtime-flag", f"root={self.short / 'rc'}"]

    def network(self, name="pycnitest"):
        (self.netconf / f"{name}.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": name, "plugins": [
                {"type": "bridge", "bridge": "pcni0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
                 "ipam": {"type": "host-local", "dataDir": str(self.ipam), "routes": [{"dst": "0.0.0.0/0"}],
                          "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]]}}]}))

    def run(self, *args, check=True, timeout=120, env=None):
        p = subprocess.run(["nsenter", f"--net={self.host.path}", *self.base, *args], env=dict(self.env, **(env or {})),
                           capture_output=True, text=True, timeout=timeout)
        if check:
            assert p.returncode == 0, f"podman {args}: {p.stdout} {p.stderr}"
        return p

    def cleanup(self):
        self.run("rm", "-af", "-t", "0", check=False)
        shutil.rmtree(self.short, ignore_errors=True)


@pytest.fixture
def var_lib_cni_results():
    # /run/runc: podman creates runc's default state dir even with --runtime-flag root=...
    chain = [Path("/run/runc"), Path("/var/lib/cni"), Path("/var/lib/cni/results")]
    existed = [p.exists() for p in chain]
    before = set(os.listdir(chain[2])) if existed[2] else set()
    yield chain[2]
    for path, was in reversed(list(zip(chain, existed))):
        if not was and path.exists():
            try:
                path.rmdir()  # only if podman left it empty; otherwise the test has failed already
            except OSError:
                pass
    if chain[2].exists():
        assert set(os.listdir(chain[2])) <= before


@pytest.fixture(params=["source", "frozen"])
def podman(request, tmp_path, host_ns, var_lib_cni_results):
    kind = request.param
    if kind == "frozen" and not frozen_cnitool_available():
        pytest.skip("bin/ is not built (run ./build.sh)")
    d, served = plugin_dir(tmp_path, kind)
    if "bridge" not in served or "host-local" not in served:
        pytest.skip("no bridge/host-local plugins available")
    p = Podman(tmp_path, host_ns, d)
    p.served = served
    yield p
    p.cleanup()


def podman_netns() -> set[str]:
    return {n for n in os.listdir("/run/netns") if n.startswith(("netns-", "cni-"))} \
        if os.path.isdir("/run/netns") else set()


def nat_rules(host) -> list[str]:
    return [l for l in host.run("iptables", "-t", "nat", "-S").stdout.splitlines() if not l.startswith("-P")]


def test_container_on_our_bridge(podman, host_ns, var_lib_cni_results):
    podman.network()
    netns_before, nat_before = podman_netns(), nat_rules(host_ns)
    podman.run("run", "-d", "--name", "c1", "--network", "pycnitest", "--ip", FIXED_IP, "--rootfs",
               str(podman.rootfs), "sleep", "1000")
    addr = podman.run("exec", "c1", "ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert f"inet {FIXED_IP}/24" in addr
    route = podman.run("exec", "c1", "ip", "route").stdout
    assert f"default via {GATEWAY}" in route
    podman.run("exec", "c1", "ping", "-c", "1", "-W", "5", GATEWAY)
    assert (podman.ipam / "pycnitest" / FIXED_IP).exists()
    assert len([l for l in host_ns.links() if l.startswith("veth")]) == 1
    assert host_ns.link("pcni0")["linkinfo"]["info_kind"] == "bridge"
    assert len(nat_rules(host_ns)) > len(nat_before)  # ipMasq

    cid = podman.run("inspect", "-f", "{{.Id}}", "c1").stdout.strip()
    cached = var_lib_cni_results / f"pycnitest-{cid}-eth0"
    data = cached.read_bytes()
    entry = Entry.from_bytes(data)  # libcni wrote it; we read it and write the same bytes
    assert entry.to_bytes() == data
    assert ("IP", FIXED_IP) in entry.cni_args
    assert entry.result["ips"][0]["address"] == f"{FIXED_IP}/24"
    assert Cache("/var/lib/cni").load("pycnitest", cid, "eth0") == entry

    podman.run("rm", "-f", "-t", "0", "c1")
    assert [l for l in host_ns.links() if l.startswith("veth")] == []
    assert not (podman.ipam / "pycnitest" / FIXED_IP).exists()
    assert nat_rules(host_ns) == nat_before
    assert not cached.exists() and podman_netns() == netns_before


def test_two_containers_reach_each_other_and_leave_nothing(podman, host_ns):
    podman.network()
    for name in ("c1", "c2"):
        podman.run("run", "-d", "--name", name, "--network", "pycnitest", "--rootfs", str(podman.rootfs),
                   "sleep", "1000")
    ips = {}
    for name in ("c1", "c2"):
        line = podman.run("exec", name, "ip", "-o", "-4", "addr", "show", "eth0").stdout
        ips[name] = line.split("inet ")[1].split("/")[0]
    assert len(set(ips.values())) == 2 and all(ip.startswith("10.88.7.") for ip in ips.values())
    podman.run("exec", "c1", "ping", "-c", "1", "-W", "5", ips["c2"])
    podman.run("rm", "-af", "-t", "0")
    assert [l for l in host_ns.links() if l.startswith("veth")] == []
    assert sorted(p.name for p in (podman.ipam / "pycnitest").iterdir() if p.name[0].isdigit()) == []


def test_docker_run_script_with_podman(podman, host_ns, tmp_path):
    netconf = tmp_path / "script-net.d"
    netconf.mkdir()
    (netconf / "10-sn.conflist").write_text(json.dumps({"cniVersion": "1.0.0", "name": "sn", "plugins": [
        {"type": "bridge", "bridge": "sn0", "isGateway": True,
         "ipam": {"type": "host-local", "subnet": "10.41.0.0/24", "dataDir": str(tmp_path / "sn-ipam")}}]}))
    env = dict(podman.env, DOCKER=" ".join(podman.base), INFRA_ARGS=f"--rootfs {podman.rootfs}",
               INFRA_CMD="sleep 1000", NETCONFPATH=str(netconf), CNI_PATH=str(podman.cni_bin),
               CNI_CACHE_DIR=str(tmp_path / "cache"))
    if "frozen" in str(podman.cni_bin):
        env["CNITOOL"] = str(ROOT / "bin" / "cnitool")
    p = subprocess.run(["nsenter", f"--net={host_ns.path}", str(ROOT / "scripts" / "docker-run.sh"), "--rm",
                        "--rootfs", str(podman.rootfs), "ip", "-o", "-4", "addr", "show", "eth0"],
                       env=env, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    assert "inet 10.41.0." in p.stdout
    assert podman.run("ps", "-aq").stdout.strip() == ""
    assert [l for l in host_ns.links() if l.startswith("veth")] == []
    assert sorted(x.name for x in (tmp_path / "sn-ipam" / "sn").iterdir() if x.name[0].isdigit()) == []
    assert os.listdir(tmp_path / "cache" / "results") == []


# ---- podman's own network, our plugins alone -------------------------------------------------

PODMAN_CHAIN = ("bridge", "host-local", "portmap", "firewall", "tuning", "loopback")


@pytest.fixture
def podman_ours(tmp_path, host_ns, var_lib_cni_results):
    """podman whose cni_plugin_dirs names only our frozen bin/ (no Go plugin anywhere on its path)."""
    from conftest import BIN

    for name in PODMAN_CHAIN:
        if not (BIN / name).exists():
            pytest.fail(f"bin/{name} is missing: this test runs podman's network on our plugins alone")
    p = Podman(tmp_path, host_ns, BIN)
    yield p
    p.cleanup()


def test_podman_network_create_and_port_mapping_on_our_plugins(podman_ours, host_ns, tmp_path):
    """The network podman itself writes (bridge, portmap, firewall, tuning) with only our bin/:
    `-p` reaches a server in the container by the host's address and by 127.0.0.1, and
    `podman rm` leaves no rule, link or reservation."""
    podman = podman_ours
    host_ns.run("ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1")
    host_ns.run("ip", "addr", "add", "10.201.0.1/24", "dev", "uplink0")
    for name in ("uplink0", "uplink1"):
        host_ns.run("ip", "link", "set", name, "up")
    podman.run("network", "create", "--subnet", "10.89.9.0/24", "pycniweb")
    written = json.loads((podman.netconf / "pycniweb.conflist").read_text())
    assert [pl["type"] for pl in written["plugins"]] == ["bridge", "portmap", "firewall", "tuning"]
    (podman.rootfs / "www").mkdir()
    (podman.rootfs / "www" / "index.html").write_text("hello from pycni\n")
    os.symlink("busybox", podman.rootfs / "bin" / "httpd")
    podman.run("run", "-d", "--name", "web", "--network", "pycniweb", "-p", "8080:80", "--rootfs",
               str(podman.rootfs), "httpd", "-f", "-p", "80", "-h", "/www")
    for address in ("10.201.0.1", "127.0.0.1"):
        for _ in range(50):  # httpd starts in the background (busybox's own wget crashes here: urllib)
            got = host_ns.run(sys.executable, "-c", "import sys, urllib.request; sys.stdout.write("
                              f"urllib.request.urlopen('http://{address}:8080/', timeout=5).read().decode())",
                              check=False)
            if got.returncode == 0:
                break
            time.sleep(0.1)
        assert got.stdout == "hello from pycni\n", (address, got.returncode, got.stderr[-2000:])
    container_ip = podman.run("inspect", "-f", "{{.NetworkSettings.Networks.pycniweb.IPAddress}}", "web").stdout.strip()
    assert container_ip.startswith("10.89.9."), container_ip
    podman.run("rm", "-f", "-t", "0", "web")
    assert [l for l in host_ns.links() if l.startswith("veth")] == []
    reservations = Path("/var/lib/cni/networks/pycniweb")
    try:
        assert not (reservations / container_ip).exists()
        rules = nat_rules(host_ns) + host_ns.run("iptables", "-S").stdout.splitlines()
        assert [l for l in rules if container_ip in l or "CNI-DN-" in l] == [], rules
    finally:
        podman.run("network", "rm", "pycniweb", check=False)
        shutil.rmtree(reservations, ignore_errors=True)  # podman's network: host-local's default dataDir
