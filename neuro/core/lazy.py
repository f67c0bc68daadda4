"""Lazy package exports: names resolve to their module on first use (PEP 562 module ``__getattr__``).

Keeps ``import neuro.core`` (and other packages) from importing torch until a name that needs it is
used, so torch-free parts of the package (the IR, the typed errors) stay importable without it.
"""
from __future__ import annotations

import importlib
import sys


def lazy_exports(package: str, exports: dict[str, str]):
    """``(__getattr__, __dir__, __all__)`` for ``package``; ``exports`` maps name -> submodule."""
    names = sorted(exports)

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{exports[name]}", package), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__():
        return names

    return __getattr__, __dir__, names
