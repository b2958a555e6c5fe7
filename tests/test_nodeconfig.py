"""Finding the runtimes' CNI directories, the TOML subset reader, and the doctor in-process.

No root, no namespace: these also run under Debian 11's Python 3.9 (test_release), where
there is no tomllib and the subset reader does the work.
"""
from __future__ import annotations

import os

import pytest

from cni.runtime import doctor, toml
from cni.runtime.nodeconfig import Root, Setup, find_setups
from node_tree import EXPECTED, conflist, install_fake_pycni, k3s_node, link, write

CONTAINERD = r'''version = 2
root = "/var/lib/containerd" # comment
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/opt/cni/bin"
  conf_dir = '/etc/cni/net.d'
  max_conf_num = 1_0
  conf_template = ""
[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["/a", '/b',
     "/c\u00e9\t",  # trailing comma and comment
  ]
[[plugins.x.list]]
  a = { b = 1, c.d = true, e = [] }
[[plugins.x.list]]
  a.f = 1.5
  g = """
line "two" \
    joined"""
  h = 'C:\path'
[crio.network]
plugin_dirs = [ ]
'''
PARSED = {
    "version": 2, "root": "/var/lib/containerd",
    "plugins": {
        "io.containerd.grpc.v1.cri": {"cni": {"bin_dir": "/opt/cni/bin", "conf_dir": "/etc/cni/net.d",
                                              "max_conf_num": 10, "conf_template": ""}},
        "io.containerd.cri.v1.runtime": {"cni": {"bin_dirs": ["/a", "/b", "/c\u00e9\t"]}},
        "x": {"list": [{"a": {"b": 1, "c": {"d": True}, "e": []}}, {"a": {"f": 1.5}, "g": 'line "two" joined',
                                                                     "h": "C:\\path"}]},
    },
    "crio": {"network": {"plugin_dirs": []}},
}


def test_toml_subset_reader():
    assert toml._Parser(CONTAINERD).document() == PARSED
    assert toml.loads(CONTAINERD) == PARSED  # tomllib where it exists, the same answer
    for bad in ('a = "unterminated', "a = 1\na = 2", "[a]\nb = nope", "a = [1, 2", "a = 1 2", "[a\n"):
        with pytest.raises(toml.TomlError):
            toml._Parser(bad).document()
        with pytest.raises(toml.TomlError):
            toml.loads(bad)


def test_root_follows_links_inside_the_tree(tmp_path):
    link(tmp_path / "usr/bin/a", "/opt/x/b")  # absolute: inside the tree, not this machine's /opt
    link(tmp_path / "opt/x/b", "../y/../y/c")
    write(tmp_path / "opt/y/c", "")
    link(tmp_path / "loop", "loop")
    root = Root(str(tmp_path))
    assert root.resolve("/usr/bin/a") == "/opt/y/c" and root.exists("/usr/bin/a")
    assert root.resolve("/../../opt/y/c") == "/opt/y/c"
    with pytest.raises(OSError):
        root.resolve("/loop")
    assert Root("/").local("/etc") == "/etc" and root.local("/etc") == f"{tmp_path}/etc"


@pytest.mark.parametrize("config,bin_dirs,conf_dir,max_conf", [
    ('version = 3\n[plugins."io.containerd.cri.v1.runtime".cni]\nbin_dirs = ["/a", "/b/"]\nconf_dir = "/c"\n',
     ["/a", "/b"], "/c", 1),
    ('[plugins.cri.cni]\nbin_dir = "/old"\nmax_conf_num = 0\n', ["/old"], "/etc/cni/net.d", 0),
    ('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "x"\n',
     ["/opt/cni/bin"], "/etc/cni/net.d", 1),
])
def test_containerd_config_versions(tmp_path, config, bin_dirs, conf_dir, max_conf):
    write(tmp_path / "etc/containerd/config.toml", config)
    setups, problems = find_setups(Root(str(tmp_path)), {})
    assert problems == []
    assert [(s.runtime, s.bin_dirs, s.conf_dir, s.max_conf_num) for s in setups] == [
        ("containerd", bin_dirs, conf_dir, max_conf)]


def test_k3s_generated_config_and_old_layout(tmp_path):
    write(tmp_path / "var/lib/rancher/k3s/data/current/bin/cni", "")
    setups, _ = find_setups(Root(str(tmp_path)), {})
    assert [(s.runtime, s.bin_dirs, s.source) for s in setups] == [
        ("k3s", ["/var/lib/rancher/k3s/data/current/bin"], "")]
    write(tmp_path / "var/lib/rancher/k3s/agent/etc/containerd/config.toml",
          '[plugins."io.containerd.grpc.v1.cri".cni]\n  bin_dir = "/var/lib/rancher/k3s/data/cni"\n'
          '  conf_dir = "/var/lib/rancher/k3s/agent/etc/cni/net.d"\n')
    (setup,), _ = find_setups(Root(str(tmp_path)), {})
    assert setup == Setup(runtime="k3s", source="/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
                          bin_dirs=["/var/lib/rancher/k3s/data/cni"],
                          conf_dir="/var/lib/rancher/k3s/agent/etc/cni/net.d", max_conf_num=1)


def test_crio_drop_ins_override_and_podman_needs_the_cni_backend(tmp_path):
    write(tmp_path / "etc/crio/crio.conf", '[crio.network]\nnetwork_dir = "/a"\nplugin_dirs = ["/x"]\n')
    write(tmp_path / "etc/crio/crio.conf.d/20-b.conf", '[crio.network]\nplugin_dirs = ["/z"]\n')
    write(tmp_path / "etc/crio/crio.conf.d/10-a.conf", '[crio.network]\nplugin_dirs = ["/y"]\n')
    write(tmp_path / "etc/containers/containers.conf", '[network]\nnetwork_backend = "netavark"\n')
    setups, _ = find_setups(Root(str(tmp_path)), {})
    assert [(s.runtime, s.bin_dirs, s.conf_dir) for s in setups] == [("cri-o", ["/z"], "/a")]
    write(tmp_path / "etc/containers/containers.conf.d/cni.conf", '[network]\nnetwork_backend = "cni"\n')
    setups, _ = find_setups(Root(str(tmp_path)), {})
    assert [s.runtime for s in setups] == ["cri-o", "podman"]
    assert "/usr/lib/cni" in setups[1].bin_dirs


def test_broken_runtime_config_is_reported(tmp_path):
    write(tmp_path / "etc/containerd/config.toml", '[plugins\nbin_dir = "/x"\n')
    setups, problems = find_setups(Root(str(tmp_path)), {})
    assert [s.runtime for s in setups] == ["default"]
    assert [p.path for p in problems] == ["/etc/containerd/config.toml"] and "not valid TOML" in problems[0].message


def test_command_line_and_environment(tmp_path):
    env = {"CNI_PATH": "/e1:/e2", "NETCONFPATH": "/n"}
    (setup,), _ = find_setups(Root(str(tmp_path)), env, conf_dir="/c")
    assert (setup.runtime, setup.bin_dirs, setup.conf_dir) == ("command line", ["/e1", "/e2"], "/c")
    setups, _ = find_setups(Root(str(tmp_path)), env)
    assert [(s.runtime, s.bin_dirs, s.conf_dir) for s in setups] == [("environment", ["/e1", "/e2"], "/n")]


def test_doctor_in_process_on_the_k3s_node(tmp_path):
    report = doctor.examine(str(k3s_node(tmp_path / "node")), {})
    found = {(p.kind, p.network, p.plugin if p.kind != "stale-reservation" else "") for p in report.all_problems()}
    assert found == EXPECTED and report.status() == doctor.PROBLEMS
    data = doctor.to_dict(report)
    assert data["status"] == "problems" and len(data["problems"]) == 4
    text = doctor.render_text(report)
    assert text.count("PROBLEM") == 4 and text.endswith("4 problems found\n")


def test_a_plugin_that_does_not_answer_version(tmp_path):
    write(tmp_path / "opt/cni/bin/bridge", "#!/bin/sh\necho 'not json'\n", 0o755)
    write(tmp_path / "opt/cni/bin/host-local", "#!/bin/sh\nexit 3\n", 0o755)
    conflist(tmp_path, "/etc/cni/net.d", "10-a.conflist", {"cniVersion": "1.0.0", "name": "a", "plugins": [
        {"type": "bridge", "ipam": {"type": "host-local"}}]})
    report = doctor.examine(str(tmp_path), {}, conf_dir="/etc/cni/net.d")
    problems = report.all_problems()
    assert [(p.kind, p.plugin) for p in problems] == [("plugin-failed", "bridge"), ("plugin-failed", "host-local")]
    assert "unreadable VERSION output" in problems[0].message and "status 3" in problems[1].message


def test_multus_delegates_are_checked(tmp_path):
    install_fake_pycni(tmp_path, "/opt/cni/bin", ("multus", "bridge"))
    conflist(tmp_path, "/etc/cni/net.d", "00-multus.conf", {
        "cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus", "binDir": "/opt/multus/bin",
        "delegates": [{"cniVersion": "0.3.1", "name": "cbr0", "plugins": [
            {"type": "bridge", "ipam": {"type": "host-local"}}, {"type": "portmap"}]}]})
    install_fake_pycni(tmp_path, "/opt/multus/bin", ("host-local",))
    report = doctor.examine(str(tmp_path), {}, bin_dirs=["/opt/cni/bin"], conf_dir="/etc/cni/net.d")
    net = report.setups[0].networks[0]
    assert [(p.type, p.role, p.cni_version, p.owner) for p in net.plugins] == [
        ("multus", "plugin", "1.0.0", "pycni"), ("bridge", "delegate", "0.3.1", "pycni"),
        ("host-local", "ipam", "0.3.1", "pycni"), ("portmap", "delegate", "0.3.1", "missing")]
    assert [(p.kind, p.plugin) for p in report.all_problems()] == [("missing-plugin", "portmap")]
    assert os.path.basename(net.plugins[2].path) == "host-local" and net.plugins[2].path.startswith("/opt/multus")
