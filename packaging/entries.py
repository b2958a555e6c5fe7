"""Which plugin names the frozen build ships: registry entries whose module exists.

Used by pycni.spec (hidden imports) and build.sh (one bin/ link per name), so a
plugin added to plugins/registry.py, or whose module lands later, needs no edit
here. `python packaging/entries.py` prints `NAME MODULE` per line.
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _registry() -> dict[str, str]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from plugins import registry

    return dict(registry.PLUGINS)


def module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def entries() -> dict[str, str]:
    """name -> module, for every registry entry that can be imported."""
    return {name: module for name, module in _registry().items() if module_exists(module)}


def missing() -> dict[str, str]:
    return {name: module for name, module in _registry().items() if not module_exists(module)}


_PYROUTE2 = re.compile(r"^\s*(import\s+pyroute2|from\s+pyroute2[\s.])", re.MULTILINE)


def dhcp_needs_pyroute2() -> bool:
    """The dhcp daemon may use pyroute2; the exec'd plugins never do."""
    candidates = [ROOT / "plugins" / "ipam" / "dhcp.py"]
    candidates += sorted((ROOT / "cni").glob("dhcp*.py"))
    candidates += sorted((ROOT / "cni").glob("dhcp*/**/*.py"))
    candidates += sorted((ROOT / "plugins" / "ipam").glob("dhcp*/**/*.py"))
    for path in candidates:
        try:
            if _PYROUTE2.search(path.read_text(errors="replace")):
                return True
        except OSError:
            continue
    return False


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--missing":
        for name, module in missing().items():
            print(name, module)
    else:
        for name, module in entries().items():
            print(name, module)
    sys.stdout.flush()
    os._exit(0)
