"""Operation counters and energy models: counts by hand, NeuroBench's definition, bad input."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from neuro.core.errors import FormatError, ShapeError, UnsupportedLayerError
from neuro.energy import (EnergyReport, OpCounter, ann_twin, count_recurrent, count_run, get_models,
                          load_energy_model, parse_energy_model, register_rule, spiking_matmul_ops)
from neuro.energy.targets import REQUIRED_OPS
from neuro.models import GivenDrive, RecurrentNetwork, SpikingSequential
from neuro.neurons import LIF, STBIF, LIFParams
from neuro.synapses import Conv2d, Linear, SparseLinear

W = torch.tensor([[1.0, 0.0, 2.0, 0.0],
                  [0.0, 0.0, 3.0, 1.0],
                  [4.0, 0.0, 0.0, 0.0]])  # nonzero fan-out of inputs 0..3: 2, 0, 2, 1


def linear_counts(x, weight=W, multistep=True):
    lin = Linear.from_weights(weight)
    _, c = count_run(lin, x, multistep=multistep)
    return c.layers["Linear"]


def test_known_spike_pattern_with_zero_weights():
    x = torch.tensor([[[1.0, 1.0, 0.0, 1.0]],      # t0: inputs 0, 1, 3 -> 2 + 0 + 1 = 3
                      [[1.0, 0.0, 1.0, 0.0]],      # t1: inputs 0, 2    -> 2 + 2     = 4
                      [[0.0, 1.0, 0.0, 0.0]]])     # t2: input 1 only (no fan-out) -> 0
    lc = linear_counts(x)
    assert lc.ops["ac"].tolist() == [3, 4, 0]
    assert lc.ops["mac"].tolist() == [0, 0, 0]
    assert lc.ops["ac_dense"].tolist() == [12, 12, 12]   # 1 row x 4 inputs x 3 outputs, all ones


def test_batch_adds_up_and_single_step_calls_are_steps():
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])  # one step, B = 2: (2+2+1) + 1 = 6
    lin = Linear.from_weights(W)
    with OpCounter(lin, multistep=False) as c:
        lin(x)
        lin(torch.zeros(2, 4))
        lin(x[:1])
    assert c.counts().layers["Linear"].ops["ac"].tolist() == [6, 0, 5]
    assert c.counts().layers["Linear"].ops["ac_dense"].tolist() == [24, 24, 12]


def test_signed_and_power_of_two_spikes_are_accumulates():
    x = torch.tensor([[[1.0, -1.0, -1.0, 0.0]], [[0.0, 0.0, 0.5, -0.5]]])  # t0: 2+0+2 = 4, t1: 2+1 = 3
    lc = linear_counts(x)
    assert lc.ops["ac"].tolist() == [4, 3] and lc.ops["mac"].tolist() == [0, 0]


def test_graded_inputs_are_macs():
    x = torch.tensor([[[0.3, 0.0, 1.0, 0.0]], [[1.0, 1.0, 0.0, 1.0]], [[2.0, 0.0, 6.0, 0.0]]])
    lc = linear_counts(x)
    assert lc.ops["mac"].tolist() == [4, 0, 4]           # graded at t0; {0, c} with c = 6 not a power of two at t2
    assert lc.ops["ac"].tolist() == [0, 3, 0]            # t1 is binary: still an AC step
    assert lc.ops["mac_dense"].tolist() == [12, 0, 12]


def test_stbif_signed_spikes_declared_and_counted():
    net = SpikingSequential(STBIF(theta=0.5, step_mode="m"), Linear.from_weights(W, bias=torch.zeros(3)))
    x = torch.tensor([[[0.6, 0.0, -0.3, 0.6]], [[0.0, 0.0, 0.0, 0.0]]])
    with torch.no_grad():
        ref = net(x)
        net.reset()
        out, c = count_run(net, x)
    assert torch.equal(ref, out)
    lc_n, lc_s = c.layers["0"], c.layers["1"]
    # step 0: q = 0.5 + x / 0.5 = [1.7, 0.5, -0.1, 1.7]: +1, 0, none (count 0 is already neg_min), +1
    assert lc_n.ops["spike"].tolist() == [2, 0]
    assert lc_s.ops["ac"].tolist() == [2 + 1, 0]   # inputs 0 and 3 spiked: fan-out 2 + 1
    assert lc_n.ops["neuron_update_active"].tolist() == [2, 0]
    assert lc_n.ops["neuron_update_inactive"].tolist() == [2, 4]


def test_stbif_theta_not_power_of_two_gives_macs():
    net = SpikingSequential(STBIF(theta=0.3, neg_min=-3, step_mode="m"), Linear.from_weights(W))
    x = torch.tensor([[[0.6, 0.0, -0.6, 0.0]]])
    _, c = count_run(net, x)
    assert c.layers["0"].ops["spike"].tolist() == [2]       # +1 and -1
    assert c.layers["1"].ops["mac"].tolist() == [4] and c.layers["1"].ops["ac"].tolist() == [0]


def neurobench_effective(layers_in, weights):
    """NeuroBench SynapticOperations, Effective, from its definition (REFERENCE §4): for each layer, the
    sum over nonzero inputs of the nonzero fan-out (bias excluded); ACs when every input is in {-1, 0, 1}."""
    ac = mac = 0
    for x, w in zip(layers_in, weights):
        x, w = np.asarray(x), np.asarray(w)
        ops = 0
        for idx in np.ndindex(*x.shape[:-1]):
            for i in range(x.shape[-1]):
                if x[idx + (i,)] != 0:
                    ops += int(np.count_nonzero(w[:, i]))
        if np.isin(x, (-1.0, 0.0, 1.0)).all():
            ac += ops
        else:
            mac += ops
    return ac, mac


def test_plain_spiking_mlp_matches_neurobench_definition():
    torch.manual_seed(1)
    net = SpikingSequential(Linear(12, 9), LIF(tau_ms=2.0, step_mode="m"), Linear(9, 5), LIF(tau_ms=2.0, step_mode="m"))
    with torch.no_grad():
        net[0].weight.mul_(6.0)
        net[0].weight[:, 3] = 0.0          # an input with no fan-out
        net[2].weight.mul_(4.0)
        net[2].weight[1, :] = 0.0
    x = (torch.rand(7, 3, 12) < 0.4).float()
    graded = torch.rand(7, 3, 12) * (x > 0)
    for inp in (x, graded):
        net.reset()
        with torch.no_grad():
            ref = net(inp)
            s1 = net[1].__class__(params=net[1].params, step_mode="m")(net[0](inp))
            net.reset()
            out, c = count_run(net, inp)
        assert torch.equal(out, ref)
        # per time step, as the counter decides AC/MAC per step: sum the definition over steps
        ac = mac = 0
        for t in range(inp.shape[0]):
            a, m = neurobench_effective([inp[t], s1[t]], [net[0].weight.detach(), net[2].weight.detach()])
            ac, mac = ac + a, mac + m
        s = c.summary()
        assert (s["synops_ac"], s["synops_mac"]) == (ac, mac)
        assert s["synops_ac"] + s["synops_mac"] > 0
    # per step and per call agree for the binary input: NeuroBench's per-call decision
    a, m = neurobench_effective([x, s1], [net[0].weight.detach(), net[2].weight.detach()])
    assert m == 0


def test_counters_leave_outputs_identical_and_detach_every_hook():
    torch.manual_seed(0)
    net = SpikingSequential(Conv2d(2, 3, 3, padding=1, step_mode="m"), LIF(step_mode="m"),
                            __import__("neuro.models", fromlist=["Flatten"]).Flatten(step_mode="m"),
                            Linear(3 * 5 * 5, 4), LIF(step_mode="m"))
    x = (torch.rand(6, 2, 2, 5, 5) < 0.3).float()
    with torch.no_grad():
        ref = net(x)
        net.reset()
        counter = OpCounter(net)
        with counter:
            assert any(m._forward_hooks for m in net.modules())
            out = net(x)
    assert torch.equal(ref, out)
    assert all(not m._forward_hooks for m in net.modules())
    assert counter.counts().steps == 6


def test_conv_layer_counts_by_hand():
    conv = Conv2d(1, 1, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, 0.0], [2.0, 3.0]]]]))   # tap (0, 1) is zero
    x = torch.zeros(2, 1, 3, 3)
    x[0, 0, 1, 1] = 1.0      # centre: reached by all 4 output positions, one tap each -> 3 nonzero taps
    x[1, 0, 0, 0] = 1.0      # corner: only output (0, 0) through tap (0, 0) -> 1
    x[1, 0, 0, 2] = 1.0      # top-right: only output (0, 1) through tap (0, 1), which is zero -> 0
    with OpCounter(conv, multistep=False) as c:
        conv(x[0:1])
        conv(x[1:2])
    lc = c.counts().layers["Conv2d"]
    assert lc.ops["ac"].tolist() == [3, 1]
    assert lc.ops["ac_dense"].tolist() == [16, 16]    # 4 outputs x 4 taps
    # brute force over the definition
    for t in range(2):
        ops = 0
        for oy in range(2):
            for ox in range(2):
                for ky in range(2):
                    for kx in range(2):
                        ops += int(x[t, 0, oy + ky, ox + kx] != 0 and conv.weight[0, 0, ky, kx] != 0)
        assert lc.ops["ac"][t] == ops


def test_recurrent_layer_events_are_out_degrees_of_spiking_neurons():
    # 3 neurons; neuron 0 -> 1 (w 0.5), 0 -> 2 (w 0, stored: no fan-out), neuron 1 -> 0, 1 -> 2; neuron 2 -> nothing
    syn = SparseLinear([0, 2, 4, 4], [1, 2, 0, 2], torch.tensor([0.5, 0.0, 0.2, 0.3], dtype=torch.float64), 3)
    drive = np.zeros((4, 3))
    drive[0, 0] = drive[1, 1] = drive[1, 2] = drive[2, 0] = drive[2, 1] = 5.0   # force spikes
    net = RecurrentNetwork(syn, LIFParams(tau_ms=10.0, v_th=1.0, v_reset=0.0, decay_input=False), GivenDrive(drive))
    res = net.run(4, engine="torch")
    steps = [set(res.spikes.step(t).tolist()) for t in range(4)]
    assert steps == [{0}, {1, 2}, {0, 1}, set()]
    c = count_recurrent(net, res)
    # delivered one step later: t1 <- {0}: 1; t2 <- {1, 2}: 2 + 0; t3 <- {0, 1}: 1 + 2
    assert c.layers["synapses"].ops["ac"].tolist() == [0, 1, 2, 3]
    fan = [1, 2, 0]
    expect = [0] + [sum(fan[i] for i in steps[t - 1]) for t in range(1, 4)]
    assert c.layers["synapses"].ops["ac"].tolist() == expect
    assert c.layers["neurons"].ops["spike"].tolist() == [1, 2, 2, 0]
    assert c.summary()["neuron_updates"] == 12


def test_attention_product_counts():
    q = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])          # [M=2, K=3]
    k = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])       # [K=3, N=2]
    # pairs (m, k, n) with q[m,k] and k[k,n] nonzero: m0: k0 -> 2, k2 -> 1; m1: k2 -> 1  => 4
    r = spiking_matmul_ops(q, k)
    assert (r["ac"], r["ac_dense"]) == (4, 12)
    g = spiking_matmul_ops(q * 0.3, k)
    assert (g["mac"], g["ac"]) == (4, 0)
    with pytest.raises(ShapeError):
        spiking_matmul_ops(q, q)


def test_ann_twin_counts_macs_and_energy_ratio():
    torch.manual_seed(0)
    net = SpikingSequential(Linear(6, 4), LIF(step_mode="m"), Linear(4, 2), LIF(step_mode="m"))
    twin = ann_twin(net)
    assert isinstance(twin[1], nn.ReLU) and torch.equal(twin[0].weight, net[0].weight)
    x = torch.tensor([[0.5, 0.0, 0.25, 0.3, 0.0, 1.0]])
    with torch.no_grad():
        _, c = count_run(twin, x, multistep=False)
        h = torch.relu(twin[0](x))
    assert c.layers["0"].ops["mac"].tolist() == [4 * 4]
    assert c.layers["2"].ops["mac"].tolist() == [int((h != 0).sum()) * 2]
    assert c.layers["1"].ops["nonlinear"].tolist() == [4]


def test_energy_is_counts_times_constants():
    x = torch.tensor([[[1.0, 1.0, 0.0, 1.0]], [[0.3, 0.0, 1.0, 0.0]]])
    net = SpikingSequential(Linear.from_weights(W), LIF(step_mode="m"))
    _, c = count_run(net, x)
    ops = {op: {"energy_j": 0.0, "source": "test"} for op in REQUIRED_OPS}
    ops["ac"]["energy_j"], ops["mac"]["energy_j"] = 2.0, 5.0
    ops["neuron_update_inactive"]["energy_j"] = 1.0
    ops["neuron_update_active"]["energy_j"] = 10.0
    m = parse_energy_model({"name": "toy", "ops": ops})
    rep = EnergyReport(c, [m])
    s = c.summary()
    assert s["synops_ac"] == 3 and s["synops_mac"] == 4
    expect = 2.0 * 3 + 5.0 * 4 + 10.0 * s["neuron_updates_active"] + 1.0 * s["neuron_updates_inactive"]
    assert rep.to_dict()["targets"]["toy"]["energy_j"] == pytest.approx(expect)
    dense = parse_energy_model({"name": "toy_dense", "counts": "dense", "ops": ops})
    assert EnergyReport(c, [dense]).energy["toy_dense"]["by_op"]["ac"] == 2.0 * 12


def test_builtin_models_have_a_source_for_every_constant():
    models = get_models("45nm,45nm_int8,loihi1,spinnaker1,spinnaker2,gpu")
    assert [m.name for m in models] == ["45nm", "45nm_int8", "loihi1", "spinnaker1", "spinnaker2", "gpu"]
    for m in models:
        assert set(REQUIRED_OPS) <= set(m.energy_j)
        assert all(m.sources[op].strip() for op in m.energy_j)
    h = models[0]
    assert h.energy_j["ac"] == 0.9e-12 and h.energy_j["mac"] == 4.6e-12
    lo = models[2]
    assert (lo.energy_j["ac"], lo.energy_j["neuron_update_active"], lo.energy_j["neuron_update_inactive"]) == \
        (23.6e-12, 81e-12, 52e-12)


def _write_model(tmp_path, ops, suffix=".json", name="mine"):
    import json

    p = tmp_path / f"model{suffix}"
    if suffix == ".json":
        p.write_text(json.dumps({"name": name, "ops": ops}))
    else:
        lines = [f'name = "{name}"']
        for op, e in ops.items():
            lines += [f"[ops.{op}]", f"energy_j = {e['energy_j']}", f'source = "{e["source"]}"']
        p.write_text("\n".join(lines) + "\n")
    return p


def _ops(**over):
    ops = {op: {"energy_j": 1e-12, "source": "test"} for op in REQUIRED_OPS}
    for k, v in over.items():
        ops[k] = {"energy_j": v, "source": "test"}
    return ops


def test_user_energy_models_json_and_toml(tmp_path):
    for suffix in (".json", ".toml"):
        d = tmp_path / suffix[1:]
        d.mkdir()
        m = load_energy_model(_write_model(d, _ops(ac=3e-12), suffix))
        assert m.name == "mine" and m.energy_j["ac"] == 3e-12


def test_bad_energy_models_name_file_and_key(tmp_path):
    ops = _ops()
    del ops["mac"]
    p = _write_model(tmp_path, ops)
    with pytest.raises(FormatError, match=r"model\.json.*ops\.mac.*missing"):
        load_energy_model(p)
    with pytest.raises(FormatError, match=r"ops\.ac.*energy_j.*>= 0"):
        load_energy_model(_write_model(tmp_path, _ops(ac=-1e-12)))
    with pytest.raises(FormatError, match=r"model\.toml.*ops\.spike.*finite"):
        load_energy_model(_write_model(tmp_path, _ops(spike="nan"), ".toml"))
    bad = _ops()
    bad["teleport"] = {"energy_j": 1e-12, "source": "x"}
    with pytest.raises(FormatError, match="unknown op type 'teleport'"):
        load_energy_model(_write_model(tmp_path, bad))
    nosrc = _ops()
    nosrc["ac"] = {"energy_j": 1e-12}
    with pytest.raises(FormatError, match=r"ops\.ac.*source"):
        load_energy_model(_write_model(tmp_path, nosrc))
    with pytest.raises(FormatError, match="cannot be parsed"):
        (tmp_path / "broken.json").write_text("{")
        load_energy_model(tmp_path / "broken.json")


def test_unsupported_layers_are_all_listed_before_running():
    model = nn.Sequential(nn.Linear(3, 3), nn.LSTM(3, 3), nn.Sequential(nn.ReLU(), nn.GRU(4, 3)))
    with pytest.raises(UnsupportedLayerError) as e:
        OpCounter(model)
    paths = [p for p, _ in e.value.items]
    assert paths == ["1", "2.1"]
    assert "LSTM" in str(e.value) and "GRU" in str(e.value)


def test_registered_rule_plugs_in_a_new_module_type():
    class Doubler(nn.Module):
        def forward(self, x):
            return 2 * x

    register_rule(Doubler, "nonlinear", lambda m, x, y, act: {"nonlinear": torch.full((x.shape[0],), x[0].numel())})
    _, c = count_run(nn.Sequential(Doubler()), torch.ones(2, 5), multistep=False)
    assert c.layers["0"].ops["nonlinear"].tolist() == [10]


def test_report_table_json_and_plot(tmp_path):
    torch.manual_seed(0)
    net = SpikingSequential(Linear(8, 6), LIF(step_mode="m"), Linear(6, 3), LIF(step_mode="m"))
    with torch.no_grad():
        net[0].weight.mul_(5)
    x = (torch.rand(5, 2, 8) < 0.5).float()
    _, c = count_run(net, x)
    twin = ann_twin(net)
    _, a = count_run(twin, x.mean(0), multistep=False)
    rep = EnergyReport(c, get_models("45nm,loihi1,spinnaker2,gpu"), ann=a)
    d = rep.to_dict()
    for key in ("synops_ac", "synops_mac", "neuron_updates", "ann_energy_j", "targets", "layers", "per_timestep"):
        assert key in d
    assert all(math.isfinite(t["energy_j"]) and t["energy_j"] > 0 for t in d["targets"].values())
    assert len(d["targets"]["45nm"]["per_timestep_j"]) == 5
    assert sum(d["targets"]["45nm"]["per_timestep_j"]) == pytest.approx(d["targets"]["45nm"]["energy_j"])
    assert "ANN/SNN" in rep.table()
    from neuro.energy import energy_figure
    from neuro.viz import save_figure

    assert save_figure(energy_figure(rep), tmp_path / "e.png").stat().st_size > 0


def test_single_step_mode_gives_the_same_counts_as_multi_step():
    torch.manual_seed(3)
    net = SpikingSequential(Linear(10, 8), LIF(tau_ms=2.0, step_mode="m"), Linear(8, 3), LIF(tau_ms=2.0, step_mode="m"))
    with torch.no_grad():
        net[0].weight.mul_(6.0)
    x = (torch.rand(6, 2, 10) < 0.5).float()
    _, cm = count_run(net, x)
    net.reset()
    net.set_step_mode("s")
    with torch.no_grad(), OpCounter(net) as c:
        outs = [net(x[t]) for t in range(6)]
    cs = c.counts()
    for op in ("ac", "mac", "spike", "neuron_update_active", "mem_read_byte"):
        assert cs.per_timestep(op).tolist() == cm.per_timestep(op).tolist()
    assert cs.steps == 6 and torch.stack(outs).shape == (6, 2, 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_column_activity_equals_its_definition(dtype):
    native = pytest.importorskip("neuro._native").NativeKernels
    g = torch.Generator().manual_seed(0)
    binary = (torch.rand(6, 5, 33, generator=g) < 0.2).to(dtype)
    signed = binary * torch.where(torch.rand(6, 5, 33, generator=g) < 0.5, -0.25, 0.25).to(dtype)
    graded = binary * torch.rand(6, 5, 33, generator=g, dtype=dtype)
    mixed = signed.clone()
    mixed[2, 0, 0], mixed[3, 1, 1], mixed[4] = -0.0, float("nan"), 0.0
    for x in (binary, signed, graded, mixed):
        cols, amax, same = native.column_activity(x)
        assert torch.equal(cols, (x != 0).sum(1))
        a = x.abs().nan_to_num(0.0).reshape(6, -1)
        assert torch.equal(amax[:2], a.amax(1).double()[:2])
        nz = x.reshape(6, -1) != 0
        want = [bool(not torch.isnan(x[t]).any() and (a[t][nz[t]] == a[t].max()).all()) for t in range(6)]
        assert same.tolist() == want


def test_delay_linear_counts_as_a_synapse_by_hand():
    from neuro.synapses.delay import DelayLinear

    w = torch.tensor([[1.0, 0.0, 2.0], [0.5, 0.0, 0.0]])          # fan-out per input: 2, 0, 1
    layer = DelayLinear.from_delays(w, torch.tensor([[0, 1, 2], [3, 0, 1]]), max_delay=3)
    x = torch.zeros(4, 2, 3)
    x[0, 0, 0] = x[0, 1, 2] = x[2, 1, 0] = x[3, 0, 1] = 1.0        # step 0: 2 + 1, step 2: 2, step 3: 0
    with torch.no_grad(), OpCounter(layer) as c:
        layer(x)
    lc = c.counts().layers["DelayLinear"]
    assert lc.kind == "synapse"
    assert lc.ops["ac"].tolist() == [3, 0, 2, 0] and lc.ops["mac"].tolist() == [0, 0, 0, 0]
    assert lc.ops["ac_dense"].tolist() == [12] * 4
    assert "neuron_update_active" not in lc.ops


def test_layer_panel_groups_small_layers_into_other():
    from matplotlib.figure import Figure

    from neuro.energy import EnergyReport, get_models
    from neuro.energy.plots import by_layer

    net = nn.Sequential(*[nn.Linear(4, 4) for _ in range(14)])
    _, c = count_run(net, torch.rand(3, 4), multistep=False)
    ax = Figure().subplots()
    by_layer(EnergyReport(c, get_models("45nm")), ax, max_layers=5)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(labels) == 5 and labels[-1] == "other (10 layers)"
