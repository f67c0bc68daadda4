"""Energy plots (matplotlib, Agg canvas): stacked bars by op type and by layer, ANN vs SNN, energy vs steps."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .report import EnergyReport, energy_per_timestep

_OPS = ("ac", "mac", "neuron_update_active", "neuron_update_inactive", "spike", "nonlinear",
        "mem_read_byte", "mem_write_byte", "packet", "hop")


def by_op(report: EnergyReport, ax) -> None:
    """Stacked bars: one bar per target, stacked by op type (static power on top)."""
    names = [m.name for m in report.models]
    bottom = np.zeros(len(names))
    for op in _OPS + ("static",):
        vals = np.array([report.energy[n]["static_j"] if op == "static" else report.energy[n]["by_op"][op]
                         for n in names])
        if vals.any():
            ax.bar(names, vals, bottom=bottom, label=op)
            bottom += vals
    ax.set_ylabel("energy (J)")
    ax.set_title("energy by op type")
    ax.legend(fontsize=6)


def by_layer(report: EnergyReport, ax, max_layers: int = 10) -> None:
    """Stacked bars: one bar per target, stacked by layer (dynamic energy). Beyond ``max_layers``
    layers, the largest ones (summed over targets, relative to each target's total) are drawn and
    the rest stacked as one "other" segment, so that the legend stays readable."""
    names = [m.name for m in report.models]
    bottom = np.zeros(len(names))
    per_layer = {layer: np.array([report.energy[n]["by_layer"][layer] for n in names])
                 for layer in report.counts.layers}
    totals = np.maximum(sum(per_layer.values()), 1e-300) if per_layer else np.ones(len(names))
    ranked = sorted(per_layer, key=lambda k: -float((per_layer[k] / totals).sum()))
    shown = ranked if len(ranked) <= max_layers else ranked[:max_layers - 1]
    segments = [(layer, per_layer[layer]) for layer in report.counts.layers if layer in shown]
    rest = [layer for layer in ranked if layer not in shown]
    if rest:
        segments.append((f"other ({len(rest)} layers)", sum(per_layer[k] for k in rest)))
    for label, vals in segments:
        if vals.any():
            ax.bar(names, vals, bottom=bottom, label=label)
            bottom += vals
    ax.set_ylabel("dynamic energy (J)")
    ax.set_title("energy by layer")
    ax.legend(fontsize=6)


def ann_vs_snn(report: EnergyReport, ax) -> None:
    """Grouped bars of SNN and ANN energy per target (log scale)."""
    names = [m.name for m in report.models]
    x = np.arange(len(names))
    ax.bar(x - 0.2, [report.energy[n]["energy_j"] for n in names], 0.4, label="SNN")
    if report.ann_energy is not None:
        ax.bar(x + 0.2, [report.ann_energy[n]["energy_j"] for n in names], 0.4, label="ANN")
    ax.set_xticks(x, names)
    ax.set_yscale("log")
    ax.set_ylabel("energy (J)")
    ax.set_title("ANN vs SNN" if report.ann_energy is not None else "SNN (no ANN original)")
    ax.legend(fontsize=6)


def vs_timesteps(report: EnergyReport, ax) -> None:
    """Cumulative energy against the number of steps run, one line per target."""
    for m in report.models:
        e = np.cumsum(energy_per_timestep(report.counts, m))
        ax.plot(np.arange(1, len(e) + 1), e, label=m.name)
    ax.set_xlabel("time steps")
    ax.set_ylabel("cumulative energy (J)")
    ax.set_yscale("log")
    ax.set_title("energy vs time steps")
    ax.legend(fontsize=6)


def energy_figure(report: EnergyReport) -> Figure:
    """The four panels in one figure."""
    fig = Figure(figsize=(12, 8))
    axes = fig.subplots(2, 2)
    by_op(report, axes[0, 0])
    by_layer(report, axes[0, 1])
    ann_vs_snn(report, axes[1, 0])
    vs_timesteps(report, axes[1, 1])
    fig.tight_layout()
    return fig
