"""The dhcp IPAM plugin's daemon side and the protocol both sides share.

`plugins/ipam/dhcp.py` (exec'd per CNI call) imports only `wire` and `options`,
which are stdlib-only and cheap. The daemon (`daemon`, `lease`, `client`,
`packet`) is long-running and loads once.
"""
from __future__ import annotations

DEFAULT_SOCKET = "/run/cni/dhcp.sock"
DEFAULT_STATE_DIR = "/var/lib/cni/dhcp"
