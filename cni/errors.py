"""The one exception type of the suite: a CNI error carrying its spec code."""
from __future__ import annotations

# Well-known error codes of the CNI specification (0-99 are reserved by the spec).
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50
PLUGIN_NOT_AVAILABLE_LIMITED = 51
# Not a spec code: the reference plugins' "internal" code, kept for unexpected failures.
INTERNAL = 999


class CNIError(Exception):
    """A failure that is reported to the runtime as a CNI error object."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = int(code)
        self.msg = msg
        self.details = details

    def __str__(self) -> str:
        return f"{self.msg}; {self.details}" if self.details else self.msg

    def to_dict(self, cni_version: str) -> dict:
        return {"cniVersion": cni_version, "code": self.code, "msg": self.msg, "details": self.details}

    def to_json(self, cni_version: str) -> str:
        from . import jsontext

        return jsontext.dumps(self.to_dict(cni_version), indent=4)

    @classmethod
    def from_dict(cls, data: dict) -> "CNIError":
        """Rebuild an error printed by another plugin (IPAM delegate, chained plugin)."""
        code = data.get("code")
        if not isinstance(code, int) or isinstance(code, bool):
            code = INTERNAL
        return cls(code, str(data.get("msg", "")), str(data.get("details", "") or ""))


def invalid_config(msg: str, details: str = "") -> CNIError:
    return CNIError(INVALID_NETWORK_CONFIG, msg, details)
