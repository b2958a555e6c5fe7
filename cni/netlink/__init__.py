"""A small rtnetlink client on the stdlib, shaped like the kernel's objects.

Every plugin is a fresh process per call, and importing pyroute2 costs about
0.4 s, so the exec'd plugins talk to the kernel through this package instead.
It encodes exactly the messages the plugins need and decodes the replies into
plain records (cni.record):

- `core`: message framing, attributes, `NetlinkError`, the socket (request/ack/dump);
- `link`, `addr`, `route`, `rule`, `bridge`, `qdisc`: each kernel object's record, message bodies
  and operations, as a mixin of the one `Netlink` client below.

A socket opened inside a network namespace stays bound to it after the thread
leaves, so `Netlink(netns=path)` enters the namespace only to open its socket.

Errors from the kernel surface as `NetlinkError` carrying the kernel's errno
(EEXIST, ENODEV, ESRCH, ...) and, when the kernel sends one, its extended-ack
message, so callers can tell "already gone" from real failures.
"""
from __future__ import annotations

# The constants, records and helpers of every object, for callers that import
# them from cni.netlink as before the split.
from .addr import *  # noqa: F403
from .addr import AddressOps
from .bridge import *  # noqa: F403
from .bridge import BridgeOps
from .core import *  # noqa: F403
from .core import Socket
from .link import *  # noqa: F403
from .link import LinkOps
from .qdisc import *  # noqa: F403
from .qdisc import QdiscOps
from .route import *  # noqa: F403
from .route import RouteOps
from .rule import *  # noqa: F403
from .rule import RuleOps


class Netlink(LinkOps, AddressOps, RouteOps, RuleOps, BridgeOps, QdiscOps, Socket):
    """One NETLINK_ROUTE socket with the operations on every kernel object we manage."""
