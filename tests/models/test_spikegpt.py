"""SpikeGPT: binary spikes, streaming = sequence form, surrogate gradients everywhere, saving, generation, errors."""
import pytest
import torch

from neuro.cli import main
from neuro.core.errors import ParameterError, ShapeError
from neuro.data import CharTokenizer
from neuro.io import load_model, save_model
from neuro.models.rwkv import ChannelMix, TimeMix
from neuro.models.spikegpt import SpikeGPT, SpikeGPTConfig
from neuro.models.transformer import generate
from neuro.neurons import LIF

CHARS = "\n abcdefgh"


def _model(seed=0, d=16, layers=2, vocab=len(CHARS), active=True):
    """A small SpikeGPT; ``active``: the zero-initialised output weights drawn at random, so the LIFs fire."""
    torch.manual_seed(seed)
    m = SpikeGPT(SpikeGPTConfig(vocab_size=vocab, d_model=d, n_layer=layers, vocab_chars=CHARS if vocab == len(CHARS)
                                else None))
    if active:
        with torch.no_grad():
            for b in m.blocks:
                for lin in (b.att.output, b.ffn.value, b.ffn.receptance):
                    torch.nn.init.normal_(lin.weight, 0.0, 1.0)
    return m


def _spikes(m, idx):
    out = {}
    hooks = [mod.register_forward_hook(lambda _m, i, o, n=n: out.__setitem__(n, o.detach()))
             for n, mod in [("binary", m.binary)] + m.lifs()]
    m(idx)
    for h in hooks:
        h.remove()
    return out


def test_reuses_the_rwkv_modules_and_spikegpt_lif():
    m = _model()
    assert all(isinstance(b.att, TimeMix) and isinstance(b.ffn, ChannelMix) for b in m.blocks)
    lifs = [lif for _, lif in m.lifs()]
    assert len(lifs) == 4 and all(isinstance(lif, LIF) and lif.step_mode == "m" for lif in lifs)
    p = lifs[0].params
    assert (p.tau_ms, p.v_th, p.v_reset, p.decay_factor, p.decay_input) == (2.0, 1.0, 0.0, 0.5, True)
    assert lifs[0].surrogate.alpha == 2.0


def test_spikes_are_binary_and_the_residual_counts_them():
    m = _model()
    idx = torch.randint(0, len(CHARS), (2, 20))
    s = _spikes(m, idx)
    for name, t in s.items():
        assert set(t.unique().tolist()) <= {0.0, 1.0}, name
    assert 0.0 < float(s["binary"].mean()) < 1.0 and any(float(t.mean()) > 0 for n, t in s.items() if n != "binary")
    rates = m.spike_rates(idx)
    assert rates == {n: pytest.approx(float(t.mean())) for n, t in s.items()}
    # the embedding is the Heaviside of the table row: H(e) with H(0) = 1
    assert torch.equal(s["binary"], (m.emb(idx) >= 0).float())


def test_lif_runs_over_the_token_axis():
    m = _model(layers=1)
    idx = torch.randint(0, len(CHARS), (3, 7))
    blk = m.blocks[0]
    cur = blk.att(blk.ln1(m.binary(m.emb(idx))))  # [B, L, D]
    v, want = torch.zeros_like(cur[:, 0]), []
    for t in range(7):  # SpikeGPT's LIF by hand: H = V + (X - V) / 2, spike at H >= 1, hard reset to 0
        h = v + (cur[:, t] - v) / 2
        s = (h >= 1).float()
        want.append(s)
        v = h * (1 - s)
    assert torch.equal(_spikes(m, idx)["blocks.0.lif1"], torch.stack(want, 0))  # the LIF sees [L, B, D]


def test_streaming_equals_the_sequence_form_exactly():
    m = _model().eval()
    idx = torch.randint(0, len(CHARS), (2, 24))
    with torch.no_grad():
        full = m(idx)
        st = m.init_cache(2)
        parts = []
        for a, b in ((0, 5), (5, 6), (6, 24)):  # a chunk, a single token, the rest
            out, st = m.decode_step(idx[:, a:b], st)
            parts.append(out)
    assert torch.equal(torch.cat(parts, 1), full) and st.length == 24


def test_surrogate_gradients_reach_every_parameter():
    m = _model(layers=2)
    idx = torch.randint(0, len(CHARS), (2, 16))
    torch.nn.functional.cross_entropy(m(idx).flatten(0, 1), torch.randint(0, len(CHARS), (32,))).backward()
    none = [n for n, p in m.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert none == []


def test_save_load_round_trip_and_generate_cli(tmp_path, capsys):
    m = _model().eval()
    folder = save_model(m, tmp_path / "sg")
    back = load_model(folder)
    assert isinstance(back, SpikeGPT) and back.config == m.config
    idx = torch.randint(0, len(CHARS), (1, 12))
    assert torch.equal(back(idx), m(idx))
    rc = main(["generate", str(folder), "--prompt", "ha ", "--tokens", "10", "--temperature", "0"])
    tok = CharTokenizer(list(CHARS))
    want = tok.decode(generate(m, tok.encode("ha ")[None], 10, temperature=0)[0])
    assert rc == 0 and capsys.readouterr().out == want + "\n"


def test_errors_name_the_bad_value():
    with pytest.raises(ParameterError, match="tau"):
        SpikeGPTConfig(tau=1.0)
    with pytest.raises(ParameterError, match="vocab_chars"):
        SpikeGPTConfig(vocab_size=3, vocab_chars="ab")
    with pytest.raises(ParameterError, match="config"):
        SpikeGPT(42)
    m = _model(layers=1)
    with pytest.raises(ShapeError, match="idx"):
        m(torch.zeros(4))
    with pytest.raises(ParameterError, match="batch_size"):
        m.init_cache(0)
    with pytest.raises(ShapeError, match="batch 2"):
        m.decode_step(torch.zeros(2, 1, dtype=torch.long), m.init_cache(1))
    with pytest.raises(ParameterError, match="state"):
        m.decode_step(torch.zeros(1, 1, dtype=torch.long), None)
