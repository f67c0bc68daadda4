import ast
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import neuro.ir.graph as irg
from neuro.core import ParameterError, ShapeError, UnsupportedLayerError
from neuro.ir import (ConstantCurrent, GivenCurrent, Graph, IFPopulation, LIFPopulation, PoissonInput, Projection,
                      SpikeSource, to_ir)
from neuro.models import ConstantDrive, GivenDrive, PoissonDrive, RecurrentNetwork, w2_network
from neuro.neurons import ALIF, IF, LIF, LIFParams
from neuro.synapses import Linear, SparseLinear

ROOT = Path(__file__).resolve().parents[1]


def csr(n_pre=2, **kw):
    d = dict(pre="a", post="b", indptr=np.arange(n_pre + 1), indices=np.zeros(n_pre, dtype=np.int64),
             weights=np.ones(n_pre))
    d.update(kw)
    return d


def small_graph(**changes):
    nodes = {"a": SpikeSource(2), "b": IFPopulation(3)}
    d = dict(nodes=nodes, projections=[Projection(**csr())], dt_ms=1.0)
    d.update(changes)
    return d


# ----------------------------------------------------------------------------- node validation
BAD_NODES = [
    # (constructor, kwargs, error type, field named in the message)
    (LIFPopulation, dict(n=0, decay=0.5), ParameterError, "n"),
    (LIFPopulation, dict(n=2.0, decay=0.5), ParameterError, "n"),
    (LIFPopulation, dict(n=3, decay=0.0), ParameterError, "decay"),
    (LIFPopulation, dict(n=3, decay=1.5), ParameterError, "decay"),
    (LIFPopulation, dict(n=3, decay=0.5, v_th=0.0), ParameterError, "v_th"),
    (LIFPopulation, dict(n=3, decay=0.5, v_th=math.nan), ParameterError, "v_th"),
    (LIFPopulation, dict(n=3, decay=0.5, v_reset=math.inf), ParameterError, "v_reset"),
    (LIFPopulation, dict(n=3, decay=0.5, v_rest=math.nan), ParameterError, "v_rest"),
    (LIFPopulation, dict(n=3, decay=0.5, decay_input=1), ParameterError, "decay_input"),
    (LIFPopulation, dict(n=3, decay=0.5, strict_threshold="no"), ParameterError, "strict_threshold"),
    (LIFPopulation, dict(n=3, decay=0.5, v_init=np.zeros(4)), ShapeError, "v_init"),
    (LIFPopulation, dict(n=3, decay=0.5, v_init=[0.0, math.nan, 0.0]), ParameterError, "v_init"),
    (LIFPopulation, dict(n=3, decay=0.5, dt_ms=0.0), ParameterError, "dt_ms"),
    (LIFPopulation, dict(n=3, decay=0.5, tau_ms=-2.0, integration="euler"), ParameterError, "tau_ms"),
    (LIFPopulation, dict(n=3, decay=0.5, tau_ms=2.0, integration="rk4"), ParameterError, "integration"),
    (LIFPopulation, dict(n=3, decay=0.5, tau_ms=2.0), ParameterError, "integration"),
    (LIFPopulation, dict(n=3, decay=0.6, tau_ms=2.0, integration="euler"), ParameterError, "decay"),
    (IFPopulation, dict(n=-1), ParameterError, "n"),
    (IFPopulation, dict(n=3, v_th=-1.0), ParameterError, "v_th"),
    (IFPopulation, dict(n=3, v_reset=math.nan), ParameterError, "v_reset"),
    (IFPopulation, dict(n=3, strict_threshold=None), ParameterError, "strict_threshold"),
    (IFPopulation, dict(n=3, v_init=np.zeros((3, 1))), ShapeError, "v_init"),
    (SpikeSource, dict(n=0), ParameterError, "n"),
    (PoissonInput, dict(target="", n=3), ParameterError, "target"),
    (PoissonInput, dict(target="p", n=0), ParameterError, "n"),
    (PoissonInput, dict(target="p", n=3, n_sources=0), ParameterError, "n_sources"),
    (PoissonInput, dict(target="p", n=3, rate_hz=-1.0), ParameterError, "rate_hz"),
    (PoissonInput, dict(target="p", n=3, weight=math.inf), ParameterError, "weight"),
    (PoissonInput, dict(target="p", n=3, seed=-1), ParameterError, "seed"),
    (ConstantCurrent, dict(target="p", values=np.zeros((2, 3))), ShapeError, "values"),
    (ConstantCurrent, dict(target="p", values=[1.0, math.nan]), ParameterError, "values"),
    (ConstantCurrent, dict(target=None, values=[1.0]), ParameterError, "target"),
    (GivenCurrent, dict(target="p", values=np.zeros(3)), ShapeError, "values"),
    (GivenCurrent, dict(target="p", values=np.full((2, 3), math.inf)), ParameterError, "values"),
    (Projection, csr(pre=""), ParameterError, "pre"),
    (Projection, csr(post=3), ParameterError, "post"),
    (Projection, csr(indptr=np.array([1, 1, 2])), ParameterError, "indptr"),
    (Projection, csr(indptr=np.array([0, 2, 1])), ParameterError, "indptr"),
    (Projection, csr(indptr=np.array([0.0, 1.0, 2.0])), ShapeError, "indptr"),
    (Projection, csr(indptr=np.array([0, 1, 3])), ShapeError, "indptr"),
    (Projection, csr(indices=np.array([0, -1])), ParameterError, "indices"),
    (Projection, csr(indices=np.array([0.5, 1.0])), ShapeError, "indices"),
    (Projection, csr(weights=np.ones(3)), ShapeError, "weights"),
    (Projection, csr(weights=np.array([1.0, math.nan])), ParameterError, "weights"),
    (Projection, csr(delay_steps=-1), ParameterError, "delay_steps"),
    (Projection, csr(delay_steps=1.0), ParameterError, "delay_steps"),
]


@pytest.mark.parametrize("cls, kwargs, err, field", BAD_NODES,
                         ids=[f"{c.__name__}-{f}-{i}" for i, (c, _, _, f) in enumerate(BAD_NODES)])
def test_nodes_reject_bad_values_with_typed_errors(cls, kwargs, err, field):
    with pytest.raises(err) as info:
        cls(**kwargs)
    assert cls.__name__ in str(info.value) or "Projection" in str(info.value)
    assert field in str(info.value)


def test_error_names_node_field_and_value():
    with pytest.raises(ParameterError, match=r"LIFPopulation\.decay must be in \(0, 1\], got 1\.5"):
        LIFPopulation(n=3, decay=1.5)


BAD_GRAPHS = [
    (dict(nodes={}), ParameterError, "nodes"),
    (dict(dt_ms=-1.0), ParameterError, "dt_ms"),
    (dict(nodes={"a": SpikeSource(2), "b": "not a node"}), ParameterError, "nodes['b']"),
    (dict(nodes={"a": SpikeSource(2), "b": IFPopulation(3), "d": ConstantCurrent("zz", [1.0])}),
     ParameterError, "target"),
    (dict(nodes={"a": SpikeSource(2), "b": IFPopulation(3), "d": ConstantCurrent("b", [1.0, 2.0])}),
     ShapeError, "channels"),
    (dict(nodes={"a": SpikeSource(2), "b": IFPopulation(3), "d": PoissonInput("b", 3, rate_hz=2000.0)}),
     ParameterError, "rate_hz"),
    (dict(nodes={"a": SpikeSource(2), "b": LIFPopulation(3, 0.5, dt_ms=0.5)}), ParameterError, "dt_ms"),
    (dict(projections=[Projection(**csr(pre="zz"))]), ParameterError, "pre"),
    (dict(projections=[Projection(**csr(post="a"))]), ParameterError, "post"),
    (dict(projections=[Projection(**csr(n_pre=3))]), ShapeError, "presynaptic rows"),
    (dict(projections=[Projection(**csr(indices=np.array([0, 3])))]), ParameterError, "indices"),
    (dict(projections=["edge"]), ParameterError, "projections[0]"),
    (dict(nodes={"a": IFPopulation(2), "b": IFPopulation(2)},
          projections=[Projection(**csr()), Projection(**csr(pre="b", post="a"))]), ParameterError, "cycles"),
]


@pytest.mark.parametrize("changes, err, text", BAD_GRAPHS, ids=[t for _, _, t in BAD_GRAPHS])
def test_graph_rejects_inconsistent_networks(changes, err, text):
    with pytest.raises(err, match="Graph") as info:
        Graph(**small_graph(**changes))
    assert text in str(info.value)


def test_graph_accepts_delayed_loops_and_records_conventions():
    g = Graph({"a": IFPopulation(2), "b": IFPopulation(2, v_reset=None)},
              [Projection(**csr()), Projection(**csr(pre="b", post="a", delay_steps=1))], dt_ms=0.5,
              metadata={"note": "kept"})
    assert g.topological_order() == ["a", "b"]
    assert g.metadata["dt_ms"] == 0.5 and g.metadata["note"] == "kept"
    assert g.metadata["reset"] == {"a": "hard (to v_reset)", "b": "soft (subtract v_th)"}
    assert "delay_steps=0" in g.metadata["delay"]


def test_nodes_are_frozen_with_read_only_arrays():
    pop = LIFPopulation(3, 0.5, v_init=[0.1, 0.2, 0.3])
    with pytest.raises(Exception):
        pop.n = 4
    with pytest.raises(ValueError):
        pop.v_init[0] = 1.0
    assert LIFPopulation(3, 0.5, v_reset=None).v_init.tolist() == [0.0, 0.0, 0.0]
    assert LIFPopulation(2, 0.5, v_reset=-0.5).v_init.tolist() == [-0.5, -0.5]
    p = LIFPopulation(1, math.exp(-0.05), tau_ms=20.0, dt_ms=1.0, integration="exact")
    assert math.isclose(p.tau_exact_ms, 20.0, rel_tol=1e-12)


def test_projection_dense_round_trip():
    w = np.array([[0.0, 1.5, -2.0], [0.25, 0.0, 3.0]])
    p = Projection.from_dense("a", "b", w)
    assert p.indptr.tolist() == [0, 1, 2, 4] and p.indices.tolist() == [1, 0, 0, 1]
    np.testing.assert_array_equal(p.to_dense(2), w)


def test_poisson_input_values_are_neuros_draws():
    d = PoissonDrive(50, 30.0, 0.1, seed=9)
    node = PoissonInput("p", 7, 50, 30.0, 0.1, seed=9)
    vals = node.values(20, 1.0)
    for t in range(20):
        np.testing.assert_array_equal(vals[t], d.values(t, 7, 1.0))


# ----------------------------------------------------------------------------- tracing
def test_trace_feed_forward_chain():
    torch.manual_seed(0)
    model = nn.Sequential(Linear(6, 5), LIF(tau_ms=4.0, v_reset=None),
                          nn.Sequential(SparseLinear.random(5, 3, 0.5, weight=0.5, seed=1), IF(v_th=2.0)))
    g = to_ir(model, n_inputs=6)
    assert list(g.nodes) == ["input", "1", "0.bias", "2.1"]
    assert isinstance(g.nodes["input"], SpikeSource) and g.nodes["input"].n == 6
    lif, if_ = g.nodes["1"], g.nodes["2.1"]
    assert isinstance(lif, LIFPopulation) and lif.v_reset is None and lif.decay == 0.75 and lif.decay_input
    assert lif.tau_ms == 4.0 and lif.integration == "euler"
    assert isinstance(if_, IFPopulation) and if_.v_th == 2.0
    np.testing.assert_array_equal(g.nodes["0.bias"].values, model[0].bias.detach().double().numpy())
    p0, p1 = g.projections
    assert (p0.pre, p0.post, p0.delay_steps, p1.pre, p1.post, p1.delay_steps) == ("input", "1", 0, "1", "2.1", 0)
    np.testing.assert_array_equal(p0.to_dense(5), model[0].weight.detach().double().numpy())
    np.testing.assert_array_equal(p1.to_dense(3), model[2][0].to_dense().double().numpy())
    assert g.topological_order() == ["input", "1", "2.1"]


def test_trace_lists_every_unsupported_module():
    model = nn.Sequential(Linear(4, 3), nn.ReLU(), Linear(3, 3), LIF(),
                          nn.Sequential(Linear(3, 2), ALIF()), nn.Flatten())
    with pytest.raises(UnsupportedLayerError) as info:
        to_ir(model)
    paths = [p for p, _ in info.value.items]
    assert paths == ["1", "4.1", "5"]
    msg = str(info.value)
    assert "ReLU" in msg and "ALIF" in msg and "Flatten" in msg


def test_trace_rejects_broken_alternation_and_sizes():
    with pytest.raises(UnsupportedLayerError, match="1: Linear"):
        to_ir([Linear(4, 3), Linear(3, 3), LIF()])
    with pytest.raises(UnsupportedLayerError, match="at the end"):
        to_ir([Linear(4, 3), LIF(), Linear(3, 2)])
    with pytest.raises(ShapeError, match="n_inputs=5"):
        to_ir([Linear(4, 3), LIF()], n_inputs=5)
    with pytest.raises(ShapeError, match="gives 3"):
        to_ir([Linear(4, 3), LIF(), Linear(2, 2), LIF()])
    with pytest.raises(UnsupportedLayerError):
        to_ir(object())


def test_trace_recurrent_network():
    net = w2_network(n=200, p=0.05, seed=3)
    g = to_ir(net)
    pop = g.nodes["neurons"]
    assert pop.n == 200 and not pop.decay_input and pop.decay == net.params.decay_factor
    np.testing.assert_array_equal(pop.v_init, net.v0.numpy())
    (proj,) = g.projections
    assert proj.delay_steps == 1 and proj.pre == proj.post == "neurons"
    np.testing.assert_array_equal(proj.weights, net.synapses.values.detach().numpy())
    drive = g.nodes["drive"]
    assert isinstance(drive, PoissonInput) and (drive.n, drive.seed) == (200, net.drive.seed)
    np.testing.assert_array_equal(drive.values(3, 1.0)[2], net.drive.values(2, 200, 1.0))

    syn = SparseLinear.random(4, 4, 0.5, seed=1, bias=torch.ones(4))
    p = LIFParams()
    assert isinstance(to_ir(RecurrentNetwork(syn, p, ConstantDrive(np.full(4, 0.2)))).nodes["drive"], ConstantCurrent)
    g = to_ir(RecurrentNetwork(syn, p, GivenDrive(np.zeros((5, 4)))))
    assert isinstance(g.nodes["drive"], GivenCurrent) and isinstance(g.nodes["bias"], ConstantCurrent)


# ----------------------------------------------------------------------------- the IR knows nothing of torch
def _imports(path: Path) -> set:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            out.add("." * node.level + (node.module or ""))
    return out


def test_ir_graph_source_imports_no_torch():
    files = [ROOT / "neuro/ir/graph.py", ROOT / "neuro/ir/__init__.py",
             ROOT / "neuro/core/errors.py", ROOT / "neuro/core/random.py"]
    for f in files:
        assert not {m for m in _imports(f) if m.split(".")[0] == "torch"}, f
    assert _imports(ROOT / "neuro/ir/graph.py") <= {"__future__", "math", "dataclasses", "typing", "numpy",
                                                     "..core.errors", "..core.random"}
    assert irg.__name__ == "neuro.ir.graph"


def test_ir_graph_imports_and_works_with_torch_blocked():
    # neuro.core's package __init__ imports torch (for its tensors), so load the two torch-free
    # modules the IR needs without it; everything else must import no torch.
    code = textwrap.dedent("""
        import sys, types, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked")
        sys.meta_path.insert(0, Block())
        import neuro
        core = types.ModuleType("neuro.core")
        core.__path__ = [neuro.__path__[0] + "/core"]
        sys.modules["neuro.core"] = core
        import neuro.ir
        from neuro.ir import Graph, LIFPopulation, PoissonInput, Projection, SpikeSource
        g = Graph({"in": SpikeSource(2), "p": LIFPopulation(2, 0.9), "d": PoissonInput("p", 2)},
                  [Projection("in", "p", [0, 1, 2], [0, 1], [0.5, 0.5])])
        assert g.nodes["d"].values(3, 1.0).shape == (3, 2)
        assert "torch" not in sys.modules
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
