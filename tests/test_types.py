"""Result conversion between every spec version (pure logic)."""
from __future__ import annotations

import ipaddress
import json

import pytest

from cni.errors import CNIError
from cni.types import DNS, Interface, IPConfig, Result, Route
from conftest import ALL_VERSIONS

LEGACY = ("0.1.0", "0.2.0")


def sample() -> Result:
    return Result(
        interfaces=[Interface("cni0", "aa:bb:cc:dd:ee:01"), Interface("eth0", "aa:bb:cc:dd:ee:02", "/run/netns/x", mtu=1400)],
        ips=[
            IPConfig(ipaddress.ip_interface("10.1.0.5/16"), ipaddress.ip_address("10.1.0.1"), 1),
            IPConfig(ipaddress.ip_interface("10.2.0.5/24"), None, 1),
            IPConfig(ipaddress.ip_interface("fd00::5/64"), ipaddress.ip_address("fd00::1"), 1),
        ],
        routes=[Route(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_address("10.1.0.1")),
                Route(ipaddress.ip_network("::/0"), priority=5, table=100)],
        dns=DNS(nameservers=["1.1.1.1"], search=["a.b"]),
    )


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_round_trip_every_version(version):
    printed = sample().to_dict(version)
    assert printed["cniVersion"] == version
    back = Result.from_dict(json.loads(json.dumps(printed)))
    assert back.cni_version == version
    if version in LEGACY:
        # legacy keeps the first address of each family only
        assert [str(i.address) for i in back.ips] == ["10.1.0.5/16", "fd00::5/64"]
        assert back.interfaces == []
    else:
        assert [str(i.address) for i in back.ips] == ["10.1.0.5/16", "10.2.0.5/24", "fd00::5/64"]
        assert [i.interface for i in back.ips] == [1, 1, 1]
        assert back.interfaces[1].sandbox == "/run/netns/x"
    assert {str(r.dst) for r in back.routes} == {"0.0.0.0/0", "::/0"}
    assert back.dns.nameservers == ["1.1.1.1"]


def test_legacy_shape_splits_routes_by_family():
    out = sample().to_dict("0.2.0")
    assert set(out) == {"cniVersion", "ip4", "ip6", "dns"}
    assert out["ip4"] == {"ip": "10.1.0.5/16", "gateway": "10.1.0.1",
                          "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]}
    assert out["ip6"] == {"ip": "fd00::5/64", "gateway": "fd00::1", "routes": [{"dst": "::/0"}]}


@pytest.mark.parametrize("version", ("0.3.0", "0.3.1", "0.4.0"))
def test_03x_has_version_field(version):
    ips = sample().to_dict(version)["ips"]
    assert [i["version"] for i in ips] == ["4", "4", "6"]


@pytest.mark.parametrize("version", ("1.0.0", "1.1.0"))
def test_1x_has_no_version_field(version):
    assert all("version" not in i for i in sample().to_dict(version)["ips"])


def test_11_only_fields():
    assert sample().to_dict("1.1.0")["routes"][1] == {"dst": "::/0", "priority": 5, "table": 100}
    assert sample().to_dict("1.0.0")["routes"][1] == {"dst": "::/0"}
    assert sample().to_dict("1.1.0")["interfaces"][1]["mtu"] == 1400
    assert "mtu" not in sample().to_dict("1.0.0")["interfaces"][1]


@pytest.mark.parametrize("version", LEGACY)
def test_legacy_without_addresses_cannot_convert(version):
    with pytest.raises(CNIError) as err:
        Result(interfaces=[Interface("eth0")]).to_dict(version)
    assert err.value.msg == "cannot convert: no valid IP addresses"


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_empty_dns_is_printed_as_object(version):
    r = Result(ips=[IPConfig(ipaddress.ip_interface("10.0.0.2/24"))])
    assert r.to_dict(version)["dns"] == {}


def test_result_without_version_takes_default():
    r = Result.from_dict({"ips": [{"address": "10.0.0.2/24"}]}, default_version="1.0.0")
    assert r.cni_version == "1.0.0"
    r = Result.from_dict({"ip4": {"ip": "10.0.0.2/24"}})
    assert r.cni_version == "0.1.0" and str(r.ips[0].address) == "10.0.0.2/24"


@pytest.mark.parametrize("bad", [
    [], {"cniVersion": "2.0.0"}, {"cniVersion": "1.0.0", "ips": "x"},
    {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2"}]},
    {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24", "gateway": "fd00::1"}]},
    {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24", "interface": 3}]},
    {"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "10.0.0.2/24"}]},
    {"cniVersion": "1.0.0", "routes": [{"gw": "10.0.0.1"}]},
    {"cniVersion": "0.2.0", "ip4": {"ip": "fd00::1/64"}},
    {"cniVersion": "1.0.0", "dns": {"nameservers": "1.1.1.1"}},
])
def test_malformed_results_are_rejected(bad):
    with pytest.raises(ValueError):
        Result.from_dict(bad)
    with pytest.raises(CNIError) as err:
        Result.from_json(json.dumps(bad))
    assert err.value.code == 6


def test_route_host_bits_are_masked():
    assert str(Route.from_dict({"dst": "10.1.2.3/8"}).dst) == "10.0.0.0/8"
