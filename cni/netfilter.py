"""Plumbing shared by the plugins that program netfilter (masquerade, portmap).

Every change is one `iptables-restore --noflush` or `nft -f -` exec per
address family, so a rule set appears whole or not at all. Names of
per-container chains are derived from network and container, the way the
reference derives them, so DEL and GC find them without any saved state, and
chains written by the Go plugins and ours are the same chains.
"""
from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (about 4 ms an exec)

if TYPE_CHECKING:
    from typing import Iterable, Sequence

from .invoke import find_executable, run_tool

CHAIN_PREFIX = "CNI-"
MAX_CHAIN_LENGTH = 28  # iptables allows 28 characters for a chain name


def which(tool: str) -> str | None:
    return find_executable(tool)


def chain_name(network: str, container_id: str, prefix: str = "") -> str:
    """`CNI-<prefix><sha512(network + container)>`, cut to iptables' limit, as the reference names it."""
    from .digest import sha512_hex  # here: firewall, which names no chain this way, skips its C modules

    digest = sha512_hex(network + container_id)
    return (CHAIN_PREFIX + prefix + digest)[:MAX_CHAIN_LENGTH]


def quote(text: str) -> str:
    """A double-quoted argument as iptables-restore and nft read it."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run(cmd: Sequence[str], stdin: str = "", what: str = "") -> str:
    return run_tool(list(cmd), stdin, what)


# ---- iptables -------------------------------------------------------------------


def ipt_tool(family: int, tool: str) -> str:
    """`iptables-save`, `ip6tables-restore`, ... for address family 4 or 6."""
    return ("ip6tables-" if family == 6 else "iptables-") + tool


def ipt_available(family: int) -> bool:
    return which(ipt_tool(family, "restore")) is not None


def ipt_save(family: int, table: str = "nat", what: str = "") -> list[str]:
    """The table's rules as iptables-save prints them; none when the tool is missing."""
    if which(ipt_tool(family, "save")) is None:
        return []
    return run([ipt_tool(family, "save"), "-t", table], what=what).splitlines()


def ipt_restore(family: int, lines: Iterable[str], table: str = "nat", what: str = "") -> None:
    """Apply `lines` (rule and chain commands) to `table` in one transaction."""
    body = [f"*{table}", *lines, "COMMIT"]
    run([ipt_tool(family, "restore"), "-w", "--noflush"], "\n".join(body) + "\n", what)


def ipt_chains(saved: Iterable[str]) -> set[str]:
    return {line[1:].split()[0] for line in saved if line.startswith(":")}


def ipt_jumps_to(saved: Iterable[str], chains: set[str]) -> list[str]:
    """The saved `-A` lines whose target is one of `chains`."""
    return [line for line in saved
            if line.startswith("-A ") and line.rsplit(" -j ", 1)[-1].strip() in chains]


def ipt_remove_chains(family: int, chains: set[str], saved: list[str], what: str = "") -> None:
    """Delete every jump to `chains`, then the chains themselves; absent ones are skipped."""
    doomed = chains & ipt_chains(saved)
    jumps = ipt_jumps_to(saved, chains)
    if not doomed and not jumps:
        return
    lines = ["-D " + line[3:] for line in jumps]
    lines += [f"-F {c}" for c in sorted(doomed)]
    lines += [f"-X {c}" for c in sorted(doomed)]
    ipt_restore(family, lines, what=what)


# ---- nftables -------------------------------------------------------------------


def nft_available() -> bool:
    return which("nft") is not None


def nft_apply(commands: Iterable[str], what: str = "") -> None:
    """Run nft commands as one transaction."""
    script = "".join(line + "\n" for line in commands)
    if script:
        run(["nft", "-f", "-"], script, what)


# ---- one writer at a time ---------------------------------------------------------

LOCK_PATH = "/run/pycni-netfilter.lock"


class locked:
    """`with locked():` serialises read-modify-write of shared chains between plugin processes.

    A shared chain is declared in a restore only when a save showed it missing,
    and declaring an existing chain flushes it: two ADDs racing between save and
    restore would wipe each other's jumps. (Not a context manager from contextlib:
    that import costs every exec.)
    """

    def __init__(self, path: str = LOCK_PATH) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        import fcntl
        import os

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc_info: object) -> None:
        import os

        if self.fd >= 0:
            os.close(self.fd)  # closing drops the flock
            self.fd = -1
