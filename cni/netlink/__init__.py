"""A small rtnetlink client on the stdlib, shaped like the kernel's objects.

Every plugin is a fresh process per call, and importing pyroute2 costs about
0.4 s, so the exec'd plugins talk to the kernel through this package instead.
It encodes exactly the messages the plugins need and decodes the replies into
plain records (cni.record):

- `core`: message framing, attributes, `NetlinkError`, the socket (request/ack/dump);
- `link`, `addr`, `route`: each kernel object's record, message bodies and
  operations, as a mixin of the one `Netlink` client below, which every plugin
  that touches links uses;
- `bridge`, `rule`, `qdisc`: objects only one plugin each needs (bridge ports
  and VLANs for bridge, policy rules for sbr, qdiscs and filters for
  bandwidth). Each module adds its client, `BridgeNetlink`, `RuleNetlink`,
  `QdiscNetlink`: `Netlink` with those operations too. Importing cni.netlink
  does not load them: every plugin call is a new process, and a module costs
  each exec that imports it.
- `conntrack`: ctnetlink, another netlink protocol, with a socket class of its own.

A socket opened inside a network namespace stays bound to it after the thread
leaves, so `Netlink(netns=path)` enters the namespace only to open its socket.

Errors from the kernel surface as `NetlinkError` carrying the kernel's errno
(EEXIST, ENODEV, ESRCH, ...) and, when the kernel sends one, its extended-ack
message, so callers can tell "already gone" from real failures.
"""
from __future__ import annotations

# The constants, records and helpers of the objects every link-making plugin
# uses, for callers that import them from cni.netlink.
from .addr import *  # noqa: F403
from .addr import AddressOps
from .core import *  # noqa: F403
from .core import Socket
from .link import *  # noqa: F403
from .link import LinkOps
from .route import *  # noqa: F403
from .route import RouteOps


class Netlink(LinkOps, AddressOps, RouteOps, Socket):
    """One NETLINK_ROUTE socket with the operations on links, addresses and routes."""
