"""Connection tracking entries (ctnetlink over NETLINK_NETFILTER): find and delete flows.

Not part of the rtnetlink `Netlink` client: ctnetlink is another netlink
protocol, so it has its own socket class over the same codec.
"""
from __future__ import annotations

from .core import *  # noqa: F403 - the codec's constants and helpers
from .core import Socket

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2
NFNETLINK_V0 = 0

CTA_TUPLE_ORIG = 1
CTA_ZONE = 18
CTA_TUPLE_PROTO = 2
CTA_PROTO_NUM = 1
CTA_PROTO_DST_PORT = 3

IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP = 6, 17, 132

NFGENMSG = struct.Struct("=BBH")


def _ct_type(message: int) -> int:
    return (NFNL_SUBSYS_CTNETLINK << 8) | message


class Conntrack(Socket):
    """One ctnetlink socket in the current netns (or `netns`)."""

    PROTOCOL = NETLINK_NETFILTER

    def delete_by_destination_port(self, family: int, protocol: int, port: int) -> int:
        """Delete every flow of `family` whose original direction goes to `protocol` port `port`.

        The kernel cannot filter a delete by port, so the table is dumped and each
        match deleted by its original tuple (and zone). A flow that ended in between
        is not an error. Returns how many were deleted.
        """
        header = NFGENMSG.pack(family, NFNETLINK_V0, 0)
        doomed = []
        for _mtype, payload in self._dump(_ct_type(IPCTNL_MSG_CT_GET), header, "list conntrack entries"):
            attrs = parse_attrs(payload, NFGENMSG.size)
            orig = attrs.get(CTA_TUPLE_ORIG)
            if orig is None:
                continue
            proto = parse_attrs(parse_attrs(orig).get(CTA_TUPLE_PROTO, b""))
            number, dst = proto.get(CTA_PROTO_NUM), proto.get(CTA_PROTO_DST_PORT)
            if number and dst and number[0] == protocol and struct.unpack("!H", dst[:2])[0] == port:
                body = header + attr(CTA_TUPLE_ORIG | NLA_F_NESTED, orig)
                if CTA_ZONE in attrs:
                    body += attr(CTA_ZONE, attrs[CTA_ZONE])
                doomed.append(body)
        deleted = 0
        for body in doomed:
            try:
                self._ack(_ct_type(IPCTNL_MSG_CT_DELETE), 0, body, f"delete conntrack entry to port {port}")
                deleted += 1
            except NetlinkError as exc:
                if not exc.gone:
                    raise
        return deleted
