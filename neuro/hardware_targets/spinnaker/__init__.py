r"""SpiNNaker-style mapping of an IR graph: machine models, partitioning, placement, multicast routing, delays.

:func:`map_graph` takes a :class:`~neuro.ir.Graph` and a machine (``'spinnaker1'``, ``'spinnaker2'``,
a JSON file or a :class:`~neuro.hardware_targets.spinnaker.machine.Machine`) and returns a
:class:`Mapping`:

1. tick offsets and delay slots (:mod:`.delays`): every synapse's hardware delay is its IR delay plus
   the offset difference of its endpoints, split into delay-extension stages and a native part;
2. slices and placement (:mod:`.partition`): populations cut into per-core slices within the neuron
   and memory budgets, placed on chips and cores in order; synaptic words with per-population
   power-of-two weight scaling;
3. keys and routing tables (:mod:`.routing`): a key block per sending slice, shortest-path multicast
   trees, per-chip key/mask tables with default routing, compressed to the router's size.

:meth:`Mapping.emulate` runs the result tick by tick with packets through the tables
(:mod:`.emulator`); its spikes equal :class:`~neuro.ir.build.GraphNetwork` on
:meth:`Mapping.quantized_graph`. :func:`emulation_counts` turns a run into per-core, per-tick
:class:`neuro.energy.Counts` (:mod:`.energy`; :func:`router_priced` prices packets and hops);
:func:`to_spinnaker2` and :func:`to_pynn` describe the network for py-spinnaker2 and PyNN (:mod:`.export`).

The EGRU language model has its own path (gated units do not run on the LIF neuron cores):
:func:`egru_on_spinnaker2` (:mod:`.egru`) prices it by formula, :func:`egru_emulated`
(:mod:`.egru_emulator`) runs its pruned int8 fixed-point network packet by packet on placed PEs with
graded events as payload packets through these routing tables. :mod:`.plots` draws the placement,
the routing table sizes and the per-core load of either kind of mapping.

Whatever does not fit raises :class:`~neuro.core.errors.HardwareLimitError` with the usage of the
population, core or chip concerned; EGRU layers raise :class:`~neuro.core.errors.UnsupportedLayerError`.

Example::

    m = map_graph(graph, "spinnaker1", width=2, height=2)
    m.usage()        # per-core and per-chip figures
    json.dumps(m.to_dict())
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ...core.errors import ParameterError
from ...ir.graph import Graph
from .delays import DelayPlan, plan_delays
from .machine import Machine, bundled_machines, load_machine, parse_machine
from .partition import Slice, partition, place, synaptic_words
from .routing import Routing, route_all, walk

_LAZY = {"emulation_counts": "energy", "router_priced": "energy", "to_spinnaker2": "export",
         "write_spinnaker2": "export", "to_pynn": "export", "write_pynn": "export",
         "egru_on_spinnaker2": "egru", "map_egru": "egru", "compress_lm": "egru",
         "egru_emulated": "egru_emulator", "fixed_egru": "egru_emulator", "map_fixed": "egru_emulator",
         "emulate_egru": "egru_emulator"}
__all__ = ["Machine", "Mapping", "Slice", "bundled_machines", "load_machine", "map_graph", "parse_machine"] + sorted(_LAZY)


def __getattr__(name):
    """The energy and export functions, imported on first use (the energy package imports torch)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Mapping:
    """A graph mapped onto a machine: ``slices`` (placed), ``delays``, ``routing``, synaptic ``words``
    per projection, weight ``exponents`` per population and the weight ``quantization`` report."""

    graph: Graph
    machine: Machine
    slices: list
    delays: DelayPlan
    routing: Routing
    words: list
    exponents: dict
    quantization: list

    @property
    def cores_used(self) -> int:
        return len(self.slices)

    @property
    def chips_used(self) -> int:
        return len({s.chip for s in self.slices})

    def core_usage(self) -> list:
        """One row per used core: chip, core, slice, neurons, memory against the budget."""
        return [{"chip": list(s.chip), "core": s.core, "slice": s.label, "kind": s.kind, "neurons": s.n,
                 "memory_bytes": s.memory_bytes, "memory_budget_bytes": self.machine.core_budget_bytes,
                 "synapses_in": s.synapses, "sdram_bytes": s.sdram_bytes} for s in self.slices]

    def chip_usage(self) -> list:
        """One row per chip with cores or routing entries: cores used, SDRAM and table sizes."""
        rows = {}
        for s in self.slices:
            r = rows.setdefault(s.chip, {"cores": 0, "sdram_bytes": 0})
            r["cores"] += 1
            r["sdram_bytes"] += s.sdram_bytes
        for c in self.routing.tables:
            rows.setdefault(c, {"cores": 0, "sdram_bytes": 0})
        return [{"chip": list(c), "cores": r["cores"], "app_cores": len(self.machine.app_cores),
                 "sdram_bytes": r["sdram_bytes"], "sdram_bytes_available": self.machine.sdram_bytes_per_chip,
                 "routing_entries": len(self.routing.tables.get(c, [])),
                 "routing_entries_uncompressed": self.routing.uncompressed.get(c, 0),
                 "router_entries": self.machine.router_entries} for c, r in sorted(rows.items())]

    def usage(self) -> dict:
        """Totals plus per-core and per-chip rows."""
        return {"machine": self.machine.name, "cores_used": self.cores_used, "chips_used": self.chips_used,
                "routing_entries_max": self.routing.entries_max(),
                "delay_stages_max": self.delays.max_stage(), "cores": self.core_usage(), "chips": self.chip_usage()}

    def packet(self, slice_index: int, neuron: int, stage: int = 0) -> tuple:
        """Follow the packet of ``neuron`` (local to the slice) of slice ``slice_index`` (``stage`` >
        0: re-emitted by its delay extension) through the tables: (delivered, hops, link uses) as
        :func:`~neuro.hardware_targets.spinnaker.routing.walk`."""
        for b in self.routing.blocks:
            if b.stage == stage and (b.slice == slice_index if stage == 0 else self.slices[b.slice].of == slice_index):
                if not 0 <= neuron < b.n:
                    raise ParameterError("Mapping.packet", "neuron", neuron, f"in [0, {b.n})")
                return walk(self.routing, self.machine, b.chip, b.key | neuron)
        raise ParameterError("Mapping.packet", "slice_index", slice_index, f"a slice that sends packets at stage {stage}")

    def emulate(self, inputs=None, steps: int = None):
        """Run the mapped network tick by tick (:func:`~neuro.hardware_targets.spinnaker.emulator.emulate`;
        imports torch)."""
        from .emulator import emulate

        return emulate(self, inputs, steps)

    def quantized_graph(self) -> Graph:
        """The graph with the weights its synaptic words hold (the emulator's reference network)."""
        from .emulator import quantized_graph

        return quantized_graph(self)

    def to_dict(self) -> dict:
        """JSON-ready description: machine, offsets, slices, keys, tables, delays, usage."""
        m = self.machine
        return {
            "format": "neuro-spinnaker-mapping", "machine": m.name, "size": [m.width, m.height],
            "tick_offsets": dict(self.delays.offsets),
            "slices": [s.to_dict() for s in self.slices],
            "keys": [{"block": b.index, "key": b.key, "mask": b.mask, "n": b.n, "slice": b.slice, "stage": b.stage,
                      "chip": list(b.chip), "core": b.core, "targets": [[list(c), k] for c, k in b.targets]}
                     for b in self.routing.blocks],
            "tables": [{"chip": list(c), "entries": [[e.key, e.mask, e.route] for e in t]}
                       for c, t in sorted(self.routing.tables.items())],
            "projections": [{"name": p.name or f"{p.pre}->{p.post}", "pre": p.pre, "post": p.post,
                             "ir_delay_steps": p.delay_steps, "hw_delay_ticks": d.hw_delay,
                             "stages": int(d.stage.max()) if d.stage.size else 0,
                             "native_field": int(d.field.max()) if d.field.size else 0,
                             "synapses": p.nnz, "weight_exponent": self.exponents[p.post]}
                            for p, d in zip(self.graph.projections, self.delays.projections)],
            "quantization": self.quantization,
            "usage": self.usage(),
        }


def map_graph(graph: Graph, machine: Union[str, Machine] = "spinnaker1", compress: bool = True,
              **machine_overrides) -> Mapping:
    """Map ``graph`` onto ``machine`` (module docstring); ``machine_overrides`` change machine
    constants (``width=2, height=2``)."""
    if not isinstance(graph, Graph):
        raise ParameterError("map_graph", "graph", type(graph).__name__, "a neuro.ir.Graph")
    m = load_machine(machine, **machine_overrides)
    delays = plan_delays(graph, m)
    slices = partition(graph, m, delays)
    place(slices, m)
    routing = route_all(graph, slices, delays, m, compress=compress)
    words, exps, report = synaptic_words(graph, slices, delays, m)
    return Mapping(graph, m, slices, delays, routing, words, exps, report)
