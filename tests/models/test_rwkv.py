"""Reference RWKV-4: the WKV operator's forms, sequence vs streaming equality, save/load, config checks,
typed errors, generation (also through ``neuro generate``) and evaluation."""
import json
import math

import pytest
import torch
from torch import nn

from neuro.cli import main
from neuro.core.errors import ParameterError, ShapeError
from neuro.data import CharTokenizer
from neuro.io import load_model, save_model
from neuro.models.rwkv import (P0, WKV, RWKVConfig, RWKVLM, RWKVState, SquaredReLU, TokenShift, token_shift,
                               wkv_init, wkv_parallel, wkv_scan, wkv_step)
from neuro.models.transformer import Mul, evaluate_lm, generate

V = 29
CHARS = "\n abcdefghijklmnopqrstuvwxyz."


def _model(dtype=torch.float64, **over):
    torch.manual_seed(1)
    cfg = dict(vocab_size=V, d_model=16, n_layer=3, d_attn=12, d_ff=40)
    cfg.update(over)
    m = RWKVLM(RWKVConfig(**cfg)).to(dtype).eval()
    with torch.no_grad():  # away from the initialisation (zero output weights), so every parameter matters
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


def _naive_wkv(w, u, k, v):
    """The defining sums, directly (float64, moderate keys only)."""
    B, L, C = k.shape
    out = torch.empty_like(k)
    for t in range(L):
        num = torch.exp(u + k[:, t]) * v[:, t]
        den = torch.exp(u + k[:, t])
        for i in range(t):
            e = torch.exp((t - 1 - i) * w + k[:, i])
            num, den = num + e * v[:, i], den + e
        out[:, t] = num / den
    return out


def _wkv_inputs(scale=1.0, L=9):
    g = torch.Generator().manual_seed(0)
    C = 6
    w = -torch.exp(torch.randn(C, generator=g, dtype=torch.float64))
    u = torch.randn(C, generator=g, dtype=torch.float64)
    k = scale * torch.randn(2, L, C, generator=g, dtype=torch.float64)
    v = torch.randn(2, L, C, generator=g, dtype=torch.float64)
    return w, u, k, v


def test_wkv_forms_equal_the_defining_sums():
    w, u, k, v = _wkv_inputs()
    want = _naive_wkv(w, u, k, v)
    torch.testing.assert_close(wkv_parallel(w, u, k, v), want, rtol=0, atol=1e-12)
    torch.testing.assert_close(wkv_scan(w, u, k, v)[0], want, rtol=0, atol=1e-12)


def test_wkv_forms_stay_finite_and_equal_where_plain_exponentials_overflow():
    w, u, k, v = _wkv_inputs(scale=800.0)  # e^800 overflows float64
    assert not torch.isfinite(torch.exp(k)).all()
    a, b = wkv_parallel(w, u, k, v), wkv_scan(w, u, k, v)[0]
    assert torch.isfinite(a).all()
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    # a weighted average of the values seen so far: within their running range
    lo, hi = torch.cummin(v, 1).values, torch.cummax(v, 1).values
    assert (a >= lo - 1e-12).all() and (a <= hi + 1e-12).all()


def test_wkv_step_analytic_values():
    w, u = torch.tensor([-0.5]), torch.tensor([0.2])
    s = wkv_init(1, 1)
    assert s.p.item() == torch.tensor(P0).item() and s.a.item() == 0 and s.b.item() == 0
    o1, s = wkv_step(w, u, torch.tensor([[1.0]]), torch.tensor([[3.0]]), s)
    assert o1.item() == pytest.approx(3.0)  # only the current token: its value
    o2, s = wkv_step(w, u, torch.tensor([[0.0]]), torch.tensor([[-1.0]]), s)
    e_old, e_new = math.exp(1.0), math.exp(0.2 + 0.0)  # e^{0*w + k_0}, e^{u + k_1}
    assert o2.item() == pytest.approx((e_old * 3.0 + e_new * -1.0) / (e_old + e_new), rel=1e-6)
    # the state after two tokens: A = e^w e^{k_0} v_0 + e^{k_1} v_1, B likewise
    A = math.exp(-0.5 + 1.0) * 3.0 + math.exp(0.0) * -1.0
    Bd = math.exp(-0.5 + 1.0) + math.exp(0.0)
    assert (s.a * torch.exp(s.p)).item() == pytest.approx(A, rel=1e-6)
    assert (s.b * torch.exp(s.p)).item() == pytest.approx(Bd, rel=1e-6)


def test_wkv_gradients_of_both_forms_agree():
    w, u, k, v = _wkv_inputs(L=7)
    grads = []
    for fn in (wkv_parallel, lambda *a: wkv_scan(*a)[0]):
        leaves = [t.clone().requires_grad_() for t in (w, u, k, v)]
        (fn(*leaves) * torch.linspace(-1, 1, 6, dtype=torch.float64)).sum().backward()
        grads.append([t.grad for t in leaves])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def test_token_shift_and_squared_relu():
    x = torch.arange(12.0).view(1, 4, 3)
    assert token_shift(x).tolist() == [[[0, 0, 0], [0, 1, 2], [3, 4, 5], [6, 7, 8]]]
    last = torch.tensor([[-1.0, -2.0, -3.0]])
    assert TokenShift()(x, last)[0, 0].tolist() == [-1, -2, -3]
    assert SquaredReLU()(torch.tensor([-2.0, 0.0, 3.0])).tolist() == [0.0, 0.0, 9.0]


def test_sequence_form_equals_token_by_token_streaming():
    m = _model()
    idx = torch.randint(0, V, (2, 20), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = m(idx)  # [B, L, V]
        state, outs = m.init_cache(2), []
        for t in range(20):
            o, state = m.decode_step(idx[:, t:t + 1], state)
            outs.append(o)
        torch.testing.assert_close(torch.cat(outs, 1), full, rtol=0, atol=1e-10)
        assert state.length == 20 and state.batch_size == 2
        state, outs = m.init_cache(2), []  # uneven chunks
        for a, b in ((0, 7), (7, 8), (8, 20)):
            o, state = m.decode_step(idx[:, a:b], state)
            outs.append(o)
        torch.testing.assert_close(torch.cat(outs, 1), full, rtol=0, atol=1e-10)


def test_state_has_a_constant_size_and_carries_the_past():
    m = _model()
    idx = torch.randint(0, V, (1, 30), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        _, s10 = m.decode_step(idx[:, :10], m.init_cache(1))
        _, s30 = m.decode_step(idx[:, 10:], s10)
        sizes = [[t.numel() for t in (ls.att_x, ls.ffn_x, ls.wkv.a, ls.wkv.b, ls.wkv.p)] for ls in s30.layers]
        assert sizes == [[16, 16, 12, 12, 12]] * 3
        assert sizes == [[t.numel() for t in (ls.att_x, ls.ffn_x, ls.wkv.a, ls.wkv.b, ls.wkv.p)] for ls in s10.layers]
        fresh, _ = m.decode_step(idx[:, 10:], m.init_cache(1))
        carried, _ = m.decode_step(idx[:, 10:], s10)
        assert (fresh - carried).abs().max() > 1e-3  # the past matters


def test_changing_a_future_token_leaves_earlier_logits_unchanged():
    m = _model()
    x = torch.randint(0, V, (2, 16), generator=torch.Generator().manual_seed(5))
    y = x.clone()
    y[:, 9] = (x[:, 9] + 1) % V
    with torch.no_grad():
        a, b = m(x), m(y)
    assert torch.equal(a[:, :9], b[:, :9]) and (a[:, 9:] - b[:, 9:]).abs().max() > 1e-6


def test_module_tree_has_one_submodule_per_swappable_op():
    m = RWKVLM(RWKVConfig(vocab_size=V, d_model=8, n_layer=2))
    kinds = {type(mod) for mod in m.modules()}
    assert {TokenShift, WKV, nn.Sigmoid, SquaredReLU, Mul, nn.Linear, nn.LayerNorm, nn.Embedding} <= kinds
    att, ffn = m.blocks[0].att, m.blocks[0].ffn
    assert isinstance(att.wkv, WKV) and isinstance(att.sigmoid, nn.Sigmoid) and isinstance(att.shift, TokenShift)
    assert isinstance(ffn.act, SquaredReLU) and isinstance(ffn.shift, TokenShift)
    # RWKV-4 initialisation: decays spread over [-5, 3], output weights zero
    td = att.wkv.time_decay.detach()
    assert td[0].item() == pytest.approx(-5.0) and td[-1].item() == pytest.approx(3.0)
    assert torch.count_nonzero(att.output.weight) == 0 and torch.count_nonzero(ffn.value.weight) == 0


def test_save_load_round_trip(tmp_path):
    m = _model(torch.float32, vocab_size=len(CHARS), vocab_chars=CHARS)
    folder = save_model(m, tmp_path / "rwkv")
    assert json.loads((folder / "config.json").read_text())["model"]["class"] == "RWKVLM"
    back = load_model(folder)
    assert isinstance(back, RWKVLM) and back.config == m.config and back.vocab_chars == CHARS
    idx = torch.randint(0, len(CHARS), (2, 11))
    with torch.no_grad():
        assert torch.equal(back.eval()(idx), m(idx))


@pytest.mark.parametrize("kw, field", [(dict(d_model=0), "d_model"), (dict(n_layer=-1), "n_layer"),
                                       (dict(d_attn=0), "d_attn"), (dict(norm_eps=0.0), "norm_eps"),
                                       (dict(vocab_size=3, vocab_chars="ab"), "vocab_chars"),
                                       (dict(vocab_size=2, vocab_chars="aa"), "vocab_chars")])
def test_config_validation_names_the_field(kw, field):
    with pytest.raises(ParameterError) as e:
        RWKVConfig(**kw)
    assert e.value.field == field


def test_config_defaults():
    c = RWKVConfig(d_model=24)
    assert c.d_attn == 24 and c.d_ff == 96
    with pytest.raises(ParameterError, match="config"):
        RWKVLM("not a config")


def test_bad_inputs_are_typed_errors():
    m = _model(torch.float32)
    with pytest.raises(ShapeError, match="idx"):
        m(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ShapeError, match="idx"):
        m(torch.zeros(1, 4))
    with pytest.raises(ParameterError, match="batch_size"):
        m.init_cache(0)
    with pytest.raises(ParameterError, match="state"):
        m.decode_step(torch.zeros(1, 1, dtype=torch.long), None)
    with pytest.raises(ShapeError, match="batch"):
        m.decode_step(torch.zeros(2, 1, dtype=torch.long), m.init_cache(1))
    s = m.init_cache(1)
    wrong = RWKVState(s.layers[:2], 0, 1)
    with pytest.raises(ShapeError, match="2 layers"):
        m.decode_step(torch.zeros(1, 1, dtype=torch.long), wrong)
    other = _model(torch.float32, d_model=8, d_attn=8).init_cache(1)  # a state of another model's widths
    with pytest.raises(ShapeError, match=r"att_x is \(1, 8\), expected \(1, 16\)"):
        m.decode_step(torch.zeros(1, 1, dtype=torch.long), other)


def test_non_finite_wkv_parameters_are_parameter_errors():
    m = _model(torch.float32)
    with torch.no_grad():
        m.blocks[1].att.wkv.time_decay[3] = float("nan")
    with pytest.raises(ParameterError, match="channel 3") as e:
        m(torch.zeros(1, 3, dtype=torch.long))
    assert e.value.owner == "WKV" and e.value.field == "time_decay"
    with torch.no_grad():
        m.blocks[1].att.wkv.time_decay[3] = 0.0
        m.blocks[0].att.wkv.time_first[0] = float("inf")
    with pytest.raises(ParameterError, match="time_first"):
        m.decode_step(torch.zeros(1, 1, dtype=torch.long), m.init_cache(1))


def test_greedy_generation_equals_repeated_full_forward():
    m = _model(torch.float64)
    prompt = torch.tensor([[1, 2, 3]])
    out = generate(m, prompt, 12, temperature=0)
    ids = prompt
    with torch.no_grad():
        for _ in range(12):
            ids = torch.cat((ids, m(ids)[:, -1].argmax(-1, keepdim=True)), 1)
    assert torch.equal(out, ids)


def test_neuro_generate_cli_streams_an_rwkv_folder(tmp_path, capsys):
    m = _model(torch.float32, vocab_size=len(CHARS), vocab_chars=CHARS)
    folder = save_model(m, tmp_path / "rwkv-char")
    rc = main(["generate", str(folder), "--prompt", "ab c", "--tokens", "40", "--temperature", "0"])
    assert rc == 0
    tok = CharTokenizer(list(CHARS))
    want = tok.decode(generate(m, tok.encode("ab c")[None], 40, temperature=0)[0])
    assert capsys.readouterr().out == want + "\n" and len(want) == 44
    rc = main(["generate", str(folder), "--prompt", "x", "--tokens", "25", "--seed", "3", "--json"])
    s = json.loads(capsys.readouterr().out)
    assert rc == 0 and s["class"] == "RWKVLM" and len(s["text"]) == 26 and set(s["text"]) <= set(CHARS)


def test_evaluate_lm_equals_the_direct_cross_entropy():
    m = _model(torch.float64)
    ids = torch.randint(0, V, (50,), generator=torch.Generator().manual_seed(6))
    r = evaluate_lm(m, ids, 12)
    with torch.no_grad():
        total = 0.0
        for s in range(0, 49, 12):
            x, y = ids[s:min(s + 12, 49)][None], ids[s + 1:min(s + 13, 50)][None]
            total += torch.nn.functional.cross_entropy(m(x)[0], y[0], reduction="sum").item()
    assert r["tokens"] == 49 and r["loss"] == pytest.approx(total / 49, rel=1e-6)  # scored in float32
    assert r["perplexity"] == pytest.approx(math.exp(r["loss"]))


def test_training_step_reaches_every_parameter():
    m = RWKVLM(RWKVConfig(vocab_size=V, d_model=8, n_layer=2)).train()
    idx = torch.randint(0, V, (2, 6))
    torch.nn.functional.cross_entropy(m(idx).reshape(-1, V), idx.roll(-1, 1).reshape(-1)).backward()
    with torch.no_grad():  # zero-initialised output weights stop the gradient into their inputs at step 0 only
        for lin in [b.att.output for b in m.blocks] + [b.ffn.value for b in m.blocks]:
            assert lin.weight.grad.abs().sum() > 0
    m.zero_grad()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    torch.nn.functional.cross_entropy(m(idx).reshape(-1, V), idx.roll(-1, 1).reshape(-1)).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []
