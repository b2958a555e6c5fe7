"""`dhcp daemon`: holds DHCP leases for containers and answers the plugin.

Flags follow the Go daemon (single dash; double dash works too). The socket
comes from systemd (LISTEN_FDS) or is bound here: a stale socket is replaced,
a live one is left to its owner. SIGTERM/SIGINT stop everything without
releasing: leases stay on disk and the next daemon resumes them.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import stat
import sys
import threading
import time
from typing import Optional

from .. import netns
from ..errors import INTERNAL, INVALID_ENV, INVALID_NETWORK_CONFIG, UNKNOWN_CONTAINER, CNIError
from . import DEFAULT_SOCKET, DEFAULT_STATE_DIR, wire
from .client import Timing
from .lease import Lease, Maintainer, Store, client_identifier

log = logging.getLogger("dhcp")

SD_LISTEN_FDS_START = 3
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
NETNS_PATTERNS = (re.compile(r"^/proc/[0-9]+/ns/[^/]+$"), re.compile(r"^/(var/)?run/netns/[^/]+$"))


def duration(text: str) -> float:
    """A Go duration ("10s", "1m30s", "500ms") or plain seconds."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pos, value = 0, 0.0
        for m in _DURATION.finditer(text):
            if m.start() != pos:
                break
            value += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(text) or not text:
            raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 10s, 1m30s)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"negative duration {text!r}")
    return value


def boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "t", "true", "yes"):
        return True
    if lowered in ("0", "f", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


def parse_flags(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="dhcp daemon", allow_abbrev=False,
                                description="Hold DHCP leases for the dhcp CNI plugin.")

    def flag(name: str, **kw) -> None:
        p.add_argument(f"-{name}", f"--{name}", dest=name, **kw)

    flag("socketpath", default=DEFAULT_SOCKET, help=f"unix socket to listen on (default {DEFAULT_SOCKET})")
    flag("pidfile", default="", help="write the daemon's PID here")
    flag("hostprefix", default="", help="prefix of the host's root (daemon in a container): "
                                        "applied to the socket and netns paths")
    flag("statedir", default=DEFAULT_STATE_DIR, help=f"lease state directory (default {DEFAULT_STATE_DIR})")
    flag("broadcast", nargs="?", const=True, default=False, type=boolean,
         help="ask DHCP servers to broadcast their answers")
    flag("timeout", type=duration, default=10.0, help="longest wait for an answer to one DHCP message (10s)")
    flag("resendmax", type=duration, default=62.0, help="cap of the backoff between resends (62s)")
    flag("resendtimeout", type=duration, default=62.0,
         help="total time for one acquire, renew or rebind (62s)")
    flag("loglevel", default="info", choices=("debug", "info", "warning", "error"))
    return p.parse_args(argv)


def prefixed(prefix: str, path: str) -> str:
    return os.path.join(prefix, path.lstrip("/")) if prefix else path


# ---- the listening socket -----------------------------------------------------


def activated_socket() -> Optional[socket.socket]:
    """The socket systemd passed (LISTEN_FDS), if it is meant for us."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(key, None)
    if count < 1:
        return None
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)
    os.set_inheritable(sock.fileno(), False)
    for extra in range(SD_LISTEN_FDS_START + 1, SD_LISTEN_FDS_START + count):
        os.close(extra)
    return sock


class SocketBusy(Exception):
    pass


def bind_socket(path: str) -> socket.socket:
    """Bind `path` (mode 0600); replace a dead daemon's socket, never a live one's."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise SocketBusy(f"{path} exists and is not a socket; not touching it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2)
        try:
            probe.connect(path)
            raise SocketBusy(f"a daemon is already listening on {path}; not taking its socket")
        except (ConnectionRefusedError, FileNotFoundError):
            log.info("removing stale socket %s", path)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        except socket.timeout:
            raise SocketBusy(f"{path} accepts connections but is slow; not taking it") from None
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock


# ---- the daemon -----------------------------------------------------------------


class Daemon:
    def __init__(self, flags: argparse.Namespace) -> None:
        self.flags = flags
        self.timing = Timing(timeout=flags.timeout or 10.0, resend_max=flags.resendmax or 62.0,
                             resend_timeout=flags.resendtimeout or 62.0, broadcast=flags.broadcast)
        self.store = Store(flags.statedir)
        self.leases: dict[str, Lease] = {}
        self.lock = threading.Lock()
        self.key_locks: dict[str, threading.Lock] = {}
        self.stopping = threading.Event()

    # ---- requests --------------------------------------------------------------

    def handle(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30)
            line = b""
            while b"\n" not in line and len(line) < wire.MAX_LINE:
                data = conn.recv(65536)
                if not data:
                    break
                line += data
            line = line.split(b"\n", 1)[0]
            if line.split(b" ", 1)[0] in (b"CONNECT", b"GET", b"POST", b"PUT", b"HEAD"):
                # A Go dhcp plugin (net/rpc over HTTP): its error shows this status line.
                conn.sendall(b"HTTP/1.0 400 this is the pycni dhcp daemon; it speaks newline-delimited JSON, "
                             b"not Go net/rpc\r\n\r\n")
                return
            conn.settimeout(None)
            conn.sendall(self.answer(line))
        except OSError as exc:
            log.info("client connection: %s", exc)
        finally:
            conn.close()

    def answer(self, line: bytes) -> bytes:
        import json

        try:
            req = json.loads(line)
            if not isinstance(req, dict) or req.get(wire.MARK) is None:
                raise CNIError(INVALID_NETWORK_CONFIG, "not a pycni dhcp request")
            op = req.get("op")
            params = req.get("params") or {}
            if op not in wire.OPS or not isinstance(params, dict):
                raise CNIError(INVALID_NETWORK_CONFIG, f"unknown request {op!r}")
            return wire.ok(getattr(self, f"op_{op}")(params))
        except CNIError as err:
            return wire.failed(err)
        except ValueError:
            return wire.failed(CNIError(INVALID_NETWORK_CONFIG, "not a pycni dhcp request", "malformed JSON"))
        except Exception as exc:
            log.exception("request failed")
            return wire.failed(CNIError(INTERNAL, f"dhcp daemon: {exc}", type(exc).__name__))

    def _key_lock(self, key: str) -> threading.Lock:
        with self.lock:
            return self.key_locks.setdefault(key, threading.Lock())

    def _netns_path(self, given: str) -> str:
        """Where to open the runtime's netns path; only namespace directories are allowed."""
        path = os.path.normpath(given) if given else ""
        prefix = os.path.normpath(self.flags.hostprefix) if self.flags.hostprefix else ""
        if prefix and path.startswith(prefix + "/"):
            path = path[len(prefix):]
        if not any(p.match(path) for p in NETNS_PATTERNS):
            raise CNIError(INVALID_ENV, f"the dhcp daemon refuses netns path {given!r}",
                           "only /proc/<pid>/ns/*, /run/netns/* and /var/run/netns/* are entered")
        final = prefixed(prefix, path)
        # A netns file under /run/netns is a bind mount; a symlink there could lead anywhere.
        if not path.startswith("/proc/") and os.path.islink(final):
            raise CNIError(INVALID_ENV, f"the dhcp daemon refuses netns path {given!r}",
                           "a symlink under a netns directory is not a network namespace of a container")
        return final

    @staticmethod
    def _text(params: dict, key: str) -> str:
        value = params.get(key)
        if not isinstance(value, str) or not value:
            raise CNIError(INVALID_NETWORK_CONFIG, f"request lacks {key}")
        return value

    def op_add(self, params: dict) -> dict:
        cid, net, ifname = (self._text(params, k) for k in ("containerID", "network", "ifname"))
        given = self._text(params, "netns")
        open_path = self._netns_path(given)
        request = [int(c) for c in params.get("request") or []]
        provide = [(int(c), str(v)) for c, v in params.get("provide") or []]
        key = client_identifier(cid, net, ifname)
        with self._key_lock(key):
            old = self.leases.get(key)
            if old is not None:
                if old.netns == given and not old.binding.expired():
                    return old.answer()
                self._stop_and_release(old)
            lease = Lease(container_id=cid, net_name=net, ifname=ifname, netns=given, open_path=open_path,
                          request=request, provide=provide, binding=None)  # type: ignore[arg-type]
            deadline = time.monotonic() + self.timing.resend_timeout
            lease.binding = lease.client(self.timing).acquire(deadline)
            self.store.save(lease)
            with self.lock:
                self.leases[key] = lease
            self._maintain(lease)
            log.info("%s: leased %s from %s for %ss", key, lease.binding.address, lease.binding.server,
                     lease.binding.lease_time)
            return lease.answer()

    def op_del(self, params: dict) -> dict:
        cid, net, ifname = (self._text(params, k) for k in ("containerID", "network", "ifname"))
        key = client_identifier(cid, net, ifname)
        with self._key_lock(key):
            lease = self.leases.get(key)
            if lease is None:
                return {"released": False}
            self._stop_and_release(lease)
            return {"released": True, "address": lease.binding.address}

    def op_check(self, params: dict) -> dict:
        cid, net, ifname = (self._text(params, k) for k in ("containerID", "network", "ifname"))
        key = client_identifier(cid, net, ifname)
        lease = self.leases.get(key)
        if lease is None:
            raise CNIError(UNKNOWN_CONTAINER, f"the dhcp daemon holds no lease for {key}")
        if lease.binding.expired():
            raise CNIError(UNKNOWN_CONTAINER, f"the lease of {key} on {lease.binding.address} has expired")
        given = params.get("netns")
        if given and given != lease.netns:
            raise CNIError(UNKNOWN_CONTAINER, f"the lease of {key} is for netns {lease.netns}, not {given}")
        return lease.answer()

    def op_status(self, params: dict) -> dict:
        return {"leases": len(self.leases), "pid": os.getpid()}

    def op_gc(self, params: dict) -> dict:
        net = self._text(params, "network")
        valid = {(c, i) for c, i in params.get("valid") or []}
        released = []
        for lease in list(self.leases.values()):
            if lease.net_name != net or (lease.container_id, lease.ifname) in valid:
                continue
            with self._key_lock(lease.client_id):
                if self.leases.get(lease.client_id) is lease:
                    self._stop_and_release(lease)
                    released.append(lease.client_id)
        return {"released": released}

    def op_leases(self, params: dict) -> dict:
        return {"leases": [l.answer() for l in list(self.leases.values())]}

    # ---- lease lifecycle --------------------------------------------------------

    def _maintain(self, lease: Lease) -> None:
        Maintainer(lease, self.timing, self.store.save, self._forget).start()

    def _forget(self, lease: Lease) -> None:
        with self.lock:
            if self.leases.get(lease.client_id) is lease:
                del self.leases[lease.client_id]
        self.store.remove(lease.client_id)

    def _stop_and_release(self, lease: Lease) -> None:
        lease.stop.set()
        if lease.thread is not None and lease.thread is not threading.current_thread():
            lease.thread.join(5)
        self._forget(lease)
        if lease.binding is None or lease.binding.expired() or not netns.exists(lease.open_path):
            return
        try:
            lease.client(self.timing).release(lease.binding)
            log.info("%s: released %s", lease.client_id, lease.binding.address)
        except CNIError as exc:
            log.warning("%s: could not send DHCPRELEASE: %s", lease.client_id, exc)
        except OSError as exc:
            log.warning("%s: could not send DHCPRELEASE: %s", lease.client_id, exc)

    def resume(self) -> None:
        for lease in self.store.load():
            if not netns.exists(lease.open_path):
                log.info("%s: netns %s is gone, dropping its lease", lease.client_id, lease.netns)
                self.store.remove(lease.client_id)
                continue
            self.leases[lease.client_id] = lease
            self._maintain(lease)
            log.info("%s: resumed lease on %s", lease.client_id, lease.binding.address)

    def shutdown(self) -> None:
        """Stop every maintainer without releasing anything."""
        for lease in list(self.leases.values()):
            lease.stop.set()
        for lease in list(self.leases.values()):
            if lease.thread is not None:
                lease.thread.join(3)

    # ---- serving ----------------------------------------------------------------

    def serve(self, listener: socket.socket) -> None:
        listener.settimeout(0.5)
        while not self.stopping.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except InterruptedError:
                continue
            except OSError:
                if self.stopping.is_set():
                    break
                raise
            conn.setblocking(True)
            threading.Thread(target=self.handle, args=(conn,), daemon=True, name="request").start()


def run(argv: list[str]) -> int:
    flags = parse_flags(argv)
    logging.basicConfig(level=getattr(logging, flags.loglevel.upper()), stream=sys.stderr,
                        format="%(asctime)s dhcp[%(process)d] %(levelname)s %(message)s")
    daemon = Daemon(flags)
    socket_path = prefixed(flags.hostprefix, flags.socketpath)

    listener = activated_socket()
    owned = listener is None
    if listener is None:
        try:
            listener = bind_socket(socket_path)
        except (SocketBusy, OSError) as exc:
            log.error("cannot listen on %s: %s", socket_path, exc)
            return 1
    pidfile = flags.pidfile
    if pidfile:
        with open(pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")

    def stop(signum, _frame) -> None:
        log.info("got %s, stopping (leases are kept)", signal.Signals(signum).name)
        daemon.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        daemon.resume()
        log.info("listening on %s%s, state in %s", socket_path, "" if owned else " (socket activation)",
                 flags.statedir)
        daemon.serve(listener)
    finally:
        listener.close()
        daemon.shutdown()
        if owned:
            try:
                os.unlink(socket_path)
            except FileNotFoundError:
                pass
        if pidfile:
            try:
                with open(pidfile) as f:
                    mine = f.read().strip() == str(os.getpid())
                if mine:
                    os.unlink(pidfile)
            except OSError:
                pass
    return 0
