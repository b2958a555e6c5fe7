"""Dispatch: environment, stdin and version checks, printing (run in-process)."""
from __future__ import annotations

import io
import ipaddress
import json

import pytest

from cni.errors import CNIError
from cni.skel import Call, plugin
from cni.types import IPConfig, Result
from conftest import ALL_VERSIONS

ENV = {"CNI_CONTAINERID": "ctr-1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}


def make(calls: list):
    def add(call: Call) -> Result:
        calls.append(call)
        return Result(ips=[IPConfig(ipaddress.ip_interface("10.0.0.2/24"), ipaddress.ip_address("10.0.0.1"))])

    def record(call: Call) -> None:
        calls.append(call)

    def boom(call: Call) -> None:
        raise KeyError("surprise")

    return plugin("demo", add=add, delete=record, check=record, gc=record, status=boom)


def run(command: str | None, conf, env: dict | None = None, calls: list | None = None):
    calls = [] if calls is None else calls
    environ = dict(ENV if env is None else env)
    if command:
        environ["CNI_COMMAND"] = command
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    out, err = io.StringIO(), io.StringIO()
    status = make(calls).run(environ, io.BytesIO(stdin), out, err)
    text = out.getvalue()
    return status, (json.loads(text) if text.strip() else None), err.getvalue(), calls


def conf(version: str | None = "1.0.0", **extra) -> dict:
    c = {"name": "net1", "type": "demo", **extra}
    if version is not None:
        c["cniVersion"] = version
    return c


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_add_answers_in_requested_version(version):
    status, out, _, calls = run("ADD", conf(version))
    assert status == 0 and out["cniVersion"] == version
    assert ("ip4" in out) == (version in ("0.1.0", "0.2.0"))
    assert calls[0].cni_version == version and calls[0].ifname == "eth0" and calls[0].path == ["/opt/cni/bin"]


def test_missing_cni_version_is_010():
    status, out, _, _ = run("ADD", conf(None))
    assert status == 0 and out["cniVersion"] == "0.1.0" and out["ip4"]["ip"] == "10.0.0.2/24"


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_version_command_ignores_stdin(version):
    status, out, _, _ = run("VERSION", b"not json at all")
    assert status == 0
    assert out == {"cniVersion": "1.1.0", "supportedVersions": list(ALL_VERSIONS)}


def test_missing_variables_reported_together_in_order():
    status, out, _, _ = run("ADD", conf(), env={})
    assert status == 1 and out["code"] == 4
    assert out["msg"] == "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_netns_optional_for_del(version):
    env = {k: v for k, v in ENV.items() if k != "CNI_NETNS"}
    status, out, _, calls = run("DEL", conf(version), env=env)
    assert status == 0 and out is None and calls[0].netns == ""


@pytest.mark.parametrize("cid,ok", [("abc", True), ("a.b_c-d", True), ("-abc", False), ("a/b", False),
                                    ("..", False), ("a b", False), ("ctr\n", False)])
def test_container_id_validation(cid, ok):
    status, out, _, _ = run("ADD", conf(), env={**ENV, "CNI_CONTAINERID": cid})
    assert (status == 0) == ok
    if not ok:
        assert out["code"] == 4 and out["details"] == cid


@pytest.mark.parametrize("name,ok", [("eth0", True), ("a" * 15, True), ("a" * 16, False), (".", False),
                                     ("..", False), ("a/b", False), ("a:b", False), ("a b", False)])
def test_ifname_validation(name, ok):
    status, out, _, _ = run("ADD", conf(), env={**ENV, "CNI_IFNAME": name})
    assert (status == 0) == ok
    if not ok:
        assert out["code"] == 4


def test_invalid_json_is_code_6():
    for bad in (b"{", b"", b"[1]", b"\xff\xfe"):
        status, out, _, _ = run("ADD", bad)
        assert status == 1 and out["code"] == 6, bad


@pytest.mark.parametrize("name", [None, "", "bad/name", "-x", 5, "net\n"])
def test_missing_or_invalid_name_is_code_7(name):
    c = conf()
    if name is None:
        del c["name"]
    else:
        c["name"] = name
    status, out, _, _ = run("ADD", c)
    assert status == 1 and out["code"] == 7


def test_unsupported_version_is_code_1():
    status, out, _, _ = run("ADD", conf("0.5.0"))
    assert status == 1 and out["code"] == 1
    assert out["details"].startswith('config is "0.5.0", plugin supports ["0.1.0"')


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_check_gc_status_gated_by_version(version):
    for command, since in (("CHECK", "0.4.0"), ("GC", "1.1.0")):
        status, out, _, _ = run(command, conf(version))
        allowed = ALL_VERSIONS.index(version) >= ALL_VERSIONS.index(since)
        assert (status == 0) == allowed, (command, version)
        if not allowed:
            assert out["code"] == 1 and out["msg"] == f"config version does not allow {command}"
            assert out["cniVersion"] == version


def test_no_command_prints_about_to_stderr():
    status, out, err, _ = run(None, conf())
    assert status == 0 and out is None
    assert err.startswith("CNI demo plugin ") and "CNI protocol versions supported: 0.1.0" in err


def test_unknown_command_is_code_4():
    status, out, _, _ = run("FROB", conf())
    assert status == 1 and out["code"] == 4 and "FROB" in out["msg"]


def test_unexpected_exception_becomes_internal_error():
    status, out, err, _ = run("STATUS", conf("1.1.0"))
    assert status == 1 and out["code"] == 999 and out["cniVersion"] == "1.1.0"
    assert "Traceback" not in err


def test_gc_valid_attachments():
    calls: list = []
    c = conf("1.1.0", **{"cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}]})
    status, _, _, calls = run("GC", c, calls=calls)
    assert status == 0 and calls[0].valid_attachments() == {("a", "eth0")}
    legacy = Call("GC", config={"cni.dev/attachments": [{"containerID": "b", "ifname": "net1"}]})
    assert legacy.valid_attachments() == {("b", "net1")}
    with pytest.raises(CNIError):
        Call("GC", config={"cni.dev/valid-attachments": [{"containerID": 1}]}).valid_attachments()


def test_every_plugin_supports_the_versions_the_registry_names():
    """multicall answers VERSION from the registry before importing a plugin; that is only right while this holds."""
    from plugins import registry
    from cni import version

    for name in registry.PLUGINS:
        if name not in registry.TOOLS:
            assert registry.load(name).supported == registry.supported_versions(name), name
            expected = version.SUPPORTED_VERSIONS if name not in registry.FIRST_VERSION else \
                version.starting_from(registry.FIRST_VERSION[name])
            assert registry.supported_versions(name) == expected, name


def test_version_json_is_the_version_info():
    from cni import version

    assert json.loads(version.version_json()) == version.version_info()
