"""Leases the daemon holds: one per client identifier, kept on disk, renewed by a thread.

The state directory holds one JSON file per lease, written atomically after
every change, so a restarted daemon resumes renewing where the old one stopped.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from .. import netns
from ..errors import CNIError
from .client import Binding, Cancelled, Client, LeaseLost, NoAnswer, Timing

log = logging.getLogger("dhcp")

MIN_RETRY = 60.0  # RFC 2131 4.4.5: never retry a renewal sooner than this
REACQUIRE_RETRY = 30.0


def client_identifier(container_id: str, net_name: str, ifname: str) -> str:
    return f"{container_id}/{net_name}/{ifname}"


@dataclass
class Lease:
    container_id: str
    net_name: str
    ifname: str
    netns: str          # as the runtime gave it
    open_path: str      # where the daemon opens it (with -hostprefix)
    request: list
    provide: list
    binding: Binding
    thread: Optional[threading.Thread] = field(default=None, repr=False, compare=False)
    stop: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def client_id(self) -> str:
        return client_identifier(self.container_id, self.net_name, self.ifname)

    def client(self, timing: Timing) -> Client:
        return Client(self.open_path, self.ifname, self.client_id, self.request, self.provide, timing, self.stop)

    def to_dict(self) -> dict:
        return {"clientID": self.client_id, "containerID": self.container_id, "network": self.net_name,
                "ifname": self.ifname, "netns": self.netns, "openPath": self.open_path,
                "request": self.request, "provide": [list(p) for p in self.provide],
                "binding": self.binding.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "Lease":
        return cls(container_id=data["containerID"], net_name=data["network"], ifname=data["ifname"],
                   netns=data["netns"], open_path=data["openPath"], request=list(data["request"]),
                   provide=[tuple(p) for p in data["provide"]], binding=Binding.from_dict(data["binding"]))

    def answer(self) -> dict:
        """What the plugin turns into a CNI result."""
        b = self.binding
        return {"clientID": self.client_id, "address": b.address, "gateway": b.routers[0] if b.routers else None,
                "routes": [{"dst": dst, "gw": gw} for dst, gw in b.routes], "server": b.server,
                "leaseTime": b.lease_time, "expiry": b.expiry, "netns": self.netns}


class Store:
    """One file per lease in `directory`."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)

    def _path(self, client_id: str) -> str:
        return os.path.join(self.directory, hashlib.sha256(client_id.encode()).hexdigest()[:32] + ".json")

    def save(self, lease: Lease) -> None:
        path = self._path(lease.client_id)
        tmp = f"{path}.tmp{threading.get_ident()}"
        with open(tmp, "w") as f:
            json.dump(lease.to_dict(), f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def remove(self, client_id: str) -> None:
        try:
            os.unlink(self._path(client_id))
        except FileNotFoundError:
            pass

    def load(self) -> list[Lease]:
        leases = []
        for name in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, name)
            if not name.endswith(".json"):
                if ".json.tmp" in name:
                    os.unlink(path)
                continue
            try:
                with open(path) as f:
                    leases.append(Lease.from_dict(json.load(f)))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("ignoring unreadable lease file %s: %s", path, exc)
        return leases


class Maintainer:
    """Keeps one lease alive: RENEW at T1, REBIND at T2, a new lease after expiry.

    Stops (without releasing) when `lease.stop` is set; drops the lease when its
    netns is gone, since nobody can use the address any more.
    """

    def __init__(self, lease: Lease, timing: Timing, save: Callable[[Lease], None],
                 forget: Callable[[Lease], None]) -> None:
        self.lease = lease
        self.timing = timing
        self.save = save
        self.forget = forget

    def start(self) -> None:
        t = threading.Thread(target=self.run, name=f"lease {self.lease.client_id}", daemon=True)
        self.lease.thread = t
        t.start()

    def run(self) -> None:
        try:
            self._loop()
        except Cancelled:
            pass
        except Exception:  # a maintainer must not die silently
            log.exception("%s: lease maintainer failed", self.lease.client_id)

    def _wait_until(self, when: float) -> bool:
        """Sleep until wall-clock `when`; False when stopped."""
        return not self.lease.stop.wait(max(0.0, when - time.time()))

    def _loop(self) -> None:
        lease = self.lease
        while not lease.stop.is_set():
            b = lease.binding
            if b.t1 is None or b.t2 is None or b.expiry is None:
                lease.stop.wait()
                return
            if not netns.exists(lease.open_path):
                log.info("%s: netns %s is gone, dropping the lease on %s", lease.client_id, lease.netns, b.address)
                self.forget(lease)
                return
            now = time.time()
            if now < b.t1:
                self._wait_until(b.t1)
                continue
            try:
                if now < b.t2:
                    fresh = self._attempt(lambda c, d: c.renew(b, d), b.t2, "renew")
                elif now < b.expiry:
                    fresh = self._attempt(lambda c, d: c.rebind(b, d), b.expiry, "rebind")
                else:
                    log.warning("%s: lease on %s expired, acquiring a new one", lease.client_id, b.address)
                    fresh = self._attempt(lambda c, d: c.acquire(d), None, "acquire")
            except LeaseLost as exc:
                log.warning("%s: %s; acquiring a new lease", lease.client_id, exc)
                lease.binding.expiry = lease.binding.t2 = lease.binding.t1 = time.time()
                continue
            if fresh is None:
                continue
            if fresh.ip != b.ip:
                log.warning("%s: address changed from %s to %s", lease.client_id, b.address, fresh.address)
            lease.binding = fresh
            self.save(lease)
            log.info("%s: %s extended, expires in %ss", lease.client_id, fresh.address, fresh.lease_time)

    def _attempt(self, fn, limit: float | None, what: str) -> Binding | None:
        """One renew/rebind/acquire; on no answer, sleep (RFC 2131: half the time left, >= 60 s)."""
        start = time.time()
        budget = self.timing.resend_timeout
        if limit is not None:
            budget = max(0.1, min(budget, limit - start))
        try:
            return fn(self.lease.client(self.timing), time.monotonic() + budget)
        except NoAnswer:
            log.info("%s: no answer to %s", self.lease.client_id, what)
        except CNIError as exc:  # e.g. the interface vanished while the netns stays
            log.warning("%s: %s failed: %s", self.lease.client_id, what, exc)
        now = time.time()
        if limit is None:
            self._wait_until(now + REACQUIRE_RETRY)
        else:
            self._wait_until(min(limit, now + max(MIN_RETRY, (limit - now) / 2)))
        return None
