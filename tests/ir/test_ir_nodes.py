"""IR nodes added for hardware export: CubaLIF, ALIF, conv and pooling edges, shapes, EGRU; tracing
of DelayLinear / Conv2d / CubaLIF / Flatten chains; the GraphNetwork runner against the modules."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from neuro.core import ParameterError, ShapeError, UnsupportedLayerError
from neuro.ir import (ALIFPopulation, Conv2dProjection, CubaLIFPopulation, EGRULayer, Graph, LIFPopulation,
                      LIPopulation, Pool2dProjection, Projection, SpikeSource, ThresholdPopulation, delay_projections,
                      to_ir)
from neuro.ir.build import GraphNetwork, Pool2d
from neuro.models.sequential import Flatten, SpikingSequential
from neuro.neurons import IF, LIF, CubaLIF, EGRUCell
from neuro.synapses import Conv2d, DelayLinear, Linear


def test_conv_and_pool_edges_unroll_to_torch_maps():
    rng = np.random.default_rng(0)
    k = rng.normal(size=(3, 2, 3, 3))
    c = Conv2dProjection.from_kernel("a", "b", k, (2, 6, 5), stride=(2, 1), padding=1)
    x = rng.random((2, 6, 5))
    ref = torch.nn.functional.conv2d(torch.tensor(x)[None], torch.tensor(k), stride=(2, 1), padding=1)[0]
    assert c.out_shape == tuple(ref.shape) and np.allclose(c.to_dense(c.n_post) @ x.ravel(), ref.numpy().ravel())
    avg = torch.nn.functional.avg_pool2d
    for kind, fn in (("sum", lambda t: avg(t, 2) * 4), ("avg", lambda t: avg(t, 2))):
        p = Pool2dProjection.from_window("a", "b", kind, 2, (2, 6, 4))
        ref = fn(torch.tensor(x[:, :, :4])[None])[0]
        assert p.out_shape == (2, 3, 2) and np.allclose(p.to_dense(p.n_post) @ x[:, :, :4].ravel(), ref.numpy().ravel())


def test_new_nodes_validate_fields():
    with pytest.raises(ParameterError, match=r"CubaLIFPopulation.decay_syn must be in \[0, 1\]"):
        CubaLIFPopulation(3, 0.9, 1.5)
    with pytest.raises(ParameterError, match="ALIFPopulation.beta"):
        ALIFPopulation(3, 0.9, 0.9, beta=-1.0)
    with pytest.raises(ShapeError, match=r"shape \(2, 2\) holds 4 neurons, n is 5"):
        LIFPopulation(5, 0.9, shape=(2, 2))
    with pytest.raises(ShapeError, match="kernel has 3 input channels"):
        Conv2dProjection.from_kernel("a", "b", np.ones((1, 3, 2, 2)), (2, 4, 4))
    with pytest.raises(ShapeError, match="does not fit"):
        Conv2dProjection.from_kernel("a", "b", np.ones((1, 1, 5, 5)), (1, 4, 4))
    with pytest.raises(ParameterError, match="kind"):
        Pool2dProjection.from_window("a", "b", "max", 2, (1, 4, 4))
    with pytest.raises(ParameterError, match=r"LIPopulation.decay_syn must be in \[0, 1\)"):
        LIPopulation(2, 0.9, decay_syn=1.0)
    with pytest.raises(ParameterError, match="ThresholdPopulation.v_th must be a finite number"):
        ThresholdPopulation(2, float("nan"))
    with pytest.raises(ShapeError, match=r"w_y has shape \(6, 3\), expected \(6, 2\)"):
        EGRULayer("x", 4, 2, np.zeros((6, 4)), np.zeros((6, 3)), np.zeros(6), np.zeros(2), np.zeros(2))
    c = Conv2dProjection.from_kernel("a", "b", np.ones((2, 1, 3, 3)), (1, 4, 4))
    with pytest.raises(ShapeError, match=r"reads shape \(1, 4, 4\), 'a' has shape \(16,\)"):
        Graph({"a": SpikeSource(16), "b": LIFPopulation(8, 0.9, shape=(2, 2, 2))}, [c])
    with pytest.raises(ParameterError, match="pre"):
        Graph({"a": SpikeSource(4), "e": EGRULayer("zz", 4, 2, np.zeros((6, 4)), np.zeros((6, 2)), np.zeros(6),
                                                    np.zeros(2), np.zeros(2))})


def test_chain_with_conv_pool_flatten_delay_and_cuba_runs_like_the_modules():
    torch.manual_seed(1)
    conv, lin = Conv2d(1, 3, 3, padding=1, step_mode="m"), Linear(12, 16)
    dl = DelayLinear(16, 8, max_delay=3, init_delays="random_int")
    with torch.no_grad():
        conv.weight.mul_(3)
        lin.weight.mul_(3)
        dl.weight.mul_(6)
    dl.finalize()
    layers = [conv, LIF(tau_ms=3.0, step_mode="m"), Pool2d("avg", 2, step_mode="m"), IF(v_th=0.5, step_mode="m"),
              Flatten(step_mode="m"), lin, CubaLIF(v_th=0.4, step_mode="m"), dl, LIF(decay=0.7, step_mode="m")]
    g = to_ir(layers, input_shape=(1, 4, 4))
    assert g.nodes["1"].shape == (3, 4, 4) and g.nodes["3"].shape == (3, 2, 2)
    assert isinstance(g.projections[0], Conv2dProjection) and isinstance(g.projections[1], Pool2dProjection)
    assert sorted({p.delay_steps for p in g.projections if p.pre == "6"}) == sorted(set(dl.delays().flatten().tolist()))
    x = (torch.rand(30, 2, 1, 4, 4) < 0.4).double()
    net = SpikingSequential(*layers).double()
    with torch.no_grad():
        ref = net(x)
    out = GraphNetwork(g)(x.flatten(2))
    assert out["8"].sum() > 10 and torch.equal(out["8"], ref)


def test_delay_projections_moved_with_a_compatible_reexport():
    from neuro.synapses.delay import delay_projections as old

    dl = DelayLinear(4, 3, max_delay=5, init_delays="random_int").finalize()
    a, b = old(dl, "x", "y"), delay_projections(dl, "x", "y")
    assert [(p.delay_steps, p.weights.tolist()) for p in a] == [(p.delay_steps, p.weights.tolist()) for p in b]
    with pytest.raises(ParameterError, match="finalize"):
        to_ir([DelayLinear(4, 3, max_delay=5), LIF()])


def test_egru_is_traced_and_refused_by_exporters():
    from neuro.hardware_targets.loihi import compile_graph
    from neuro.hardware_targets.nir import to_nir

    cell = EGRUCell(5, 4)
    g = to_ir(cell)
    e = g.nodes["egru"]
    assert isinstance(e, EGRULayer) and np.array_equal(e.theta, cell.theta.detach().double().numpy())
    with pytest.raises(UnsupportedLayerError, match="egru: EGRU"):
        to_nir(g)
    with pytest.raises(UnsupportedLayerError, match="egru: EGRULayer"):
        compile_graph(g)
    with pytest.raises(UnsupportedLayerError, match="egru"):
        GraphNetwork(g)


def test_flatten_other_than_per_sample_is_refused():
    with pytest.raises(UnsupportedLayerError, match="start_dim=2"):
        to_ir([Flatten(start_dim=2), Linear(4, 2), LIF()])


def test_ir_graph_imports_without_torch():
    code = ("import sys, neuro.ir.graph as g; g.Conv2dProjection; g.EGRULayer; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_graph_network_runs_alif_like_the_module():
    from neuro.ir.trace import alif_population
    from neuro.neurons import ALIF

    torch.manual_seed(4)
    lin, alif = Linear(6, 5, bias=False), ALIF(tau_ms=10.0, tau_adapt_ms=50.0, beta=0.5, step_mode="m")
    with torch.no_grad():
        lin.weight.mul_(2)
    g = Graph({"input": SpikeSource(6), "a": alif_population(alif.params, 5)},
              [Projection.from_dense("input", "a", lin.weight.detach().double().numpy())])
    x = (torch.rand(80, 3, 6) < 0.4).double()
    with torch.no_grad():
        ref = alif.double()(lin.double()(x))
    out = GraphNetwork(g)(x)["a"]
    assert ref.sum() > 20 and torch.equal(out, ref)


def test_pool2d_module_saves_and_loads(tmp_path):
    from neuro.io import load_model, save_model

    net = SpikingSequential(Conv2d(1, 2, 3, padding=1, step_mode="m"), LIF(step_mode="m"),
                            Pool2d("avg", 2, step_mode="m"), IF(step_mode="m"))
    save_model(net, tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert isinstance(back[2], Pool2d) and back[2].kind == "avg" and back[2].kernel_size == (2, 2)
    x = (torch.rand(5, 2, 1, 4, 4) < 0.5).float()
    with torch.no_grad():
        net.reset()
        back.reset()
        assert torch.equal(net(x), back(x))
