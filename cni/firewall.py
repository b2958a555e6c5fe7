"""The firewall plugin's iptables rules: accept a container's forwarded traffic.

Shared by every container (never removed, like the reference): the chain
`CNI-FORWARD`, jumped to first from FORWARD, and the admin chain (default
`CNI-ADMIN`) jumped to first from CNI-FORWARD, where an administrator's own
rules override ours. Per container address, in CNI-FORWARD: ACCEPT replies to
it and ACCEPT what it sends. Unlike the reference, each of those rules carries
a comment naming network, container and interface, so DEL and GC find them
without a prevResult.

ingressPolicy `same-bridge` adds the isolation stages of the reference
(CNI-ISOLATION-STAGE-1 jumped to first from FORWARD, CNI-ISOLATION-STAGE-2):
traffic entering a bridge from another bridge is dropped. They are per bridge,
shared, and stay after DEL.

Each family is one iptables-save and one iptables-restore under a lock; a failed
ADD undoes exactly the lines it applied, by their inverse.
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing

if TYPE_CHECKING:
    from typing import Iterable

    from .types import IPInterface

from .errors import INTERNAL, CNIError
from .netfilter import ipt_chains, ipt_restore, ipt_save, ipt_tool, locked, quote, which

TABLE = "filter"
FORWARD_CHAIN = "CNI-FORWARD"
DEFAULT_ADMIN_CHAIN = "CNI-ADMIN"
STAGE1, STAGE2 = "CNI-ISOLATION-STAGE-1", "CNI-ISOLATION-STAGE-2"
FORWARD_COMMENT = "CNI firewall plugin rules"
ADMIN_COMMENT = "CNI firewall plugin admin overrides"
OPEN, SAME_BRIDGE = "open", "same-bridge"
INGRESS_POLICIES = ("", OPEN, SAME_BRIDGE)
WHAT = "firewall"


def rule_comment(network: str, container_id: str, ifname: str = "") -> str:
    """The comment that marks the rules of (network, container[, interface]); 256 bytes at most."""
    text = f'name: "{network}" id: "{container_id}"'
    if ifname:
        text += f' ifname: "{ifname}"'
    return text[:256]


def _save(family: int) -> list[str]:
    return ipt_save(family, TABLE, WHAT)


def _restore(family: int, lines: list[str]) -> None:
    if lines:
        ipt_restore(family, lines, TABLE, WHAT)


def _available(family: int) -> bool:
    return which(ipt_tool(family, "save")) is not None and which(ipt_tool(family, "restore")) is not None


def host_cidr(ip: IPInterface) -> str:
    """The address alone, as iptables prints it: 10.0.0.2/32, fd00::2/128."""
    return f"{ip.ip}/{ip.max_prefixlen}"


def _comment(text: str) -> str:
    return f"-m comment --comment {quote(text)}"


def address_rules(ip: IPInterface, comment: str) -> list[str]:
    """The two rules of one container address, in iptables-save form (without `-A CHAIN`)."""
    cidr, mark = host_cidr(ip), _comment(comment)
    return [f"-d {cidr} -m conntrack --ctstate RELATED,ESTABLISHED {mark} -j ACCEPT",
            f"-s {cidr} {mark} -j ACCEPT"]


def reference_address_rules(ip: IPInterface) -> list[str]:
    """The same rules as the reference writes them (no comment): DEL and CHECK accept those too."""
    cidr = host_cidr(ip)
    return [f"-d {cidr} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", f"-s {cidr} -j ACCEPT"]


def _isolation_rules(bridge: str) -> list[tuple[str, str, bool]]:
    """(chain, rule, first) for same-bridge; `first` rules go before the chain's RETURN."""
    mark = _comment(f"CNI firewall plugin rules (ingressPolicy: {SAME_BRIDGE})")
    return [
        ("FORWARD", f"{mark} -j {STAGE1}", True),
        (STAGE1, f"-i {bridge} ! -o {bridge} {mark} -j {STAGE2}", True),
        (STAGE1, f"{mark} -j RETURN", False),
        (STAGE2, f"-o {bridge} {mark} -j DROP", True),
        (STAGE2, f"{mark} -j RETURN", False),
    ]


class Plan:
    """The lines that bring one family's filter table to what ADD wants, and their inverse."""

    def __init__(self, saved: list[str]) -> None:
        self.present = set(saved)
        self.chains = ipt_chains(saved)
        self.lines: list[str] = []
        self.undo: list[str] = []

    def chain(self, name: str) -> None:
        if name not in self.chains:
            self.chains.add(name)
            self.lines.append(f":{name} - [0:0]")
            self.undo.append(f"-X {name}")

    def rule(self, chain: str, rule: str, first: bool = False) -> None:
        line = f"-A {chain} {rule}"
        if line in self.present:
            return
        self.present.add(line)
        self.lines.append(f"-I {chain} 1 {rule}" if first else line)
        self.undo.append(f"-D {chain} {rule}")

    def inverse(self) -> list[str]:
        return list(reversed(self.undo))


def plan_add(saved: list[str], ips: list[IPInterface], comment: str, admin_chain: str,
             bridge: str = "") -> Plan:
    plan = Plan(saved)
    plan.chain(FORWARD_CHAIN)
    plan.chain(admin_chain)
    plan.rule("FORWARD", f"{_comment(FORWARD_COMMENT)} -j {FORWARD_CHAIN}", first=True)
    plan.rule(FORWARD_CHAIN, f"{_comment(ADMIN_COMMENT)} -j {admin_chain}", first=True)
    for ip in ips:
        for rule in address_rules(ip, comment):
            plan.rule(FORWARD_CHAIN, rule)
    if bridge:  # after CNI-FORWARD's jump: the isolation jump must come first in FORWARD
        plan.chain(STAGE1)
        plan.chain(STAGE2)
        for chain, rule, first in _isolation_rules(bridge):
            plan.rule(chain, rule, first)
    return plan


def _by_family(ips: Iterable[IPInterface]) -> dict[int, list[IPInterface]]:
    out: dict[int, list[IPInterface]] = {}
    for ip in ips:
        out.setdefault(ip.version, []).append(ip)
    return out


def _require_tools(family: int) -> None:
    if not _available(family):
        raise CNIError(
            INTERNAL, f"firewall: {ipt_tool(family, 'restore')} and {ipt_tool(family, 'save')} are needed "
                 f"for IPv{family} addresses (backend iptables)")


def setup(ips: list[IPInterface], comment: str, admin_chain: str, bridge: str = "") -> None:
    """Accept forwarded traffic of `ips`; nothing changed when it fails."""
    families = _by_family(ips)
    for family in families:
        _require_tools(family)
    applied: list[tuple[int, list[str]]] = []
    with locked():
        try:
            for family, mine in sorted(families.items()):
                plan = plan_add(_save(family), mine, comment, admin_chain, bridge)
                _restore(family, plan.lines)
                applied.append((family, plan.inverse()))
        except BaseException:
            for family, inverse in reversed(applied):
                _restore(family, inverse)
            raise


def _ours(line: str, comment_mark: str, reference_rules: set[str]) -> bool:
    return line.startswith(f"-A {FORWARD_CHAIN} ") and (
        comment_mark in line or line in reference_rules)


def teardown(comment: str, ips: list[IPInterface]) -> None:
    """Remove the address rules marked with `comment`, and the reference's unmarked rules of `ips`.

    Nothing there is success; the shared chains stay. With `ips` (from prevResult) only
    their families are looked at: ADD wrote nothing for the others.
    """
    mark = _comment(comment) + " "
    with locked():
        for family in sorted({ip.version for ip in ips}) or (4, 6):
            if not _available(family):
                continue
            unmarked = {f"-A {FORWARD_CHAIN} {r}" for ip in ips if ip.version == family
                        for r in reference_address_rules(ip)}
            doomed = [line for line in _save(family) if _ours(line, mark, unmarked)]
            _restore(family, ["-D " + line[3:] for line in doomed])


def gc(comment_prefix: str, keep_comments: set[str]) -> None:
    """Remove address rules whose comment starts with `comment_prefix` but is not kept."""
    prefix = _comment(comment_prefix)[:-1]  # without the closing quote: a prefix of the full comment
    keep = {_comment(c) + " " for c in keep_comments}
    with locked():
        for family in (4, 6):
            if not _available(family):
                continue
            doomed = [line for line in _save(family)
                      if line.startswith(f"-A {FORWARD_CHAIN} ") and prefix in line
                      and not any(k in line for k in keep)]
            _restore(family, ["-D " + line[3:] for line in doomed])


def check(ips: list[IPInterface], comment: str, admin_chain: str, bridge: str = "") -> None:
    """CNI error naming the first missing piece of what ADD wrote."""
    for family, mine in sorted(_by_family(ips).items()):
        _require_tools(family)
        saved = _save(family)
        missing = plan_add(saved, [], comment, admin_chain, bridge).lines
        if missing:
            raise CNIError(INTERNAL, f"firewall: IPv{family}: expected {missing[0]!r}, not found")
        present = set(saved)
        for ip in mine:
            for ours, theirs in zip(address_rules(ip, comment), reference_address_rules(ip)):
                if f"-A {FORWARD_CHAIN} {ours}" not in present and f"-A {FORWARD_CHAIN} {theirs}" not in present:
                    raise CNIError(INTERNAL, f"firewall: expected rule '-A {FORWARD_CHAIN} {ours}' not found")
