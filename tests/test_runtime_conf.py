"""Loading network configurations from a directory (cni.runtime.conf)."""
from __future__ import annotations

import json

import pytest

from cni.errors import INVALID_NETWORK_CONFIG, CNIError
from cni.runtime.conf import (NetworkNotFound, go_json, list_from_bytes, load_file, load_network, load_networks,
                              network_from_bytes, single_from_bytes)
from conftest import ALL_VERSIONS


def write(d, name, obj):
    path = d / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def conflist(name, version="1.0.0", plugins=None, **extra):
    return {"cniVersion": version, "name": name, "plugins": plugins or [{"type": "bridge"}], **extra}


def test_conflist_is_loaded_with_its_bytes(tmp_path):
    path = write(tmp_path, "10-a.conflist", conflist("a", plugins=[{"type": "bridge"}, {"type": "portmap"}]))
    net = load_network(str(tmp_path), "a")
    assert net.name == "a" and net.cni_version == "1.0.0"
    assert [p["type"] for p in net.plugins] == ["bridge", "portmap"]
    assert net.raw == path.read_bytes()
    assert net.source == str(path)


@pytest.mark.parametrize("ext", [".conf", ".json"])
def test_single_conf_is_wrapped_into_a_list_as_libcni_writes_it(tmp_path, ext):
    write(tmp_path, "10-b" + ext, {"type": "bridge", "name": "b", "cniVersion": "0.4.0", "bridge": "br<1>"})
    net = load_network(str(tmp_path), "b")
    assert net.cni_version == "0.4.0" and net.plugins == [{"type": "bridge", "name": "b", "cniVersion": "0.4.0",
                                                          "bridge": "br<1>"}]
    # Go marshals maps with sorted keys, compact, and escapes <, > and & for HTML.
    assert net.raw == (b'{"cniVersion":"0.4.0","name":"b","plugins":[{"bridge":"br\\u003c1\\u003e",'
                       b'"cniVersion":"0.4.0","name":"b","type":"bridge"}]}')


def test_lists_win_over_single_confs_and_files_go_in_name_order(tmp_path):
    write(tmp_path, "01-x.conf", {"type": "ptp", "name": "x", "cniVersion": "0.3.1"})
    write(tmp_path, "50-x.conflist", conflist("x", "1.0.0", [{"type": "macvlan"}]))
    write(tmp_path, "40-x.conflist", conflist("x", "0.4.0", [{"type": "bridge"}]))
    net = load_network(str(tmp_path), "x")
    assert net.plugins[0]["type"] == "bridge" and net.cni_version == "0.4.0"


def test_listing_is_by_file_name_across_kinds_first_of_a_name_wins(tmp_path):
    write(tmp_path, "30-c.conflist", conflist("c"))
    write(tmp_path, "10-a.conf", {"type": "ptp", "name": "a"})
    write(tmp_path, "20-b.json", {"type": "ptp", "name": "b"})
    write(tmp_path, "40-a.conflist", conflist("a"))
    write(tmp_path, "README.md", "not a config")
    (tmp_path / "sub.conf").mkdir()
    networks, broken = load_networks(str(tmp_path))
    assert [n.name for n in networks] == ["a", "b", "c"] and broken == []


def test_a_broken_file_does_not_hide_the_others_but_is_named(tmp_path):
    write(tmp_path, "10-bad.conflist", "{nope")
    write(tmp_path, "20-good.conflist", conflist("good"))
    assert load_network(str(tmp_path), "good").name == "good"
    with pytest.raises(NetworkNotFound) as info:
        load_network(str(tmp_path), "other")
    assert 'no net configuration with name "other"' in info.value.msg
    assert "10-bad.conflist" in info.value.details
    networks, broken = load_networks(str(tmp_path))
    assert [n.name for n in networks] == ["good"] and len(broken) == 1


def test_empty_or_missing_directory(tmp_path):
    with pytest.raises(NetworkNotFound, match="no net configurations found"):
        load_network(str(tmp_path / "missing"), "a")
    assert load_networks(str(tmp_path / "missing")) == ([], [])


@pytest.mark.parametrize("versions,declared,expected", [
    (["0.3.1", "1.0.0", "0.4.0"], None, "1.0.0"),
    (["1.1.0", "9.9.9"], None, "1.1.0"),
    (["0.4.0"], "1.0.0", "1.0.0"),
    (["2.0.0"], "0.3.1", "0.3.1"),
])
def test_cni_versions_picks_the_highest_supported(versions, declared, expected):
    obj = conflist("v", declared or "", cniVersions=versions)
    if declared is None:
        del obj["cniVersion"]
    assert list_from_bytes(json.dumps(obj).encode()).cni_version == expected


def test_cni_versions_without_any_supported_is_an_error():
    with pytest.raises(CNIError) as info:
        list_from_bytes(json.dumps({"name": "v", "cniVersions": ["2.0.0"], "plugins": [{"type": "x"}]}).encode())
    assert info.value.code == INVALID_NETWORK_CONFIG


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_every_version_loads_as_written(version):
    assert list_from_bytes(json.dumps(conflist("n", version)).encode()).cni_version == version


def test_missing_version_is_the_implicit_one():
    assert list_from_bytes(b'{"name":"n","plugins":[{"type":"x"}]}').cni_version == "0.1.0"


@pytest.mark.parametrize("value,expected", [(True, True), ("true", True), ("TRUE", True), ("false", False),
                                            (False, False)])
def test_disable_check_accepts_bools_and_their_strings(value, expected):
    net = list_from_bytes(json.dumps(conflist("n", disableCheck=value, disableGC=value)).encode())
    assert net.disable_check is expected and net.disable_gc is expected


@pytest.mark.parametrize("bad", [
    "[]", '{"plugins":[{"type":"x"}]}', '{"name":"n","plugins":[]}', '{"name":"n","plugins":[{"name":"x"}]}',
    '{"name":"n","plugins":[{"type":""}]}', '{"name":"n","plugins":"bridge"}',
    '{"name":"n","plugins":[{"type":"x"}],"disableCheck":"maybe"}', '{"name":"n","cniVersion":1,"plugins":[]}',
    '{"name":"n","cniVersions":"1.0.0","plugins":[{"type":"x"}]}', '{"name":"n"}',
])
def test_invalid_lists_are_config_errors(bad):
    with pytest.raises(CNIError) as info:
        list_from_bytes(bad.encode())
    assert info.value.code == INVALID_NETWORK_CONFIG


def test_single_conf_needs_a_type():
    with pytest.raises(CNIError, match="missing 'type'"):
        single_from_bytes(b'{"name":"n"}')


def test_network_from_bytes_tells_lists_from_single_confs():
    assert network_from_bytes(b'{"name":"n","type":"ptp"}').plugins == [{"name": "n", "type": "ptp"}]
    assert network_from_bytes(b'{"name":"n","plugins":[{"type":"ptp"}]}').plugins == [{"type": "ptp"}]


def test_plugins_from_a_directory_named_after_the_network(tmp_path):
    write(tmp_path, "10-n.conflist", {"cniVersion": "1.1.0", "name": "n"})
    (tmp_path / "n").mkdir()
    write(tmp_path / "n", "20-second.conf", {"type": "portmap"})
    write(tmp_path / "n", "10-first.conf", {"type": "bridge"})
    net = load_file(str(tmp_path / "10-n.conflist"))
    assert [p["type"] for p in net.plugins] == ["bridge", "portmap"]
    write(tmp_path, "10-n.conflist", {"cniVersion": "1.1.0", "name": "n", "loadOnlyInlinedPlugins": True,
                                      "plugins": [{"type": "ptp"}]})
    assert [p["type"] for p in load_file(str(tmp_path / "10-n.conflist")).plugins] == ["ptp"]


def test_capabilities_of_a_list_are_the_enabled_ones():
    net = list_from_bytes(json.dumps(conflist("n", plugins=[
        {"type": "a", "capabilities": {"portMappings": True, "ips": False}},
        {"type": "b", "capabilities": {"mac": True}}])).encode())
    assert net.capabilities == {"portMappings", "mac"}


def test_go_json_matches_encoding_json():
    assert go_json({"b": 1, "a": ["x&y", "\u2028"], "é": True}) == \
        b'{"a":["x\\u0026y","\\u2028"],"b":1,"\xc3\xa9":true}'
