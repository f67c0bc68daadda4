"""neuro against Brian2 (real Brian2 runs, numpy target: no compiler, no cache)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from neuro.core import EventTensor, ParameterError, ShapeError
from neuro.hardware_targets.brian2 import compare_with_brian2, run_brian2
from neuro.ir import ConstantCurrent, Graph, IFPopulation, Projection, SpikeSource, to_ir
from neuro.ir.trace import lif_population
from neuro.models import ENGINES, ConstantDrive, PoissonDrive, RecurrentNetwork, w2_network
from neuro.neurons import IF, LIF, LIFParams
from neuro.synapses import Linear, SparseLinear


def assert_same_spikes(a: EventTensor, b: EventTensor):
    assert a.steps == b.steps
    assert a.offsets.tolist() == b.offsets.tolist(), "spike counts per step differ"
    assert a.indices.tolist() == b.indices.tolist()


def recurrent_net(kind: str) -> RecurrentNetwork:
    """200 LIF neurons, 10 % random connectivity, mixed-sign weights of many values, float64."""
    rng = np.random.default_rng(11)
    n = 200
    weight = lambda pre: np.where(pre < 160, 0.05, -0.22) * rng.uniform(0.5, 1.5, pre.size)
    syn = SparseLinear.random(n, n, 0.1, weight=weight, seed=4, autapses=False).to(torch.float64)
    if kind == "poisson":  # W2's neuron: input as a jump after an exact leak
        params = LIFParams(tau_ms=20.0, dt_ms=1.0, integration="exact", decay_input=False, v_th=1.0, v_reset=0.0)
        drive = PoissonDrive(100, 12.0, 0.05, seed=7)
    else:  # input as a current held over the step, soft reset, Brian2's strict threshold
        params = LIFParams(tau_ms=10.0, dt_ms=1.0, integration="exact", decay_input=True, v_th=1.0,
                           v_reset=None, strict_threshold=True)
        drive = ConstantDrive(rng.uniform(0.9, 1.6, n))
    return RecurrentNetwork(syn, params, drive, v0=rng.random(n))


@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("kind", ["poisson", "constant"])
def test_recurrent_network_identical_to_brian2(kind, engine):
    net = recurrent_net(kind)
    steps = 1000
    res = net.run(steps, engine=engine, record_v=True)
    b = run_brian2(to_ir(net), steps, record_v=True)
    spikes = b.spikes["neurons"]
    rate = spikes.nnz / net.n / (steps * 1e-3)
    assert 5.0 < rate < 100.0, rate  # the network is active, not saturated
    assert len(set(spikes.indices.tolist())) > 150  # most neurons take part
    assert_same_spikes(res.spikes, spikes)
    v_neuro, v_b2 = res.v_trace.numpy(), b.v["neurons"]
    if kind == "poisson":  # decay*v + (drive + synaptic sum): the same operations in the same order
        np.testing.assert_array_equal(v_neuro, v_b2)
    else:  # the exact solution Brian2 writes for a held current rounds differently
        np.testing.assert_allclose(v_neuro, v_b2, rtol=0, atol=1e-12)


def test_compare_with_brian2_reports_identity():
    net = w2_network(n=300, p=0.05, seed=2)
    r = compare_with_brian2(net, 200, engine="torch")
    assert r["identical"] and r["n_mismatch"] == 0 and r["first_mismatch_step"] is None
    assert r["neuro_spikes"] == r["brian2_spikes"] > 300
    assert r["neuro_mean_rate_hz"] == r["brian2_mean_rate_hz"]
    assert r["brian2_wall_s"] > 0 and r["brian2_target"] == "numpy"


# ----------------------------------------------------------------------------- W3: one LIF, constant current
W3_CURRENTS = [1.5, 1.1, 1.01, 3.0]


def test_w3_single_lif_matches_brian2_and_analytic_first_spike():
    tau, dt, steps = 20.0, 0.1, 10_000  # 1 s
    lif = LIF(tau_ms=tau, dt_ms=dt, integration="exact", v_th=1.0, v_reset=0.0, strict_threshold=True,
              step_mode="m")
    currents = np.array(W3_CURRENTS)
    x = torch.tensor(currents, dtype=torch.float64).expand(steps, 1, len(currents))
    with torch.no_grad():
        s_neuro = lif(x)[:, 0]  # [T, 4]
    graph = Graph({"lif": lif_population(lif.params, len(currents)), "I": ConstantCurrent("lif", currents)},
                  dt_ms=dt)
    b = run_brian2(graph, steps)
    s_b2 = b.spikes["lif"].to_dense()
    assert torch.equal(s_neuro, s_b2)
    for k, current in enumerate(W3_CURRENTS):
        steps_k = torch.nonzero(s_b2[:, k]).squeeze(1).numpy()
        assert len(steps_k) >= 10
        # a spike is stamped with the step k whose update crossed the threshold (Brian2: t = k dt);
        # that update integrates over (k dt, (k + 1) dt], where the analytic crossing lies
        analytic = tau * math.log(current / (current - 1.0))
        k0 = int(steps_k[0])
        assert abs(k0 * dt - analytic) < dt and k0 * dt < analytic <= (k0 + 1) * dt + 1e-9, (current, k0, analytic)
        # after each reset the trajectory from 0 repeats: every interval is k0 + 1 steps
        assert set(np.diff(steps_k).tolist()) == {k0 + 1}


# ----------------------------------------------------------------------------- feed-forward chains
def dyadic(rng, *shape, lo, hi):
    """Weights k/64: every partial sum is exact, so BLAS and Brian2 sum them to the same value."""
    return torch.tensor(rng.integers(lo, hi, size=shape) / 64.0, dtype=torch.float64)


@pytest.mark.parametrize("neuron", ["lif", "if"])
@pytest.mark.parametrize("v_reset", [0.0, None], ids=["hard", "soft"])
def test_feed_forward_chain_matches_brian2(neuron, v_reset):
    rng = np.random.default_rng(3)
    steps = 300

    def layer():
        if neuron == "lif":
            return LIF(tau_ms=4.0, v_reset=v_reset, step_mode="m")
        return IF(v_th=1.5, v_reset=v_reset, step_mode="m")

    gain = 4.0 if neuron == "lif" else 1.0  # the LIF (decay 0.75) takes 1 - 0.75 of its input
    model = nn.Sequential(
        Linear.from_weights(gain * dyadic(rng, 40, 30, lo=-20, hi=30), gain * dyadic(rng, 40, lo=-4, hi=6)),
        layer(), Linear.from_weights(gain * dyadic(rng, 20, 40, lo=-24, hi=30)), layer())
    x = torch.tensor(rng.random((steps, 1, 30)) < 0.15, dtype=torch.float64)
    with torch.no_grad():
        h1 = model[1](model[0](x))
        h2 = model[3](model[2](h1))
    graph = to_ir(model)
    b = run_brian2(graph, steps, input_spikes=x[:, 0], record_v=True)
    for name, s in (("1", h1[:, 0]), ("3", h2[:, 0])):
        got = b.spikes[name].to_dense()
        assert 0.02 < float(s.mean()) < 0.6, (name, float(s.mean()))
        assert torch.equal(got, s), name
    np.testing.assert_allclose(b.v["3"][-1], model[3].v[0].numpy(), rtol=0, atol=1e-12)


def test_delays_follow_the_ir_convention():
    # one input spike at step 3 -> A (same step) -> B two steps later -> C (same step) -> A next step
    nodes = {"in": SpikeSource(1), "A": IFPopulation(1), "B": IFPopulation(1), "C": IFPopulation(1, v_reset=None)}
    one = dict(indptr=[0, 1], indices=[0], weights=[1.0])
    graph = Graph(nodes, [Projection("in", "A", **one), Projection("A", "B", delay_steps=2, **one),
                          Projection("C", "A", delay_steps=1, **one), Projection("B", "C", **one)])
    x = np.zeros((12, 1))
    x[3] = 1
    b = run_brian2(graph, 12, input_spikes=x)
    first = {k: b.spikes[k].to_dense()[:, 0].nonzero().squeeze(1).tolist()[:2] for k in "ABC"}
    assert first == {"A": [3, 6], "B": [5, 8], "C": [5, 8]}
    ev = EventTensor.from_dense(torch.tensor(x))
    assert b.spikes["A"].to_dense().equal(run_brian2(graph, 12, input_spikes={"in": ev}).spikes["A"].to_dense())


def test_run_brian2_rejects_bad_requests():
    g = Graph({"in": SpikeSource(2), "p": IFPopulation(2)}, [Projection("in", "p", [0, 1, 2], [0, 1], [1.0, 1.0])])
    with pytest.raises(ParameterError, match="input_spikes"):
        run_brian2(g, 5)
    with pytest.raises(ParameterError, match="binary"):
        run_brian2(g, 5, input_spikes=np.full((5, 2), 0.5))
    with pytest.raises(ShapeError, match="cover 3 steps"):
        run_brian2(g, 5, input_spikes=np.zeros((3, 2)))
    with pytest.raises(ShapeError, match="expected"):
        run_brian2(g, 5, input_spikes=np.zeros((5, 3)))
    with pytest.raises(ParameterError, match="target"):
        run_brian2(g, 5, input_spikes=np.zeros((5, 2)), target="cpp_standalone")
    with pytest.raises(ParameterError, match="steps"):
        run_brian2(g, 0, input_spikes=np.zeros((5, 2)))


def test_populations_brian2_cannot_run_are_listed():
    from neuro.core.errors import UnsupportedLayerError
    from neuro.ir import to_ir
    from neuro.models.sequential import SpikingSequential
    from neuro.neurons import CubaLIF
    from neuro.synapses import Linear

    net = SpikingSequential(Linear(4, 3), CubaLIF(step_mode="m"), Linear(3, 2), CubaLIF(step_mode="m"))
    with pytest.raises(UnsupportedLayerError, match="CubaLIFPopulation") as e:
        run_brian2(to_ir(net, n_inputs=4), 5, input_spikes=np.zeros((5, 4)))
    assert len(e.value.items) == 2
