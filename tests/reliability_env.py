"""Helpers (no tests) for the reliability tests: test_load, test_faults, test_bad_input, test_security.

`State` is what a test compares before and after a plugin call: the host netns
(links, addresses, routes, nat and filter rules), the container netns links and the
files of a host-local data dir. One shell per netns keeps a snapshot cheap.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from conftest import Netns

# One exec per snapshot; counters and life times vary on their own and are dropped.
_HOST_SCRIPT = r"""
ip -j -d addr show; echo '@@'
ip -j route show table all; echo '@@'
ip -6 -j route show table all; echo '@@'
{ iptables-save -t nat; iptables-save -t filter; } 2>/dev/null | grep -v '^#'; echo '@@'
{ ip6tables-save -t nat; ip6tables-save -t filter; } 2>/dev/null | grep -v '^#'; echo '@@'
nft list ruleset 2>/dev/null
"""
_COUNTERS = re.compile(r"\[\d+:\d+\]")
_VOLATILE = ("valid_life_time", "preferred_life_time", "tentative", "operstate", "linkmode", "flags", "stats64", "stats")


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if k not in _VOLATILE and not k.endswith("_timer")}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def host_state(ns: Netns) -> dict:
    out = ns.run("sh", "-c", _HOST_SCRIPT).stdout
    addr, r4, r6, ipt4, ipt6, nft = out.split("@@\n")
    return {
        "links": _clean(json.loads(addr or "[]")),
        "routes": _clean(json.loads(r4 or "[]") + json.loads(r6 or "[]")),
        "nat": _COUNTERS.sub("", ipt4 + ipt6).strip(),
        "nft": nft.strip(),
    }


def container_links(ns: Netns) -> list:
    return _clean(ns.ip_json("-d", "addr", "show"))


def store_files(data_dir: Path | None) -> dict:
    """Every file of a host-local data dir but the lock files (made on first use, like Go's)."""
    if data_dir is None or not data_dir.exists():
        return {}
    found = {}
    for path in sorted(data_dir.rglob("*")):
        if path.is_symlink() or not path.is_dir():
            if path.name != "lock":
                found[str(path.relative_to(data_dir))] = path.read_bytes() if not path.is_symlink() else "symlink"
    return found


def state(host: Netns, containers: list[Netns] = (), data_dir: Path | None = None) -> dict:
    return {"host": host_state(host), "containers": [container_links(c) for c in containers],
            "store": store_files(data_dir)}


def ip_files(data_dir: Path) -> dict:
    """Reservations only: `<network>/<address>` -> content."""
    out = {}
    for path in data_dir.rglob("*"):
        if path.is_file() and (":" in path.name or path.name.replace(".", "").isdigit()):
            out[str(path.relative_to(data_dir))] = path.read_bytes()
    return out


def host_veths(ns: Netns) -> list[str]:
    return [l["ifname"] for l in ns.ip_json("-d", "link", "show")
            if l.get("linkinfo", {}).get("info_kind") == "veth" and l["ifname"].startswith("veth")]


def nat_rules(ns: Netns) -> list[str]:
    """Masquerade state the plugins own: CNI- chains and the nft table's rules."""
    text = ns.run("sh", "-c", "iptables-save -t nat; ip6tables-save -t nat; "
                              "nft list table inet cni_plugins_masquerade 2>/dev/null", check=False).stdout
    return [l for l in text.splitlines() if "CNI-" in l or "masquerade comment" in l]


def no_traceback(outcome) -> None:
    assert "Traceback" not in outcome.err and "Traceback" not in outcome.out, outcome.err
    if outcome.status != 0:
        data = json.loads(outcome.out)
        assert set(data) >= {"cniVersion", "code", "msg"}, data


def network(kind: str, name: str, subnet: str, data_dir: Path, *, bridge: str, version: str = "1.0.0",
            masq: bool = True) -> dict:
    """A bridge, ptp or macvlan network (master: `uplink()`) over host-local, masquerading where it can."""
    conf = {"cniVersion": version, "name": name, "type": kind,
            "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(data_dir)}}
    if kind == "bridge":
        conf.update(bridge=bridge, isGateway=True, ipMasq=masq)
    elif kind == "ptp":
        conf.update(ipMasq=masq)
    elif kind == "macvlan":
        conf.update(master="uplink0")
    return conf


def uplink(host: Netns, name: str = "uplink0") -> str:
    """A master for macvlan in the host netns: one end of a veth pair, both ends up."""
    host.run("ip", "link", "add", name, "type", "veth", "peer", "name", name + "p")
    host.run("ip", "link", "set", name, "up")
    host.run("ip", "link", "set", name + "p", "up")
    return name


def wait_settled(ns: Netns, timeout: float = 10) -> None:
    """Until IPv6 duplicate address detection is over: link-local addresses and their routes stop changing."""
    import time

    end = time.monotonic() + timeout
    while ns.run("ip", "-6", "addr", "show", "tentative").stdout.strip() and time.monotonic() < end:
        time.sleep(0.1)
    time.sleep(0.2)


_PING = r"""
import os, socket, struct, sys, time
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF); s += s >> 16
    return ~s & 0xFFFF
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
sock.settimeout(0.5)
ident = os.getpid() & 0xFFFF
for seq in range(6):
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"pycni-ping"
    pkt = hdr[:2] + struct.pack("!H", csum(hdr)) + hdr[4:]
    sock.sendto(pkt, (sys.argv[1], 0))
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        try:
            data, src = sock.recvfrom(1500)
        except socket.timeout:
            break
        ihl = (data[0] & 15) * 4
        if src[0] == sys.argv[1] and data[ihl] == 0 and struct.unpack("!H", data[ihl + 4:ihl + 6])[0] == ident:
            sys.exit(0)
sys.exit(1)
"""


def pings(ns: Netns, address: str) -> bool:
    """One ICMP echo answered (there is no ping binary on every test host): raw socket in `ns`."""
    import sys

    return ns.run(sys.executable, "-c", _PING, address, check=False).returncode == 0


def env_without_frozen_traces() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("_PYI")}


def run_quiet(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


# ---- a bridge + portmap + bandwidth chain through our runtime library (cni.runtime) -------------

# Runs in the node's netns (`ip netns exec`): the runtime execs the chain for each op of the
# JSON on stdin, all ops at once in threads, and prints one outcome per op.
_CHAIN_DRIVER = r"""
import json, sys
from concurrent.futures import ThreadPoolExecutor
from cni.errors import CNIError
from cni.runtime.conf import list_from_bytes
from cni.runtime.network import Runtime, RuntimeConf
job = json.load(sys.stdin)
net = list_from_bytes(json.dumps(job["conflist"]).encode())
runtime = Runtime([job["bin"]], cache_dir=job["cache"], environ=job["environ"])
def one(op):
    rt = RuntimeConf(container_id=op["id"], netns=op["netns"], ifname="eth0", capability_args=op["caps"])
    try:
        if op["command"] == "ADD":
            return {"ok": True, "result": runtime.add(net, rt).to_dict(net.cni_version)}
        runtime.delete(net, rt)
        return {"ok": True}
    except CNIError as err:
        return {"ok": False, "error": str(err), "code": err.code}
with ThreadPoolExecutor(max(1, len(job["ops"]))) as pool:
    print(json.dumps(list(pool.map(one, job["ops"]))))
"""


def chain_conflist(data_dir: Path, *, bridge: str = "chbr0", subnet: str = "10.91.0.0/24") -> dict:
    """bridge (masquerading) + portmap + bandwidth, capabilities on, as a Kubernetes node chains them."""
    return {"cniVersion": "1.0.0", "name": "chainnet", "plugins": [
        {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": True,
         "ipam": {"type": "host-local", "subnet": subnet, "dataDir": str(data_dir)}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "bandwidth", "capabilities": {"bandwidth": True}},
    ]}


def chain_caps(i: int) -> dict:
    """Container i's capability args: its own host port, and both directions shaped."""
    return {"portMappings": [{"hostPort": 20000 + i, "containerPort": 80, "protocol": "tcp"}],
            "bandwidth": {"ingressRate": 1_000_000, "ingressBurst": 80_000,
                          "egressRate": 2_000_000, "egressBurst": 80_000}}


def run_chain(host: Netns, bin_dir: Path, cache: Path, conflist: dict, ops: list[dict],
              env: dict | None = None, timeout: float = 300) -> list[dict]:
    """Each op: {"command": "ADD"|"DEL", "id", "netns", "caps"}; all run at once, in `host`."""
    from conftest import ROOT

    environ = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **(env or {})}
    job = {"conflist": conflist, "bin": str(bin_dir), "cache": str(cache), "environ": environ, "ops": ops}
    out = host.run("env", f"PYTHONPATH={ROOT}", sys_executable(), "-c", _CHAIN_DRIVER,
                   input=json.dumps(job), timeout=timeout)
    assert "Traceback" not in out.stderr, out.stderr
    return json.loads(out.stdout)


def sys_executable() -> str:
    import sys

    return sys.executable


def shaping(ns: Netns) -> dict:
    """ifb links and the qdiscs (but noqueue) of the host netns: {"ifbs": [...], "qdiscs": [(dev, kind)]}."""
    ifbs = [l["ifname"] for l in ns.ip_json("-d", "link", "show")
            if l.get("linkinfo", {}).get("info_kind") == "ifb"]
    qdiscs = json.loads(ns.run("tc", "-j", "qdisc", "show").stdout or "[]")
    return {"ifbs": ifbs, "qdiscs": [(q["dev"], q["kind"]) for q in qdiscs if q["kind"] != "noqueue"]}


def netfilter_text(ns: Netns) -> str:
    """Every iptables/ip6tables table and the nft ruleset of `ns`, counters dropped."""
    text = ns.run("sh", "-c", "iptables-save; ip6tables-save; nft list ruleset", check=False).stdout
    return "\n".join(_COUNTERS.sub("", l) for l in text.splitlines() if not l.startswith("#"))


def per_container_rules(ns: Netns, addresses: list[str]) -> list[str]:
    """Rules that belong to one container: its DNAT chain, its masquerade chain, any rule naming its address."""
    bare = {a.split("/")[0] for a in addresses}
    found = []
    for line in netfilter_text(ns).splitlines():
        if "CNI-DN-" in line or re.search(r"CNI-[0-9a-f]{24}", line) \
                or any(re.search(rf"(?<![\d.]){re.escape(ip)}(?![\d])", line) for ip in bare):
            found.append(line)
    return found
