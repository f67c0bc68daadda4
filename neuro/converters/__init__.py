"""Converters into neuro: SpikingJelly networks (:func:`from_spikingjelly`).

Submodules are imported on first use, so ``import neuro.converters`` does not load SpikingJelly.
"""
from __future__ import annotations

import importlib

_LAZY = {"from_spikingjelly": "neuro.converters.spikingjelly"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'neuro.converters' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
