r"""Energy models as data: joules per operation type, each constant with its source.

.. math::
    E = \sum_{\text{layer}} \sum_{op} n_{op} \, e_{op} \;+\; E_{static},\qquad
    E_{static} = T\,t_{step}\,(N_{chips} P_{chip} + N_{cores} P_{core})

where :math:`n_{op}` are the effective counts (``"counts": "effective"``: hardware that skips zero
inputs and zero weights) or the dense ones (``"counts": "dense"``: hardware that computes every
product, a GPU), :math:`N_{cores} = \lceil \text{neurons} / \text{neurons\_per\_core} \rceil`,
:math:`N_{chips} = \lceil N_{cores} / \text{cores\_per\_chip} \rceil`. Constants: REFERENCE §4
(Horowitz ISSCC 2014, Davies et al. IEEE Micro 2018 Table 2, SpiNNaker figures); see each file.

A model file (JSON, or TOML read with :mod:`tomllib`)::

    {"format": "neuro-energy-model", "name": "my_chip", "description": "...", "counts": "effective",
     "ops": {"ac": {"energy_j": 1e-12, "source": "..."}, "mac": {...}, ...},
     "static": {"power_w_per_chip": {"value": 0.3, "source": "..."}, ...}}   # optional

Every op type of :data:`REQUIRED_OPS` must be given (0 is allowed, with a source saying why), none
outside :data:`ENERGY_OPS`; constants are finite and >= 0. Any violation is a
:class:`~neuro.core.errors.FormatError` naming the file, the key and the field.
"""
from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Optional

from ..core.errors import FormatError, ParameterError

FORMAT = "neuro-energy-model"
REQUIRED_OPS = ("ac", "mac", "neuron_update_active", "neuron_update_inactive", "spike", "nonlinear",
                "mem_read_byte", "mem_write_byte")
ENERGY_OPS = REQUIRED_OPS + ("packet", "hop")
STATIC_FIELDS = ("power_w_per_chip", "power_w_per_core", "neurons_per_core", "cores_per_chip", "seconds_per_step")
MODELS_DIR = Path(__file__).resolve().parent / "models"


@dataclass(frozen=True)
class StaticPower:
    """Power drawn while a run lasts: per chip and per active core, real time ``seconds_per_step``."""

    power_w_per_chip: float
    power_w_per_core: float
    neurons_per_core: float
    cores_per_chip: float
    seconds_per_step: float
    sources: Mapping[str, str]

    def energy_j(self, neurons: int, steps: int) -> float:
        cores = math.ceil(neurons / self.neurons_per_core) if neurons else 0
        chips = math.ceil(cores / self.cores_per_chip) if cores else 0
        return steps * self.seconds_per_step * (chips * self.power_w_per_chip + cores * self.power_w_per_core)


@dataclass(frozen=True)
class EnergyModel:
    """Joules per operation (``energy_j[op]``) with ``sources[op]``; ``counts``: 'effective' or 'dense'."""

    name: str
    description: str
    counts: str
    energy_j: Mapping[str, float]
    sources: Mapping[str, str]
    static: Optional[StaticPower] = None
    file: str = ""

    def op_energy(self, op: str) -> float:
        return self.energy_j.get(op, 0.0)

    def count_key(self, op: str) -> str:
        """The count an op type is priced on: dense synaptic ops for 'dense' models."""
        if self.counts == "dense" and op in ("ac", "mac"):
            return op + "_dense"
        return op


def _number(file, node, field, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise FormatError(file, node, field, f"must be a number, got {v!r}")
    if not math.isfinite(v):
        raise FormatError(file, node, field, f"must be finite, got {v!r}")
    if v < 0:
        raise FormatError(file, node, field, f"must be >= 0 (an energy or power cannot be negative), got {v!r}")
    return float(v)


def _source(file, node, entry) -> str:
    s = entry.get("source")
    if not isinstance(s, str) or not s.strip():
        raise FormatError(file, node, "source", "missing: every constant names its source")
    return s


def parse_energy_model(doc, file: str = "<dict>") -> EnergyModel:
    """Validate a parsed model document (see the module docstring); FormatError on any fault."""
    if not isinstance(doc, dict):
        raise FormatError(file, None, None, f"must hold an object, got {type(doc).__name__}")
    if doc.get("format", FORMAT) != FORMAT:
        raise FormatError(file, None, "format", f"must be {FORMAT!r}, got {doc.get('format')!r}")
    unknown_keys = sorted(set(doc) - {"format", "name", "description", "counts", "ops", "static"})
    if unknown_keys:
        raise FormatError(file, unknown_keys[0], None, "is not a known key (format, name, description, counts, ops, static)")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise FormatError(file, None, "name", f"must be a non-empty string, got {name!r}")
    counts = doc.get("counts", "effective")
    if counts not in ("effective", "dense"):
        raise FormatError(file, None, "counts", f"must be 'effective' or 'dense', got {counts!r}")
    ops = doc.get("ops")
    if not isinstance(ops, dict):
        raise FormatError(file, None, "ops", "missing: an object of op type -> {energy_j, source}")
    unknown = sorted(set(ops) - set(ENERGY_OPS))
    if unknown:
        raise FormatError(file, f"ops.{unknown[0]}", None,
                          f"unknown op type {unknown[0]!r} (known: {', '.join(ENERGY_OPS)})")
    missing = [op for op in REQUIRED_OPS if op not in ops]
    if missing:
        raise FormatError(file, f"ops.{missing[0]}", None,
                          f"missing constant(s) {', '.join(missing)} (give 0 with a source where an op is free)")
    energy, sources = {}, {}
    for op, entry in ops.items():
        node = f"ops.{op}"
        if not isinstance(entry, dict):
            raise FormatError(file, node, None, "must be an object {energy_j, source}")
        if "energy_j" not in entry:
            raise FormatError(file, node, "energy_j", "missing")
        energy[op] = _number(file, node, "energy_j", entry["energy_j"])
        sources[op] = _source(file, node, entry)
    static = None
    if doc.get("static") is not None:
        st = doc["static"]
        if not isinstance(st, dict):
            raise FormatError(file, "static", None, "must be an object")
        extra = sorted(set(st) - set(STATIC_FIELDS))
        if extra:
            raise FormatError(file, f"static.{extra[0]}", None, f"unknown field (known: {', '.join(STATIC_FIELDS)})")
        vals, srcs = {}, {}
        for f in STATIC_FIELDS:
            node = f"static.{f}"
            if f not in st or not isinstance(st[f], dict) or "value" not in st[f]:
                raise FormatError(file, node, "value", "missing")
            vals[f] = _number(file, node, "value", st[f]["value"])
            srcs[f] = _source(file, node, st[f])
        for f in ("neurons_per_core", "cores_per_chip"):
            if vals[f] <= 0:
                raise FormatError(file, f"static.{f}", "value", f"must be > 0, got {vals[f]!r}")
        static = StaticPower(**vals, sources=MappingProxyType(srcs))
    return EnergyModel(name, str(doc.get("description", "")), counts, MappingProxyType(energy),
                       MappingProxyType(sources), static, file)


def load_energy_model(path) -> EnergyModel:
    """Read and validate a JSON or TOML energy model file."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(str(path), None, None, "no such energy model file")
    try:
        if path.suffix.lower() == ".toml":
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        else:
            doc = json.loads(path.read_text(encoding="utf-8"),
                             parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"{c} is not valid JSON")))
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, ValueError, UnicodeDecodeError) as e:
        raise FormatError(str(path), None, None, f"cannot be parsed: {e}") from e
    return parse_energy_model(doc, str(path))


def builtin_models() -> dict:
    """Name -> EnergyModel for every file shipped in neuro/energy/models/."""
    out = {}
    for p in sorted(MODELS_DIR.glob("*.json")):
        m = load_energy_model(p)
        out[m.name] = m
    return out


def get_models(spec) -> list:
    """Energy models from names of built-in ones and/or paths of model files (a list or 'a,b,c')."""
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    builtin = builtin_models()
    out = []
    for s in items:
        if isinstance(s, EnergyModel):
            out.append(s)
        elif s in builtin:
            out.append(builtin[s])
        elif str(s).endswith((".json", ".toml")):
            out.append(load_energy_model(s))
        else:
            raise ParameterError("energy targets", "target", s,
                                 "a built-in model (" + ", ".join(builtin) + ") or a .json/.toml file")
    return out
