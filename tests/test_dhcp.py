"""dhcp IPAM against a real DHCP server (dnsmasq in a LAN netns) and our daemon.

Layout and helpers: tests/test_dhcp_env.py. The plugin runs inside the host netns,
the daemon too; each container is a netns with a macvlan of the host's uplink.
"""
from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ALL_VERSIONS, GO_BIN, ROOT, needs_root
from test_dhcp_env import GATEWAY, LAN_PREFIX, Daemon, Dnsmasq, Lan, conf, stop_pid, wait_for

pytestmark = needs_root


@pytest.fixture
def lan(make_netns, host_ns):
    return Lan(make_netns, host_ns)


@pytest.fixture
def servers(request, lan, host_ns, tmp_path):
    """Start dnsmasq (extra flags from the test) and our daemon; stop both by PID."""
    started = []

    def start(dnsmasq: tuple = (), daemon: tuple = (), ping: bool = False, with_dnsmasq: bool = True):
        srv = Dnsmasq(lan.lan, tmp_path, extra=dnsmasq, ping=ping) if with_dnsmasq else None
        if srv:
            started.append(srv)
        d = Daemon(host_ns, tmp_path, *daemon)
        started.append(d)
        return srv, d

    yield start
    for thing in reversed(started):
        thing.stop()


def run(plugins, command, cfg, ctr=None, host=None, **kw):
    return plugins.run("dhcp", command, cfg, netns=ctr.path if ctr else "", in_netns=host.path, **kw)


def in_lan(address: str) -> bool:
    return address.startswith(f"{LAN_PREFIX}.") and address.endswith("/24")


# ---- the basic life cycle ------------------------------------------------------------


def test_add_check_del(plugins, lan, host_ns, servers):
    srv, daemon = servers(ping=True)  # dnsmasq's real ping check delays the first OFFER
    ctr = lan.container()
    cfg = conf(daemon.socket)
    result = run(plugins, "ADD", cfg, ctr, host_ns).ok().json
    address = result["ips"][0]["address"]
    assert in_lan(address) and result["ips"][0]["gateway"] == GATEWAY
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": GATEWAY}]
    assert "interfaces" not in result
    ip = address.split("/")[0]
    assert f"DHCPACK(lan0) {ip}" in srv.text()
    # The interface is the client's: up, but the plugin leaves addressing to the main plugin.
    assert "UP" in ctr.link("eth0")["flags"]
    assert not [a for a in ctr.ip_json("addr", "show", "dev", "eth0")[0]["addr_info"] if a["family"] == "inet"]

    cfg_prev = dict(cfg, prevResult=result)
    discovers = srv.count("DHCPDISCOVER")  # one, or two when a resend beat the ping check
    run(plugins, "CHECK", cfg_prev, ctr, host_ns).ok()
    assert srv.count("DHCPDISCOVER") == discovers  # CHECK acquired nothing new
    again = run(plugins, "ADD", cfg, ctr, host_ns).ok().json  # same attachment: the same lease
    assert again["ips"] == result["ips"] and srv.count("DHCPDISCOVER") == discovers

    run(plugins, "DEL", cfg, ctr, host_ns).ok()
    wait_for(lambda: f"DHCPRELEASE(lan0) {ip}" in srv.text(), 5, "DHCPRELEASE in dnsmasq's log")
    assert daemon.leases() == []
    assert list(daemon.state.iterdir()) == []
    second = run(plugins, "DEL", cfg, ctr, host_ns).ok()  # DEL twice
    assert second.out == ""
    assert srv.count("DHCPRELEASE") == 1
    failed = run(plugins, "CHECK", cfg, ctr, host_ns)
    assert failed.status == 1 and failed.json["code"] == 3 and "no lease" in failed.json["msg"]


def test_check_notices_a_different_address(source_plugins, lan, host_ns, servers):
    _, daemon = servers()
    ctr = lan.container()
    cfg = conf(daemon.socket)
    result = run(source_plugins, "ADD", cfg, ctr, host_ns).ok().json
    result["ips"][0]["address"] = f"{LAN_PREFIX}.7/24"
    out = run(source_plugins, "CHECK", dict(cfg, prevResult=result), ctr, host_ns)
    assert out.status == 1 and out.json["code"] == 3 and f"{LAN_PREFIX}.7" in out.json["msg"]
    run(source_plugins, "DEL", cfg, ctr, host_ns).ok()


def test_every_spec_version(plugins, lan, host_ns, servers):
    srv, daemon = servers()
    for version in ALL_VERSIONS:
        ctr = lan.container()
        cfg = conf(daemon.socket, version)
        cid = f"v{version.replace('.', '')}"
        out = run(plugins, "ADD", cfg, ctr, host_ns, containerid=cid).ok().json
        assert out["cniVersion"] == version
        if version in ("0.1.0", "0.2.0"):
            assert in_lan(out["ip4"]["ip"]) and out["ip4"]["gateway"] == GATEWAY
            assert out["ip4"]["routes"] == [{"dst": "0.0.0.0/0", "gw": GATEWAY}]
        else:
            assert in_lan(out["ips"][0]["address"]) and out["ips"][0]["gateway"] == GATEWAY
            assert ("version" in out["ips"][0]) == (version < "1.0.0")
        if version >= "0.4.0":
            run(plugins, "CHECK", dict(cfg, prevResult=out), ctr, host_ns, containerid=cid).ok()
        if version == "1.1.0":
            run(plugins, "STATUS", cfg, None, host_ns).ok()
        run(plugins, "DEL", cfg, ctr, host_ns, containerid=cid).ok()
    assert srv.count("DHCPRELEASE") == len(ALL_VERSIONS)
    assert daemon.leases() == []


def test_route_priority_is_a_1_1_0_field(source_plugins, lan, host_ns, servers):
    _, daemon = servers()
    ctr = lan.container()
    out = run(source_plugins, "ADD", conf(daemon.socket, priority=300), ctr, host_ns).ok().json
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": GATEWAY, "priority": 300}]
    out = run(source_plugins, "ADD", conf(daemon.socket, "1.0.0", priority=300), ctr, host_ns).ok().json
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": GATEWAY}]
    run(source_plugins, "DEL", conf(daemon.socket), ctr, host_ns).ok()


# ---- options -----------------------------------------------------------------------


def test_classless_routes_win_over_router(source_plugins, lan, host_ns, servers):
    srv, daemon = servers(dnsmasq=(f"--dhcp-option=121,10.99.0.0/16,{LAN_PREFIX}.254,0.0.0.0/0,{LAN_PREFIX}.2",))
    ctr = lan.container()
    cfg = conf(daemon.socket, request=[{"option": "classless-static-routes"}])
    out = run(source_plugins, "ADD", cfg, ctr, host_ns).ok().json
    assert out["routes"] == [{"dst": "10.99.0.0/16", "gw": f"{LAN_PREFIX}.254"},
                             {"dst": "0.0.0.0/0", "gw": f"{LAN_PREFIX}.2"}]
    assert out["ips"][0]["gateway"] == GATEWAY  # the gateway is still the first router
    assert "121:classless-static-route" in srv.text()
    run(source_plugins, "DEL", cfg, ctr, host_ns).ok()

    # Without asking for option 121, dnsmasq does not send it: router + default route.
    ctr2 = lan.container()
    out = run(source_plugins, "ADD", conf(daemon.socket), ctr2, host_ns, containerid="ctr2").ok().json
    assert out["routes"] == [{"dst": "0.0.0.0/0", "gw": GATEWAY}]
    run(source_plugins, "DEL", conf(daemon.socket), ctr2, host_ns, containerid="ctr2").ok()


def test_host_name_from_k8s_pod_name(source_plugins, lan, host_ns, servers):
    srv, daemon = servers()
    ctr = lan.container()
    cfg = conf(daemon.socket, provide=[{"option": "host-name", "fromArg": "K8S_POD_NAME"}],
               request=[{"option": "domain-name-servers"}])
    args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-7"
    run(source_plugins, "ADD", cfg, ctr, host_ns, args=args).ok()
    log = srv.text()
    assert "client provides name: web-7" in log
    assert "6:dns-server" in log
    assert "web-7" in srv.leasefile.read_text()
    # The client identifier: type 0, then containerID/network/ifname.
    assert "00:63:74:72:31:2f:6c:61:6e:2f:65:74:68:30" in srv.leasefile.read_text()  # "\0ctr1/lan/eth0"
    run(source_plugins, "DEL", cfg, ctr, host_ns, args=args).ok()


def test_bad_options_are_config_errors(source_plugins, lan, host_ns, servers):
    srv, daemon = servers()
    ctr = lan.container()
    for ipam in ({"request": [{"option": "warp-drive"}]}, {"provide": [{"option": 53, "value": "x"}]},
                 {"priority": -1}, {"daemonSocketPath": "relative.sock"}):
        cfg = conf(daemon.socket, **ipam)
        out = run(source_plugins, "ADD", cfg, ctr, host_ns)
        assert out.status == 1 and out.json["code"] == 7, (ipam, out)
    assert srv.count("DHCPDISCOVER") == 0


# ---- failure modes -----------------------------------------------------------------


def test_no_daemon(plugins, lan, host_ns, tmp_path):
    ctr = lan.container()
    cfg = conf(tmp_path / "nobody.sock")
    out = run(plugins, "ADD", cfg, ctr, host_ns)
    assert out.status == 1 and out.json["code"] == 11 and "not running" in out.json["msg"]
    out = run(plugins, "DEL", cfg, ctr, host_ns).ok()
    assert out.out == "" and "warning" in out.err
    out = run(plugins, "STATUS", cfg, None, host_ns)
    assert out.status == 1 and out.json["code"] == 50 and "not running" in out.json["msg"]
    out = run(plugins, "CHECK", cfg, ctr, host_ns)
    assert out.status == 1 and out.json["code"] == 11


def test_no_dhcp_server_leaves_nothing(plugins, lan, host_ns, servers):
    _, daemon = servers(with_dnsmasq=False, daemon=("-timeout", "1s", "-resendtimeout", "3s"))
    ctr = lan.container()
    started = time.monotonic()
    out = run(plugins, "ADD", conf(daemon.socket), ctr, host_ns)
    took = time.monotonic() - started
    assert out.status == 1 and out.json["code"] == 11, out
    assert "no DHCP OFFER" in out.json["msg"]
    assert 2.5 < took < 8, took
    assert daemon.leases() == [] and list(daemon.state.iterdir()) == []
    assert daemon.text().count("send DISCOVER") >= 3  # it did retry


def test_refuses_netns_outside_namespace_dirs(source_plugins, lan, host_ns, servers, tmp_path):
    srv, daemon = servers()
    ctr = lan.container()
    link = tmp_path / "netns-link"
    os.symlink(ctr.path, link)
    out = source_plugins.run("dhcp", "ADD", conf(daemon.socket), netns=str(link), in_netns=host_ns.path)
    assert out.status == 1 and out.json["code"] == 4 and "refuses" in out.json["msg"]
    out = source_plugins.run("dhcp", "ADD", conf(daemon.socket), netns=f"/run/netns/../../{link}",
                             in_netns=host_ns.path)
    assert out.status == 1 and out.json["code"] == 4
    assert srv.count("DHCPDISCOVER") == 0


def test_missing_interface_and_netns(source_plugins, lan, host_ns, servers):
    srv, daemon = servers()
    ctr = lan.container()
    out = run(source_plugins, "ADD", conf(daemon.socket), ctr, host_ns, ifname="eth9")
    assert out.status == 1 and out.json["code"] == 4 and "no interface eth9" in out.json["msg"]
    out = source_plugins.run("dhcp", "ADD", conf(daemon.socket), netns="/run/netns/pycni-gone",
                             in_netns=host_ns.path)
    assert out.status == 1 and "no such file" in out.json["msg"]
    assert daemon.leases() == []


# ---- renewal, restart, expiry --------------------------------------------------------

FAST_T1 = ("--dhcp-option=option:T1,3", "--dhcp-option=option:T2,6")


def configure(ctr, address: str) -> None:
    """What the main plugin would do: the server answers a RENEW by unicast to this address."""
    ctr.run("ip", "addr", "add", address, "dev", "eth0")


def test_renews_at_t1(source_plugins, lan, host_ns, servers):
    srv, daemon = servers(dnsmasq=FAST_T1)
    ctr = lan.container()
    out = run(source_plugins, "ADD", conf(daemon.socket), ctr, host_ns).ok().json
    address = out["ips"][0]["address"]
    configure(ctr, address)
    first_expiry = daemon.leases()[0]["expiry"]
    ip = address.split("/")[0]
    wait_for(lambda: srv.count(f"DHCPACK(lan0) {ip}") >= 3, 12, "two renewals acknowledged")
    assert srv.count("DHCPDISCOVER") == 1
    assert daemon.leases()[0]["expiry"] > first_expiry
    assert "extended" in daemon.text()
    run(source_plugins, "DEL", conf(daemon.socket), ctr, host_ns).ok()


def test_restart_resumes_renewing(source_plugins, lan, host_ns, servers, tmp_path):
    srv, daemon = servers(dnsmasq=FAST_T1)
    ctr = lan.container()
    out = run(source_plugins, "ADD", conf(daemon.socket), ctr, host_ns).ok().json
    ip = out["ips"][0]["address"].split("/")[0]
    configure(ctr, out["ips"][0]["address"])
    assert daemon.stop() == 0
    assert not daemon.socket.exists() and not daemon.pidfile.exists()
    assert "DHCPRELEASE" not in srv.text()  # stopping releases nothing
    assert len(list(daemon.state.iterdir())) == 1

    acks = srv.count(f"DHCPACK(lan0) {ip}")
    again = Daemon(host_ns, tmp_path)
    try:
        assert [l["address"] for l in again.leases()] == [out["ips"][0]["address"]]
        wait_for(lambda: srv.count(f"DHCPACK(lan0) {ip}") > acks, 10, "a renewal by the new daemon")
        assert "resumed lease" in again.text()
        run(source_plugins, "CHECK", dict(conf(again.socket), prevResult=out), ctr, host_ns).ok()
        run(source_plugins, "DEL", conf(again.socket), ctr, host_ns).ok()
        wait_for(lambda: f"DHCPRELEASE(lan0) {ip}" in srv.text(), 5, "DHCPRELEASE")
    finally:
        again.stop()


def _edit_state(daemon: Daemon, **times) -> None:
    [path] = list(daemon.state.iterdir())
    data = json.loads(path.read_text())
    now = time.time()
    for key, offset in times.items():
        data["binding"][key] = now + offset
    path.write_text(json.dumps(data))


def test_rebinds_after_t2_and_reacquires_after_expiry(source_plugins, lan, host_ns, servers, tmp_path):
    srv, daemon = servers()
    ctr = lan.container()
    out = run(source_plugins, "ADD", conf(daemon.socket), ctr, host_ns).ok().json
    configure(ctr, out["ips"][0]["address"])
    daemon.stop()

    # Past T2, lease still valid: REBINDING (broadcast REQUEST with ciaddr).
    _edit_state(daemon, t1=-20, t2=-10, expiry=30)
    requests = srv.count("DHCPREQUEST")
    d2 = Daemon(host_ns, tmp_path)
    try:
        wait_for(lambda: srv.count("DHCPREQUEST") > requests, 10, "a REBIND")
        wait_for(lambda: "extended" in d2.text(), 5, "the rebind acknowledged")
        assert "send REQUEST to 255.255.255.255" in d2.text()
    finally:
        d2.stop()

    # Expired while the daemon was down: a new lease (DISCOVER) as soon as it starts.
    _edit_state(daemon, t1=-30, t2=-20, expiry=-10)
    discovers = srv.count("DHCPDISCOVER")
    d3 = Daemon(host_ns, tmp_path)
    try:
        wait_for(lambda: srv.count("DHCPDISCOVER") > discovers, 10, "a new DISCOVER")
        wait_for(lambda: "extended" in d3.text(), 5, "the new lease")
        assert "expired, acquiring a new one" in d3.text()
        run(source_plugins, "DEL", conf(d3.socket), ctr, host_ns).ok()
    finally:
        d3.stop()


def test_lease_of_a_deleted_netns_is_dropped(source_plugins, lan, host_ns, servers, tmp_path):
    srv, daemon = servers(dnsmasq=FAST_T1)
    ctr = lan.container()
    run(source_plugins, "ADD", conf(daemon.socket), ctr, host_ns).ok()
    ctr.remove()
    wait_for(lambda: daemon.leases() == [], 8, "the lease to be dropped at T1")
    assert list(daemon.state.iterdir()) == []
    run(source_plugins, "DEL", conf(daemon.socket), ctr, host_ns).ok()


# ---- many at once, GC ----------------------------------------------------------------


def test_eight_containers_at_once(plugins, lan, host_ns, servers):
    srv, daemon = servers()
    ctrs = [lan.container() for _ in range(8)]
    outs: dict[int, object] = {}

    def add(i: int) -> None:
        outs[i] = run(plugins, "ADD", conf(daemon.socket), ctrs[i], host_ns, containerid=f"c{i}")

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    addresses = {outs[i].ok().json["ips"][0]["address"] for i in range(8)}
    assert len(addresses) == 8 and all(in_lan(a) for a in addresses)
    assert len(daemon.leases()) == 8
    assert took < 20, took
    for i in range(8):
        run(plugins, "DEL", conf(daemon.socket), ctrs[i], host_ns, containerid=f"c{i}").ok()
    wait_for(lambda: srv.count("DHCPRELEASE") == 8, 5, "eight releases")


def test_gc_releases_stale_attachments(source_plugins, lan, host_ns, servers):
    srv, daemon = servers()
    a, b = lan.container(), lan.container()
    run(source_plugins, "ADD", conf(daemon.socket), a, host_ns, containerid="keep").ok()
    ip_b = run(source_plugins, "ADD", conf(daemon.socket), b, host_ns, containerid="stale").ok().json
    other = run(source_plugins, "ADD", conf(daemon.socket, name="other"), b, host_ns, containerid="stale").ok()
    gc_conf = dict(conf(daemon.socket), **{"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]})
    run(source_plugins, "GC", gc_conf, None, host_ns).ok()
    wait_for(lambda: srv.count("DHCPRELEASE") == 1, 5, "one release")
    assert ip_b["ips"][0]["address"].split("/")[0] in srv.text().split("DHCPRELEASE")[1].splitlines()[0]
    held = sorted(l["clientID"] for l in daemon.leases())
    assert held == ["keep/lan/eth0", "stale/other/eth0"]  # another network's lease is not ours to collect
    assert other.ok()


# ---- the daemon process: socket, signals, activation -------------------------------


def test_socket_mode_pidfile_and_clean_stop(lan, host_ns, servers):
    _, daemon = servers(with_dnsmasq=False)
    st = os.stat(daemon.socket)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert daemon.pidfile.read_text().strip() == str(daemon.proc.pid)
    assert daemon.stop(signal_int := 2) == 0 and signal_int  # SIGINT
    assert not daemon.socket.exists() and not daemon.pidfile.exists()


def test_live_daemon_is_not_stolen_and_stale_socket_is_replaced(host_ns, servers, tmp_path):
    _, first = servers(with_dnsmasq=False)
    second = subprocess.run(["ip", "netns", "exec", host_ns.name, sys.executable, "-m", "plugins", "dhcp", "daemon",
                             "-socketpath", str(first.socket), "-statedir", str(tmp_path / "s2")],
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=20)
    assert second.returncode == 1 and "already listening" in second.stderr
    assert first.answers()

    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # a socket file nobody listens on, as a killed daemon leaves it
    d = Daemon(host_ns, tmp_path, socket_path=stale, state=tmp_path / "s3")
    try:
        assert d.answers() and "removing stale socket" in d.text()
    finally:
        d.stop()


def test_socket_activation(source_plugins, lan, host_ns, tmp_path):
    sock_path = tmp_path / "activated.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sock_path))
    listener.listen(8)
    os.chmod(sock_path, 0o660)
    log = open(tmp_path / "activated.log", "w")
    # LISTEN_PID must be the daemon's own PID: sh sets it, then execs in place.
    script = (f'LISTEN_FDS=1 LISTEN_PID=$$ PYTHONPATH={ROOT} exec {sys.executable} '
              f'-m plugins dhcp daemon -socketpath /nonexistent/x.sock -statedir {tmp_path}/st')
    fd = listener.fileno()
    proc = subprocess.Popen(["ip", "netns", "exec", host_ns.name, "sh", "-c", script], pass_fds=(3, fd),
                            preexec_fn=lambda: os.dup2(fd, 3), stdout=log, stderr=subprocess.STDOUT)
    listener.close()
    try:
        out = source_plugins.run("dhcp", "STATUS", conf(sock_path), in_netns=host_ns.path, timeout=20)
        out.ok()
        assert stop_pid(proc) == 0
        text = (tmp_path / "activated.log").read_text()
        assert "socket activation" in text
        assert sock_path.exists()  # systemd's socket: not ours to remove
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o660  # the unit's mode is kept
        assert not Path("/nonexistent/x.sock").exists()
    finally:
        stop_pid(proc)
        log.close()


def test_unit_files():
    units = ROOT / "deploy" / "systemd"
    sock = (units / "cni-dhcp.socket").read_text()
    svc = (units / "cni-dhcp.service").read_text()
    assert "ListenStream=/run/cni/dhcp.sock" in sock and "SocketMode=0600" in sock
    assert re.search(r"^ExecStart=\S+/dhcp daemon", svc, re.M)
    assert "Requires=cni-dhcp.socket" in svc
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", str(units / "cni-dhcp.socket"),
                             str(units / "cni-dhcp.service")], capture_output=True, text=True)
    problems = [l for l in verify.stderr.splitlines()
                if "cni-dhcp" in l and "Command /opt/cni/bin/dhcp is not executable" not in l
                and "is not executable: No such file" not in l]
    assert not problems, verify.stderr


# ---- the Go daemon on the socket -------------------------------------------------------


@pytest.fixture
def go_daemon(host_ns, tmp_path):
    if not (GO_BIN / "dhcp").exists():
        pytest.skip("Go dhcp plugin not installed")
    path = tmp_path / "go-dhcp.sock"
    proc = subprocess.Popen(["ip", "netns", "exec", host_ns.name, str(GO_BIN / "dhcp"), "daemon",
                             "-socketpath", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: path.exists(), 10, "the Go daemon's socket")
    yield path
    stop_pid(proc)


def test_go_daemon_on_the_socket_is_named(plugins, lan, host_ns, go_daemon):
    ctr = lan.container()
    cfg = conf(go_daemon)
    out = run(plugins, "STATUS", cfg, None, host_ns)
    assert out.status == 1 and out.json["code"] == 50
    assert "speaks HTTP" in out.json["msg"] and "Go dhcp daemon" in out.json["msg"]
    assert "400" in out.json["details"]
    out = run(plugins, "ADD", cfg, ctr, host_ns)
    assert out.status == 1 and out.json["code"] == 11 and "Go dhcp daemon" in out.json["msg"]
    out = run(plugins, "DEL", cfg, ctr, host_ns).ok()
    assert "Go dhcp daemon" in out.err


def test_go_plugin_on_our_socket_gets_a_clear_answer(go_plugins, lan, host_ns, servers, tmp_path):
    _, daemon = servers(with_dnsmasq=False)
    # The Go plugin only talks to /run/cni/dhcp.sock; give it a mount namespace where that is ours.
    ctr = lan.container()
    cfg = json.dumps(conf(daemon.socket, "1.0.0"))
    script = (f"mkdir -p /run/cni && mount --bind {tmp_path} /run/cni && "
              f"ln -sf {daemon.socket} /run/cni/dhcp.sock 2>/dev/null; "
              f"CNI_COMMAND=ADD CNI_CONTAINERID=go1 CNI_NETNS={ctr.path} CNI_IFNAME=eth0 CNI_PATH={GO_BIN} "
              f"{GO_BIN}/dhcp")
    p = subprocess.run(["unshare", "-m", "ip", "netns", "exec", host_ns.name, "sh", "-c", script], input=cfg,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "pycni dhcp daemon" in p.stdout + p.stderr
