"""The dhcp plugin's pure parts: packet codec, options, flags, wire decoding. No netns needed."""
from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest

from conftest import ROOT
from cni.dhcp import options, packet, wire
from cni.dhcp.client import Binding
from cni.dhcp.daemon import NETNS_PATTERNS, duration, parse_flags
from cni.errors import CNIError

V4 = ipaddress.IPv4Address


def test_message_round_trip():
    msg = packet.Message(op=packet.BOOTREQUEST, xid=0xDEADBEEF, flags=packet.FLAG_BROADCAST,
                         ciaddr=V4("10.0.0.5"), chaddr=bytes.fromhex("0a0b0c0d0e0f"))
    msg.options[options.MESSAGE_TYPE] = bytes((packet.REQUEST,))
    msg.options[options.CLIENT_ID] = packet.client_id("ctr/net/eth0")
    msg.options[options.HOST_NAME] = b"x" * 300  # longer than one option: RFC 3396 split and rejoin
    data = msg.encode()
    assert len(data) >= 300
    assert data[236:240] == packet.MAGIC
    assert data[240:243] == bytes((53, 1, packet.REQUEST))  # message type first
    back = packet.Message.decode(data)
    assert (back.xid, back.flags, back.ciaddr, back.chaddr) == (0xDEADBEEF, 0x8000, V4("10.0.0.5"), msg.chaddr)
    assert back.type == packet.REQUEST
    assert back.options[options.CLIENT_ID] == b"\0ctr/net/eth0"
    assert back.options[options.HOST_NAME] == b"x" * 300


def test_decode_rejects_garbage():
    with pytest.raises(ValueError):
        packet.Message.decode(b"\0" * 100)
    with pytest.raises(ValueError):
        packet.Message.decode(b"\0" * 236 + packet.MAGIC + bytes((12, 10, 65)))


def test_frame_and_unframe():
    payload = b"hello dhcp"
    ip = packet.frame(payload, V4("0.0.0.0"), V4("255.255.255.255"))
    assert packet._checksum(ip[:20]) == 0  # header checksum valid
    pseudo = ip[12:20] + bytes((0, 17)) + ip[24:26]
    assert packet._checksum(pseudo + ip[20:]) == 0  # UDP checksum valid
    assert packet.unframe(ip, dport=67) == payload
    assert packet.unframe(ip, dport=68) is None
    assert packet.unframe(b"\x60" + ip[1:], dport=67) is None  # not IPv4


def test_classless_routes_round_trip_and_precedence():
    routes = [("10.99.0.0/16", "10.77.0.254"), ("0.0.0.0/0", "10.77.0.1"), ("192.168.5.128/25", "10.77.0.9")]
    raw = packet.encode_classless_routes(routes)
    assert [(str(d), str(g)) for d, g in packet.classless_routes(raw)] == routes
    with pytest.raises(ValueError):
        packet.classless_routes(raw[:-1])

    ack = packet.Message(op=packet.BOOTREPLY, yiaddr=V4("10.77.0.50"))
    ack.options = {options.MESSAGE_TYPE: b"\x05", options.SUBNET_MASK: V4("255.255.255.0").packed,
                   options.ROUTER: V4("10.77.0.1").packed, options.LEASE_TIME: (120).to_bytes(4, "big"),
                   options.STATIC_ROUTES: V4("172.16.0.0").packed + V4("10.77.0.3").packed}
    b = Binding.from_ack(ack, 1000.0, b"", V4("10.77.0.1"))
    assert b.address == "10.77.0.50/24"
    assert b.routes == [["172.16.0.0/16", "10.77.0.3"], ["0.0.0.0/0", "10.77.0.1"]]  # option 33 + router
    assert (b.t1, b.t2, b.expiry) == (1060.0, 1105.0, 1120.0)
    ack.options[options.CLASSLESS_ROUTES] = raw
    b = Binding.from_ack(ack, 1000.0, b"", V4("10.77.0.1"))
    assert b.routes == [list(r) for r in routes]  # option 121 alone
    assert b.routers == ["10.77.0.1"]


def test_infinite_lease_has_no_timers():
    ack = packet.Message(op=packet.BOOTREPLY, yiaddr=V4("10.1.2.3"))
    ack.options = {options.LEASE_TIME: b"\xff\xff\xff\xff"}
    b = Binding.from_ack(ack, 5.0, b"", V4("10.1.2.1"))
    assert b.address == "10.1.2.3/8" and b.t1 is None and not b.expired()


def test_request_and_provide_keys():
    assert options.requested({}) == [1, 3]
    assert options.requested({"request": [{"option": "classless-static-routes"}, {"option": "42"}]}) == [1, 3, 121, 42]
    assert options.requested({"request": [{"skipDefault": True, "option": 121}]}) == [121]
    args = "IgnoreUnknown=1;K8S_POD_NAME=web-1;K8S_POD_NAMESPACE=prod"
    ipam = {"provide": [{"option": "host-name", "fromArg": "K8S_POD_NAME"}, {"option": 60, "value": "pycni"},
                        {"option": "domain-name", "fromArg": "NOT_PASSED"}]}
    assert options.provided(ipam, args) == [(12, "web-1"), (60, "pycni")]
    for bad in ({"request": [{"option": "no-such-option"}]}, {"request": [{"option": 300}]},
                {"request": [{"option": True}]}, {"request": "router"},
                {"provide": [{"option": "host-name"}]}, {"provide": [{"option": 53, "value": "1"}]},
                {"provide": [{"option": 12, "value": "a", "fromArg": "B"}]}):
        with pytest.raises(CNIError) as info:
            options.requested(bad)
            options.provided(bad, "")
        assert info.value.code == 7, bad


def test_durations_and_go_style_flags():
    assert duration("10s") == 10 and duration("1m30s") == 90 and duration("500ms") == 0.5 and duration("3") == 3
    for bad in ("10x", "s", "1m-", ""):
        with pytest.raises(Exception):
            duration(bad)
    f = parse_flags(["-socketpath", "/x.sock", "--timeout=2s", "-resendmax=5s", "-broadcast", "-hostprefix", "/host"])
    assert (f.socketpath, f.timeout, f.resendmax, f.broadcast, f.hostprefix) == ("/x.sock", 2, 5, True, "/host")
    f = parse_flags(["-broadcast=false", "-resendtimeout", "1m"])
    assert (f.broadcast, f.resendtimeout, f.timeout, f.socketpath) == (False, 60, 10, "/run/cni/dhcp.sock")


def test_netns_path_patterns():
    ok = ["/proc/123/ns/net", "/run/netns/cni-1", "/var/run/netns/x"]
    bad = ["/tmp/netns", "/proc/self/ns/net", "/run/netns/a/b", "/var/run/docker/netns/x", "relative"]
    assert all(any(p.match(x) for p in NETNS_PATTERNS) for x in ok)
    assert not any(any(p.match(x) for p in NETNS_PATTERNS) for x in bad)


def test_wire_answers():
    assert wire.decode_answer(wire.ok({"a": 1}).strip(), "/s") == {"a": 1}
    with pytest.raises(CNIError) as info:
        wire.decode_answer(wire.failed(CNIError(11, "later", "d")).strip(), "/s")
    assert (info.value.code, info.value.msg) == (11, "later")
    with pytest.raises(wire.WrongProtocol) as info:
        wire.decode_answer(b"HTTP/1.1 400 Bad Request", "/s")
    assert "speaks HTTP" in info.value.msg and "Go dhcp daemon" in info.value.msg
    with pytest.raises(wire.WrongProtocol):
        wire.decode_answer(b'{"jsonrpc": "2.0"}', "/s")
    with pytest.raises(wire.WrongProtocol):
        wire.decode_answer(b"", "/s")


def test_plugin_side_stays_light():
    """The exec'd plugin must not load the daemon, pyroute2 or other heavy modules."""
    code = ("import sys, plugins.ipam.dhcp; bad = [m for m in sys.modules if m.startswith(('pyroute2', "
            "'cni.dhcp.daemon', 'cni.dhcp.client', 'cni.dhcp.lease', 'cni.dhcp.packet', 'logging', 'threading'))"
            " or m in ('socket', 'selectors', 'enum', 'json', 're', 'typing')];"
            "print(bad)")
    # -S: site (the venv's editable-install hook) would load re and enum by itself
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_hostprefix_applies_to_netns_paths(tmp_path):
    from cni.dhcp.daemon import Daemon

    d = Daemon(parse_flags(["-hostprefix", "/host", "-statedir", str(tmp_path)]))
    assert d._netns_path("/proc/42/ns/net") == "/host/proc/42/ns/net"
    assert d._netns_path("/host/run/netns/a") == "/host/run/netns/a"  # already prefixed
    with pytest.raises(CNIError) as info:
        d._netns_path("/host/../etc/passwd")
    assert info.value.code == 4
    plain = Daemon(parse_flags(["-statedir", str(tmp_path)]))
    assert plain._netns_path("/var/run/netns/x") == "/var/run/netns/x"
    with pytest.raises(CNIError):
        plain._netns_path("/run/netns/../../tmp/x")
