"""Typed configuration reads and the shared NetConf keys (pure logic)."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from cni.conf import Fields, NetConf, parse_mac, validate_network_name
from cni.errors import CNIError


def code_of(fn) -> int:
    with pytest.raises(CNIError) as err:
        fn()
    return err.value.code


def test_typed_reads_and_defaults():
    f = Fields({"s": "x", "b": True, "n": 5, "l": [1], "o": {"k": "v"}})
    assert (f.text("s"), f.flag("b"), f.number("n"), f.items("l"), f.obj("o")) == ("x", True, 5, [1], {"k": "v"})
    assert (f.text("missing", "d"), f.flag("missing", True), f.number("missing", 7)) == ("d", True, 7)
    assert f.sub("o").text("k") == "v"


@pytest.mark.parametrize("read", [
    lambda f: f.flag("s"), lambda f: f.text("b"), lambda f: f.number("b"), lambda f: f.number("s"),
    lambda f: f.items("o"), lambda f: f.obj("l"), lambda f: f.number("n", maximum=4),
    lambda f: f.number("n", minimum=6), lambda f: f.texts("l"),
])
def test_wrong_types_are_invalid_config(read):
    f = Fields({"s": "x", "b": True, "n": 5, "l": [1], "o": {}})
    assert code_of(lambda: read(f)) == 7


def test_network_name():
    assert validate_network_name("my-net.1_a") == "my-net.1_a"
    for bad in ("", None, "../x", "a/b", "-a", 3):
        assert code_of(lambda: validate_network_name(bad)) == 7


def test_mac():
    assert parse_mac("AA-BB-CC-DD-EE-0F") == "aa:bb:cc:dd:ee:0f"
    for bad in ("aa:bb:cc:dd:ee", "zz:bb:cc:dd:ee:ff", "aabbccddeeff"):
        assert code_of(lambda: parse_mac(bad)) == 7


def test_mac_precedence():
    raw = {"name": "n", "args": {"cni": {"mac": "02:00:00:00:00:02"}}, "runtimeConfig": {"mac": "02:00:00:00:00:03"}}
    assert NetConf.parse(raw, "1.0.0").requested_mac("02:00:00:00:00:01") == "02:00:00:00:00:03"
    del raw["runtimeConfig"]
    assert NetConf.parse(raw, "1.0.0").requested_mac("02:00:00:00:00:01") == "02:00:00:00:00:02"
    del raw["args"]
    assert NetConf.parse(raw, "1.0.0").requested_mac("02:00:00:00:00:01") == "02:00:00:00:00:01"


def test_prev_result_any_version_up_converted():
    raw = {"name": "n", "prevResult": {"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24"}}}
    conf = NetConf.parse(raw, "0.4.0")
    assert str(conf.prev_result.ips[0].address) == "10.0.0.2/24"
    raw["prevResult"] = {"ips": [{"address": "nonsense"}]}
    assert code_of(lambda: NetConf.parse(raw, "1.0.0")) == 7


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10)


@given(st.dictionaries(st.sampled_from(["name", "ipam", "dns", "args", "runtimeConfig", "prevResult", "type"]),
                       json_values, max_size=6))
def test_any_config_gives_conf_or_cni_error(raw):
    try:
        NetConf.parse(raw, "1.0.0")
    except CNIError as err:
        assert err.code == 7


@given(st.text(max_size=12))
def test_name_check_matches_the_spec_pattern(text):
    import re

    from cni.conf import is_valid_name

    assert is_valid_name(text) == bool(re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*", text))
