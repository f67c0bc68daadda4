r"""Partition an IR graph into per-core slices, place them on chips and cores, encode synaptic words.

**Slices.** Every population is cut into contiguous slices ``[lo, hi)`` of at most
``neurons_per_core`` neurons whose memory fits the core's budget
(``core_memory_bytes - core_reserved_bytes``). Memory of a neuron slice of ``n`` neurons:

.. math::
    M_{core} = n\,(\text{neuron\_bytes} + 2^{\text{synapse\_type\_bits}}\,\text{delay\_slots}\,
               \text{ring\_buffer\_bytes}) \;[+\; M_{syn}]

    M_{syn} = \text{synapse\_word\_bytes} \cdot \#\{\text{synapses into the slice}\}
              + \text{row\_header\_bytes} \sum_{\text{projections } Q \to P} \#\{\text{rows of } Q \text{ with synapses}\}

(one row header per presynaptic neuron with synapses and incoming projection, as a master
population table would). :math:`M_{syn}` counts against the core (``synapse_store = 'core'``, SpiNNaker 2: weights in
PE SRAM) or against its chip's SDRAM (``'sdram'``, sPyNNaker). Slices are cut greedily, so every
slice but the last of a population is full in neurons or in memory. Spike sources are cut into
slices of ``neurons_per_core`` (spike times streamed in, no core memory counted); a source slice
whose synapses need delay-extension stages gets a delay-extension slice of the same neurons
(memory: one bit per neuron and tick of its ``stages * delay_slots``-tick buffer).

**Placement.** Slices in graph order (topological order of the zero-delay projections; each delay
extension right after its source slice) fill the application cores of the chips in order (x fastest,
then y), so that neighbouring layers sit on the same or neighbouring chips.

**Synaptic words** (``synapse_word_bytes`` each; fields from the least significant bit: postsynaptic
index within the slice (``index_bits``), synapse type (``synapse_type_bits``: 1 = inhibitory, the
weight's sign), delay field (``delay_bits``, native delay minus ``delay_min``), weight magnitude
(``weight_bits``)). Weights are fixed point per target population: :math:`q = \text{round}(|w|\,2^e)`
with the largest :math:`e` such that :math:`\max |w| \, 2^e \le` ``weight_max`` (sPyNNaker's
power-of-two weight scaling).

Anything that does not fit raises :class:`~neuro.core.errors.HardwareLimitError` with the usage of
the offending population, core or chip against the machine's limits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ...core.errors import HardwareLimitError, UnsupportedLayerError
from ...ir.graph import POPULATION_TYPES, EGRULayer, Graph
from .delays import DelayPlan
from .machine import Machine

KINDS = ("neurons", "source", "delay")


@dataclass
class Slice:
    """Neurons ``lo .. hi-1`` of node ``node`` on one core. ``kind``: ``'neurons'`` (a population),
    ``'source'`` (a spike source) or ``'delay'`` (the delay extension of ``of``, the index of the
    source slice, ``stages`` stages). Memory in bytes; ``sdram_bytes``: its synaptic rows in SDRAM."""

    index: int
    node: str
    kind: str
    lo: int
    hi: int
    memory_bytes: int = 0
    sdram_bytes: int = 0
    synapses: int = 0
    stages: int = 0
    of: Optional[int] = None
    chip: Optional[tuple] = None
    core: Optional[int] = None

    @property
    def n(self) -> int:
        return self.hi - self.lo

    @property
    def label(self) -> str:
        tag = "" if self.kind != "delay" else " delay"
        return f"{self.node}[{self.lo}:{self.hi}]{tag}"

    def to_dict(self) -> dict:
        return {"index": self.index, "node": self.node, "kind": self.kind, "lo": self.lo, "hi": self.hi,
                "chip": list(self.chip) if self.chip is not None else None, "core": self.core,
                "memory_bytes": self.memory_bytes, "sdram_bytes": self.sdram_bytes, "synapses": self.synapses,
                "stages": self.stages, "of": self.of}


def check_supported(graph: Graph) -> None:
    """UnsupportedLayerError listing every node the SpiNNaker mapping cannot place (EGRU layers)."""
    bad = [(k, type(v).__name__) for k, v in graph.nodes.items() if isinstance(v, EGRULayer)]
    if bad:
        raise UnsupportedLayerError(bad, context="the SpiNNaker mapping (no gated units on its neuron cores)")


def neuron_costs(graph: Graph, name: str, machine: Machine) -> tuple:
    """(per-neuron core bytes [n], fixed core bytes, per-neuron synapse counts [n], synaptic header
    bytes) of population ``name`` (module docstring)."""
    pop = graph.nodes[name]
    types = 2 ** machine.synapse_type_bits
    per = np.full(pop.n, machine.neuron_bytes + types * machine.delay_slots * machine.ring_buffer_bytes,
                  dtype=np.int64)
    syn = np.zeros(pop.n, dtype=np.int64)
    header = 0
    for p in graph.projections_into(name):
        syn += np.bincount(p.indices, minlength=pop.n)
        header += machine.row_header_bytes * int(np.count_nonzero(np.diff(p.indptr)))
    if machine.synapse_store == "core":
        return per + syn * machine.synapse_word_bytes, header, syn, header
    return per, 0, syn, header


def slice_population(graph: Graph, name: str, machine: Machine, start_index: int) -> list:
    """Greedy slices of population ``name`` (module docstring); HardwareLimitError when one neuron
    alone does not fit a core."""
    per, fixed, syn, header = neuron_costs(graph, name, machine)
    budget = machine.core_budget_bytes
    worst = int(np.argmax(per))
    if fixed + int(per[worst]) > budget:
        raise HardwareLimitError(machine.name, [{
            "population": name, "neuron": worst, "core_bytes_needed": fixed + int(per[worst]),
            "core_bytes_available": budget, "synapses_in": int(syn[worst]),
            "why": "one neuron with its synaptic rows does not fit a core"}])
    cum = np.concatenate([[0], np.cumsum(per)])
    cum_syn = np.concatenate([[0], np.cumsum(syn)])
    out, lo, n = [], 0, per.size
    while lo < n:
        fit = int(np.searchsorted(cum, cum[lo] + budget - fixed, side="right")) - 1
        hi = min(lo + machine.neurons_per_core, fit, n)
        synapses = int(cum_syn[hi] - cum_syn[lo])
        sdram = 0 if machine.synapse_store == "core" else synapses * machine.synapse_word_bytes + header
        out.append(Slice(start_index + len(out), name, "neurons", lo, hi, int(fixed + cum[hi] - cum[lo]), sdram,
                         synapses))
        lo = hi
    return out


def partition(graph: Graph, machine: Machine, delays: DelayPlan) -> list:
    """All slices of ``graph`` in placement order (neurons, sources, delay extensions), unplaced."""
    check_supported(graph)
    out = []
    stages_of = {}   # node -> max extension stage of its outgoing projections
    for k, p in enumerate(graph.projections):
        s = int(delays.projections[k].stage.max()) if p.nnz else 0
        stages_of[p.pre] = max(stages_of.get(p.pre, 0), s)
    for name in graph.topological_order():
        node = graph.nodes[name]
        if isinstance(node, POPULATION_TYPES):
            new = slice_population(graph, name, machine, len(out))
        else:
            new = [Slice(len(out) + i, name, "source", lo, min(lo + machine.neurons_per_core, node.n))
                   for i, lo in enumerate(range(0, node.n, machine.neurons_per_core))]
        stages = stages_of.get(name, 0)
        for s in new:
            s.index = len(out)
            out.append(s)
            if stages:
                bytes_ = math.ceil(s.n * stages * machine.delay_slots / 8)
                out.append(Slice(len(out), name, "delay", s.lo, s.hi, bytes_, stages=stages, of=s.index))
    return out


def place(slices: list, machine: Machine) -> None:
    """Give every slice a (chip, core), filling chips in order; HardwareLimitError when the machine
    has too few application cores."""
    cores = [(chip, core) for chip in machine.chips() for core in machine.app_cores]
    if len(slices) > len(cores):
        per_node = {}
        for s in slices:
            per_node[(s.node, s.kind)] = per_node.get((s.node, s.kind), 0) + 1
        usage = [{"node": n, "kind": k, "cores": c} for (n, k), c in per_node.items()]
        usage.append({"cores_needed": len(slices), "cores_available": len(cores),
                      "chips": machine.width * machine.height, "app_cores_per_chip": len(machine.app_cores)})
        raise HardwareLimitError(f"{machine.name} ({machine.width} x {machine.height} chips)", usage)
    for s, (chip, core) in zip(slices, cores):
        s.chip, s.core = chip, core
    if machine.synapse_store == "sdram":
        per_chip = {}
        for s in slices:
            per_chip[s.chip] = per_chip.get(s.chip, 0) + s.sdram_bytes
        bad = [{"chip": list(c), "sdram_bytes": b, "sdram_bytes_available": machine.sdram_bytes_per_chip}
               for c, b in per_chip.items() if b > machine.sdram_bytes_per_chip]
        if bad:
            raise HardwareLimitError(f"{machine.name} (SDRAM)", bad)


# ----------------------------------------------------------------------------- synaptic words
def weight_exponent(max_abs: float, machine: Machine) -> int:
    """Largest e with ``max_abs * 2**e <= weight_max`` (0 when there are no nonzero weights)."""
    if max_abs <= 0:
        return 0
    e = math.floor(math.log2(machine.weight_max / max_abs))
    while max_abs * 2.0 ** e > machine.weight_max:   # guard the log's rounding
        e -= 1
    return e


def encode_words(weights: np.ndarray, field: np.ndarray, index: np.ndarray, exponent: int,
                 machine: Machine) -> np.ndarray:
    """uint64 synaptic words (module docstring). Shape: all [nnz]."""
    q = np.rint(np.abs(weights) * 2.0 ** exponent).astype(np.int64)
    if q.size and int(q.max()) > machine.weight_max:
        raise HardwareLimitError(f"{machine.name} (weights)", [{"weight_q": int(q.max()), "weight_max": machine.weight_max}])
    neg = (weights < 0).astype(np.int64)
    shift_t = machine.index_bits
    shift_d = shift_t + machine.synapse_type_bits
    shift_w = shift_d + machine.delay_bits
    return ((q << shift_w) | (field.astype(np.int64) << shift_d) | (neg << shift_t) | index.astype(np.int64)).astype(np.uint64)


def decode_words(words: np.ndarray, exponent: int, machine: Machine) -> tuple:
    """(weights float64, delay fields, indices) of synaptic words; inverse of :func:`encode_words`
    up to the weight's rounding."""
    w = words.astype(np.int64)
    shift_t = machine.index_bits
    shift_d = shift_t + machine.synapse_type_bits
    shift_w = shift_d + machine.delay_bits
    index = w & ((1 << machine.index_bits) - 1)
    neg = (w >> shift_t) & ((1 << machine.synapse_type_bits) - 1)
    field = (w >> shift_d) & ((1 << machine.delay_bits) - 1)
    q = (w >> shift_w) & ((1 << machine.weight_bits) - 1)
    return np.where(neg == 1, -q, q) * 2.0 ** -exponent, field, index


def synaptic_words(graph: Graph, slices: list, delays: DelayPlan, machine: Machine) -> tuple:
    """(words per projection [nnz] uint64, weight exponent per population, quantization report).

    The report holds, per projection, the largest absolute weight error and the number of nonzero
    weights that round to 0."""
    exps = {}
    for name in graph.populations():
        ws = [np.abs(p.weights).max() for p in graph.projections_into(name) if p.nnz]
        exps[name] = weight_exponent(float(max(ws)) if ws else 0.0, machine)
    lo_of = {}
    for s in slices:
        if s.kind == "neurons":
            lo_of.setdefault(s.node, []).append(s.lo)
    words, report = [], []
    for k, p in enumerate(graph.projections):
        starts = np.asarray(lo_of[p.post])
        local = p.indices - starts[np.searchsorted(starts, p.indices, side="right") - 1]
        wd = encode_words(p.weights, delays.projections[k].field, local, exps[p.post], machine)
        back, _, _ = decode_words(wd, exps[p.post], machine)
        words.append(wd)
        report.append({"projection": p.name or f"{p.pre}->{p.post}", "exponent": exps[p.post],
                       "max_abs_error": float(np.abs(back - p.weights).max()) if p.nnz else 0.0,
                       "rounded_to_zero": int(((back == 0) & (p.weights != 0)).sum())})
    return words, exps, report
