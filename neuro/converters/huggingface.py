"""Hugging Face models from local folders, mapped onto the reference models (``TransformerLM``, ``RWKVLM``).

Supported classes (``architectures`` in ``config.json``): ``GPT2LMHeadModel``, ``GPTNeoXForCausalLM``
(Pythia), ``LlamaForCausalLM`` and ``BertModel``, mapped onto ``TransformerLM``, and ``RwkvForCausalLM``
(RWKV-4), mapped onto :class:`~neuro.models.rwkv.RWKVLM`. :func:`load_hf_folder` reads a folder written by
``save_pretrained`` with no network (``local_files_only=True``); :func:`from_hf` copies the weights
of a loaded ``transformers`` model into a ``TransformerLM`` whose outputs equal the original's
(logits for the decoders, ``last_hidden_state`` for BERT; BERT's pooler is not mapped).

Weights are read from safetensors only (``model.safetensors`` or a sharded
``model.safetensors.index.json``). A folder holding only ``pytorch_model.bin`` (a pickle) is
refused with :class:`PickleRefusedError` unless the caller passes ``trust_pickle=True``; it is then
read with ``torch.load(..., weights_only=True)``, which unpickles tensors and plain containers only.
Before any weight reaches a model, every tensor of the file is checked against the shapes that
``config.json`` implies: a missing, misshapen or absent weight file is a
:class:`~neuro.core.errors.FormatError` naming the file and the tensor.

Weight layouts (``D`` model width, ``H`` heads, ``d_h = D / H``):

* GPT-2 stores its projections as ``Conv1D`` (``y = x W + b``, ``W`` is [in, out]): transposed into
  ``nn.Linear``; ``c_attn`` holds q, k, v side by side along ``out``. Its ``gelu_new`` is the tanh
  approximation of GELU.
* GPT-NeoX fuses q, k, v per head: ``query_key_value.weight`` viewed as [H, 3, d_h, D].
* Llama and BERT keep separate q, k, v projections; both use the rotate-half rotary layout
  (Llama) or learned positions (BERT) that :class:`~neuro.models.transformer.Rotary` implements.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..core.errors import FormatError, UnsupportedLayerError
from ..models.rwkv import RWKVConfig, RWKVLM
from ..models.transformer import TransformerLM, config_for

CONTEXT = "Hugging Face import"
SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE = "pytorch_model.bin"


class PickleRefusedError(FormatError):
    """A checkpoint is a pickle (``pytorch_model.bin``) and the caller did not pass ``trust_pickle=True``."""


def import_transformers():
    """Import and return :mod:`transformers` without letting it import torchvision or torchaudio.

    ``transformers`` imports torchvision (image processors) and torchaudio whenever it finds them
    installed; the builds that SpikingJelly pulls in crash on import. neuro uses neither, so both
    are marked absent in ``sys.modules`` (``None`` makes ``import`` raise ImportError and
    ``importlib.util.find_spec`` return None, which transformers reads as "not installed"). Every
    import of transformers in the package goes through this function.
    """
    for name in ("torchvision", "torchaudio"):
        sys.modules.setdefault(name, None)
    import transformers

    return transformers


# ------------------------------------------------------------------------------------ mapping
ACTIVATION_NAMES = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                    "gelu_fast": "gelu_tanh", "relu": "relu"}


def _act(cfg, field: str, problems: list) -> str:
    name = getattr(cfg, field, "gelu")
    if name not in ACTIVATION_NAMES:
        problems.append((f"config.{field}", f"activation {name!r}"))
        return "gelu"
    return ACTIVATION_NAMES[name]


def _rope(cfg, problems: list) -> tuple[float, float]:
    """(base, rotary fraction) of a default (unscaled) rotary embedding."""
    rp = dict(getattr(cfg, "rope_parameters", None) or {})
    kind = rp.get("rope_type", "default")
    if kind != "default":
        problems.append(("config.rope_parameters.rope_type", f"rotary scaling {kind!r}"))
    base = rp.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
    return float(base), float(rp.get("partial_rotary_factor", 1.0))


def _copy(dst: nn.Module, weight: torch.Tensor, bias=None) -> None:
    with torch.no_grad():
        dst.weight.copy_(weight)
        if bias is not None:
            dst.bias.copy_(bias)


def _copy_norm(dst: nn.Module, src: nn.Module) -> None:
    _copy(dst, src.weight, src.bias if getattr(dst, "bias", None) is not None else None)


def _linear(dst: nn.Linear, src: nn.Linear) -> None:
    _copy(dst, src.weight, src.bias if dst.bias is not None else None)


def _gpt2(hf) -> TransformerLM:
    c, problems = hf.config, []
    if getattr(c, "scale_attn_by_inverse_layer_idx", False):
        problems.append(("config.scale_attn_by_inverse_layer_idx", "attention scaled by 1/(layer index + 1)"))
    if not getattr(c, "scale_attn_weights", True):
        problems.append(("config.scale_attn_weights", "attention without the 1/sqrt(d_head) scale"))
    if getattr(c, "add_cross_attention", False):
        problems.append(("config.add_cross_attention", "cross-attention"))
    mlp = _act(c, "activation_function", problems)
    if problems:
        raise UnsupportedLayerError(problems, CONTEXT)
    cfg = config_for("gpt", vocab_size=c.vocab_size, d_model=c.n_embd, n_layer=c.n_layer, n_head=c.n_head,
                     d_ff=c.n_inner or 4 * c.n_embd, max_seq=c.n_positions, norm_eps=c.layer_norm_epsilon,
                     mlp=mlp, tie_embeddings=bool(c.tie_word_embeddings))
    m, t, D = TransformerLM(cfg), hf.transformer, c.n_embd
    _copy(m.embed.tok, t.wte.weight)
    _copy(m.embed.pos, t.wpe.weight)
    for blk, h in zip(m.blocks, t.h):
        _copy_norm(blk.norm1, h.ln_1)
        _copy_norm(blk.norm2, h.ln_2)
        w, b = h.attn.c_attn.weight.t(), h.attn.c_attn.bias  # Conv1D [D, 3D] -> [3D, D]
        for i, lin in enumerate((blk.attn.q, blk.attn.k, blk.attn.v)):
            _copy(lin, w[i * D:(i + 1) * D], b[i * D:(i + 1) * D])
        _copy(blk.attn.o, h.attn.c_proj.weight.t(), h.attn.c_proj.bias)
        _copy(blk.mlp.fc, h.mlp.c_fc.weight.t(), h.mlp.c_fc.bias)
        _copy(blk.mlp.proj, h.mlp.c_proj.weight.t(), h.mlp.c_proj.bias)
    _copy_norm(m.norm_f, t.ln_f)
    if not cfg.tie_embeddings:
        _copy(m.head, hf.lm_head.weight)
    return m


def _neox(hf) -> TransformerLM:
    c, problems = hf.config, []
    mlp = _act(c, "hidden_act", problems)
    base, pct = _rope(c, problems)
    H, D = c.num_attention_heads, c.hidden_size
    d_h = D // H
    if int(d_h * pct) < 2 or int(d_h * pct) % 2:
        problems.append(("config.rope_parameters.partial_rotary_factor", f"{pct} gives {int(d_h * pct)} rotary dims"))
    if problems:
        raise UnsupportedLayerError(problems, CONTEXT)
    cfg = config_for("neox", vocab_size=c.vocab_size, d_model=D, n_layer=c.num_hidden_layers, n_head=H,
                     d_ff=c.intermediate_size, max_seq=c.max_position_embeddings, norm_eps=c.layer_norm_eps,
                     mlp=mlp, rotary_pct=pct, rotary_base=base, parallel_residual=bool(c.use_parallel_residual),
                     bias=bool(getattr(c, "attention_bias", True)), tie_embeddings=bool(c.tie_word_embeddings))
    m, t = TransformerLM(cfg), hf.gpt_neox
    _copy(m.embed.tok, t.embed_in.weight)
    for blk, layer in zip(m.blocks, t.layers):
        _copy_norm(blk.norm1, layer.input_layernorm)
        _copy_norm(blk.norm2, layer.post_attention_layernorm)
        qkv = layer.attention.query_key_value
        w = qkv.weight.view(H, 3, d_h, D)  # per head: q, k, v
        b = qkv.bias.view(H, 3, d_h) if qkv.bias is not None else None
        for i, lin in enumerate((blk.attn.q, blk.attn.k, blk.attn.v)):
            _copy(lin, w[:, i].reshape(D, D), b[:, i].reshape(D) if b is not None and lin.bias is not None else None)
        _linear(blk.attn.o, layer.attention.dense)
        _linear(blk.mlp.fc, layer.mlp.dense_h_to_4h)
        _linear(blk.mlp.proj, layer.mlp.dense_4h_to_h)
    _copy_norm(m.norm_f, t.final_layer_norm)
    if not cfg.tie_embeddings:
        head = hf.lm_head if hasattr(hf, "lm_head") else hf.embed_out  # transformers 5 / 4 names
        _copy(m.head, head.weight)
    return m


def _llama(hf) -> TransformerLM:
    c, problems = hf.config, []
    if c.hidden_act != "silu":
        problems.append(("config.hidden_act", f"gated activation {c.hidden_act!r} (only silu: SwiGLU)"))
    base, pct = _rope(c, problems)
    H, D = c.num_attention_heads, c.hidden_size
    head_dim = getattr(c, "head_dim", None) or D // H
    if head_dim * H != D:
        problems.append(("config.head_dim", f"head_dim {head_dim} * heads {H} != hidden_size {D}"))
    if bool(getattr(c, "attention_bias", False)) != bool(getattr(c, "mlp_bias", False)):
        problems.append(("config.mlp_bias", "attention_bias and mlp_bias differ"))
    if pct != 1.0:
        problems.append(("config.rope_parameters.partial_rotary_factor", f"partial rotary {pct} in a Llama model"))
    if problems:
        raise UnsupportedLayerError(problems, CONTEXT)
    cfg = config_for("llama", vocab_size=c.vocab_size, d_model=D, n_layer=c.num_hidden_layers, n_head=H,
                     n_kv_head=c.num_key_value_heads or H, d_ff=c.intermediate_size,
                     max_seq=c.max_position_embeddings, norm_eps=c.rms_norm_eps, rotary_base=base,
                     bias=bool(getattr(c, "attention_bias", False)), tie_embeddings=bool(c.tie_word_embeddings))
    m, t = TransformerLM(cfg), hf.model
    _copy(m.embed.tok, t.embed_tokens.weight)
    for blk, layer in zip(m.blocks, t.layers):
        _copy(blk.norm1, layer.input_layernorm.weight)
        _copy(blk.norm2, layer.post_attention_layernorm.weight)
        a = layer.self_attn
        for dst, src in ((blk.attn.q, a.q_proj), (blk.attn.k, a.k_proj), (blk.attn.v, a.v_proj),
                         (blk.attn.o, a.o_proj)):
            _linear(dst, src)
        for dst, src in ((blk.mlp.gate, layer.mlp.gate_proj), (blk.mlp.up, layer.mlp.up_proj),
                         (blk.mlp.down, layer.mlp.down_proj)):
            _linear(dst, src)
    _copy(m.norm_f, t.norm.weight)
    if not cfg.tie_embeddings:
        _copy(m.head, hf.lm_head.weight)
    return m


def _bert(hf) -> TransformerLM:
    c, problems = hf.config, []
    mlp = _act(c, "hidden_act", problems)
    if getattr(c, "position_embedding_type", "absolute") != "absolute":
        problems.append(("config.position_embedding_type", f"positions {c.position_embedding_type!r}"))
    if getattr(c, "is_decoder", False) or getattr(c, "add_cross_attention", False):
        problems.append(("config.is_decoder", "BERT as a decoder / cross-attention"))
    if problems:
        raise UnsupportedLayerError(problems, CONTEXT)
    cfg = config_for("bert", vocab_size=c.vocab_size, d_model=c.hidden_size, n_layer=c.num_hidden_layers,
                     n_head=c.num_attention_heads, d_ff=c.intermediate_size, max_seq=c.max_position_embeddings,
                     norm_eps=c.layer_norm_eps, mlp=mlp, type_vocab_size=c.type_vocab_size)
    m, e = TransformerLM(cfg), hf.embeddings
    _copy(m.embed.tok, e.word_embeddings.weight)
    _copy(m.embed.pos, e.position_embeddings.weight)
    if m.embed.type is not None:
        _copy(m.embed.type, e.token_type_embeddings.weight)
    _copy_norm(m.embed.norm, e.LayerNorm)
    for blk, layer in zip(m.blocks, hf.encoder.layer):
        s = layer.attention.self
        for dst, src in ((blk.attn.q, s.query), (blk.attn.k, s.key), (blk.attn.v, s.value)):
            _linear(dst, src)
        _linear(blk.attn.o, layer.attention.output.dense)
        _copy_norm(blk.norm1, layer.attention.output.LayerNorm)
        _linear(blk.mlp.fc, layer.intermediate.dense)
        _linear(blk.mlp.proj, layer.output.dense)
        _copy_norm(blk.norm2, layer.output.LayerNorm)
    return m


def _rwkv(hf) -> RWKVLM:
    """RWKV-4: HF keeps ``time_decay`` before ``w = -exp(.)`` (as :class:`~neuro.models.rwkv.WKV` does), the
    token-shift mixes as [1, 1, D], an embedding LayerNorm ``pre_ln`` in block 0 and ``ln_out`` with the
    default eps. In eval mode HF divides the output weights of block ``i`` by ``2^(i // rescale_every)``
    and halves the stream every ``rescale_every`` blocks (an fp16 overflow guard; LayerNorm makes it
    invisible up to eps): the weights are copied unscaled and the halving left out."""
    c, r = hf.config, hf.rwkv
    cfg = RWKVConfig(vocab_size=c.vocab_size, d_model=c.hidden_size, n_layer=c.num_hidden_layers,
                     d_attn=c.attention_hidden_size or c.hidden_size, d_ff=c.intermediate_size or 4 * c.hidden_size,
                     norm_eps=c.layer_norm_epsilon, out_norm_eps=r.ln_out.eps)
    m = RWKVLM(cfg)
    every = int(getattr(c, "rescale_every", 0) or 0)
    rescaled = bool(getattr(r, "layers_are_rescaled", False)) and every > 0
    _copy(m.emb, r.embeddings.weight)
    _copy_norm(m.ln_in, r.blocks[0].pre_ln)
    for i, (blk, h) in enumerate(zip(m.blocks, r.blocks)):
        scale = 2.0 ** (i // every) if rescaled else 1.0
        _copy_norm(blk.ln1, h.ln1)
        _copy_norm(blk.ln2, h.ln2)
        a, f = h.attention, h.feed_forward
        for dst, src in ((blk.att.wkv.time_decay, a.time_decay), (blk.att.wkv.time_first, a.time_first),
                         (blk.att.mu_k, a.time_mix_key), (blk.att.mu_v, a.time_mix_value),
                         (blk.att.mu_r, a.time_mix_receptance), (blk.ffn.mu_k, f.time_mix_key),
                         (blk.ffn.mu_r, f.time_mix_receptance)):
            dst.copy_(src.reshape(-1))
        for dst, src in ((blk.att.key, a.key), (blk.att.value, a.value), (blk.att.receptance, a.receptance),
                         (blk.ffn.key, f.key), (blk.ffn.receptance, f.receptance)):
            _copy(dst, src.weight)
        _copy(blk.att.output, a.output.weight * scale)
        _copy(blk.ffn.value, f.value.weight * scale)
    _copy_norm(m.ln_out, r.ln_out)
    _copy(m.head, hf.head.weight)
    return m


# transformers class name -> mapping function
MAPPERS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "GPT2LMHeadModel": _gpt2,
    "GPTNeoXForCausalLM": _neox,
    "LlamaForCausalLM": _llama,
    "BertModel": _bert,
    "RwkvForCausalLM": _rwkv,
}


def from_hf(hf_model: nn.Module) -> nn.Module:
    """A :class:`TransformerLM` (:class:`~neuro.models.rwkv.RWKVLM` for RWKV) with the weights of a loaded
    ``transformers`` model (one of :data:`MAPPERS`).

    An unknown class, or a configuration option the reference model does not implement (rotary
    scaling, other activations, ...), raises :class:`~neuro.core.errors.UnsupportedLayerError`
    listing every one. The result is in float32 and in eval mode.
    """
    name = type(hf_model).__name__
    mapper = MAPPERS.get(name)
    if mapper is None:
        raise UnsupportedLayerError([("model", f"{name} (supported: {', '.join(MAPPERS)})")], CONTEXT)
    with torch.no_grad():  # copy_ casts every tensor to float32; the HF model is left as it is
        m = mapper(hf_model)
    return m.eval()


# ------------------------------------------------------------------------------------ loading
def _read_hf_config(folder: Path) -> dict:
    if not folder.is_dir():
        raise FormatError(str(folder), None, None, "no such model folder")
    path = folder / "config.json"
    if not path.is_file():
        raise FormatError(str(path), None, None, "missing (a Hugging Face model folder holds config.json)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError(str(path), None, None, f"not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise FormatError(str(path), None, None, "must hold a JSON object")
    return doc


def _architecture(folder: Path, doc: dict) -> str:
    archs = doc.get("architectures")
    if not isinstance(archs, list) or len(archs) != 1 or not isinstance(archs[0], str):
        raise FormatError(str(folder / "config.json"), None, "architectures",
                          f"must name exactly one model class, got {archs!r}")
    if archs[0] not in MAPPERS:
        raise UnsupportedLayerError([("model", f"{archs[0]} (supported: {', '.join(MAPPERS)})")], CONTEXT)
    return archs[0]


def _weight_files(folder: Path, trust_pickle: bool) -> tuple[list[Path], bool]:
    """The safetensors files of the folder (or the pickle, when trusted) and whether it is a pickle."""
    single, index, pickle = folder / SAFETENSORS, folder / SAFETENSORS_INDEX, folder / PICKLE
    if single.is_file():
        return [single], False
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise FormatError(str(index), None, "weight_map", f"unreadable shard index: {e}") from e
        for s in shards:
            if not (folder / s).is_file():
                raise FormatError(str(folder / s), None, None, f"missing (listed in {SAFETENSORS_INDEX})")
        return [folder / s for s in shards], False
    if pickle.is_file():
        if not trust_pickle:
            raise PickleRefusedError(str(pickle), None, None,
                                     "is a pickle checkpoint; only safetensors are read by default. Pass "
                                     "trust_pickle=True to load it (with torch.load(weights_only=True)) if you "
                                     "trust its source")
        return [pickle], True
    raise FormatError(str(single), None, None,
                      f"missing: the folder holds no weights ({SAFETENSORS}, {SAFETENSORS_INDEX} or, with "
                      f"trust_pickle=True, {PICKLE})")


def _file_shapes(files: list[Path], is_pickle: bool) -> tuple[dict, dict]:
    """name -> (shape, file) of every tensor, and the tensors themselves for a pickle."""
    shapes, tensors = {}, {}
    if is_pickle:
        try:
            sd = torch.load(str(files[0]), map_location="cpu", weights_only=True)
        except Exception as e:  # weights_only refuses anything but tensors and plain containers
            raise FormatError(str(files[0]), None, None, f"cannot be read with weights_only=True: {e}") from e
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise FormatError(str(files[0]), None, None, "must hold a dict of tensor name -> tensor")
        return {k: (list(v.shape), files[0]) for k, v in sd.items()}, sd
    from safetensors import safe_open

    for f in files:
        try:
            with safe_open(str(f), framework="pt") as st:
                for k in st.keys():
                    shapes[k] = (list(st.get_slice(k).get_shape()), f)
        except Exception as e:
            raise FormatError(str(f), None, None, f"cannot be read (truncated or corrupt safetensors): {e}") from e
    return shapes, tensors


# names that transformers writes differently from the module attribute it loads them into
KEY_ALIASES = {"embed_out.weight": "lm_head.weight"}


def _model_key(name: str, expected: dict, prefix: str):
    """The model's state_dict key for a file tensor name (direct, under the base-model prefix, or an alias)."""
    name = KEY_ALIASES.get(name, name)
    if name.endswith(".gamma") or name.endswith(".beta"):  # legacy LayerNorm names
        name = name.rsplit(".", 1)[0] + (".weight" if name.endswith(".gamma") else ".bias")
    for key in (name, f"{prefix}.{name}" if prefix else None,
                name[len(prefix) + 1:] if prefix and name.startswith(prefix + ".") else None):
        if key is not None and key in expected:
            return key
    return None


def _check_shapes(model: nn.Module, shapes: dict, folder: Path) -> dict:
    """Every file tensor the model uses must have the shape config.json implies; returns model key -> file name.

    Tensors the architecture does not use (old buffers) are ignored, as transformers does.
    """
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    prefix = getattr(model, "base_model_prefix", "") or ""
    found = {}
    for name, (shape, file) in shapes.items():
        key = _model_key(name, expected, prefix)
        if key is None:
            continue
        if shape != expected[key]:
            raise FormatError(str(file), name, "shape",
                              f"is {shape} but {folder / 'config.json'} implies {expected[key]}")
        found[key] = name
    return found


def _tied_keys(model: nn.Module) -> set:
    """State-dict keys that share storage with the input embedding (filled by tying, not from the file)."""
    if not getattr(model.config, "tie_word_embeddings", False):
        return set()
    emb = model.get_input_embeddings().weight
    return {k for k, v in model.state_dict(keep_vars=True).items() if v is emb}


def _check_missing(model: nn.Module, missing, file: Path) -> None:
    missing = sorted(set(missing) - _tied_keys(model))
    if missing:
        raise FormatError(str(file), missing[0], None,
                          f"missing from the weights ({len(missing)} tensor(s) of the model are absent: "
                          f"{', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")


def load_hf_folder(path, trust_pickle: bool = False) -> nn.Module:
    """Load a local Hugging Face folder (``config.json`` + weights) and map it with :func:`from_hf`.

    Never touches the network. Errors: :class:`~neuro.core.errors.FormatError` for a missing folder,
    config or weights and for tensors whose shapes differ from what ``config.json`` implies (naming
    the file and the tensor); :class:`PickleRefusedError` for a pickle without ``trust_pickle``;
    :class:`~neuro.core.errors.UnsupportedLayerError` for an architecture not in :data:`MAPPERS`.
    """
    folder = Path(path)
    doc = _read_hf_config(folder)
    arch = _architecture(folder, doc)
    files, is_pickle = _weight_files(folder, trust_pickle)
    transformers = import_transformers()
    cls = getattr(transformers, arch)
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:
        raise FormatError(str(folder / "config.json"), None, None, f"rejected by transformers: {e}") from e
    with torch.device("meta"):
        skeleton = cls(config)
    shapes, tensors = _file_shapes(files, is_pickle)
    found = _check_shapes(skeleton, shapes, folder)
    if is_pickle:
        hf = cls(config)
        result = hf.load_state_dict({key: tensors[name] for key, name in found.items()}, strict=False)
        hf.tie_weights()
        _check_missing(hf, result.missing_keys, files[0])
    else:
        level = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # its load report would repeat what is checked here
        try:
            hf, info = cls.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                           output_loading_info=True)
        except RuntimeError as e:  # a size mismatch under a name the check above does not know
            raise FormatError(str(files[0]), None, "shape", f"does not fit config.json: {e}") from e
        finally:
            transformers.logging.set_verbosity(level)
        _check_missing(hf, info.get("missing_keys", ()), files[0])
    return from_hf(hf.eval())


__all__ = ["MAPPERS", "PickleRefusedError", "from_hf", "import_transformers", "load_hf_folder"]
