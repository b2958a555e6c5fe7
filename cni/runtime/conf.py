"""Network configurations as a runtime loads them from a directory.

A `.conflist` file is a list of plugins; a `.conf` or `.json` file holds one
plugin and is wrapped into a one-plugin list. By name, lists win over single
configurations, each kind in file-name order (libcni's rule). A list's version
is its `cniVersion`, or the highest version we support among `cniVersions`.
"""
from __future__ import annotations

import json
import os

from .. import version as versions
from ..conf import is_valid_name
from ..record import Record
from ..errors import INVALID_NETWORK_CONFIG, CNIError

DEFAULT_CONF_DIR = "/etc/cni/net.d"
LIST_EXTENSIONS = (".conflist",)
SINGLE_EXTENSIONS = (".conf", ".json")


class ConfError(CNIError):
    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(INVALID_NETWORK_CONFIG, msg, details)


class NetworkNotFound(ConfError):
    pass


class NetworkList(Record):
    """One network: its plugins in order, and the bytes that define it."""

    name: str
    cni_version: str
    plugins: list[dict]
    raw: bytes  # cached as the attachment's "config"
    disable_check: bool = False
    disable_gc: bool = False
    source: str = ""  # the file it came from, if any
    capabilities: set[str]

    def __init__(self, **values: object) -> None:
        super().__init__(**values)
        self.capabilities = {cap for plugin in self.plugins for cap in enabled_capabilities(plugin)}


def enabled_capabilities(plugin: dict) -> list[str]:
    caps = plugin.get("capabilities")
    if not isinstance(caps, dict):
        return []
    return [name for name, on in caps.items() if on is True]


def go_json(value: object, sort_keys: bool = True) -> bytes:
    """JSON as Go's encoding/json writes it: compact, sorted maps, HTML-safe escapes."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys)
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text.encode()


def _parse_object(data: bytes, what: str) -> dict:
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise ConfError(f"error parsing {what}", str(exc)[:300]) from None
    if not isinstance(obj, dict):
        raise ConfError(f"error parsing {what}", "not a JSON object")
    return obj


def _flag(obj: dict, key: str) -> bool:
    value = obj.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ConfError(f"error parsing configuration list: invalid value {value!r} for {key}")


def _list_version(obj: dict) -> str:
    declared = obj.get("cniVersion", "")
    if not isinstance(declared, str):
        raise ConfError("error parsing configuration list: cniVersion must be a string")
    listed = obj.get("cniVersions")
    if listed is None:
        return declared or versions.IMPLICIT
    if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
        raise ConfError("error parsing configuration list: cniVersions must be a list of strings")
    for v in listed:
        try:
            versions.parse(v)
        except ValueError:
            raise ConfError(f"error parsing configuration list: invalid cniVersions entry {v!r}") from None
    best = versions.highest(listed + ([declared] if declared else []))
    if best is None:
        raise ConfError("error parsing configuration list: no supported version in cniVersions",
                        f"supported: {' '.join(versions.SUPPORTED_VERSIONS)}")
    return best


def _check_plugin(plugin: object, index: int) -> dict:
    if not isinstance(plugin, dict):
        raise ConfError(f"failed to parse plugin config {index}: not a JSON object")
    kind = plugin.get("type")
    if not isinstance(kind, str) or not kind:
        raise ConfError(f"failed to parse plugin config {index}: missing 'type'")
    return plugin


def list_from_bytes(data: bytes, source: str = "", plugin_dir: str | None = None) -> NetworkList:
    """A `.conflist`; `plugin_dir` also loads `<plugin_dir>/<name>/*.conf` (libcni 1.3 layout)."""
    obj = _parse_object(data, "configuration list")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise ConfError("error parsing configuration list: no name")
    cni_version = _list_version(obj)
    inlined_only = _flag(obj, "loadOnlyInlinedPlugins")
    raw_plugins = obj.get("plugins")
    plugins: list[dict] = []
    if raw_plugins is None:
        if inlined_only or plugin_dir is None:
            raise ConfError("error parsing configuration list: no 'plugins' key")
    elif not isinstance(raw_plugins, list) or not raw_plugins:
        raise ConfError("error parsing configuration list: 'plugins' must be a non-empty list")
    else:
        plugins = [_check_plugin(p, i) for i, p in enumerate(raw_plugins)]
    if plugin_dir is not None and not inlined_only and is_valid_name(name):
        for path in _files(os.path.join(plugin_dir, name), (".conf",)):
            plugins.append(_check_plugin(_parse_object(_read(path), f"plugin configuration {path}"), len(plugins)))
    if not plugins:
        raise ConfError(f'network "{name}": no plugin configs found')
    return NetworkList(name=name, cni_version=cni_version, plugins=plugins, raw=data, source=source,
                       disable_check=_flag(obj, "disableCheck"), disable_gc=_flag(obj, "disableGC"))


def single_from_bytes(data: bytes, source: str = "") -> NetworkList:
    """A `.conf`/`.json` plugin configuration as a one-plugin list (bytes as libcni builds them)."""
    obj = _check_plugin(_parse_object(data, "configuration"), 0)
    name = obj.get("name", "")
    declared = obj.get("cniVersion", "")
    if not isinstance(name, str) or not isinstance(declared, str):
        raise ConfError("error parsing configuration: name and cniVersion must be strings")
    wrapped = go_json({"cniVersion": declared, "name": name, "plugins": [obj]})
    return list_from_bytes(wrapped, source)


def network_from_bytes(data: bytes, source: str = "") -> NetworkList:
    """A list or a single configuration, told apart by the `plugins` key."""
    obj = _parse_object(data, "configuration")
    if "plugins" in obj:
        return list_from_bytes(data, source)
    return single_from_bytes(data, source)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ConfError(f"error reading {path}: {exc.strerror}") from None


def _files(directory: str, extensions: tuple[str, ...]) -> list[str]:
    """Regular files of `directory` with one of `extensions`, sorted by name; none if it is missing."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise ConfError(f"error reading {directory}: {exc.strerror}") from None
    out = []
    for name in sorted(names):
        path = os.path.join(directory, name)
        if os.path.splitext(name)[1] in extensions and not os.path.isdir(path):
            out.append(path)
    return out


def load_file(path: str) -> NetworkList:
    data = _read(path)
    if path.endswith(LIST_EXTENSIONS):
        return list_from_bytes(data, path, plugin_dir=os.path.dirname(path))
    return single_from_bytes(data, path)


def load_network(directory: str, name: str) -> NetworkList:
    """The network called `name`: lists first, then single configurations, each in file order.

    A broken file does not hide the others; it is named in the error when the
    network is not found.
    """
    broken: list[str] = []
    candidates = _files(directory, LIST_EXTENSIONS) + _files(directory, SINGLE_EXTENSIONS)
    if not candidates:
        raise NetworkNotFound(f"no net configurations found in {directory}")
    for path in candidates:
        try:
            network = load_file(path)
        except ConfError as exc:
            broken.append(f"{os.path.basename(path)}: {exc}")
            continue
        if network.name == name:
            return network
    details = "unreadable: " + "; ".join(broken) if broken else ""
    raise NetworkNotFound(f'no net configuration with name "{name}" in {directory}', details)


def load_networks(directory: str) -> tuple[list[NetworkList], list[str]]:
    """Every network of `directory` in file-name order (all kinds together), first of each name wins.

    Returns the networks and a message for each file that could not be loaded.
    """
    networks: list[NetworkList] = []
    broken: list[str] = []
    seen: set[str] = set()
    for path in _files(directory, LIST_EXTENSIONS + SINGLE_EXTENSIONS):
        try:
            network = load_file(path)
        except ConfError as exc:
            broken.append(f"{path}: {exc}")
            continue
        if network.name not in seen:
            seen.add(network.name)
            networks.append(network)
    return networks, broken
