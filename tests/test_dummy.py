"""dummy: ADD/CHECK/DEL in a container netns, every spec version (no Go oracle: Debian's 1.1.1 has no dummy).

Needs a kernel with dummy links; elsewhere these tests skip. Run them for real with
    /work/shared/kernel/vmrun.sh -t 900 -w "$PWD" -- "$PWD/.venv/bin/python" -m pytest -m needs_kernel_links tests/test_dummy.py
"""
from __future__ import annotations

import pytest

from conftest import has_link_kind, is_root
from link_env import global_addrs, reservations, run_plugin

pytestmark = [
    pytest.mark.needs_kernel_links,
    pytest.mark.skipif(not is_root(), reason="needs root for network namespaces"),
    pytest.mark.skipif(is_root() and not has_link_kind("dummy"), reason="this kernel has no dummy links"),
]

# Under the VM's software emulation every call costs seconds: one version per result shape
# (legacy ip4/ip6, 0.3/0.4 with ips[].version, 1.x); the shapes themselves are tested on the host.
SHAPES = ("0.2.0", "0.4.0", "1.1.0")
NAME = "dummynet"


def make_conf(version: str, data_dir, *, dual: bool = True, **extra) -> dict:
    ranges = [[{"subnet": "10.57.0.0/24"}]] + ([[{"subnet": "fd57::/64"}]] if dual else [])
    conf = {"cniVersion": version, "name": NAME, "type": "dummy",
            "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": ranges}}
    conf.update(extra)
    return {k: v for k, v in conf.items() if v is not None}


def run(plugins, command, conf, ctr, host_ns, **kw):
    return run_plugin(plugins, "dummy", command, conf, ctr, host_ns, timeout=300, **kw)


def test_add_check_del_each_result_shape(frozen_plugins, host_ns, make_netns, data_dir):
    for version in SHAPES:
        ctr = make_netns("pycni-ctr")
        conf = make_conf(version, data_dir / version)
        out = run(frozen_plugins, "ADD", conf, ctr, host_ns).ok().json
        assert out["cniVersion"] == version
        link = ctr.link("eth0")
        assert link["linkinfo"]["info_kind"] == "dummy" and "UP" in link["flags"]
        assert link.get("txqlen", 0) == 0  # as the reference's netlink library leaves it (ip omits 0)
        assert global_addrs(ctr) == ["10.57.0.2/24", "fd57::2/64"]
        assert host_ns.links() == ["lo"]  # nothing on the host side
        if version in ("0.1.0", "0.2.0"):
            assert out["ip4"]["ip"] == "10.57.0.2/24" and out["ip6"]["ip"] == "fd57::2/64"
        else:
            assert out["interfaces"] == [{"name": "eth0", "mac": link["address"], "sandbox": ctr.path}]
            assert [ip["interface"] for ip in out["ips"]] == [0, 0]
        if version not in ("0.1.0", "0.2.0", "0.3.0", "0.3.1"):
            run(frozen_plugins, "CHECK", dict(conf, prevResult=out), ctr, host_ns).ok()
        run(frozen_plugins, "DEL", conf, ctr, host_ns).ok()
        assert ctr.links() == ["lo"] and reservations(data_dir / version, NAME) == []
        run(frozen_plugins, "DEL", conf, ctr, host_ns).ok()
        ctr.remove()


def test_mtu_check_drift_and_del_when_gone(frozen_plugins, host_ns, make_netns, data_dir):
    ctr = make_netns("pycni-ctr")
    conf = make_conf("1.1.0", data_dir, dual=False, mtu=1280)
    out = run(frozen_plugins, "ADD", conf, ctr, host_ns).ok().json
    assert ctr.link("eth0")["mtu"] == 1280
    ctr.run("ip", "link", "set", "eth0", "down")
    out_check = run(frozen_plugins, "CHECK", dict(conf, prevResult=out), ctr, host_ns)
    assert out_check.status == 1 and "down" in out_check.json["msg"], out_check.out
    ctr.run("ip", "link", "set", "eth0", "up")
    ctr.run("ip", "addr", "flush", "dev", "eth0")
    assert run(frozen_plugins, "CHECK", dict(conf, prevResult=out), ctr, host_ns).status == 1
    ctr.remove()
    run(frozen_plugins, "DEL", conf, ctr, host_ns).ok()  # the netns is gone
    run(frozen_plugins, "DEL", conf, None, host_ns).ok()  # containerd: no CNI_NETNS
    assert reservations(data_dir, NAME) == []


@pytest.mark.parametrize("extra, text", [
    ({"ipam": None}, "requires an IPAM configuration"),
    ({"mtu": -1}, "invalid mtu -1"),
    ({"mtu": 70000}, "invalid mtu 70000"),
])
def test_bad_config_fails_and_leaves_nothing(frozen_plugins, host_ns, container_ns, data_dir, extra, text):
    out = run(frozen_plugins, "ADD", make_conf("1.0.0", data_dir, **extra), container_ns, host_ns)
    assert out.status == 1 and text in out.json["msg"], out.out
    assert container_ns.links() == ["lo"] and reservations(data_dir, NAME) == []


def test_failed_ipam_or_taken_name_leaves_nothing(frozen_plugins, host_ns, container_ns, data_dir):
    bad = make_conf("1.0.0", data_dir)
    bad["ipam"]["routes"] = [{"dst": "10.99.0.0/16", "gw": "192.0.2.1"}]
    out = run(frozen_plugins, "ADD", bad, container_ns, host_ns)
    assert out.status == 1 and "route" in out.json["msg"], out.out
    assert container_ns.links() == ["lo"] and reservations(data_dir, NAME) == []
    container_ns.run("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "x0")
    out = run(frozen_plugins, "ADD", make_conf("1.0.0", data_dir), container_ns, host_ns)
    assert out.status == 1 and "already exists" in out.json["msg"], out.out
    assert reservations(data_dir, NAME) == []
