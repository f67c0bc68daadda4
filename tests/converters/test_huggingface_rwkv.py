"""Hugging Face ``RwkvForCausalLM`` folders load into :class:`RWKVLM` with equal logits, in both forms."""
import pytest
import torch

from neuro.converters.huggingface import from_hf, import_transformers, load_hf_folder
from neuro.core.errors import FormatError
from neuro.models.rwkv import RWKVLM

V, L = 37, 12


def _hf_folder(tmp_path, name="rwkv", **over):
    tf = import_transformers()
    torch.manual_seed(0)
    opts = dict(vocab_size=V, hidden_size=16, num_hidden_layers=3, attention_hidden_size=16, intermediate_size=40,
                context_length=64, rescale_every=0, layer_norm_epsilon=1e-5)
    opts.update(over)
    hf = tf.RwkvForCausalLM(tf.RwkvConfig(**opts)).eval()
    with torch.no_grad():  # away from the initialisation, so every parameter matters (time_first is all 1 there)
        for p in hf.parameters():
            p.add_(0.3 * torch.randn_like(p))
    folder = tmp_path / name
    hf.save_pretrained(folder, safe_serialization=True)
    return hf, folder


def test_logits_equal_huggingface(tmp_path):
    hf, folder = _hf_folder(tmp_path)
    m = load_hf_folder(folder)
    assert isinstance(m, RWKVLM) and m.config.d_attn == 16 and m.config.d_ff == 40 and not m.training
    idx = torch.randint(0, V, (2, L), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = hf(idx).logits
        got = m(idx)
    assert got.shape == (2, L, V)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("batch, chunk", [(1, 1), (2, 3)])  # HF's one-token path broadcasts wrongly for batch > 1
def test_recurrent_form_equals_huggingface_state_passing(tmp_path, batch, chunk):
    hf, folder = _hf_folder(tmp_path)
    m = load_hf_folder(folder)
    idx = torch.randint(0, V, (batch, L), generator=torch.Generator().manual_seed(2))
    state, hf_state = m.init_cache(batch), None
    with torch.no_grad():
        for t in range(0, L, chunk):
            out = hf(idx[:, t:t + chunk], state=hf_state, use_cache=True)
            hf_state = out.state
            got, state = m.decode_step(idx[:, t:t + chunk], state)
            torch.testing.assert_close(got, out.logits, rtol=0, atol=1e-5)
    assert state.length == L
    # HF's state: [0] channel-mix shift, [1] time-mix shift, [2] numerator, [3] denominator, [4] log scale,
    # each [B, D or C, n_layer]
    for i, ls in enumerate(state.layers):
        torch.testing.assert_close(ls.ffn_x, hf_state[0][:, :, i], rtol=0, atol=1e-5)
        torch.testing.assert_close(ls.att_x, hf_state[1][:, :, i], rtol=0, atol=1e-5)
        torch.testing.assert_close(ls.wkv.p, hf_state[4][:, :, i], rtol=0, atol=1e-5)
        scale = torch.exp(ls.wkv.p - hf_state[4][:, :, i])
        torch.testing.assert_close(ls.wkv.b * scale, hf_state[3][:, :, i], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ls.wkv.a * scale, hf_state[2][:, :, i], rtol=1e-5, atol=1e-6)


def test_rescaled_huggingface_model_maps_to_the_unscaled_weights(tmp_path):
    # tiny LayerNorm eps: the halved stream is then invisible to every norm, so the outputs must agree
    hf, folder = _hf_folder(tmp_path, rescale_every=1, layer_norm_epsilon=1e-12)
    idx = torch.randint(0, V, (1, L), generator=torch.Generator().manual_seed(3))
    hf.rwkv.ln_out.eps = 1e-12
    with torch.no_grad():
        want = hf(idx).logits  # eval: HF divides block i's output weights by 2^i and halves the stream
    assert hf.rwkv.layers_are_rescaled
    m, loaded = from_hf(hf), load_hf_folder(folder)  # a rescaled live model and the folder give one model
    assert m.config.out_norm_eps == 1e-12 and loaded.config.norm_eps == 1e-12
    for (name, a), b in zip(m.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(m(idx), want, rtol=0, atol=1e-5)


def test_misshapen_rwkv_tensor_is_a_format_error(tmp_path):
    from safetensors.torch import load_file, save_file

    _, folder = _hf_folder(tmp_path)
    sd = load_file(str(folder / "model.safetensors"))
    key = next(k for k in sd if k.endswith("attention.time_decay"))
    sd[key] = torch.zeros(5)
    save_file(sd, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(FormatError, match="time_decay"):
        load_hf_folder(folder)
