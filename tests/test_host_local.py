"""host-local as a process: every command and version, concurrency, and side by side with Go."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import ALL_VERSIONS, GO_VERSIONS

LEGACY = ("0.1.0", "0.2.0")


def run(plugin_set, command: str, conf, **kw):
    """host-local never enters the netns, but runtimes always name one for ADD and CHECK."""
    kw.setdefault("netns", "/var/run/netns/pycni-unused")
    return plugin_set.run("host-local", command, conf, **kw)


def netconf(data_dir, version: str = "1.0.0", name: str = "hl", ranges=None, **ipam) -> dict:
    ipam.setdefault("ranges", ranges or [[{"subnet": "10.10.0.0/24"}], [{"subnet": "fd00:10::/64"}]])
    return {"cniVersion": version, "name": name, "type": "host-local",
            "ipam": {"type": "host-local", "dataDir": str(data_dir), **ipam}}


def addresses(result: dict) -> list[str]:
    if "ips" in result:
        return [i["address"] for i in result["ips"]]
    return [result[k]["ip"] for k in ("ip4", "ip6") if k in result]


def leases(data_dir, name: str = "hl") -> dict[str, bytes]:
    d = data_dir / name
    return {f: (d / f).read_bytes() for f in sorted(os.listdir(d)) if f != "lock" and not f.startswith("last_")}


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_add_check_del_every_version(plugins, data_dir, version):
    conf = netconf(data_dir, version, routes=[{"dst": "0.0.0.0/0"}, {"dst": "::/0"}])
    res = run(plugins, "ADD", conf, containerid="c1").ok().json
    assert res["cniVersion"] == version
    assert addresses(res) == ["10.10.0.2/24", "fd00:10::2/64"]
    if version in LEGACY:
        assert res["ip4"]["gateway"] == "10.10.0.1" and res["ip4"]["routes"] == [{"dst": "0.0.0.0/0"}]
    else:
        assert [i.get("gateway") for i in res["ips"]] == ["10.10.0.1", "fd00:10::1"]
        assert ("version" in res["ips"][0]) == (version < "1.0.0")
        assert res["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    assert leases(data_dir) == {"10.10.0.2": b"c1\r\neth0", "fd00:10::2": b"c1\r\neth0"}

    if version >= "0.4.0":
        run(plugins, "CHECK", conf, containerid="c1").ok()
        missing = run(plugins, "CHECK", conf, containerid="c2")
        assert missing.status == 1 and missing.json["code"] == 3 and "c2" in missing.json["msg"]
    else:
        refused = run(plugins, "CHECK", conf, containerid="c1")
        assert refused.status == 1 and refused.json["code"] == 1

    run(plugins, "DEL", conf, containerid="c1").ok()
    assert leases(data_dir) == {}
    run(plugins, "DEL", conf, containerid="c1").ok()  # twice
    assert sorted(os.listdir(data_dir / "hl")) == ["last_reserved_ip.0", "last_reserved_ip.1", "lock"]


@pytest.mark.parametrize("version", LEGACY)
def test_legacy_versions_refuse_two_addresses_of_a_family(plugins, data_dir, version):
    conf = netconf(data_dir, version, ranges=[[{"subnet": "10.10.0.0/24"}], [{"subnet": "10.11.0.0/24"}]])
    out = run(plugins, "ADD", conf)
    assert out.status == 1 and out.json["code"] == 7
    assert out.json["msg"] == f"CNI version {version} does not support more than 1 address per family"
    assert not (data_dir / "hl").exists()


def test_round_robin_across_processes(plugins, data_dir):
    conf = netconf(data_dir, ranges=[[{"subnet": "10.10.0.0/29"}]])
    got = [addresses(run(plugins, "ADD", conf, containerid=f"c{i}").ok().json)[0] for i in range(5)]
    assert got == [f"10.10.0.{n}/29" for n in range(2, 7)]
    full = run(plugins, "ADD", conf, containerid="c9")
    assert full.status == 1 and full.json["code"] == 7
    assert full.json["msg"] == "no IP addresses available in range set: 10.10.0.1-10.10.0.6"
    run(plugins, "DEL", conf, containerid="c1").ok()
    assert addresses(run(plugins, "ADD", conf, containerid="c9").ok().json) == ["10.10.0.3/29"]


def test_duplicate_add_is_refused_and_leaves_nothing(plugins, data_dir):
    conf = netconf(data_dir)
    run(plugins, "ADD", conf, containerid="c1").ok()
    before = leases(data_dir)
    again = run(plugins, "ADD", conf, containerid="c1")
    assert again.status == 1 and again.json["code"] == 7 and "duplicate allocation is not allowed" in again.json["msg"]
    assert leases(data_dir) == before


def test_requested_ips_from_every_source(plugins, data_dir):
    conf = netconf(data_dir, "1.1.0")
    conf["args"] = {"cni": {"ips": ["fd00:10::50"]}}
    res = run(plugins, "ADD", conf, containerid="c1", args="IgnoreUnknown=1;IP=10.10.0.50").ok().json
    assert addresses(res) == ["10.10.0.50/24", "fd00:10::50/64"]
    conf2 = netconf(data_dir, "1.1.0")
    conf2["runtimeConfig"] = {"ips": ["10.10.0.60/24"]}
    assert addresses(run(plugins, "ADD", conf2, containerid="c2").ok().json)[0] == "10.10.0.60/24"
    taken = run(plugins, "ADD", conf2, containerid="c3")
    assert taken.status == 1 and taken.json["code"] == 7 and "10.10.0.60 is not available" in taken.json["msg"]
    for env_ip, fragment in (("10.10.0.1", "gateway"), ("10.99.0.1", "not in any range set")):
        out = run(plugins, "ADD", netconf(data_dir), containerid="c4", args=f"IP={env_ip}")
        assert out.status == 1 and out.json["code"] == 7 and fragment in out.json["msg"]
    assert sorted(leases(data_dir)) == ["10.10.0.50", "10.10.0.60", "fd00:10::50", "fd00:10::51"]  # round robin goes on after a requested address


def test_runtime_ip_ranges_are_prepended(plugins, data_dir):
    conf = netconf(data_dir, "1.1.0", ranges=[[{"subnet": "10.10.0.0/24"}]])
    conf["runtimeConfig"] = {"ipRanges": [[{"subnet": "10.20.0.0/24", "gateway": "10.20.0.254"}]]}
    res = run(plugins, "ADD", conf).ok().json
    assert [(i["address"], i["gateway"]) for i in res["ips"]] == [("10.20.0.1/24", "10.20.0.254"),
                                                                 ("10.10.0.2/24", "10.10.0.1")]


def test_resolv_conf_becomes_dns(plugins, data_dir, tmp_path):
    rc = tmp_path / "resolv.conf"
    rc.write_text("nameserver 10.0.0.53\nsearch svc.local\noptions ndots:5\ndomain local\n")
    res = run(plugins, "ADD", netconf(data_dir, resolvConf=str(rc))).ok().json
    assert res["dns"] == {"nameservers": ["10.0.0.53"], "domain": "local", "search": ["svc.local"],
                          "options": ["ndots:5"]}


@pytest.mark.parametrize("ipam, fragment", [
    ({"ranges": [[{"subnet": "10.10.0.1/24"}]]}, "host bits set"),
    ({"ranges": [[{"subnet": "10.10.0.0/24"}, {"subnet": "fd00::/64"}]]}, "mixed address families"),
    ({"ranges": [[{"subnet": "10.10.0.0/16"}], [{"subnet": "10.10.1.0/24"}]]}, "overlaps"),
    ({"ranges": [[{"subnet": "10.10.0.0/24"}]], "resolvConf": "/nonexistent/resolv.conf"}, "resolvConf"),
])
def test_invalid_config_is_code_7_and_leaves_nothing(plugins, data_dir, ipam, fragment):
    out = run(plugins, "ADD", netconf(data_dir, **ipam))
    assert out.status == 1 and out.json["code"] == 7 and fragment in out.json["msg"], out.out
    assert os.listdir(data_dir) == []


def test_del_is_forgiving(plugins, data_dir):
    conf = netconf(data_dir)
    run(plugins, "DEL", conf, containerid="never").ok()  # no network directory at all
    run(plugins, "DEL", netconf(data_dir / "missing"), containerid="never").ok()
    broken = netconf(data_dir, ranges=[[{"subnet": "garbage"}]])
    run(plugins, "ADD", conf, containerid="c1").ok()
    run(plugins, "DEL", broken, containerid="c1").ok()  # ranges changed since: still released
    assert leases(data_dir) == {}


def test_del_releases_legacy_lease_and_only_that_interface(plugins, data_dir):
    conf = netconf(data_dir, ranges=[[{"subnet": "10.10.0.0/24"}]])
    (data_dir / "hl").mkdir()
    (data_dir / "hl" / "10.10.0.9").write_bytes(b"c1")
    run(plugins, "ADD", conf, containerid="c1", ifname="eth1").ok()
    run(plugins, "DEL", conf, containerid="c1", ifname="eth0").ok()
    assert leases(data_dir) == {"10.10.0.2": b"c1\r\neth1"}


def test_gc_frees_stale_reservations_only(plugins, data_dir):
    conf = netconf(data_dir, "1.1.0")
    for cid in ("keep", "stale"):
        run(plugins, "ADD", conf, containerid=cid).ok()
    (data_dir / "hl" / "10.10.0.99").write_bytes(b"legacy-keep")
    (data_dir / "hl" / "10.10.0.98").write_bytes(b"legacy-stale")
    (data_dir / "hl" / ".pycni-tmp-0123").write_bytes(b"half")
    gc = dict(conf, **{"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"},
                                                    {"containerID": "legacy-keep", "ifname": "eth0"}]})
    run(plugins, "GC", gc).ok()
    assert sorted(os.listdir(data_dir / "hl")) == ["10.10.0.2", "10.10.0.99", "fd00:10::2", "last_reserved_ip.0",
                                                  "last_reserved_ip.1", "lock"]
    run(plugins, "GC", dict(conf, **{"cni.dev/valid-attachments": []})).ok()
    assert sorted(os.listdir(data_dir / "hl")) == ["last_reserved_ip.0", "last_reserved_ip.1", "lock"]


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_gc_and_status_need_110(plugins, data_dir, version):
    conf = netconf(data_dir, version, ranges=[[{"subnet": "10.10.0.0/30"}]])
    for command in ("GC", "STATUS"):
        out = run(plugins, command, conf)
        if version == "1.1.0":
            out.ok()
        else:
            assert out.status == 1 and out.json["code"] == 1


def test_status_reports_exhaustion_and_unusable_data_dir(plugins, data_dir):
    conf = netconf(data_dir, "1.1.0", ranges=[[{"subnet": "10.10.0.0/30"}]])
    run(plugins, "STATUS", conf).ok()
    run(plugins, "ADD", conf, containerid="c1").ok()
    full = run(plugins, "STATUS", conf)
    assert full.status == 1 and full.json["code"] == 50
    assert full.json["msg"] == "no IP addresses available in range set: 10.10.0.1-10.10.0.2"
    run(plugins, "DEL", conf, containerid="c1").ok()
    run(plugins, "STATUS", conf).ok()
    blocker = data_dir / "file"
    blocker.write_text("")
    bad = run(plugins, "STATUS", netconf(blocker, "1.1.0"))
    assert bad.status == 1 and bad.json["code"] == 50 and "data directory" in bad.json["msg"]


def test_concurrent_adds_get_distinct_addresses(plugins, data_dir):
    conf = netconf(data_dir, ranges=[[{"subnet": "10.10.0.0/24"}]])
    with ThreadPoolExecutor(max_workers=32) as pool:
        outs = list(pool.map(lambda i: run(plugins, "ADD", conf, containerid=f"c{i}"), range(32)))
    got = [addresses(o.ok().json)[0] for o in outs]
    assert len(set(got)) == 32
    files = leases(data_dir)
    assert len(files) == 32 and sorted(files.values()) == sorted(f"c{i}\r\neth0".encode() for i in range(32))
    assert not [f for f in os.listdir(data_dir / "hl") if f.startswith(".")]


# ---- side by side with Go host-local ----------------------------------------------------------


@pytest.mark.parametrize("version", GO_VERSIONS)
def test_go_then_ours_share_the_store(plugins, go_plugins, data_dir, version):
    conf = netconf(data_dir, version, ranges=[[{"subnet": "10.10.0.0/24"}], [{"subnet": "fd00:10::/64"}]])
    go = run(go_plugins, "ADD", conf, containerid="go1").ok().json
    ours = run(plugins, "ADD", conf, containerid="py1").ok().json
    assert addresses(go) == ["10.10.0.2/24", "fd00:10::2/64"]
    assert addresses(ours) == ["10.10.0.3/24", "fd00:10::3/64"]
    assert leases(data_dir) == {"10.10.0.2": b"go1\r\neth0", "10.10.0.3": b"py1\r\neth0",
                                "fd00:10::2": b"go1\r\neth0", "fd00:10::3": b"py1\r\neth0"}
    assert (data_dir / "hl" / "last_reserved_ip.1").read_bytes() == b"fd00:10::3"
    if version >= "0.4.0":
        run(plugins, "CHECK", conf, containerid="go1").ok()
        run(go_plugins, "CHECK", conf, containerid="py1").ok()
    run(plugins, "DEL", conf, containerid="go1").ok()
    run(go_plugins, "DEL", conf, containerid="py1").ok()
    assert leases(data_dir) == {}


def test_ours_then_go_continue_round_robin(plugins, go_plugins, data_dir):
    conf = netconf(data_dir, ranges=[[{"subnet": "10.10.0.0/29"}]])
    assert addresses(run(plugins, "ADD", conf, containerid="py1").ok().json) == ["10.10.0.2/29"]
    assert addresses(run(go_plugins, "ADD", conf, containerid="go1").ok().json) == ["10.10.0.3/29"]
    dup = run(go_plugins, "ADD", conf, containerid="py1")
    assert dup.status == 1 and "duplicate allocation" in dup.out  # Go sees our lease as py1's


def test_on_disk_bytes_identical_to_go(plugins, go_plugins, tmp_path):
    trees = {}
    for impl in (go_plugins, plugins):
        d = tmp_path / impl.kind
        d.mkdir()
        conf = netconf(d, ranges=[[{"subnet": "10.10.0.0/24", "rangeStart": "10.10.0.100"}],
                                  [{"subnet": "fd00:10::/64", "rangeStart": "fd00:10::a:0"}]])
        run(impl, "ADD", conf, containerid="c1", ifname="net1").ok()
        run(impl, "ADD", conf, containerid="c2", args="IP=10.10.0.200").ok()
        trees[impl.kind] = {f: (d / "hl" / f).read_bytes() for f in sorted(os.listdir(d / "hl"))}
    assert trees["go"] == trees[plugins.kind]
    assert trees["go"]["fd00:10::a:1"] == b"c2\r\neth0" and trees["go"]["lock"] == b""
