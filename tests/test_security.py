"""Nobody let in: no path escapes, no symlink followed, a root-only dhcp socket, clean child environments."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from conftest import BIN, needs_root
from reliability_env import no_traceback

pytestmark = needs_root

NET = "secnet"


def hl_conf(data_dir: Path, name: str = NET) -> dict:
    return {"cniVersion": "1.0.0", "name": name, "type": "host-local",
            "ipam": {"type": "host-local", "subnet": "10.55.0.0/24", "dataDir": str(data_dir)}}


def hl(plugins, command: str, conf: dict, cid: str = "ctr1"):
    return plugins.run("host-local", command, conf, containerid=cid, netns="/run/netns/unused")


@pytest.fixture
def victim(tmp_path) -> Path:
    """A file outside the data dir that nothing may write, create or remove."""
    v = tmp_path / "victim"
    v.write_bytes(b"precious")
    return v


def untouched(v: Path) -> bool:
    return v.exists() and not v.is_symlink() and v.read_bytes() == b"precious"


# ---- host-local: symlinks planted in the data directory ---------------------------------


def test_planted_ip_file_symlink_is_neither_followed_nor_freed(plugins, data_dir, victim):
    net = data_dir / NET
    net.mkdir()
    os.symlink(victim, net / "10.55.0.2")  # the address ADD would pick first
    out = hl(plugins, "ADD", hl_conf(data_dir)).ok().json
    assert out["ips"][0]["address"] == "10.55.0.3/24"  # the planted name counts as taken
    victim.write_bytes(b"ctr1\r\neth0")  # even a target that looks like our lease is not ours
    hl(plugins, "DEL", hl_conf(data_dir)).ok()
    assert (net / "10.55.0.2").is_symlink() and victim.read_bytes() == b"ctr1\r\neth0"
    assert not (net / "10.55.0.3").exists()


def test_planted_last_reserved_symlink_is_replaced_not_written_through(plugins, data_dir, victim):
    net = data_dir / NET
    net.mkdir()
    os.symlink(victim, net / "last_reserved_ip.0")
    hl(plugins, "ADD", hl_conf(data_dir)).ok()
    assert untouched(victim)
    assert not (net / "last_reserved_ip.0").is_symlink()
    assert (net / "last_reserved_ip.0").read_bytes() == b"10.55.0.2"


@pytest.mark.parametrize("target_exists", [True, False])
def test_planted_lock_symlink_is_refused(plugins, data_dir, victim, tmp_path, target_exists):
    net = data_dir / NET
    net.mkdir()
    target = victim if target_exists else tmp_path / "made-by-lock"
    os.symlink(target, net / "lock")
    for command in ("ADD", "DEL"):
        out = hl(plugins, command, hl_conf(data_dir))
        no_traceback(out)
        assert out.status == 1 and out.json["code"] == 5, out
    assert untouched(victim) and not (tmp_path / "made-by-lock").exists()
    assert sorted(p.name for p in net.iterdir()) == ["lock"]


def test_planted_network_dir_symlink_is_refused(plugins, data_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, data_dir / NET)
    for command in ("ADD", "DEL", "CHECK"):
        out = hl(plugins, command, dict(hl_conf(data_dir), prevResult={"cniVersion": "1.0.0"}))
        no_traceback(out)
        assert out.status == 1 and out.json["code"] == 5, (command, out)
    assert list(elsewhere.iterdir()) == []


# ---- names cannot leave their directories ----------------------------------------------------

ESCAPES = ["..", "../escape", "a/../../escape", "/abs", "..\n"]


@pytest.mark.parametrize("bad", ESCAPES)
def test_names_cannot_escape_the_data_dir(plugins, tmp_path, bad):
    data_dir = tmp_path / "d" / "networks"
    data_dir.mkdir(parents=True)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    as_name = hl(plugins, "ADD", hl_conf(data_dir, name=bad))
    as_id = hl(plugins, "ADD", hl_conf(data_dir), cid=bad)
    as_ifname = plugins.run("host-local", "ADD", hl_conf(data_dir), ifname=bad, netns="/run/netns/unused")
    for out, code in ((as_name, 7), (as_id, 4), (as_ifname, 4)):
        no_traceback(out)
        assert out.status == 1 and out.json["code"] == code, out
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_store_refuses_escaping_network_names(data_dir):
    from cni.errors import CNIError
    from cni.hostlocal.store import Store

    for bad in ("..", ".", "a/b", "../x", "", "x\0y"):
        with pytest.raises(CNIError):
            Store(str(data_dir), bad)
    assert list(data_dir.iterdir()) == []


@pytest.mark.parametrize("network,cid,ifname", [
    ("..", "c", "eth0"), ("../x", "c", "eth0"), ("n", "../../x", "eth0"), ("n", "c/d", "eth0"),
    ("n", "c", "../x"), ("n", "c", "a/b"), ("n", "c", ".."), ("n/..", "c", "eth0"), (".n", "c", "eth0"),
])
def test_result_cache_names_cannot_escape(tmp_path, network, cid, ifname):
    from cni.errors import CNIError
    from cni.runtime.cache import Cache, Entry

    cache = Cache(str(tmp_path / "cache"))
    with pytest.raises(CNIError):
        cache.save(Entry(container_id=cid, network=network, ifname=ifname, config=b"{}"))
    assert cache.read(network, cid, ifname) is None
    cache.remove(network, cid, ifname)
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob("**/x"))


def test_result_cache_planted_symlinks(tmp_path, victim):
    from cni.errors import CNIError
    from cni.runtime.cache import Cache, Entry

    entry = Entry(container_id="c", network="n", ifname="eth0", config=b"{}")
    cache = Cache(str(tmp_path / "cache"))
    (tmp_path / "cache" / "results").mkdir(parents=True)
    os.symlink(victim, tmp_path / "cache" / "results" / "n-c-eth0")
    cache.save(entry)  # replaces the planted link itself
    assert untouched(victim) and not Path(cache.path("n", "c", "eth0")).is_symlink()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = Cache(str(tmp_path / "other"))
    (tmp_path / "other").mkdir()
    os.symlink(elsewhere, tmp_path / "other" / "results")
    with pytest.raises(CNIError) as info:
        other.save(entry)
    assert info.value.code == 5 and list(elsewhere.iterdir()) == []


# ---- the dhcp daemon ---------------------------------------------------------------------------


def test_dhcp_socket_is_root_only_by_default(tmp_path):
    from cni.dhcp import DEFAULT_SOCKET
    from cni.dhcp.daemon import bind_socket, parse_flags

    assert parse_flags([]).socketpath == DEFAULT_SOCKET == "/run/cni/dhcp.sock"
    old = os.umask(0)  # even a permissive umask
    try:
        sock = bind_socket(str(tmp_path / "run" / "cni" / "dhcp.sock"))
    finally:
        os.umask(old)
    try:
        st = os.stat(tmp_path / "run" / "cni" / "dhcp.sock")
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
        assert stat.S_IMODE(os.stat(tmp_path / "run" / "cni").st_mode) & 0o022 == 0
    finally:
        sock.close()


@pytest.mark.parametrize("path", [
    "/run/netns/../../etc/passwd", "/var/run/netns/../../../etc/shadow", "/proc/1/ns/../../../etc/passwd",
    "/run/netns/..", "/run/netns/", "/proc/self/ns/net", "/proc/1/ns/../../self/ns/net", "/run/netns/a/../../x/y",
    "/tmp/netns", "run/netns/x", "/run/netns/x\n/etc", "",
])
def test_dhcp_daemon_refuses_paths_outside_netns_dirs(tmp_path, path):
    from cni.dhcp.daemon import Daemon, parse_flags
    from cni.errors import CNIError

    daemon = Daemon(parse_flags(["-statedir", str(tmp_path)]))
    with pytest.raises(CNIError) as info:
        daemon._netns_path(path)
    assert info.value.code == 4


def test_dhcp_daemon_refuses_symlinks_under_run_netns(tmp_path, container_ns, victim):
    from cni.dhcp.daemon import Daemon, parse_flags
    from cni.errors import CNIError

    daemon = Daemon(parse_flags(["-statedir", str(tmp_path)]))
    assert daemon._netns_path(container_ns.path) == container_ns.path  # the real thing is fine
    links = []
    try:
        for target in (str(victim), container_ns.path, "/proc/1/ns/net"):
            link = f"/run/netns/pycni-sec-{os.urandom(4).hex()}"
            os.symlink(target, link)
            links.append(link)
            for given in (link, link.replace("/run/", "/var/run/", 1)):
                with pytest.raises(CNIError) as info:
                    daemon._netns_path(given)
                assert info.value.code == 4 and "symlink" in info.value.details
    finally:
        for link in links:
            os.unlink(link)


def test_dhcp_daemon_hostprefix_symlink_refused(tmp_path):
    from cni.dhcp.daemon import Daemon, parse_flags
    from cni.errors import CNIError

    host = tmp_path / "host"
    (host / "run" / "netns").mkdir(parents=True)
    os.symlink("/etc/passwd", host / "run" / "netns" / "evil")
    (host / "run" / "netns" / "plain").touch()
    daemon = Daemon(parse_flags(["-hostprefix", str(host), "-statedir", str(tmp_path / "s")]))
    assert daemon._netns_path("/run/netns/plain") == str(host / "run" / "netns" / "plain")
    with pytest.raises(CNIError):
        daemon._netns_path("/run/netns/evil")
    with pytest.raises(CNIError):
        daemon._netns_path(f"{host}/run/netns/../../../etc/passwd")


# ---- child processes get a clean environment ------------------------------------------------------

LEAKS = ("_MEIPASS2", "_PYI_ARCHIVE_FILE", "_PYI_APPLICATION_HOME_DIR", "_PYI_PARENT_PROCESS_LEVEL",
         "_PYI_LINUX_PROCESS_NAME", "PYTHONHOME", "PYTHONPATH", "LD_PRELOAD")


def dumped(path: Path) -> list[dict]:
    envs = []
    for block in path.read_text().split("@@END@@\n"):
        if block.strip():
            envs.append(dict(line.split("=", 1) for line in block.splitlines() if "=" in line))
    return envs


def assert_clean(env: dict, runtime_ld: str | None) -> None:
    leaked = [k for k in LEAKS if k in env] + [k for k in env if k.endswith("_ORIG")]
    assert not leaked, f"leaked into the child: {leaked}"
    assert env.get("LD_LIBRARY_PATH") == runtime_ld, env.get("LD_LIBRARY_PATH")
    assert str(BIN) not in env.get("LD_LIBRARY_PATH", "")


@pytest.mark.parametrize("runtime_ld", [None, "/opt/runtime/lib"])
def test_frozen_bridge_gives_a_foreign_ipam_a_clean_environment(frozen_plugins, host_ns, container_ns, tmp_path,
                                                               runtime_ld):
    ipam_dir = tmp_path / "ipam"
    ipam_dir.mkdir()
    dump = tmp_path / "ipam-env"
    script = ipam_dir / "dumpenv"
    script.write_text(f"""#!/bin/sh
env > {dump}.tmp; cat {dump}.tmp >> {dump}; echo @@END@@ >> {dump}
[ "$CNI_COMMAND" = ADD ] && echo '{{"cniVersion": "1.0.0", "ips": [{{"address": "10.44.0.5/24"}}]}}'
exit 0
""")
    script.chmod(0o755)
    conf = {"cniVersion": "1.0.0", "name": "envnet", "type": "bridge", "bridge": "envbr0",
            "ipam": {"type": "dumpenv"}}
    env = {"LD_LIBRARY_PATH": runtime_ld} if runtime_ld else None
    kw = dict(netns=container_ns.path, in_netns=host_ns.path, cni_path=f"{ipam_dir}:{BIN}", env=env)
    frozen_plugins.run("bridge", "ADD", conf, **kw).ok()
    frozen_plugins.run("bridge", "DEL", conf, **kw).ok()
    envs = dumped(dump)
    assert [e["CNI_COMMAND"] for e in envs] == ["ADD", "DEL"]
    for e in envs:
        assert_clean(e, runtime_ld)
        assert e["CNI_CONTAINERID"] == "ctr1" and e["CNI_IFNAME"] == "eth0"


@pytest.mark.parametrize("backend,tools", [
    ("iptables", ("iptables-restore", "iptables-save", "ip6tables-save")),
    ("nftables", ("nft",)),
])
def test_frozen_masquerade_tools_get_a_clean_environment(frozen_plugins, host_ns, container_ns, data_dir, tmp_path,
                                                         backend, tools):
    shims = tmp_path / "shims"
    shims.mkdir()
    dump = tmp_path / "tool-env"
    for tool in tools:
        real = f"/usr/sbin/{tool}"
        assert os.path.exists(real)
        shim = shims / tool
        shim.write_text(f"#!/bin/sh\n{{ echo TOOL={tool}; env; echo @@END@@; }} >> {dump}\nexec {real} \"$@\"\n")
        shim.chmod(0o755)
    conf = {"cniVersion": "1.0.0", "name": "envnet", "type": "ptp", "ipMasq": True, "ipMasqBackend": backend,
            "ipam": {"type": "host-local", "subnet": "10.45.0.0/24", "dataDir": str(data_dir)}}
    path = f"{shims}:/usr/sbin:/usr/bin:/sbin:/bin"
    kw = dict(netns=container_ns.path, in_netns=host_ns.path, env={"PATH": path, "LD_LIBRARY_PATH": "/opt/rt"})
    frozen_plugins.run("ptp", "ADD", conf, **kw).ok()
    frozen_plugins.run("ptp", "DEL", conf, **kw).ok()
    envs = dumped(dump)
    used = {e["TOOL"] for e in envs}
    assert used >= {tools[0]}, used
    for e in envs:
        assert_clean(e, "/opt/rt")
