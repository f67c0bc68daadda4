r"""Tick-by-tick emulation of a mapped network: spikes travel as multicast packets through the routing
tables, land in per-core input ring buffers after their native delay (or via delay-extension cores),
and each core updates its neurons with neuro's own step functions.

Per tick :math:`\tau`:

1. every neuron core whose population ``P`` is at IR step :math:`t = \tau - s_P` (tick offsets,
   :mod:`.delays`) with :math:`0 \le t < T` sums its drives of step ``t`` and, projection by
   projection in graph order, its ring-buffer slot of tick :math:`\tau`, then applies the
   population's step function (:data:`neuro.ir.build.DYNAMICS`); source cores emit the given spikes
   of step :math:`\tau - s_Q`; delay-extension cores re-emit the spikes they received
   :math:`k L` ticks ago as stage-:math:`k` packets;
2. every spike becomes one packet with key ``block.key | neuron``, followed through the tables
   (:func:`~neuro.hardware_targets.spinnaker.routing.walk`: first match wins, a miss goes straight
   on); a neuron core it reaches adds, for each synapse of that neuron into its slice with the
   packet's stage, the word's weight :math:`q 2^{-e}` into the slot of tick :math:`\tau + r` (native
   delay ``r``); a delay-extension core stores the spike.

All hardware delays are :math:`\ge 1`, so the cores of one tick are independent. Weights are the
decoded synaptic words, dyadic rationals whose sums are exact in float64, so the emulated spikes
equal those of :class:`~neuro.ir.build.GraphNetwork` run on :meth:`Mapping.quantized_graph`
bit for bit (test). Counts: packets sent, hops, packets per link, packets received per core,
synaptic events per core, neuron updates per core; router energy
:math:`E = (\text{packets} + \text{hops})\,\text{packet\_bits}\,e_{bit}` (every packet passes
its source chip's router and one more router per hop; SpiNNaker 1: 25 pJ/bit, REFERENCE §4).

Real-time check: per core and tick, the cycles
:math:`c = n_{upd}\,c_{neuron} + n_{syn}\,c_{synapse} + n_{packets}\,c_{packet}` (machine constants,
marked as assumptions in the machine files) against the tick's budget ``clock_hz * dt_ms``; a
(core, tick) over budget is counted as late.

Shape: inputs {source: [T, n]} -> spikes {population: [T, n]} (batch 1, IR steps).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...core.errors import ParameterError, ShapeError, UnsupportedLayerError
from ...core.surrogate import ATan
from ...ir.build import DYNAMICS
from ...ir.graph import ConstantCurrent, GivenCurrent, Graph, LIPopulation, PoissonInput, Projection
from .partition import decode_words
from .routing import walk


def quantized_graph(mapping) -> Graph:
    """The mapped graph with every weight replaced by its synaptic word's value :math:`q 2^{-e}`."""
    g = mapping.graph
    projs = []
    for p, words in zip(g.projections, mapping.words):
        w, _, _ = decode_words(words, mapping.exponents[p.post], mapping.machine)
        projs.append(Projection(p.pre, p.post, p.indptr, p.indices, w, p.delay_steps, p.name))
    return Graph(dict(g.nodes), projs, g.dt_ms, dict(g.metadata))


@dataclass
class EmulatorReport:
    """Spikes per population [T, n] (a non-spiking population: its potential) and traffic counts."""

    spikes: dict
    ticks: int
    packets: int
    hops: int
    link_packets: dict
    core_packets: dict
    core_synaptic_events: dict
    core_neuron_updates: dict
    router_energy_j: float = 0.0
    budget_cycles: float = 0.0
    core_cycles_max: dict = None
    late: int = 0

    def to_dict(self) -> dict:
        return {"ticks": self.ticks, "packets": self.packets, "hops": self.hops, "router_energy_j": self.router_energy_j,
                "budget_cycles": self.budget_cycles, "late_core_ticks": self.late,
                "cycles_max": max((self.core_cycles_max or {}).values(), default=0),
                "link_load_max": max(self.link_packets.values(), default=0),
                "cores": [{"chip": list(c), "core": k, "packets_in": self.core_packets.get((c, k), 0),
                           "synaptic_events": self.core_synaptic_events.get((c, k), 0),
                           "neuron_updates": self.core_neuron_updates.get((c, k), 0)}
                          for c, k in sorted(set(self.core_neuron_updates) | set(self.core_packets))]}


def emulate(mapping, inputs=None, steps: int = None) -> EmulatorReport:
    """Run ``mapping`` (a :class:`~neuro.hardware_targets.spinnaker.Mapping`) for ``steps`` IR steps
    with ``inputs`` {source: spikes [T, n]} (module docstring)."""
    g, m, R = mapping.graph, mapping.machine, mapping.routing
    sources, pops = g.sources(), g.populations()
    bad = [(p.pre, "LIPopulation (graded output)") for p in g.projections if isinstance(g.nodes[p.pre], LIPopulation)]
    if bad:
        raise UnsupportedLayerError(bad, context="the SpiNNaker emulator (spikes only)")
    inputs = {k: np.asarray(v, dtype=np.float64) for k, v in (inputs or {}).items()}
    for name, node in sources.items():
        x = inputs.get(name)
        if x is None or x.ndim != 2 or x.shape[1] != node.n:
            raise ShapeError("emulate", f"source {name!r} needs spikes [T, {node.n}], got {None if x is None else x.shape}")
    if steps is None:
        if not inputs:
            raise ParameterError("emulate", "steps", None, "an integer >= 1 when there are no inputs")
        steps = min(x.shape[0] for x in inputs.values())
    if any(x.shape[0] < steps for x in inputs.values()):
        raise ShapeError("emulate", f"steps={steps} but an input holds fewer")
    off = mapping.delays.offsets
    L = m.delay_slots
    ring = m.delay_max + 1
    weights = {}
    for k, (p, words) in enumerate(zip(g.projections, mapping.words)):
        weights[k] = decode_words(words, mapping.exponents[p.post], m)[0]
    stage = {k: d.stage for k, d in enumerate(mapping.delays.projections)}
    native = {k: d.native for k, d in enumerate(mapping.delays.projections)}
    into = {name: [k for k, p in enumerate(g.projections) if p.post == name] for name in pops}
    slice_at = {(s.chip, s.core): s for s in mapping.slices}
    block_of = {(b.slice, b.stage): b for b in R.blocks}
    # ring buffers: (slice index, projection) -> [ring, n]
    buf = {(s.index, k): np.zeros((ring, s.n)) for s in mapping.slices if s.kind == "neurons" for k in into[s.node]}
    pending = {s.index: [] for s in mapping.slices if s.kind == "delay"}    # (tick received, neuron)
    # drives [steps, n]
    drive = {}
    for name, node in g.nodes.items():
        if isinstance(node, PoissonInput):
            drive[name] = node.values(steps, g.dt_ms)
        elif isinstance(node, GivenCurrent):
            if node.values.shape[0] < steps:
                raise ShapeError("emulate", f"drive {name!r} holds {node.values.shape[0]} steps, run needs {steps}")
            drive[name] = node.values
        elif isinstance(node, ConstantCurrent):
            drive[name] = np.broadcast_to(node.values, (steps, node.n))
    drives_of = {name: [d for d, _ in g.drives_of(name)] for name in pops}
    dyn = {k: DYNAMICS[type(v)](v) for k, v in pops.items()}
    state = {k: dyn[k][2](1, torch.float64) for k in pops}
    surrogate = ATan()
    out = {k: np.zeros((steps, v.n)) for k, v in pops.items()}
    routes = {}
    counts = dict(packets=0, hops=0)
    links, core_in, core_syn, core_upd = {}, {}, {}, {}

    tick_work = {}                                            # (chip, core) -> cycles this tick
    cyc_max, late = {}, 0
    budget = m.clock_hz * g.dt_ms * 1e-3

    def work(place, cycles: int):
        tick_work[place] = tick_work.get(place, 0) + cycles

    def send(block, neuron: int, tau: int):
        key = block.key | neuron
        if key not in routes:
            routes[key] = walk(R, m, block.chip, key)
        delivered, hops, used = routes[key]
        counts["packets"] += 1
        counts["hops"] += hops
        for lk, c in used.items():
            links[lk] = links.get(lk, 0) + c
        src = mapping.slices[block.slice] if block.stage == 0 else mapping.slices[mapping.slices[block.slice].of]
        j = src.lo + neuron                                  # presynaptic neuron, node-global
        for place, c in delivered.items():
            core_in[place] = core_in.get(place, 0) + c
            work(place, c * m.cycles_per_packet)
            tgt = slice_at[place]
            if tgt.kind == "delay":
                pending[tgt.index].append((tau, neuron))
                continue
            for k in into[tgt.node]:
                p = g.projections[k]
                if p.pre != src.node:
                    continue
                a, b = int(p.indptr[j]), int(p.indptr[j + 1])
                idx = p.indices[a:b]
                sel = (idx >= tgt.lo) & (idx < tgt.hi) & (stage[k][a:b] == block.stage)
                if not sel.any():
                    continue
                slots = (tau + native[k][a:b][sel]) % ring
                np.add.at(buf[(tgt.index, k)], (slots, idx[sel] - tgt.lo), weights[k][a:b][sel])
                core_syn[place] = core_syn.get(place, 0) + int(sel.sum())
                work(place, int(sel.sum()) * m.cycles_per_synaptic_event)

    ticks = steps + max(off.values(), default=0)
    neuron_slices = [s for s in mapping.slices if s.kind == "neurons"]
    for tau in range(ticks):
        emitted = []                                          # (block, neuron)
        for name in g.topological_order():
            t = tau - off[name]
            if not 0 <= t < steps:
                continue
            if name in sources:
                for s in (s for s in mapping.slices if s.node == name and s.kind == "source"):
                    b = block_of.get((s.index, 0))
                    if b is not None:
                        emitted += [(b, int(i)) for i in np.nonzero(inputs[name][t, s.lo:s.hi])[0]]
                continue
            node = pops[name]
            x = np.zeros(node.n)
            for d in drives_of[name]:
                x = x + drive[d][t]
            for k in into[name]:
                syn = np.zeros(node.n)
                for s in (s for s in neuron_slices if s.node == name):
                    slot = buf[(s.index, k)][tau % ring]
                    syn[s.lo:s.hi] = slot
                    slot[:] = 0.0
                x = x + syn
            params, step, _ = dyn[name]
            spikes, state[name] = step(torch.from_numpy(x)[None], state[name], params, surrogate)
            sp = spikes[0].numpy()
            out[name][t] = sp
            for s in (s for s in neuron_slices if s.node == name):
                core_upd[(s.chip, s.core)] = core_upd.get((s.chip, s.core), 0) + s.n
                work((s.chip, s.core), s.n * m.cycles_per_neuron_update)
                b = block_of.get((s.index, 0))
                if b is not None and not isinstance(node, LIPopulation):
                    emitted += [(b, int(i)) for i in np.nonzero(sp[s.lo:s.hi])[0]]
        for e_idx, queue in pending.items():                 # delay extensions re-emit
            e = mapping.slices[e_idx]
            for k in range(1, e.stages + 1):
                b = block_of.get((e.index, k))     # stage-k blocks are sent by the extension
                if b is not None:
                    emitted += [(b, n) for (t0, n) in queue if t0 + k * L == tau]
            queue[:] = [(t0, n) for (t0, n) in queue if t0 + e.stages * L > tau]
        for b, neuron in emitted:
            send(b, neuron, tau)
        for place, c in tick_work.items():
            cyc_max[place] = max(cyc_max.get(place, 0), c)
            late += c > budget
        tick_work.clear()
    energy = (counts["packets"] + counts["hops"]) * m.packet_bits * m.router_energy_j_per_bit
    return EmulatorReport(out, ticks, counts["packets"], counts["hops"], links, core_in, core_syn, core_upd, energy,
                          budget, cyc_max, late)
