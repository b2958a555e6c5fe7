"""Finding and running delegates: errors passed through, environment cleaned."""
from __future__ import annotations

import json
import os
import sys

import pytest

from cni import ipam
from cni.conf import NetConf
from cni.errors import CNIError
from cni.invoke import clean_environ, exec_plugin, find_plugin, run_plugin
from cni.skel import Call


def script(directory, name, body):
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_find_plugin_in_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    script(b, "x", "exit 0\n")
    assert find_plugin("x", [str(a), str(b)]) == str(b / "x")
    script(a, "x", "exit 0\n")
    assert find_plugin("x", [str(a), str(b)]) == str(a / "x")


def test_find_plugin_missing(tmp_path):
    with pytest.raises(CNIError) as err:
        find_plugin("nope", [str(tmp_path), "/nonexistent"])
    assert err.value.msg == f'failed to find plugin "nope" in path [{tmp_path} /nonexistent]'


def test_find_plugin_skips_non_executable(tmp_path):
    (tmp_path / "x").write_text("data")
    with pytest.raises(CNIError):
        find_plugin("x", [str(tmp_path)])


@pytest.mark.parametrize("name", ["../x", "a/b", "/bin/true", ".", ".."])
def test_type_with_path_separator_is_invalid_config(name, tmp_path):
    with pytest.raises(CNIError) as err:
        find_plugin(name, [str(tmp_path)])
    assert err.value.code == 7


def test_empty_path():
    with pytest.raises(CNIError):
        find_plugin("x", [])


def test_error_passed_through_unchanged(tmp_path):
    p = script(tmp_path, "fail", 'echo \'{"cniVersion":"1.0.0","code":42,"msg":"no luck","details":"d"}\'; exit 1\n')
    with pytest.raises(CNIError) as err:
        exec_plugin(str(p), {}, b"{}")
    assert (err.value.code, err.value.msg, err.value.details) == (42, "no luck", "d")


def test_garbage_output_is_internal_error(tmp_path):
    p = script(tmp_path, "crash", "echo boom; exit 2\n")
    with pytest.raises(CNIError) as err:
        exec_plugin(str(p), {}, b"{}")
    assert err.value.code == 999 and "boom" in err.value.msg


def test_delegate_gets_environment_and_stdin(tmp_path):
    p = script(tmp_path, "echoer", 'printf "%s|%s|" "$CNI_COMMAND" "$X"; cat\n')
    out = exec_plugin(str(p), {"CNI_COMMAND": "ADD", "X": "y"}, b"payload")
    assert out == b"ADD|y|payload"


def test_run_plugin_returns_status_stdout_and_stderr(tmp_path):
    p = script(tmp_path, "mixed", "cat; echo to-err >&2; exit 3\n")
    payload = os.urandom(300_000).hex().encode()  # more than a pipe holds: no deadlock either way
    assert run_plugin(str(p), {}, payload) == (3, payload, b"to-err\n")
    assert run_plugin(str(script(tmp_path, "quiet", "exit 0\n")), {}, b"") == (0, b"", b"")


def test_run_plugin_child_has_default_sigpipe(tmp_path):
    """Python ignores SIGPIPE and SIGXFSZ; a plugin it runs must not inherit that (as with subprocess)."""
    p = script(tmp_path, "status", "exec grep SigIgn /proc/self/status\n")
    status, out, _ = run_plugin(str(p), {}, b"")
    ignored = int(out.split()[1], 16)
    assert status == 0 and not ignored & (1 << (13 - 1) | 1 << (25 - 1)), out


@pytest.mark.parametrize("body, reason", [(None, "No such file or directory"), ("no shebang\n", "Exec format error")])
def test_run_plugin_that_cannot_exec(tmp_path, body, reason):
    path = tmp_path / "broken"
    if body is not None:
        path.write_text(body)
        path.chmod(0o755)
    with pytest.raises(CNIError) as err:
        run_plugin(str(path), {}, b"{}")
    assert (err.value.code, err.value.msg) == (999, f'failed to exec plugin "{path}": {reason}')


def test_clean_environ_drops_frozen_variables(monkeypatch):
    env = {"_MEIPASS2": "/x", "_PYI_ARCHIVE_FILE": "/y", "_PYI_APPLICATION_HOME_DIR": "/z", "KEEP": "1",
           "LD_LIBRARY_PATH": "/bundle", "LD_LIBRARY_PATH_ORIG": "/usr/local/lib"}
    assert clean_environ(env)["KEEP"] == "1"
    assert not any(k.startswith(("_PYI", "_MEI")) for k in clean_environ(env))
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", "/bundle", raising=False)  # started by PyInstaller's bootloader
    cleaned = clean_environ(env)
    assert cleaned["LD_LIBRARY_PATH"] == "/usr/local/lib" and "LD_LIBRARY_PATH_ORIG" not in cleaned
    assert "LD_LIBRARY_PATH" not in clean_environ({"LD_LIBRARY_PATH": "/bundle"})


def test_ipam_add_parses_and_keeps_config_version(tmp_path):
    result = {"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.7/24", "gateway": "10.0.0.1"}}
    script(tmp_path, "fake-ipam", f"cat >/dev/null; echo '{json.dumps(result)}'\n")
    raw = {"cniVersion": "0.3.1", "name": "n", "type": "x", "ipam": {"type": "fake-ipam"}}
    conf = NetConf.parse(raw, "0.3.1")
    call = Call("ADD", path=[str(tmp_path)], stdin=json.dumps(raw).encode(), environ=dict(os.environ))
    out = ipam.add(conf, call)
    assert out.cni_version == "0.3.1" and str(out.ips[0].address) == "10.0.0.7/24"


def test_ipam_without_type_is_invalid_config(tmp_path):
    conf = NetConf.parse({"name": "n", "ipam": {}}, "1.0.0")
    with pytest.raises(CNIError) as err:
        ipam.add(conf, Call("ADD", path=[str(tmp_path)]))
    assert err.value.code == 7
