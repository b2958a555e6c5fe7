"""Helpers (no tests): a LAN with a real DHCP server (dnsmasq) and our dhcp daemon, for tests/test_dhcp.py.

    [lan netns] lan0 10.77.0.1/24, dnsmasq  <-veth->  uplink0 [host netns]
                                                         |  macvlan per container
                                              [container netns] eth0

Everything is started by the test and stopped by PID; the netns fixtures
remove the links.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from conftest import ROOT, Netns

LAN_PREFIX = "10.77.0"
GATEWAY = f"{LAN_PREFIX}.1"


def wait_for(predicate: Callable[[], object], timeout: float, what: str, step: float = 0.1):
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def stop_pid(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode


class Dnsmasq:
    def __init__(self, lan: Netns, tmp: Path, extra: tuple[str, ...] = (), lease: str = "2m", ping: bool = False) -> None:
        if shutil.which("dnsmasq") is None:
            raise RuntimeError("dnsmasq is not installed (apt-get install -y dnsmasq-base)")
        self.log = tmp / f"dnsmasq-{secrets.token_hex(3)}.log"
        self.leasefile = tmp / f"dnsmasq-{secrets.token_hex(3)}.leases"
        cmd = ["ip", "netns", "exec", lan.name, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
               "--interface=lan0", "--bind-interfaces", "--dhcp-authoritative", "--log-dhcp",
               f"--log-facility={self.log}", f"--dhcp-leasefile={self.leasefile}",
               f"--dhcp-range={LAN_PREFIX}.50,{LAN_PREFIX}.150,255.255.255.0,{lease}",
               f"--dhcp-option=option:router,{GATEWAY}", *extra]
        if not ping:  # dnsmasq pings an address ~3 s before offering it
            cmd.append("--no-ping")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: self.log.exists() and "DHCP, IP range" in self.text() or self.proc.poll() is not None,
                 10, "dnsmasq to start")
        if self.proc.poll() is not None:
            raise RuntimeError(f"dnsmasq failed: {self.proc.stderr.read().decode()}")

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def count(self, needle: str) -> int:
        return self.text().count(needle)

    def stop(self) -> None:
        stop_pid(self.proc)


class Daemon:
    """Our daemon, from source (or the frozen bin/dhcp when `executable` is given)."""

    def __init__(self, host: Netns, tmp: Path, *flags: str, executable: str | None = None,
                 socket_path: Path | None = None, state: Path | None = None) -> None:
        self.socket = socket_path or tmp / "dhcp.sock"
        self.state = state or tmp / "state"
        self.pidfile = tmp / "dhcp.pid"
        self.log = tmp / f"daemon-{secrets.token_hex(3)}.log"
        prog = [executable] if executable else [sys.executable, "-m", "plugins", "dhcp"]
        cmd = ["ip", "netns", "exec", host.name, *prog, "daemon", "-socketpath", str(self.socket),
               "-statedir", str(self.state), "-pidfile", str(self.pidfile), "-loglevel", "debug", *flags]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.logf = open(self.log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        wait_for(lambda: self.answers() or self.proc.poll() is not None, 15, "the dhcp daemon to listen")
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.text()}")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def answers(self) -> bool:
        try:
            self.request("status")
            return True
        except OSError:
            return False

    def request(self, op: str, params: dict | None = None, timeout: float = 30) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.socket))
            s.sendall(json.dumps({"pycni-dhcp": 1, "op": op, "params": params or {}}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return json.loads(data)

    def leases(self) -> list[dict]:
        return self.request("leases")["result"]["leases"]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        code = stop_pid(self.proc, sig)
        self.logf.close()
        return code


class Lan:
    """The LAN netns with dnsmasq's interface, and the host netns with the uplink."""

    def __init__(self, make_netns, host: Netns) -> None:
        self.make_netns = make_netns
        self.host = host
        self.lan = make_netns("pycni-lan")
        host.run("ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "lan0")
        host.run("ip", "link", "set", "lan0", "netns", self.lan.name)
        self.lan.run("ip", "addr", "add", f"{GATEWAY}/24", "dev", "lan0")
        self.lan.run("ip", "link", "set", "lan0", "up")
        host.run("ip", "link", "set", "uplink0", "up")

    def container(self, ifname: str = "eth0") -> Netns:
        """A container netns with a macvlan of the uplink named `ifname` (down, no address)."""
        ns = self.make_netns("pycni-ctr")
        tmp = f"mv{secrets.token_hex(4)}"
        self.host.run("ip", "link", "add", "link", "uplink0", "name", tmp, "type", "macvlan", "mode", "bridge")
        self.host.run("ip", "link", "set", tmp, "netns", ns.name)
        ns.run("ip", "link", "set", tmp, "name", ifname)
        return ns


def conf(sock: Path, version: str = "1.1.0", name: str = "lan", **ipam) -> dict:
    return {"cniVersion": version, "name": name, "type": "dhcp",
            "ipam": dict({"type": "dhcp", "daemonSocketPath": str(sock)}, **ipam)}
