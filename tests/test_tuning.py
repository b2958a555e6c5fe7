"""tuning, chained after bridge (side by side with Go) or on a plain veth: link attributes,
sysctls, the saved file, rollback, DEL without a netns, CHECK and the allow-list."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ALL_VERSIONS, Netns, PluginSet, needs_root

pytestmark = needs_root

NAME = "tunenet"
CID = "tunectr"
SYSCTLS = {"net.ipv4.conf.IFNAME.arp_filter": "1", "net.ipv4.conf.IFNAME.accept_local": "1",
           "net.core.somaxconn": "1000"}


@dataclass
class Attached:
    plugins: PluginSet
    host: Netns | None
    ctr: Netns
    prev: dict
    data_dir: Path  # tuning's dataDir
    ifname: str = "eth0"
    head: dict | None = None  # the main plugin's configuration, when one made the link

    def run(self, command: str, conf, **kw):
        kw.setdefault("netns", self.ctr.path)
        kw.setdefault("ifname", self.ifname)
        kw.setdefault("containerid", CID)
        kw.setdefault("cni_path", str(self.plugins.directory))
        if self.host is not None:
            kw.setdefault("in_netns", self.host.path)
        return self.plugins.run("tuning", command, conf, **kw)

    def conf(self, version: str = "1.0.0", **keys) -> dict:
        return {"cniVersion": version, "name": NAME, "type": "tuning", "dataDir": str(self.data_dir),
                "prevResult": self.prev, **keys}

    def saved_files(self) -> list[str]:
        return sorted(os.listdir(self.data_dir)) if self.data_dir.exists() else []

    def view(self) -> dict:
        """What tuning changes: link attributes and the sysctls of SYSCTLS."""
        link = self.ctr.link(self.ifname)
        knobs = {k: self.ctr.run("cat", "/proc/sys/" + k.replace(".", "/").replace("IFNAME", self.ifname)).stdout.strip()
                 for k in SYSCTLS}
        return {"mac": link["address"], "mtu": link["mtu"], "txqlen": link.get("txqlen", 0),  # ip -j leaves out a txqlen of 0
                "promisc": "PROMISC" in link["flags"], "allmulti": "ALLMULTI" in link["flags"], **knobs}


def after_bridge(plugins: PluginSet, make_netns, tmp: Path, version: str) -> Attached:
    """A container attached by `plugins`' own bridge + host-local, the usual chain head."""
    host, ctr = make_netns("pycni-host"), make_netns("pycni-ctr")
    tmp = tmp / plugins.kind
    tmp.mkdir(exist_ok=True)
    conf = {"cniVersion": version, "name": NAME, "type": "bridge", "bridge": "tbr0", "isGateway": True,
            "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": str(tmp / "ipam")}}
    prev = plugins.run("bridge", "ADD", conf, netns=ctr.path, containerid=CID, in_netns=host.path,
                       cni_path=str(plugins.directory)).ok().json
    return Attached(plugins, host, ctr, prev, tmp / "tuning", head=conf)


def on_veth(plugins: PluginSet, make_netns, tmp: Path, version: str = "1.0.0", ifname: str = "eth0") -> Attached:
    """The cheap chain head: a veth made with ip, and the prevResult a main plugin would print."""
    ctr = make_netns("pycni-ctr")
    ctr.run("ip", "link", "add", ifname, "type", "veth", "peer", "name", "peer0")
    ctr.run("ip", "link", "set", ifname, "up")
    if version in ("0.1.0", "0.2.0"):
        prev = {"cniVersion": version, "ip4": {"ip": "10.77.0.2/24", "gateway": "10.77.0.1"}}
    else:
        prev = {"cniVersion": version, "interfaces": [{"name": ifname, "mac": ctr.link(ifname)["address"],
                                                       "sandbox": ctr.path}],
                "ips": [{"address": "10.77.0.2/24", "gateway": "10.77.0.1", "interface": 0}]}
        if version < "1.0.0":
            prev["ips"][0]["version"] = "4"
    return Attached(plugins, None, ctr, prev, tmp / f"tuning-{plugins.kind}", ifname)


def masked(result: dict) -> dict:
    for iface in result.get("interfaces", []):
        if "sandbox" in iface:
            iface["sandbox"] = "<ctr>"
        else:
            iface.update(name="<host veth>", mac="<host mac>")
    return result


def saved_file(a: Attached, original_mac: str) -> dict:
    (name,) = a.saved_files()
    assert name == f"{CID}_{a.ifname}.json"
    data = json.loads((a.data_dir / name).read_text())
    if data.get("mac") == original_mac:
        data["mac"] = "<original>"
    return data


# ---- side by side with Go ---------------------------------------------------------------


@pytest.mark.parametrize("version", ["0.2.0", "0.4.0", "1.0.0"])
def test_same_as_go(source_plugins, go_plugins, make_netns, tmp_path, version):
    keys = dict(mac="C2:11:22:33:44:55", mtu=1400, promisc=True, allmulti=True, sysctl=SYSCTLS)
    seen = {}
    for plugins in (source_plugins, go_plugins):
        a = after_bridge(plugins, make_netns, tmp_path, version)
        before = a.view()
        result = a.run("ADD", a.conf(version, **keys)).ok().json
        tuned = a.view()
        file = saved_file(a, before["mac"])
        check = a.run("CHECK", a.conf(version, **{**keys, "prevResult": result})) if version >= "0.4.0" else None
        if check is not None and plugins is source_plugins:  # bridge's CHECK takes the MAC in capitals
            plugins.run("bridge", "CHECK", {**a.head, "prevResult": result}, netns=a.ctr.path, containerid=CID,
                        in_netns=a.host.path, cni_path=str(plugins.directory)).ok()
        a.run("DEL", a.conf(version, **keys)).ok()
        seen[plugins.kind] = dict(result=masked(result), before=before, tuned=tuned, file=file, check=check,
                                  restored=a.view(), files_left=a.saved_files())
    ours, go = seen["source"], seen["go"]
    assert ours["result"] == go["result"]
    if version != "0.2.0":  # the MAC is echoed exactly as configured, capitals included
        assert [i["mac"] for i in ours["result"]["interfaces"] if i.get("sandbox")] == ["C2:11:22:33:44:55"]
    assert ours["tuned"] == go["tuned"]
    assert ours["tuned"] == {**ours["before"], "mac": "c2:11:22:33:44:55", "mtu": 1400, "promisc": True,
                             "allmulti": True, "net.ipv4.conf.IFNAME.arp_filter": "1",
                             "net.ipv4.conf.IFNAME.accept_local": "1", "net.core.somaxconn": "1000"}
    # The same file, so either DEL can restore what the other ADD saved; ours adds the sysctls.
    assert ours["file"].pop("sysctl") == {"/proc/sys/net/ipv4/conf/eth0/arp_filter": ours["before"]["net.ipv4.conf.IFNAME.arp_filter"],
                                          "/proc/sys/net/ipv4/conf/eth0/accept_local": ours["before"]["net.ipv4.conf.IFNAME.accept_local"],
                                          "/proc/sys/net/core/somaxconn": ours["before"]["net.core.somaxconn"]}
    assert ours["file"] == go["file"] == {"mac": "<original>", "promisc": False, "mtu": 1500, "allmulti": False}
    if ours["check"] is not None:
        ours["check"].ok()
        # Go expands IFNAME on ADD but not on CHECK (reference-quirks.md): its CHECK fails here.
        assert go["check"].status == 1 and "IFNAME" in go["check"].json["msg"]
    assert ours["restored"] == ours["before"]  # better: the sysctls come back too
    assert go["restored"] == {**go["before"], **{k: v for k, v in go["tuned"].items() if k in SYSCTLS}}
    assert ours["files_left"] == go["files_left"] == []


OVERRIDES = [
    ("cni-args-mac-then-runtime-config", dict(mac="c2:00:00:00:00:01", runtimeConfig={"mac": "c2:00:00:00:00:03"}),
     "IgnoreUnknown=1;MAC=c2:00:00:00:00:02"),
    ("cni-args-mac", dict(mac="c2:00:00:00:00:01"), "IgnoreUnknown=1;K8S_POD_NAME=p;MAC=c2:00:00:00:00:02"),
    ("args-cni-win", dict(mac="c2:00:00:00:00:01", runtimeConfig={"mac": "c2:00:00:00:00:03"}, mtu=1450,
                          sysctl={"net.ipv4.conf.IFNAME.arp_filter": "0"},
                          args={"cni": {"mac": "c2:00:00:00:00:04", "mtu": 1300, "promisc": True, "allmulti": True,
                                        "sysctl": {"net.ipv4.conf.IFNAME.arp_filter": "1"}}}), ""),
]


@pytest.mark.parametrize("keys,args", [c[1:] for c in OVERRIDES], ids=[c[0] for c in OVERRIDES])
def test_overrides_same_as_go(source_plugins, go_plugins, make_netns, tmp_path, keys, args):
    seen = {}
    for plugins in (source_plugins, go_plugins):
        a = on_veth(plugins, make_netns, tmp_path)
        before = a.view()
        result = a.run("ADD", a.conf(**keys), args=args).ok().json
        seen[plugins.kind] = (masked(result), a.view())
        a.run("DEL", a.conf(**keys), args=args).ok()
        assert {k: v for k, v in a.view().items() if k not in SYSCTLS} == \
            {k: v for k, v in before.items() if k not in SYSCTLS}
    assert seen["source"] == seen["go"]


def test_new_mac_is_announced(plugins, make_netns, tmp_path):
    """Without arp_notify on the link, only tuning's gratuitous ARP (HEAD sends one per IPv4
    address of prevResult; Debian's 1.1.1 does not here) tells a neighbour the new MAC."""
    a = on_veth(plugins, make_netns, tmp_path)
    neighbour = make_netns("pycni-peer")
    a.ctr.run("ip", "link", "set", "peer0", "netns", neighbour.name)
    a.ctr.run("ip", "addr", "add", "10.77.0.2/24", "dev", "eth0")
    neighbour.run("ip", "addr", "add", "10.77.0.1/24", "dev", "peer0")
    neighbour.run("ip", "link", "set", "peer0", "up")
    neighbour.run("busybox", "ping", "-c", "1", "-W", "2", "10.77.0.2")
    assert neighbour.ip_json("neigh", "show", "10.77.0.2")[0]["lladdr"] == a.view()["mac"]
    a.run("ADD", a.conf(mac="c2:00:00:00:00:0c")).ok()
    time.sleep(0.1)
    assert neighbour.ip_json("neigh", "show", "10.77.0.2")[0]["lladdr"] == "c2:00:00:00:00:0c", plugins.kind
    a.run("DEL", a.conf(mac="c2:00:00:00:00:0c")).ok()


def test_with_arp_notify_the_kernel_announces_the_new_mac(plugins, make_netns, tmp_path):
    """arp_notify on (as macvlan leaves it): the kernel's own ARP at the MAC change tells the
    neighbour, so tuning sends none of its own (see the next test)."""
    a = on_veth(plugins, make_netns, tmp_path)
    neighbour = make_netns("pycni-peer")
    a.ctr.run("ip", "link", "set", "peer0", "netns", neighbour.name)
    a.ctr.run("ip", "addr", "add", "10.77.0.2/24", "dev", "eth0")
    a.ctr.run("sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/eth0/arp_notify")
    neighbour.run("ip", "addr", "add", "10.77.0.1/24", "dev", "peer0")
    neighbour.run("ip", "link", "set", "peer0", "up")
    neighbour.run("busybox", "ping", "-c", "1", "-W", "2", "10.77.0.2")
    a.run("ADD", a.conf(mac="c2:00:00:00:00:0d")).ok()
    time.sleep(0.1)
    assert neighbour.ip_json("neigh", "show", "10.77.0.2")[0]["lladdr"] == "c2:00:00:00:00:0d", plugins.kind
    a.run("DEL", a.conf(mac="c2:00:00:00:00:0d")).ok()


@needs_root
def test_announce_new_mac_opens_no_packet_socket_when_the_kernel_announced(make_netns, monkeypatch):
    import ipaddress
    import sys

    from cni import link, netns

    class NoSockets:
        AF_PACKET = SOCK_DGRAM = SOCK_CLOEXEC = 0

        @staticmethod
        def htons(value):
            return value

        @staticmethod
        def socket(*args):
            raise AssertionError("a packet socket was opened")

    ctr = make_netns("pycni-ctr")
    ctr.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
    monkeypatch.setitem(sys.modules, "_socket", NoSockets)
    address = [ipaddress.ip_address("10.77.0.2")]
    with netns.entered(ctr.path):
        with pytest.raises(AssertionError):  # arp_notify off: we send, through a packet socket
            link.announce_new_mac("eth0", "c2:00:00:00:00:0e", address)
        with open("/proc/sys/net/ipv4/conf/eth0/arp_notify", "w") as f:
            f.write("1")
        link.announce_new_mac("eth0", "c2:00:00:00:00:0e", address)  # the kernel did: no socket


def test_del_restores_what_go_saved(source_plugins, go_plugins, make_netns, tmp_path):
    a = on_veth(go_plugins, make_netns, tmp_path)
    before = a.view()
    a.run("ADD", a.conf(mac="c2:00:00:00:00:09", mtu=1280, promisc=True)).ok()
    a.plugins = source_plugins
    a.run("DEL", a.conf()).ok()
    assert a.view() == before and a.saved_files() == []


# ---- ours -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_every_version(plugins, make_netns, tmp_path, version):
    a = on_veth(plugins, make_netns, tmp_path, version)
    before = a.view()
    conf = a.conf(version, mac="C2:00:00:00:00:0A", mtu=1400)
    result = a.run("ADD", conf).ok().json
    assert result["cniVersion"] == version
    if version in ("0.1.0", "0.2.0"):
        assert result["ip4"] == {"ip": "10.77.0.2/24", "gateway": "10.77.0.1"}
    else:
        assert result["interfaces"] == [{"name": "eth0", "mac": "C2:00:00:00:00:0A", "sandbox": a.ctr.path}]
    if version >= "0.4.0":
        a.run("CHECK", {**conf, "prevResult": result}).ok()
    if version >= "1.1.0":
        a.run("STATUS", conf).ok()
        a.run("GC", {**conf, "cni.dev/valid-attachments": []}).ok()
    a.run("DEL", conf).ok()
    assert a.view() == before and a.saved_files() == []
    a.run("DEL", conf).ok()


def test_txqlen_applied_checked_and_restored(plugins, make_netns, tmp_path):
    """HEAD applies txQLen (1.1.1 ignores it); also from args.cni."""
    a = on_veth(plugins, make_netns, tmp_path)
    before = a.view()
    for keys, want in ((dict(txQLen=500), 500), (dict(txQLen=500, args={"cni": {"txQLen": 0}}), 0)):
        conf = a.conf(**keys)
        result = a.run("ADD", conf).ok().json
        assert a.view() == {**before, "txqlen": want}
        a.run("CHECK", {**conf, "prevResult": result}).ok()
        a.ctr.run("ip", "link", "set", "eth0", "txqueuelen", "42")
        drift = a.run("CHECK", {**conf, "prevResult": result})
        assert drift.status == 1 and "transmit queue length is 42" in drift.json["msg"]
        a.ctr.run("ip", "link", "set", "eth0", "txqueuelen", str(want))
        a.run("DEL", conf).ok()
        assert a.view() == before


def test_check_notices_drift_and_expands_ifname(plugins, make_netns, tmp_path):
    a = on_veth(plugins, make_netns, tmp_path)
    conf = a.conf(mtu=1400, promisc=True, sysctl={"net.ipv4.conf.IFNAME.arp_filter": "1",
                                                  "net.ipv4.tcp_rmem": "4096 65536 1000000"})
    conf["prevResult"] = a.run("ADD", conf).ok().json
    a.run("CHECK", conf).ok()  # the kernel prints tcp_rmem with tabs: still the same value
    for change, undo, text in ((("link", "set", "eth0", "mtu", "1450"), ("link", "set", "eth0", "mtu", "1400"),
                                "MTU is 1450, configured 1400"),
                               (("link", "set", "eth0", "promisc", "off"), ("link", "set", "eth0", "promisc", "on"),
                                "promiscuous mode is off, configured on")):
        a.ctr.run("ip", *change)
        out = a.run("CHECK", conf)
        assert out.status == 1 and out.json["code"] == 999 and text in out.json["msg"], out.out
        a.ctr.run("ip", *undo)
    a.ctr.run("sh", "-c", "echo 0 > /proc/sys/net/ipv4/conf/eth0/arp_filter")
    out = a.run("CHECK", conf)
    assert out.status == 1 and "net.ipv4.conf.IFNAME.arp_filter is '0', configured '1'" in out.json["msg"]
    missing = a.run("CHECK", {**conf, "prevResult": None})
    assert missing.status == 1 and missing.json["code"] == 7
    a.run("DEL", conf).ok()


def test_failed_add_puts_everything_back(plugins, make_netns, tmp_path):
    """The kernel refuses the MTU after the sysctls, MAC and modes changed: all of it comes back."""
    a = on_veth(plugins, make_netns, tmp_path)
    before = a.view()
    conf = a.conf(mac="c2:00:00:00:00:0b", promisc=True, allmulti=True, mtu=70000, sysctl=SYSCTLS)
    out = a.run("ADD", conf)
    assert out.status == 1 and out.json["code"] == 7 and "MTU" in out.json["msg"], out.out
    assert "Traceback" not in out.err
    assert a.view() == before and a.saved_files() == []
    # A sysctl the kernel does not have, after one it has.
    out = a.run("ADD", a.conf(mtu=1400, sysctl={"net.ipv4.conf.IFNAME.arp_filter": "1", "net.ipv4.no_such_knob": "1"}))
    assert out.status == 1 and out.json["code"] == 7 and "no_such_knob" in out.json["msg"], out.out
    assert a.view() == before and a.saved_files() == []


def test_killed_after_saving_then_del_cleans_up(plugins, make_netns, tmp_path):
    a = on_veth(plugins, make_netns, tmp_path)
    before = a.view()
    conf = a.conf(mtu=1400)
    out = a.run("ADD", conf, env={"PYCNI_TEST_KILL_AT": "backup"})
    assert out.status == -9 and a.saved_files() == [f"{CID}_eth0.json"] and a.view() == before
    a.run("DEL", conf).ok()
    assert a.view() == before and a.saved_files() == []


def test_del_without_netns_or_after_it_is_gone_drops_the_file(plugins, make_netns, tmp_path):
    a = on_veth(plugins, make_netns, tmp_path)
    conf = a.conf(mtu=1400)
    a.run("ADD", conf).ok()
    a.run("DEL", conf, netns="").ok()  # containerd: nothing to restore into, the file still goes
    assert a.saved_files() == [] and a.view()["mtu"] == 1400
    a.run("ADD", conf).ok()
    gone = a.ctr.path
    a.ctr.remove()
    a.run("DEL", conf, netns=gone).ok()
    assert a.saved_files() == []


def test_sysctl_from_args_alone_and_interface_names_with_dots(plugins, make_netns, tmp_path):
    """args.cni.sysctl without a sysctl map (the reference panicked), on an interface named net.1."""
    a = on_veth(plugins, make_netns, tmp_path, ifname="net.1")
    path = "/proc/sys/net/ipv4/conf/net.1/arp_filter"
    assert a.ctr.run("cat", path).stdout.strip() == "0"
    conf = a.conf(args={"cni": {"sysctl": {"net.ipv4.conf.IFNAME.arp_filter": "1"}}})
    a.run("ADD", conf).ok()
    assert a.ctr.run("cat", path).stdout.strip() == "1"
    a.run("DEL", conf).ok()
    assert a.ctr.run("cat", path).stdout.strip() == "0" and a.saved_files() == []


@pytest.mark.parametrize("keys,text", [
    (dict(sysctl={"kernel.hostname": "x"}), 'invalid net sysctl key: "kernel.hostname"'),
    (dict(sysctl={"net": "x"}), "invalid net sysctl key"),
    (dict(sysctl={"net.ipv4.conf.IFNAME.arp_filter": "1", "net/ipv4/conf/IFNAME/arp_filter": "0"}), "same setting"),
    (dict(sysctl={"net.core.somaxconn": 100}), "sysctl.net.core.somaxconn must be a string"),
    (dict(args={"cni": {"sysctl": {"kernel.hostname": "x"}}}), "invalid net sysctl key"),
    (dict(mac="c2:00:00:00:00"), "invalid mac address"),
    (dict(mac="01:00:5e:00:00:01"), "MAC address"),
    (dict(mtu=-1), "mtu"),
    (dict(txQLen=-1), "txQLen"),
    (dict(promisc="yes"), "promisc must be a boolean"),
    (dict(dataDir="relative"), "dataDir"),
    (dict(prevResult=None), "prevResult"),
])
def test_bad_configuration_is_code_7_and_changes_nothing(source_plugins, make_netns, tmp_path, keys, text):
    a = on_veth(source_plugins, make_netns, tmp_path)
    before = a.view()
    out = a.run("ADD", {**a.conf(sysctl={"net.ipv4.conf.IFNAME.arp_filter": "1"}, mtu=1400), **keys})
    assert out.status == 1 and out.json["code"] == 7 and text in out.json["msg"], out.out
    assert a.view() == before and a.saved_files() == []


def test_duplicated_sysctl_keys_are_refused(source_plugins, make_netns, tmp_path):
    a = on_veth(source_plugins, make_netns, tmp_path)
    text = json.dumps(a.conf(mtu=1400))[:-1] + \
        ', "sysctl": {"net.core.somaxconn": "1000", "net.core.somaxconn": "2000"}}'
    out = a.run("ADD", text)
    assert out.status == 1 and out.json["code"] == 7 and 'duplicated sysctl key "net.core.somaxconn"' in out.json["msg"]
    assert a.saved_files() == []


ALLOWLIST_WRAPPER = ("unshare", "--mount", "--propagation", "private", "sh", "-c",
                     'mount -t tmpfs pycni-test /etc/cni && mkdir /etc/cni/tuning && '
                     'printf "%s\\n" "$ALLOW" > /etc/cni/tuning/allowlist.conf && exec "$@"', "allowlist")


def test_allowlist_file(plugins, make_netns, tmp_path):
    """The fixed path /etc/cni/tuning/allowlist.conf, given in a private mount namespace only."""
    if not os.path.isdir("/etc/cni"):
        pytest.skip("/etc/cni does not exist here to mount the test's allow-list over")
    a = on_veth(plugins, make_netns, tmp_path)
    before = a.view()
    env = {"ALLOW": "^net\\.ipv4\\.conf\\.IFNAME\\.[a-z_]*$\n^net\\.core\\.somaxconn$"}
    allowed = a.conf(sysctl={"net.ipv4.conf.IFNAME.arp_filter": "1", "net.core.somaxconn": "1000"})
    a.run("ADD", allowed, wrapper=ALLOWLIST_WRAPPER, env=env).ok()
    a.run("DEL", allowed).ok()
    refused = a.conf(mtu=1400, sysctl={"net.ipv4.conf.IFNAME.arp_filter": "1", "net.ipv4.ip_forward": "1"})
    out = a.run("ADD", refused, wrapper=ALLOWLIST_WRAPPER, env=env)
    assert out.status == 1 and out.json["code"] == 7 and "net.ipv4.ip_forward is not allowed" in out.json["msg"]
    assert a.view() == before and a.saved_files() == []
    a.run("ADD", refused).ok()  # the same call outside the private namespace: no list, any net. key
    a.run("DEL", refused).ok()
    assert a.view() == before
