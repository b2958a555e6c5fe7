"""CNI_ARGS parsing (pure logic)."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from cni.args import parse_args
from cni.errors import CNIError


def test_empty():
    assert parse_args("", ("IP",)) == {}


def test_known_keys():
    assert parse_args("IP=10.0.0.5;MAC=aa:bb:cc:dd:ee:ff", ("IP", "MAC")) == {"IP": "10.0.0.5", "MAC": "aa:bb:cc:dd:ee:ff"}


def test_keys_are_case_sensitive():
    with pytest.raises(CNIError) as err:
        parse_args("ip=10.0.0.5", ("IP",))
    assert err.value.code == 4 and "unknown args" in err.value.msg


@pytest.mark.parametrize("flag", ["1", "true", "True", "TRUE"])
def test_kubernetes_keys_pass_with_ignore_unknown(flag):
    text = (f"IgnoreUnknown={flag};K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;"
            "K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=1234;IP=10.0.0.9")
    assert parse_args(text, ("IP",)) == {"IP": "10.0.0.9"}


@pytest.mark.parametrize("flag", ["0", "false"])
def test_ignore_unknown_false_still_strict(flag):
    with pytest.raises(CNIError):
        parse_args(f"IgnoreUnknown={flag};K8S_POD_NAME=x", ())


@pytest.mark.parametrize("text", ["IP", "IP=1=2", "IP=1;", ";IP=1", "=", "IgnoreUnknown=maybe"])
def test_malformed(text):
    with pytest.raises(CNIError) as err:
        parse_args(text, ("IP",))
    assert err.value.code == 4


@given(st.text(max_size=80))
def test_any_input_gives_result_or_cni_error(text):
    try:
        out = parse_args(text, ("IP", "MAC"))
    except CNIError as err:
        assert err.code == 4
    else:
        assert set(out) <= {"IP", "MAC"}
