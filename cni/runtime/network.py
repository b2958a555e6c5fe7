"""Running a network's plugins as a runtime does (the libcni contract).

For every plugin the runtime injects `name` and `cniVersion` of the list, a
`runtimeConfig` with only the capabilities the plugin declares and the runtime
supplies, and the previous plugin's result as `prevResult`. ADD runs the list
in order and caches the last result; DEL runs it in reverse with the cached
result (0.4.0 and later); CHECK uses the cached result; GC and STATUS exist
from 1.1.0.
"""
from __future__ import annotations

import json
import os
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (about 4 ms an exec)
if TYPE_CHECKING:
    from typing import Mapping

from .. import version as versions
from ..conf import validate_network_name
from ..errors import INCOMPATIBLE_VERSION, INTERNAL, CNIError
from ..invoke import exec_plugin, find_plugin
from ..record import Record
from ..skel import validate_container_id, validate_ifname
from ..types import Result
from .cache import DEFAULT_CACHE_DIR, Cache, Entry
from .conf import NetworkList, enabled_capabilities, go_json

VALID_ATTACHMENTS = "cni.dev/valid-attachments"


class RuntimeConf(Record):
    """What the runtime knows about one attachment."""

    container_id: str = ""
    netns: str = ""
    ifname: str = "eth0"
    args: list[tuple[str, str]]  # CNI_ARGS pairs
    capability_args: dict

    def __init__(self, **values: object) -> None:
        self.args, self.capability_args = [], {}
        super().__init__(**values)


class PluginFailed(CNIError):
    """A plugin of the list failed; the message names it, the code is the plugin's."""

    def __init__(self, plugin_type: str, network: str, command: str, cause: CNIError) -> None:
        super().__init__(cause.code, f'plugin type="{plugin_type}" name="{network}" failed ({command}): {cause.msg}',
                         cause.details)
        self.plugin_type = plugin_type
        self.network = network
        self.cause = cause


def args_text(pairs: list[tuple[str, str]]) -> str:
    return ";".join(f"{k}={v}" for k, v in pairs)


# What a runtime sends with VERSION: its own newest spec version.
VERSION_REQUEST = go_json({"cniVersion": versions.CURRENT})


def supported_versions(plugin_type: str, out: bytes) -> list[str]:
    """The spec versions in a VERSION answer (a plugin that predates VERSION supports 0.1.0)."""
    try:
        info = json.loads(out)
    except ValueError:
        raise CNIError(INTERNAL, f'plugin "{plugin_type}": unreadable VERSION output', out[:200].decode(
            errors="replace")) from None
    if not isinstance(info, dict):
        raise CNIError(INTERNAL, f'plugin "{plugin_type}": VERSION output is not an object')
    supported = info.get("supportedVersions")
    if supported is None and info.get("cniVersion") in (None, "", "0.1.0"):
        return ["0.1.0"]
    if not isinstance(supported, list) or not all(isinstance(v, str) for v in supported):
        raise CNIError(INTERNAL, f'plugin "{plugin_type}": supportedVersions must be a list of strings')
    return supported


class Runtime:
    """Plugins found in `path`, results cached under `cache_dir`."""

    def __init__(self, path: list[str], cache_dir: str = DEFAULT_CACHE_DIR,
                 environ: Mapping[str, str] | None = None) -> None:
        self.path = list(path)
        self.cache = Cache(cache_dir)
        self.environ = dict(os.environ if environ is None else environ)

    # ---- one plugin ------------------------------------------------------------

    def plugin_config(self, net: NetworkList, plugin: dict, rt: RuntimeConf | None,
                      prev: Result | None) -> dict:
        conf = {k: v for k, v in plugin.items() if k != "runtimeConfig"}
        conf["name"] = net.name
        conf["cniVersion"] = net.cni_version
        if prev is not None:
            conf["prevResult"] = prev.to_dict(net.cni_version)
        runtime_config = {}
        if rt is not None:
            runtime_config = {cap: rt.capability_args[cap] for cap in enabled_capabilities(plugin)
                              if cap in rt.capability_args}
        conf.pop("capabilities", None)
        if runtime_config:
            conf["runtimeConfig"] = runtime_config
        return conf

    def _environ(self, command: str, rt: RuntimeConf | None) -> dict[str, str]:
        env = dict(self.environ)
        rt = rt or RuntimeConf(ifname="")
        env.update({"CNI_COMMAND": command, "CNI_CONTAINERID": rt.container_id, "CNI_NETNS": rt.netns,
                    "CNI_ARGS": args_text(rt.args), "CNI_IFNAME": rt.ifname, "CNI_PATH": os.pathsep.join(self.path)})
        return env

    def _exec(self, command: str, net: NetworkList, plugin: dict, rt: RuntimeConf | None,
              prev: Result | None, extra: dict | None = None) -> bytes:
        kind = plugin["type"]
        try:
            path = find_plugin(kind, self.path)
            conf = self.plugin_config(net, plugin, rt, prev)
            if extra:
                conf.update(extra)
            return exec_plugin(path, self._environ(command, rt), go_json(conf, sort_keys=False))
        except CNIError as err:
            raise PluginFailed(kind, net.name, command.lower() if command != "DEL" else "delete", err) from None

    # ---- the list ---------------------------------------------------------------

    def _validate(self, net: NetworkList, rt: RuntimeConf) -> None:
        validate_container_id(rt.container_id)
        validate_network_name(net.name)
        validate_ifname(rt.ifname)
        self.cache.path(net.name, rt.container_id, rt.ifname)  # stricter: whole-string matches

    def add(self, net: NetworkList, rt: RuntimeConf) -> Result:
        self._validate(net, rt)
        result: Result | None = None
        for plugin in net.plugins:
            out = self._exec("ADD", net, plugin, rt, result)
            try:
                result = Result.from_json(out, default_version=net.cni_version)
            except CNIError as err:
                raise PluginFailed(plugin["type"], net.name, "add", err) from None
            result.cni_version = net.cni_version
        assert result is not None
        self.cache.save(Entry(container_id=rt.container_id, network=net.name, ifname=rt.ifname, config=net.raw,
                              netns=rt.netns, cni_args=list(rt.args), capability_args=dict(rt.capability_args),
                              result=json.loads(go_json(result.to_dict(net.cni_version)))))
        return result

    def cached_result(self, net: NetworkList, rt: RuntimeConf) -> Result | None:
        """The cached result of this attachment in the list's version; None when nothing is cached."""
        entry = self.cache.load(net.name, rt.container_id, rt.ifname)
        if entry is None or entry.result is None:
            return None
        try:
            result = Result.from_dict(entry.result, default_version=net.cni_version)
            result.to_dict(net.cni_version)
        except (ValueError, TypeError, CNIError) as exc:
            raise CNIError(INTERNAL, f'failed to get network "{net.name}" cached result', str(exc)) from None
        result.cni_version = net.cni_version
        return result

    def check(self, net: NetworkList, rt: RuntimeConf) -> None:
        if not versions.at_least(net.cni_version, "0.4.0"):
            raise CNIError(INCOMPATIBLE_VERSION,
                           f'configuration version "{net.cni_version}" does not support the CHECK command')
        if net.disable_check:
            return
        self._validate(net, rt)
        cached = self.cached_result(net, rt)
        for plugin in net.plugins:
            self._exec("CHECK", net, plugin, rt, cached)

    def delete(self, net: NetworkList, rt: RuntimeConf) -> None:
        self._validate(net, rt)
        cached = None
        if versions.at_least(net.cni_version, "0.4.0"):
            try:
                cached = self.cached_result(net, rt)
            except CNIError:
                # An unreadable entry must not block the teardown it exists for.
                self.cache.remove(net.name, rt.container_id, rt.ifname)
        # Unlike libcni, a failing plugin does not stop the others: each still frees
        # what it holds (a missing portmap must not leak the bridge's reservation).
        # The first failure is reported, and the cache entry stays for a retry.
        first: CNIError | None = None
        for plugin in reversed(net.plugins):
            try:
                self._exec("DEL", net, plugin, rt, cached)
            except CNIError as err:
                first = first or err
        if first is not None:
            raise first
        self.cache.remove(net.name, rt.container_id, rt.ifname)

    def gc(self, net: NetworkList, valid: list[tuple[str, str]] | None = None) -> None:
        """Delete cached attachments of `net` not in `valid`, then GC every plugin (1.1.0).

        `valid=None` (what cnitool passes) means no attachment is valid.
        """
        keep = set(valid or [])
        errors: list[str] = []
        for entry in self.cache.entries():
            if entry.network != net.name or (entry.container_id, entry.ifname) in keep:
                continue
            rt = RuntimeConf(container_id=entry.container_id, netns=entry.netns, ifname=entry.ifname,
                             args=entry.cni_args, capability_args=entry.capability_args)
            try:
                self.delete(net, rt)
            except CNIError as err:
                errors.append(f"failed to delete stale attachment {rt.container_id} {rt.ifname}: {err}")
        if versions.at_least(net.cni_version, "1.1.0") and not net.disable_gc:
            extra = None
            if valid is not None:
                extra = {VALID_ATTACHMENTS: [{"containerID": c, "ifname": i} for c, i in valid]}
            for plugin in net.plugins:
                try:
                    self._exec("GC", net, plugin, None, None, extra)
                except CNIError as err:
                    errors.append(str(err))
        if errors:
            raise CNIError(INTERNAL, "\n".join(errors))

    def status(self, net: NetworkList) -> None:
        """STATUS of every plugin (1.1.0); the first failure, with its code (50, 51...), is raised."""
        if not versions.at_least(net.cni_version, "1.1.0"):
            return
        for plugin in net.plugins:
            self._exec("STATUS", net, plugin, None, None)

    # ---- versions ---------------------------------------------------------------

    def version_info(self, plugin_type: str) -> list[str]:
        """The spec versions a plugin supports (VERSION; a plugin that predates it supports 0.1.0)."""
        path = find_plugin(plugin_type, self.path)
        env = self._environ("VERSION", RuntimeConf(netns="dummy", ifname="dummy"))
        env["CNI_PATH"] = env["CNI_PATH"] or "dummy"
        return supported_versions(plugin_type, exec_plugin(path, env, VERSION_REQUEST))

    def validate(self, net: NetworkList) -> list[str]:
        """Every plugin exists and supports the list's version; returns the list's capabilities."""
        problems = []
        for plugin in net.plugins:
            try:
                if net.cni_version not in self.version_info(plugin["type"]):
                    problems.append(f'plugin {plugin["type"]} does not support config version "{net.cni_version}"')
            except CNIError as err:
                problems.append(str(err))
        if problems:
            raise CNIError(INCOMPATIBLE_VERSION, "; ".join(problems))
        return sorted(net.capabilities)
