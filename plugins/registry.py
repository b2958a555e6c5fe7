"""Every plugin of the suite by its executable name (hyphenated, as installed)."""
from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from types import ModuleType

    from cni.skel import Plugin

PLUGINS = {
    "bridge": "plugins.main.bridge",
    "macvlan": "plugins.main.macvlan",
    "ipvlan": "plugins.main.ipvlan",
    "ptp": "plugins.main.ptp",
    "vlan": "plugins.main.vlan",
    "dummy": "plugins.main.dummy",
    "loopback": "plugins.main.loopback",
    "host-device": "plugins.main.host_device",
    "tap": "plugins.main.tap",
    "host-local": "plugins.ipam.host_local",
    "dhcp": "plugins.ipam.dhcp",
    "portmap": "plugins.meta.portmap",
    "firewall": "plugins.meta.firewall",
    "bandwidth": "plugins.meta.bandwidth",
    "sbr": "plugins.meta.sbr",
    "vrf": "plugins.meta.vrf",
    "static": "plugins.ipam.static",
    "tuning": "plugins.meta.tuning",
    # Not a plugin: the runtime-side tool; its module exposes cli(args) only.
    "cnitool": "cni.runtime.cnitool",
}
# Entries that are tools, not CNI plugins: they do not speak CNI_COMMAND.
TOOLS = frozenset({"cnitool"})
# Plugins that, like their reference, start at a later spec version than 0.1.0;
# the multicall answers VERSION from here without importing the plugin.
FIRST_VERSION = {"firewall": "0.4.0", "bandwidth": "0.3.0"}


def supported_versions(name: str) -> tuple[str, ...]:
    from cni import version

    return version.starting_from(FIRST_VERSION.get(name, version.SUPPORTED_VERSIONS[0]))


def module(name: str) -> ModuleType:
    """Import only the one plugin asked for: every exec pays for what it imports.

    `__import__` rather than importlib.import_module: the importlib package costs an
    exec about half a millisecond, and these names are absolute.
    """
    dotted = PLUGINS[name]
    __import__(dotted)
    return sys.modules[dotted]


def load(name: str) -> Plugin:
    return module(name).main
