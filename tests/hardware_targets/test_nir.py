"""NIR: neuro -> NIR -> snnTorch / Norse / neuro give neuro's spikes; snnTorch's files import into neuro;
bad files raise FormatError naming file, node and field."""
import warnings

import h5py
import numpy as np
import pytest
import torch

from neuro.core import FormatError, ParameterError, UnsupportedLayerError
from neuro.hardware_targets.nir import export_nir, import_nir, load_nir, read_nir, to_nir
from neuro.ir import (ALIFPopulation, ConstantCurrent, Graph, LIFPopulation, LIPopulation, PoissonInput, Projection,
                      SpikeSource, ThresholdPopulation, to_ir)
from neuro.ir.build import GraphNetwork, Pool2d
from neuro.models.sequential import Flatten, SpikingSequential
from neuro.neurons import IF, LIF, CubaLIF
from neuro.synapses import Conv2d, DelayLinear, Linear

nir = pytest.importorskip("nir")
T, B = 60, 4


def _chain(neuron, scale, seed=0):
    torch.manual_seed(seed)
    net = SpikingSequential(Linear(20, 40), neuron(0), Linear(40, 12), neuron(1))
    with torch.no_grad():
        for m in net:
            if isinstance(m, Linear):
                m.weight.mul_(scale)
    return net


def _input(n=20, p=0.3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, n, generator=g) < p).float()


def test_neuro_to_nir_to_snntorch_gives_the_same_spikes(tmp_path):
    from snntorch.import_nir import import_from_nir

    decays = (0.9, 0.8)
    net = _chain(lambda k: LIF(decay=decays[k], decay_input=False, strict_threshold=True, step_mode="m"), 3.0)
    x = _input()
    with torch.no_grad():
        ref = net(x)                                                       # [T, B, 12]
    path = export_nir(to_ir(net), tmp_path / "net.nir", dt_s=1e-4)       # snnTorch's fixed step
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sn = import_from_nir(nir.read(path))
    with torch.no_grad():
        out = torch.stack([sn(x[t])[0] for t in range(T)])                 # the graph returns (spikes, membrane)
    assert ref.sum() > 50 and torch.equal(out, ref)


def test_neuro_to_nir_to_norse_gives_the_same_spikes(tmp_path):
    import norse.torch as norse

    taus = (4.0, 2.5)
    net = _chain(lambda k: LIF(tau_ms=taus[k], strict_threshold=True, step_mode="m"), 8.0)
    x = _input()
    with torch.no_grad():
        ref = net(x)
    path = export_nir(to_ir(net), tmp_path / "net.nir", dt_s=1e-3)
    model = norse.from_nir(nir.read(path), dt=1e-3)
    outs, state = [], None
    with torch.no_grad():
        for t in range(T):
            o, state = model(x[t], state)
            outs.append(o)
    assert ref.sum() > 50 and torch.equal(torch.stack(outs), ref)


def test_snntorch_file_imports_and_gives_snntorch_spikes(tmp_path):
    import snntorch as snn
    import snntorch.utils as su
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(2)
    snet = torch.nn.Sequential(
        torch.nn.Linear(20, 30), snn.Leaky(beta=torch.full((30,), 0.9), threshold=torch.ones(30), init_hidden=True,
                                           reset_mechanism="zero"),
        torch.nn.Linear(30, 10), snn.Leaky(beta=torch.full((10,), 0.85), threshold=torch.ones(10), init_hidden=True,
                                           reset_mechanism="zero", output=True))
    with torch.no_grad():
        snet[0].weight.mul_(3)
        snet[2].weight.mul_(3)
    nir.write(tmp_path / "snn.nir", export_to_nir(snet, torch.zeros(20)))
    su.reset(snet)
    x = _input()
    with torch.no_grad():
        ref = torch.stack([snet(x[t])[0] for t in range(T)])
    model = load_nir(tmp_path / "snn.nir", dt_s=1e-4, dtype=torch.float32)
    out = model(x)
    assert list(out) == ["1", "3"]
    assert ref.sum() > 50 and torch.equal(out["3"], ref)


def test_neuro_round_trip_with_conv_pool_flatten_cuba_delays_and_metadata(tmp_path):
    torch.manual_seed(0)
    dl = DelayLinear(32, 20, max_delay=4, init_delays="random_int")
    with torch.no_grad():
        dl.weight.mul_(4)
    dl.finalize()
    conv = Conv2d(2, 4, 3, padding=1, step_mode="m")
    lin = Linear(64, 32)
    with torch.no_grad():
        conv.weight.mul_(4)
        lin.weight.mul_(4)
    model = [conv, LIF(tau_ms=5.0, integration="exact", step_mode="m"), Pool2d("sum", 2, step_mode="m"),
             IF(v_th=1.5, step_mode="m"), Flatten(step_mode="m"), lin, CubaLIF(v_th=0.5, step_mode="m"), dl,
             LIF(decay=0.8, v_reset=None, decay_input=False, step_mode="m")]
    g = to_ir(model, input_shape=(2, 8, 8))
    path = export_nir(g, tmp_path / "m.nir")
    back = import_nir(path)
    assert [type(p).__name__ for p in back.projections].count("Conv2dProjection") == 1
    assert sorted(p.delay_steps for p in back.projections) == sorted(p.delay_steps for p in g.projections)
    assert back.nodes["8"].soft_reset and not back.nodes["8"].strict_threshold   # kept in node metadata
    x = (torch.rand(40, 3, 2, 8, 8) < 0.3).double()
    with torch.no_grad():
        seq = SpikingSequential(*model).double()
        seq.reset()
        ref = seq(x)                                                           # the torch modules themselves
    a, b = GraphNetwork(g)(x.flatten(2)), GraphNetwork(back)(x.flatten(2))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert torch.equal(a["8"], ref) and ref.sum() > 20 and a["1"].sum() > 20 and a["3"].sum() > 20


def test_recurrent_edges_carry_the_implicit_step(tmp_path):
    rng = np.random.default_rng(0)
    g = Graph({"input": SpikeSource(10), "r": LIFPopulation(30, 0.9, decay_input=False, strict_threshold=True)},
              [Projection.from_dense("input", "r", rng.normal(0.5, 0.5, (30, 10))),
               Projection.from_dense("r", "r", rng.normal(0, 0.3, (30, 30)), delay_steps=1),
               Projection.from_dense("r", "r", rng.normal(0, 0.3, (30, 30)) * (rng.random((30, 30)) < 0.2),
                                     delay_steps=3)])
    ng = to_nir(g)
    delays = [v for v in ng.nodes.values() if isinstance(v, nir.Delay)]
    assert len(delays) == 1 and np.allclose(delays[0].delay, 2e-3)            # 3 steps: 1 implicit + 2
    back = import_nir(export_nir(g, tmp_path / "r.nir"))
    assert sorted(p.delay_steps for p in back.projections) == [0, 1, 3]
    x = (torch.rand(50, 2, 10) < 0.2).double()
    assert torch.equal(GraphNetwork(g)(x)["r"], GraphNetwork(back)(x)["r"])


def test_nodes_nir_lacks_are_refused_by_name():
    g = Graph({"input": SpikeSource(3), "a": ALIFPopulation(2, 0.9, 0.95), "b": LIFPopulation(2, 0.9),
               "noise": PoissonInput("b", 2)},
              [Projection.from_dense("input", "a", np.ones((2, 3))), Projection.from_dense("input", "b", np.ones((2, 3)))])
    with pytest.raises(UnsupportedLayerError) as info:
        to_nir(g)
    assert [p for p, _ in info.value.items] == ["a", "noise"]
    lonely = Graph({"a": LIFPopulation(2, 0.9), "bias": ConstantCurrent("a", np.ones(2))})
    with pytest.raises(UnsupportedLayerError, match="bias"):
        to_nir(lonely)
    with pytest.raises(ParameterError, match="dt_s"):
        to_nir(Graph({"input": SpikeSource(2)}), dt_s=-1.0)


def test_nir_nodes_without_an_ir_counterpart_are_refused_on_import(tmp_path):
    g = nir.NIRGraph(nodes={"in": nir.Input(input_type={"input": np.array([2, 5])}),
                            "conv": nir.Conv1d(input_shape=5, weight=np.ones((3, 2, 2)), stride=1, padding=0, dilation=1,
                                               groups=1, bias=np.zeros(3)),
                            "lif": nir.LIF(tau=np.ones((3, 4)), r=np.ones((3, 4)), v_leak=np.zeros((3, 4)),
                                           v_threshold=np.ones((3, 4))),
                            "out": nir.Output(output_type={"output": np.array([3, 4])})},
                     edges=[("in", "conv"), ("conv", "lif"), ("lif", "out")])
    nir.write(tmp_path / "c1.nir", g)
    with pytest.raises(UnsupportedLayerError, match="conv: Conv1d"):
        import_nir(tmp_path / "c1.nir", dt_s=1e-3)
    with pytest.raises(ParameterError, match="dt_s"):
        import_nir(tmp_path / "c1.nir")


def test_readouts_and_thresholds_round_trip(tmp_path):
    """LI / CubaLI / I readouts (graded membrane output) and stateless Threshold units."""
    rng = np.random.default_rng(3)
    nodes = {"input": SpikeSource(8), "h": LIFPopulation(12, 0.9, decay_input=False, strict_threshold=True),
             "li": LIPopulation(4, 0.8), "cli": LIPopulation(4, 0.7, decay_syn=0.5, decay_input=False),
             "int": LIPopulation(3, 1.0, decay_input=False), "thr": ThresholdPopulation(5, 0.5)}
    w = lambda o, i: rng.normal(0.3, 0.6, (o, i))
    g = Graph(nodes, [Projection.from_dense("input", "h", w(12, 8)), Projection.from_dense("h", "li", w(4, 12)),
                      Projection.from_dense("h", "cli", w(4, 12)), Projection.from_dense("h", "int", w(3, 12)),
                      Projection.from_dense("input", "thr", w(5, 8))])
    ng = to_nir(g)
    assert {k: type(ng.nodes[k]).__name__ for k in ("li", "cli", "int", "thr")} == \
        {"li": "LI", "cli": "CubaLI", "int": "I", "thr": "Threshold"}
    back = import_nir(export_nir(g, tmp_path / "ro.nir"))
    assert {k: type(back.nodes[k]).__name__ for k in nodes} == {k: type(v).__name__ for k, v in nodes.items()}
    x = (torch.rand(40, 2, 8) < 0.3).double()
    a, b = GraphNetwork(g)(x), GraphNetwork(back)(x)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert a["thr"].sum() > 10 and not torch.equal(a["int"], a["int"].round())     # spikes; graded readout
    assert torch.allclose(a["int"][-1], a["h"].sum(0) @ torch.tensor(g.projections[3].to_dense(3)).t())


@pytest.fixture
def good_file(tmp_path):
    net = _chain(lambda k: LIF(decay=0.9, decay_input=False, strict_threshold=True, step_mode="m"), 1.0)
    return export_nir(to_ir(net), tmp_path / "good.nir")


def _edit(path, fn):
    with h5py.File(path, "a") as f:
        fn(f)
    return path


def test_bad_files_raise_format_error_naming_file_node_and_field(good_file, tmp_path):
    assert read_nir(good_file) is not None
    data = good_file.read_bytes()
    (tmp_path / "trunc.nir").write_bytes(data[: len(data) // 2])
    with pytest.raises(FormatError, match=r"trunc\.nir: not a readable HDF5 file"):
        read_nir(tmp_path / "trunc.nir")
    with pytest.raises(FormatError, match="no such file"):
        read_nir(tmp_path / "absent.nir")

    def version(f):
        del f["version"]
        f["version"] = "9.1.0"
    with pytest.raises(FormatError, match=r"good\.nir\.version: unknown NIR version '9.1.0'"):
        read_nir(_edit(good_file, version))


@pytest.mark.parametrize("damage, where", [
    (lambda f: f["node/nodes/1/type"].__setitem__((), b"Quantum"), r"\[nodes/1\]\.type: unknown node type 'Quantum'"),
    (lambda f: (f["node/nodes/1"].__delitem__("tau")), r"\[nodes/1\]\.tau: missing"),
    (lambda f: (f["node/nodes/0"].__delitem__("weight"),
                f["node/nodes/0"].__setitem__("weight", np.array(["a", "b"], dtype="S1"))),
     r"\[nodes/0\]\.weight: expected numbers"),
    (lambda f: (f["node/nodes/0"].__delitem__("weight"), f["node/nodes/0"].__setitem__("weight", np.ones(7))),
     r"\[nodes/0\]\.weight: expected 2-D"),
    (lambda f: (f["node/nodes/1"].__delitem__("r"), f["node/nodes/1"].__setitem__("r", np.ones(5))),
     r"\[nodes/1\]\.\w+: shapes differ"),
    (lambda f: (f["node/nodes/0"].__delitem__("bias"), f["node/nodes/0"].__setitem__("bias", np.ones(3))),
     r"\[nodes/0\]\.bias: shape"),
    (lambda f: (f["node/nodes/1"].__delitem__("tau"), f["node/nodes/1"].__setitem__("tau", np.full(40, np.nan))),
     r"\[nodes/1\]\.tau: holds NaN"),
    (lambda f: (f["node"].__delitem__("edges"), f["node"].__setitem__("edges", np.array([[b"0", b"zz"]]))),
     r"\[node\]\.edges: edge end 'zz'"),
], ids=["unknown-type", "missing-field", "wrong-dtype", "wrong-ndim", "shape-mismatch", "bias-shape", "nan", "bad-edge"])
def test_damaged_nodes_raise_format_error(good_file, damage, where):
    with pytest.raises(FormatError, match=r"good\.nir " + where):
        read_nir(_edit(good_file, damage))


def test_values_that_pass_the_file_checks_but_not_the_ir_name_node_and_field(good_file):
    def negative_threshold(f):
        del f["node/nodes/1/v_threshold"]
        f["node/nodes/1/v_threshold"] = np.full(40, -1.0)
    with pytest.raises(FormatError, match=r"good\.nir \[1\]\.v_th: LIFPopulation\.v_th must be a finite number > 0"):
        import_nir(_edit(good_file, negative_threshold))


def test_snntorch_recurrent_file_with_a_subgraph_imports_exactly(tmp_path):
    """snnTorch writes RLeaky as a nested NIRGraph (lif <-> w_rec); the cycle carries one step.
    (With snnTorch's default reset_delay=True a zero reset also discards the next step's input, a
    convention its NIR export does not record; reset_delay=False is the reset NIR describes.)"""
    import snntorch as snn
    import snntorch.utils as su
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    snet = torch.nn.Sequential(torch.nn.Linear(12, 20), snn.RLeaky(
        beta=torch.full((20,), 0.9), threshold=torch.ones(20), linear_features=20, init_hidden=True,
        reset_mechanism="zero", reset_delay=False, output=True))
    with torch.no_grad():
        snet[0].weight.mul_(3)
        snet[1].recurrent.weight.mul_(2)
    nir.write(tmp_path / "r.nir", export_to_nir(snet, torch.zeros(12)))
    su.reset(snet)
    x = _input(12)
    with torch.no_grad():
        ref = torch.stack([snet(x[t])[0] for t in range(T)])
    g = import_nir(tmp_path / "r.nir", dt_s=1e-4)
    assert sorted((p.pre, p.post, p.delay_steps) for p in g.projections) == [("1.lif", "1.lif", 1), ("input", "1.lif", 0)]
    out = load_nir(tmp_path / "r.nir", dt_s=1e-4, dtype=torch.float32)(x)["1.lif"]
    assert ref.sum() > 50 and torch.equal(out, ref)
