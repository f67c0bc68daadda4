"""Fast paths of the spiking Transformer against the reference PyTorch path, bit for bit: the fused
native time-axis passes, event-driven synapses, float32 spike products and operator outputs where
provably exact (and their refusals), in-place evaluation; on edge cases (all-zero planes, T = 1,
saturation, ties on the grid, transposed trains, causal and padding masks, streaming) and on whole
converted GPT, Llama, NeoX and BERT models."""
import pytest
import torch

from neuro._native import timeaxis
from neuro.converters import ConversionParams, SpikingTransformer, calibrate, map_model, quantized_twin
from neuro.converters.spiking_ops import (DTYPE, AccDiff, BitSerialEncoder, GridOp, QuantActivation, SpikingActivation,
                                          SpikingLinear, SpikingMatMul, SpikingSoftmax, bit_planes, q_grid,
                                          quantize_codes, running_sum, step_difference, window_sum)
from neuro.core.errors import ParameterError
from neuro.models.transformer import causal_mask


# the fused passes need the compiled extension (optional at install, as for tests/test_native.py); the
# whole-model comparisons below run either way
native = pytest.mark.skipif(not timeaxis.available, reason="neuro._native._spiking not built")


@pytest.fixture
def fused_everywhere(monkeypatch):
    """Run the fused passes on tensors of any size (the default skips small ones)."""
    monkeypatch.setattr(timeaxis, "MIN_ELEMENTS", 0)


def reference(monkeypatch):
    """Switch to the reference path: every fused pass declines, the PyTorch expressions run."""
    monkeypatch.setattr(timeaxis, "available", False)


def dyadic(shape, bits=12, scale=2.0 ** -6, seed=0, dtype=DTYPE):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(-2 ** bits, 2 ** bits, shape, generator=g).to(DTYPE) * scale).to(dtype)


@native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("T", [1, 2, 7])
def test_running_and_window_sums_equal_cumsum(fused_everywhere, dtype, T):
    x = dyadic((T, 3, 5), dtype=dtype)
    x[:, 1] = 0                                                               # an all-zero row
    assert torch.equal(timeaxis.running_sum(x), torch.cumsum(x, 0, dtype=DTYPE))
    assert timeaxis.running_sum(x).dtype == DTYPE
    if dtype == torch.float32:
        assert torch.equal(timeaxis.window_sum(x), x.sum(0, dtype=DTYPE))
    # non-dyadic float64 input: the float32 result is the float64 sum rounded once
    y = torch.randn(T, 4, 6, dtype=DTYPE, generator=torch.Generator().manual_seed(T))
    assert torch.equal(timeaxis.running_sum_narrow(y), torch.cumsum(y, 0).to(torch.float32))
    assert torch.equal(timeaxis.running_sum_narrow(x), torch.cumsum(x, 0, dtype=DTYPE).to(torch.float32))


@native
def test_sums_of_transposed_and_sliced_trains(fused_everywhere):
    k = dyadic((3, 2, 4, 5, 6), dtype=torch.float32)                          # [T, B, S, H, d]
    views = (k.transpose(-2, -1), k.transpose(-3, -2), k.permute(0, 4, 2, 1, 3), k[:, :, 1:], k[:, :1])
    for v in views:                                                           # K^T, heads, any order; a slice
        assert torch.equal(running_sum(v), torch.cumsum(v, 0, dtype=DTYPE))
        assert torch.equal(window_sum(v), v.sum(0, dtype=DTYPE))


@native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_grid_diff_rounds_half_to_even_like_q_grid(fused_everywhere, dtype):
    g = torch.tensor(2.0 ** -3, dtype=DTYPE)
    # ties at +-0.5, +-1.5, +-2.5 grid steps, values far off the grid, zeros, T = 1 and T = 4
    ties = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.0, 1e-9, 3.3, -7.77]) * float(g)
    for T in (1, 4):
        x = (ties.repeat(T, 3, 1) * torch.arange(1, T + 1)[:, None, None]).to(dtype)   # [T, 3, 10]
        f, y = timeaxis.grid_diff(x, g)
        ref = q_grid(x, g).to(DTYPE)
        assert torch.equal(f, ref) and f.dtype == DTYPE
        assert torch.equal(y, step_difference(ref))
    assert torch.equal(timeaxis.grid_diff(x, g)[0][0, 0, :3], torch.tensor([0.0, 2.0, 2.0], dtype=DTYPE) * float(g))


@native
@pytest.mark.parametrize("T", [1, 3, 8, 16])
def test_encoder_planes_equal_the_reference(fused_everywhere, T):
    step = torch.exp2(torch.tensor([-3.0, -1.0, 0.0, -5.0], dtype=DTYPE))        # per channel
    a = dyadic((6, 4), bits=T + 2, scale=2.0 ** -5, seed=T)                     # some saturate at 2^T - 1
    a[2] = 0                                                                  # an all-zero row: zero planes
    a[3, 1] = 0.5 * float(step[1])                                            # exact tie: rounds away from zero
    codes = quantize_codes(a, step, T)
    ref = bit_planes(codes, T) * step.to(torch.float32)                       # [T, 6, 4]
    fused = timeaxis.encode(a, step, T)
    assert fused.dtype == torch.float32 and fused.shape == (T, 6, 4)
    assert torch.equal(fused, ref)
    assert torch.equal(fused.sum(0, dtype=DTYPE), codes * step)               # the planes add up to Q_T(a)
    assert not fused[:, 2].any()
    # the channels spiking at each step: exactly those with a nonzero plane
    assert torch.equal(fused._active_channels, (fused != 0).any(1))
    enc = BitSerialEncoder((4,), T)
    enc.step.copy_(step)
    x = torch.zeros(T, 6, 4, dtype=DTYPE)
    x[-1] = a
    assert torch.equal(enc(x), ref)
    # a step per element (per head and dimension, as enc_q) and a single step (as enc_p)
    for st in (torch.exp2(-(torch.arange(12, dtype=DTYPE) % 5)).reshape(3, 1, 4), torch.tensor([0.125], dtype=DTYPE)):
        a3 = dyadic((2, 3, 5, 4), bits=T + 1, scale=2.0 ** -4, seed=T + 1)
        ref3 = bit_planes(quantize_codes(a3, st, T), T) * st.to(torch.float32)
        assert torch.equal(timeaxis.encode(a3, st, T), ref3)


@native
def test_step_diff_and_widen_bias(fused_everywhere):
    f = dyadic((5, 3, 7))
    assert torch.equal(timeaxis.step_diff(f), torch.cat((f[:1], f[1:] - f[:-1])))
    y = dyadic((4, 3, 7), dtype=torch.float32)
    b = dyadic((7,), seed=3)
    ref = y.to(DTYPE)
    ref[0] += b
    assert torch.equal(timeaxis.widen_bias(y, b), ref)
    assert torch.equal(timeaxis.widen_bias(y, None), y.to(DTYPE))


@native
def test_fused_passes_decline_what_they_do_not_handle(fused_everywhere):
    x = dyadic((3, 4, 5))
    assert timeaxis.running_sum(x.transpose(1, 2)) is None                   # not contiguous
    assert timeaxis.running_sum(x.to(torch.int64)) is None                    # not a float
    assert timeaxis.step_diff(x.to(torch.float32)) is None                    # float64 only
    assert timeaxis.encode(x[0], torch.ones(2, 4, 5, dtype=DTYPE), 3) is None  # step would broadcast a
    assert timeaxis.encode(x[0], torch.ones(5, dtype=DTYPE), 17) is None      # more than 16 bits


def test_narrow_linear_output_is_exact_or_falls_back():
    lin = SpikingLinear(4, 3, bias=True)
    lin.weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 0.0], [0.25, 0.0, 1.0, 3.0], [0.0, 0.0, 0.0, 1.0]], dtype=DTYPE))
    lin.float32_exact.fill_(True)
    s = torch.zeros(3, 2, 4)
    s[0, 0, 1], s[1, 1, 0], s[2, 0, 3] = 4.0, -2.0, 1.0                      # spikes +-2^k
    lin.bias.copy_(torch.tensor([0.5, -1.0, 2.0 ** -30], dtype=DTYPE))
    wide = lin(s)
    assert wide.dtype == DTYPE
    lin.narrow_output = True
    narrow = lin(s)
    assert torch.equal(narrow.to(DTYPE), wide)
    assert narrow.dtype == torch.float32                                      # -8 + 0.5, -1, 2^-30: float32
    lin.bias[2] = 1.0 + 2.0 ** -40                                            # 1 + 2^-40 is not a float32
    fallback = lin(s)
    assert fallback.dtype == DTYPE and fallback[0, 0, 2] == 1.0 + 2.0 ** -40
    assert torch.equal(fallback[1:], narrow[1:].to(DTYPE))


class _Doubling(AccDiff, QuantActivation):
    """An accumulated-difference operator with its own evaluation (2 Q_g(f(x)))."""

    def evaluate(self, x):
        return 2 * GridOp.evaluate(self, x)


def test_accdiff_fast_path_equals_reference_and_honours_own_evaluate(fused_everywhere, monkeypatch):
    x = dyadic((4, 3, 6), bits=10, scale=2.0 ** -8)
    x[1:3, 1] = 0                                                             # rows that do not change
    act = _Doubling("gelu")
    act.grid.fill_(2.0 ** -10)
    out = act(x)
    ref = step_difference(2 * q_grid(torch.nn.functional.gelu(torch.cumsum(x, 0).float()), act.grid).to(DTYPE))
    assert torch.equal(out, ref)
    sm = SpikingSoftmax()
    sm.grid.fill_(2.0 ** -12)
    mask = causal_mask(6, 0).to(DTYPE)[:3]                                   # [3, 6]
    fast = sm(x, mask=mask)
    assert torch.equal(window_sum(fast), q_grid(torch.softmax(x.sum(0).float() + mask.float(), -1), sm.grid).to(DTYPE))
    assert torch.equal(fast._running_sum, running_sum(fast))
    reference(monkeypatch)
    slow = sm(x, mask=mask)
    assert torch.equal(fast, slow)


ARCHS = {"gpt": dict(), "llama": dict(n_kv_head=1), "neox": dict(rotary_pct=0.5)}  # + GQA, rotary, SwiGLU


@pytest.fixture
def tiny(tiny_lm):
    return lambda arch: tiny_lm(arch, vocab_size=29, d_model=32, n_layer=2, n_head=2, d_ff=64, max_seq=16,
                                **ARCHS.get(arch, {}))


@pytest.mark.parametrize("arch,T", [("gpt", 1), ("gpt", 4), ("llama", 4), ("neox", 3)])
def test_converted_decoder_fast_equals_reference_and_twin(fused_everywhere, monkeypatch, tiny, arch, T):
    m = tiny(arch)
    calib = calibrate(m, [torch.randint(0, 29, (3, 16))])
    p = ConversionParams(timesteps=T)
    snn, twin = map_model(m, calib, p), quantized_twin(m, calib, p)
    assert all(mod.narrow_output for mod in snn.modules() if isinstance(mod, SpikingLinear))
    x = torch.randint(0, 29, (2, 16))
    fast = snn(x)
    cache = snn.init_cache(2)
    step1, cache = snn.decode_step(x[:, :10], cache)                         # streaming: cached key/value trains
    step2, _ = snn.decode_step(x[:, 10:], cache)
    reference(monkeypatch)
    slow = snn(x)
    assert torch.equal(fast, slow)
    assert torch.equal(fast, twin(x))
    assert torch.equal(torch.cat((step1, step2), 1), slow)


def test_converted_bert_with_padding_fast_equals_reference_and_twin(fused_everywhere, monkeypatch, tiny):
    m = tiny("bert")
    calib = calibrate(m, [torch.randint(0, 29, (3, 16))])
    p = ConversionParams(timesteps=3)
    snn, twin = map_model(m, calib, p), quantized_twin(m, calib, p)
    x = torch.randint(0, 29, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, 9:] = 0                                                           # padding: a second, additive mask
    fast = snn(x, attention_mask=mask)
    reference(monkeypatch)
    assert torch.equal(fast, snn(x, attention_mask=mask))
    assert torch.equal(fast, twin(x, attention_mask=mask))


@native
def test_grid_diff32_is_exact_or_declines(fused_everywhere):
    g = 2.0 ** -10
    x = dyadic((3, 4, 5), bits=20, scale=2.0 ** -13)
    f, y = timeaxis.grid_diff32(x, g)
    ref = q_grid(x, torch.tensor(g, dtype=DTYPE))
    assert f.dtype == y.dtype == torch.float32
    assert torch.equal(f.to(DTYPE), ref) and torch.equal(y.to(DTYPE), step_difference(ref))
    x[1, 2, 3] = 2.0 ** 23 * g                                               # |x / g| = 2^23: not guaranteed
    assert timeaxis.grid_diff32(x, g) is None
    assert timeaxis.grid_diff32(x[:, :2].contiguous(), g) is not None
    assert timeaxis.grid_diff32(x[:, :2].contiguous(), 2.0 ** -127) is None               # a subnormal grid


@native
def test_scan_train(fused_everywhere):
    s = torch.zeros(3, 4, 5)
    s[0, 1, 2], s[2, 1, 2], s[1, 3, 0], s[1, 1, 4] = -0.5, 0.25, 2.0 ** -7, 1.0
    bar, u, pow2, top, rowmax = timeaxis.scan_train(s)
    sig = s.abs().sum(0, dtype=DTYPE)                                         # [4, 5]
    assert torch.equal(bar, torch.cumsum(s, 0, dtype=DTYPE).to(torch.float32))
    assert (u, pow2, top, rowmax) == (2.0 ** -7, True, float(sig.max()), float(sig.sum(1).max()))
    assert rowmax == 0.75 + 1.0
    s[1, 0, 0] = 0.75                                                         # not a power of two
    assert timeaxis.scan_train(s)[2] is False
    assert timeaxis.scan_train(torch.zeros(2, 3))[1:] == (float("inf"), True, 0.0, 0.0)
    wide = torch.zeros(2, 3, 3000)                                           # rows longer than a block
    wide[1, 2, 2999] = -4.0
    assert timeaxis.scan_train(wide)[1:] == (4.0, True, 4.0, 4.0)


def spikes(shape, T, seed, scale=2.0 ** -4):
    """MSB-first spike trains of random codes (as an encoder makes them)."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(-(2 ** T - 1), 2 ** T, shape, generator=g).to(DTYPE)
    return bit_planes(codes, T) * scale


@native
@pytest.mark.parametrize("narrow", [False, True])
def test_float32_spike_product_equals_float64(fused_everywhere, monkeypatch, narrow):
    T = 4
    a, b = spikes((2, 3, 6, 5), T, 1), spikes((2, 3, 7, 5), T, 2).transpose(-2, -1)  # b: a K^T view
    mm = SpikingMatMul()
    mm.narrow_output = narrow
    assert mm._float32_bars(a, b) is not None                                 # provably exact here
    fast = mm(a, b)
    assert fast.dtype == (torch.float32 if narrow else DTYPE)
    ref = step_difference(torch.matmul(torch.cumsum(a, 0, dtype=DTYPE), torch.cumsum(b, 0, dtype=DTYPE)))
    assert torch.equal(fast.to(DTYPE), ref) and torch.equal(running_sum(fast), ref._running_sum)
    # refused: a spike that is not a power of two, or sums beyond 2^24 units
    a2 = a.clone()
    a2[1, 0, 0, 0, 0] = 0.75
    assert mm._float32_bars(a2, b) is None
    big = spikes((2, 3, 6, 64), 12, 3)
    assert mm._float32_bars(big, spikes((2, 3, 64, 5), 12, 4)) is None
    assert torch.equal(mm(a2, b).to(DTYPE), step_difference(torch.matmul(torch.cumsum(a2, 0, dtype=DTYPE),
                                                                           torch.cumsum(b, 0, dtype=DTYPE))))
    zero = torch.zeros_like(a)                                               # all-zero planes
    assert not mm(zero, b).any()


@native
def test_event_driven_linear_equals_dense(fused_everywhere):
    T, n_in = 6, 16
    enc = BitSerialEncoder((n_in,), T)
    enc.step.copy_(torch.exp2(-torch.arange(n_in, dtype=DTYPE) % 4))
    a = dyadic((5, n_in), bits=T - 2, scale=2.0 ** -3, seed=7)               # small codes: leading planes empty
    a[:, :4] *= 8                                                             # a few channels reach the top bits
    x = torch.zeros(T, 5, n_in, dtype=DTYPE)
    x[0] = a
    s = enc(x)
    counts = s._active_channels.sum(1)
    assert counts[0] < n_in // 2 and counts[-1] > n_in // 2                   # both kinds of step occur
    lin = SpikingLinear(n_in, 3, bias=True)
    lin.weight.copy_(dyadic((3, n_in), bits=6, scale=2.0 ** -5, seed=8))
    lin.bias.copy_(dyadic((3,), bits=6, scale=2.0 ** -9, seed=9))
    lin.float32_exact.fill_(True)
    event = lin(s)
    dense = lin(s.clone())                                                    # no _active_channels: one product
    assert torch.equal(event, dense)
    ref = s.to(DTYPE) @ lin.weight.t()
    ref[0] += lin.bias
    assert torch.equal(event, ref)
    empty = enc(torch.zeros(T, 5, n_in, dtype=DTYPE))                        # every step empty
    assert torch.equal(lin(empty)[1:], torch.zeros(T - 1, 5, 3, dtype=DTYPE))


@native
def test_narrow_accdiff_output_is_exact_or_stays_float64(fused_everywhere):
    act = SpikingActivation("relu")
    act.grid.fill_(2.0 ** -8)
    act.narrow_output = True
    x = dyadic((3, 4, 6), bits=10, scale=2.0 ** -8)
    out = act(x)
    assert out.dtype == torch.float32 and out._running_sum.dtype == torch.float32
    ref = step_difference(q_grid(torch.relu(torch.cumsum(x, 0).float()), act.grid).to(DTYPE))
    assert torch.equal(out.to(DTYPE), ref) and torch.equal(running_sum(out), ref._running_sum)
    x[0, 0, 0] = 2.0 ** 16                                                    # 2^24 grid steps: float64 output
    wide = act(x)
    assert wide.dtype == DTYPE
    assert torch.equal(wide, step_difference(q_grid(torch.relu(torch.cumsum(x, 0).float()), act.grid).to(DTYPE)))


@pytest.mark.parametrize("name", ["gelu", "gelu_tanh", "relu", "silu"])
def test_activations_in_place_equal_the_reference_and_leave_inputs_alone(fused_everywhere, monkeypatch, name):
    act = SpikingActivation(name)
    act.grid.fill_(2.0 ** -12)
    act.narrow_output = True
    x = dyadic((4, 3, 8), bits=10, scale=2.0 ** -7, dtype=torch.float32)
    sent = step_difference(torch.cumsum(x, 0, dtype=DTYPE).to(torch.float32))  # carries its sender's membrane
    membrane = sent._running_sum.clone()
    fast, fast_sent = act(x), act(sent)
    assert torch.equal(sent._running_sum, membrane)                           # a sender's membrane is not overwritten
    reference(monkeypatch)
    slow = act(x)
    assert slow.dtype == DTYPE and torch.equal(fast.to(DTYPE), slow) and torch.equal(fast_sent.to(DTYPE), slow)
    assert torch.equal(slow, step_difference(q_grid(act.fn(torch.cumsum(x, 0, dtype=DTYPE).float()), act.grid).to(DTYPE)))


def test_residual_add_and_float32_bias(fused_everywhere):
    x = dyadic((3, 4, 5))
    for a in (dyadic((3, 4, 5), seed=1, dtype=torch.float32), dyadic((3, 4, 5), seed=2)):
        assert torch.equal(timeaxis.add_wide(x, a), x + a)
    assert timeaxis.add_wide(x, x[:, :2].clone()) is None                     # shapes differ
    assert timeaxis.add_wide(x.to(torch.float32), x) is None                  # the stream must be float64
    y = dyadic((4, 5), dtype=torch.float32)
    b = dyadic((5,), seed=3, scale=2.0 ** -10)
    ref = (y.to(DTYPE) + b).to(torch.float32)
    y2 = y.clone()
    assert timeaxis.add_bias32(y2, b) is True and torch.equal(y2, ref)
    b[2] = 2.0 ** -40                                                         # that sum is not a float32 number
    y3 = y.clone()
    assert timeaxis.add_bias32(y3, b) is False and torch.equal(y3, y)         # left as it was
    assert timeaxis.add_bias32(y, b[:4]) is None                              # bias of the wrong width


def test_outputs_of_earlier_calls_stay_intact(fused_everywhere, tiny):
    m = tiny("gpt")
    calib = calibrate(m, [torch.randint(0, 29, (3, 16))])
    p = ConversionParams(timesteps=4)
    snn, twin = map_model(m, calib, p), quantized_twin(m, calib, p)
    x1, x2 = torch.randint(0, 29, (2, 15)), torch.randint(0, 29, (2, 15))
    _, cache = snn.decode_step(x1, snn.init_cache(2))                         # the cache holds key/value trains
    keys = [lc[0].clone() for lc in cache.layers]
    y1 = snn(x1)
    assert torch.equal(y1, twin(x1))
    y2 = snn(x2)                                                              # the same shapes: buffers reused
    assert torch.equal(y2, twin(x2)) and not torch.equal(y1, y2)
    assert all(torch.equal(lc[0], k) for lc, k in zip(cache.layers, keys))    # the cached trains are untouched
    assert torch.equal(snn.decode_step(x2[:, :1], cache)[0], snn(torch.cat((x1, x2[:, :1]), 1))[:, -1:])


def test_converted_model_checks_its_config_and_params(tiny):
    m = tiny("gpt")
    from_dicts = SpikingTransformer(m.config.to_dict(), ConversionParams(timesteps=2).to_dict())
    assert from_dicts.timesteps == 2 and from_dicts.config == m.config
    with pytest.raises(ParameterError, match="params"):
        SpikingTransformer(m.config, params=3)
    with pytest.raises(ParameterError, match="TransformerConfig"):
        SpikingTransformer(3, ConversionParams(timesteps=2))


@native
def test_spike_matmul_accumulates_the_rows_of_the_spikes(fused_everywhere):
    g = torch.Generator().manual_seed(11)
    s = (torch.randint(-1, 2, (7, 40), generator=g) * (torch.rand(7, 40, generator=g) < 0.1)).float()
    s *= torch.exp2(-torch.randint(0, 5, (7, 40), generator=g).float())       # signed powers of two
    s[2] = 0                                                                  # a silent row
    s[3, 17:] = 0                                                             # a silent run of 16 and more
    wt = dyadic((40, 9), bits=8, scale=2.0 ** -6, seed=12, dtype=torch.float32)
    out = torch.full((7, 9), float("nan"))
    assert timeaxis.spike_matmul(s, wt, out)
    assert torch.equal(out, s @ wt) and torch.equal(out[2], torch.zeros(9))
    assert not timeaxis.spike_matmul(s.double(), wt, out)                     # float32 only
    assert not timeaxis.spike_matmul(s, wt[:, :4], out)                       # shapes must agree


@native
def test_linear_mixes_event_channel_and_dense_steps(fused_everywhere, monkeypatch):
    T, n_in = 6, 32
    enc = BitSerialEncoder((n_in,), T)
    a = dyadic((40, n_in), bits=T - 1, scale=2.0 ** -3, seed=13)              # leading planes sparse
    a[:3, :3] = 40.0                                                          # a few channels reach the top bits
    x = torch.zeros(T, 40, n_in, dtype=DTYPE)
    x[0] = a
    s = enc(x)
    assert s._step_spikes == [int((p != 0).sum()) for p in s]                 # the encoder's counts
    density = [n / s[0].numel() for n in s._step_spikes]
    assert 0 < density[0] < density[-1] and s._active_channels[2].sum() < n_in // 2
    lin = SpikingLinear(n_in, 8, bias=False)
    lin.weight.copy_(dyadic((8, n_in), bits=6, scale=2.0 ** -5, seed=14))
    lin.float32_exact.fill_(True)
    ref = s.to(DTYPE) @ lin.weight.t()
    # leading steps by active channels, then dense; by spikes, then dense; by spikes at every step
    for cut in (0.0, density[0] * 1.01, 1.0):
        monkeypatch.setattr(SpikingLinear, "event_below", staticmethod(lambda n_out, c=cut: c))
        assert torch.equal(lin(s), ref)


@native
def test_encoder_blocks_split_rows_of_channels(fused_everywhere):
    T, C = 5, 7                                                               # 2048-wide blocks end mid-row
    step = torch.exp2(-torch.arange(C, dtype=DTYPE) % 3)
    a = dyadic((700, C), bits=T + 1, scale=2.0 ** -2, seed=21)
    a[:, 4] = 0                                                               # a silent channel
    out = timeaxis.encode(a, step, T)
    ref = bit_planes(quantize_codes(a, step, T), T) * step.to(torch.float32)
    assert torch.equal(out, ref)
    assert torch.equal(out._active_channels, (ref != 0).any(1)) and not out._active_channels[:, 4].any()
    assert out._step_spikes == [int((p != 0).sum()) for p in ref]
