"""CNI_ARGS: `K=V;K=V`, as strict as the reference.

Keys are case-sensitive. A key the plugin does not know is an error unless the
runtime also passed IgnoreUnknown=1 (or true), which is how Kubernetes passes
K8S_POD_NAMESPACE and friends to every plugin.
"""
from __future__ import annotations

from .errors import INVALID_ENV, CNIError

IGNORE_UNKNOWN = "IgnoreUnknown"


def _parse_bool(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true"):
        return True
    if lowered in ("0", "false"):
        return False
    raise CNIError(INVALID_ENV, f"ARGS: invalid value {value!r} for {key}: want 1, 0, true or false")


def parse_args(text: str, known: tuple[str, ...] = ()) -> dict[str, str]:
    """Return the pairs whose key is in `known`; raise CNIError for bad input."""
    if not text:
        return {}
    pairs: list[tuple[str, str]] = []
    for item in text.split(";"):
        parts = item.split("=")
        if len(parts) != 2:
            raise CNIError(INVALID_ENV, f"ARGS: invalid pair {item!r}")
        pairs.append((parts[0], parts[1]))

    ignore_unknown = False
    for key, value in pairs:
        if key == IGNORE_UNKNOWN:
            ignore_unknown = _parse_bool(key, value)

    found: dict[str, str] = {}
    unknown: list[str] = []
    for key, value in pairs:
        if key == IGNORE_UNKNOWN:
            continue
        if key in known:
            found[key] = value
        else:
            unknown.append(key)
    if unknown and not ignore_unknown:
        raise CNIError(INVALID_ENV, f"ARGS: unknown args {unknown!r}")
    return found
