#!/usr/bin/env python3
"""Growth: does a call get slower as a node fills up?

  bench/growth.py [--plugins bin|source] [--levels 1,100,500] [--leases 0,1000,10000] [--repeat 7]

1. bridge ADD (+ DEL) latency with 1, 100 and 500 containers already on one
   bridge (host-local, /16), in a test netns playing the host.
2. host-local ADD latency in a /16 with 0, 1 000 and 10 000 addresses taken,
   the taken ones contiguous from the start of the range and no
   last_reserved_ip (the walk passes every taken address: the worst case),
   as an exec and as the in-process allocate() alone.

Prints medians and the cost per existing lease. Cost must grow at most
linearly with existing leases (host-local reads one directory listing and
every lease file per ADD). Root only; everything is created in namespaces and
temp dirs that are removed at the end. Not run by the test suite.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def netns_add(prefix: str) -> str:
    name = f"{prefix}-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    return name


def netns_del(name: str) -> None:
    subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def plugin_dir(kind: str, tmp: str) -> str:
    if kind == "bin":
        return os.path.join(ROOT, "bin")
    d = os.path.join(tmp, "srcbin")
    os.makedirs(d, exist_ok=True)
    for name in ("bridge", "host-local"):
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write(f"#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m plugins {name} \"$@\"\n")
        os.chmod(path, 0o755)
    return d


def call(bindir: str, name: str, command: str, conf: dict, cid: str, netns: str, host: str | None) -> float:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "CNI_COMMAND": command,
           "CNI_CONTAINERID": cid, "CNI_NETNS": netns, "CNI_IFNAME": "eth0", "CNI_PATH": bindir}
    cmd = [os.path.join(bindir, name)]
    if host:
        cmd = ["ip", "netns", "exec", host] + cmd
    started = time.perf_counter()
    p = subprocess.run(cmd, input=json.dumps(conf).encode(), env=env, capture_output=True)
    took = time.perf_counter() - started
    if p.returncode != 0:
        raise SystemExit(f"{name} {command} {cid} failed: {p.stdout.decode()} {p.stderr.decode()}")
    return took


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def bridge_growth(bindir: str, tmp: str, levels: list[int], repeat: int) -> None:
    print(f"bridge ADD/DEL with N containers already on the bridge ({repeat} samples each, median)")
    print(f"{'N':>6} {'ADD ms':>8} {'DEL ms':>8}")
    data_dir = os.path.join(tmp, "bridge-networks")
    conf = {"cniVersion": "1.0.0", "name": "growth", "type": "bridge", "bridge": "grow0", "isGateway": True,
            "ipam": {"type": "host-local", "subnet": "10.200.0.0/16", "dataDir": data_dir}}
    host = netns_add("pycni-bench-host")
    made: list[str] = []
    try:
        subprocess.run(["ip", "netns", "exec", host, "ip", "link", "set", "lo", "up"], check=True)
        for level in levels:
            while len(made) < level:
                ns = netns_add("pycni-bench")
                made.append(ns)
                call(bindir, "bridge", "ADD", conf, f"fill{len(made)}", f"/run/netns/{ns}", host)
            adds, dels = [], []
            probe = netns_add("pycni-bench-probe")
            try:
                for i in range(repeat):
                    adds.append(call(bindir, "bridge", "ADD", conf, f"probe{i}", f"/run/netns/{probe}", host))
                    dels.append(call(bindir, "bridge", "DEL", conf, f"probe{i}", f"/run/netns/{probe}", host))
            finally:
                netns_del(probe)
            print(f"{level:>6} {median_ms(adds):>8.1f} {median_ms(dels):>8.1f}", flush=True)
    finally:
        for ns in made:
            netns_del(ns)
        netns_del(host)


def fill_store(path: str, taken: int) -> None:
    os.makedirs(path, exist_ok=True)
    base = int(ipaddress.IPv4Address("10.201.0.2"))
    for n in range(taken):
        with open(os.path.join(path, str(ipaddress.IPv4Address(base + n))), "wb") as f:
            f.write(f"taken{n}\r\neth0".encode())


def host_local_growth(bindir: str, tmp: str, levels: list[int], repeat: int) -> None:
    from cni.hostlocal import config
    from cni.hostlocal.allocator import allocate
    from cni.hostlocal.store import Store

    print(f"\nhost-local ADD in a /16 with N addresses taken, walk from the start ({repeat} samples, median)")
    print(f"{'N':>6} {'exec ms':>8} {'alloc ms':>9} {'us/lease':>9}")
    first = None
    for taken in levels:
        data_dir = os.path.join(tmp, f"hl-{taken}")
        fill_store(os.path.join(data_dir, "growth16"), taken)
        conf = {"cniVersion": "1.0.0", "name": "growth16", "type": "host-local",
                "ipam": {"type": "host-local", "subnet": "10.201.0.0/16", "dataDir": data_dir}}
        execs, allocs = [], []
        for i in range(repeat):
            execs.append(call(bindir, "host-local", "ADD", conf, f"p{i}", "/run/netns/unused", None))
            call(bindir, "host-local", "DEL", conf, f"p{i}", "/run/netns/unused", None)
            os.unlink(os.path.join(data_dir, "growth16", "last_reserved_ip.0"))  # keep the worst case
            parsed = config.parse(conf, "1.0.0")
            started = time.perf_counter()
            with Store(data_dir, "growth16") as store:
                got = allocate(parsed, store, f"q{i}", "eth0")
            allocs.append(time.perf_counter() - started)
            with Store(data_dir, "growth16") as store:
                store.release(got[0].address.ip)
                store._unlink("last_reserved_ip.0")
        per_lease = (median_ms(allocs) - (first or 0)) * 1000 / taken if taken and first is not None else 0.0
        if first is None:
            first = median_ms(allocs)
        print(f"{taken:>6} {median_ms(execs):>8.1f} {median_ms(allocs):>9.2f} {per_lease:>9.2f}", flush=True)
        shutil.rmtree(data_dir)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plugins", choices=("bin", "source"), default="bin")
    p.add_argument("--levels", default="1,100,500")
    p.add_argument("--leases", default="0,1000,10000")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--skip-bridge", action="store_true")
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("growth.py needs root (network namespaces)")
    tmp = tempfile.mkdtemp(prefix="pycni-growth-")
    try:
        bindir = plugin_dir(args.plugins, tmp)
        print(f"plugins: {bindir}")
        if not args.skip_bridge:
            bridge_growth(bindir, tmp, [int(x) for x in args.levels.split(",")], args.repeat)
        host_local_growth(bindir, tmp, [int(x) for x in args.leases.split(",")], args.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
