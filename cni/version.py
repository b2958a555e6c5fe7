"""Spec versions: which ones exist, how they compare, what each allows."""
from __future__ import annotations

from .errors import INCOMPATIBLE_VERSION, CNIError

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
CURRENT = "1.1.0"
# A configuration without cniVersion is from before the field existed.
IMPLICIT = "0.1.0"


def parse(version: str) -> tuple[int, int, int]:
    """'1.0.0' -> (1, 0, 0); raises ValueError for anything that is not MAJOR.MINOR.PATCH."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts):
        raise ValueError(f"invalid version {version!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def at_least(version: str, minimum: str) -> bool:
    try:
        return parse(version) >= parse(minimum)
    except ValueError:
        return False


def starting_from(first: str) -> tuple[str, ...]:
    """The supported versions from `first` on (chained plugins whose reference starts later)."""
    return tuple(v for v in SUPPORTED_VERSIONS if at_least(v, first))


def require_supported(version: str, supported: tuple[str, ...] = SUPPORTED_VERSIONS) -> None:
    if version not in supported:
        raise CNIError(
            INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f'config is "{version}", plugin supports {list_text(supported)}',
        )


def list_text(versions: tuple[str, ...]) -> str:
    return "[" + " ".join(f'"{v}"' for v in versions) + "]"


def version_info(supported: tuple[str, ...] = SUPPORTED_VERSIONS) -> dict:
    return {"cniVersion": CURRENT, "supportedVersions": list(supported)}


def version_json(supported: tuple[str, ...] = SUPPORTED_VERSIONS) -> str:
    """The VERSION answer, built without the json module (the answer has no escapes)."""
    listed = ", ".join(f'"{v}"' for v in supported)
    return f'{{"cniVersion": "{CURRENT}", "supportedVersions": [{listed}]}}'


def highest(versions: list[str]) -> str | None:
    """The highest supported version among `versions` (used for conflist cniVersions)."""
    best = None
    for v in versions:
        if v in SUPPORTED_VERSIONS and (best is None or parse(v) > parse(best)):
            best = v
    return best
