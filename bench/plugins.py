"""Per-exec cost of our frozen plugins against Debian's Go plugins, side by side.

    bench/plugins.py [-n ROUNDS] [--case NAME]... [--ours DIR] [--go DIR] [--strict]

Each round runs every case's commands (VERSION, ADD, CHECK, DEL) once with our bin/ and
once with Go's /usr/lib/cni, alternating which goes first, with the same inputs:
a fresh container ID, a fresh host-local dataDir and, for cases that need one, a
fresh host netns (where the plugin runs) plus container netns. Prints per case and
command the median wall time, the ratio ours/Go and the median peak RSS of one exec.
CHECK gets ADD's result as prevResult, as a runtime passes it.

Budgets (issue 17; BUDGETS below, medians of the same run): ADD <= 2x Go, DEL <= 1.5x,
CHECK <= 2x, VERSION <= 4x, peak RSS <= 40 MiB per exec. Plugins called alone (host-local,
static, loopback: Go's are 2-5 ms processes that do little but start) get ALONE_BUDGET (4x)
for every command instead, since their ratio measures interpreter start-up (their rows say
"alone"). Each row prints PASS or OVER per budget that applies to it, and a summary line
counts them; --strict exits 1 when any is OVER. A case without a Go counterpart (tap: Debian's
1.1.1 has none) prints our times alone, with no ratio.

Peak RSS comes from GNU time (`/usr/bin/time -f %M`) around each exec: a child's
maxrss also counts the memory of the process that forked it, so the measuring
parent must be a small C program, not this Python. Times and RSS both include the
launcher (time, and nsenter for netns cases); the `launcher` row shows that floor.

Cases are data (CASES below): plugin name, config, whether it needs a netns, and
host-side setup (or a setup of both netns: chained cases get what bridge would have
left). A case whose plugin is not in either directory is skipped with a message.
Nothing in the test suite asserts these times: machine load moves them.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
TIME = "/usr/bin/time"
COMMANDS = ("VERSION", "ADD", "CHECK", "DEL")
# command -> highest allowed ratio ours/Go of the medians; RSS_BUDGET_MIB for every exec.
BUDGETS = {"ADD": 2.0, "DEL": 1.5, "CHECK": 2.0, "VERSION": 4.0}
ALONE_BUDGET = 4.0  # host-local, static and loopback called alone: every command
RSS_BUDGET_MIB = 40.0


def host_local_ipam(data_dir: str, subnet: str = "10.77.0.0/16") -> dict:
    return {"type": "host-local", "dataDir": data_dir, "ranges": [[{"subnet": subnet}]],
            "routes": [{"dst": "0.0.0.0/0"}]}


@dataclass
class Case:
    name: str
    plugin: str
    conf: Callable[[str], dict]  # data_dir -> network config
    netns: bool = False
    host_setup: list[list[str]] = field(default_factory=list)  # commands run inside the host netns
    delegates: tuple[str, ...] = ("host-local",)  # plugins it execs (must be in the same directory)
    alone: bool = False  # called alone, not by a main plugin: ALONE_BUDGET for every command
    go: bool = True  # Go's plugin directory has a counterpart to compare with
    setup: Callable[["Netns", "Netns"], None] | None = None  # (host, container): what the main plugin left

    def config(self, data_dir: str) -> bytes:
        return json.dumps(self.conf(data_dir)).encode()


CASES = [
    Case("host-local", "host-local",
         lambda d: {"cniVersion": "1.0.0", "name": "bench", "type": "host-local", "ipam": host_local_ipam(d)},
         delegates=(), alone=True),
    Case("bridge", "bridge",
         lambda d: {"cniVersion": "1.0.0", "name": "bench", "type": "bridge", "bridge": "cni-bench0",
                    "isGateway": True, "ipMasq": False, "ipam": host_local_ipam(d)},
         netns=True),
    Case("bridge-masq", "bridge",
         lambda d: {"cniVersion": "1.0.0", "name": "bench", "type": "bridge", "bridge": "cni-bench0",
                    "isGateway": True, "ipMasq": True, "ipam": host_local_ipam(d)},
         netns=True),
    Case("ptp", "ptp",
         lambda d: {"cniVersion": "1.0.0", "name": "bench", "type": "ptp", "ipMasq": False,
                    "ipam": host_local_ipam(d)},
         netns=True),
    Case("macvlan", "macvlan",
         lambda d: {"cniVersion": "1.0.0", "name": "bench", "type": "macvlan", "master": "bench-m0",
                    "mode": "bridge", "ipam": host_local_ipam(d)},
         netns=True,
         host_setup=[["ip", "link", "add", "bench-m0", "type", "veth", "peer", "name", "bench-m1"],
                     ["ip", "link", "set", "bench-m0", "up"]]),
    # Go's loopback, like its host-local, does little but start: a start-up measure.
    Case("loopback", "loopback", lambda d: {"cniVersion": "1.0.0", "name": "bench", "type": "loopback"},
         netns=True, delegates=(), alone=True),
    # The chained call alone, as a runtime makes it after bridge: dual stack, two mappings.
    # (Go's CHECK fails here, looking for each family's rules in both tables: no CHECK ratio.)
    Case("portmap", "portmap",
         lambda d: {"cniVersion": "1.0.0", "name": "bench", "type": "portmap",
                    "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                                                       {"hostPort": 8053, "containerPort": 53, "protocol": "udp"}]},
                    "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/run/netns/c"}],
                                   "ips": [{"address": "10.77.0.2/16", "interface": 0},
                                           {"address": "fd77::2/64", "interface": 0}]}},
         netns=True, delegates=()),
    Case("host-device", "host-device",
         lambda d: {"cniVersion": "1.0.0", "name": "bench", "type": "host-device", "device": "bench-hd0",
                    "ipam": host_local_ipam(d)},
         netns=True,
         host_setup=[["ip", "link", "add", "bench-hd0", "type", "veth", "peer", "name", "bench-hd1"],
                     ["ip", "link", "set", "bench-hd1", "up"]]),
]


# The prevResult the chained cases below share: what bridge answers for one dual-stack container.
CHAINED_PREV = {"cniVersion": "1.0.0",
                "interfaces": [{"name": "bench-h0"}, {"name": "eth0", "sandbox": "/run/netns/c"}],
                "ips": [{"address": "10.77.0.2/16", "gateway": "10.77.0.1", "interface": 1},
                        {"address": "fd77::2/64", "gateway": "fd77::1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.77.0.1"}]}


def container_side(host: "Netns", container: "Netns") -> None:
    """What bridge or ptp leaves: a veth bench-h0 (host) / eth0 (container) with prevResult's addresses."""
    host.run(["ip", "link", "add", "bench-h0", "type", "veth", "peer", "name", "eth0", "netns", container.name])
    host.run(["ip", "link", "set", "bench-h0", "up"])
    container.run(["ip", "link", "set", "eth0", "up"])
    container.run(["ip", "addr", "add", "10.77.0.2/16", "dev", "eth0"])
    container.run(["ip", "addr", "add", "fd77::2/64", "dev", "eth0", "nodad"])
    container.run(["ip", "route", "add", "default", "via", "10.77.0.1", "dev", "eth0"])


def chained(plugin: str, **keys: object) -> Callable[[str], dict]:
    return lambda d: {"cniVersion": "1.0.0", "name": "bench", "type": plugin, **keys, "prevResult": CHAINED_PREV}


CASES += [
    # Chained calls alone, each with CHAINED_PREV and a netns as bridge left it.
    Case("firewall", "firewall", chained("firewall", backend="iptables"), netns=True, delegates=(),
         setup=container_side),
    Case("bandwidth", "bandwidth",
         chained("bandwidth", ingressRate=1_000_000, ingressBurst=80_000, egressRate=2_000_000, egressBurst=80_000),
         netns=True, delegates=(), setup=container_side),
    Case("sbr", "sbr", chained("sbr"), netns=True, delegates=(), setup=container_side),
    # sysctl not IFNAME: Go's CHECK does not expand it (reference-quirks.md).
    Case("tuning", "tuning",
         lambda d: dict(chained("tuning", mac="c2:00:00:00:be:0c", mtu=1400, promisc=True,
                                sysctl={"net.ipv4.conf.all.arp_filter": "1"})(d), dataDir=d + "/tuning"),
         netns=True, delegates=(), setup=container_side),
    # No Go counterpart (Debian's 1.1.1 has no tap): our times alone, beside the main plugins'.
    Case("tap", "tap",
         lambda d: {"cniVersion": "1.0.0", "name": "bench", "type": "tap", "ipam": host_local_ipam(d)},
         netns=True, go=False),
    # Called alone, like host-local: its ratios measure start-up.
    Case("static", "static",
         lambda d: {"cniVersion": "1.0.0", "name": "bench", "type": "static",
                    "ipam": {"type": "static", "addresses": [{"address": "10.77.0.5/16", "gateway": "10.77.0.1"}],
                             "routes": [{"dst": "0.0.0.0/0"}]}},
         delegates=(), alone=True),
]


class Netns:
    def __init__(self, prefix: str) -> None:
        self.name = f"{prefix}-{secrets.token_hex(4)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.path = f"/run/netns/{self.name}"
        self.run(["ip", "link", "set", "lo", "up"])

    def run(self, cmd: list[str]) -> None:
        subprocess.run(["ip", "netns", "exec", self.name, *cmd], check=True, capture_output=True)

    def remove(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], check=False, capture_output=True)


@dataclass
class Sample:
    seconds: float
    rss_kb: int


@dataclass
class Impl:
    label: str
    directory: Path
    samples: dict = field(default_factory=dict)  # (case, command) -> list[Sample]
    failures: dict = field(default_factory=dict)  # (case, command) -> first error text

    def has(self, plugin: str) -> bool:
        return os.access(self.directory / plugin, os.X_OK)


def exec_once(impl: Impl, case: Case, command: str, stdin: bytes, env: dict[str, str],
              host: Netns | None, scratch: Path) -> bytes | None:
    """One timed exec; its stdout, or None when it failed (recorded in impl.failures)."""
    rss_file = scratch / "rss"
    argv = [TIME, "-q", "-o", str(rss_file), "-f", "%M"]
    if host is not None:
        argv += ["nsenter", f"--net={host.path}", "--"]
    argv.append(str(impl.directory / case.plugin))
    start = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, env=env, capture_output=True)
    elapsed = time.perf_counter() - start
    key = (case.name, command)
    if proc.returncode != 0:
        impl.failures.setdefault(key, (proc.stdout + proc.stderr).decode(errors="replace").strip()[:300])
        return None
    rss = int(rss_file.read_text().split()[-1])
    impl.samples.setdefault(key, []).append(Sample(elapsed, rss))
    return proc.stdout


def run_round(impl: Impl, case: Case, round_no: int, scratch: Path) -> None:
    data_dir = scratch / f"data-{impl.label}-{round_no}"
    data_dir.mkdir()
    stdin = case.config(str(data_dir))
    host = container = None
    try:
        if case.netns:
            host, container = Netns("bench-host"), Netns("bench-ctr")
            for cmd in case.host_setup:
                host.run(cmd)
            if case.setup is not None:
                case.setup(host, container)
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "CNI_CONTAINERID": f"bench-{round_no}-{secrets.token_hex(6)}",
               "CNI_NETNS": container.path if container else "/run/netns/bench-unused",
               "CNI_IFNAME": "eth0", "CNI_PATH": str(impl.directory)}
        added = None
        for command in COMMANDS:
            conf = stdin
            if command == "CHECK":
                if added is None:
                    continue  # ADD failed: nothing to check
                conf = json.dumps(dict(case.conf(str(data_dir)), prevResult=json.loads(added))).encode()
            out = exec_once(impl, case, command, conf, dict(env, CNI_COMMAND=command), host, scratch)
            if command == "ADD":
                added = out
    finally:
        for ns in (container, host):
            if ns is not None:
                ns.remove()
        shutil.rmtree(data_dir, ignore_errors=True)


def launcher_floor(impls: list[Impl], rounds: int, scratch: Path) -> Sample:
    """The launcher alone around /bin/true (what every row below includes)."""
    probe = Impl("floor", Path("/bin"))
    case = Case("launcher", "true", lambda d: {}, delegates=())
    for _ in range(rounds):
        exec_once(probe, case, "VERSION", b"", {"PATH": "/usr/bin:/bin"}, None, scratch)
    values = probe.samples.get(("launcher", "VERSION"), [])
    return Sample(statistics.median(s.seconds for s in values), int(statistics.median(s.rss_kb for s in values)))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "OVER"


def report(cases: list[Case], ours: Impl, go: Impl, floor: Sample, rounds: int) -> int:
    """Print the table; return how many budgets are OVER."""
    print(f"\n{rounds} rounds, alternating; medians per exec (wall ms, peak RSS MiB)")
    print(f"budgets: time ratio ours/Go {', '.join(f'{c} <= {b:g}x' for c, b in BUDGETS.items())}; "
          f"peak RSS <= {RSS_BUDGET_MIB:g} MiB")
    print(f"{'case':<12} {'command':<8} {'ours ms':>8} {'go ms':>7} {'ratio':>6} {'time':>16} "
          f"{'ours MiB':>9} {'go MiB':>7} {'RSS':>5}")
    print(f"{'launcher':<12} {'-':<8} {floor.seconds * 1e3:8.1f} {floor.seconds * 1e3:7.1f} {'':>6} {'':>12} "
          f"{floor.rss_kb / 1024:9.1f} {floor.rss_kb / 1024:7.1f}")
    counts = {"PASS": 0, "OVER": 0}
    for case in cases:
        for command in COMMANDS:
            a, b = ours.samples.get((case.name, command)), go.samples.get((case.name, command))
            if not a or (case.go and not b):
                continue
            ta = statistics.median(s.seconds for s in a)
            ra = statistics.median(s.rss_kb for s in a) / 1024
            rss = verdict(ra <= RSS_BUDGET_MIB)
            counts[rss] += 1
            if not case.go:
                print(f"{case.name:<12} {command:<8} {ta * 1e3:8.1f} {'-':>7} {'-':>6} {'no Go plugin':>16} "
                      f"{ra:9.1f} {'-':>7} {rss:>5}")
                continue
            tb = statistics.median(s.seconds for s in b)
            rb = statistics.median(s.rss_kb for s in b) / 1024
            budget = ALONE_BUDGET if case.alone else BUDGETS.get(command)
            time_cell = "-"
            if budget is not None:
                v = verdict(ta / tb <= budget)
                counts[v] += 1
                time_cell = f"{v} <={budget:g}x" + (" alone" if case.alone else "")
            print(f"{case.name:<12} {command:<8} {ta * 1e3:8.1f} {tb * 1e3:7.1f} {ta / tb:6.1f} {time_cell:>16} "
                  f"{ra:9.1f} {rb:7.1f} {rss:>5}")
    print(f"budgets: {counts['PASS']} PASS, {counts['OVER']} OVER")
    for impl in (ours, go):
        for (case, command), text in impl.failures.items():
            print(f"FAILED {impl.label} {case} {command}: {text}")
    return counts["OVER"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--rounds", type=int, default=30)
    parser.add_argument("--case", action="append", help="run only these cases (default: all)")
    parser.add_argument("--ours", type=Path, default=ROOT / "bin")
    parser.add_argument("--go", type=Path, default=Path("/usr/lib/cni"))
    parser.add_argument("--strict", action="store_true", help="exit 1 when a budget is OVER")
    opts = parser.parse_args()
    if not os.access(TIME, os.X_OK):
        sys.exit(f"{TIME} (GNU time) is needed for per-exec peak RSS: apt-get install time")
    ours, go = Impl("ours", opts.ours), Impl("go", opts.go)
    cases = []
    for case in CASES:
        if opts.case and case.name not in opts.case:
            continue
        absent = [f"{name} in {impl.directory}" for impl in ((ours, go) if case.go else (ours,))
                  for name in (case.plugin, *case.delegates) if not impl.has(name)]
        if absent:
            print(f"skipping {case.name}: no {', no '.join(absent)}")
            continue
        if case.netns and os.geteuid() != 0:
            print(f"skipping {case.name}: needs root for network namespaces")
            continue
        cases.append(case)
    if not cases:
        print("nothing to run")
        return 0
    with tempfile.TemporaryDirectory(prefix="pycni-bench-") as tmp:
        scratch = Path(tmp)
        floor = launcher_floor([ours, go], max(10, opts.rounds), scratch)
        for round_no in range(opts.rounds):
            order = (ours, go) if round_no % 2 == 0 else (go, ours)
            for case in cases:
                for impl in order:
                    if impl is go and not case.go:
                        continue
                    run_round(impl, case, round_no, scratch)
            print(f"\rround {round_no + 1}/{opts.rounds}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    over = report(cases, ours, go, floor, opts.rounds)
    return 1 if ours.failures or go.failures or (opts.strict and over) else 0


if __name__ == "__main__":
    sys.exit(main())
