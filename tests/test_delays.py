"""Learnable per-synapse delays (neuro.synapses.delay) and their tasks (neuro.models.delays)."""
import json

import numpy as np
import pytest
import torch

from neuro.core.errors import FormatError, HardwareLimitError, ParameterError, ShapeError, StepModeError
from neuro.io import load_model, save_model
from neuro.models import delays as D
from neuro.models.sequential import SpikingSequential
from neuro.neurons import LIF
from neuro.synapses.delay import (DELAY_LIMITS, DelayLinear, SigmaSchedule, check_delay_limit, delay_conv,
                                  delay_projections, gaussian_taps)


def spikes(shape, p, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=torch.float64) < p).to(dtype)


def reference(x, weight, delays, bias=None):
    """y[t, b, o] = b_o + sum_i w[o, i] x[t - d[o, i], b, i], by loops (numpy)."""
    x, w, d = x.numpy(), weight.detach().numpy(), delays.numpy()
    T, B, _ = x.shape
    y = np.zeros((T, B, w.shape[0]))
    for o in range(w.shape[0]):
        for i in range(w.shape[1]):
            dd = d[o, i]
            y[dd:, :, o] += w[o, i] * x[:T - dd, :, i] if dd < T else 0
    if bias is not None:
        y += bias.detach().numpy()
    return y


# ------------------------------------------------------------------------ event path == training path
@pytest.mark.parametrize("n_in,n_out,max_delay,T,B,p", [(1, 1, 0, 5, 1, 0.5), (7, 3, 4, 20, 2, 0.3),
                                                        (16, 5, 11, 40, 3, 0.1), (40, 24, 25, 60, 4, 0.05)])
def test_event_driven_equals_training_layer_with_integer_positions(n_in, n_out, max_delay, T, B, p):
    torch.manual_seed(max_delay)
    layer = DelayLinear(n_in, n_out, max_delay, bias=True, init_delays="random_int", dtype=torch.float64)
    with torch.no_grad():  # dyadic weights: every sum is exact in float64, whatever the order
        layer.weight.copy_(torch.randint(-64, 65, layer.weight.shape) / 32.0)
        layer.bias.copy_(torch.randint(-8, 9, layer.bias.shape) / 8.0)
    x = spikes((T, B, n_in), p)
    dense = layer.dense(x, sigma=0.0)                          # training mode, one tap at integer positions
    layer.finalize()
    with torch.no_grad():
        event = layer(x)                                       # ring buffer
    assert torch.equal(event, dense)
    assert np.array_equal(event.numpy(), reference(x, layer.weight, layer.delays(), layer.bias))
    # streaming, one step at a time ('s' mode), equals the sequence
    layer.step_mode = "s"
    layer.reset()
    steps = torch.stack([layer(xt) for xt in x])
    assert torch.equal(steps, event)


def test_event_path_random_weights_float64_and_float32():
    layer = DelayLinear(30, 10, 7, dtype=torch.float64, init_delays="random_int")
    x = spikes((25, 3, 30), 0.2)
    ref = layer.dense(x, sigma=0.0)
    layer.finalize()
    with torch.no_grad():
        torch.testing.assert_close(layer(x), ref, rtol=0, atol=1e-13)
    l32 = DelayLinear(30, 10, 7)
    x32 = x.float()
    ref32 = l32.dense(x32, sigma=0.0)
    l32.finalize()
    with torch.no_grad():
        torch.testing.assert_close(l32(x32), ref32, rtol=1e-5, atol=1e-5)


def test_gaussian_taps_normalised_and_peak_at_position():
    pos = torch.tensor([[0.0, 2.5, 5.0]], dtype=torch.float64)
    taps = gaussian_taps(pos, 5, 1.0)
    torch.testing.assert_close(taps.sum(-1), torch.ones(1, 3, dtype=torch.float64))
    assert taps[0, 0].argmax() == 0 and taps[0, 2].argmax() == 5
    assert torch.isclose(taps[0, 1, 2], taps[0, 1, 3])
    hard = gaussian_taps(pos, 5, 0.0)
    assert hard.sum() == 3 and hard[0, 2, 5] == 1


def test_delay_conv_shifts_by_delay():
    x = torch.zeros(10, 1, 1, dtype=torch.float64)
    x[2, 0, 0] = 1.0
    k = torch.zeros(1, 1, 6, dtype=torch.float64)
    k[0, 0, 4] = 2.0
    y = delay_conv(x, k)
    assert y[6, 0, 0] == 2.0 and y.sum() == 2.0


def test_positions_get_gradients_and_clamp():
    layer = DelayLinear(4, 2, 6, dtype=torch.float64)
    x = spikes((12, 2, 4), 0.5)
    layer(x).pow(2).sum().backward()
    assert layer.positions.grad is not None and layer.positions.grad.abs().sum() > 0
    assert {id(p) for p in layer.position_parameters()} == {id(layer.positions)}
    assert id(layer.positions) not in {id(p) for p in layer.weight_parameters()}
    with torch.no_grad():
        layer.positions.add_(100.0)
    layer.clamp_positions()
    assert float(layer.positions.detach().max()) == 6.0


def test_sigma_schedule_shrinks_to_a_single_tap():
    s = SigmaSchedule(max_delay=9, epochs=40)
    assert s(0) == 5.0
    assert s(10) == pytest.approx(0.5)
    assert s(20) == 0.5 and s(39) == 0.0
    values = [s(e) for e in range(40)]
    assert values == sorted(values, reverse=True)
    with pytest.raises(ParameterError, match="SigmaSchedule.end"):
        SigmaSchedule(5, 10, end=0)


# ------------------------------------------------------------------------ bad input
def test_negative_delays_rejected():
    with pytest.raises(ParameterError, match=r"DelayLinear\.delays .*>= 0.*-1"):
        DelayLinear.from_delays(torch.ones(2, 2), torch.tensor([[0, -1], [1, 1]]), 3)


def test_non_integer_delays_rejected():
    with pytest.raises(ParameterError, match=r"DelayLinear\.delays must be integers.*1\.5"):
        DelayLinear.from_delays(torch.ones(2, 2), torch.tensor([[0.0, 1.5], [1.0, 1.0]]), 3)


def test_delays_beyond_max_delay_rejected():
    with pytest.raises(ParameterError, match=r"DelayLinear\.delays .*max_delay=3.*7"):
        DelayLinear.from_delays(torch.ones(2, 2), torch.tensor([[0, 7], [1, 1]]), 3)


def test_negative_max_delay_rejected():
    with pytest.raises(ParameterError, match=r"DelayLinear\.max_delay .*-2"):
        DelayLinear(3, 2, -2)


def test_non_integer_max_delay_rejected():
    with pytest.raises(ParameterError, match=r"DelayLinear\.max_delay .*2\.5"):
        DelayLinear(3, 2, 2.5)


def test_event_inference_before_finalize_rejected():
    layer = DelayLinear(3, 2, 4, step_mode="s")
    with pytest.raises(StepModeError, match="finalize"):
        layer(torch.ones(1, 3))


def test_non_integer_positions_at_inference_rejected():
    layer = DelayLinear(3, 2, 4)
    with torch.no_grad():
        layer.positions.fill_(1.25)
    with pytest.raises(ParameterError, match=r"DelayLinear\.delays must be integers.*1\.25"):
        layer.delays()


def test_wrong_input_width_rejected():
    with pytest.raises(ShapeError, match="5 features"):
        DelayLinear(3, 2, 4)(torch.zeros(4, 1, 5))


def test_hardware_limit_error_names_layer_and_limit():
    net = SpikingSequential(DelayLinear(4, 3, 70), LIF(step_mode="m"))
    with pytest.raises(HardwareLimitError, match=r"(?s)loihi2.*layer=0, max_delay=70, limit=62"):
        check_delay_limit(net, "loihi2")
    check_delay_limit(DelayLinear(4, 3, 62), "loihi2")          # at the limit: fine
    with pytest.raises(HardwareLimitError, match="limit=16"):
        check_delay_limit(DelayLinear(4, 3, 20), "spinnaker")
    with pytest.raises(HardwareLimitError, match="limit=7"):
        check_delay_limit(torch.tensor([[3, 9]]), "spinnaker2")
    with pytest.raises(ParameterError, match="target"):
        check_delay_limit(DelayLinear(4, 3, 2), "truenorth")
    assert set(DELAY_LIMITS) == {"loihi2", "spinnaker", "spinnaker2"}


# ------------------------------------------------------------------------ saving
def test_saved_folder_round_trip_keeps_delays(tmp_path):
    torch.manual_seed(0)
    net = SpikingSequential(DelayLinear(6, 5, 8, bias=True), LIF(step_mode="m"))
    net[0].finalize()
    x = spikes((20, 2, 6), 0.3, torch.float32)
    with torch.no_grad():
        before = net(x)
    save_model(net, tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["model"]["config"]["layers"][0]["config"]["finalized"] is True
    assert cfg["tensors"]["0.positions"]["shape"] == [5, 6]
    loaded = load_model(tmp_path / "m")
    assert torch.equal(loaded[0].delays(), net[0].delays())
    assert loaded[0].finalized and loaded[0].max_delay == 8
    net.reset()
    with torch.no_grad():
        assert torch.equal(loaded(x), before)


def test_saved_training_layer_round_trip(tmp_path):
    layer = DelayLinear(4, 3, 5, sigma=1.5)
    save_model(layer, tmp_path / "t")
    loaded = load_model(tmp_path / "t")
    assert loaded.sigma == 1.5 and not loaded.finalized
    assert torch.equal(loaded.positions, layer.positions)


def _tamper_positions(folder, value, index=(0, 0)):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    tensors["positions"][index] = value
    save_file(tensors, str(folder / "model.safetensors"))


def test_loaded_positions_outside_range_rejected(tmp_path):
    layer = DelayLinear(4, 3, 5)
    save_model(layer, tmp_path / "m")
    _tamper_positions(tmp_path / "m", 9.0)
    with pytest.raises(FormatError, match=r"model\.safetensors.*positions.*max_delay=5.*9\.0"):
        load_model(tmp_path / "m")


def test_loaded_non_integer_positions_in_finalized_layer_rejected(tmp_path):
    layer = DelayLinear(4, 3, 5).finalize()
    save_model(layer, tmp_path / "m")
    _tamper_positions(tmp_path / "m", 2.5)
    with pytest.raises(FormatError, match=r"positions must be integers.*2\.5"):
        load_model(tmp_path / "m")


# ------------------------------------------------------------------------ IR
def test_ir_projections_carry_each_synapse_delay():
    torch.manual_seed(1)
    layer = DelayLinear(6, 4, 5, dtype=torch.float64, init_delays="random_int").finalize()
    projs = delay_projections(layer, "in", "hidden")
    d, w = layer.delays().numpy(), layer.weight.detach().numpy()
    assert sum(p.nnz for p in projs) == 24
    rebuilt_w, rebuilt_d = np.zeros((4, 6)), np.full((4, 6), -1)
    for p in projs:
        dense = p.to_dense(4)
        mask = dense != 0
        rebuilt_w[mask] = dense[mask]
        rebuilt_d[mask] = p.delay_steps
    assert np.array_equal(rebuilt_w, w) and np.array_equal(rebuilt_d, d)


# ------------------------------------------------------------------------ tasks
def test_moving_bars_shapes_and_classes():
    x, y = D.moving_bars(64, pixels=8, steps=16, noise=0.0, seed=3)
    assert x.shape == (16, 64, 8) and y.shape == (64,)
    assert set(y.tolist()) <= {0, 1, 2, 3}
    assert torch.equal(x.sum((0, 2)), torch.full((64,), 8.0))          # one spike per pixel without noise
    k = int((y == 2).nonzero()[0])                                       # leftwards, 1 px/step: pixel 7 first
    first = x[:, k].argmax(0)
    assert first[7] < first[0] and int(first[0] - first[7]) == 7
    with pytest.raises(ParameterError, match="moving_bars.steps"):
        D.moving_bars(4, pixels=8, steps=4)


def test_digit_spike_trains_column_by_column():
    x, y = D.digit_spike_trains(steps_per_column=3)
    assert x.shape == (24, 1797, 8) and y.shape == (1797,)
    assert set(x.unique().tolist()) == {0.0, 1.0}


def test_motif_detector_learns_moving_bars_and_plots(tmp_path):
    torch.manual_seed(0)
    model, res = D.run_motif(epochs=80, n_train=512, n_test=256, pixels=10, steps=24, progress=False)
    assert res["test_accuracy"] >= 0.9, res
    assert model.delay.finalized and model.delay.delays().max() <= 9
    png = D.plot_delay_map(model, tmp_path / "map.png")
    assert png.stat().st_size > 5000


@pytest.mark.parametrize("task,opts", [("digits", dict(hidden=16, max_delay=8, steps_per_column=2)),
                                       ("motif", dict(steps=16))])
def test_compare_small_runs_all_three_modes_at_equal_parameters(task, opts):
    res = D.compare_delays(task, seeds=(0, 1), epochs=2, progress=False, n_max=200, **opts)
    assert set(res["accuracy"]) == {"none", "random", "learned"} and len(res["per_seed"]["none"]) == 2
    p = res["parameters"]
    assert abs(p["none"] - p["learned"]) / p["learned"] < 0.05 and p["none"] == p["random"]
    assert all(0 <= a <= 1 for a in res["accuracy"].values()) and isinstance(res["ordered"], bool)


def test_learned_delays_beat_random_beat_none_on_moving_bars():
    """The claim of the DCLS paper at our scale: the mean over seeds orders none < random < learned."""
    res = D.compare_delays("motif", seeds=(5, 6), epochs=60, progress=False, n_train=384, n_test=256)
    a = res["accuracy"]
    assert a["learned"] > 0.95 and a["learned"] > a["random"] + 0.05 and a["random"] > a["none"], res["per_seed"]


def test_compare_rejects_bad_arguments():
    with pytest.raises(ParameterError, match="task"):
        D.compare_delays("mnist")
    with pytest.raises(ParameterError, match="modes"):
        D.compare_delays("motif", modes=("none", "sometimes"))
    with pytest.raises(ParameterError, match="seeds"):
        D.compare_delays("motif", seeds=[])
    with pytest.raises(ParameterError, match="detectors"):
        D.MotifDetector(detectors=0)


@pytest.mark.parametrize("kernels", ["torch", None])
def test_event_steps_with_each_kernel_set_and_chunking(kernels):
    from neuro.synapses.delay import delay_event_steps, event_plan, init_ring

    layer = DelayLinear(12, 5, 6, bias=True, dtype=torch.float64, init_delays="random_int").finalize()
    x = spikes((23, 2, 12), 0.2)
    ref = layer.dense(x, sigma=0.0)
    plan = event_plan(layer.weight, layer.delays(), 6, layer.bias, kernels=kernels)
    state, outs = init_ring(2, 5, 6, torch.float64), []
    for chunk in x.split(5, 0):          # chunks of 5 steps, the last one of 3
        y, state = delay_event_steps(chunk, state, plan)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs), ref, rtol=0, atol=1e-13)
    with torch.no_grad():
        torch.testing.assert_close(layer.events(x, chunk=1), ref, rtol=0, atol=1e-13)
