"""Just enough TOML to read container runtimes' configuration files.

Python 3.11 has `tomllib`; the release runs Python 3.9, which has not. This
reader covers what containerd, k3s, CRI-O and containers.conf files use:
tables and arrays of tables with bare, quoted and dotted keys, basic and
literal strings (multi-line ones too), integers, floats, booleans, arrays and
inline tables. Dates are kept as their text. A malformed file raises
TomlError; nothing here evaluates anything.
"""
from __future__ import annotations


class TomlError(ValueError):
    pass


def loads(text: str) -> dict:
    try:
        import tomllib
    except ImportError:
        return _Parser(text).document()
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlError(str(exc)) from None


_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "\\": "\\", "e": "\x1b"}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    # ---- low level -----------------------------------------------------------------

    def error(self, what: str) -> TomlError:
        line = self.text.count("\n", 0, self.pos) + 1
        return TomlError(f"{what} (line {line})")

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos:self.pos + n]

    def skip_blank(self, newlines: bool) -> None:
        """Spaces and tabs, comments, and with `newlines` line breaks too."""
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in " \t" or (newlines and c in "\r\n"):
                self.pos += 1
            elif c == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                break

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise self.error(f"expected {char!r}")
        self.pos += 1

    def end_of_line(self) -> None:
        self.skip_blank(newlines=False)
        if self.pos < len(self.text) and self.text[self.pos] not in "\r\n":
            raise self.error("unexpected text after a value")

    # ---- structure -----------------------------------------------------------------

    def document(self) -> dict:
        root: dict = {}
        current = root
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return root
            if self.peek(2) == "[[":
                self.pos += 2
                path = self.key()
                self.expect("]")
                self.expect("]")
                parent = self.table_at(root, path[:-1])
                items = parent.setdefault(path[-1], [])
                if not isinstance(items, list):
                    raise self.error(f"{'.'.join(path)} is not an array of tables")
                current = {}
                items.append(current)
            elif self.peek() == "[":
                self.pos += 1
                path = self.key()
                self.expect("]")
                current = self.table_at(root, path)
            else:
                path = self.key()
                self.expect("=")
                value = self.value()
                self.assign(current, path, value)
            self.end_of_line()

    def table_at(self, root: dict, path: list[str]) -> dict:
        table = root
        for part in path:
            nxt = table.setdefault(part, {})
            if isinstance(nxt, list) and nxt and isinstance(nxt[-1], dict):
                nxt = nxt[-1]  # [a.b] after [[a]] extends the last element of a
            if not isinstance(nxt, dict):
                raise self.error(f"{part} is not a table")
            table = nxt
        return table

    def assign(self, table: dict, path: list[str], value: object) -> None:
        target = self.table_at(table, path[:-1])
        if path[-1] in target:
            raise self.error(f"duplicate key {path[-1]}")
        target[path[-1]] = value

    def key(self) -> list[str]:
        parts = []
        while True:
            self.skip_blank(newlines=False)
            c = self.peek()
            if c == '"':
                parts.append(self.basic_string())
            elif c == "'":
                parts.append(self.literal_string())
            else:
                start = self.pos
                while self.pos < len(self.text) and self.text[self.pos] in _BARE:
                    self.pos += 1
                if start == self.pos:
                    raise self.error("expected a key")
                parts.append(self.text[start:self.pos])
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return parts
            self.pos += 1

    # ---- values --------------------------------------------------------------------

    def value(self) -> object:
        self.skip_blank(newlines=False)
        c = self.peek()
        if self.peek(3) in ('"""', "'''"):
            return self.multiline_string(self.peek(3))
        if c == '"':
            return self.basic_string()
        if c == "'":
            return self.literal_string()
        if c == "[":
            return self.array()
        if c == "{":
            return self.inline_table()
        return self.scalar()

    def basic_string(self) -> str:
        self.expect('"')
        out = []
        while True:
            if self.pos >= len(self.text) or self.text[self.pos] == "\n":
                raise self.error("unterminated string")
            c = self.text[self.pos]
            self.pos += 1
            if c == '"':
                return "".join(out)
            if c == "\\":
                out.append(self.escape())
            else:
                out.append(c)

    def escape(self) -> str:
        c = self.peek()
        self.pos += 1
        if c in _ESCAPES:
            return _ESCAPES[c]
        if c in ("u", "U"):
            width = 4 if c == "u" else 8
            digits = self.text[self.pos:self.pos + width]
            self.pos += width
            try:
                return chr(int(digits, 16))
            except ValueError:
                raise self.error("bad unicode escape") from None
        raise self.error(f"bad escape \\{c}")

    def literal_string(self) -> str:
        self.expect("'")
        end = self.text.find("'", self.pos)
        if end < 0 or "\n" in self.text[self.pos:end]:
            raise self.error("unterminated string")
        value = self.text[self.pos:end]
        self.pos = end + 1
        return value

    def multiline_string(self, quote: str) -> str:
        self.pos += 3
        if self.peek() == "\n":
            self.pos += 1
        elif self.peek(2) == "\r\n":
            self.pos += 2
        end = self.text.find(quote, self.pos)
        if end < 0:
            raise self.error("unterminated multi-line string")
        while self.text[end + 3:end + 4] == quote[0]:  # up to two quotes may end the content
            end += 1
        raw = self.text[self.pos:end]
        self.pos = end + 3
        if quote == "'''":
            return raw
        out, i = [], 0
        while i < len(raw):
            c = raw[i]
            if c != "\\":
                out.append(c)
                i += 1
                continue
            rest = raw[i + 1:]
            stripped = rest.lstrip(" \t")
            if stripped.startswith(("\n", "\r\n")):  # a line-ending backslash joins lines
                i = len(raw) - len(stripped.lstrip(" \t\r\n"))
                continue
            sub = _Parser(raw[i + 1:])
            out.append(sub.escape())
            i += 1 + sub.pos
        return "".join(out)

    def array(self) -> list:
        self.expect("[")
        items = []
        while True:
            self.skip_blank(newlines=True)
            if self.peek() == "]":
                self.pos += 1
                return items
            items.append(self.value())
            self.skip_blank(newlines=True)
            if self.peek() == ",":
                self.pos += 1
            elif self.peek() != "]":
                raise self.error("expected ',' or ']' in an array")

    def inline_table(self) -> dict:
        self.expect("{")
        table: dict = {}
        self.skip_blank(newlines=False)
        if self.peek() == "}":
            self.pos += 1
            return table
        while True:
            path = self.key()
            self.expect("=")
            self.assign(table, path, self.value())
            self.skip_blank(newlines=False)
            if self.peek() == "}":
                self.pos += 1
                return table
            self.expect(",")

    def scalar(self) -> object:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ",]}#\r\n":
            self.pos += 1
        word = self.text[start:self.pos].strip()
        self.pos = start + len(self.text[start:self.pos].rstrip())
        if word == "true":
            return True
        if word == "false":
            return False
        if not word:
            raise self.error("expected a value")
        plain = word.replace("_", "")
        try:
            return int(plain, 0) if plain[:2].lower() in ("0x", "0o", "0b") else int(plain)
        except ValueError:
            pass
        try:
            return float(plain)
        except ValueError:
            pass
        if word[0].isdigit() and ("-" in word or ":" in word):
            return word  # a date or time: its text is enough here
        raise self.error(f"unknown value {word!r}")
