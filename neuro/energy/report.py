"""Energy reports: counts priced on energy models, per layer, per op type and per time step.

``EnergyReport(counts, models, ann=ann_counts)`` holds the counts of a spiking run, the energy
models (:mod:`neuro.energy.targets`) and optionally the counts of the ANN original on the same
input; :meth:`EnergyReport.to_dict` is the JSON of ``neuro energy --json``: overall ``synops_ac``,
``synops_mac``, ``neuron_updates``..., per target ``energy_j`` (and ``ann_energy_j``,
``ann_snn_ratio`` = ANN energy / SNN energy when the ANN is known), per layer and per step.
"""
from __future__ import annotations

import json

import numpy as np

from .counter import Counts
from .targets import ENERGY_OPS, EnergyModel


def energy_by_layer(counts: Counts, model: EnergyModel) -> dict:
    """layer -> op -> joules (dynamic energy only)."""
    out = {}
    for name, lc in counts.layers.items():
        out[name] = {op: lc.total(model.count_key(op)) * model.op_energy(op) for op in ENERGY_OPS}
    return out


def energy_per_timestep(counts: Counts, model: EnergyModel) -> np.ndarray:
    """Joules of each step, static power included. Shape: [T]."""
    T = counts.steps
    e = np.zeros(T)
    for op in ENERGY_OPS:
        e += counts.per_timestep(model.count_key(op)) * model.op_energy(op)
    if model.static is not None and T:
        e += model.static.energy_j(counts.neurons, 1)
    return e


def total_energy(counts: Counts, model: EnergyModel) -> dict:
    """{'energy_j', 'dynamic_j', 'static_j', 'by_op': {op: J}, 'by_layer': {layer: J}}."""
    layers = energy_by_layer(counts, model)
    by_op = {op: sum(l[op] for l in layers.values()) for op in ENERGY_OPS}
    dynamic = sum(by_op.values())
    static = model.static.energy_j(counts.neurons, counts.steps) if model.static is not None else 0.0
    return {"energy_j": dynamic + static, "dynamic_j": dynamic, "static_j": static, "by_op": by_op,
            "by_layer": {n: sum(v.values()) for n, v in layers.items()}}


class EnergyReport:
    """Counts of a run priced on ``models``; ``ann``: counts of the ANN original (optional)."""

    def __init__(self, counts: Counts, models, ann: Counts | None = None, tokens: int | None = None):
        """``tokens``: for language models, the number of tokens the run processed (per-token figures)."""
        self.counts, self.models, self.ann, self.tokens = counts, list(models), ann, tokens
        self.energy = {m.name: total_energy(counts, m) for m in self.models}
        self.ann_energy = {m.name: total_energy(ann, m) for m in self.models} if ann is not None else None

    def to_dict(self) -> dict:
        c = self.counts
        out = dict(c.summary())
        targets = {}
        for m in self.models:
            e = self.energy[m.name]
            t = {"energy_j": e["energy_j"], "dynamic_j": e["dynamic_j"], "static_j": e["static_j"],
                 "counts": m.counts, "by_op": e["by_op"], "by_layer": e["by_layer"],
                 "per_timestep_j": energy_per_timestep(c, m).tolist(),
                 "sources": dict(m.sources)}
            if self.ann_energy is not None:
                a = self.ann_energy[m.name]["energy_j"]
                t["ann_energy_j"] = a
                t["ann_snn_ratio"] = a / e["energy_j"] if e["energy_j"] else None
            if self.tokens:
                t["per_token_j"] = e["energy_j"] / self.tokens
                if self.ann_energy is not None:
                    t["ann_per_token_j"] = self.ann_energy[m.name]["energy_j"] / self.tokens
            targets[m.name] = t
        out["targets"] = targets
        if self.tokens:
            out["tokens"] = self.tokens
            out["per_token"] = {k: out[k] / self.tokens for k in ("synops_ac", "synops_mac", "neuron_updates", "spikes")
                                if k in out}
        if self.ann_energy is not None:
            out["ann_energy_j"] = {n: v["energy_j"] for n, v in self.ann_energy.items()}
            out["ann"] = self.ann.summary()
        out["layers"] = [{"name": lc.name, "type": lc.module_type, "kind": lc.kind, "neurons": lc.neurons,
                          **{op: lc.total(op) for op in ("ac", "mac", "ac_dense", "mac_dense", "neuron_update_active",
                                                         "neuron_update_inactive", "spike", "nonlinear",
                                                         "mem_read_byte", "mem_write_byte")}}
                         for lc in c.layers.values()]
        out["per_timestep"] = {op: c.per_timestep(op).tolist() for op in ("ac", "mac", "spike", "neuron_update_active")}
        return out

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def table(self, max_steps: int = 10) -> str:
        """A text report: per-layer table, per-step table (first ``max_steps``), totals, energy per target."""
        c = self.counts
        s = c.summary()
        lines = [f"{'layer':<14}{'type':<14}{'AC':>14}{'MAC':>14}{'dense':>16}{'updates':>12}{'spikes':>11}{'rate':>8}"]
        for lc in c.layers.values():
            upd = lc.total("neuron_update_active") + lc.total("neuron_update_inactive")
            rate = f"{lc.total('spike') / upd:.3f}" if upd else ""
            lines.append(f"{lc.name:<14}{lc.module_type:<14}{lc.total('ac'):>14,}{lc.total('mac'):>14,}"
                         f"{lc.total('ac_dense') + lc.total('mac_dense'):>16,}{upd:>12,}{lc.total('spike'):>11,}{rate:>8}")
        lines.append("")
        lines.append(f"{'step':<6}{'AC':>14}{'MAC':>14}{'spikes':>11}")
        ac, mac, sp = c.per_timestep("ac"), c.per_timestep("mac"), c.per_timestep("spike")
        for t in range(min(max_steps, c.steps)):
            lines.append(f"{t:<6}{ac[t]:>14,}{mac[t]:>14,}{sp[t]:>11,}")
        if c.steps > max_steps:
            lines.append(f"... ({c.steps} steps)")
        lines.append("")
        lines.append(f"totals: {s['synops_ac']:,} AC, {s['synops_mac']:,} MAC (dense {s['synops_dense_ac'] + s['synops_dense_mac']:,}), "
                     f"{s['neuron_updates']:,} neuron updates ({s['neuron_updates_active']:,} active), "
                     f"{s['spikes']:,} spikes (rate {s['spike_rate']:.4f}), "
                     f"{s['mem_read_bytes']:,} B read, {s['mem_write_bytes']:,} B written")
        for m in self.models:
            e = self.energy[m.name]
            line = f"{m.name:<12} {e['energy_j']:.4e} J ({m.counts} counts"
            line += f", static {e['static_j']:.3e} J)" if m.static is not None else ")"
            if self.ann_energy is not None:
                a = self.ann_energy[m.name]["energy_j"]
                ratio = a / e["energy_j"] if e["energy_j"] else float("nan")
                line += f"   ANN {a:.4e} J, ANN/SNN {ratio:.3g}"
            if self.tokens:
                line += f"   per token {e['energy_j'] / self.tokens:.3e} J"
                if self.ann_energy is not None:
                    line += f" (ANN {self.ann_energy[m.name]['energy_j'] / self.tokens:.3e} J)"
            lines.append(line)
        return "\n".join(lines)
