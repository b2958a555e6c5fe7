"""MAC spoof check for a bridge port: frames whose source MAC is not the container's are dropped.

nftables rules in table `bridge nat`, named as the reference names them, so a
node can move between the Go plugins and ours: a base chain PREROUTING (filter
hook, priority -300) jumps per port to `cni-br-iface-<containerID>-<ifname>`,
which jumps to `...-mac`: return for the container's MAC, drop for the rest.
Each rule carries the comment `macspoofchk-<containerID>-<ifname>`.
"""
from __future__ import annotations

from . import jsontext
from .errors import CNIError
from .invoke import find_executable, run_tool

TABLE = "bridge nat"
BASE_CHAIN = "PREROUTING"
COMMENT_PREFIX = "macspoofchk-"


def _names(container_id: str, ifname: str) -> tuple[str, str, str]:
    ident = f"{container_id}-{ifname}"
    chain = f"cni-br-iface-{ident}"
    return chain, chain + "-mac", COMMENT_PREFIX + ident


def _nft(script: str) -> None:
    run_tool(["nft", "-f", "-"], script, "macspoofchk")


def setup(host_ifname: str, mac: str, container_id: str, ifname: str) -> None:
    chain, mac_chain, comment = _names(container_id, ifname)
    note = f'comment "{comment}"'
    _nft(f"""add table {TABLE}
add chain {TABLE} {BASE_CHAIN} {{ type filter hook prerouting priority -300 ; policy accept ; }}
add chain {TABLE} {chain}
flush chain {TABLE} {chain}
add chain {TABLE} {mac_chain}
flush chain {TABLE} {mac_chain}
add rule {TABLE} {BASE_CHAIN} iifname "{host_ifname}" jump {chain} {note}
add rule {TABLE} {chain} jump {mac_chain} {note}
add rule {TABLE} {mac_chain} ether saddr {mac} return {note}
add rule {TABLE} {mac_chain} drop {note}
""")


def _table() -> tuple[set, list]:
    """(chain names, rules) of the table; empty when there is no such table or no nft."""
    if find_executable("nft") is None:
        return set(), []
    try:
        out = run_tool(["nft", "-j", "list", "table", *TABLE.split()], "", "macspoofchk")
    except CNIError:
        return set(), []
    items = jsontext.loads(out).get("nftables", [])
    return {i["chain"]["name"] for i in items if "chain" in i}, [i["rule"] for i in items if "rule" in i]


def _remove(chains: set, rules: list, doomed: list[tuple[str, str, str]]) -> None:
    lines = []
    for chain, mac_chain, comment in doomed:
        lines += [f"delete rule {TABLE} {BASE_CHAIN} handle {r['handle']}" for r in rules
                  if r.get("chain") == BASE_CHAIN and r.get("comment") == comment]
        lines += [f"flush chain {TABLE} {c}" for c in (chain, mac_chain) if c in chains]
        lines += [f"delete chain {TABLE} {c}" for c in (chain, mac_chain) if c in chains]
    if lines:
        _nft("\n".join(lines) + "\n")


def teardown(container_id: str, ifname: str) -> None:
    """Remove the check of (container, ifname); nothing there is success."""
    chains, rules = _table()
    _remove(chains, rules, [_names(container_id, ifname)])


def gc(present_ports: set[str]) -> None:
    """Remove checks whose host port is not in `present_ports`, whichever network made them."""
    chains, rules = _table()
    doomed = []
    for rule in rules:
        comment = str(rule.get("comment", ""))
        port = next((e["match"]["right"] for e in rule.get("expr", []) if "match" in e
                     and e["match"].get("left", {}).get("meta", {}).get("key") == "iifname"), None)
        if rule.get("chain") == BASE_CHAIN and comment.startswith(COMMENT_PREFIX) and port not in present_ports:
            chain = "cni-br-iface-" + comment[len(COMMENT_PREFIX):]
            doomed.append((chain, chain + "-mac", comment))
    _remove(chains, rules, doomed)
