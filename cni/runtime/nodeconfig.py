"""Where the container runtimes of a node look for plugins and network configurations.

Read from their configuration files, the way each runtime reads them:

- containerd: the CRI plugin's `cni` table of /etc/containerd/config.toml
  (`bin_dir` or `bin_dirs`, `conf_dir`, `max_conf_num`), for config versions
  1, 2 and 3; defaults /opt/cni/bin, /etc/cni/net.d and 1;
- k3s: the containerd configuration k3s generates, or k3s's own defaults;
- CRI-O: `[crio.network]` of /etc/crio/crio.conf and crio.conf.d/*.conf;
- podman with the CNI backend: `[network]` of containers.conf;
- cnitool and the scripts: NETCONFPATH and CNI_PATH.

Every path is a path on the node; `Root` maps it into the tree being
inspected (`--root`), symbolic links included.
"""
from __future__ import annotations

import os
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (about 4 ms an exec)
if TYPE_CHECKING:
    from typing import Mapping

from ..record import Record
from . import toml

DEFAULT_BIN_DIR = "/opt/cni/bin"
DEFAULT_CONF_DIR = "/etc/cni/net.d"
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
CONTAINERD_MARKERS = ("/usr/bin/containerd", "/usr/local/bin/containerd", "/usr/sbin/containerd",
                      "/run/containerd/containerd.sock")
K3S_DIR = "/var/lib/rancher/k3s"
K3S_CONTAINERD_CONFIG = K3S_DIR + "/agent/etc/containerd/config.toml"
K3S_BIN_DIR = K3S_DIR + "/data/cni"
K3S_OLD_BIN_DIR = K3S_DIR + "/data/current/bin"  # before k3s kept a stable plugin directory
K3S_CONF_DIR = K3S_DIR + "/agent/etc/cni/net.d"
CRIO_CONFIGS = ("/etc/crio/crio.conf",)
CRIO_DROP_IN = "/etc/crio/crio.conf.d"
CONTAINERS_CONFIGS = ("/usr/share/containers/containers.conf", "/etc/containers/containers.conf")
CONTAINERS_DROP_IN = "/etc/containers/containers.conf.d"
PODMAN_BIN_DIRS = ("/usr/local/libexec/cni", "/usr/libexec/cni", "/usr/local/lib/cni", "/usr/lib/cni",
                   "/opt/cni/bin")
# The CRI plugin's table, by containerd config version (3: containerd 2.x, 2: 1.x, 1: old 1.x).
CRI_TABLES = (("io.containerd.cri.v1.runtime",), ("io.containerd.grpc.v1.cri",), ("cri",))


class Setup(Record):
    """What one runtime uses: plugins from `bin_dirs`, networks from `conf_dir`."""

    runtime: str = ""  # containerd, k3s, cri-o, podman, environment, command line, default
    source: str = ""  # the configuration file it was read from; "" for built-in defaults
    bin_dirs: list
    conf_dir: str = DEFAULT_CONF_DIR
    max_conf_num: int = 0  # containerd: how many network files it loads; 0: all

    def __init__(self, **values: object) -> None:
        self.bin_dirs = []
        super().__init__(**values)

    def same_dirs(self, other: "Setup") -> bool:
        return (self.bin_dirs, self.conf_dir, self.max_conf_num) == (other.bin_dirs, other.conf_dir,
                                                                     other.max_conf_num)


class Root:
    """The node's file system seen from `top` (a mounted node, a test tree, or /)."""

    def __init__(self, top: str = "/") -> None:
        self.top = os.path.abspath(top)

    def local(self, node_path: str) -> str:
        """Where the node's absolute path is found here."""
        if self.top == "/":
            return node_path
        return os.path.join(self.top, node_path.lstrip("/"))

    def resolve(self, node_path: str) -> str:
        """The node path with every symbolic link followed inside the node (absolute targets too)."""
        parts = [p for p in node_path.split("/") if p]
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            current = "/" + "/".join(done + [part])
            try:
                target = os.readlink(self.local(current))
            except OSError:
                done.append(part)
                continue
            hops += 1
            if hops > 40:
                raise OSError(40, "too many levels of symbolic links", node_path)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p] + parts
        return "/" + "/".join(done)

    def exists(self, node_path: str) -> bool:
        return os.path.exists(self.local(self.resolve(node_path)))

    def isdir(self, node_path: str) -> bool:
        return os.path.isdir(self.local(self.resolve(node_path)))

    def read_text(self, node_path: str) -> str:
        with open(self.local(self.resolve(node_path)), encoding="utf-8", errors="replace") as f:
            return f.read()

    def listdir(self, node_path: str) -> list[str]:
        return sorted(os.listdir(self.local(self.resolve(node_path))))


class ConfigProblem(Record):
    """A runtime configuration file that could not be read or parsed."""

    path: str = ""
    message: str = ""
    needs_root: bool = False


def _table(doc: dict, *keys: str) -> dict:
    for key in keys:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc if isinstance(doc, dict) else {}


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v]
    return []


def _clean(path: str) -> str:
    return os.path.normpath(path) if path else path


class Finder:
    """Collects the setups of one node, and the configuration files it could not read."""

    def __init__(self, root: Root) -> None:
        self.root = root
        self.problems: list[ConfigProblem] = []

    def load_toml(self, path: str) -> dict | None:
        """The parsed file; None when it is absent or unreadable (then recorded as a problem)."""
        try:
            text = self.root.read_text(path)
        except FileNotFoundError:
            return None
        except PermissionError:
            self.problems.append(ConfigProblem(path=path, message="permission denied", needs_root=True))
            return None
        except OSError as exc:
            self.problems.append(ConfigProblem(path=path, message=exc.strerror or str(exc)))
            return None
        try:
            return toml.loads(text)
        except toml.TomlError as exc:
            self.problems.append(ConfigProblem(path=path, message=f"not valid TOML: {exc}"))
            return None

    def drop_ins(self, directory: str) -> list[str]:
        try:
            names = self.root.listdir(directory)
        except OSError:
            return []
        return [f"{directory}/{n}" for n in names if n.endswith(".conf")]

    # ---- containerd and k3s ----------------------------------------------------------

    def containerd(self, runtime: str, path: str, bin_dir: str, conf_dir: str) -> Setup | None:
        doc = self.load_toml(path)
        if doc is None:
            return None
        setup = Setup(runtime=runtime, source=path, bin_dirs=[bin_dir], conf_dir=conf_dir, max_conf_num=1)
        for keys in CRI_TABLES:
            cni = _table(doc, "plugins", *keys, "cni")
            if cni:
                dirs = _strings(cni.get("bin_dirs")) or _strings(cni.get("bin_dir"))
                setup.bin_dirs = [_clean(d) for d in dirs] or setup.bin_dirs
                setup.conf_dir = _clean(cni.get("conf_dir") or "") or setup.conf_dir
                if isinstance(cni.get("max_conf_num"), int):
                    setup.max_conf_num = cni["max_conf_num"]
                break
        return setup

    def system_containerd(self) -> Setup | None:
        setup = self.containerd("containerd", CONTAINERD_CONFIG, DEFAULT_BIN_DIR, DEFAULT_CONF_DIR)
        if setup is None and any(self.root.exists(m) for m in CONTAINERD_MARKERS):
            setup = Setup(runtime="containerd", bin_dirs=[DEFAULT_BIN_DIR], conf_dir=DEFAULT_CONF_DIR, max_conf_num=1)
        return setup

    def k3s(self) -> Setup | None:
        if not self.root.isdir(K3S_DIR):
            return None
        bin_dir = K3S_BIN_DIR
        if not self.root.isdir(K3S_BIN_DIR) and self.root.isdir(K3S_OLD_BIN_DIR):
            bin_dir = K3S_OLD_BIN_DIR
        setup = self.containerd("k3s", K3S_CONTAINERD_CONFIG, bin_dir, K3S_CONF_DIR)
        return setup or Setup(runtime="k3s", bin_dirs=[bin_dir], conf_dir=K3S_CONF_DIR, max_conf_num=1)

    # ---- CRI-O and podman --------------------------------------------------------------

    def crio(self) -> Setup | None:
        files = [p for p in CRIO_CONFIGS if self.root.exists(p)] + self.drop_ins(CRIO_DROP_IN)
        if not files:
            return None
        setup = Setup(runtime="cri-o", source=files[0], bin_dirs=[DEFAULT_BIN_DIR], conf_dir=DEFAULT_CONF_DIR)
        for path in files:  # later files override earlier ones, key by key
            network = _table(self.load_toml(path) or {}, "crio", "network")
            dirs = _strings(network.get("plugin_dirs")) or _strings(network.get("plugin_dir"))
            if dirs:
                setup.bin_dirs = [_clean(d) for d in dirs]
                setup.source = path
            if isinstance(network.get("network_dir"), str) and network["network_dir"]:
                setup.conf_dir = _clean(network["network_dir"])
                setup.source = path
        return setup

    def podman(self) -> Setup | None:
        files = [p for p in CONTAINERS_CONFIGS if self.root.exists(p)] + self.drop_ins(CONTAINERS_DROP_IN)
        backend, dirs, conf_dir, source = "", list(PODMAN_BIN_DIRS), DEFAULT_CONF_DIR, ""
        for path in files:
            network = _table(self.load_toml(path) or {}, "network")
            if isinstance(network.get("network_backend"), str):
                backend = network["network_backend"]
                source = path
            if _strings(network.get("cni_plugin_dirs")):
                dirs = [_clean(d) for d in _strings(network["cni_plugin_dirs"])]
            if isinstance(network.get("network_config_dir"), str) and network["network_config_dir"]:
                conf_dir = _clean(network["network_config_dir"])
        # Only a podman told to use CNI runs CNI plugins; netavark is its default since 4.0.
        if backend != "cni":
            return None
        return Setup(runtime="podman", source=source, bin_dirs=dirs, conf_dir=conf_dir)


def find_setups(root: Root, environ: Mapping[str, str], bin_dirs: list[str] | None = None,
                conf_dir: str | None = None) -> tuple[list[Setup], list[ConfigProblem]]:
    """Every distinct setup of the node, and the runtime configuration files that could not be read.

    `bin_dirs`/`conf_dir` (the command line) replace discovery: one setup, the
    other half from CNI_PATH/NETCONFPATH or the defaults.
    """
    finder = Finder(root)
    if bin_dirs or conf_dir:
        env_dirs = [d for d in environ.get("CNI_PATH", "").split(os.pathsep) if d]
        setup = Setup(runtime="command line", bin_dirs=[_clean(d) for d in (bin_dirs or env_dirs or [DEFAULT_BIN_DIR])],
                      conf_dir=_clean(conf_dir or environ.get("NETCONFPATH") or DEFAULT_CONF_DIR))
        return [setup], []
    found = [finder.system_containerd(), finder.k3s(), finder.crio(), finder.podman()]
    if environ.get("NETCONFPATH") or environ.get("CNI_PATH"):
        found.append(Setup(runtime="environment",
                           bin_dirs=[_clean(d) for d in environ.get("CNI_PATH", "").split(os.pathsep) if d]
                           or [DEFAULT_BIN_DIR],
                           conf_dir=_clean(environ.get("NETCONFPATH") or DEFAULT_CONF_DIR)))
    setups: list[Setup] = []
    for setup in found:
        if setup is None:
            continue
        same = next((s for s in setups if s.same_dirs(setup)), None)
        if same is not None:
            same.runtime += ", " + setup.runtime
        else:
            setups.append(setup)
    if not setups:
        setups.append(Setup(runtime="default", bin_dirs=[DEFAULT_BIN_DIR], conf_dir=DEFAULT_CONF_DIR))
    return setups, finder.problems
