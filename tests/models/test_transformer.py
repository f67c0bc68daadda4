"""Reference Transformers: causal masking, the key/value cache, padding, save/load, config checks,
generation and evaluation."""
import math

import pytest
import torch

from neuro.core.errors import FormatError, ParameterError, ShapeError
from neuro.io import load_model, save_model
from neuro.models.transformer import (MASK_VALUE, Attention, GatedMLP, MatMul, Mul, RMSNorm, Rotary, Softmax,
                                      TransformerConfig, TransformerLM, config_for, evaluate_lm, generate)

V = 37
SMALL = dict(vocab_size=V, d_model=32, n_layer=2, n_head=4, max_seq=24)
DECODERS = {
    "gpt": config_for("gpt", **SMALL),
    "gpt_tanh_untied": config_for("gpt", mlp="gelu_tanh", tie_embeddings=False, **SMALL),
    "llama_gqa": config_for("llama", n_kv_head=2, **SMALL),
    "neox": config_for("neox", **SMALL),
    "neox_serial": config_for("neox", parallel_residual=False, rotary_pct=0.5, **SMALL),
}


def _model(cfg):
    torch.manual_seed(1)
    m = TransformerLM(cfg).eval()
    with torch.no_grad():  # non-trivial norms and biases, so every parameter matters
        for name, p in m.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    return m


@pytest.mark.parametrize("name", DECODERS)
def test_changing_a_future_token_leaves_earlier_logits_unchanged(name):
    m = _model(DECODERS[name])
    x = torch.randint(0, V, (2, 16))
    y = x.clone()
    y[:, 9] = (x[:, 9] + 1) % V
    with torch.no_grad():
        a, b = m(x), m(y)
    assert a.shape == (2, 16, V)
    torch.testing.assert_close(a[:, :9], b[:, :9], rtol=0, atol=1e-6)
    assert (a[:, 9:] - b[:, 9:]).abs().amax() > 1e-3  # the change is seen from its own position on


@pytest.mark.parametrize("name", DECODERS)
def test_decode_step_with_cache_equals_full_forward(name):
    m = _model(DECODERS[name])
    x = torch.randint(0, V, (3, 20))
    with torch.no_grad():
        full = m(x)  # [B, L, V]
        cache = m.init_cache(3)
        parts = []
        for a, b in ((0, 5), (5, 6), (6, 9), (9, 10), (10, 20)):  # prefill, single tokens, chunks
            logits, cache = m.decode_step(x[:, a:b], cache)
            parts.append(logits)
    assert cache.length == 20
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=0, atol=1e-5)


def test_cache_keeps_only_the_kv_heads():
    m = _model(DECODERS["llama_gqa"])
    _, cache = m.decode_step(torch.zeros(1, 3, dtype=torch.long), m.init_cache(1))
    assert cache.layers[0].k.shape == (1, 2, 3, 8) and cache.layers[1].v.shape == (1, 2, 3, 8)


def test_bert_encoder_padding_mask_hides_padded_keys():
    cfg = config_for("bert", **SMALL)
    m = _model(cfg)
    x = torch.randint(0, V, (2, 12))
    types = torch.zeros_like(x)
    types[:, 6:] = 1
    mask = torch.ones(2, 12)
    mask[1, 8:] = 0
    y = x.clone()
    y[1, 8:] = (x[1, 8:] + 3) % V  # other ids under the padding
    with torch.no_grad():
        h1, h2 = m(x, types, mask), m(y, types, mask)
        h_full = m(x, types, torch.ones(2, 12))
        h_types = m(x, None, mask)
    assert h1.shape == (2, 12, 32)
    torch.testing.assert_close(h1[1, :8], h2[1, :8], rtol=0, atol=1e-6)
    torch.testing.assert_close(h1[0], h2[0], rtol=0, atol=1e-6)
    # not causal: an early position sees later keys; the mask and the token types both matter
    assert (h1[1, :8] - h_full[1, :8]).abs().amax() > 1e-3
    assert (h1[:, :6] - h_types[:, :6]).abs().amax() > 1e-3
    with pytest.raises(ParameterError, match="causal"):
        m.init_cache(1)


@pytest.mark.parametrize("name", ["gpt", "llama_gqa", "neox"])
def test_save_load_round_trip(tmp_path, name):
    cfg = DECODERS[name].replace(vocab_chars="".join(chr(65 + i) for i in range(V)))
    m = _model(cfg)
    folder = save_model(m, tmp_path / name)
    back = load_model(folder)
    assert isinstance(back, TransformerLM) and back.config == cfg and back.vocab_chars == cfg.vocab_chars
    x = torch.randint(0, V, (2, 10))
    with torch.no_grad():
        assert torch.equal(m(x), back(x))
    if cfg.tie_embeddings:
        assert back.head.weight is back.embed.tok.weight


def test_bert_save_load_round_trip(tmp_path):
    m = _model(config_for("bert", **SMALL))
    back = load_model(save_model(m, tmp_path / "bert"))
    x = torch.randint(0, V, (1, 7))
    with torch.no_grad():
        assert torch.equal(m(x, torch.ones_like(x)), back(x, torch.ones_like(x)))
    assert back.head is None and back.norm_f is None and back.embed.type.weight.shape == (2, 32)


def test_module_tree_has_one_submodule_per_op():
    m = TransformerLM(config_for("llama", n_kv_head=2, **SMALL))
    kinds = {type(s) for s in m.modules()}
    assert {Attention, GatedMLP, RMSNorm, Rotary, MatMul, Softmax, Mul, torch.nn.SiLU} <= kinds
    attn = m.blocks[0].attn
    assert attn.q.out_features == 32 and attn.k.out_features == 16 and attn.rotary.dim == 8
    g = TransformerLM(config_for("gpt", **SMALL))
    assert g.blocks[1].attn.rotary is None and g.embed.pos.num_embeddings == 24 and g.embed.type is None
    assert isinstance(g.blocks[0].mlp.act, torch.nn.GELU) and g.head.weight is g.embed.tok.weight
    n = TransformerLM(config_for("neox", **SMALL))
    assert n.blocks[0].parallel_residual and n.blocks[0].attn.rotary.dim == 2  # 0.25 * 8


def test_rotary_scores_depend_only_on_relative_position():
    rot = Rotary(8, 10000.0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(pq, pk):
        return float((rot(q, torch.tensor([pq])) * rot(k, torch.tensor([pk]))).sum())

    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-5)
    assert score(0, 0) == pytest.approx(float((q * k).sum()), abs=1e-6)
    assert float(rot(q, torch.tensor([5])).norm()) == pytest.approx(float(q.norm()), rel=1e-6)
    # position 1, first frequency pair (theta_0 = 1): a plain 2-d rotation of channels (0, 4)
    e = torch.zeros(1, 1, 1, 8)
    e[..., 0] = 1.0
    out = rot(e, torch.tensor([1]))[0, 0, 0]
    assert float(out[0]) == pytest.approx(math.cos(1.0), abs=1e-6)
    assert float(out[4]) == pytest.approx(math.sin(1.0), abs=1e-6)


def test_rmsnorm_and_softmax_match_their_equations():
    x = torch.tensor([[3.0, -4.0]])
    n = RMSNorm(2, eps=0.0)
    torch.testing.assert_close(n(x), x / math.sqrt(12.5))
    s = Softmax()(torch.zeros(1, 3), torch.tensor([0.0, 0.0, MASK_VALUE]))
    assert s.tolist() == [[0.5, 0.5, 0.0]]


def test_config_defaults_and_presets():
    c = TransformerConfig(d_model=64, n_head=8)
    assert c.n_kv_head == 8 and c.d_ff == 256 and c.d_head == 8
    assert TransformerConfig.from_dict(c.to_dict()) == c
    ll = config_for("llama", **SMALL)
    assert ll.norm == "rmsnorm" and ll.mlp == "swiglu" and ll.pos == "rotary" and not ll.bias
    assert config_for("bert", **SMALL).is_encoder and not config_for("neox", **SMALL).is_encoder


@pytest.mark.parametrize("kw, field", [
    (dict(arch="t5"), "arch"),
    (dict(d_model=30, n_head=4), "d_model"),
    (dict(n_head=4, n_kv_head=3), "n_kv_head"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(norm="batchnorm"), "norm"),
    (dict(mlp="tanh"), "mlp"),
    (dict(pos="rotary", d_model=32, n_head=4, rotary_pct=0.2), "rotary_pct"),  # int(8 * 0.2) = 1: odd
    (dict(norm_eps=0.0), "norm_eps"),
    (dict(post_norm=True, parallel_residual=True), "post_norm"),
    (dict(arch="bert", causal=True, tie_embeddings=False), "causal"),
    (dict(arch="bert", causal=False, tie_embeddings=True), "tie_embeddings"),
    (dict(vocab_size=3, vocab_chars="ab"), "vocab_chars"),
    (dict(vocab_size=3, vocab_chars="aab"), "vocab_chars"),
    (dict(causal=1), "causal"),
])
def test_config_validation_names_the_field(kw, field):
    with pytest.raises(ParameterError) as e:
        TransformerConfig(**kw)
    assert e.value.field == field and e.value.owner == "TransformerConfig"


def test_unknown_config_field_and_bad_folder_config(tmp_path):
    with pytest.raises(ParameterError, match="a known field"):
        TransformerConfig.from_dict({"d_model": 32, "n_heads": 4})
    m = TransformerLM(config_for("gpt", **SMALL))
    folder = save_model(m, tmp_path / "m")
    cfg = folder / "config.json"
    cfg.write_text(cfg.read_text().replace('"n_head": 4', '"n_head": 5'))
    with pytest.raises(FormatError, match="n_head"):
        load_model(folder)


def test_bad_inputs_are_typed_errors():
    m = TransformerLM(config_for("gpt", **SMALL))
    with pytest.raises(ShapeError, match="max_seq"):
        m(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ShapeError, match="integer tensor"):
        m(torch.zeros(1, 5))
    cache = m.init_cache(1)
    _, cache = m.decode_step(torch.zeros(1, 20, dtype=torch.long), cache)
    with pytest.raises(ShapeError, match="exceed max_seq"):
        m.decode_step(torch.zeros(1, 5, dtype=torch.long), cache)
    with pytest.raises(ShapeError, match="batch"):
        m.decode_step(torch.zeros(2, 1, dtype=torch.long), cache)
    with pytest.raises(ParameterError, match="batch_size"):
        m.init_cache(0)


def test_greedy_generation_equals_repeated_full_forward():
    m = _model(DECODERS["llama_gqa"])
    prompt = torch.randint(0, V, (2, 4))
    out = generate(m, prompt, 8, temperature=0)
    ids = prompt
    with torch.no_grad():
        for _ in range(8):
            ids = torch.cat((ids, m(ids)[:, -1].argmax(-1, keepdim=True)), dim=1)
    assert torch.equal(out, ids)


def test_sampling_is_seeded_and_top_k_limits_the_choice():
    m = _model(DECODERS["gpt"])
    prompt = torch.zeros(1, 3, dtype=torch.long)
    a = generate(m, prompt, 40, temperature=1.5, generator=torch.Generator().manual_seed(3))  # passes max_seq 24
    b = generate(m, prompt, 40, temperature=1.5, generator=torch.Generator().manual_seed(3))
    assert a.shape == (1, 43) and torch.equal(a, b)
    top1 = generate(m, prompt, 10, top_k=1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(top1, generate(m, prompt, 10, temperature=0))
    with pytest.raises(ParameterError, match="temperature"):
        generate(m, prompt, 1, temperature=-1.0)
    with pytest.raises(ParameterError, match="top_k"):
        generate(m, prompt, 1, top_k=0)


class CountingLM:
    """Any object with init_cache/decode_step: predicts last token + 1 (mod 5), with certainty."""

    def init_cache(self, batch_size):
        return 0

    def decode_step(self, idx, cache):
        logits = torch.full((*idx.shape, 5), -50.0)
        logits.scatter_(-1, ((idx + 1) % 5)[..., None], 50.0)
        return logits, cache + idx.shape[1]


def test_generate_works_with_any_object_offering_the_streaming_methods():
    out = generate(CountingLM(), torch.tensor([[2]]), 6, top_k=2, generator=torch.Generator().manual_seed(0))
    assert out.tolist() == [[2, 3, 4, 0, 1, 2, 3]]


def test_evaluate_lm_uniform_model_scores_log_vocab():
    ids = torch.randint(0, 7, (101,))
    r = evaluate_lm(lambda x: torch.zeros(*x.shape, 7), ids, seq_len=16)
    assert r["tokens"] == 100
    assert r["loss"] == pytest.approx(math.log(7), rel=1e-6)
    assert r["perplexity"] == pytest.approx(7.0, rel=1e-6) and r["bpc"] == pytest.approx(math.log2(7), rel=1e-6)
    assert evaluate_lm(lambda x: torch.zeros(*x.shape, 7), ids, 16, max_chars=30)["tokens"] == 29


def test_evaluate_lm_equals_the_direct_cross_entropy():
    m = _model(DECODERS["neox"])
    ids = torch.randint(0, V, (49,))
    r = evaluate_lm(m, ids, seq_len=24)  # two windows of 24 predictions
    with torch.no_grad():
        x = ids[:48].view(2, 24)
        y = ids[1:49].view(2, 24)
        direct = torch.nn.functional.cross_entropy(m(x).reshape(-1, V), y.reshape(-1))
    assert r["loss"] == pytest.approx(float(direct), rel=1e-5)
    with pytest.raises(ParameterError, match="seq_len"):
        evaluate_lm(m, ids, seq_len=0)
    with pytest.raises(ShapeError, match="logits"):
        evaluate_lm(lambda x: torch.zeros(3), ids, seq_len=8)
