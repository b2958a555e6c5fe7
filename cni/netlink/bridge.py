"""Bridge ports and bridge VLANs: AF_BRIDGE requests on links."""
from __future__ import annotations

from . import Netlink
from .core import *  # noqa: F403 - the codec's constants and helpers
from .link import IFINFOMSG, IFLA_AF_SPEC, IFLA_EXT_MASK, IFLA_PROTINFO, RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK, RTM_SETLINK, IFLA_BRPORT_ISOLATED, IFLA_BRPORT_LEARNING, IFLA_BRPORT_MODE, decode_brport, ifinfomsg

IFLA_BRIDGE_FLAGS = 0
IFLA_BRIDGE_VLAN_INFO = 2
BRIDGE_FLAGS_SELF = 2
BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4
BRIDGE_VLAN_INFO_RANGE_BEGIN = 0x8
BRIDGE_VLAN_INFO_RANGE_END = 0x10

RTEXT_FILTER_BRVLAN = 1 << 1

BRIDGE_VLAN_INFO = struct.Struct("=HH")


class BridgeOps:
    """Bridge port and VLAN operations (a mixin over core.Socket; see BridgeNetlink)."""

    def set_bridge_port(self, index: int, *, hairpin: bool | None = None, isolated: bool | None = None, learning: bool | None = None) -> None:
        protinfo = b""
        for kind, value in ((IFLA_BRPORT_MODE, hairpin), (IFLA_BRPORT_ISOLATED, isolated), (IFLA_BRPORT_LEARNING, learning)):
            if value is not None:
                protinfo += attr_u8(kind, 1 if value else 0)
        if not protinfo:
            return
        # The bridge reads IFLA_PROTINFO as nested only with the flag; without it,
        # it is the old single-byte port state.
        body = ifinfomsg(index, family=AF_BRIDGE) + attr(IFLA_PROTINFO | NLA_F_NESTED, protinfo)
        self._ack(RTM_SETLINK, 0, body, f"set bridge port {index}")

    def _bridge_dump(self, index: int, ext_mask: int, operation: str) -> list[bytes]:
        body = ifinfomsg(family=AF_BRIDGE) + attr_u32(IFLA_EXT_MASK, ext_mask)
        out = []
        for mtype, payload in self._dump(RTM_GETLINK, body, operation):
            if mtype == RTM_NEWLINK and IFINFOMSG.unpack_from(payload)[2] == index:
                out.append(payload)
        return out

    def bridge_port(self, index: int) -> dict:
        """IFLA_BRPORT_* settings of a bridge port ({} when `index` is no port)."""
        out: dict = {}
        for payload in self._bridge_dump(index, 0, f"get bridge port {index}"):
            attrs = parse_attrs(payload, IFINFOMSG.size)
            if IFLA_PROTINFO in attrs:
                out.update(decode_brport(attrs[IFLA_PROTINFO]))
        return out

    @staticmethod
    def _vlan_spec(vid: int, flags: int, self_: bool, vid_end: int | None) -> bytes:
        spec = attr_u16(IFLA_BRIDGE_FLAGS, BRIDGE_FLAGS_SELF) if self_ else b""
        if vid_end is not None and vid_end != vid:
            if vid_end < vid:
                raise ValueError(f"VLAN range {vid}-{vid_end} is empty")
            spec += attr(IFLA_BRIDGE_VLAN_INFO, BRIDGE_VLAN_INFO.pack(flags | BRIDGE_VLAN_INFO_RANGE_BEGIN, vid))
            spec += attr(IFLA_BRIDGE_VLAN_INFO, BRIDGE_VLAN_INFO.pack(flags | BRIDGE_VLAN_INFO_RANGE_END, vid_end))
        else:
            spec += attr(IFLA_BRIDGE_VLAN_INFO, BRIDGE_VLAN_INFO.pack(flags, vid))
        return attr(IFLA_AF_SPEC, spec)

    def bridge_vlan_add(self, index: int, vid: int, *, pvid: bool = False, untagged: bool = False, self_: bool = False, vid_end: int | None = None) -> None:
        flags = (BRIDGE_VLAN_INFO_PVID if pvid else 0) | (BRIDGE_VLAN_INFO_UNTAGGED if untagged else 0)
        body = ifinfomsg(index, family=AF_BRIDGE) + self._vlan_spec(vid, flags, self_, vid_end)
        self._ack(RTM_SETLINK, 0, body, f"add vlan {vid} on link {index}")

    def bridge_vlan_del(self, index: int, vid: int, *, self_: bool = False, vid_end: int | None = None) -> None:
        body = ifinfomsg(index, family=AF_BRIDGE) + self._vlan_spec(vid, 0, self_, vid_end)
        self._ack(RTM_DELLINK, 0, body, f"delete vlan {vid} on link {index}")

    def bridge_vlans(self, index: int) -> list[dict]:
        """[{"vid", "pvid", "untagged"}] of a bridge port (or of the bridge itself)."""
        out = []
        for payload in self._bridge_dump(index, RTEXT_FILTER_BRVLAN, f"list vlans of link {index}"):
            spec = parse_attrs(payload, IFINFOMSG.size).get(IFLA_AF_SPEC)
            if spec is None:
                continue
            for kind, value in iter_attrs(spec):
                if kind == IFLA_BRIDGE_VLAN_INFO:
                    flags, vid = BRIDGE_VLAN_INFO.unpack_from(value)
                    out.append({"vid": vid, "pvid": bool(flags & BRIDGE_VLAN_INFO_PVID), "untagged": bool(flags & BRIDGE_VLAN_INFO_UNTAGGED)})
        return out


class BridgeNetlink(BridgeOps, Netlink):
    """`Netlink` with bridge port and VLAN operations (the bridge plugin's client)."""
