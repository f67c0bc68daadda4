"""Energy of an emulated SpiNNaker run: per-core, per-tick counts priced by neuro.energy models."""
import numpy as np
import pytest

from neuro.core.errors import ParameterError, ShapeError
from neuro.energy import EnergyReport, get_models
from neuro.hardware_targets.spinnaker import map_graph
from neuro.hardware_targets.spinnaker.energy import emulation_counts, router_priced
from neuro.ir import ConstantCurrent, Graph, IFPopulation, LIFPopulation, Projection, SpikeSource

TINY = dict(width=2, height=1, cores_per_chip=2, monitor_cores_per_chip=0, neurons_per_core=1)


def _tiny():
    """in (2) -> A (2) one to one, weight 2 >= threshold 1, reset to 0: every input spike makes one spike."""
    g = Graph({"in": SpikeSource(2), "A": IFPopulation(2, v_reset=0.0)}, [Projection.from_dense("in", "A", 2.0 * np.eye(2))])
    x = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=float)                      # [T, n]
    return g, x


def test_tiny_network_hand_computed_packets_hops_and_energy():
    g, x = _tiny()
    m = map_graph(g, "spinnaker1", **TINY)
    # sources on chip (0,0), A on chip (1,0): every input packet makes exactly one hop
    assert [(s.node, s.chip) for s in m.slices] == [("in", (0, 0)), ("in", (0, 0)), ("A", (1, 0)), ("A", (1, 0))]
    r = m.emulate({"in": x})
    np.testing.assert_array_equal(r.spikes["A"], x)                                 # A at tick t + 1
    c = emulation_counts(m, r, {"in": x})
    assert c.steps == r.ticks == 5
    names = list(c.layers)
    assert names == ["in[0:1] @ chip 0,0 core 0", "in[1:2] @ chip 0,0 core 1",
                     "A[0:1] @ chip 1,0 core 0", "A[1:2] @ chip 1,0 core 1"]
    i0, i1, a0, a1 = (c.layers[n] for n in names)
    assert i0.ops["packet"].tolist() == [1, 0, 1, 0, 0] and i0.ops["hop"].tolist() == [1, 0, 1, 0, 0]
    assert i1.ops["packet"].tolist() == [0, 1, 1, 0, 0] and i1.ops["hop"].tolist() == [0, 1, 1, 0, 0]
    assert a0.ops["ac"].tolist() == [1, 0, 1, 0, 0] and a1.ops["ac"].tolist() == [0, 1, 1, 0, 0]
    assert a0.ops["spike"].tolist() == [0, 1, 0, 1, 0] and a1.ops["spike"].tolist() == [0, 0, 1, 1, 0]
    assert a0.ops["neuron_update_inactive"].tolist() == [0, 0, 1, 0, 1]
    assert a0.neurons == a1.neurons == 1 and i0.neurons == 0
    assert c.total("packet") == r.packets == 4 and c.total("hop") == r.hops == 4
    s1, s2 = get_models("spinnaker1,spinnaker2")
    rep = EnergyReport(c, [s1, s2, router_priced(s1, m.machine)])
    d = rep.to_dict()
    assert d["packets"] == 4 and d["hops"] == 4 and d["spikes"] == 4
    # spinnaker1: 4 spikes x 1 nJ + 5 ticks x 1 ms x (0.35 W chip + 0.034 W core) (2 neurons: 1 core, 1 chip)
    assert rep.energy["spinnaker1"]["energy_j"] == pytest.approx(4e-9 + 5e-3 * 0.384, rel=1e-12)
    assert rep.energy["spinnaker2"]["energy_j"] == pytest.approx(5e-3 * 0.39, rel=1e-12)
    # routers: (4 packets + 4 hops) x 40 bits x 25 pJ/bit = 8 nJ, the emulator's own router energy
    e = rep.energy["spinnaker1+router"]
    assert e["by_op"]["packet"] == pytest.approx(4e-9) and e["by_op"]["hop"] == pytest.approx(4e-9)
    assert e["dynamic_j"] == pytest.approx(r.router_energy_j, rel=1e-12) == 8e-9
    assert e["by_op"]["spike"] == 0.0


def test_counts_equal_the_emulator_totals_with_delay_extensions():
    rng = np.random.default_rng(0)
    w = lambda a, b, p, s: rng.normal(size=(a, b)) * s * (rng.random((a, b)) < p)
    g = Graph({"in": SpikeSource(20), "A": LIFPopulation(24, 0.9), "B": IFPopulation(12, v_reset=None),
               "bias": ConstantCurrent("A", rng.normal(size=24) * 0.2)},
              [Projection.from_dense("in", "A", w(24, 20, 0.3, 6.0)), Projection.from_dense("A", "B", w(12, 24, 0.4, 1.0)),
               Projection.from_dense("A", "A", w(24, 24, 0.2, 4.0), delay_steps=20)])
    m = map_graph(g, "spinnaker1", width=3, height=2, cores_per_chip=3, neurons_per_core=8)
    assert m.delays.max_stage() >= 1 and m.chips_used > 1
    x = (np.random.default_rng(1).random((40, 20)) < 0.25).astype(float)
    r = m.emulate({"in": x})
    c = emulation_counts(m, r, {"in": x})
    assert c.total("packet") == r.packets > 0 and c.total("hop") == r.hops > 0
    for s in m.slices:
        lc = c.layers[f"{s.label} @ chip {s.chip[0]},{s.chip[1]} core {s.core}"]
        assert lc.total("ac") == r.core_synaptic_events.get((s.chip, s.core), 0)
        if s.kind == "neurons":
            upd = lc.total("neuron_update_active") + lc.total("neuron_update_inactive")
            assert upd == r.core_neuron_updates[(s.chip, s.core)] == s.n * 40
            assert lc.total("spike") == int(r.spikes[s.node][:, s.lo:s.hi].sum())
    assert any(s.kind == "delay" and c.layers[f"{s.label} @ chip {s.chip[0]},{s.chip[1]} core {s.core}"].total("packet")
               for s in m.slices)                                                  # extension stages send packets
    e = EnergyReport(c, [router_priced(get_models("spinnaker1")[0], m.machine)]).energy["spinnaker1+router"]
    assert e["dynamic_j"] == pytest.approx(r.router_energy_j, rel=1e-12)


def test_energy_errors():
    g, x = _tiny()
    m = map_graph(g, "spinnaker1", **TINY)
    r = m.emulate({"in": x})
    with pytest.raises(ParameterError, match="'in'"):
        emulation_counts(m, r, None)
    with pytest.raises(ShapeError, match="'in'"):
        emulation_counts(m, r, {"in": x[:, :1]})
    with pytest.raises(ParameterError, match="model"):
        router_priced("spinnaker1", m.machine)
