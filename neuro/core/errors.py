"""Typed errors of the package.

Every error names the user's object and the offending value, so that a message alone says what to fix.
All derive from :class:`NeuroError`; each also derives from the closest built-in (``ValueError``,
``TypeError``) so that generic handlers keep working.
"""
from __future__ import annotations

from typing import Iterable, Sequence


class NeuroError(Exception):
    """Base class of every error raised by neuro."""


class ParameterError(NeuroError, ValueError):
    """A parameter record or a constructor argument holds an invalid value."""

    def __init__(self, owner: str, field: str, value, rule: str):
        self.owner, self.field, self.value, self.rule = owner, field, value, rule
        super().__init__(f"{owner}.{field} must be {rule}, got {value!r}")


class ShapeError(NeuroError, ValueError):
    """Tensors that must agree in shape do not."""

    def __init__(self, owner: str, message: str):
        self.owner = owner
        super().__init__(f"{owner}: {message}")


class DTypeError(NeuroError, TypeError):
    """A tensor has a dtype the engine cannot run."""

    def __init__(self, owner: str, dtype, allowed: Iterable):
        self.owner, self.dtype, self.allowed = owner, dtype, tuple(allowed)
        names = ", ".join(str(a) for a in self.allowed)
        super().__init__(f"{owner}: dtype {dtype} is not supported (allowed: {names})")


class StepModeError(NeuroError, ValueError):
    """A module was called in a step mode it does not support, or with the wrong rank of input."""


class FormatError(NeuroError, ValueError):
    """A saved file or folder is malformed: names the file, the node (tensor or key) and the field."""

    def __init__(self, file: str, node: str | None, field: str | None, message: str):
        self.file, self.node, self.field = file, node, field
        where = file + (f" [{node}]" if node else "") + (f".{field}" if field else "")
        super().__init__(f"{where}: {message}")


class UnsupportedLayerError(NeuroError, TypeError):
    """A model holds modules or ops a converter or exporter cannot handle; lists every one."""

    def __init__(self, items: Sequence[tuple[str, str]], context: str = "conversion"):
        self.items = list(items)
        lines = "\n".join(f"  {path}: {op}" for path, op in self.items)
        super().__init__(f"{len(self.items)} unsupported module(s) for {context}:\n{lines}")


class HardwareLimitError(NeuroError, ValueError):
    """A network does not fit a hardware target; carries per-layer usage against the limits."""

    def __init__(self, target: str, usage: Sequence[dict]):
        self.target, self.usage = target, list(usage)
        lines = "\n".join(
            "  " + ", ".join(f"{k}={v}" for k, v in row.items()) for row in self.usage
        )
        super().__init__(f"network does not fit {target}:\n{lines}")
