"""Plots of a SpiNNaker mapping: the placement grid, routing table sizes and per-core load, checked on their data."""
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from neuro.core.errors import ParameterError
from neuro.hardware_targets.spinnaker import map_graph
from neuro.hardware_targets.spinnaker.egru_emulator import emulate_egru, fixed_egru, map_fixed
from neuro.hardware_targets.spinnaker.plots import (core_loads, placement_grid, plot_core_load, plot_placement,
                                                    plot_table_sizes, table_sizes)
from neuro.ir import Graph, LIFPopulation, Projection, SpikeSource
from neuro.models.egru_lm import EGRULM

SMALL = dict(width=3, height=2, cores_per_chip=4, neurons_per_core=8)   # 3 application cores per chip


def _graph():
    rng = np.random.default_rng(0)
    w = lambda a, b, p: rng.normal(size=(a, b)) * 2.0 * (rng.random((a, b)) < p)
    return Graph({"in": SpikeSource(10), "A": LIFPopulation(20, 0.9), "B": LIFPopulation(12, 0.8)},
                 [Projection.from_dense("in", "A", w(20, 10, 0.5)), Projection.from_dense("A", "B", w(12, 20, 0.5)),
                  Projection.from_dense("A", "A", w(20, 20, 0.2), delay_steps=2)])


@pytest.fixture(scope="module")
def mapped():
    m = map_graph(_graph(), "spinnaker1", **SMALL)
    x = (np.random.default_rng(1).random((30, 10)) < 0.3).astype(float)
    return m, m.emulate({"in": x})


def test_placement_grid_puts_every_slice_at_its_chip_and_core(mapped):
    m, _ = mapped
    grid, names = placement_grid(m)
    assert grid.shape == (2 * 2, 2 * 3) and names == ["in", "A", "B"]     # k = ceil(sqrt(4)) = 2
    # in[0:8], in[8:10] on chip (0,0) cores 1, 2; A's 3 slices on (1,0) 1..3 ... (monitor core 0 stays free)
    for s in m.slices:
        (x, y), c = s.chip, s.core
        assert grid[2 * (1 - y) + c // 2, 2 * x + c % 2] == names.index(s.node)
    assert (grid >= 0).sum() == len(m.slices) and grid[2, 0] == -1          # chip (0, 0), monitor core 0


def test_table_sizes_and_core_loads_match_the_mapping_and_the_run(mapped):
    m, rep = mapped
    rows = table_sizes(m)
    assert [r["chip"] for r in rows] == sorted(m.routing.tables)
    assert all(r["compressed"] == len(m.routing.tables[r["chip"]]) and r["limit"] == 1024 for r in rows)
    d = core_loads(m, rep)
    assert d["budget"] == rep.budget_cycles and len(d["labels"]) == len(rep.core_cycles_max)
    assert sorted(d["cycles"]) == sorted(rep.core_cycles_max.values()) and max(d["cycles"]) > 0
    for fig in (plot_placement(m), plot_table_sizes(m), plot_core_load(m, rep)):
        assert isinstance(fig, Figure)
    ax = plot_table_sizes(m).axes[0]
    assert len(ax.patches) == 2 * len(rows)
    ax = plot_core_load(m, rep).axes[0]
    assert [p.get_width() for p in ax.patches] == d["cycles"]
    with pytest.raises(ParameterError, match="mapping"):
        placement_grid(_graph())
    with pytest.raises(ParameterError, match="report"):
        core_loads(m, {"cycles": 1})


def test_compressed_tables_show_before_and_after():
    m = map_graph(_graph(), "spinnaker1", router_entries=3, **SMALL)
    rows = table_sizes(m)
    assert any(r["uncompressed"] > 3 for r in rows) and all(r["compressed"] <= 3 for r in rows)


def test_plots_of_the_egru_mapping():
    torch.manual_seed(0)
    model = EGRULM([chr(97 + i) for i in range(6)], embed=4, hidden_sizes=(12,))
    mapping = map_fixed(fixed_egru(model, 0.5), "spinnaker2", width=2, height=1, cores_per_chip=2, neurons_per_core=4)
    emu = emulate_egru(mapping, [0, 1, 2, 3, 4, 5])
    grid, names = placement_grid(mapping)
    assert names == ["layer0", "host"] and (grid >= 0).sum() == 4                  # 3 PEs + the I/O core
    d = core_loads(mapping, emu)
    assert d["cycles"] == [int(emu.per_pe[i]["cycles"].max()) for i in range(3)]
    assert isinstance(plot_core_load(mapping, emu), Figure) and isinstance(plot_placement(mapping), Figure)
