"""Transformer -> spiking Transformer: exact equality with the quantized twin on GPT, Llama (GQA),
NeoX (partial rotary, parallel residual) and BERT (post-norm, padding, token types); the spiking
operators against their definitions; validation, calibration and T errors; saving, streaming."""
import pytest
import torch
from torch import nn

from neuro.converters import ConversionParams, SpikingTransformer, calibrate, convert, map_model, quantized_twin, validate
from neuro.converters.spiking_ops import (SpikingActivation, SpikingMatMul, bit_planes, exact_in_float32,
                                          quantize_codes, quantize_weight, step_difference)
from neuro.core.errors import FormatError, ParameterError, UnsupportedLayerError
from neuro.io import load_model, save_model
from neuro.models.transformer import TransformerLM, config_for, generate

V = 37


def tiny(arch, seed=0, **kw):
    """A tiny model with weights large enough that attention is far from uniform."""
    cfg = config_for(arch, vocab_size=V, d_model=24, n_layer=2, n_head=3, d_ff=40, max_seq=12, **kw)
    torch.manual_seed(seed)
    m = TransformerLM(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(4.0)
    return m


ARCHS = {
    "gpt": dict(),
    "llama": dict(n_kv_head=1),
    "neox": dict(rotary_pct=0.5),
    "bert": dict(),
}


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("T", [3, 8])
def test_spiking_model_equals_quantized_twin_exactly(arch, T):
    m = tiny(arch, **ARCHS[arch])
    calib = calibrate(m, [torch.randint(0, V, (3, 12))])
    p = ConversionParams(timesteps=T)
    snn, twin = map_model(m, calib, p), quantized_twin(m, calib, p)
    assert isinstance(snn, SpikingTransformer) and type(twin).__name__ == "QuantizedTransformer"
    x = torch.randint(0, V, (2, 12))
    kw = {}
    if arch == "bert":
        mask = torch.ones(2, 12, dtype=torch.long)
        mask[1, 7:] = 0
        kw = dict(attention_mask=mask, token_type_ids=torch.randint(0, 2, (2, 12)))
    y_snn, y_twin, y_ann = snn(x, **kw), twin(x, **kw), m(x, **kw)
    assert y_snn.shape == y_ann.shape and y_snn.dtype == y_ann.dtype
    assert torch.equal(y_snn, y_twin)
    cos = torch.nn.functional.cosine_similarity(y_snn.flatten().double(), y_ann.flatten().double(), 0)
    assert cos > (0.99 if T == 8 else 0.5)


def test_fidelity_improves_with_T_and_reaches_0999_at_16():
    m = tiny("gpt")
    calib = calibrate(m, torch.randint(0, V, (120,)))
    x = torch.randint(0, V, (2, 12))
    y = m(x).detach().double().flatten()
    err = []
    for T in (2, 4, 16):
        s = map_model(m, calib, ConversionParams(timesteps=T))(x).double().flatten()
        err.append(1 - float(torch.nn.functional.cosine_similarity(s, y, 0)))
    assert err[0] > err[1] > err[2] and err[2] < 1e-3


# ------------------------------------------------------------------------------------ operators
def test_bit_planes_are_msb_first_signed_powers_of_two():
    codes = torch.tensor([5.0, -3.0, 0.0, 7.0], dtype=torch.float64)
    planes = bit_planes(codes, 3)
    assert planes.tolist() == [[4, 0, 0, 4], [0, -2, 0, 2], [1, -1, 0, 1]]
    assert torch.equal(planes.double().sum(0), codes)


def test_quantize_codes_round_half_away_and_saturate():
    s = torch.tensor(0.25, dtype=torch.float64)
    a = torch.tensor([0.125, -0.125, 0.37, 10.0, -10.0], dtype=torch.float64)
    assert quantize_codes(a, s, 3).tolist() == [1.0, -1.0, 1.0, 7.0, -7.0]


def test_quantize_weight_is_integer_times_power_of_two_per_row():
    w = torch.tensor([[0.3, -0.1, 0.05], [2.0, 1.0, -0.5]])
    wq, step = quantize_weight(w, 4)  # |W_int| <= 7
    assert step.tolist() == [0.0625, 0.5]  # 2^ceil(log2(max / 7))
    ints = wq / step[:, None]
    assert torch.equal(ints, ints.round()) and ints.abs().max() <= 7


def test_running_sum_product_telescopes_to_the_product_of_sums():
    torch.manual_seed(1)
    a = bit_planes(torch.randint(-15, 16, (3, 5), dtype=torch.float64), 4)   # [T, n, k]
    b = bit_planes(torch.randint(-15, 16, (5, 2), dtype=torch.float64), 4)   # [T, k, m]
    o = SpikingMatMul()(a, b)                                                # [T, n, m]
    assert torch.equal(o.sum(0), a.double().sum(0) @ b.double().sum(0))
    sa, sb = a.double().cumsum(0), b.double().cumsum(0)
    assert torch.equal(o[2], sa[2] @ sb[2] - sa[1] @ sb[1])                  # O_t, running-sum form
    assert torch.equal(o[1], a[1].double() @ sb[1] + sa[0] @ b[1].double())  # the accumulate form


def test_accumulated_difference_operator_definition():
    act = SpikingActivation("gelu")
    act.grid.fill_(2.0 ** -10)
    x = torch.tensor([[0.5], [-1.25], [2.0]], dtype=torch.float64)          # [T, 1] currents
    y = act(x)
    f = lambda v: torch.round(torch.nn.functional.gelu(v.float()).double() * 1024) / 1024  # noqa: E731
    acc = x.cumsum(0)
    assert torch.equal(y[0], f(acc[0])) and torch.equal(y[2], f(acc[2]) - f(acc[1]))
    assert torch.equal(y.sum(0), f(acc[2]))
    assert torch.equal(step_difference(torch.tensor([1.0, 3.0, 2.0])), torch.tensor([1.0, 2.0, -1.0]))


def test_float32_exactness_bound():
    w = torch.full((2, 4), 3.0, dtype=torch.float64)
    step = torch.ones(2, dtype=torch.float64)
    assert exact_in_float32(w, step, torch.ones(4))
    assert not exact_in_float32(w, step, torch.tensor([1.0, 2.0 ** 23, 1.0, 1.0]))


def test_linear_layers_receive_only_signed_power_of_two_spikes():
    m = tiny("llama", n_kv_head=1)
    snn = convert(m, torch.randint(0, V, (36,)), timesteps=4)
    seen = []
    for name, mod in snn.named_modules():
        if type(mod).__name__ in ("SpikingLinear", "SpikingMatMul"):
            mod.register_forward_pre_hook(lambda mod, inp, name=name: seen.append((name, inp)))
    snn(torch.randint(0, V, (1, 6)))
    assert len(seen) == 2 * (4 + 3 + 2) + 1  # per block q k v o gate up down + qk pv; head
    for name, inp in seen:
        for t in inp:
            nz = t[t != 0].abs()
            mant, _ = torch.frexp(nz)
            assert bool((mant == 0.5).all()), name
            if name.endswith(("qk", "pv")):
                continue
            for step in range(t.shape[0]):  # linear inputs: at most one magnitude per channel and step
                v = t[step].abs().reshape(-1, t.shape[-1])
                assert bool(((v == 0) | (v == v.amax(0))).all()), name


# ------------------------------------------------------------------------------------ validate / errors
class Odd(nn.Module):
    def forward(self, x, mask=None):
        return x


def test_validate_lists_every_unsupported_module_before_converting():
    m = tiny("gpt")
    m.blocks[0].mlp.act = nn.Tanh()
    m.blocks[1].attn.softmax = Odd()
    with pytest.raises(UnsupportedLayerError) as e:
        convert(m, torch.randint(0, V, (24,)), timesteps=4)
    paths = [p for p, _ in e.value.items]
    assert paths == ["blocks.0.mlp.act", "blocks.1.attn.softmax"]
    assert "torch.nn.modules.activation.Tanh" in str(e.value) and "Odd" in str(e.value)
    with pytest.raises(UnsupportedLayerError):
        validate(nn.Sequential(nn.Linear(2, 2)))  # not a TransformerLM
    assert validate(tiny("neox")).summary()["Rotary"] == 2


@pytest.mark.parametrize("T", [0, -3])
def test_timesteps_below_one_are_refused(T):
    with pytest.raises(ParameterError, match="timesteps"):
        convert(tiny("gpt"), torch.randint(0, V, (24,)), timesteps=T)
    with pytest.raises(ParameterError, match="timesteps"):
        ConversionParams(timesteps=T)


def _char_model():
    chars = "".join(sorted(set("abcdefghij \n")))
    cfg = config_for("gpt", vocab_size=len(chars), d_model=16, n_layer=1, n_head=2, max_seq=8, vocab_chars=chars)
    return TransformerLM(cfg).eval()


def test_calibration_text_errors(tmp_path):
    m = _char_model()
    empty, latin, odd = tmp_path / "empty.txt", tmp_path / "latin1.txt", tmp_path / "odd.txt"
    empty.write_text("  \n", encoding="utf-8")
    latin.write_bytes("abc caf\xe9".encode("latin-1"))
    odd.write_text("abc dez", encoding="utf-8")
    with pytest.raises(FormatError, match="empty"):
        convert(m, empty, timesteps=4)
    with pytest.raises(FormatError, match="not UTF-8"):
        convert(m, latin, timesteps=4)
    with pytest.raises(FormatError, match="'z' at offset 6"):
        convert(m, odd, timesteps=4)
    with pytest.raises(FormatError, match="does not exist"):
        convert(m, tmp_path / "missing.txt", timesteps=4)
    good = tmp_path / "good.txt"
    good.write_text("abc def ghij\n" * 4, encoding="utf-8")
    snn = convert(m, good, timesteps=4)
    assert snn.records["calibrate"].tokens == 8 * 6  # 52 characters cut into windows of max_seq = 8


def test_calibration_ids_out_of_range_are_refused():
    with pytest.raises(ParameterError, match="token ids"):
        calibrate(tiny("gpt"), [torch.full((1, 4), V)])


# ------------------------------------------------------------------------------------ save, stream
def test_save_load_round_trip_and_streaming(tmp_path):
    m = tiny("llama", n_kv_head=1)
    snn = convert(m, torch.randint(0, V, (48,)), timesteps=5)
    x = torch.randint(0, V, (2, 9))
    y = snn(x)
    back = load_model(save_model(snn, tmp_path / "snn"))
    assert isinstance(back, SpikingTransformer) and back.timesteps == 5
    assert torch.equal(back(x), y)
    cache = snn.init_cache(2)
    y1, cache = snn.decode_step(x[:, :4], cache)
    y2, cache = snn.decode_step(x[:, 4:], cache)
    assert torch.equal(torch.cat((y1, y2), 1), y)  # streaming gives the same logits
    k_spikes = cache.layers[0][0]                   # [T, B, Hkv, S, dh]: the key spike trains
    assert k_spikes.shape == (5, 2, 1, 9, 8)
    mant, _ = torch.frexp(k_spikes[k_spikes != 0].abs())
    assert bool((mant == 0.5).all())
    out = generate(snn, x[:, :2], 4, temperature=0)
    assert out.shape == (2, 6) and torch.equal(out[:, :2], x[:, :2])
    with pytest.raises(ParameterError):
        map_model(tiny("bert"), calibrate(tiny("bert"), [x]), ConversionParams(timesteps=2)).init_cache(1)


def test_exactness_budget_tightens_the_spread_or_refuses():
    from neuro.converters.conversion import exact_spread

    cfg = config_for("gpt", vocab_size=V, d_model=64, n_head=1, max_seq=128)   # d_h = 64
    p16 = ConversionParams(timesteps=16)
    assert exact_spread("blocks.0.attn.enc_q", cfg, p16) == (52 - 6 - 32) // 2 == 7
    assert exact_spread("blocks.0.attn.enc_v", cfg, p16) == 8                  # 52 - 7 - 32 = 13 > 8
    assert exact_spread("blocks.0.mlp.enc_h", cfg, ConversionParams(timesteps=16, weight_bits=16,
                                                                      spread_bits=20)) == 52 - 8 - 15 - 16
    huge = config_for("gpt", vocab_size=V, d_model=64, n_head=1, max_seq=2 ** 21)
    with pytest.raises(ParameterError, match="exact float64"):
        exact_spread("blocks.0.attn.enc_v", huge, p16)


def test_headroom_rule():
    assert [ConversionParams(timesteps=T).headroom for T in (2, 8, 11, 12, 16)] == [1, 1, 1, 2, 3]
    assert ConversionParams(timesteps=16, headroom_bits=0).headroom == 0
    with pytest.raises(ParameterError):
        ConversionParams(headroom_bits=-1)


# ------------------------------------------------------------------------------------ headroom choice
def test_headroom_is_chosen_on_held_out_windows_and_recorded(tmp_path):
    import torch.nn.functional as F

    from neuro.converters.conversion import headroom_split

    m = tiny("gpt", seed=1)
    ids = torch.randint(0, V, (8 * 12,), generator=torch.Generator().manual_seed(3))   # 8 windows of max_seq = 12
    snn = convert(m, ids, timesteps=4)
    rec = snn.records["headroom"]
    assert rec.fit_tokens == 6 * 12 and rec.held_out_tokens == 2 * 12                # 3/4 fit, 1/4 held out
    assert sorted(rec.scores) == [0, 1] and rec.chosen == min(rec.scores, key=rec.scores.get)
    assert snn.params.headroom_bits == rec.chosen
    fit, held = ids[:72], ids[72:].view(2, 12)
    assert torch.equal(headroom_split(m, ids).held_out[0], held)
    for h, score in rec.scores.items():                                                # the score, recomputed
        twin = quantized_twin(m, calibrate(m, fit), ConversionParams(timesteps=4, headroom_bits=h))
        with torch.no_grad():
            ce = F.cross_entropy(twin(held)[:, :-1].double().reshape(-1, V), held[:, 1:].reshape(-1))
        assert score == pytest.approx(float(ce), rel=1e-12)
    x = torch.randint(0, V, (2, 12))
    same = convert(m, ids, timesteps=4, headroom_bits=rec.chosen)                       # ranges from all windows
    assert torch.equal(snn(x), same(x)) and "headroom" not in same.records
    back = load_model(save_model(snn, tmp_path / "snn"))
    assert back.params.headroom_bits == rec.chosen and torch.equal(back(x), snn(x))


def test_headroom_choice_candidates_and_when_it_is_skipped():
    from neuro.converters.conversion import choose_headroom, headroom_split

    m = tiny("gpt")
    split = headroom_split(m, torch.randint(0, V, (4 * 12,)))
    _, rec = choose_headroom(m, split, ConversionParams(timesteps=16))
    assert sorted(rec.scores) == [0, 1, 2, 3]                                          # 0 .. the rule's 3 bits
    p, rec = choose_headroom(m, split, ConversionParams(timesteps=4, headroom_bits=2))  # explicit: kept
    assert rec is None and p.headroom_bits == 2
    assert headroom_split(m, torch.randint(0, V, (12,))) is None                       # one window: nothing to hold out
    snn = convert(m, torch.randint(0, V, (12,)), timesteps=4)
    assert "headroom" not in snn.records and snn.params.headroom_bits is None and snn.params.headroom == 1
    enc = tiny("bert")
    _, rec = choose_headroom(enc, headroom_split(enc, torch.randint(0, V, (4 * 12,))), ConversionParams(timesteps=4))
    assert rec.metric == "1 - cosine" and all(0 <= v < 1 for v in rec.scores.values())


def test_chosen_headroom_beats_the_fixed_rule_on_the_bundled_gpt_at_T5():
    from neuro.converters.workflow import bundled_model_dir, eval_ids, load_any
    from neuro.data.text import CharTokenizer, tinyshakespeare
    from neuro.models.transformer import evaluate_lm

    m = load_any(bundled_model_dir("gpt-char")).eval()
    splits = tinyshakespeare()
    calib = CharTokenizer(list(m.config.vocab_chars)).encode(splits.tokenizer.decode(splits.train[:4096]))
    snn = convert(m, calib, timesteps=5)
    rec = snn.records["headroom"]
    assert rec.chosen == 0 and rec.scores[0] < rec.scores[1] - 0.02                  # nats per character
    rule = quantized_twin(m, snn.records["calibrate"], ConversionParams(timesteps=5))   # one bit of headroom
    ids = eval_ids(m, 2000)
    with torch.no_grad():
        chosen_ppl = evaluate_lm(snn.records["twin"], ids, 128)["perplexity"]
        rule_ppl = evaluate_lm(rule, ids, 128)["perplexity"]
        float_ppl = evaluate_lm(m, ids, 128)["perplexity"]
    assert chosen_ppl < rule_ppl and chosen_ppl < 1.05 * float_ppl < rule_ppl          # unseen text agrees
