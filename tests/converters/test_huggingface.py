"""Hugging Face folders -> TransformerLM: tiny random GPT-2, GPT-NeoX, Llama (GQA) and BERT models,
saved with save_pretrained and loaded back with no network; outputs equal; bad folders are typed errors."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from neuro.converters.huggingface import PickleRefusedError, from_hf, import_transformers, load_hf_folder
from neuro.core.errors import FormatError, UnsupportedLayerError
from neuro.models.transformer import TransformerLM

VOCAB = 100


def _configs(tf):
    common = dict(vocab_size=VOCAB, initializer_range=0.2)  # large weights: attention far from uniform
    return {
        "gpt2": (tf.GPT2LMHeadModel, tf.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                                   bos_token_id=0, eos_token_id=0, **common)),
        "neox": (tf.GPTNeoXForCausalLM, tf.GPTNeoXConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                         intermediate_size=64, max_position_embeddings=64, **common)),
        "llama": (tf.LlamaForCausalLM, tf.LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                                      num_attention_heads=4, num_key_value_heads=2,
                                                      max_position_embeddings=64, **common)),
        "bert": (tf.BertModel, tf.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                             intermediate_size=64, max_position_embeddings=64, **common)),
    }


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> (HF model in eval mode, folder written by save_pretrained)."""
    tf = import_transformers()
    torch.manual_seed(0)
    out = {}
    for name, (cls, cfg) in _configs(tf).items():
        hf = cls(cfg).eval()
        with torch.no_grad():  # non-trivial norm gains and biases
            for pname, p in hf.named_parameters():
                if p.dim() == 1:
                    p.add_(0.1 * torch.randn_like(p))
        folder = tmp_path_factory.mktemp(name)
        hf.save_pretrained(folder, safe_serialization=True)
        out[name] = (hf, folder)
    return out


def _copy_folder(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("name", ["gpt2", "neox", "llama"])
def test_decoder_logits_equal_the_hf_model(saved, name):
    hf, folder = saved[name]
    m = load_hf_folder(folder)
    assert isinstance(m, TransformerLM) and m.config.arch == {"gpt2": "gpt", "neox": "neox", "llama": "llama"}[name]
    x = torch.randint(0, VOCAB, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(input_ids=x).logits
        got = m(x)
        # the streaming path equals the HF model too
        cache = m.init_cache(2)
        a, cache = m.decode_step(x[:, :13], cache)
        b, cache = m.decode_step(x[:, 13:], cache)
    assert float(ref.abs().amax()) > 1.0
    torch.testing.assert_close(got, ref, rtol=0, atol=2e-5)
    torch.testing.assert_close(torch.cat((a, b), 1), ref, rtol=0, atol=2e-5)


def test_mapped_configs_follow_the_hf_configs(saved):
    g = from_hf(saved["gpt2"][0]).config
    assert g.mlp == "gelu_tanh" and g.tie_embeddings and g.pos == "learned" and g.max_seq == 64
    n = from_hf(saved["neox"][0]).config
    assert n.parallel_residual and n.rotary_pct == 0.25 and n.rotary_dim == 2 and not n.tie_embeddings
    ll = from_hf(saved["llama"][0]).config
    assert ll.n_kv_head == 2 and ll.n_head == 4 and ll.norm == "rmsnorm" and ll.mlp == "swiglu" and not ll.bias
    b = from_hf(saved["bert"][0]).config
    assert b.arch == "bert" and b.post_norm and not b.causal and b.type_vocab_size == 2 and b.norm_eps == 1e-12


def test_bert_hidden_states_equal_the_hf_model_with_padding(saved):
    hf, folder = saved["bert"]
    m = load_hf_folder(folder)
    x = torch.randint(0, VOCAB, (3, 16), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(3, 16, dtype=torch.long)
    mask[1, 10:] = 0
    mask[2, 4:] = 0
    types = torch.zeros_like(x)
    types[:, 8:] = 1
    with torch.no_grad():
        ref = hf(input_ids=x, attention_mask=mask, token_type_ids=types).last_hidden_state
        got = m(x, types, mask)
        unpadded = m(x, types)
    real = mask.bool()
    torch.testing.assert_close(got[real], ref[real], rtol=0, atol=2e-5)
    assert float((unpadded[1, :10] - got[1, :10]).abs().amax()) > 1e-3  # the padding mask matters


def test_pickle_checkpoint_is_refused_unless_trusted(saved, tmp_path):
    hf, folder = saved["neox"]
    d = tmp_path / "pickled"
    d.mkdir()
    shutil.copy(folder / "config.json", d / "config.json")
    torch.save(hf.state_dict(), d / "pytorch_model.bin")
    with pytest.raises(PickleRefusedError, match="trust_pickle") as e:
        load_hf_folder(d)
    assert isinstance(e.value, FormatError) and e.value.file.endswith("pytorch_model.bin")
    m = load_hf_folder(d, trust_pickle=True)
    x = torch.randint(0, VOCAB, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(m(x), hf(input_ids=x).logits, rtol=0, atol=2e-5)


class NotATensor:
    """A pickled object that weights_only loading must refuse."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_trusted_pickle_is_still_loaded_with_weights_only(saved, tmp_path, capsys):
    d = tmp_path / "evil"
    d.mkdir()
    shutil.copy(saved["gpt2"][1] / "config.json", d / "config.json")
    torch.save({"transformer.wte.weight": torch.zeros(VOCAB, 32), "payload": NotATensor()}, d / "pytorch_model.bin")
    with pytest.raises(FormatError, match="weights_only"):
        load_hf_folder(d, trust_pickle=True)
    assert "must never run" not in capsys.readouterr().out


def test_folder_without_weights(saved, tmp_path):
    d = tmp_path / "noweights"
    d.mkdir()
    shutil.copy(saved["llama"][1] / "config.json", d / "config.json")
    with pytest.raises(FormatError, match="holds no weights") as e:
        load_hf_folder(d)
    assert e.value.file.endswith("model.safetensors")
    with pytest.raises(FormatError, match="no such model folder"):
        load_hf_folder(tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FormatError, match="config.json"):
        load_hf_folder(empty)


def test_shapes_that_do_not_match_config_name_file_and_tensor(saved, tmp_path):
    d = _copy_folder(saved["llama"][1], tmp_path / "mismatch")
    cfg = json.loads((d / "config.json").read_text())
    cfg["intermediate_size"] = 80
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(FormatError) as e:
        load_hf_folder(d)
    assert e.value.file.endswith("model.safetensors") and e.value.field == "shape"
    assert "mlp" in e.value.node and "80" in str(e.value)


def test_a_tensor_missing_from_the_file_is_named(saved, tmp_path):
    d = _copy_folder(saved["gpt2"][1], tmp_path / "missing")
    sd = load_file(d / "model.safetensors")
    victim = next(k for k in sd if k.endswith("h.1.mlp.c_fc.weight"))
    del sd[victim]
    save_file(sd, d / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(FormatError, match="missing from the weights") as e:
        load_hf_folder(d)
    assert e.value.node.endswith("h.1.mlp.c_fc.weight")


def test_corrupt_safetensors_is_a_format_error(saved, tmp_path):
    d = _copy_folder(saved["bert"][1], tmp_path / "corrupt")
    raw = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FormatError, match="truncated or corrupt"):
        load_hf_folder(d)


def test_unknown_architecture_is_unsupported(saved, tmp_path):
    d = _copy_folder(saved["bert"][1], tmp_path / "t5")
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["T5ForConditionalGeneration"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedLayerError, match="T5ForConditionalGeneration") as e:
        load_hf_folder(d)
    assert e.value.items[0][0] == "model"
    with pytest.raises(UnsupportedLayerError, match="Linear"):
        from_hf(torch.nn.Linear(2, 2))


def test_unsupported_options_are_all_listed():
    tf = import_transformers()
    hf = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=VOCAB, n_embd=16, n_layer=1, n_head=2, n_positions=16,
                                          activation_function="swish", scale_attn_by_inverse_layer_idx=True))
    with pytest.raises(UnsupportedLayerError) as e:
        from_hf(hf)
    paths = [p for p, _ in e.value.items]
    assert paths == ["config.scale_attn_by_inverse_layer_idx", "config.activation_function"]


def test_sharded_safetensors_folder(saved, tmp_path):
    hf, _ = saved["llama"]
    hf.save_pretrained(tmp_path, safe_serialization=True, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").is_file() and not (tmp_path / "model.safetensors").exists()
    m = load_hf_folder(tmp_path)
    x = torch.randint(0, VOCAB, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(m(x), hf(input_ids=x).logits, rtol=0, atol=2e-5)
