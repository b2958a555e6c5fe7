"""JSON for the exec'd plugins: the stdlib's behaviour without its import cost.

Importing `json` pulls in `re`, which pulls in `enum`: about 5 ms of every plugin
call, spent compiling regular expressions the C scanner never uses. This module
drives the same C accelerator (`_json`) directly, so a plugin parses its config
and prints its result with neither `re` nor `enum` loaded.

Compatibility is by construction rather than by imitation:
- `loads` accepts what `json.loads` accepts and returns the same values; on any
  malformed input it hands the text to `json.loads`, so errors (types, messages,
  positions) are the stdlib's own. Only that error path imports `json`.
- `dumps` produces byte-for-byte what `json.dumps` produces for JSON values
  (dict with string keys, list, tuple, str, int, float, bool, None), with
  `indent` and the default separators, or compact `(",", ":")` when `compact`.
"""
from __future__ import annotations

import _json

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see cni/types.py)
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"
_UTF8_BOM = b"\xef\xbb\xbf"


class _ScannerContext:
    """The attributes `_json.make_scanner` reads from a JSONDecoder: plain dicts, Python numbers."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


def loads(data: str | bytes | bytearray, object_pairs_hook: Any = None) -> Any:
    """Parse one JSON document, as `json.loads(data)` does.

    `object_pairs_hook` as in `json.loads`: it sees every object's pairs in
    order, duplicates included (tuning refuses duplicated sysctl keys).
    """
    context: Any = _ScannerContext
    if object_pairs_hook is not None:
        context = type("_PairsContext", (_ScannerContext,), {"object_pairs_hook": staticmethod(object_pairs_hook)})
    if isinstance(data, (bytes, bytearray)):
        # json.loads guesses UTF-16/32 from NUL bytes and skips a UTF-8 BOM; that
        # rare input goes to it unchanged. Everything else is UTF-8.
        if b"\x00" in data[:4] or data.startswith(_UTF8_BOM):
            return _stdlib_loads(data, object_pairs_hook)
        try:
            text = data.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            return _stdlib_loads(data, object_pairs_hook)
    elif isinstance(data, str):
        text = data
    else:
        return _stdlib_loads(data, object_pairs_hook)  # its TypeError
    body = text.strip(_WHITESPACE)
    try:
        value, end = _json.make_scanner(context)(body, 0)
    except (StopIteration, ValueError, SystemError):
        # SystemError: CPython 3.10+'s scanner reports a syntax error through
        # json.decoder.JSONDecodeError only when json.decoder is already loaded.
        return _stdlib_loads(data, object_pairs_hook)
    if end != len(body):
        return _stdlib_loads(data, object_pairs_hook)  # "Extra data"
    return value


def _stdlib_loads(data: Any, object_pairs_hook: Any = None) -> Any:
    import json

    return json.loads(data, object_pairs_hook=object_pairs_hook)


def dumps(value: Any, indent: int | None = None, compact: bool = False) -> str:
    """Serialize `value` as `json.dumps(value, indent=indent)` does (ASCII-only output).

    `compact` drops the spaces after ',' and ':', as separators=(",", ":") does.
    """
    key_sep = ":" if compact else ": "
    item_sep = "," if compact or indent is not None else ", "
    chunks: list[str] = []
    _encode(value, chunks, None if indent is None else " " * indent, 0, item_sep, key_sep)
    return "".join(chunks)


_quote = _json.encode_basestring_ascii


def _encode(value: Any, out: list[str], indent: str | None, level: int, item_sep: str, key_sep: str) -> None:
    if isinstance(value, str):
        out.append(_quote(value))
        return
    scalar = _scalar(value)
    if scalar is not None:
        out.append(scalar)
    elif isinstance(value, (dict, list, tuple)):
        is_object = isinstance(value, dict)
        opening, closing_bracket = ("{", "}") if is_object else ("[", "]")
        if not value:
            out.append(opening + closing_bracket)
            return
        newline, separator, closing = _layout(indent, level, item_sep)
        out.append(opening + newline)
        for position, item in enumerate(value.items() if is_object else value):
            if position:
                out.append(separator)
            if is_object:
                key, item = item
                out.append(_quote(_key(key)))
                out.append(key_sep)
            _encode(item, out, indent, level + 1, item_sep, key_sep)
        out.append(closing + closing_bracket)
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _layout(indent: str | None, level: int, item_sep: str) -> tuple[str, str, str]:
    """(after the opening bracket, between items, before the closing bracket)."""
    if indent is None:
        return "", item_sep, ""
    inner = "\n" + indent * (level + 1)
    return inner, item_sep + inner, "\n" + indent * level


def _scalar(value: Any) -> str | None:
    """The JSON text of null, a boolean or a number; None for anything else."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value == float("inf"):
            return "Infinity"
        if value == float("-inf"):
            return "-Infinity"
        return float.__repr__(value)
    return None


def _key(key: Any) -> str:
    # json.dumps turns scalar keys into strings the same way as scalar values.
    text = key if isinstance(key, str) else _scalar(key)
    if text is None:
        raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
    return text
