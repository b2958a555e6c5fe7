"""The DHCP client that runs for one lease inside the container's netns.

It talks through an AF_PACKET socket bound to the interface: while it acquires,
the interface has no address, so a UDP socket could not send from 0.0.0.0
reliably and the answer may be unicast to an address the kernel does not own
yet. The socket is opened inside the netns and kept only for one exchange; a
socket held between renewals would keep a deleted container's netns alive.
"""
from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import random
import socket
import struct
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Optional

from .. import netns
from ..errors import INVALID_ENV, TRY_AGAIN_LATER, CNIError
from . import options as opt
from . import packet
from .packet import Message

log = logging.getLogger("dhcp")

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
BROADCAST_MAC = b"\xff" * 6
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
IFF_UP, IFF_RUNNING = 0x1, 0x40
INFINITE = 0xFFFFFFFF
FIRST_BACKOFF = 2.0


class NoAnswer(CNIError):
    """No usable answer before the deadline: the runtime may try again later."""

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(TRY_AGAIN_LATER, msg, details)


class LeaseLost(Exception):
    """The server NAKed a renewal: the address is no longer ours."""


class Cancelled(Exception):
    """The lease is being stopped (DEL, daemon shutdown)."""


@dataclass
class Timing:
    timeout: float = 10.0         # longest wait for an answer before sending again
    resend_max: float = 62.0      # cap of the backoff between sends
    resend_timeout: float = 62.0  # total time for one acquire, renew or rebind
    broadcast: bool = False       # ask servers to broadcast their answers


@dataclass
class Binding:
    """What the server granted; times are wall-clock seconds so they survive a restart."""

    address: str                 # "10.0.0.5/24"
    server: str
    server_mac: str = ""
    routers: list = field(default_factory=list)
    routes: list = field(default_factory=list)  # [[dst, gw], ...] in the precedence RFC 3442 asks for
    lease_time: Optional[int] = None             # None: infinite
    t1: Optional[float] = None
    t2: Optional[float] = None
    expiry: Optional[float] = None
    acquired: float = 0.0

    @property
    def ip(self) -> ipaddress.IPv4Address:
        return ipaddress.IPv4Interface(self.address).ip

    def expired(self, now: float | None = None) -> bool:
        return self.expiry is not None and (now or time.time()) >= self.expiry

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Binding":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    @classmethod
    def from_ack(cls, ack: Message, sent_at: float, server_mac: bytes, source: ipaddress.IPv4Address) -> "Binding":
        mask = ack.options.get(opt.SUBNET_MASK)
        if mask and len(mask) == 4:
            prefix = ipaddress.IPv4Network(f"0.0.0.0/{ipaddress.IPv4Address(mask)}").prefixlen
        else:
            prefix = _classful_prefix(ack.yiaddr)
        routers = [str(r) for r in ack.addresses(opt.ROUTER)]
        server = ack.address(opt.SERVER_ID) or source
        binding = cls(address=f"{ack.yiaddr}/{prefix}", server=str(server),
                      server_mac=server_mac.hex(":") if server_mac else "",
                      routers=routers, routes=_routes(ack, routers), acquired=sent_at)
        lease = ack.seconds(opt.LEASE_TIME)
        if lease is not None and lease != INFINITE:
            t1 = ack.seconds(opt.RENEWAL_TIME)
            t2 = ack.seconds(opt.REBINDING_TIME)
            t1 = t1 if t1 is not None and t1 < lease else lease * 0.5
            t2 = t2 if t2 is not None and t1 <= t2 < lease else max(lease * 0.875, t1)
            binding.lease_time = lease
            binding.t1, binding.t2, binding.expiry = sent_at + t1, sent_at + t2, sent_at + lease
        return binding


def _classful_prefix(addr: ipaddress.IPv4Address) -> int:
    first = addr.packed[0]
    return 8 if first < 128 else 16 if first < 192 else 24


def _routes(ack: Message, routers: list[str]) -> list[list[str]]:
    """Option 121 wins over option 33 and the router (RFC 3442)."""
    if ack.options.get(opt.CLASSLESS_ROUTES):
        try:
            return [[str(dst), str(gw)] for dst, gw in packet.classless_routes(ack.options[opt.CLASSLESS_ROUTES])]
        except ValueError as exc:
            log.warning("ignoring malformed option 121: %s", exc)
    routes = [[str(dst), str(gw)] for dst, gw in packet.static_routes(ack.options.get(opt.STATIC_ROUTES, b""))]
    if routers:
        routes.append(["0.0.0.0/0", routers[0]])
    return routes


def backoff(attempt: int, timing: Timing) -> float:
    """Wait after the attempt-th send: doubling from 2 s, capped, +-10 % jitter."""
    base = min(FIRST_BACKOFF * (2 ** min(attempt, 16)), timing.resend_max, timing.timeout)
    return max(0.2, base * random.uniform(0.9, 1.1))


class Client:
    """One DHCP client identity on one interface of one netns."""

    def __init__(self, netns_path: str, ifname: str, client_id: str, request: list[int],
                 provide: list, timing: Timing, cancel: threading.Event | None = None) -> None:
        self.netns_path = netns_path
        self.ifname = ifname
        self.client_id = client_id
        self.request = request
        self.provide = [(int(code), str(text)) for code, text in provide]
        self.timing = timing
        self.cancel = cancel or threading.Event()
        self.mac = b""

    # ---- the four conversations ---------------------------------------------------

    def acquire(self, deadline: float) -> Binding:
        """DISCOVER/OFFER/REQUEST/ACK until the monotonic `deadline`."""
        sock = self._open(bring_up=True)
        try:
            xid = random.getrandbits(32)
            while True:
                discover = self._message(packet.DISCOVER, xid)
                offer, _mac, source = self._exchange(sock, discover, packet.BROADCAST, BROADCAST_MAC,
                                                     packet.ZERO, {packet.OFFER}, deadline, "OFFER")
                server = offer.address(opt.SERVER_ID) or source
                request = self._message(packet.REQUEST, xid)
                request.options[opt.REQUESTED_IP] = offer.yiaddr.packed
                request.options[opt.SERVER_ID] = server.packed
                sent_at = time.time()
                try:
                    ack, mac, source = self._exchange(sock, request, packet.BROADCAST, BROADCAST_MAC, packet.ZERO,
                                                      {packet.ACK, packet.NAK}, deadline, "ACK", attempts=4,
                                                      server=server)
                except NoAnswer:
                    if time.monotonic() >= deadline:
                        raise
                    continue
                if ack.type == packet.NAK:
                    log.info("%s: server %s refused %s, starting over", self.client_id, server, offer.yiaddr)
                    xid = random.getrandbits(32)
                    continue
                return Binding.from_ack(ack, sent_at, mac, source)
        finally:
            sock.close()

    def renew(self, binding: Binding, deadline: float) -> Binding:
        """RENEWING: unicast to the server that granted the lease."""
        mac = bytes.fromhex(binding.server_mac.replace(":", "")) if binding.server_mac else BROADCAST_MAC
        return self._extend(binding, ipaddress.IPv4Address(binding.server), mac, deadline, "renew")

    def rebind(self, binding: Binding, deadline: float) -> Binding:
        """REBINDING: any server may extend the lease."""
        return self._extend(binding, packet.BROADCAST, BROADCAST_MAC, deadline, "rebind")

    def release(self, binding: Binding) -> None:
        sock = self._open(bring_up=False)
        try:
            msg = self._message(packet.RELEASE, random.getrandbits(32), with_request=False)
            msg.ciaddr = binding.ip
            msg.options[opt.SERVER_ID] = ipaddress.IPv4Address(binding.server).packed
            mac = bytes.fromhex(binding.server_mac.replace(":", "")) if binding.server_mac else BROADCAST_MAC
            self._send(sock, msg, ipaddress.IPv4Address(binding.server), mac, binding.ip)
        finally:
            sock.close()

    def _extend(self, binding: Binding, dst: ipaddress.IPv4Address, dst_mac: bytes, deadline: float,
                what: str) -> Binding:
        sock = self._open(bring_up=False)
        try:
            msg = self._message(packet.REQUEST, random.getrandbits(32))
            msg.ciaddr = binding.ip
            sent_at = time.time()
            ack, mac, source = self._exchange(sock, msg, dst, dst_mac, binding.ip, {packet.ACK, packet.NAK},
                                              deadline, f"ACK to {what}")
        finally:
            sock.close()
        if ack.type == packet.NAK:
            raise LeaseLost(f"server NAKed the {what} of {binding.address}")
        fresh = Binding.from_ack(ack, sent_at, mac, source)
        if fresh.ip != binding.ip:
            raise LeaseLost(f"server answered the {what} of {binding.ip} with {fresh.ip}")
        if not fresh.server_mac:
            fresh.server_mac = binding.server_mac
        return fresh

    # ---- messages ---------------------------------------------------------------

    def _message(self, kind: int, xid: int, with_request: bool = True) -> Message:
        msg = Message(op=packet.BOOTREQUEST, xid=xid, chaddr=self.mac,
                      flags=packet.FLAG_BROADCAST if self.timing.broadcast and kind != packet.RELEASE else 0)
        msg.options[opt.MESSAGE_TYPE] = bytes((kind,))
        msg.options[opt.CLIENT_ID] = packet.client_id(self.client_id)
        if with_request:
            msg.options[opt.MAX_MESSAGE_SIZE] = struct.pack("!H", 1500)
            msg.options[opt.PARAMETER_LIST] = bytes(self.request + [opt.LEASE_TIME, opt.RENEWAL_TIME,
                                                                    opt.REBINDING_TIME])
            for code, text in self.provide:
                msg.options[code] = packet.option_bytes(code, text)
        return msg

    def _exchange(self, sock: socket.socket, msg: Message, dst: ipaddress.IPv4Address, dst_mac: bytes,
                  src: ipaddress.IPv4Address, accept: set, deadline: float, wanted: str,
                  attempts: int | None = None, server: ipaddress.IPv4Address | None = None):
        started = time.monotonic()
        attempt = 0
        while True:
            now = time.monotonic()
            if now >= deadline or (attempts is not None and attempt >= attempts):
                raise NoAnswer(f"no DHCP {wanted} on {self.ifname} within {now - started:.1f}s",
                               f"client {self.client_id}")
            msg.secs = min(int(now - started), 0xFFFF)
            self._send(sock, msg, dst, dst_mac, src)
            until = min(deadline, now + backoff(attempt, self.timing))
            reply = self._receive(sock, msg.xid, accept, until, server)
            if reply is not None:
                return reply
            attempt += 1

    def _send(self, sock: socket.socket, msg: Message, dst: ipaddress.IPv4Address, dst_mac: bytes,
              src: ipaddress.IPv4Address) -> None:
        log.debug("%s: send %s to %s", self.client_id, packet.TYPE_NAMES.get(msg.type), dst)
        data = packet.frame(msg.encode(), src, dst)
        try:
            sock.sendto(data, (self.ifname, ETH_P_IP, 0, 0, dst_mac))
        except OSError as exc:  # a link still coming up: the next send may pass
            log.info("%s: send on %s failed: %s", self.client_id, self.ifname, exc.strerror)

    def _receive(self, sock: socket.socket, xid: int, accept: set, until: float,
                 server: ipaddress.IPv4Address | None):
        while True:
            if self.cancel.is_set():
                raise Cancelled()
            left = until - time.monotonic()
            if left <= 0:
                return None
            sock.settimeout(min(left, 0.5))
            try:
                data, addr = sock.recvfrom(4096)
            except socket.timeout:
                continue
            if addr[2] == PACKET_OUTGOING:
                continue
            payload = packet.unframe(data)
            if payload is None:
                continue
            try:
                reply = Message.decode(payload)
            except ValueError:
                continue
            if reply.op != packet.BOOTREPLY or reply.xid != xid or reply.chaddr[:6] != self.mac:
                continue
            if reply.type not in accept:
                continue
            if server is not None and reply.address(opt.SERVER_ID) not in (None, server):
                continue  # another server's answer to our broadcast REQUEST
            return reply, addr[4], packet.source_address(data)

    # ---- the socket -------------------------------------------------------------

    def _open(self, bring_up: bool) -> socket.socket:
        with netns.entered(self.netns_path):
            if bring_up:
                self._link_up()
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, socket.htons(ETH_P_IP))
        try:
            sock.bind((self.ifname, ETH_P_IP))
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.ENODEV, errno.ENXIO):
                raise CNIError(INVALID_ENV, f"no interface {self.ifname} in netns {self.netns_path}") from None
            raise
        self.mac = sock.getsockname()[4][:6]
        return sock

    def _link_up(self) -> None:
        """Bring the interface up, as DHCP needs it before the plugin configures it."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            ifreq = struct.pack("16sH22x", self.ifname.encode(), 0)
            try:
                flags = struct.unpack_from("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, ifreq))[1]
            except OSError as exc:
                if exc.errno == errno.ENODEV:
                    raise CNIError(INVALID_ENV, f"no interface {self.ifname} in netns {self.netns_path}") from None
                raise
            if not flags & IFF_UP:
                fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", self.ifname.encode(), flags | IFF_UP))
            for _ in range(40):  # carrier usually follows within milliseconds
                flags = struct.unpack_from("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, ifreq))[1]
                if flags & IFF_RUNNING:
                    break
                time.sleep(0.05)
        finally:
            s.close()

