"""Port mapping with iptables, in the chains the reference uses (nat table).

    PREROUTING, OUTPUT  -m addrtype --dst-type LOCAL    -> CNI-HOSTPORT-DNAT      (shared)
    CNI-HOSTPORT-DNAT   per protocol, multiport dports   -> CNI-DN-<hash>          (per container)
    CNI-DN-<hash>       hairpin / localhost sources      -> CNI-HOSTPORT-SETMARK   (shared: sets the mark)
                        then DNAT to the container
    POSTROUTING         (first)                          -> CNI-HOSTPORT-MASQ      (shared: masquerades the mark)

The per-container chain name is the reference's hash of network and container,
so rules written by the Go plugin and ours are the same chain. Each family is
changed by one save and one restore under `netfilter.locked`: the restore
declares a shared chain only when the save showed it missing (declaring an
existing chain would flush other containers' jumps) and adds a shared rule
only when it is not there yet.
"""
from __future__ import annotations

from ..errors import INTERNAL, CNIError
from ..netfilter import (
    chain_name,
    ipt_available,
    ipt_chains,
    ipt_jumps_to,
    ipt_remove_chains,
    ipt_restore,
    ipt_save,
    locked,
    quote,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (about 4 ms an exec)

if TYPE_CHECKING:
    from ..types import IPInterface
    from . import PortmapConf

DNAT_CHAIN = "CNI-HOSTPORT-DNAT"
SETMARK_CHAIN = "CNI-HOSTPORT-SETMARK"
MASQ_CHAIN = "CNI-HOSTPORT-MASQ"
OLD_SNAT_CHAIN = "CNI-HOSTPORT-SNAT"  # written by old plugin versions; their per-container chains are removed too
WHAT = "portmap"
MULTIPORT_MAX = 15  # multiport takes at most 15 ports


def dnat_chain(network: str, container_id: str) -> str:
    return chain_name(network, container_id, "DN-")


def old_snat_chain(network: str, container_id: str) -> str:
    return chain_name(network, container_id, "SN-")


def dnat_comment(network: str, container_id: str) -> str:
    text = f'dnat name: "{network}" id: "{container_id}"'
    return text if len(text) <= 255 else text[:253] + "..."  # iptables' comment limit


def _mark(bit: int) -> str:
    value = 1 << bit
    return f"{value:#x}/{value:#x}"


# Shared rules, written as iptables-save prints them, so a save shows whether they exist.
def _entry_rules() -> list[str]:
    return [f"-A {hook} -m addrtype --dst-type LOCAL -j {DNAT_CHAIN}" for hook in ("PREROUTING", "OUTPUT")]


def _masq_jump() -> str:
    return f'-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j {MASQ_CHAIN}'


def _setmark_rule(bit: int) -> str:
    return f'-A {SETMARK_CHAIN} -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark {_mark(bit)}'


def _masq_rule(bit: int) -> str:
    return f"-A {MASQ_CHAIN} -m mark --mark {_mark(bit)} -j MASQUERADE"


def _container_rules(conf: PortmapConf, chain: str, address: IPInterface) -> list[str]:
    """The per-container chain: for each mapping, mark hairpin (and IPv4 localhost) traffic, then DNAT."""
    family = address.version
    set_mark = conf.external_set_mark_chain or SETMARK_CHAIN
    rules = []
    for m in conf.mappings:
        if not m.applies_to(family):
            continue
        dst = m.destination()
        host = f"-d {dst}/{address.max_prefixlen} " if dst else ""
        match = f"{host}-p {m.protocol} -m {m.protocol} --dport {m.host_port}"
        if conf.snat:
            source = ("::/0" if family == 6 else "0.0.0.0/0") if conf.masq_all else str(address.network)
            # iptables-save leaves out a match-all source
            rules.append(f"-A {chain} " + (f"-s {source} " if not conf.masq_all else "") + f"{match} -j {set_mark}")
            if family == 4 and not conf.masq_all:
                rules.append(f"-A {chain} -s 127.0.0.1/32 {match} -j {set_mark}")
        target = f"[{address.ip}]:{m.container_port}" if family == 6 else f"{address.ip}:{m.container_port}"
        rules.append(f"-A {chain} {match} -j DNAT --to-destination {target}")
    return rules


def _jump_rules(conf: PortmapConf, chain: str, container_id: str, family: int) -> list[str]:
    """Jumps from CNI-HOSTPORT-DNAT: one per protocol and 15 ports (all mappings, as the reference writes them)."""
    comment = quote(dnat_comment(conf.name, container_id))
    ports: dict[str, list[int]] = {}
    for m in conf.mappings:
        ports.setdefault(m.protocol, []).append(m.host_port)
    extra = "".join(" " + (quote(c) if not c or any(ch in c for ch in ' "\'\t') else c)
                    for c in conf.conditions(family))
    rules = []
    for protocol in sorted(ports):
        listed = ports[protocol]
        for start in range(0, len(listed), MULTIPORT_MAX):
            chunk = ",".join(str(p) for p in listed[start:start + MULTIPORT_MAX])
            rules.append(f"-p {protocol} -m comment --comment {comment} -m multiport --dports {chunk}{extra} -j {chain}")
    return rules


def _forward_family(conf: PortmapConf, container_id: str, address: IPInterface) -> None:
    family = address.version
    chain = dnat_chain(conf.name, container_id)
    saved = ipt_save(family, what=WHAT)
    present = set(saved)
    chains = ipt_chains(saved)
    declare, rules = [], []

    def ensure_chain(name: str) -> None:
        if name not in chains:
            declare.append(f":{name} - [0:0]")
            chains.add(name)

    def ensure_rule(rule: str, first: bool = False) -> None:
        if rule not in present:
            rules.append(("-I " + rule[3:].replace(" ", " 1 ", 1)) if first else rule)
            present.add(rule)

    if conf.snat and not conf.external_set_mark_chain:
        ensure_chain(SETMARK_CHAIN)
        ensure_rule(_setmark_rule(conf.mark_bit))
        ensure_chain(MASQ_CHAIN)
        ensure_rule(_masq_rule(conf.mark_bit))
        # First in POSTROUTING: the masquerade chains of bridge and ptp would otherwise take the packet.
        ensure_rule(_masq_jump(), first=True)
    ensure_chain(DNAT_CHAIN)
    for rule in _entry_rules():
        ensure_rule(rule)
    # Our chain starts afresh: declaring an existing chain flushes it, and old jumps to it go.
    declare.append(f":{chain} - [0:0]")
    removals = ["-D " + line[3:] for line in ipt_jumps_to(saved, {chain})]
    rules += _container_rules(conf, chain, address)
    # Prepended, so the newest container claiming a host port wins (the reference since 1.5).
    rules += [f"-I {DNAT_CHAIN} 1 {rule}" for rule in _jump_rules(conf, chain, container_id, family)]
    ipt_restore(family, declare + removals + rules, what=WHAT)


def forward(conf: PortmapConf, container_id: str, addresses: dict) -> None:
    with locked():
        for family in sorted(addresses):
            _forward_family(conf, container_id, addresses[family])


def unforward(conf: PortmapConf, container_id: str) -> None:
    """Remove this container's chain and the jumps to it, in every family; none there is success."""
    doomed = {dnat_chain(conf.name, container_id), old_snat_chain(conf.name, container_id)}
    families = [f for f in (4, 6) if ipt_available(f)]
    if not families:
        return  # no iptables on the node: ADD could not have written anything (Go fails here)
    with locked():
        for family in families:
            ipt_remove_chains(family, doomed, ipt_save(family, what=WHAT), WHAT)


def check(conf: PortmapConf, container_id: str, addresses: dict) -> None:
    """Every rule ADD wrote for the families in use is there."""
    chain = dnat_chain(conf.name, container_id)
    for family in sorted(addresses):
        saved = ipt_save(family, what=WHAT)
        name = "ip6tables" if family == 6 else "iptables"
        if chain not in ipt_chains(saved):
            raise CNIError(INTERNAL, f"chain {chain} not found in {name} table nat")
        present = set(saved)
        expected = _container_rules(conf, chain, addresses[family]) + _entry_rules()
        if conf.snat and not conf.external_set_mark_chain:
            expected += [_setmark_rule(conf.mark_bit), _masq_rule(conf.mark_bit), _masq_jump()]
        missing = [rule for rule in expected if rule not in present]
        jumps = [line for line in ipt_jumps_to(saved, {chain}) if line.startswith(f"-A {DNAT_CHAIN} ")]
        if len(jumps) < len(_jump_rules(conf, chain, container_id, family)):
            missing.append(f"jumps from {DNAT_CHAIN} to {chain}")
        if missing:
            raise CNIError(INTERNAL, f"{name}: rules of chain {chain} missing", "; ".join(missing)[:1000])


def gc(network: str, keep_container_ids: set[str]) -> None:
    """Remove the chains of this network's containers that are not in `keep_container_ids`.

    The jumps from CNI-HOSTPORT-DNAT carry network and container in their
    comment; a container's chain is found from them, so nothing of another
    network, and no shared chain, is touched.
    """
    marker = f'--comment "dnat name: \\"{network}\\" id: \\"'
    keep = {dnat_chain(network, cid) for cid in keep_container_ids}
    with locked():
        for family in (4, 6):
            if not ipt_available(family):
                continue
            saved = ipt_save(family, what=WHAT)
            stale = set()
            for line in saved:
                if line.startswith(f"-A {DNAT_CHAIN} ") and marker in line:
                    container_id = line.split(marker, 1)[1].split('\\"', 1)[0]
                    target = line.rsplit(" -j ", 1)[-1].strip()
                    if target == dnat_chain(network, container_id) and target not in keep:
                        stale.add(target)
            if stale:
                ipt_remove_chains(family, stale, saved, WHAT)
