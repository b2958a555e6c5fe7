"""host-local, in process: configuration validation, the allocator, the store."""
from __future__ import annotations

import ipaddress
import os
import threading

import pytest

from cni.errors import CNIError
from cni.hostlocal import config
from cni.hostlocal.allocator import allocate, capacity, free_count, next_free
from cni.hostlocal.store import Store, lease_name, parse_owner

from conftest import ALL_VERSIONS

ip = ipaddress.ip_address


def conf(ipam: dict, version: str = "1.0.0", **top) -> dict:
    raw = {"cniVersion": version, "name": "net", "type": "host-local", "ipam": {"type": "host-local", **ipam}}
    raw.update(top)
    return raw


def parse(ipam: dict, version: str = "1.0.0", env_ip: str = "", **top) -> config.HostLocalConf:
    return config.parse(conf(ipam, version, **top), version, env_ip)


def invalid(ipam: dict, version: str = "1.0.0", env_ip: str = "", **top) -> str:
    with pytest.raises(CNIError) as info:
        c = parse(ipam, version, env_ip, **top)
        config.assign_requested(c.range_sets, c.requested)
    assert info.value.code == 7
    return info.value.msg


# ---- parsing and defaults ------------------------------------------------------------


def test_defaults_ipv4():
    (rs,) = parse({"ranges": [[{"subnet": "10.1.2.0/24"}]]}).range_sets
    (r,) = rs.ranges
    assert (r.start, r.end, r.gateway) == (ip("10.1.2.1"), ip("10.1.2.254"), ip("10.1.2.1"))


def test_defaults_ipv6_end_is_last_address():
    (rs,) = parse({"ranges": [[{"subnet": "fd00:1::/64"}]]}).range_sets
    r = rs.ranges[0]
    assert (r.start, r.end, r.gateway) == (ip("fd00:1::1"), ip("fd00:1::ffff:ffff:ffff:ffff"), ip("fd00:1::1"))


def test_explicit_range_and_gateway():
    (rs,) = parse({"ranges": [[{"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.10", "rangeEnd": "10.1.2.20",
                                "gateway": "10.1.2.254"}]]}).range_sets
    r = rs.ranges[0]
    assert (str(r.start), str(r.end), str(r.gateway)) == ("10.1.2.10", "10.1.2.20", "10.1.2.254")


def test_order_runtime_then_legacy_then_ranges():
    c = parse({"subnet": "10.5.0.0/24", "rangeStart": "10.5.0.9", "ranges": [[{"subnet": "10.6.0.0/24"}]]},
              runtimeConfig={"ipRanges": [[{"subnet": "10.9.0.0/24"}]]})
    assert [str(s.ranges[0].subnet) for s in c.range_sets] == ["10.9.0.0/24", "10.5.0.0/24", "10.6.0.0/24"]
    assert str(c.range_sets[1].ranges[0].start) == "10.5.0.9"


def test_dual_stack_and_routes_and_data_dir():
    c = parse({"ranges": [[{"subnet": "10.1.0.0/16"}], [{"subnet": "fd00::/64"}]], "dataDir": "/tmp/x/",
               "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0", "gw": "fd00::9"}]})
    assert [s.family for s in c.range_sets] == [4, 6]
    assert [str(r.dst) for r in c.routes] == ["0.0.0.0/0", "::/0"] and str(c.routes[1].gw) == "fd00::9"
    assert c.data_dir == "/tmp/x"
    assert parse({"subnet": "10.1.0.0/16"}).data_dir == "/var/lib/cni/networks"


@pytest.mark.parametrize("ipam, fragment", [
    ({}, "no IP ranges specified"),
    ({"ranges": [[]]}, "ipam.ranges[0] is empty"),
    ({"ranges": [[{}]]}, "subnet is required"),
    ({"ranges": [[{"subnet": "10.1.2.0"}]]}, "needs a prefix length"),
    ({"ranges": [[{"subnet": "banana/24"}]]}, "invalid subnet"),
    ({"ranges": [[{"subnet": "10.1.2.1/24"}]]}, "has host bits set; the network address is 10.1.2.0/24"),
    ({"ranges": [[{"subnet": "10.1.2.0/31"}]]}, "too small"),
    ({"ranges": [[{"subnet": "10.1.2.0/32"}]]}, "too small"),
    ({"ranges": [[{"subnet": "fd00::/127"}]]}, "too small"),
    ({"ranges": [[{"subnet": "fd00::/128"}]]}, "too small"),
    ({"ranges": [[{"subnet": "10.1.2.0/24", "rangeStart": "10.1.3.1"}]]}, "rangeStart 10.1.3.1 is not in subnet"),
    ({"ranges": [[{"subnet": "10.1.2.0/24", "rangeEnd": "10.1.3.1"}]]}, "rangeEnd 10.1.3.1 is not in subnet"),
    ({"ranges": [[{"subnet": "10.1.2.0/24", "gateway": "10.1.3.1"}]]}, "gateway 10.1.3.1 is not in subnet"),
    ({"ranges": [[{"subnet": "10.1.2.0/24", "rangeStart": "fd00::1"}]]}, "is not in subnet"),
    ({"ranges": [[{"subnet": "10.1.2.0/24", "rangeStart": "x"}]]}, "rangeStart: invalid IP address"),
    ({"ranges": [[{"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.9", "rangeEnd": "10.1.2.3"}]]},
     "rangeStart 10.1.2.9 is after rangeEnd 10.1.2.3"),
    ({"ranges": [[{"subnet": "10.1.2.0/24", "rangeEnd": "10.1.2.10"},
                  {"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.10"}]]}, "overlap"),
    ({"ranges": [[{"subnet": "10.1.2.0/24"}, {"subnet": "fd00::/64"}]]}, "mixed address families"),
    ({"ranges": [[{"subnet": "10.1.0.0/16"}], [{"subnet": "10.1.2.0/24"}]]}, "range set 0 (10.1.0.1-10.1.255.254) overlaps with range set 1"),
    ({"subnet": "10.1.2.0/24", "ranges": [[{"subnet": "10.1.2.0/24"}]]}, "range set 0"),
    ({"ranges": "10.1.2.0/24"}, "ipam.ranges must be a list"),
    ({"ranges": [{"subnet": "10.1.2.0/24"}]}, "must be a list of ranges"),
    ({"ranges": [[{"subnet": "10.1.2.0/24"}]], "routes": [{"dst": "nope"}]}, "ipam.routes[0]"),
    ({"ranges": [[{"subnet": "10.1.2.0/24"}]], "dataDir": "relative/dir"}, "dataDir must be an absolute path"),
    ({"ranges": [[{"subnet": "10.1.2.0/24"}]], "dataDir": "/var/lib/../../etc"}, "without '..'"),
])
def test_invalid_configs(ipam, fragment):
    assert fragment in invalid(ipam)


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_one_address_per_family_before_030(version):
    two_v4 = {"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "10.2.0.0/24"}]]}
    dual = {"ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]]}
    assert len(parse(dual, version).range_sets) == 2
    if version in ("0.1.0", "0.2.0"):
        assert invalid(two_v4, version) == f"CNI version {version} does not support more than 1 address per family"
    else:
        assert len(parse(two_v4, version).range_sets) == 2


# ---- requested addresses ----------------------------------------------------------------

RANGES = {"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "fd00::/64"}]]}


def test_requested_from_all_sources_in_order():
    c = parse(RANGES, env_ip="10.1.2.7", args={"cni": {"ips": ["fd00::7/64"]}},
              runtimeConfig={"ips": ["10.1.2.7/24"]})
    assert [str(i) for i in c.requested] == ["10.1.2.7", "fd00::7"]
    assert {k: str(v) for k, v in config.assign_requested(c.range_sets, c.requested).items()} == {0: "10.1.2.7", 1: "fd00::7"}


def test_requested_comma_separated_env():
    c = parse(RANGES, env_ip="10.1.2.7,fd00::8")
    assert [str(i) for i in c.requested] == ["10.1.2.7", "fd00::8"]


@pytest.mark.parametrize("env_ip, fragment", [
    ("10.1.2.1", "requested IP 10.1.2.1 is the gateway of range set 0"),
    ("10.9.9.9", "requested IP 10.9.9.9 is not in any range set"),
    ("10.1.2.7,10.1.2.8", "both fall in range set 0"),
    ("banana", "CNI_ARGS IP: invalid IP address"),
])
def test_requested_invalid(env_ip, fragment):
    assert fragment in invalid(RANGES, env_ip=env_ip)


def test_requested_network_or_broadcast_in_explicit_range():
    ipam = {"ranges": [[{"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.0", "rangeEnd": "10.1.2.255"}]]}
    for address in ("10.1.2.0", "10.1.2.255"):
        assert "network or broadcast" in invalid(ipam, env_ip=address)


# ---- resolv.conf ----------------------------------------------------------------------


def test_resolv_conf(tmp_path):
    f = tmp_path / "resolv.conf"
    f.write_text("# comment\nnameserver 1.1.1.1\n; other\nnameserver fd00::53\ndomain ex.com\n"
                 "search a.example b.example\noptions ndots:2 edns0\nsortlist 1.2.3.4\n")
    dns = config.read_resolv_conf(str(f))
    assert dns.nameservers == ["1.1.1.1", "fd00::53"] and dns.domain == "ex.com"
    assert dns.search == ["a.example", "b.example"] and dns.options == ["ndots:2", "edns0"]


def test_resolv_conf_missing(tmp_path):
    with pytest.raises(CNIError) as info:
        config.read_resolv_conf(str(tmp_path / "nope"))
    assert info.value.code == 7 and "could not read resolvConf" in info.value.msg


# ---- round robin ----------------------------------------------------------------------


def rset(*ranges: dict) -> config.RangeSet:
    return config.parse_range_set(list(ranges), "test")


def test_next_free_starts_at_range_start_and_skips_gateway():
    rs = rset({"subnet": "10.0.0.0/24"})
    assert str(next_free(rs, {}, None)) == "10.0.0.2"  # .1 is the gateway


def test_next_free_round_robin_and_wrap():
    rs = rset({"subnet": "10.0.0.0/29"})  # usable .2 .. .6
    assert str(next_free(rs, {}, ip("10.0.0.3"))) == "10.0.0.4"
    assert str(next_free(rs, {}, ip("10.0.0.6"))) == "10.0.0.2"  # wraps past the gateway
    taken = {ip("10.0.0.2"): ("a", "eth0"), ip("10.0.0.3"): ("b", "eth0")}
    assert str(next_free(rs, taken, ip("10.0.0.6"))) == "10.0.0.4"
    # the last reserved address itself comes last
    taken = {ip(f"10.0.0.{n}"): ("x", "eth0") for n in (2, 3, 5, 6)}
    assert str(next_free(rs, taken, ip("10.0.0.4"))) == "10.0.0.4"


def test_next_free_last_outside_set_starts_over():
    rs = rset({"subnet": "10.0.0.0/29"})
    assert str(next_free(rs, {}, ip("192.168.0.1"))) == "10.0.0.2"
    assert str(next_free(rs, {}, ip("fd00::1"))) == "10.0.0.2"


def test_next_free_walks_ranges_of_a_set_in_order():
    rs = rset({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.10", "rangeEnd": "10.0.0.11"},
              {"subnet": "10.0.1.0/24", "rangeStart": "10.0.1.5", "rangeEnd": "10.0.1.5", "gateway": "10.0.1.100"})
    assert str(next_free(rs, {}, ip("10.0.0.11"))) == "10.0.1.5"
    assert str(next_free(rs, {}, ip("10.0.1.5"))) == "10.0.0.10"
    assert capacity(rs) == 3


def test_next_free_skips_network_and_broadcast_of_explicit_range():
    rs = rset({"subnet": "10.0.0.0/30", "rangeStart": "10.0.0.0", "rangeEnd": "10.0.0.3", "gateway": "10.0.0.1"})
    assert capacity(rs) == 1
    assert str(next_free(rs, {}, None)) == "10.0.0.2"
    assert str(next_free(rs, {}, ip("10.0.0.2"))) == "10.0.0.2"
    assert next_free(rs, {ip("10.0.0.2"): ("a", "e")}, None) is None


def test_next_free_ipv6():
    rs = rset({"subnet": "fd00:1::/126"})  # ::1 gateway, ::2 ::3 usable (no broadcast in IPv6)
    assert str(next_free(rs, {}, None)) == "fd00:1::2"
    assert str(next_free(rs, {}, ip("fd00:1::2"))) == "fd00:1::3"
    assert next_free(rs, {ip("fd00:1::2"): (), ip("fd00:1::3"): ()}, None) is None


def test_free_count():
    rs = rset({"subnet": "10.0.0.0/29", "rangeStart": "10.0.0.0", "rangeEnd": "10.0.0.7"})
    taken = {ip("10.0.0.3"): (), ip("10.0.0.1"): (), ip("10.9.0.3"): (), ip("fd00::3"): ()}
    assert capacity(rs) == 5 and free_count(rs, taken) == 4  # the gateway lease does not count


def test_huge_ranges_are_never_walked():
    rs = rset({"subnet": "fd00::/64"})
    assert capacity(rs) == 2**64 - 2  # network (subnet-router anycast) and gateway excluded
    assert str(next_free(rs, {}, ip("fd00::ffff:ffff:ffff:fffe"))) == "fd00::ffff:ffff:ffff:ffff"
    assert str(next_free(rs, {}, ip("fd00::ffff:ffff:ffff:ffff"))) == "fd00::2"  # wrap, skipping gateway
    tiny = rset({"subnet": "10.0.0.0/30"})
    assert next_free(tiny, {ip("10.0.0.2"): ()}, ip("10.0.0.2")) is None


# ---- allocate() against a real store ----------------------------------------------------


def alloc(c: config.HostLocalConf, data_dir, cid: str, ifname: str = "eth0") -> list[str]:
    with Store(str(data_dir), c.name) as store:
        return [str(x.address) for x in allocate(c, store, cid, ifname)]


def test_allocate_round_robin_wrap_and_exhaustion(data_dir):
    c = parse({"ranges": [[{"subnet": "10.0.0.0/29"}]], "dataDir": str(data_dir)})
    got = [alloc(c, data_dir, f"c{i}")[0] for i in range(5)]
    assert got == [f"10.0.0.{n}/29" for n in (2, 3, 4, 5, 6)]
    with pytest.raises(CNIError) as info:
        alloc(c, data_dir, "c9")
    assert info.value.code == 7 and info.value.msg == "no IP addresses available in range set: 10.0.0.1-10.0.0.6"
    os.unlink(data_dir / "net" / "10.0.0.3")
    assert alloc(c, data_dir, "c10") == ["10.0.0.3/29"]
    assert (data_dir / "net" / "last_reserved_ip.0").read_bytes() == b"10.0.0.3"


def test_allocate_does_not_reuse_released_address_immediately(data_dir):
    c = parse({"ranges": [[{"subnet": "10.0.0.0/24"}]], "dataDir": str(data_dir)})
    assert alloc(c, data_dir, "a") == ["10.0.0.2/24"]
    os.unlink(data_dir / "net" / "10.0.0.2")
    assert alloc(c, data_dir, "b") == ["10.0.0.3/24"]


def test_allocate_duplicate_is_refused(data_dir):
    c = parse({"ranges": [[{"subnet": "10.0.0.0/24"}]], "dataDir": str(data_dir)})
    alloc(c, data_dir, "a")
    with pytest.raises(CNIError) as info:
        alloc(c, data_dir, "a")
    assert info.value.msg == "10.0.0.2 has been allocated to a, duplicate allocation is not allowed"
    assert alloc(c, data_dir, "a", "eth1") == ["10.0.0.3/24"]  # another interface of the container is fine


def test_allocate_requested_and_taken(data_dir):
    c = parse({"ranges": [[{"subnet": "10.0.0.0/24"}]], "dataDir": str(data_dir)}, env_ip="10.0.0.50")
    assert alloc(c, data_dir, "a") == ["10.0.0.50/24"]
    assert (data_dir / "net" / "last_reserved_ip.0").read_bytes() == b"10.0.0.50"
    with pytest.raises(CNIError) as info:
        alloc(c, data_dir, "b")
    assert info.value.code == 7
    assert info.value.msg == "requested IP address 10.0.0.50 is not available in range set 10.0.0.1-10.0.0.254"


def test_allocate_multiple_sets_is_all_or_nothing(data_dir):
    c = parse({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "fd00::/126"}], [{"subnet": "10.1.0.0/30"}]],
               "dataDir": str(data_dir)})
    assert alloc(c, data_dir, "a") == ["10.0.0.2/24", "fd00::2/126", "10.1.0.2/30"]
    before = sorted(os.listdir(data_dir / "net"))
    with pytest.raises(CNIError) as info:
        alloc(c, data_dir, "b")  # set 2 is full after set 0 and 1 reserved
    assert "10.1.0.1-10.1.0.2" in info.value.msg
    assert sorted(os.listdir(data_dir / "net")) == before


def test_allocate_dual_stack_gateways(data_dir):
    c = parse({"ranges": [[{"subnet": "10.0.0.0/24", "gateway": "10.0.0.2"}], [{"subnet": "fd00::/64"}]],
               "dataDir": str(data_dir)})
    with Store(str(data_dir), "net") as store:
        got = allocate(c, store, "a", "eth0")
    assert [(str(x.address), str(x.gateway)) for x in got] == [("10.0.0.1/24", "10.0.0.2"), ("fd00::2/64", "fd00::1")]


# ---- the store ---------------------------------------------------------------------------


def test_store_file_format(data_dir):
    with Store(str(data_dir), "net") as store:
        assert store.reserve(ip("fd00::5"), "ctr", "eth0")
        assert not store.reserve(ip("fd00::5"), "other", "eth0")
    f = data_dir / "net" / "fd00::5"
    assert f.read_bytes() == b"ctr\r\neth0"
    assert f.stat().st_mode & 0o777 == 0o600
    assert (data_dir / "net" / "lock").read_bytes() == b""
    assert sorted(os.listdir(data_dir / "net")) == ["fd00::5", "lock"]  # no temporary left


def test_store_legacy_and_foreign_files(data_dir):
    d = data_dir / "net"
    d.mkdir()
    (d / "10.0.0.5").write_text("legacy-ctr")
    (d / "10.0.0.6").write_text("ctr\r\neth1")
    (d / "not-an-ip").write_text("x")
    (d / "010.0.0.7").write_text("x")  # not Go's spelling of an address: not a lease
    with Store(str(data_dir), "net") as store:
        assert store.leases() == {ip("10.0.0.5"): ("legacy-ctr", ""), ip("10.0.0.6"): ("ctr", "eth1")}
        assert store.release_owner("legacy-ctr", "eth0") == [ip("10.0.0.5")]
        assert store.release_owner("ctr", "eth0") == []
    assert parse_owner(b"a\r\nb\n") == ("a", "b")
    assert lease_name("fd00:0::1") is None and lease_name("fd00::1") == ip("fd00::1")


def test_store_never_follows_symlinks(data_dir, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("secret")
    d = data_dir / "net"
    d.mkdir()
    os.symlink(victim, d / "10.0.0.2")
    os.symlink(victim, d / "last_reserved_ip.0")
    c = parse({"ranges": [[{"subnet": "10.0.0.0/24"}]], "dataDir": str(data_dir)})
    with Store(str(data_dir), "net") as store:
        assert store.leases() == {}  # a symlink is nobody's lease, and never read through
    assert alloc(c, data_dir, "a") == ["10.0.0.3/24"]  # the planted name counts as taken
    assert victim.read_text() == "secret"
    assert not os.path.islink(d / "last_reserved_ip.0")  # replaced, not written through


def test_store_refuses_escaping_names(data_dir):
    for name in ("..", ".", "a/b", ""):
        with pytest.raises(CNIError) as info:
            Store(str(data_dir), name)
        assert info.value.code == 7


def test_store_lock_serialises(data_dir):
    order = []
    store = Store(str(data_dir), "net").__enter__()

    def other():
        with Store(str(data_dir), "net"):
            order.append("other")

    t = threading.Thread(target=other)
    t.start()
    t.join(0.3)
    order.append("first")
    store.close()
    t.join(5)
    assert order == ["first", "other"]
