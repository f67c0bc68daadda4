r"""Energy of an emulated SpiNNaker run: the emulator's traffic and work as :class:`neuro.energy.Counts`.

:func:`emulation_counts` gives one :class:`~neuro.energy.LayerCounts` per used core (slice), ops per
tick :math:`\tau` (``report.ticks`` of them; IR step ``t`` of population ``P`` runs at tick
:math:`t + s_P`):

* ``neuron_update_active`` / ``neuron_update_inactive``: the slice's neurons that spike / stay
  silent at each tick it updates; ``spike``: its spikes (neuron cores only);
* ``packet``: multicast packets the core sends (one per spike of a neuron or source core, one per
  stage-``k`` re-emission of a delay-extension core, at tick :math:`\tau_0 + kL`);
* ``hop``: chip-to-chip link traversals of those packets (the walk through the routing tables);
* ``ac``: synaptic events the core processes (each synapse of an arriving packet with the packet's
  stage, counted at the tick the packet arrives; binary spikes, so accumulates).

Totals equal the emulator's (``packets``, ``hops``, ``core_synaptic_events``, ``core_neuron_updates``,
test). ``neurons`` of a neuron core is its slice size (static power in :class:`~neuro.energy.EnergyReport`).

Pricing. The built-in ``spinnaker1`` model prices one packet per *spike* (1 nJ = 40 bits x 25 pJ/bit)
and leaves ``packet``/``hop`` at 0; :func:`router_priced` returns a model that prices the routers
instead, :math:`e_{packet} = e_{hop} = b\,e_{bit}` (every packet passes its source chip's router and
one more router per hop; ``b`` = ``packet_bits``, :math:`e_{bit}` = ``router_energy_j_per_bit`` of the
machine), with ``spike`` at 0 so nothing is priced twice. Its dynamic energy equals the emulator's
``router_energy_j``.
"""
from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import numpy as np

from ...core.errors import ParameterError, ShapeError
from ...energy.counter import Counts, LayerCounts
from ...energy.targets import EnergyModel
from ...ir.graph import LIPopulation
from .routing import walk


def _core_name(s) -> str:
    return f"{s.label} @ chip {s.chip[0]},{s.chip[1]} core {s.core}"


def emulation_counts(mapping, report, inputs=None) -> Counts:
    """Counts of ``report`` (:meth:`Mapping.emulate`'s result) on ``mapping``; ``inputs``: the
    source spikes {source: [T, n]} the run was given (module docstring). Shape: ops [ticks] per core."""
    g, m, R = mapping.graph, mapping.machine, mapping.routing
    ticks, off, L = report.ticks, mapping.delays.offsets, m.delay_slots
    spikes = {}
    for name, node in g.nodes.items():
        if name in g.sources():
            x = (inputs or {}).get(name)
            if x is None:
                raise ParameterError("emulation_counts", "inputs", None, f"the spikes of source {name!r}")
            spikes[name] = np.asarray(x, dtype=np.float64)
        elif name in report.spikes:
            spikes[name] = (np.zeros_like(report.spikes[name]) if isinstance(node, LIPopulation)
                            else np.asarray(report.spikes[name], dtype=np.float64))
    T = min(v.shape[0] for v in report.spikes.values()) if report.spikes else ticks
    for name in g.sources():
        if spikes[name].ndim != 2 or spikes[name].shape[0] < T or spikes[name].shape[1] != g.nodes[name].n:
            raise ShapeError("emulation_counts", f"source {name!r} needs spikes [>={T}, {g.nodes[name].n}], "
                             f"got {spikes[name].shape}")
    at = {(s.chip, s.core): s for s in mapping.slices}
    layers = {}
    for s in mapping.slices:
        kind = "neuron" if s.kind == "neurons" else "passive"
        lc = LayerCounts(_core_name(s), {"neurons": "NeuronCore", "source": "SourceCore", "delay": "DelayCore"}[s.kind],
                         kind, {op: np.zeros(ticks, dtype=np.int64) for op in ("ac", "packet", "hop")},
                         s.n if s.kind == "neurons" else 0)
        if s.kind == "neurons":
            sp = spikes[s.node][:T, s.lo:s.hi].sum(axis=1).astype(np.int64)          # [T]
            tt = np.arange(T) + off[s.node]
            for op, v in (("neuron_update_active", sp), ("neuron_update_inactive", s.n - sp), ("spike", sp)):
                lc.ops[op] = np.zeros(ticks, dtype=np.int64)
                lc.ops[op][tt] = v
        layers[s.index] = lc
    # per-neuron synapse counts of a (block, target neuron slice) pair, as the emulator delivers them
    fan_cache = {}

    def fan(b, src, tgt):
        k = (b.index, tgt.index)
        if k not in fan_cache:
            f = np.zeros(b.n, dtype=np.int64)
            for pk, (p, d) in enumerate(zip(g.projections, mapping.delays.projections)):
                if p.pre != src.node or p.post != tgt.node:
                    continue
                for i in range(b.n):
                    j = src.lo + i
                    a, e = int(p.indptr[j]), int(p.indptr[j + 1])
                    idx = p.indices[a:e]
                    f[i] += int(((idx >= tgt.lo) & (idx < tgt.hi) & (d.stage[a:e] == b.stage)).sum())
            fan_cache[k] = f
        return fan_cache[k]

    for b in R.blocks:
        src = mapping.slices[b.slice] if b.stage == 0 else mapping.slices[mapping.slices[b.slice].of]
        sender = layers[b.slice]
        x = spikes[src.node][:T, src.lo:src.hi]                                       # [T, n]
        tt = np.arange(T) + off[src.node] + b.stage * L
        keep = tt < ticks
        for i in range(b.n):
            fired = tt[keep & (x[:, i] != 0)]
            if fired.size == 0:
                continue
            delivered, hops, _ = walk(R, m, b.chip, b.key | i)
            np.add.at(sender.ops["packet"], fired, 1)
            np.add.at(sender.ops["hop"], fired, hops)
            for place in delivered:
                tgt = at[place]
                if tgt.kind == "neurons":
                    np.add.at(layers[tgt.index].ops["ac"], fired, int(fan(b, src, tgt)[i]))
    return Counts({lc.name: lc for lc in layers.values()}, f"SpiNNaker emulator ({m.name})")


def router_priced(model: EnergyModel, machine) -> EnergyModel:
    """``model`` with the routers priced per packet and per hop from ``machine`` (module docstring):
    ``packet`` = ``hop`` = packet_bits x router_energy_j_per_bit, ``spike`` = 0."""
    if not isinstance(model, EnergyModel):
        raise ParameterError("router_priced", "model", type(model).__name__, "a neuro.energy.EnergyModel")
    e = machine.packet_bits * machine.router_energy_j_per_bit
    src = (f"{machine.name}: {machine.packet_bits}-bit packet x {machine.router_energy_j_per_bit:g} J/bit per router "
           "pass (machine file; REFERENCE §4)")
    energy = dict(model.energy_j, packet=e, hop=e, spike=0.0)
    sources = dict(model.sources, packet=src, hop=src + "; one more router per hop",
                   spike="priced as packets and hops instead")
    return replace(model, name=model.name + "+router", energy_j=MappingProxyType(energy),
                   sources=MappingProxyType(sources))
