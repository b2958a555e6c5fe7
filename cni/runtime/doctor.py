"""`cnitool doctor`: why a pod on this node has no network, answered from the node.

For every runtime setup (cni/runtime/nodeconfig.py) the doctor loads each
network configuration the way the runtime would, finds every plugin it names
(IPAM and Multus-style delegates included), asks it VERSION, tells whose it is
and whether the dhcp daemon answers; then it looks for stale state: host-local
reservations and our per-container masquerade chains whose container no
runtime's result cache knows. It never changes anything. What it cannot see as
the user it runs as is reported as not checked.
"""
from __future__ import annotations

import errno
import os
import subprocess
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (about 4 ms an exec)
if TYPE_CHECKING:
    from typing import Iterator, Mapping

from .. import version as versions
from ..errors import INTERNAL, CNIError
from ..record import Record
from .conf import ConfError, NetworkList, load_file, LIST_EXTENSIONS, SINGLE_EXTENSIONS
from .network import VERSION_REQUEST, supported_versions
from .nodeconfig import DEFAULT_BIN_DIR, K3S_BIN_DIR, Root, Setup, find_setups

CACHE_DIR = "/var/lib/cni"
HOST_LOCAL_DATA_DIR = "/var/lib/cni/networks"
DHCP_SOCKET = "/run/cni/dhcp.sock"
EXEC_TIMEOUT = 10.0

OURS, K3S, OTHER, MISSING = "pycni", "k3s", "other", "missing"

OK, PROBLEMS, ERROR = 0, 1, 2  # exit statuses


class Problem(Record):
    kind: str = ""  # a stable slug for tools: missing-plugin, unsupported-version, ...
    message: str = ""
    fix: str = ""
    network: str = ""
    file: str = ""
    plugin: str = ""

    def to_dict(self) -> dict:
        return {k: v for k, v in self.fields().items() if v}


class PluginInfo(Record):
    type: str = ""
    role: str = "plugin"  # plugin, ipam, delegate
    path: str = ""  # where the runtime finds it (node path); "" when it does not
    resolved: str = ""  # the file behind links
    owner: str = MISSING
    version: str = ""
    build: str = ""
    supported: list | None = None
    cni_version: str = ""

    def to_dict(self) -> dict:
        out = {"type": self.type, "role": self.role, "path": self.path, "owner": self.owner,
               "cniVersion": self.cni_version}
        if self.resolved and self.resolved != self.path:
            out["resolved"] = self.resolved
        if self.version:
            out["version"] = self.version
        if self.build:
            out["build"] = self.build
        if self.supported is not None:
            out["supportedVersions"] = self.supported
        return out


class NetworkInfo(Record):
    file: str = ""
    name: str = ""
    cni_version: str = ""
    loaded: bool = True  # False: past the runtime's max_conf_num
    plugins: list
    problems: list
    host_local_dirs: set  # dataDir of every host-local IPAM in it

    def __init__(self, **values: object) -> None:
        self.plugins, self.problems, self.host_local_dirs = [], [], set()
        super().__init__(**values)


class SetupReport(Record):
    setup: Setup
    networks: list
    problems: list
    readable: bool = True

    def __init__(self, **values: object) -> None:
        self.networks, self.problems = [], []
        super().__init__(**values)


class Report(Record):
    root: str = "/"
    setups: list
    problems: list  # node-wide: runtime configuration files, stale state
    not_checked: list  # (what, why)
    error: str = ""  # could not inspect at all

    def __init__(self, **values: object) -> None:
        self.setups, self.problems, self.not_checked = [], [], []
        super().__init__(**values)

    def all_problems(self) -> list[Problem]:
        found = []
        for sr in self.setups:
            found += sr.problems
            for net in sr.networks:
                found += net.problems
        return found + self.problems

    def status(self) -> int:
        if self.error:
            return ERROR
        return PROBLEMS if self.all_problems() else OK


# ---- plugins: where, whose, which versions ---------------------------------------------


class Plugins:
    """Finds, identifies and asks plugins, once per executable."""

    def __init__(self, root: Root) -> None:
        self.root = root
        self.seen: dict[tuple, PluginInfo] = {}

    def find(self, plugin_type: str, bin_dirs: list[str]) -> str:
        if not plugin_type or "/" in plugin_type or plugin_type in (".", ".."):
            return ""
        for directory in bin_dirs:
            path = os.path.join(directory, plugin_type)
            local = self.root.local(self.root.resolve(path))
            if os.path.isfile(local) and os.access(local, os.X_OK):
                return path
        return ""

    def info(self, plugin_type: str, bin_dirs: list[str]) -> tuple[PluginInfo, str]:
        """What the runtime would run for `plugin_type`, and why it could not be asked ("" if it was)."""
        path = self.find(plugin_type, bin_dirs)
        if not path:
            return PluginInfo(type=plugin_type), ""
        key = (plugin_type, path)
        if key not in self.seen:
            self.seen[key] = self._ask(plugin_type, path)
        info = self.seen[key]
        failure = "" if info.supported is not None else info.version
        return PluginInfo(**info.fields()), failure

    def _run(self, plugin_type: str, resolved: str, env: dict, stdin: bytes) -> subprocess.CompletedProcess:
        # argv[0] is the plugin's name: multi-call binaries (ours, k3s's) dispatch on it.
        env = dict(env, PATH=os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"))
        return subprocess.run([plugin_type], executable=self.root.local(resolved), env=env, input=stdin,
                              capture_output=True, timeout=EXEC_TIMEOUT)

    def _ask(self, plugin_type: str, path: str) -> PluginInfo:
        resolved = self.root.resolve(path)
        info = PluginInfo(type=plugin_type, path=path, resolved=resolved, owner=self._owner(resolved))
        if info.owner == OURS:
            info.build = self._build(resolved)
        try:
            about = self._run(plugin_type, resolved, {}, b"").stderr.decode(errors="replace")
            first = about.strip().splitlines()[0] if about.strip() else ""
            if info.owner == OURS and first.startswith("CNI ") and " plugin " in first:
                info.version = first.rsplit(" ", 1)[-1]
            elif info.owner != OURS:
                info.version = first[:120]
            answer = self._run(plugin_type, resolved, {"CNI_COMMAND": "VERSION"}, VERSION_REQUEST)
            if answer.returncode != 0:
                raise CNIError(INTERNAL, f"VERSION failed with status {answer.returncode}",
                               (answer.stdout or answer.stderr).decode(errors="replace").strip()[:200])
            info.supported = supported_versions(plugin_type, answer.stdout)
        except subprocess.TimeoutExpired:
            info.version = f"did not answer VERSION within {EXEC_TIMEOUT:g}s"
        except OSError as exc:
            info.version = f"cannot be run: {exc.strerror or exc}"
        except CNIError as err:
            info.version = f"{err.msg}{': ' + err.details if err.details else ''}"
        return info

    def _owner(self, resolved: str) -> str:
        name = os.path.basename(resolved)
        if name == "pycni" and os.path.isdir(self.root.local(os.path.join(os.path.dirname(resolved), "pycni-lib"))):
            return OURS
        if name == "cni":  # k3s's multi-call binary of the reference plugins (and flannel)
            return K3S
        return OTHER

    def _build(self, resolved: str) -> str:
        try:
            text = self.root.read_text(os.path.join(os.path.dirname(resolved), "pycni-lib", "cni", "BUILD"))
        except OSError:
            return ""
        return text.strip().replace("commit ", "", 1)


def install_command(bin_dir: str, plugin_type: str = "") -> str:
    """How install.sh puts our plugins (or one of them) into `bin_dir`."""
    words = ["scripts/install.sh"] + {DEFAULT_BIN_DIR: [], K3S_BIN_DIR: ["--k3s"]}.get(bin_dir, ["--prefix", bin_dir])
    return " ".join(words + (["--only", plugin_type] if plugin_type else []))


def owner_text(info: PluginInfo) -> str:
    if info.owner == OURS:
        text = f"pycni {info.version}".strip()
        return f"{text} (commit {info.build[:12]})" if info.build else text
    if info.owner == K3S:
        return f"k3s's multi-call cni ({info.version})" if info.version else "k3s's multi-call cni"
    return f"another suite ({info.version})" if info.version else "another suite"


# ---- networks ------------------------------------------------------------------------------


def conf_files(root: Root, conf_dir: str) -> list[str]:
    """The network files in the order a runtime loads them (names sorted, all kinds together)."""
    names = root.listdir(conf_dir)
    out = []
    for name in names:
        path = f"{conf_dir.rstrip('/')}/{name}"
        if os.path.splitext(name)[1] in LIST_EXTENSIONS + SINGLE_EXTENSIONS and not root.isdir(path):
            out.append(path)
    return out


def plugin_entries(net: NetworkList) -> Iterator[tuple[str, str, str, dict, list[str]]]:
    """(type, role, cniVersion, the plugin's or delegate's config, extra bin dirs) of every plugin."""
    for plugin in net.plugins:
        yield from _entries(plugin, "plugin", net.cni_version, [])


def _entries(plugin: dict, role: str, cni_version: str, extra: list[str]) -> Iterator:
    yield plugin["type"] if isinstance(plugin.get("type"), str) else "", role, cni_version, plugin, extra
    ipam = plugin.get("ipam")
    if isinstance(ipam, dict) and isinstance(ipam.get("type"), str) and ipam["type"]:
        yield ipam["type"], "ipam", cni_version, plugin, extra
    delegates = plugin.get("delegates")
    if isinstance(delegates, list):  # Multus: the cluster network, inline
        bin_dir = plugin.get("binDir")
        more = extra + ([bin_dir] if isinstance(bin_dir, str) and bin_dir else [])
        for delegate in delegates:
            if not isinstance(delegate, dict):
                continue
            version = delegate.get("cniVersion") if isinstance(delegate.get("cniVersion"), str) else cni_version
            inner = delegate.get("plugins") if isinstance(delegate.get("plugins"), list) else [delegate]
            for p in inner:
                if isinstance(p, dict):
                    yield from _entries(p, "delegate", version or cni_version, more)


class Doctor:
    def __init__(self, root: Root, environ: Mapping[str, str], kernel: bool) -> None:
        self.root = root
        self.environ = environ
        self.kernel = kernel
        self.plugins = Plugins(root)
        self.is_root = os.geteuid() == 0
        self.not_checked: list[tuple[str, str]] = []  # found while examining networks

    def examine(self, bin_dirs: list[str] | None, conf_dir: str | None) -> Report:
        report = Report(root=self.root.top)
        if not os.path.isdir(self.root.top):
            report.error = f"{self.root.top} is not a directory"
            return report
        setups, config_problems = find_setups(self.root, self.environ, bin_dirs, conf_dir)
        for cp in config_problems:
            if cp.needs_root:
                report.not_checked.append((cp.path, "needs root"))
            else:
                report.problems.append(Problem(kind="runtime-config", file=cp.path, message=f"{cp.path}: {cp.message}",
                                               fix="fix the file: the runtime cannot start with it either"))
        dhcp_seen: dict[str, str] = {}
        for setup in setups:
            report.setups.append(self.examine_setup(setup, report, dhcp_seen))
        if report.setups and not any(sr.readable for sr in report.setups):
            report.error = "no network configuration directory could be read"
            return report
        self.stale_state(report)
        report.not_checked = self.not_checked + report.not_checked
        return report

    # ---- one runtime's directories -------------------------------------------------------------

    def examine_setup(self, setup: Setup, report: Report, dhcp_seen: dict[str, str]) -> SetupReport:
        sr = SetupReport(setup=setup)
        try:
            files = conf_files(self.root, setup.conf_dir)
        except FileNotFoundError:
            sr.problems.append(Problem(
                kind="no-config", file=setup.conf_dir,
                message=f"{setup.conf_dir} does not exist: {setup.runtime} has no network for pods",
                fix=f"put a network configuration there (a .conflist), or let your CNI (flannel, Multus) write one"))
            return sr
        except PermissionError:
            sr.readable = False
            report.not_checked.append((f"networks in {setup.conf_dir}", "needs root"))
            return sr
        except OSError as exc:
            sr.readable = False
            report.not_checked.append((f"networks in {setup.conf_dir}", exc.strerror or str(exc)))
            return sr
        if not any(self.root.isdir(d) for d in setup.bin_dirs):  # podman lists several; one is enough
            where = ", ".join(setup.bin_dirs) or "(none configured)"
            first = setup.bin_dirs[0] if setup.bin_dirs else DEFAULT_BIN_DIR
            sr.problems.append(Problem(
                kind="no-plugin-dir", file=where, message=f"no plugin directory of {setup.runtime} exists ({where})",
                fix=f"install the plugins ({install_command(first)}), or fix the runtime's bin_dir"))
        if not files:
            sr.problems.append(Problem(
                kind="no-config", file=setup.conf_dir,
                message=f"no network configuration in {setup.conf_dir}: {setup.runtime} has no network for pods",
                fix="put a network configuration there (a .conflist), or let your CNI (flannel, Multus) write one"))
        loaded = 0
        blocked = False
        for path in files:
            net = self.examine_file(path, setup, dhcp_seen)
            if setup.max_conf_num > 0:
                net.loaded = not blocked and loaded < setup.max_conf_num
                if net.loaded and net.problems and net.problems[0].kind == "invalid-config":
                    blocked = True  # containerd stops at a file it cannot parse
                    net.problems[0].fix += f"; {setup.runtime} loads no network at all while it is broken"
                elif net.loaded:
                    loaded += 1
            sr.networks.append(net)
        return sr

    def examine_file(self, path: str, setup: Setup, dhcp_seen: dict[str, str]) -> NetworkInfo:
        info = NetworkInfo(file=path)
        try:
            net = load_file(self.root.local(self.root.resolve(path)))
        except ConfError as err:
            message = err.msg.replace(self.root.local(""), "/") if self.root.top != "/" else err.msg
            info.problems.append(Problem(kind="invalid-config", file=path,
                                         message=f"{os.path.basename(path)}: {message}"
                                                 f"{': ' + err.details if err.details else ''}",
                                         fix="fix the JSON (the runtime skips or refuses this file)"))
            return info
        info.name, info.cni_version = net.name, net.cni_version
        for plugin_type, role, cni_version, conf, extra in plugin_entries(net):
            self.examine_plugin(info, plugin_type, role, cni_version, conf, setup.bin_dirs + extra, dhcp_seen)
            if plugin_type == "host-local" and role == "ipam":
                data_dir = conf["ipam"].get("dataDir")
                info.host_local_dirs.add(data_dir if isinstance(data_dir, str) and data_dir else HOST_LOCAL_DATA_DIR)
        return info

    def examine_plugin(self, net: NetworkInfo, plugin_type: str, role: str, cni_version: str, conf: dict,
                       bin_dirs: list[str], dhcp_seen: dict[str, str]) -> None:
        def problem(kind: str, message: str, fix: str) -> None:
            net.problems.append(Problem(kind=kind, network=net.name, file=net.file, plugin=plugin_type,
                                        message=message, fix=fix))

        info, failure = self.plugins.info(plugin_type, bin_dirs)
        info.role, info.cni_version = role, cni_version
        net.plugins.append(info)
        if info.owner == MISSING:
            where = ", ".join(bin_dirs) or "(no directory)"
            problem("missing-plugin", f'failed to find plugin "{plugin_type}" in {where}',
                    f"install it ({install_command(bin_dirs[0] if bin_dirs else DEFAULT_BIN_DIR, plugin_type)}), "
                    "or fix the type")
        elif failure:
            problem("plugin-failed", f"{info.path} ({owner_text(info)}): {failure}",
                    "reinstall the plugin; a runtime cannot use it either")
        elif cni_version not in (info.supported or []):
            top = versions.highest(list(info.supported or []))
            problem("unsupported-version",
                    f'{plugin_type} at {info.path} ({owner_text(info)}) does not support cniVersion "{cni_version}"'
                    f" (it supports {', '.join(info.supported or []) or 'nothing'})",
                    f'set "cniVersion" to {top or "a version it supports"}'
                    + ("" if info.owner == OURS else f", or install pycni's {plugin_type} (up to {versions.CURRENT})"))
        if plugin_type == "dhcp" and info.owner != MISSING:
            ipam = conf.get("ipam") if role == "ipam" else conf
            socket_path = DHCP_SOCKET
            if isinstance(ipam, dict) and isinstance(ipam.get("daemonSocketPath"), str):
                socket_path = ipam["daemonSocketPath"] or DHCP_SOCKET
            self.check_dhcp(net, info, socket_path, problem, dhcp_seen)

    # ---- the dhcp daemon ---------------------------------------------------------------------------

    def check_dhcp(self, net: NetworkInfo, info: PluginInfo, socket_path: str, problem, dhcp_seen: dict) -> None:
        if socket_path not in dhcp_seen:
            dhcp_seen[socket_path] = probe_dhcp(self.root.local(socket_path))
        state = dhcp_seen[socket_path]
        start = "enable cni-dhcp.socket (scripts/install.sh --dhcp-units) or run the DaemonSet's dhcp-daemon" \
            if info.owner == OURS else "start the dhcp daemon of the suite that ships this dhcp plugin"
        if state == "none":
            problem("dhcp-daemon", f"no dhcp daemon listens on {socket_path}: pods of this network wait for an address",
                    start)
        elif state == "http" and info.owner == OURS:
            problem("dhcp-daemon", f"the daemon on {socket_path} is not pycni's (it speaks HTTP: the Go daemon?)",
                    "stop it and start pycni's (`dhcp daemon`), or point ipam.daemonSocketPath at pycni's")
        elif state == "pycni" and info.owner != OURS:
            problem("dhcp-daemon", f"pycni's dhcp daemon listens on {socket_path}, but {info.path} is not pycni's "
                    "dhcp plugin: they do not speak the same protocol",
                    "install pycni's dhcp plugin (scripts/install.sh --only dhcp), or run the other suite's daemon")
        elif state == "garbled":
            problem("dhcp-daemon", f"something on {socket_path} answers, but not as a dhcp daemon",
                    "stop whatever listens there and start the dhcp daemon")
        elif state.startswith("denied"):
            item = (f"dhcp daemon on {socket_path}", "needs root")
            if item not in self.not_checked:
                self.not_checked.append(item)
        elif state.startswith("error"):
            problem("dhcp-daemon", f"cannot reach the dhcp daemon on {socket_path}: {state[6:]}",
                    "check the socket's path and permissions")

    # ---- stale state ---------------------------------------------------------------------------------

    def stale_state(self, report: Report) -> None:
        networks: dict[str, set[str]] = {}  # network name -> host-local data dirs
        for sr in report.setups:
            for net in sr.networks:
                if net.name:
                    networks.setdefault(net.name, set()).update(net.host_local_dirs)
        known = known_attachments(self.root)
        if known is None:
            report.not_checked.append(("stale state", f"the result cache {CACHE_DIR}/results cannot be read "
                                       f"({'needs root' if not self.is_root else 'missing'})"))
            return
        names, pairs = known
        cids = {cid for _, cid in pairs}

        def is_known(cid: str) -> bool:
            return cid in cids or any(f"-{cid}-" in name for name in names)

        for name in sorted(networks):
            for data_dir in sorted(networks[name]):
                self._stale_reservations(report, name, data_dir, is_known)
        if not self.kernel:
            report.not_checked.append(("masquerade rules", "--root inspects files only (add --kernel when this "
                                       "machine's network namespace is the node's)"))
        elif not self.is_root:
            report.not_checked.append(("masquerade rules", "needs root"))
        else:
            self._stale_masquerade(report, set(networks) | {n for n, _ in pairs}, cids, is_known)

    def _stale_reservations(self, report: Report, network: str, data_dir: str, is_known) -> None:
        from ..hostlocal.store import Store

        try:
            store = Store.existing(self.root.local(self.root.resolve(data_dir)), network)
            if store is None:
                return
            try:
                leases = store.leases()
            finally:
                store.close()
        except CNIError as err:  # the store reports an OSError's strerror as the details
            if err.details == os.strerror(errno.EACCES):
                report.not_checked.append((f"host-local reservations of {network} in {data_dir}", "needs root"))
            else:
                report.problems.append(Problem(kind="stale-reservation", network=network, file=data_dir,
                                               message=f"cannot read {data_dir}/{network}: {err.msg}",
                                               fix="check the directory"))
            return
        except OSError as exc:
            why = "needs root" if exc.errno in (errno.EACCES, errno.EPERM) else (exc.strerror or str(exc))
            report.not_checked.append((f"host-local reservations of {network} in {data_dir}", why))
            return
        for ip in sorted(leases, key=lambda a: (a.version, int(a))):
            cid, ifname = leases[ip]
            if cid and is_known(cid):
                continue
            owner = f"{cid}/{ifname}" if ifname else cid or "(nobody)"
            report.problems.append(Problem(
                kind="stale-reservation", network=network, file=f"{data_dir}/{network}/{ip}",
                message=f"{ip} of network {network} is reserved for container {owner}, which no runtime knows",
                fix=f"a runtime that runs CNI GC frees it; or, once no container uses {ip}, "
                    f"rm {data_dir}/{network}/{ip}"))

    def _stale_masquerade(self, report: Report, networks: set[str], cids: set[str], is_known) -> None:
        from .. import masq

        try:
            chains = masq.iptables_chains()
            comments = masq.nft_rule_comments()
        except CNIError as err:
            report.not_checked.append(("masquerade rules", err.msg))
            return
        seen = set()
        for family, chain, network, cid in chains:
            if is_known(cid) or chain in seen:
                continue
            seen.add(chain)
            tool = "ip6tables" if family == 6 else "iptables"
            report.problems.append(Problem(
                kind="stale-masquerade", network=network, plugin=chain,
                message=f"masquerade chain {chain} ({tool}) of network {network} is for container {cid}, "
                        "which no runtime knows",
                fix=f"CNI GC removes it; or {tool} -t nat -D POSTROUTING ... -j {chain}, then -F and -X {chain}"))
        if comments:
            nets = {masq.nft_comment(n, "").split(" ")[1]: n for n in networks}
            live = {masq.nft_comment(n, cid) for n in networks for cid in cids}
            for comment in sorted(set(comments) - live):
                parts = comment.split(" ")
                if len(parts) != 3 or parts[0] != "cni":
                    continue
                network = nets.get(parts[1], "")
                report.problems.append(Problem(
                    kind="stale-masquerade", network=network, plugin=masq.NFT_TABLE,
                    message=f'nftables masquerade rule "{comment}" in table inet {masq.NFT_TABLE}'
                            f"{' of network ' + network if network else ' of a network no configuration names'}"
                            " is for a container no runtime knows",
                    fix=f"CNI GC removes it; or nft delete rule inet {masq.NFT_TABLE} {masq.NFT_CHAIN} handle N"))


def known_attachments(root: Root) -> tuple[list[str], set[tuple[str, str]]] | None:
    """File names of every result cache entry and their (network, container ID); None if there is no cache.

    Multus and other runtimes keep caches of the same layout below /var/lib/cni/<name>/.
    """
    from .cache import Entry

    dirs = [f"{CACHE_DIR}/results"]
    try:
        dirs += [f"{CACHE_DIR}/{d}/results" for d in root.listdir(CACHE_DIR) if d != "results"]
    except OSError:
        return None
    names: list[str] = []
    pairs: set[tuple[str, str]] = set()
    readable = False
    for directory in dirs:
        local = root.local(root.resolve(directory))
        try:
            entries = sorted(os.listdir(local))
        except OSError:
            continue
        readable = True
        for name in entries:
            names.append(name)
            try:
                with open(os.path.join(local, name), "rb") as f:
                    entry = Entry.from_bytes(f.read())
                pairs.add((entry.network, entry.container_id))
            except (OSError, ValueError, TypeError):
                continue
    return (names, pairs) if readable else None


def probe_dhcp(local_socket: str) -> str:
    """pycni, http (the Go daemon), garbled, none, denied, or error:<why>: one STATUS request."""
    import _socket

    from ..dhcp import wire

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    sock.settimeout(5.0)
    try:
        try:
            sock.connect(local_socket)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
                return "none"
            if exc.errno in (errno.EACCES, errno.EPERM):
                return "denied"
            return f"error:{exc.strerror or exc}"
        try:
            sock.sendall(wire.encode({wire.MARK: wire.VERSION, "op": "status", "params": {}}))
            line = wire.read_line(sock)
        except _socket.timeout:
            return "error:it accepts connections but did not answer within 5s"
        except OSError as exc:
            return f"error:{exc.strerror or exc}"
    finally:
        sock.close()
    try:
        wire.decode_answer(line, local_socket)
    except wire.WrongProtocol as err:
        return "http" if "HTTP" in err.msg else "garbled"
    except CNIError:
        pass  # it answered in our protocol, with an error of its own
    return "pycni"


def examine(root: str, environ: Mapping[str, str], bin_dirs: list[str] | None = None, conf_dir: str | None = None,
            kernel: bool | None = None) -> Report:
    """The whole examination; `kernel` (default: only when root is /) also reads masquerade rules."""
    node = Root(root)
    return Doctor(node, environ, node.top == "/" if kernel is None else kernel).examine(bin_dirs, conf_dir)


# ---- output ------------------------------------------------------------------------------------


def to_dict(report: Report) -> dict:
    setups = []
    for sr in report.setups:
        s = sr.setup
        networks = []
        for net in sr.networks:
            networks.append({"file": net.file, "name": net.name, "cniVersion": net.cni_version, "loaded": net.loaded,
                             "plugins": [p.to_dict() for p in net.plugins],
                             "problems": [p.to_dict() for p in net.problems]})
        setups.append({"runtime": s.runtime, "source": s.source, "binDirs": list(s.bin_dirs), "confDir": s.conf_dir,
                       "maxConfNum": s.max_conf_num, "networks": networks,
                       "problems": [p.to_dict() for p in sr.problems]})
    status = report.status()
    return {"root": report.root, "status": ("ok", "problems", "error")[status], "error": report.error,
            "setups": setups, "problems": [p.to_dict() for p in report.all_problems()],
            "notChecked": [{"what": what, "why": why} for what, why in report.not_checked]}


def render_text(report: Report) -> str:
    lines: list[str] = []
    if report.root != "/":
        lines.append(f"node root: {report.root}")
    if report.error:
        lines.append(f"cannot inspect: {report.error}")
    for sr in report.setups:
        s = sr.setup
        where = f" ({s.source})" if s.source else ""
        pick = f", max_conf_num {s.max_conf_num}" if s.max_conf_num else ""
        lines.append(f"{s.runtime}{where}: plugins in {':'.join(s.bin_dirs)}, networks in {s.conf_dir}{pick}")
        lines += [f"  PROBLEM {p.message}; fix: {p.fix}" for p in sr.problems]
        for net in sr.networks:
            title = f'network "{net.name}"' if net.name else "unreadable file"
            state = "" if net.loaded else f", not a pod network: max_conf_num {s.max_conf_num} loads the first only"
            version = f", cniVersion {net.cni_version}" if net.cni_version else ""
            lines.append(f"  {title} ({os.path.basename(net.file)}{version}{state})")
            for p in net.plugins:
                where = p.path or "not found"
                lines.append(f"    {p.type:<12} {p.role:<8} {where}  {owner_text(p) if p.path else ''}".rstrip())
            lines += [f"    PROBLEM {p.message}; fix: {p.fix}" for p in net.problems]
    stale = report.problems
    if stale:
        lines.append("stale state and runtime configuration")
        for network in sorted({p.network for p in stale}):
            if network:
                lines.append(f'  network "{network}"')
            lines += [f"    PROBLEM {p.message}; fix: {p.fix}" for p in stale if p.network == network]
    if report.not_checked:
        lines.append("not checked")
        lines += [f"  {what}: {why}" for what, why in report.not_checked]
    count = len(report.all_problems())
    if report.error:
        lines.append("could not inspect this node")
    else:
        lines.append("no problems found" if count == 0 else f"{count} problem{'s' if count != 1 else ''} found")
    return "\n".join(lines) + "\n"


USAGE = """usage: cnitool doctor [--json] [--root DIR] [--bin-dir DIR]... [--conf-dir DIR] [--kernel]
  finds the runtimes' plugin and network directories, checks every network and its plugins,
  and reports stale state; changes nothing. Exit status: 0 fine, 1 problems found, 2 could not inspect.
  --root DIR      treat DIR as the node's / (a mounted node, a test tree)
  --bin-dir DIR   plugin directory to use instead of the runtimes' (repeatable, or DIR:DIR)
  --conf-dir DIR  network configuration directory to use instead of the runtimes'
  --kernel        with --root: also read this machine's masquerade rules (it is the node)
  --json          the report as JSON
"""


def main(args: list[str], environ: Mapping[str, str], out, err) -> int:
    root, conf_dir, bin_dirs, as_json, kernel = "/", None, [], False, None
    it = iter(args)
    try:
        for arg in it:
            name, _, value = arg.partition("=")
            if name in ("--root", "--conf-dir", "--bin-dir") and not value:
                value = next(it, "")
                if not value:
                    raise ValueError(f"{name} needs a directory")
            if name == "--root":
                root = value
            elif name == "--conf-dir":
                conf_dir = value
            elif name == "--bin-dir":
                bin_dirs += [d for d in value.split(os.pathsep) if d]
            elif arg == "--json":
                as_json = True
            elif arg == "--kernel":
                kernel = True
            elif arg in ("-h", "--help"):
                out.write(USAGE)
                return OK
            else:
                raise ValueError(f"unknown argument {arg}")
    except ValueError as exc:
        err.write(f"cnitool doctor: {exc}\n{USAGE}")
        return ERROR
    report = examine(root, environ, bin_dirs or None, conf_dir, kernel)
    if as_json:
        from .. import jsontext

        out.write(jsontext.dumps(to_dict(report), indent=2) + "\n")
    else:
        out.write(render_text(report))
    return report.status()
