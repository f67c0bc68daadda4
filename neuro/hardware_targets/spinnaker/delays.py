r"""Synaptic delays on SpiNNaker: tick offsets per population, native delay slots, delay-extension stages.

**Tick offsets.** On SpiNNaker a spike reaches its targets ``delay_min`` (1) tick later at the
earliest, while the IR allows ``delay_steps = 0`` (same step, feed-forward layers). The mapping gives
every spiking node ``P`` a tick offset :math:`s_P \ge 0`: the hardware emits at tick
:math:`t + s_P` the spikes the IR emits at step :math:`t`. A projection ``Q -> P`` with IR delay
:math:`d` then needs the hardware delay

.. math:: D = d + s_P - s_Q \ge \text{delay\_min},

the smallest offsets being the longest paths of the constraint graph :math:`s_P \ge s_Q +
\text{delay\_min} - d` from 0 (Bellman-Ford). A cycle whose IR delays sum to less than
``delay_min`` times its length has no solution (e.g. ``A -> B`` at 0 and ``B -> A`` at 1):
:class:`~neuro.core.errors.HardwareLimitError` naming the projections. A feed-forward chain of
zero-delay layers gets offsets 0, 1, 2, ...: the usual one-tick-per-layer latency of SpiNNaker.

**Slots and stages.** With native delays :math:`[D_{min}, D_{max}]`, :math:`L` = ``delay_slots``, a
hardware delay :math:`D` is split into

.. math:: k = \max(0, \lceil (D - D_{max}) / L \rceil), \qquad D = k L + r, \quad r \in [D_{max} - L + 1, D_{max}]

``k`` stages of a delay-extension core (which re-emits the source's spikes after :math:`k L` ticks,
sPyNNaker's delay extension) and a native part ``r`` stored in the synaptic word's delay field as
``r - delay_min``. ``k > max_delay_stages`` raises HardwareLimitError naming the projection.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...core.errors import HardwareLimitError
from ...ir.graph import Graph, Projection
from .machine import Machine


def _label(p: Projection, k: int) -> str:
    return p.name or f"projections[{k}] {p.pre}->{p.post}"


def tick_offsets(graph: Graph, machine: Machine) -> dict:
    """node name -> tick offset :math:`s` (module docstring); HardwareLimitError when none exists."""
    names = graph.topological_order()
    s = {k: 0 for k in names}
    edges = [(p.pre, p.post, machine.delay_min - p.delay_steps, k) for k, p in enumerate(graph.projections)]
    for _ in range(len(names)):
        changed = False
        for a, b, w, _k in edges:
            if s[a] + w > s[b]:
                s[b] = s[a] + w
                changed = True
        if not changed:
            return s
    bad = [{"projection": _label(graph.projections[k], k), "ir_delay_steps": graph.projections[k].delay_steps,
            "needs_ticks": s[a] + w - s[b], "delay_min": machine.delay_min}
           for a, b, w, k in edges if s[a] + w > s[b]]
    raise HardwareLimitError(f"{machine.name} (a loop of projections is shorter than the "
                             f"{machine.delay_min}-tick minimum delay per hop)", bad)


def split_delay(D: np.ndarray, machine: Machine) -> tuple:
    """(stages k, native r) of hardware delays ``D`` (int array, all >= delay_min); see the module docstring."""
    D = np.asarray(D, dtype=np.int64)
    L = machine.delay_slots
    k = np.maximum(0, -((machine.delay_max - D) // L))   # ceil((D - D_max) / L), floored at 0
    return k, D - k * L


@dataclass(frozen=True)
class ProjectionDelays:
    """Delays of one projection's synapses (CSR order). Shape: stage, native, field [nnz];
    ``hw_delay`` = the projection's hardware delay :math:`D`."""

    projection: int
    hw_delay: int
    stage: np.ndarray
    native: np.ndarray
    field: np.ndarray


@dataclass(frozen=True)
class DelayPlan:
    """Tick offsets per node and the split delay of every projection (index = graph.projections index)."""

    offsets: dict
    projections: list
    slots: int

    def total_ticks(self, k: int) -> np.ndarray:
        """Hardware delay of every synapse of projection ``k`` rebuilt from its stage and native field:
        ``stage * slots + field + delay_min`` (Shape: [nnz])."""
        d = self.projections[k]
        return d.stage * self.slots + d.native

    def max_stage(self) -> int:
        return max((int(d.stage.max()) for d in self.projections if d.stage.size), default=0)


def plan_delays(graph: Graph, machine: Machine) -> DelayPlan:
    """Tick offsets, and stages plus native delay fields of every synapse; HardwareLimitError on a
    delay beyond ``max_delay_stages`` extension stages."""
    offsets = tick_offsets(graph, machine)
    out, bad = [], []
    for k, p in enumerate(graph.projections):
        D = p.delay_steps + offsets[p.post] - offsets[p.pre]
        stage, native = split_delay(np.full(p.nnz, D), machine)
        if p.nnz and int(stage.max()) > machine.max_delay_stages:
            bad.append({"projection": _label(p, k), "ir_delay_steps": p.delay_steps, "hw_delay_ticks": D,
                        "stages_needed": int(stage.max()), "max_delay_stages": machine.max_delay_stages,
                        "max_ticks": machine.max_delay_stages * machine.delay_slots + machine.delay_max})
        out.append(ProjectionDelays(k, D, stage, native, native - machine.delay_min))
    if bad:
        raise HardwareLimitError(f"{machine.name} (delays)", bad)
    return DelayPlan(offsets, out, machine.delay_slots)
