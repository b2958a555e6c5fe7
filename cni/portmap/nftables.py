"""Port mapping with nftables, in the reference's tables: `ip cni_hostport` and `ip6 cni_hostport`.

    prerouting  (nat, prerouting -100)   conditions -> hostip_hostports, hostports
    output      (nat, output -100)       conditions -> hostip_hostports; local destinations -> hostports
    hostports / hostip_hostports         one DNAT rule per mapping (hostip_: the mappings with a host address)
    masquerading (nat, postrouting 100)  hairpin (and IPv4 localhost) sources to the container: masquerade

Every rule of a container carries the container ID as its comment, as the
reference writes it, so either plugin can delete the other's rules. Each
change is one `nft -f -` transaction for both families.
"""
from __future__ import annotations

from .. import jsontext
from ..errors import INTERNAL, CNIError
from ..netfilter import nft_apply, quote, run

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (about 4 ms an exec)

if TYPE_CHECKING:
    from ..types import IPInterface
    from . import PortmapConf

TABLE = "cni_hostport"
HOSTPORTS, HOSTIP_HOSTPORTS, MASQUERADING = "hostports", "hostip_hostports", "masquerading"
CHAINS = (HOSTPORTS, HOSTIP_HOSTPORTS, MASQUERADING)
WHAT = "portmap"


def _family(version: int) -> str:
    return "ip6" if version == 6 else "ip"


def _script(conf: PortmapConf, container_id: str, address: IPInterface) -> list[str]:
    fam = _family(address.version)
    table = f"{fam} {TABLE}"
    comment = quote(container_id)
    conditions = "".join(c + " " for c in conf.conditions(address.version))
    lines = [
        f'add table {table} {{ comment "CNI portmap plugin" ; }}',
        f"add chain {table} {HOSTPORTS}",
        f"add chain {table} {HOSTIP_HOSTPORTS}",
        f"add chain {table} prerouting {{ type nat hook prerouting priority -100 ; }}",
        f"flush chain {table} prerouting",
        f"add rule {table} prerouting {conditions}jump {HOSTIP_HOSTPORTS}",
        f"add rule {table} prerouting {conditions}jump {HOSTPORTS}",
        f"add chain {table} output {{ type nat hook output priority -100 ; }}",
        f"flush chain {table} output",
        f"add rule {table} output {conditions}jump {HOSTIP_HOSTPORTS}",
        f"add rule {table} output {conditions}fib daddr type local jump {HOSTPORTS}",
    ]
    if conf.snat:
        lines.append(f"add chain {table} {MASQUERADING} {{ type nat hook postrouting priority 100 ; }}")
    target = f"[{address.ip}]" if address.version == 6 else str(address.ip)
    for m in conf.mappings:
        if not m.applies_to(address.version):
            continue
        dst = m.destination()
        chain, match = (HOSTIP_HOSTPORTS, f"{fam} daddr {dst} ") if dst else (HOSTPORTS, "")
        lines.append(f"add rule {table} {chain} {match}{m.protocol} dport {m.host_port} "
                     f"dnat to {target}:{m.container_port} comment {comment}")
    if conf.snat:
        lines.append(f"add rule {table} {MASQUERADING} {fam} saddr {address.ip} {fam} daddr {address.ip} "
                     f"masquerade comment {comment}")
        if address.version == 4:
            lines.append(f"add rule {table} {MASQUERADING} {fam} saddr 127.0.0.1 {fam} daddr {address.ip} "
                         f"masquerade comment {comment}")
    return lines


def _expected_counts(conf: PortmapConf, address: IPInterface) -> dict[str, int]:
    counts = {HOSTPORTS: 0, HOSTIP_HOSTPORTS: 0, MASQUERADING: 0}
    for m in conf.mappings:
        if m.applies_to(address.version):
            counts[HOSTIP_HOSTPORTS if m.destination() else HOSTPORTS] += 1
    if conf.snat:
        counts[MASQUERADING] = 2 if address.version == 4 else 1
    return counts


def forward(conf: PortmapConf, container_id: str, addresses: dict) -> None:
    lines = []
    for version in sorted(addresses):
        lines += _script(conf, container_id, addresses[version])
    try:
        nft_apply(lines, WHAT)
    except CNIError as exc:
        raise CNIError(INTERNAL, "unable to set up nftables rules for port mappings", str(exc)) from None


def _rules_by_family() -> dict[str, list[dict]]:
    """The rules of our tables, by family; {} when nft or the tables are missing."""
    from ..netfilter import nft_available

    if not nft_available():
        return {}
    found: dict[str, list[dict]] = {}
    for fam in ("ip", "ip6"):
        try:
            out = run(["nft", "-j", "list", "table", fam, TABLE], what=WHAT)
        except CNIError:
            continue  # no such table: nothing of ours in that family
        found[fam] = [item["rule"] for item in jsontext.loads(out).get("nftables", []) if "rule" in item]
    return found


def _delete(doomed: dict[str, list[dict]]) -> None:
    nft_apply([f"delete rule {fam} {TABLE} {r['chain']} handle {r['handle']}"
               for fam, rules in doomed.items() for r in rules], WHAT)


def unforward(conf: PortmapConf, container_id: str) -> None:
    """Delete every rule whose comment is this container's ID, in both families."""
    _delete({fam: [r for r in rules if r.get("chain") in CHAINS and r.get("comment") == container_id]
             for fam, rules in _rules_by_family().items()})


def check(conf: PortmapConf, container_id: str, addresses: dict) -> None:
    rules = _rules_by_family()
    for version in sorted(addresses):
        fam = _family(version)
        mine = [r for r in rules.get(fam, []) if r.get("comment") == container_id]
        for chain, want in _expected_counts(conf, addresses[version]).items():
            have = sum(1 for r in mine if r.get("chain") == chain)
            if have < want:
                raise CNIError(INTERNAL, f'missing hostport rules in "{chain}" chain of {fam} {TABLE}',
                               f"{have} of {want}")
