"""SpiNNaker event-graph emulator: spikes equal neuro's own simulation; packets, hops and work counted."""
import numpy as np
import pytest
import torch

from neuro.core.errors import ShapeError, UnsupportedLayerError
from neuro.hardware_targets.spinnaker import map_graph
from neuro.hardware_targets.spinnaker.emulator import emulate, quantized_graph
from neuro.hardware_targets.spinnaker.partition import decode_words
from neuro.ir import ConstantCurrent, Graph, IFPopulation, LIFPopulation, LIPopulation, PoissonInput, Projection, SpikeSource
from neuro.ir.build import GraphNetwork

SMALL = dict(width=4, height=3, cores_per_chip=4, neurons_per_core=8)


def _rand(rng, n_post, n_pre, p, scale):
    return rng.normal(size=(n_post, n_pre)) * scale * (rng.random((n_post, n_pre)) < p)


def _net(seed=0):
    """input -> A (0), A -> B (0), A -> A (20, needs extension stages), B -> A (3); a bias and a
    Poisson drive on A."""
    rng = np.random.default_rng(seed)
    return Graph({"in": SpikeSource(40), "A": LIFPopulation(60, 0.9), "B": IFPopulation(30, v_reset=None),
                  "bias": ConstantCurrent("A", rng.normal(size=60)),
                  "noise": PoissonInput("A", 60, n_sources=20, rate_hz=50.0, weight=1.0, seed=3)},
                 [Projection.from_dense("in", "A", _rand(rng, 60, 40, 0.3, 8.0)),
                  Projection.from_dense("A", "B", _rand(rng, 30, 60, 0.3, 0.7)),
                  Projection.from_dense("A", "A", _rand(rng, 60, 60, 0.2, 6.0), delay_steps=20),
                  Projection.from_dense("B", "A", _rand(rng, 60, 30, 0.1, 5.0), delay_steps=3)])


def _reference(m, x):
    out = GraphNetwork(quantized_graph(m))({"in": torch.tensor(x)[:, None]})     # [T, 1, n]
    return {k: v[:, 0].numpy() for k, v in out.items()}


@pytest.mark.parametrize("machine, extra", [("spinnaker1", {}), ("spinnaker2", {}),
                                            ("spinnaker1", {"topology": "mesh", "router_entries": 10})])
def test_emulated_spikes_equal_neuro_simulation_of_the_quantized_network(machine, extra):
    g = _net()
    m = map_graph(g, machine, **SMALL, **extra)
    if extra:
        assert m.routing.entries_max() <= 10 < max(m.routing.uncompressed.values())   # compressed tables in use
    assert m.delays.max_stage() >= 1
    x = (np.random.default_rng(1).random((60, 40)) < 0.25).astype(float)                # [T, n_in]
    r = m.emulate({"in": x})
    ref = _reference(m, x)
    for k in ("A", "B"):
        assert r.spikes[k].shape == ref[k].shape == (60, g.nodes[k].n)
        np.testing.assert_array_equal(r.spikes[k], ref[k])
        assert 0.02 < r.spikes[k].mean() < 0.9                                        # a network that does something
    # the delayed recurrent projection matters: without it the reference differs
    g0 = Graph(g.nodes, [p for p in quantized_graph(m).projections if p.delay_steps != 20], g.dt_ms)
    ref0 = GraphNetwork(g0)({"in": torch.tensor(x)[:, None]})
    assert not np.array_equal(ref0["A"][:, 0].numpy(), ref["A"])


def test_packets_hops_and_work_counts():
    g = _net(seed=2)
    m = map_graph(g, "spinnaker1", **SMALL)
    T = 40
    x = (np.random.default_rng(3).random((T, 40)) < 0.25).astype(float)
    r = emulate(m, {"in": x})
    spikes = dict(r.spikes, **{"in": x})
    off, L = m.delays.offsets, m.machine.delay_slots
    want_packets = want_hops = 0
    for b in m.routing.blocks:
        src = m.slices[b.slice] if b.stage == 0 else m.slices[m.slices[b.slice].of]
        per_step = spikes[src.node][:, src.lo:src.hi].sum(axis=1)                     # [T]
        ticks = np.arange(T) + off[src.node] + b.stage * L
        n = int(per_step[ticks < r.ticks].sum())
        edges = sum(len(links) for links, _ in m.routing.trees[b.index].values())
        want_packets += n
        want_hops += n * edges
    assert r.packets == want_packets > 0 and r.hops == want_hops > r.packets
    assert sum(r.link_packets.values()) == r.hops
    # synaptic events: every synapse of every spike sent (stage-k synapses when their stage fires)
    want_events = 0
    for k, p in enumerate(g.projections):
        stage = int(m.delays.projections[k].stage.max())
        rows = np.diff(p.indptr)                                                       # [n_pre]
        ticks = np.arange(T) + off[p.pre] + stage * L
        want_events += int((spikes[p.pre][ticks < r.ticks] * rows).sum())
    assert sum(r.core_synaptic_events.values()) == want_events
    for s in m.slices:
        if s.kind == "neurons":
            assert r.core_neuron_updates[(s.chip, s.core)] == s.n * T
    d = r.to_dict()
    assert d["packets"] == r.packets and d["link_load_max"] == max(r.link_packets.values())
    # 25 pJ/bit x 40 bits = 1 nJ per packet per router (REFERENCE 4)
    assert r.router_energy_j == pytest.approx((r.packets + r.hops) * 1e-9, rel=1e-12)
    # real-time check: a core's cycles in its busiest tick, bounded by its totals over the run
    mach = m.machine
    assert r.budget_cycles == 200e6 * 1e-3
    for s in m.slices:
        place = (s.chip, s.core)
        total = (r.core_neuron_updates.get(place, 0) * mach.cycles_per_neuron_update
                 + r.core_synaptic_events.get(place, 0) * mach.cycles_per_synaptic_event
                 + r.core_packets.get(place, 0) * mach.cycles_per_packet)
        if s.kind == "neurons":
            assert s.n * mach.cycles_per_neuron_update <= r.core_cycles_max[place] <= total
    assert r.late == 0
    slow = emulate(map_graph(g, "spinnaker1", **SMALL, clock_hz=1000), {"in": x})
    np.testing.assert_array_equal(slow.spikes["A"], r.spikes["A"])     # late cores are reported, not dropped
    assert slow.late > 0 and slow.budget_cycles == 1.0


def test_a_broken_routing_table_changes_the_spikes():
    g = _net(seed=4)
    m = map_graph(g, "spinnaker1", **SMALL)
    x = (np.random.default_rng(5).random((30, 40)) < 0.3).astype(float)
    ref = _reference(m, x)
    # drop the entry of A's first slice at the chip of B's first slice: its packets go straight on past B
    a0 = next(s for s in m.slices if s.node == "A" and s.kind == "neurons")
    b0 = next(s for s in m.slices if s.node == "B")
    block = next(b for b in m.routing.blocks if b.slice == a0.index and b.stage == 0)
    table = m.routing.tables[b0.chip]
    assert (b0.chip, b0.core) in block.targets and b0.chip != block.chip
    m.routing.tables[b0.chip] = [e for e in table if not (block.key & e.mask == e.key)]
    delivered, _, _ = m.packet(a0.index, 0)
    assert (b0.chip, b0.core) not in delivered
    r = emulate(m, {"in": x})
    assert not np.array_equal(r.spikes["B"], ref["B"])


def test_emulator_input_errors():
    m = map_graph(_net(), "spinnaker2", **SMALL)
    with pytest.raises(ShapeError, match="'in'"):
        emulate(m, {"in": np.zeros((5, 3))})
    with pytest.raises(ShapeError, match="'in'"):
        emulate(m, None, steps=4)
    li = Graph({"in": SpikeSource(2), "L": LIPopulation(2, 0.9), "P": LIFPopulation(2, 0.9)},
               [Projection.from_dense("in", "L", np.eye(2)), Projection.from_dense("L", "P", np.eye(2), delay_steps=1)])
    with pytest.raises(UnsupportedLayerError, match="'L'|L"):
        emulate(map_graph(li, "spinnaker1", width=1, height=1), {"in": np.zeros((3, 2))})


def test_quantized_graph_holds_the_decoded_words():
    m = map_graph(_net(), "spinnaker2", **SMALL)
    q = quantized_graph(m)
    for p, pq, words in zip(m.graph.projections, q.projections, m.words):
        w = decode_words(words, m.exponents[p.post], m.machine)[0]
        np.testing.assert_array_equal(pq.weights, w)
        assert np.all(np.abs(pq.weights) * 2.0 ** m.exponents[p.post] <= 15)            # py-spinnaker2 range
        assert np.abs(pq.weights - p.weights).max() <= 2.0 ** -(m.exponents[p.post] + 1) + 1e-15


def test_a_traced_neuro_model_maps_and_emulates_exactly():
    from torch import nn

    from neuro.ir import to_ir
    from neuro.neurons import LIF
    from neuro.synapses import Linear

    torch.manual_seed(0)
    model = nn.Sequential(Linear(20, 30), LIF(tau_ms=2.0, step_mode="s"), Linear(30, 10), LIF(tau_ms=2.0, step_mode="s"))
    with torch.no_grad():
        model[0].weight.mul_(4.0)
        model[2].weight.mul_(12.0)
    g = to_ir(model)
    m = map_graph(g, "spinnaker2", width=2, height=2, cores_per_chip=4, neurons_per_core=8)
    assert m.delays.offsets == {"input": 0, "1": 1, "3": 2}           # one tick of latency per layer
    x = (np.random.default_rng(6).random((25, 20)) < 0.3).astype(float)
    r = m.emulate({"input": x})
    ref = GraphNetwork(m.quantized_graph())({"input": torch.tensor(x)[:, None]})
    for k in ("1", "3"):
        np.testing.assert_array_equal(r.spikes[k], ref[k][:, 0].numpy())
    assert r.spikes["1"].sum() > 0 and r.spikes["3"].sum() > 0
