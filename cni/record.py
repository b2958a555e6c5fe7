"""Plain value objects, without the dataclasses module.

Every plugin call is a new process, and `import dataclasses` pulls in inspect,
ast, dis and tokenize: about 11 ms of every exec here (Documentation/performance.md).
A record declares its fields as annotated class attributes whose values are the
defaults (immutable ones: None, numbers, strings, tuples); the constructor takes
keywords for any of them. Classes that need fresh mutable defaults or positional
arguments write their own __init__.
"""
from __future__ import annotations


class Record:
    def __init__(self, **values: object) -> None:
        names = self.field_names()
        for key, value in values.items():
            if key not in names:
                raise TypeError(f"{type(self).__name__} has no field {key!r}")
            setattr(self, key, value)

    @classmethod
    def field_names(cls) -> list[str]:
        """The annotated class attributes of the class and its bases, in declaration order."""
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            for key in klass.__dict__.get("__annotations__", {}):
                if key not in names:
                    names.append(key)
        return names

    def fields(self) -> dict:
        """Every field with its current value (defaults included)."""
        return {key: getattr(self, key, None) for key in self.field_names()}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.fields() == other.fields()  # type: ignore[attr-defined]

    __hash__ = None  # mutable: not hashable, like an eq dataclass

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.fields().items())
        return f"{type(self).__name__}({inner})"
