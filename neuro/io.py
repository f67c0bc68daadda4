"""Model folders: save and load a module as ``config.json`` plus ``model.safetensors``.

A saved model is a folder::

    my_model/
      config.json         {"format": "neuro-model", "format_version": 1, "neuro_version": "0.1.0",
                           "model": {"class": "SpikingSequential", "config": {...}},
                           "tensors": {"0.weight": {"shape": [128, 784], "dtype": "float32"}, ...}}
      model.safetensors   the module's state_dict (parameters and buffers), read with safetensors only

Nothing is ever unpickled. :func:`load_model` checks everything before a tensor reaches a module
and raises :class:`~neuro.core.errors.FormatError` naming the file, the node (tensor or key) and
the field of the first problem: missing files, unparsable JSON, a wrong ``format`` or
``format_version``, an unknown class, a config the class rejects, tensors whose names, shapes or
dtypes differ between the file, ``config.json`` and the freshly built module, a truncated or
corrupt safetensors file, NaN or Inf in a floating tensor. :func:`save_model` writes into a hidden
sibling folder and renames it into place, so a failure leaves no folder behind and never leaves an
existing folder half-written (it is only replaced with ``overwrite=True``).

The savable protocol
--------------------
A class takes part by being an :class:`torch.nn.Module` that implements

* ``get_config(self) -> dict``: everything needed to rebuild the module's *architecture* (sizes,
  parameter records, step mode), JSON-able: str, int, finite float, bool, None, lists and dicts
  with str keys. No tensors: those travel in the state_dict.
* ``classmethod from_config(cls, config) -> instance``: an empty module of the right shapes, whose
  ``state_dict()`` has exactly the names, shapes and dtypes of a saved one (its values are then
  overwritten). Reject a bad config with :class:`~neuro.core.errors.ParameterError` (or another
  ``ValueError``/``TypeError``/``KeyError``); the loader turns it into a ``FormatError``.
* optionally ``check_loaded(self) -> None``: called after the state_dict is loaded, for invariants
  that span tensors (e.g. the CSR structure of :class:`~neuro.synapses.SparseLinear`); raise a
  ``ValueError``.

and is registered under a stable name, by class (never by instance)::

    from neuro.io import savable

    @savable("RecurrentNetwork")
    class RecurrentNetwork(nn.Module):
        def get_config(self): ...
        @classmethod
        def from_config(cls, config): ...

Containers nest their children with :func:`module_spec` (child -> ``{"class", "config"}``) in
``get_config`` and :func:`build_module` (spec -> child) in ``from_config``; see
:class:`neuro.models.sequential.SpikingSequential`. The package's own classes are listed in
``_BUILTIN`` and imported on first use; a class registered elsewhere must have been imported
before :func:`load_model` meets its name (the loader imports :mod:`neuro.models` once before
declaring a name unknown, so classes defined and decorated in that package are always found).
"""
from __future__ import annotations

import importlib
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Optional, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .core.errors import FormatError, NeuroError

FORMAT = "neuro-model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

# Classes of the package itself: name -> "module:attribute", imported when first needed.
_BUILTIN = {
    "LIF": "neuro.neurons.lif:LIF",
    "IF": "neuro.neurons.if_:IF",
    "CubaLIF": "neuro.neurons.cuba:CubaLIF",
    "ALIF": "neuro.neurons.alif:ALIF",
    "STBIF": "neuro.neurons.stbif:STBIF",
    "Linear": "neuro.synapses.linear:Linear",
    "SparseLinear": "neuro.synapses.sparse:SparseLinear",
    "Conv2d": "neuro.synapses.conv:Conv2d",
    "DelayLinear": "neuro.synapses.delay:DelayLinear",
    "SpikingSequential": "neuro.models.sequential:SpikingSequential",
    "Flatten": "neuro.models.sequential:Flatten",
    "SpikingTransformer": "neuro.converters.spiking_transformer:SpikingTransformer",
    "SpikingRWKV": "neuro.converters.spiking_rwkv:SpikingRWKV", "QuantizedRWKV": "neuro.converters.spiking_rwkv:QuantizedRWKV",
    "Pool2d": "neuro.ir.build:Pool2d",
    "TransformerLM": "neuro.models.transformer:TransformerLM",
    "RWKVLM": "neuro.models.rwkv:RWKVLM",
    "SpikeGPT": "neuro.models.spikegpt:SpikeGPT",
    "EGRUCell": "neuro.neurons.egru:EGRUCell", "EGRU": "neuro.neurons.egru:EGRU", "EGRULM": "neuro.models.egru_lm:EGRULM", "GRULM": "neuro.models.egru_lm:GRULM", "AstroLIF": "neuro.neurons.astro:AstroLIF",
}
# Packages imported once before a class name is declared unknown (their classes self-register).
_PROVIDERS = ("neuro.models",)

_REGISTRY: dict[str, type] = {}

# torch dtype <-> the name written in config.json
_DTYPES = {
    "float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
    "bfloat16": torch.bfloat16, "int64": torch.int64, "int32": torch.int32, "int16": torch.int16,
    "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
}
_DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}

M = TypeVar("M", bound=type)


# -- registry -------------------------------------------------------------------------------------
def register_savable(name: str, cls: type) -> type:
    """Register ``cls`` under ``name``; the same class twice is fine, a second class is refused."""
    from .core.errors import ParameterError

    if not isinstance(name, str) or not name:
        raise ParameterError("register_savable", "name", name, "a non-empty string")
    for method in ("get_config", "from_config"):
        if not callable(getattr(cls, method, None)):
            raise ParameterError("register_savable", "cls", cls.__name__, f"a class with a {method} method")
    known = _REGISTRY.get(name)
    if known is not None and known is not cls:
        raise ParameterError("register_savable", "name", name,
                             f"a name not yet taken (it belongs to {known.__module__}.{known.__qualname__})")
    _REGISTRY[name] = cls
    return cls


def savable(name: str) -> Callable[[M], M]:
    """Class decorator: ``@savable("LIF")`` registers the class for :func:`save_model`/:func:`load_model`."""

    def deco(cls):
        return register_savable(name, cls)

    return deco


def _import_builtin(name: str) -> Optional[type]:
    target = _BUILTIN.get(name)
    if target is None:
        return None
    mod, attr = target.split(":")
    cls = getattr(importlib.import_module(mod), attr)
    return register_savable(name, cls)


def savable_class(name: str) -> Optional[type]:
    """The class registered under ``name``, or None."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTIN:
        return _import_builtin(name)
    for pkg in _PROVIDERS:
        try:
            importlib.import_module(pkg)
        except ImportError:  # a provider that is not there registers nothing
            continue
    return _REGISTRY.get(name)


def savable_name(cls: type) -> Optional[str]:
    """The registered name of exactly ``cls`` (subclasses are not their parents), or None."""
    for name, c in _REGISTRY.items():
        if c is cls:
            return name
    for name in _BUILTIN:
        if _import_builtin(name) is cls:
            return name
    return None


def registered() -> dict[str, type]:
    """Every registered name and class (built-in ones included)."""
    for name in _BUILTIN:
        _import_builtin(name)
    return dict(_REGISTRY)


# -- specs: class name + config -------------------------------------------------------------------
def _jsonable(value, where: str):
    """A JSON-safe copy of ``value`` (tuples become lists); raises FormatError naming the key."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FormatError(CONFIG_FILE, where, None, f"{value!r} is not a finite number (JSON has no NaN/Inf)")
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise FormatError(CONFIG_FILE, where, None, f"key {k!r} is not a string")
            out[k] = _jsonable(v, f"{where}.{k}")
        return out
    raise FormatError(CONFIG_FILE, where, None,
                      f"value of type {type(value).__name__} ({value!r:.60}) cannot be written to JSON")


def module_spec(module: nn.Module, node: str = "model") -> dict:
    """``{"class": name, "config": module.get_config()}``, checked to be JSON-able.

    Raises FormatError (file ``config.json``) for an unregistered class or a config JSON cannot hold.
    """
    name = savable_name(type(module))
    if name is None:
        raise FormatError(CONFIG_FILE, node, "class",
                          f"{type(module).__module__}.{type(module).__qualname__} is not registered as savable "
                          "(see neuro.io.savable)")
    config = module.get_config()
    if not isinstance(config, dict):
        raise FormatError(CONFIG_FILE, node, "config",
                          f"{name}.get_config() returned {type(config).__name__}, not a dict")
    return {"class": name, "config": _jsonable(config, f"{node}.config")}


def build_module(spec, node: str = "model") -> nn.Module:
    """The module described by ``spec = {"class": name, "config": {...}}`` (values uninitialised).

    Raises FormatError (file ``config.json``) naming ``node`` and the field at fault.
    """
    if not isinstance(spec, dict):
        raise FormatError(CONFIG_FILE, node, None,
                          f"must be an object with 'class' and 'config', got {type(spec).__name__}")
    for key in spec:
        if key not in ("class", "config"):
            raise FormatError(CONFIG_FILE, node, key, "is not a known key (expected 'class' and 'config')")
    name = spec.get("class")
    if not isinstance(name, str):
        raise FormatError(CONFIG_FILE, node, "class", f"must be a class name (string), got {name!r}")
    config = spec.get("config")
    if not isinstance(config, dict):
        raise FormatError(CONFIG_FILE, node, "config", f"must be an object, got {type(config).__name__}")
    cls = savable_class(name)
    if cls is None:
        known = ", ".join(sorted(registered()))
        raise FormatError(CONFIG_FILE, node, "class", f"unknown class {name!r} (registered: {known})")
    try:
        module = cls.from_config(config)
    except FormatError:
        raise  # a nested spec already names its node
    except (NeuroError, ValueError, TypeError, KeyError) as e:
        raise FormatError(CONFIG_FILE, node, "config", f"rejected by {name}: {e}") from e
    if not isinstance(module, nn.Module):
        raise FormatError(CONFIG_FILE, node, "class",
                          f"{name}.from_config returned {type(module).__name__}, not a module")
    return module


def _message(e: FormatError) -> str:
    where = e.file + (f" [{e.node}]" if e.node else "") + (f".{e.field}" if e.field else "")
    text = str(e)
    return text[len(where) + 2:] if text.startswith(where + ": ") else text


def _in_file(e: FormatError, path: Path) -> FormatError:
    """The same error, naming the full path of the file instead of its bare name."""
    return FormatError(str(path), e.node, e.field, _message(e))


def _dtype_name(dtype: torch.dtype) -> str:
    return _DTYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))


# -- save -----------------------------------------------------------------------------------------
def save_model(model: nn.Module, folder, overwrite: bool = False) -> Path:
    """Save ``model`` as ``folder/config.json`` + ``folder/model.safetensors``; returns the folder.

    The folder is written beside its final place and renamed into it: on any failure no folder is
    left behind. An existing ``folder`` is refused unless ``overwrite=True``; then it is replaced
    only once the new one is complete (and restored if the swap fails).
    """
    folder = Path(folder)
    cfg_path = folder / CONFIG_FILE
    if folder.exists() and not overwrite:
        raise FileExistsError(f"save_model: {folder} exists; pass overwrite=True to replace it")
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"save_model: {folder} exists and is not a folder")

    # Everything that can fail for reasons of the model happens before the disk is touched.
    try:
        spec = module_spec(model)
    except FormatError as e:
        raise _in_file(e, cfg_path) from e
    tensors, table = {}, {}
    for name, t in model.state_dict().items():
        if t is None:
            continue
        t = t.detach().to("cpu").contiguous().clone()  # clone: safetensors refuses shared storage
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise FormatError(str(folder / WEIGHTS_FILE), name, "values",
                              "holds NaN or Inf; refusing to save a model that could not be loaded")
        tensors[name] = t
        table[name] = {"shape": list(t.shape), "dtype": _dtype_name(t.dtype)}
    from . import __version__

    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "neuro_version": __version__,
           "model": spec, "tensors": table}
    text = json.dumps(doc, indent=2, allow_nan=False)

    folder.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    tmp = folder.parent / f".{folder.name}.tmp-{tag}"
    try:
        tmp.mkdir()
        with open(tmp / CONFIG_FILE, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT})
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{tag}"
            os.rename(folder, old)
            try:
                os.rename(tmp, folder)
            except BaseException:
                os.rename(old, folder)  # put the previous model back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


# -- load -----------------------------------------------------------------------------------------
def _read_config(folder: Path) -> dict:
    cfg_path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise FormatError(str(folder), None, None, "no such model folder")
    for path in (cfg_path, folder / WEIGHTS_FILE):
        if not path.is_file():
            raise FormatError(str(path), None, None, f"missing (a model folder holds {CONFIG_FILE} and {WEIGHTS_FILE})")

    def no_constants(c):
        raise ValueError(f"{c} is not valid JSON")

    try:
        doc = json.loads(cfg_path.read_text(encoding="utf-8"), parse_constant=no_constants)
    except json.JSONDecodeError as e:
        raise FormatError(str(cfg_path), None, None,
                          f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError(str(cfg_path), None, None, f"not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise FormatError(str(cfg_path), None, None, f"must hold a JSON object, got {type(doc).__name__}")
    fmt = doc.get("format")
    if fmt != FORMAT:
        raise FormatError(str(cfg_path), None, "format", f"must be {FORMAT!r}, got {fmt!r}")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise FormatError(str(cfg_path), None, "format_version", f"must be a positive integer, got {version!r}")
    if version != FORMAT_VERSION:
        raise FormatError(str(cfg_path), None, "format_version",
                          f"is {version}; this neuro reads version {FORMAT_VERSION} (saved by a newer neuro?)")
    if "model" not in doc:
        raise FormatError(str(cfg_path), None, "model", "missing")
    table = doc.get("tensors")
    if not isinstance(table, dict):
        raise FormatError(str(cfg_path), None, "tensors",
                          f"must be an object of name -> shape and dtype, got {table!r:.60}")
    for name, entry in table.items():
        if not isinstance(entry, dict):
            raise FormatError(str(cfg_path), name, None, "must be an object with 'shape' and 'dtype'")
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise FormatError(str(cfg_path), name, "shape", f"must be a list of non-negative integers, got {shape!r}")
        if entry.get("dtype") not in _DTYPES:
            raise FormatError(str(cfg_path), name, "dtype",
                              f"must be one of {', '.join(_DTYPES)}, got {entry.get('dtype')!r}")
    return doc


def _compare(file: Path, name: str, got: dict, want: dict, other: str) -> None:
    for field in ("shape", "dtype"):
        if got[field] != want[field]:
            raise FormatError(str(file), name, field, f"is {got[field]} here but {want[field]} in {other}")


def load_model(folder) -> nn.Module:
    """Load a model saved by :func:`save_model`; every check failure is a FormatError."""
    folder = Path(folder)
    doc = _read_config(folder)
    cfg_path, st_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    table = doc["tensors"]

    try:
        model = build_module(doc["model"])
    except FormatError as e:
        raise _in_file(e, cfg_path) from e
    expected = {n: {"shape": list(t.shape), "dtype": _dtype_name(t.dtype)} for n, t in model.state_dict().items()
                if t is not None}

    # config.json against the module its config builds
    for name in table:
        if name not in expected:
            raise FormatError(str(cfg_path), name, "tensors",
                              f"is not a tensor of the {doc['model']['class']} its config builds")
    for name, want in expected.items():
        if name not in table:
            raise FormatError(str(cfg_path), name, "tensors", "is missing (the module built from the config has it)")
        _compare(cfg_path, name, table[name], want, "the module built from the config")

    # model.safetensors against config.json
    tensors = {}
    try:
        with safe_open(str(st_path), framework="pt") as f:
            names = set(f.keys())
            for name in table:
                if name not in names:
                    raise FormatError(str(st_path), name, None, "listed in config.json but not in the file")
            for name in sorted(names):
                if name not in table:
                    raise FormatError(str(st_path), name, None, "in the file but not listed in config.json")
                t = f.get_tensor(name)
                _compare(st_path, name, {"shape": list(t.shape), "dtype": _dtype_name(t.dtype)}, table[name],
                         "config.json")
                tensors[name] = t
    except FormatError:
        raise
    except Exception as e:  # safetensors raises its own error types for bad headers and short files
        raise FormatError(str(st_path), None, None, f"cannot be read (truncated or corrupt): {e}") from e

    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = (~torch.isfinite(t)).nonzero()[0].tolist()
            raise FormatError(str(st_path), name, "values", f"holds NaN or Inf (first at index {bad})")

    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:  # pragma: no cover - the checks above should make this unreachable
        raise FormatError(str(st_path), None, None, f"does not fit the model: {e}") from e
    for path, sub in model.named_modules():
        check = getattr(sub, "check_loaded", None)
        if callable(check):
            try:
                check()
            except (NeuroError, ValueError, TypeError) as e:
                raise FormatError(str(st_path), path or "model", None, f"inconsistent tensors: {e}") from e
    return model


__all__ = ["FORMAT", "FORMAT_VERSION", "build_module", "load_model", "module_spec", "register_savable",
           "registered", "savable", "savable_class", "savable_name", "save_model"]
