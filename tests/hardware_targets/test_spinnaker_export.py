"""SpiNNaker exports: the py-spinnaker2-style JSON and the PyNN script, checked against the graph; the
PyNN script run on PyNN's Brian2 backend gives neuro's spikes."""
import ast
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from neuro.core.errors import HardwareLimitError, ParameterError, ShapeError, UnsupportedLayerError
from neuro.hardware_targets.spinnaker.export import pynn_cells, to_pynn, to_spinnaker2, write_pynn, write_spinnaker2
from neuro.ir import (ALIFPopulation, ConstantCurrent, Graph, IFPopulation, LIFPopulation, PoissonInput, Projection,
                      SpikeSource)
from neuro.ir.build import GraphNetwork


def _graph(seed=0):
    """in -> A (0), A -> A (2), A -> B (0), A -> C (0), B -> C (2); a drive on A. With inputs on even
    steps only, every synaptic input arrives on an even step and no neuron spikes on an odd one."""
    rng = np.random.default_rng(seed)
    w = lambda a, b, p, s: rng.normal(size=(a, b)) * s * (rng.random((a, b)) < p)
    return Graph({"in": SpikeSource(12), "A": LIFPopulation(16, 0.9, decay_input=False),
                  "B": IFPopulation(6, v_reset=0.0), "C": LIFPopulation(8, 0.8, decay_input=True),
                  "bias": ConstantCurrent("A", rng.uniform(-0.05, 0.08, size=16))},
                 [Projection.from_dense("in", "A", w(16, 12, 0.4, 1.5)), Projection.from_dense("A", "B", w(6, 16, 0.5, 0.8)),
                  Projection.from_dense("A", "A", w(16, 16, 0.2, 0.6), delay_steps=2),
                  Projection.from_dense("A", "C", w(8, 16, 0.5, 6.0)),
                  Projection.from_dense("B", "C", w(8, 6, 0.5, 6.0), delay_steps=2)])


def _even_inputs(T=60):
    x = (np.random.default_rng(1).random((T, 12)) < 0.4).astype(float)      # [T, n]
    x[1::2] = 0
    return x


def test_spinnaker2_json_matches_the_graph(tmp_path):
    g = _graph()
    x = _even_inputs()
    d = json.loads(write_spinnaker2(g, tmp_path / "net.json", inputs={"in": x}).read_text())
    assert d["format"] == "neuro-py-spinnaker2-network" and d["tick_offsets"] == {"in": 0, "A": 1, "B": 2, "C": 2}
    pops = {p["name"]: p for p in d["populations"]}
    assert [(p["name"], p["size"], p["neuron_model"]) for p in d["populations"]] == \
        [("in", 12, "spike_list"), ("A", 16, "lif"), ("B", 6, "lif"), ("C", 8, "lif")]
    assert pops["in"]["params"]["0"] == [int(t) for t in np.nonzero(x[:, 0])[0]]          # offset 0
    kA = d["weight_scale"]["A"]
    a = pops["A"]["params"]
    assert a["alpha_decay"] == 0.9 and a["threshold"] == pytest.approx(kA) and a["reset"] == "reset_to_v_reset"
    np.testing.assert_allclose(a["i_offset"], g.nodes["bias"].values * kA)
    assert pops["B"]["params"]["alpha_decay"] == 1.0
    for p, proj in zip(g.projections, d["projections"]):
        conns = np.array(proj["conns"])                                                   # [nnz, 4]
        assert len(conns) == p.nnz and (proj["pre"], proj["post"]) == (p.pre, p.post)
        assert np.abs(conns[:, 2]).max() <= 15 and conns[:, 2].dtype.kind == "i"
        dense = np.zeros((g.nodes[p.post].n, g.nodes[p.pre].n))
        dense[conns[:, 1], conns[:, 0]] = conns[:, 2]
        gain = 0.2 if p.post == "C" else 1.0                                               # decay_input: (1 - d) w
        k = d["weight_scale"][p.post]
        np.testing.assert_allclose(dense / k, p.to_dense(g.nodes[p.post].n) * gain, atol=0.5 / k + 1e-12)
        # stored delay + 1 = IR delay + offset difference
        want = p.delay_steps + d["tick_offsets"][p.post] - d["tick_offsets"][p.pre] - 1
        assert set(conns[:, 3]) == {want}
    assert [proj["conns"][0][3] for proj in d["projections"]] == [0, 0, 1, 0, 1]
    for post in ("A", "B", "C"):                                   # the scale puts each population's largest weight at 15
        assert max(abs(c[2]) for proj in d["projections"] if proj["post"] == post for c in proj["conns"]) == 15
    assert all(q["max_abs_error"] <= 0.5 / q["scale"] + 1e-12 for q in d["quantization"])


def test_spinnaker2_weight_and_delay_limits():
    g = Graph({"in": SpikeSource(2), "A": LIFPopulation(2, 0.9, decay_input=False)},
              [Projection.from_dense("in", "A", np.array([[20.0, 1.0], [-3.0, 0.0]]))])
    with pytest.raises(HardwareLimitError, match="in->A") as e:
        to_spinnaker2(g, weight_scale=1.0)
    assert e.value.usage[0]["weights_out_of_range"] == 1 and e.value.usage[0]["largest"] == 20.0
    d = to_spinnaker2(g, weight_scale=1.0, clip=True)
    assert sorted(c[2] for c in d["projections"][0]["conns"]) == [-3, 1, 15] and d["clipped"][0]["largest"] == 20.0
    far = Graph(g.nodes, [Projection.from_dense("in", "A", np.eye(2), delay_steps=9)])
    with pytest.raises(HardwareLimitError, match="delays 0..7") as e:
        to_spinnaker2(far)
    assert e.value.usage[0]["stored_delay"] == 8
    assert to_spinnaker2(Graph(g.nodes, [Projection.from_dense("in", "A", np.eye(2), delay_steps=8)]))[
        "projections"][0]["conns"][0][3] == 7
    with pytest.raises(ParameterError, match="weight_scale"):
        to_spinnaker2(g, weight_scale=-1.0)
    bad = Graph({"in": SpikeSource(2), "A": ALIFPopulation(2, 0.9, 0.9), "p": PoissonInput("A", 2)},
                [Projection.from_dense("in", "A", np.eye(2))])
    with pytest.raises(UnsupportedLayerError) as e:
        to_spinnaker2(bad)
    assert {i[0] for i in e.value.items} == {"A", "p"}
    with pytest.raises(ShapeError, match="'in'"):
        to_spinnaker2(g, inputs={"in": np.zeros((4, 3))})


def test_pynn_script_content_matches_the_graph(tmp_path):
    g = _graph()
    src = write_pynn(g, tmp_path / "model_pynn.py", inputs={"in": _even_inputs()}, steps=60).read_text()
    tree = ast.parse(src)
    consts = {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body
              if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name) and n.targets[0].id.isupper()}
    assert consts["DT_MS"] == 1.0 and consts["STEPS"] == 60 and consts["LATENCY_STEPS"] == 1
    assert consts["TICK_OFFSETS"] == {"in": 0, "A": 2, "B": 4, "C": 4}                     # 2 steps per hop
    assert "IF_curr_delta" in src and "FromListConnector" in src and "pyNN." in src
    cells = consts["CELLS"]
    assert cells["A"]["tau_m"] == pytest.approx(-1.0 / np.log(0.9)) and cells["B"]["tau_m"] == 1e12
    # per-step decay and drive: v_thresh = S(v_th), i_offset adds c per step
    np.testing.assert_allclose(cells["A"]["v_thresh"], 0.9 + g.nodes["bias"].values)
    np.testing.assert_allclose(np.array(cells["A"]["i_offset"]) * (1 - 0.9) * cells["A"]["tau_m"], g.nodes["bias"].values)
    for p, (pre, post, D, conns) in zip(g.projections, consts["PROJECTIONS"]):
        assert (pre, post, len(conns)) == (p.pre, p.post, p.nnz)
        assert D == p.delay_steps + consts["TICK_OFFSETS"][post] - consts["TICK_OFFSETS"][pre] >= 2
        dense = np.zeros((g.nodes[post].n, g.nodes[pre].n))
        for i, j, w in conns:
            dense[j, i] = w
        np.testing.assert_allclose(dense, p.to_dense(g.nodes[post].n) * (0.2 if post == "C" else 1.0), rtol=1e-15)
    assert [D for _, _, D, _ in consts["PROJECTIONS"]] == [2, 2, 2, 2, 2]
    soft = Graph({"in": SpikeSource(2), "A": LIFPopulation(2, 0.9, v_reset=None)}, [Projection.from_dense("in", "A", np.eye(2))])
    with pytest.raises(UnsupportedLayerError, match="soft reset"):
        to_pynn(soft)
    with pytest.raises(ParameterError, match="steps"):
        to_pynn(g, steps=0)
    assert pynn_cells(g)["A"]["v_init"] == [0.0] * 16


def _run_brian2(g, x, tmp_path):
    path = write_pynn(g, tmp_path / "model_pynn.py", inputs={"in": x}, steps=x.shape[0])
    r = subprocess.run([sys.executable, str(path), "--backend", "brian2", "--out", str(tmp_path / "spikes.npz")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return dict(np.load(tmp_path / "spikes.npz"))


def test_pynn_script_on_brian2_gives_neuros_spikes(tmp_path):
    g = _graph()
    x = _even_inputs()
    ref = {k: v[:, 0].numpy() for k, v in GraphNetwork(g)({"in": torch.tensor(x)[:, None]}).items()}
    out = _run_brian2(g, x, tmp_path)
    for k in ("A", "B", "C"):
        assert out[k].shape == ref[k].shape and ref[k].sum() >= 20
        np.testing.assert_array_equal(out[k], ref[k])


def test_pynn_loses_input_in_the_step_after_a_spike(tmp_path):
    """The documented difference: two inputs in consecutive steps make two spikes in neuro, one in PyNN."""
    g = Graph({"in": SpikeSource(2), "A": LIFPopulation(2, 0.9, decay_input=False)},
              [Projection.from_dense("in", "A", 2.0 * np.eye(2))])
    x = np.zeros((8, 2))
    x[[1, 2], 0] = 1                                                                    # consecutive
    x[[1, 3], 1] = 1                                                                    # a step apart
    ref = GraphNetwork(g)({"in": torch.tensor(x)[:, None]})["A"][:, 0].numpy()
    np.testing.assert_array_equal(ref, x)
    out = _run_brian2(g, x, tmp_path)["A"]
    assert np.nonzero(out[:, 0])[0].tolist() == [1] and np.nonzero(out[:, 1])[0].tolist() == [1, 3]
