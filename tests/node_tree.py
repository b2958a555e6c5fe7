"""Node-shaped trees under a temporary root, for `cnitool doctor` (tests/test_doctor.py, test_nodeconfig.py).

`k3s_node()` builds a k3s node (its multi-call `cni` with seven links, pycni
installed beside them) next to a system containerd whose config points
elsewhere, holding exactly the four problems of EXPECTED. Fake executables are
small shell scripts that answer VERSION and print an about line.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

K3S = "var/lib/rancher/k3s"
K3S_HASH = "4f0c0ffee"
K3S_LINKS = ("bridge", "host-local", "loopback", "portmap", "bandwidth", "firewall", "flannel")
K3S_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"]
OUR_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"

# k3s's multi-call binary, as far as the doctor asks it anything.
FAKE_K3S_CNI = f"""#!/bin/sh
if [ "$CNI_COMMAND" = VERSION ]; then
    echo '{json.dumps({"cniVersion": "1.0.0", "supportedVersions": K3S_VERSIONS}, separators=(",", ":"))}'
    exit 0
fi
echo "CNI plugins plugin v1.2.0-k3s1" >&2
"""
# A stand-in for our frozen runtime, in the release layout (pycni-<version>-<digest>/pycni + pycni-lib/).
FAKE_PYCNI = f"""#!/bin/sh
if [ "$CNI_COMMAND" = VERSION ]; then
    echo '{json.dumps({"cniVersion": "1.1.0", "supportedVersions": OUR_VERSIONS})}'
    exit 0
fi
printf 'CNI pycni plugin 0.1.0\\ncommit {FAKE_COMMIT}\\n' >&2
"""


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def link(path: Path, target: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)


def install_fake_pycni(root: Path, bin_dir: str, names: tuple[str, ...]) -> None:
    d = root / bin_dir.lstrip("/")
    runtime = d / "pycni-0.1.0-abcdef123456"
    write(runtime / "pycni", FAKE_PYCNI, 0o755)
    write(runtime / "pycni-lib" / "cni" / "BUILD", f"commit {FAKE_COMMIT}\n")
    link(d / "pycni", "pycni-0.1.0-abcdef123456/pycni")
    for name in names:
        link(d / name, "pycni")


def conflist(root: Path, conf_dir: str, file: str, conf: dict) -> None:
    write(root / conf_dir.lstrip("/") / file, json.dumps(conf))


def k3s_node(root: Path) -> Path:
    """The tree: see the module docstring. Returns the root."""
    cni_dir = root / K3S / "data" / "cni"
    write(root / K3S / "data" / K3S_HASH / "bin" / "cni", FAKE_K3S_CNI, 0o755)
    for name in ("cni",) + K3S_LINKS:  # absolute links into the current data dir, as k3s makes them
        link(cni_dir / name, f"/{K3S}/data/{K3S_HASH}/bin/cni")
    install_fake_pycni(root, f"/{K3S}/data/cni", ("macvlan", "dhcp"))
    net_d = f"/{K3S}/agent/etc/cni/net.d"
    conflist(root, net_d, "10-flannel.conflist", {"cniVersion": "1.0.0", "name": "cbr0", "plugins": [
        {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
        {"type": "portmap", "capabilities": {"portMappings": True}}]})
    conflist(root, net_d, "20-macnet.conflist", {"cniVersion": "1.1.0", "name": "macnet", "plugins": [
        {"type": "macvlan", "master": "eth1", "ipam": {"type": "host-local", "subnet": "10.10.0.0/24"}}]})
    conflist(root, net_d, "30-dhcpnet.conflist", {"cniVersion": "1.0.0", "name": "dhcpnet", "plugins": [
        {"type": "macvlan", "master": "eth1", "ipam": {"type": "dhcp"}}]})
    conflist(root, net_d, "40-ipvnet.conflist", {"cniVersion": "1.0.0", "name": "ipvnet", "plugins": [
        {"type": "ipvlan", "master": "eth1", "ipam": {"type": "host-local", "subnet": "10.11.0.0/24"}}]})
    # host-local's store: one reservation of a live container, one of a container long gone.
    leases = root / "var/lib/cni/networks/macnet"
    write(leases / "10.10.0.5", "live-ctr\r\neth0", 0o600)  # host-local's modes
    write(leases / "10.10.0.6", "gone-ctr\r\nnet1", 0o600)
    write(leases / "last_reserved_ip.0", "10.10.0.6")
    write(leases / "lock", "")
    entry = {"kind": "cniCacheV1", "containerId": "live-ctr", "config": "", "ifName": "eth0",
             "networkName": "macnet", "result": {"cniVersion": "1.1.0"}}
    write(root / "var/lib/cni/results/macnet-live-ctr-eth0", json.dumps(entry), 0o600)
    # A system containerd beside k3s, configured for other directories, with a healthy network.
    write(root / "etc/containerd/config.toml", """version = 2
# plugins where the vendor put them
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/local/lib/cni"
  conf_dir = '/etc/cni/custom.d'
  max_conf_num = 1
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true
""")
    install_fake_pycni(root, "/usr/local/lib/cni", ("bridge", "host-local"))
    conflist(root, "/etc/cni/custom.d", "10-custom.conflist", {"cniVersion": "1.1.0", "name": "custom", "plugins": [
        {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "subnet": "10.12.0.0/24",
                                                      "dataDir": "/var/lib/custom"}}]})
    conflist(root, "/etc/cni/custom.d", "20-second.conflist", {"cniVersion": "1.0.0", "name": "second", "plugins": [
        {"type": "bridge", "bridge": "cni1"}]})
    return root


EXPECTED = {
    ("unsupported-version", "macnet", "host-local"),
    ("dhcp-daemon", "dhcpnet", "dhcp"),
    ("missing-plugin", "ipvnet", "ipvlan"),
    ("stale-reservation", "macnet", ""),
}
