"""The plugin <-> daemon protocol: one JSON request line, one JSON answer line.

    request:  {"pycni-dhcp": 1, "op": "add", "params": {...}}\\n
    answer:   {"pycni-dhcp": 1, "ok": true, "result": {...}}\\n
          or  {"pycni-dhcp": 1, "ok": false, "error": {"code": 11, "msg": "...", "details": "..."}}\\n

One request per connection. The "pycni-dhcp" key marks both directions, so an
answer without it is from some other daemon; the Go dhcp daemon (net/rpc over
HTTP) answers an HTTP status line, which is reported as such instead of as a
JSON decode failure. Stdlib only: the plugin imports this on every exec.
"""
from __future__ import annotations

import errno

# _socket, not socket: socket.py imports enum and selectors, several ms of every dhcp exec.
import _socket as socket
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (about 4 ms an exec)
if TYPE_CHECKING:
    from typing import Any

from .. import jsontext
from ..errors import INTERNAL, TRY_AGAIN_LATER, CNIError

MARK = "pycni-dhcp"
VERSION = 1
MAX_LINE = 1 << 20

OPS = ("add", "del", "check", "status", "gc", "leases")


class DaemonUnavailable(CNIError):
    """Nobody (or nobody of ours) answers on the socket."""

    def __init__(self, msg: str, details: str = "") -> None:
        super().__init__(TRY_AGAIN_LATER, msg, details)


class WrongProtocol(DaemonUnavailable):
    """Something answers, but not in our protocol (e.g. a Go dhcp daemon)."""


def encode(obj: dict) -> bytes:
    return jsontext.dumps(obj, compact=True).encode() + b"\n"


def request(socket_path: str, op: str, params: dict, timeout: float) -> dict:
    """Send one request; return the `result` object or raise the daemon's CNIError."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(socket_path)
        except OSError as exc:
            raise _unreachable(socket_path, exc) from None
        try:
            sock.sendall(encode({MARK: VERSION, "op": op, "params": params}))
            line = read_line(sock)
        except socket.timeout:
            raise CNIError(TRY_AGAIN_LATER, f"the dhcp daemon on {socket_path} did not answer within {timeout:g}s",
                           f"op {op}") from None
        except OSError as exc:
            raise DaemonUnavailable(f"lost the connection to the dhcp daemon on {socket_path}: {exc.strerror or exc}")
    finally:
        sock.close()
    return decode_answer(line, socket_path)


def read_line(sock: socket.socket) -> bytes:
    chunks = []
    size = 0
    while True:
        data = sock.recv(65536)
        if not data:
            break
        chunks.append(data)
        size += len(data)
        if b"\n" in data or size > MAX_LINE:
            break
    return b"".join(chunks).split(b"\n", 1)[0]


def _unreachable(path: str, exc: OSError) -> DaemonUnavailable:
    if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
        return DaemonUnavailable(f"the dhcp daemon is not running: nothing listens on {path}",
                                 "start it with `dhcp daemon` (or enable cni-dhcp.socket)")
    return DaemonUnavailable(f"cannot connect to the dhcp daemon on {path}: {exc.strerror or exc}")


def decode_answer(line: bytes, socket_path: str) -> dict:
    if line.startswith(b"HTTP/"):
        status = line.decode("latin-1", "replace").strip()[:120]
        raise WrongProtocol(
            f"the daemon on {socket_path} speaks HTTP, not the pycni dhcp protocol "
            "(probably the Go dhcp daemon is still running there): stop it, or point "
            "ipam.daemonSocketPath at the pycni daemon",
            f"answer: {status}")
    try:
        answer = jsontext.loads(line)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or answer.get(MARK) is None:
        shown = line[:80].decode("latin-1", "replace")
        raise WrongProtocol(f"the daemon on {socket_path} does not speak the pycni dhcp protocol",
                            f"answer: {shown!r}" if line else "it closed the connection without answering")
    if answer.get("ok") is True:
        result = answer.get("result")
        return result if isinstance(result, dict) else {}
    error = answer.get("error")
    if not isinstance(error, dict):
        raise CNIError(INTERNAL, "the dhcp daemon answered an error without details")
    return _raise(error)


def _raise(error: dict) -> Any:
    raise CNIError.from_dict(error)


def ok(result: dict) -> bytes:
    return encode({MARK: VERSION, "ok": True, "result": result})


def failed(err: CNIError) -> bytes:
    return encode({MARK: VERSION, "ok": False, "error": {"code": err.code, "msg": err.msg, "details": err.details}})
