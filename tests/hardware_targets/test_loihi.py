"""Loihi 2: compiler limits, the bit-exact emulator against Lava itself, quantized vs float agreement, netx."""
import numpy as np
import pytest
import torch

from neuro.core import FormatError, HardwareLimitError, UnsupportedLayerError
from neuro.hardware_targets import loihi
from neuro.hardware_targets.loihi import (LavaUnavailableError, agreement, compile_graph, emulate, lava_weights,
                                          lif_fixed_step, read_netx, run_lava, write_netx)
from neuro.hardware_targets.loihi import runner
from neuro.ir import (ConstantCurrent, CubaLIFPopulation, Graph, IFPopulation, LIFPopulation, LIPopulation, Projection,
                      SpikeSource, to_ir)
from neuro.neurons import LIF
from neuro.synapses import DelayLinear, Linear

T = 120


def feed_forward(rng, n_in=64, n1=160, n2=80):
    return Graph({"input": SpikeSource(n_in),
                  "h": LIFPopulation(n1, 0.9, decay_input=False, strict_threshold=True),
                  "o": LIFPopulation(n2, 0.8, decay_input=True, strict_threshold=True),
                  "h.bias": ConstantCurrent("h", rng.uniform(0, 0.05, n1))},
                 [Projection.from_dense("input", "h", rng.normal(0.1, 0.3, (n1, n_in))),
                  Projection.from_dense("h", "o", rng.normal(0.0, 0.25, (n2, n1)))])


def recurrent_delays(rng, n_in=50, n=200):
    w_rec = rng.normal(0, 0.4, (n, n)) * (rng.random((n, n)) < 0.1)          # sparse recurrent synapses
    d = rng.integers(1, 6, (n, n))
    projs = [Projection.from_dense("input", "r", rng.normal(0.1, 0.3, (n, n_in)))]
    projs += [Projection.from_dense("r", "r", w_rec * (d == k), delay_steps=int(k)) for k in range(1, 6)]
    return Graph({"input": SpikeSource(n_in), "r": LIFPopulation(n, 0.95, decay_input=False, strict_threshold=True)},
                 projs)


def cuba_if_chain(rng, n_in=40, n1=100, n2=60):
    return Graph({"input": SpikeSource(n_in),
                  "c": CubaLIFPopulation(n1, decay=0.9, decay_syn=0.7, strict_threshold=True),
                  "i": IFPopulation(n2, v_th=2.0, strict_threshold=True)},
                 [Projection.from_dense("input", "c", rng.normal(0.15, 0.2, (n1, n_in))),
                  Projection.from_dense("c", "i", rng.normal(0.4, 0.6, (n2, n1)) * (rng.random((n2, n1)) < 0.15))])


def delay_linear_chain():
    torch.manual_seed(3)
    layer = DelayLinear(48, 96, max_delay=8, init_delays="random_int")
    with torch.no_grad():
        layer.weight.mul_(3.0)
    layer.finalize()
    return to_ir([layer, LIF(decay=0.85, decay_input=False, strict_threshold=True), Linear(96, 32, bias=False),
                  LIF(decay=0.9, strict_threshold=True)])


def spikes(rng, n, p=0.08, B=1):
    return (rng.random((T, B, n)) < p).astype(np.float64)


def test_emulator_matches_lava_spike_for_spike_and_voltage_for_voltage():
    """One Lava run (one start-up) covers four networks: feed-forward with biases, recurrent sparse
    with per-synapse delays 1..5 (DelayDense), CubaLIF -> IF, and a traced DelayLinear chain."""
    rng = np.random.default_rng(0)
    graphs = [feed_forward(rng), recurrent_delays(rng), cuba_if_chain(rng), delay_linear_chain()]
    nets = [compile_graph(g) for g in graphs]
    assert nets[1].connections[1].sparse and nets[1].connections[1].delays is not None   # DelaySparse
    assert nets[2].connections[1].sparse and nets[2].connections[1].delays is None       # Sparse
    inputs = [spikes(rng, next(iter(n.sources.values())), B=2) for n in nets]
    results, seconds = run_lava([(n, x[:, 0]) for n, x in zip(nets, inputs)], T)
    total = 0
    for net, x, (lava_s, lava_v) in zip(nets, inputs, results):
        emu_s, emu_v = emulate(net, x, steps=T)
        one_s, _ = emulate(net, x[:, 1:], steps=T)                   # batch rows are independent
        for k in net.populations:
            assert np.array_equal(emu_s[k][:, 0].numpy(), lava_s[k]), k
            assert np.array_equal(emu_v[k][:, 0].numpy(), lava_v[k]), k
            assert torch.equal(emu_s[k][:, 1], one_s[k][:, 0])
            total += int(lava_s[k].sum())
    assert total > 1000                                               # the networks are active
    print(f"Lava run: {seconds:.1f} s for 4 networks x {T} steps; {total} spikes, all identical")


def test_quantized_network_agrees_with_float_network():
    """Quantization (8-bit weights, 12-bit decays, threshold mantissa, '>' for '>=') against the float
    network: spike trains stay close in a feed-forward net; in a recurrent one single flips are
    amplified, so spike-level agreement drops while the rates stay correlated."""
    rng = np.random.default_rng(1)
    for g, min_identical in ((feed_forward(rng), 0.95), (recurrent_delays(rng), 0.8)):
        net = compile_graph(g)
        stats = agreement(net, g, spikes(rng, next(iter(net.sources.values())), B=4))
        print({k: {m: (round(v, 4) if isinstance(v, float) else v) for m, v in s.items()} for k, s in stats.items()})
        for s in stats.values():
            assert s["rate_correlation"] > 0.95 and s["identical"] > min_identical and s["distance"] < 0.35


def test_latency_and_lava_delays():
    rng = np.random.default_rng(2)
    net = compile_graph(feed_forward(rng))
    assert net.latency == {"h": 1, "o": 2}                             # one step per Dense
    net = compile_graph(recurrent_delays(rng))
    assert net.latency == {"r": 1}
    rec = [c for c in net.connections if c.pre == "r"][0]
    assert rec.delays[rec.weights != 0].min() == 0 and rec.delays.max() == 4   # IR delay d -> Lava d - 1


def test_fixed_point_step_analytic():
    z = torch.zeros(1, 3, dtype=torch.int64)
    # u: a_in << 6 with du = 4095 (no memory); v: decay dv = 2048 halves (toward zero), bias adds
    s, u, v = lif_fixed_step(torch.tensor([[1, -3, 100]]), z, torch.tensor([[1000, -1001, 0]]), 4095, 2048,
                             torch.tensor([0, 0, 5]), 90)
    assert u.tolist() == [[64, -192, 6400]]
    assert v.tolist() == [[564, -692, 0]] and s.tolist() == [[False, False, True]]   # 6405 > 90 << 6 = 5760
    # u wraps at 24 bits: (2^23 - 1) 4095 / 4096 + (100 << 6) = 8392959 > 2^23 -> 8392959 - 2^24
    s, u, v = lif_fixed_step(torch.tensor([[100]]), torch.tensor([[2 ** 23 - 1]]), torch.tensor([[0]]), 0, 0,
                             torch.tensor([0]), 2 ** 17 - 1)
    assert u.item() == 8392959 - 2 ** 24
    # v clips at -(2^23 - 1)
    s, u, v = lif_fixed_step(torch.tensor([[-2 ** 16]]), torch.tensor([[0]]), torch.tensor([[-2 ** 23 + 10]]), 4095, 0,
                             torch.tensor([0]), 2 ** 17 - 1)
    assert v.item() == -2 ** 23 + 1 and not s.item()


def test_lava_weight_truncation():
    assert lava_weights(np.array([[3, -5, 300]])).tolist() == [[2, -6, 254]]    # mixed: even, [-256, 254]
    assert lava_weights(np.array([[3, 5, 300]])).tolist() == [[3, 5, 255]]     # excitatory: [0, 255]
    assert lava_weights(np.array([[-3, -300]])).tolist() == [[-3, -255]]       # inhibitory


def test_limits_raise_with_per_layer_usage_and_clip_reports():
    rng = np.random.default_rng(4)
    g = Graph({"input": SpikeSource(4), "a": LIFPopulation(3, 0.9)},
              [Projection.from_dense("input", "a", rng.random((3, 4)), delay_steps=70)])
    with pytest.raises(HardwareLimitError) as info:
        compile_graph(g)
    row = [r for r in info.value.usage if r["layer"] == "input->a"][0]
    assert row["max_delay"] == 69 and not row["fits"] and "delay 69 > 62" in row["problems"]
    net = compile_graph(g, clip=True)
    assert net.clipped == [{"layer": "input->a", "clipped": "delay 69 > 62"}]
    assert net.connections[0].delays.max() == 62
    # weights 10^6 times the threshold: the weight exponent would pass 7, so the threshold mantissa drops below 1
    heavy = Graph({"input": SpikeSource(2), "a": LIFPopulation(2, 0.9)},
                  [Projection.from_dense("input", "a", np.full((2, 2), 1e6))])
    with pytest.raises(HardwareLimitError) as info:
        compile_graph(heavy)
    assert "vth=0 outside [1, 131071]" in info.value.usage[0]["problems"]
    clipped = compile_graph(heavy, clip=True)
    assert clipped.populations["a"].vth == 1 and "vth=0" in clipped.clipped[0]["clipped"]
    big = Graph({"input": SpikeSource(2), "a": LIFPopulation(200_000, 0.9)}, [])
    with pytest.raises(HardwareLimitError, match="cores"):
        compile_graph(big)


def test_unsupported_populations_and_untimeable_cycles():
    g = Graph({"input": SpikeSource(2), "a": LIFPopulation(2, 0.9, v_reset=None)},
              [Projection.from_dense("input", "a", np.ones((2, 2)))])
    with pytest.raises(UnsupportedLayerError, match="soft reset"):
        compile_graph(g)
    readout = Graph({"input": SpikeSource(2), "ro": LIPopulation(2, 0.9)},
                    [Projection.from_dense("input", "ro", np.ones((2, 2)))])
    with pytest.raises(UnsupportedLayerError, match="ro: LIPopulation"):
        compile_graph(readout)
    loop = Graph({"input": SpikeSource(2), "a": LIFPopulation(2, 0.9), "b": LIFPopulation(2, 0.9)},
                 [Projection.from_dense("input", "a", np.ones((2, 2))), Projection.from_dense("a", "b", np.ones((2, 2))),
                  Projection.from_dense("b", "a", np.ones((2, 2)), delay_steps=1)])
    with pytest.raises(HardwareLimitError, match="cycle"):
        compile_graph(loop)


def test_missing_lava_environment_is_a_typed_error(monkeypatch, tmp_path):
    monkeypatch.setenv("NEURO_LAVA_PYTHON", str(tmp_path / "nope" / "python"))
    monkeypatch.setattr(runner, "default_lava_python", lambda: tmp_path / "absent" / "python")
    with pytest.raises(LavaUnavailableError, match="make lava"):
        loihi.lava_python()


def test_netx_writer_round_trip(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(5)
    net = compile_graph(feed_forward(rng))
    path = write_netx(net, tmp_path / "net.net")
    layers = read_netx(path)
    assert [l["type"] for l in layers] == ["input", "dense", "dense"]
    for layer, name, conn in zip(layers[1:], ["h", "o"], net.connections):
        p = net.populations[name]
        assert np.array_equal(layer["weight"], conn.weights) and layer["weight_exp"] == conn.weight_exp
        assert layer["neuron"] == {"type": "CUBA", "iDecay": p.du + 1, "vDecay": p.dv, "vThMant": p.vth, "refDelay": 1}
    assert np.array_equal(layers[1]["bias"], net.populations["h"].bias_mant << net.populations["h"].bias_exp)
    with h5py.File(path, "a") as f:
        del f["layer/2/neuron/vThMant"]
        f["layer/2/neuron/vThMant"] = 1.5
    with pytest.raises(FormatError, match=r"layer/2/neuron\]\.vThMant"):
        read_netx(path)
    (tmp_path / "bad.net").write_bytes(b"not hdf5")
    with pytest.raises(FormatError, match="bad.net"):
        read_netx(tmp_path / "bad.net")
    with pytest.raises(UnsupportedLayerError):
        write_netx(compile_graph(recurrent_delays(rng)), tmp_path / "rec.net")
