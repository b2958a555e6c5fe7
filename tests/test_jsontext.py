"""cni.jsontext: the stdlib's JSON behaviour without importing json, re or enum."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cni import jsontext

ROOT = Path(__file__).resolve().parent.parent

scalars = (st.none() | st.booleans() | st.integers() | st.text()
           | st.floats(allow_nan=False) | st.integers(min_value=-(2**70), max_value=2**70))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(json_values, st.sampled_from([None, 0, 1, 4]))
def test_dumps_matches_json_dumps(value, indent):
    assert jsontext.dumps(value, indent=indent) == json.dumps(value, indent=indent)
    assert jsontext.dumps(value, compact=True) == json.dumps(value, separators=(",", ":"))


@settings(max_examples=400, deadline=None)
@given(json_values, st.sampled_from([None, 4]))
def test_loads_reads_back_what_json_writes(value, indent):
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    assert jsontext.loads(text) == value
    assert jsontext.loads(text.encode()) == value
    assert jsontext.loads("\n\t " + text + " \r\n") == value


def _outcome(fn, data):
    try:
        return "ok", fn(data)
    except Exception as exc:  # the comparison is of the exception itself
        return type(exc), str(exc)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=' \t\n\r{}[],:"\\0123456789.eE+-truefalsnNaIiy\ufeff\u00e9', max_size=20)
       | st.binary(max_size=12))
def test_any_input_gives_json_loads_outcome(data):
    ours, theirs = _outcome(jsontext.loads, data), _outcome(json.loads, data)
    if ours[0] == "ok" and theirs[0] == "ok" and isinstance(ours[1], float) and math.isnan(ours[1]):
        assert math.isnan(theirs[1])
    else:
        assert ours == theirs


@pytest.mark.parametrize("data", [
    b"\xef\xbb\xbf{\"a\": 1}",            # UTF-8 BOM in bytes: accepted
    "\ufeff{}",                            # BOM in str: refused
    '{"a": 1} x',                          # extra data
    b"\xff\xfe{\x00}\x00",                 # UTF-16 guessed from NUL bytes
    b"{\"a\": \"\xff\"}",                  # invalid UTF-8
    '"\\ud800"', b'"\xed\xa0\x80"',        # lone surrogates
    "[1, NaN, Infinity, -Infinity]", "1e400", "-0", "[" * 50 + "]" * 50, 12, None,
])
def test_edge_cases_match_json_loads(data):
    ours, theirs = _outcome(jsontext.loads, data), _outcome(json.loads, data)
    assert repr(ours) == repr(theirs)


def test_errors_before_json_is_loaded():
    """The first malformed input of a process still gives json's own error (json not imported yet)."""
    code = ("import sys, cni.jsontext as j\n"
            "for bad in ('{\"a\": ', '[1,', '{\"a\" 1}', b'{\"a\": tru}', '\"abc'):\n"
            "    try:\n"
            "        j.loads(bad)\n"
            "    except ValueError as exc:\n"
            "        print(type(exc).__name__, exc)\n")
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "JSONDecodeError Expecting value: line 1 column 7 (char 6)",
        "JSONDecodeError Expecting value: line 1 column 4 (char 3)",
        "JSONDecodeError Expecting ':' delimiter: line 1 column 6 (char 5)",
        "JSONDecodeError Expecting value: line 1 column 7 (char 6)",
        "JSONDecodeError Unterminated string starting at: line 1 column 1 (char 0)",
    ]


def test_dumps_edge_cases():
    for value in ([float("nan"), float("inf"), -float("inf"), -0.0, 1e100], {1: 2, None: 3, 2.5: 4, True: 5},
                  ("tuple", ["nested", {}]), "\u2028\x00\"\\\u00e9\U0001F600"):
        assert jsontext.dumps(value, indent=4) == json.dumps(value, indent=4)
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsontext.dumps({"a": {1, 2}})
    with pytest.raises(TypeError, match="keys must be"):
        jsontext.dumps({(1,): 2})


def test_the_library_imports_neither_json_nor_re():
    """The point of the module: no library module on a plugin's path loads json, re, enum or typing,
    nor the other heavy ones they replaced (tests/test_imports.py runs each plugin's ADD and
    lists what it loads)."""
    code = ("import sys, plugins.main.bridge, plugins.main.ptp, plugins.main.macvlan, plugins.main.ipvlan, "
            "cni.ipam, cni.link, cni.netlink, cni.netns, cni.invoke, cni.rollback, cni.sysctl, cni.masq, "
            "plugins.meta.firewall, plugins.meta.bandwidth, cni.firewall, cni.firewalld, cni.bandwidth, "
            "cni.spoofcheck, cni.digest, cni.netlink.bridge, cni.netlink.rule, cni.netlink.qdisc, "
            "cni.netlink.conntrack, cni.tuntap, plugins.meta.sbr, plugins.meta.portmap, plugins.meta.tuning; "
            "print(sorted(m for m in ('json', 're', 'enum', 'typing', 'hashlib', 'subprocess', 'shutil', 'socket') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
