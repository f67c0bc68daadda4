"""Validated, frozen parameter records.

A record is a frozen dataclass whose fields declare their own rules::

    @record
    class LIFParams(Params):
        tau_ms: float = param(2.0, positive)

Construction checks every rule and raises :class:`~neuro.core.errors.ParameterError` naming the
record, the field and the value. Records are immutable; ``replace(p, tau_ms=5.0)`` re-validates.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from .errors import ParameterError

Rule = Callable[[Any], "str | None"]  # returns None when the value is fine, else the rule's text


def param(default, *rules: Rule, doc: str = ""):
    """A record field with a default and validation rules."""
    return field(default=default, metadata={"rules": rules, "doc": doc})


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def finite(v):
    return None if _is_number(v) and math.isfinite(v) else "a finite number"


def positive(v):
    return None if _is_number(v) and math.isfinite(v) and v > 0 else "a finite number > 0"


def non_negative(v):
    return None if _is_number(v) and math.isfinite(v) and v >= 0 else "a finite number >= 0"


def unit_interval_open_closed(v):
    """0 < v <= 1 (decays)."""
    return None if _is_number(v) and 0 < v <= 1 else "in (0, 1]"


def unit_interval_closed(v):
    return None if _is_number(v) and 0 <= v <= 1 else "in [0, 1]"


def optional(rule: Rule) -> Rule:
    def check(v):
        return None if v is None else rule(v)

    check.__name__ = f"optional_{rule.__name__}"
    return check


def integer(lo: int | None = None, hi: int | None = None) -> Rule:
    def check(v):
        ok = isinstance(v, int) and not isinstance(v, bool)
        ok = ok and (lo is None or v >= lo) and (hi is None or v <= hi)
        if ok:
            return None
        rng = f" in [{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        return "an integer" + (rng if lo is not None or hi is not None else "")

    return check


def one_of(*choices) -> Rule:
    def check(v):
        return None if v in choices else "one of " + ", ".join(repr(c) for c in choices)

    return check


def boolean(v):
    return None if isinstance(v, bool) else "True or False"


@dataclass(frozen=True)
class Params:
    """Base class of parameter records: runs field rules, then :meth:`_check` for cross-field rules."""

    def __post_init__(self):
        name = type(self).__name__
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and f.type in ("float", float):
                object.__setattr__(self, f.name, float(value))  # accept 2 for 2.0
                value = float(value)
            for rule in f.metadata.get("rules", ()):
                problem = rule(value)
                if problem is not None:
                    raise ParameterError(name, f.name, value, problem)
        self._check()

    def _check(self) -> None:
        """Cross-field rules; raise ParameterError."""

    def fail(self, field_name: str, rule: str):
        raise ParameterError(type(self).__name__, field_name, getattr(self, field_name), rule)

    def replace(self, **changes) -> "Params":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Params":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ParameterError(cls.__name__, sorted(unknown)[0], d[sorted(unknown)[0]], "a known field")
        return cls(**d)


def record(cls):
    """Decorator: make a :class:`Params` subclass a frozen, validated dataclass."""
    return dataclass(frozen=True)(cls)


def fields_doc(cls) -> Iterable[tuple[str, Any, str]]:
    for f in dataclasses.fields(cls):
        yield f.name, f.default, f.metadata.get("doc", "")
