r"""Plots of a SpiNNaker mapping: placement of slices on chips and cores, routing table sizes before and
after compression, and per-core load against the real-time budget.

Each plot has a data function that a test can check (:func:`placement_grid`, :func:`table_sizes`,
:func:`core_loads`) and a drawing function that returns a :class:`~matplotlib.figure.Figure` built on
the Agg canvas (as :mod:`neuro.viz`; ``ax`` draws into an existing axes). All of them take a graph
mapping (:func:`~neuro.hardware_targets.spinnaker.map_graph`) or an EGRU mapping
(:func:`~neuro.hardware_targets.spinnaker.egru_emulator.map_fixed`): anything with ``machine``,
placed ``slices`` and ``routing``.

Placement grid: chip ``(x, y)`` is a block of :math:`k \times k` cells, :math:`k = \lceil \sqrt{\text{cores
per chip}} \rceil`, core ``c`` at row ``c // k``, column ``c % k`` of its block; block rows run
upwards with ``y`` (row 0 of the image is the top).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from matplotlib.axes import Axes

from ...core.errors import ParameterError
from ...viz.plots import _new_axes


def _check_mapping(owner: str, mapping) -> None:
    if not all(hasattr(mapping, a) for a in ("machine", "slices", "routing")):
        raise ParameterError(owner, "mapping", type(mapping).__name__, "a SpiNNaker mapping (map_graph or map_fixed)")


def placement_grid(mapping) -> tuple:
    """(grid int [k H, k W] of node numbers, -1 for a free core; node names in order of first use).
    See the module docstring for the layout."""
    _check_mapping("placement_grid", mapping)
    m = mapping.machine
    k = math.ceil(math.sqrt(m.cores_per_chip))
    grid = np.full((k * m.height, k * m.width), -1, dtype=np.int64)
    names = []
    for s in mapping.slices:
        label = s.node if s.kind != "delay" else s.node + " (delay)"
        if label not in names:
            names.append(label)
        (x, y), c = s.chip, s.core
        grid[k * (m.height - 1 - y) + c // k, k * x + c % k] = names.index(label)
    return grid, names


def plot_placement(mapping, ax: Optional[Axes] = None, title: str = "Placement"):
    """The placement grid: one colour per population, chip borders drawn."""
    grid, names = placement_grid(mapping)
    m = mapping.machine
    k = math.ceil(math.sqrt(m.cores_per_chip))
    fig, ax = _new_axes(ax, figsize=(1.2 + 1.6 * m.width, 0.8 + 1.6 * m.height))
    import matplotlib

    cmap = matplotlib.colormaps["tab20"].resampled(max(len(names), 1))
    shown = np.ma.masked_less(grid, 0)
    ax.imshow(shown, cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, interpolation="nearest")
    for x in range(m.width + 1):
        ax.axvline(k * x - 0.5, color="k", lw=1)
    for y in range(m.height + 1):
        ax.axhline(k * y - 0.5, color="k", lw=1)
    ax.set_xticks([k * x + (k - 1) / 2 for x in range(m.width)], [str(x) for x in range(m.width)])
    ax.set_yticks([k * (m.height - 1 - y) + (k - 1) / 2 for y in range(m.height)], [str(y) for y in range(m.height)])
    ax.set_xlabel("chip x")
    ax.set_ylabel("chip y")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=cmap(i), label=n) for i, n in enumerate(names)], loc="upper left",
              bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.set_title(f"{title}: {len(mapping.slices)} cores on {m.name}")
    return fig


def table_sizes(mapping) -> list:
    """Per chip with a table: {chip, uncompressed, compressed, limit}, chips in order."""
    _check_mapping("table_sizes", mapping)
    R = mapping.routing
    return [{"chip": tuple(c), "uncompressed": R.uncompressed.get(c, len(t)), "compressed": len(t),
             "limit": mapping.machine.router_entries} for c, t in sorted(R.tables.items())]


def plot_table_sizes(mapping, ax: Optional[Axes] = None, title: str = "Routing tables"):
    """Bars of each chip's table before and after compression, the router's size as a line."""
    rows = table_sizes(mapping)
    fig, ax = _new_axes(ax)
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["uncompressed"] for r in rows], 0.4, label="before compression")
    ax.bar(x + 0.2, [r["compressed"] for r in rows], 0.4, label="after compression")
    limit = mapping.machine.router_entries
    ax.axhline(limit, color="r", ls="--", label=f"router size {limit}")
    ax.set_xticks(x, [f"{r['chip'][0]},{r['chip'][1]}" for r in rows])
    ax.set_xlabel("chip")
    ax.set_ylabel("entries")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


def core_loads(mapping, report) -> dict:
    """Per used core its largest cycles in a tick (token) and the budget: {labels, cycles, budget}.
    ``report``: the graph emulator's :class:`~neuro.hardware_targets.spinnaker.emulator.EmulatorReport`
    or the EGRU emulator's :class:`~neuro.hardware_targets.spinnaker.egru_emulator.EGRUEmulation`."""
    _check_mapping("core_loads", mapping)
    if hasattr(report, "per_pe"):                                   # EGRU: cycles per PE and token
        cyc = {i: int(p["cycles"].max()) for i, p in report.per_pe.items()}
    elif hasattr(report, "core_cycles_max"):
        at = {(s.chip, s.core): s.index for s in mapping.slices}
        cyc = {at[place]: int(c) for place, c in (report.core_cycles_max or {}).items()}
    else:
        raise ParameterError("core_loads", "report", type(report).__name__, "an EmulatorReport or an EGRUEmulation")
    used = [s for s in mapping.slices if s.index in cyc]
    return {"labels": [f"{s.label} ({s.chip[0]},{s.chip[1]}:{s.core})" for s in used],
            "cycles": [cyc[s.index] for s in used], "budget": float(report.budget_cycles)}


def plot_core_load(mapping, report, ax: Optional[Axes] = None, title: str = "Per-core load"):
    """Horizontal bars of each core's largest cycles per tick, the real-time budget as a line."""
    d = core_loads(mapping, report)
    fig, ax = _new_axes(ax, figsize=(6.4, 1.0 + 0.3 * len(d["labels"])))
    y = np.arange(len(d["labels"]))
    over = [c > d["budget"] for c in d["cycles"]]
    ax.barh(y, d["cycles"], color=["tab:red" if o else "tab:blue" for o in over])
    ax.axvline(d["budget"], color="k", ls="--", label=f"budget {d['budget']:.0f} cycles")
    ax.set_yticks(y, d["labels"], fontsize="small")
    ax.invert_yaxis()
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    ax.set_xlabel("cycles (largest tick)")
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig
