"""A real containerd (Debian's 1.6, the runtime family k3s embeds) running containers on our plugins only.

`ctr run --cni` reads its networks from /etc/cni/net.d and its plugins from
/opt/cni/bin (Debian's build also looks in /usr/lib/cni), with no flag to
change either. So the whole run happens inside a private mount namespace where
those paths are our temp dirs (our bin/ alone, /usr/lib/cni hidden), with a
private /run (containerd 1.6 keeps /run/containerd/... whatever its state dir)
and a private /var/lib/cni (ctr's result cache), entered into a netns that
plays the host. The image is built here from busybox-static (no registry).

containerd calls DEL with an empty CNI_NETNS: after the containers exit,
nothing may be left in the host netns: no veth, no masquerade chain (the Go
bridge leaks one per container here), no reservation, no cached result.
"""
from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import textwrap
from pathlib import Path

import pytest

from conftest import BIN, needs_root
from test_podman import static_busybox

IMAGE = "docker.io/library/pycni-busybox:test"
SUBNET, GATEWAY = "10.89.3.0/24", "10.89.3.1"
NETWORK = "pycni-ctrd"
# The plugins of the chain; every one must be ours (bin/), the test refuses to run on a partial build.
CHAIN = ("bridge", "host-local", "portmap", "bandwidth")


def missing_tools() -> list[str]:
    missing = [t for t in ("containerd", "ctr", "runc", "nsenter", "unshare") if shutil.which(t) is None]
    if static_busybox() is None:
        missing.append("busybox-static")
    return missing


pytestmark = [needs_root, pytest.mark.frozen,
              pytest.mark.skipif(bool(missing_tools()), reason=f"needs containerd, runc, busybox-static: missing {missing_tools()}")]


def _blob(layout: dict, data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    layout[f"blobs/sha256/{digest[7:]}"] = data
    return {"digest": digest, "size": len(data)}


def _tar(files: dict) -> bytes:
    """A tar of {name: bytes | ("link", target) | ("dir",)}, deterministic."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if isinstance(content, tuple) and content[0] == "link":
                info.type, info.linkname = tarfile.SYMTYPE, content[1]
                tar.addfile(info)
            elif isinstance(content, tuple):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o755
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def busybox_image(path: Path) -> None:
    """An OCI image layout tarball holding a static busybox, named IMAGE for `ctr images import`."""
    files: dict = {d: ("dir",) for d in ("bin", "dev", "etc", "proc", "sys", "tmp")}
    files["bin/busybox"] = Path(static_busybox()).read_bytes()
    for applet in ("sh", "ip", "ping", "sleep", "cat", "nc", "wget", "httpd"):
        files[f"bin/{applet}"] = ("link", "busybox")
    layer = _tar(files)
    layout: dict = {}
    layer_ref = _blob(layout, layer)
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
              "rootfs": {"type": "layers", "diff_ids": [layer_ref["digest"]]}}
    config_ref = _blob(layout, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": dict(config_ref, mediaType="application/vnd.oci.image.config.v1+json"),
                "layers": [dict(layer_ref, mediaType="application/vnd.oci.image.layer.v1.tar")]}
    manifest_ref = _blob(layout, json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [dict(
        manifest_ref, mediaType="application/vnd.oci.image.manifest.v1+json",
        platform={"architecture": "amd64", "os": "linux"},
        annotations={"io.containerd.image.name": IMAGE, "org.opencontainers.image.ref.name": "test"})]}
    layout["oci-layout"] = json.dumps({"imageLayoutVersion": "1.0.0"}).encode()
    layout["index.json"] = json.dumps(index).encode()
    path.write_bytes(_tar(layout))


# Runs as root inside `unshare --mount --propagation private`, entered into the host netns.
# Everything it starts (containerd, its shims) it ends itself, by PID, even on failure.
DRIVER = r"""
set -u
T=$1 BIN=$2 IMAGE=$3
SOCK=$T/containerd.sock
CTR="ctr --address $SOCK --namespace pycni"
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/lib/cni
mount -t tmpfs tmpfs /etc/cni && mkdir /etc/cni/net.d && cp "$T/net.d/"* /etc/cni/net.d/
mount -t tmpfs tmpfs /opt && mkdir -p /opt/cni/bin && mount --bind "$BIN" /opt/cni/bin
[ -d /usr/lib/cni ] && mount -t tmpfs tmpfs /usr/lib/cni
cleanup() {
    for c in c1 c2; do $CTR task kill -s KILL $c >/dev/null 2>&1; done
    sleep 0.5
    for c in c1 c2; do $CTR task rm -f $c >/dev/null 2>&1; $CTR container rm $c >/dev/null 2>&1; done
    for pid in $(pgrep -f "containerd-shim.*-address $SOCK"); do kill -9 "$pid"; done
    [ -n "${CPID:-}" ] && kill "$CPID" && wait "$CPID"
    # runc's cgroups for namespace "pycni" (cgroup v1: one per controller; v2: one tree)
    for d in /sys/fs/cgroup/pycni /sys/fs/cgroup/*/pycni; do
        [ -d "$d" ] || continue
        for sub in "$d"/*/; do [ -d "$sub" ] && rmdir "$sub" 2>/dev/null; done
        rmdir "$d" 2>/dev/null
    done
    echo "== cache"; find /var/lib/cni -type f
}
trap cleanup EXIT
containerd --config "$T/config.toml" >"$T/containerd.log" 2>&1 &
CPID=$!
for i in $(seq 100); do [ -S "$SOCK" ] && $CTR version >/dev/null 2>&1 && break; sleep 0.1; done
$CTR images import "$T/image.tar" >/dev/null || { echo "import failed"; exit 1; }
# c2 serves; c1 reaches the gateway and c2, then both exit and their DEL runs (ctr run --rm).
$CTR run --rm --cni "$IMAGE" c2 sh -c 'ip -o -4 addr show eth0; sleep 30' >"$T/c2.out" 2>&1 &
C2=$!
for i in $(seq 200); do grep -q inet "$T/c2.out" && break; sleep 0.1; done
C2IP=$(sed -n 's/.*inet \([0-9.]*\)\/.*/\1/p' "$T/c2.out")
echo "== c2 $C2IP"
echo "== during"; iptables-save -t nat | grep -c '^:CNI-'; ls "$T/ipam/$NETWORK" | grep '^10\.' | tr '\n' ' '; echo
$CTR run --rm --cni "$IMAGE" c1 sh -c "ip -o -4 addr show eth0; ip route; ping -c 1 -W 5 $GATEWAY && echo GW-OK; ping -c 1 -W 5 $C2IP && echo PEER-OK"
echo "== c1 exit $?"
$CTR task kill -s KILL c2 >/dev/null 2>&1
wait $C2
echo "== c2 exit $?"
"""


@pytest.fixture
def node(tmp_path, host_ns):
    for name in CHAIN:
        if not (BIN / name).exists():
            pytest.fail(f"bin/{name} is missing: this test runs containerd on our plugins alone")
    (tmp_path / "net.d").mkdir()
    (tmp_path / "net.d" / "10-pycni.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": NETWORK, "plugins": [
            {"type": "bridge", "bridge": "ctrd0", "isGateway": True, "ipMasq": True,
             "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam"), "routes": [{"dst": "0.0.0.0/0"}],
                      "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "bandwidth", "capabilities": {"bandwidth": True}}]}))
    (tmp_path / "config.toml").write_text(textwrap.dedent(f"""\
        version = 2
        root = "{tmp_path}/root"
        state = "{tmp_path}/state"
        disabled_plugins = ["io.containerd.grpc.v1.cri"]
        [grpc]
          address = "{tmp_path}/containerd.sock"
        """))
    busybox_image(tmp_path / "image.tar")
    return tmp_path


def test_ctr_run_cni_on_our_plugins_leaves_nothing(node, host_ns):
    links_before = host_ns.links()
    p = subprocess.run(["nsenter", f"--net={host_ns.path}", "unshare", "--mount", "--propagation", "private",
                        "bash", "-c", DRIVER.replace("$NETWORK", NETWORK).replace("$GATEWAY", GATEWAY),
                        "driver", str(node), str(BIN), IMAGE],
                       capture_output=True, text=True, timeout=300)
    out = p.stdout
    log = (node / "containerd.log").read_text() if (node / "containerd.log").exists() else ""
    assert p.returncode == 0, f"{out}\n{p.stderr}\n{log[-3000:]}"
    assert "inet 10.89.3." in out and f"default via {GATEWAY}" in out, out
    assert "GW-OK" in out and "PEER-OK" in out, out
    assert "== c1 exit 0" in out, out
    c2_ip = out.split("== c2 ")[1].split()[0]
    during = out.split("== during\n")[1].split("\n")
    assert int(during[0]) == 1 and during[1].split() == [c2_ip], out  # c2's masquerade chain and reservation
    # Nothing left: the bridge stays (as with the reference), everything per container is gone.
    assert sorted(host_ns.links()) == sorted(links_before + ["ctrd0"]), host_ns.links()
    assert [l for l in host_ns.run("iptables-save", "-t", "nat").stdout.splitlines()
            if "CNI-" in l and "HOSTPORT" not in l] == [], "masquerade rules left behind"
    assert host_ns.run("tc", "qdisc", "show").stdout.count("tbf") == 0
    assert [x.name for x in (node / "ipam" / NETWORK).iterdir() if x.name[0].isdigit()] == []
    assert out.split("== cache\n")[1].strip() == "", "ctr's result cache still holds an attachment"
    assert glob.glob("/sys/fs/cgroup/pycni") + glob.glob("/sys/fs/cgroup/*/pycni") == []
