"""The result cache: libcni's file layout, both ways, and no path escapes."""
from __future__ import annotations

import base64
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cni.errors import CNIError
from cni.runtime.cache import Cache, Entry

# Written by libcni (podman 4.3, Debian) on this kind of machine for a bridge+host-local network.
LIBCNI_ENTRY = (
    b'{"kind":"cniCacheV1","containerId":"aa6160c71e678b6779cec7d4139408a0fff838e2b33c2c0e131ef2f011bc52f8",'
    b'"config":"eyJjbmlWZXJzaW9uIjoiMC40LjAiLCJuYW1lIjoicHljbml0ZXN0IiwicGx1Z2lucyI6W3sidHlwZSI6ImJyaWRnZSIsImJy'
    b'aWRnZSI6InBjbmkwIiwiaXNHYXRld2F5Ijp0cnVlLCJpcE1hc3EiOnRydWUsImhhaXJwaW5Nb2RlIjp0cnVlLCJpcGFtIjp7InR5cGUiOiJo'
    b'b3N0LWxvY2FsIiwiZGF0YURpciI6Ii90bXAvcG9kLWV4cC9pcGFtIiwicmFuZ2VzIjpbW3sic3VibmV0IjoiMTAuODguNy4wLzI0IiwiZ2F0'
    b'ZXdheSI6IjEwLjg4LjcuMSJ9XV0sInJvdXRlcyI6W3siZHN0IjoiMC4wLjAuMC8wIn1dfX1dfQo=","ifName":"eth0",'
    b'"networkName":"pycnitest","cniArgs":[["IgnoreUnknown","1"],["K8S_POD_NAME","c1"]],'
    b'"capabilityArgs":{"aliases":{"pycnitest":["aa6160c71e67"]}},"result":{"cniVersion":"0.4.0","dns":{},'
    b'"interfaces":[{"mac":"6a:53:c6:e6:c9:48","name":"pcni0"},{"mac":"c6:33:12:48:b8:ef","name":"veth2f7d0f25"},'
    b'{"mac":"c6:fc:9f:70:0c:cd","name":"eth0","sandbox":"/run/netns/netns-876c90bb-0348-5dfd-3aa8-76650e8b608d"}],'
    b'"ips":[{"address":"10.88.7.3/24","gateway":"10.88.7.1","interface":2,"version":"4"}],'
    b'"routes":[{"dst":"0.0.0.0/0"}]}}')


def test_a_libcni_entry_reads_and_writes_back_byte_for_byte():
    entry = Entry.from_bytes(LIBCNI_ENTRY)
    assert entry.container_id.startswith("aa6160c7") and entry.network == "pycnitest" and entry.ifname == "eth0"
    assert entry.cni_args == [("IgnoreUnknown", "1"), ("K8S_POD_NAME", "c1")]
    assert entry.capability_args == {"aliases": {"pycnitest": ["aa6160c71e67"]}}
    assert json.loads(entry.config)["name"] == "pycnitest"
    assert entry.result["ips"][0]["address"] == "10.88.7.3/24"
    assert entry.to_bytes() == LIBCNI_ENTRY


def test_written_entry_has_libcni_field_order_and_omits_empty_fields():
    entry = Entry(container_id="c1", network="n", ifname="eth0", config=b'{"x":1}', result={"b": 1, "a": 2})
    data = entry.to_bytes()
    assert data == (b'{"kind":"cniCacheV1","containerId":"c1","config":"' + base64.b64encode(b'{"x":1}')
                    + b'","ifName":"eth0","networkName":"n","result":{"a":2,"b":1}}')


def test_save_load_remove(tmp_path):
    cache = Cache(str(tmp_path))
    entry = Entry(container_id="c1", network="net", ifname="eth0", config=b"{}", netns="/run/netns/x",
                  cni_args=[("K", "V")], capability_args={"mac": "aa"}, result={"cniVersion": "1.0.0"})
    cache.save(entry)
    path = tmp_path / "results" / "net-c1-eth0"
    assert path.read_bytes() == entry.to_bytes()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "results").stat().st_mode & 0o777) == "0o700"
    assert cache.load("net", "c1", "eth0") == entry
    assert [e.container_id for e in cache.entries()] == ["c1"]
    cache.remove("net", "c1", "eth0")
    cache.remove("net", "c1", "eth0")
    assert cache.load("net", "c1", "eth0") is None and os.listdir(tmp_path / "results") == []


def test_bare_result_of_an_old_libcni_is_read_as_a_result(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "net-c1-eth0").write_text('{"cniVersion":"0.3.1","ips":[]}')
    entry = Cache(str(tmp_path)).load("net", "c1", "eth0")
    assert entry.result == {"cniVersion": "0.3.1", "ips": []} and entry.config == b""
    assert Cache(str(tmp_path)).entries() == []  # libcni lists only cniCacheV1 entries


def test_entries_filter_by_container(tmp_path):
    cache = Cache(str(tmp_path))
    for cid, ifname in (("a", "eth0"), ("a", "eth1"), ("ab", "eth0")):
        cache.save(Entry(container_id=cid, network="n", ifname=ifname))
    (tmp_path / "results" / "junk").write_text("nope")
    assert [(e.container_id, e.ifname) for e in cache.entries("a")] == [("a", "eth0"), ("a", "eth1")]
    assert len(cache.entries()) == 3


@pytest.mark.parametrize("network,cid,ifname", [
    ("..", "c", "eth0"), ("n", "../../etc", "eth0"), ("n", "c", "../x"), ("n/..", "c", "eth0"),
    ("n", "c", "."), ("n", "c", ".."), ("", "c", "eth0"), ("n", "", "eth0"), ("n", "c", ""),
    ("n", "c", "a/b"), ("/abs", "c", "eth0"), ("n", "c\n", "eth0"), ("n", "c", "x" * 16),
])
def test_no_path_escapes(tmp_path, network, cid, ifname):
    cache = Cache(str(tmp_path))
    with pytest.raises(CNIError):
        cache.path(network, cid, ifname)
    with pytest.raises(CNIError):
        cache.save(Entry(container_id=cid, network=network, ifname=ifname))
    assert not (tmp_path / "results").exists() or os.listdir(tmp_path / "results") == []
    assert cache.load(network, cid, ifname) is None
    cache.remove(network, cid, ifname)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20), st.text(max_size=20), st.text(max_size=20))
def test_any_names_stay_inside_results(network, cid, ifname):
    cache = Cache("/nonexistent/cache")
    try:
        path = cache.path(network, cid, ifname)
    except CNIError:
        return
    assert os.path.dirname(os.path.normpath(path)) == "/nonexistent/cache/results"
    assert os.path.basename(path) == f"{network}-{cid}-{ifname}"


def test_save_replaces_a_symlink_instead_of_following_it(tmp_path):
    cache = Cache(str(tmp_path / "cache"))
    (tmp_path / "cache" / "results").mkdir(parents=True)
    target = tmp_path / "victim"
    target.write_text("keep")
    os.symlink(target, tmp_path / "cache" / "results" / "n-c-eth0")
    cache.save(Entry(container_id="c", network="n", ifname="eth0"))
    assert target.read_text() == "keep"
    assert not os.path.islink(tmp_path / "cache" / "results" / "n-c-eth0")
