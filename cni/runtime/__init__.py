"""The runtime side of CNI: what a container runtime does with plugins.

`conf` loads network configurations from a directory, `cache` keeps each
attachment's result in libcni's on-disk layout, and `network` runs a list of
plugins for ADD, CHECK, DEL, GC and STATUS. `cnitool` is the command-line face.
Standard library only: cnitool is exec'd like a plugin.
"""
from __future__ import annotations

from .conf import NetworkList, load_network, load_networks, network_from_bytes
from .network import PluginFailed, Runtime, RuntimeConf

__all__ = ["NetworkList", "load_network", "load_networks", "network_from_bytes", "Runtime", "PluginFailed",
           "RuntimeConf"]
