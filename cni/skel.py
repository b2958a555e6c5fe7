"""Dispatch: read CNI_* and stdin, validate, call the plugin, print the outcome.

A plugin never prints, never reads CNI_* itself and never converts versions:
it returns a `Result` (ADD) or nothing, or raises `CNIError`. Everything else
happens once, here.
"""
from __future__ import annotations

import os
import sys
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (about 4 ms an exec)

from . import __version__, jsontext
from . import version as versions
from .args import parse_args
from .conf import is_valid_name, validate_network_name
from .errors import (
    DECODE_FAILURE,
    INCOMPATIBLE_VERSION,
    INTERNAL,
    INVALID_ENV,
    INVALID_NETWORK_CONFIG,
    IO_FAILURE,
    CNIError,
)
from .record import Record
from .types import Result

if TYPE_CHECKING:
    from typing import IO, Callable, Mapping, Optional

    Handler = Callable[["Call"], object]

ADD, DEL, CHECK, VERSION, GC, STATUS = "ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS"
COMMANDS = (ADD, DEL, CHECK, VERSION, GC, STATUS)

# Which variables each command needs, in the order they are reported when missing.
_REQUIRED = {
    ADD: ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    CHECK: ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    DEL: ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    GC: ("CNI_PATH",),
    STATUS: ("CNI_PATH",),
}
# The first spec version that has each command.
_SINCE = {CHECK: "0.4.0", GC: "1.1.0", STATUS: "1.1.0"}

IFNAMSIZ = 16


class Call(Record):
    """One invocation: the CNI_* environment and the parsed configuration."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: str = ""
    path: list[str]
    stdin: bytes = b""
    config: dict
    cni_version: str = versions.IMPLICIT
    environ: Mapping[str, str]

    def __init__(self, command: str, **values: object) -> None:
        self.command, self.path, self.config, self.environ = command, [], {}, {}
        super().__init__(**values)

    def cni_args(self, known: tuple[str, ...]) -> dict[str, str]:
        return parse_args(self.args, known)

    def valid_attachments(self) -> set[tuple[str, str]]:
        """GC: the (containerID, ifname) pairs the runtime still uses."""
        raw = self.config.get("cni.dev/valid-attachments")
        if raw is None:
            raw = self.config.get("cni.dev/attachments")
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            raise CNIError(INVALID_NETWORK_CONFIG, "cni.dev/valid-attachments must be a list")
        found = set()
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("containerID"), str) \
                    or not isinstance(item.get("ifname"), str):
                raise CNIError(INVALID_NETWORK_CONFIG, "cni.dev/valid-attachments: each entry needs containerID and ifname")
            found.add((item["containerID"], item["ifname"]))
        return found


def validate_container_id(cid: str) -> None:
    if not cid:
        raise CNIError(INVALID_ENV, "missing containerID")
    if not is_valid_name(cid):
        raise CNIError(INVALID_ENV, "invalid characters in containerID", cid)


def validate_ifname(name: str) -> None:
    if not name:
        raise CNIError(INVALID_ENV, "interface name is empty")
    if len(name.encode()) > IFNAMSIZ - 1:
        raise CNIError(INVALID_ENV, "interface name is too long", f"interface name should be less than {IFNAMSIZ} characters")
    if name in (".", ".."):
        raise CNIError(INVALID_ENV, "interface name is . or ..")
    if any(c in "/:" or c.isspace() for c in name):
        raise CNIError(INVALID_ENV, "interface name contains / or : or whitespace characters")


class Plugin:
    """A plugin's command handlers; `run` is the whole CNI exchange for one call."""

    def __init__(self, name: str, add: Handler, delete: Handler, check: Optional[Handler] = None,
                 gc: Optional[Handler] = None, status: Optional[Handler] = None, about: str = "",
                 supported: tuple[str, ...] = versions.SUPPORTED_VERSIONS) -> None:
        self.name = name
        self.add = add
        self.delete = delete
        self.check = check
        self.gc = gc
        self.status = status
        self.about = about
        self.supported = supported

    def main(self) -> None:
        """The process entry: one call, then exit without interpreter teardown."""
        status = self.run(os.environ, sys.stdin.buffer, sys.stdout, sys.stderr)
        exit_now(status)

    def run(self, environ: Mapping[str, str], stdin: IO[bytes], stdout: IO[str], stderr: IO[str]) -> int:
        """Run one CNI call; returns the exit status. Never raises."""
        reply_version = versions.CURRENT
        try:
            command = environ.get("CNI_COMMAND", "")
            if not command:
                stderr.write(self._about())
                return 0
            if command == VERSION:
                stdout.write(versions.version_json(self.supported))
                return 0
            if command not in COMMANDS:
                raise CNIError(INVALID_ENV, f"unknown CNI_COMMAND: {command}")
            data, config, reply_version = self._read_config(command, environ, stdin)
            call = self._make_call(command, environ, data, config, reply_version)
            output = self._dispatch(call)
            if output is not None:
                stdout.write(output.to_json(call.cni_version))
            return 0
        except CNIError as err:
            stdout.write(err.to_json(reply_version))
            return 1
        except Exception as exc:  # an unexpected failure must still be a CNI error
            if environ.get("PYCNI_DEBUG"):
                import traceback

                traceback.print_exc(file=stderr)
            stdout.write(CNIError(INTERNAL, str(exc) or type(exc).__name__, type(exc).__name__).to_json(reply_version))
            return 1
        finally:
            try:
                stdout.flush()
            except Exception:
                pass

    def _about(self) -> str:
        text = self.about or f"CNI {self.name} plugin {__version__}"
        build = os.path.join(os.path.dirname(__file__), "BUILD")  # "commit <sha>", baked into bundles by build.sh
        if os.path.isfile(build):
            text += "\n" + open(build).read().strip()
        return f"{text}\nCNI protocol versions supported: {', '.join(self.supported)}\n"

    def _read_config(self, command: str, environ: Mapping[str, str], stdin: IO[bytes]) -> tuple[bytes, dict, str]:
        missing = [k for k in _REQUIRED[command] if not environ.get(k)]
        if missing:
            raise CNIError(INVALID_ENV, f"required env variables [{','.join(missing)}] missing")
        try:
            data = stdin.read()
        except OSError as exc:
            raise CNIError(IO_FAILURE, "error reading from stdin", str(exc)) from None
        try:
            config = jsontext.loads(data)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError too; RecursionError: nesting too deep
            raise CNIError(DECODE_FAILURE, "error unmarshalling network config", str(exc)[:500]) from None
        if not isinstance(config, dict):
            raise CNIError(DECODE_FAILURE, "error unmarshalling network config", "not a JSON object")

        cni_version = config.get("cniVersion", "")
        if cni_version == "":
            cni_version = versions.IMPLICIT
        if not isinstance(cni_version, str):
            raise CNIError(INVALID_NETWORK_CONFIG, "cniVersion must be a string", repr(cni_version)[:100])
        versions.require_supported(cni_version, self.supported)
        return data, config, cni_version

    def _make_call(self, command: str, environ: Mapping[str, str], data: bytes, config: dict,
                   cni_version: str) -> Call:
        call = Call(
            command=command,
            container_id=environ.get("CNI_CONTAINERID", ""),
            netns=environ.get("CNI_NETNS", ""),
            ifname=environ.get("CNI_IFNAME", ""),
            args=environ.get("CNI_ARGS", ""),
            path=[p for p in environ.get("CNI_PATH", "").split(os.pathsep) if p],
            stdin=data,
            config=config,
            cni_version=cni_version,
            environ=environ,
        )
        validate_network_name(config.get("name"))
        if command in (ADD, DEL, CHECK):
            validate_container_id(call.container_id)
            validate_ifname(call.ifname)
        since = _SINCE.get(command)
        if since and not versions.at_least(cni_version, since):
            raise CNIError(INCOMPATIBLE_VERSION, f"config version does not allow {command}")
        return call

    def _dispatch(self, call: Call) -> Result | None:
        if call.command == ADD:
            result = self.add(call)
            if not isinstance(result, Result):
                raise CNIError(INTERNAL, f"plugin {self.name} returned no result")
            return result
        handler = {DEL: self.delete, CHECK: self.check, GC: self.gc, STATUS: self.status}[call.command]
        if handler is not None:
            handler(call)
        return None


def exit_now(status: int) -> None:
    """Flush stdout and stderr and end the process, skipping the interpreter's teardown.

    Tearing down modules and objects costs about 7 ms per exec here, a fifth of a
    whole ADD, and a plugin has nothing left to clean up at this point: its files
    are closed by `with` blocks and its locks are released with the process.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(status)


def plugin(name: str, add: Handler, delete: Handler, check: Handler | None = None,
           gc: Handler | None = None, status: Handler | None = None) -> Plugin:
    return Plugin(name=name, add=add, delete=delete, check=check, gc=gc, status=status)
