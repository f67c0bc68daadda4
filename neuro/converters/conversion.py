r"""ANN -> SNN conversion of Transformer language models, in four inspectable stages.

    record = validate(model)                              # every module has a spiking mapping, or one error lists all
    calib = calibrate(model, "calib.txt")                 # activation ranges (independent of T)
    snn = map_model(model, calib, ConversionParams(timesteps=8))           # SpikingTransformer
    twin = map_model(model, calib, ConversionParams(timesteps=8), twin=True)  # QuantizedTransformer
    rep = report(model, snn, twin, valid_ids)             # perplexity/cosine against the float model and the twin

or all at once: ``snn = convert(model, "calib.txt", timesteps=8)`` (``snn.records`` keeps the records).

Mapping. :data:`MAPPINGS` maps each module type of :class:`~neuro.models.transformer.TransformerLM`
to a function filling the buffers of its spiking equivalent (same path in the converted model):
``nn.Linear`` -> :class:`~neuro.converters.spiking_ops.SpikingLinear` (weights quantized per row to
``weight_bits`` with a power-of-two step; the ``1/sqrt(d_h)`` factor of attention folded into ``q``),
``nn.LayerNorm``/``RMSNorm``/``nn.GELU``/``nn.SiLU``/``nn.ReLU``/``Softmax``/``Rotary``/``Mul`` ->
accumulated-difference operators, ``MatMul`` -> running-sum spike product, ``nn.Embedding`` -> the
embedding tables. :data:`CONTAINERS` are walked through. Anything else is unsupported: :func:`validate`
lists every such module with its path before anything is converted.

Calibration and outliers. The float model runs on the calibration tokens; forward hooks record the
absolute maximum of every encoder's input **per channel** (per (head, dim) for q, k and v) and of every
non-linear operator's output (per tensor). Each encoder channel gets its own power-of-two step ``s_c =
2^ceil(log2(max_c / (2^T - 1)))``: the few outlier channels of a Transformer's activations (channels
whose range is ``outlier_ratio`` times the median channel's or more; listed per encoder in the
calibration record) get a wider range instead of coarsening every other channel, and nothing in the
calibration data is clipped. Steps are kept within ``2^spread_bits`` of the encoder's coarsest one, and
tightened where needed so that every synapse and product sum stays exact in float64
(:func:`exact_spread`). The range is widened by ``2^headroom`` for values beyond the calibration data's;
values beyond that saturate at ``(2^T - 1) s_c``. The headroom is chosen on the data
(:func:`choose_headroom`): ranges from the first three quarters of the calibration windows, each
candidate from 0 bits up to the fixed rule's (one bit up to T = 8, then a quarter of the bits beyond 8:
:attr:`ConversionParams.headroom`) mapped into a quantized twin and scored on the last quarter, the
best kept (on the bundled GPT: 0 bits below T = 16, which moves the 1 % perplexity target from T = 8
to T = 6). An explicit ``headroom_bits`` skips the choice. Attention probabilities use the fixed step
``2^-T`` (range [0, 1]). The non-linear operators' output grids are ``2^(ceil(log2 max) - fine_bits)``.

Other architectures. :data:`BACKENDS` maps a model class to the module holding its own stages
(``validate``, ``calibrate``, ``map_model``, ``report``): every public stage here, and :func:`convert`,
hands such a model to them (:class:`~neuro.models.rwkv.RWKVLM`: :mod:`~neuro.converters.spiking_rwkv`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from ..core.errors import FormatError, ParameterError, ShapeError, UnsupportedLayerError
from ..models.transformer import (MLP, Attention, Block, Embeddings, GatedMLP, MatMul, Mul, RMSNorm, Rotary,
                                  Softmax, TransformerLM, evaluate_lm)
from .spiking_ops import DTYPE, exact_in_float32, pow2_step, quantize_weight
from .spiking_transformer import ConversionParams, QuantizedTransformer, SpikingTransformer


# ------------------------------------------------------------------------------------ backends
# "module.Class" of a float model -> "module:attribute" of the object holding its conversion stages
# (validate, calibrate, map_model, report); imported on first use. TransformerLM is served by this module.
BACKENDS: dict[str, str] = {
    "neuro.models.rwkv.RWKVLM": "neuro.converters.spiking_rwkv:BACKEND",
}


def backend_for(model):
    """The conversion stages registered for ``model``'s class (or a base class), or None (Transformer path)."""
    import importlib

    for cls in type(model).__mro__:
        target = BACKENDS.get(f"{cls.__module__}.{cls.__qualname__}")
        if target is not None:
            mod, _, attr = target.partition(":")
            return getattr(importlib.import_module(mod), attr)
    return None


# ------------------------------------------------------------------------------------ validate
def _check_gelu(m):
    return None if m.approximate in ("none", "tanh") else f"GELU(approximate={m.approximate!r})"


def _check_layernorm(m):
    if not m.elementwise_affine or len(m.normalized_shape) != 1:
        return "LayerNorm without a per-channel affine over the last dim"
    return None


def _ok(m):
    return None


# leaf module type -> check(module) -> None when convertible, else what is wrong
LEAVES: dict[type, Callable] = {
    nn.Linear: _ok, nn.Embedding: _ok, nn.LayerNorm: _check_layernorm, RMSNorm: _ok, nn.GELU: _check_gelu,
    nn.ReLU: _ok, nn.SiLU: _ok, Rotary: _ok, MatMul: _ok, Softmax: _ok, Mul: _ok,
}
# module types walked through (their wiring is rebuilt from the model's config)
CONTAINERS: set = {TransformerLM, Embeddings, Block, Attention, MLP, GatedMLP, nn.ModuleList}


@dataclass
class ValidationRecord:
    """What :func:`validate` found: every module path with its type, all convertible."""

    modules: list = field(default_factory=list)  # (path, type name)

    def summary(self) -> dict:
        counts: dict = {}
        for _, t in self.modules:
            counts[t] = counts.get(t, 0) + 1
        return counts


def validate(model: nn.Module) -> ValidationRecord:
    """Walk every submodule of ``model``; raise one :class:`UnsupportedLayerError` listing every module
    (path and op) without a spiking mapping, before anything is converted."""
    backend = backend_for(model)
    if backend is not None:
        return backend.validate(model)
    bad, seen = [], []

    def walk(path, m):
        t = type(m)
        name = f"{t.__module__}.{t.__qualname__}"
        if t in LEAVES:
            problem = LEAVES[t](m)
            (bad if problem else seen).append((path or "<model>", problem or t.__name__))
            return
        if t in CONTAINERS:
            seen.append((path or "<model>", t.__name__))
            for child_name, child in m.named_children():
                if child is not None:
                    walk(f"{path}.{child_name}" if path else child_name, child)
            return
        bad.append((path or "<model>", name))

    walk("", model)
    if not isinstance(model, TransformerLM) and not bad:
        bad.append(("<model>", f"{type(model).__module__}.{type(model).__qualname__} (not a TransformerLM)"))
    if bad:
        raise UnsupportedLayerError(bad, context="spiking conversion")
    return ValidationRecord(seen)


# ------------------------------------------------------------------------------------ calibration data
def calibration_batches(model: TransformerLM, calibration, max_tokens: int = 8192,
                        seq_len: Optional[int] = None) -> list:
    """Batches ``[B, L]`` of token ids from a text file (read with :func:`neuro.data.load_text`, encoded
    with the model's character vocabulary), a tensor of ids (``[N]`` is cut into windows, ``[B, L]``
    is one batch) or a list of such batches. At most ``max_tokens`` tokens are used."""
    from ..data.text import CharTokenizer, load_text

    L = int(seq_len or model.config.max_seq)
    if isinstance(calibration, (str, Path)):
        path = Path(calibration)
        text = load_text(path)                                             # FormatError: missing, empty, not UTF-8
        chars = model.config.vocab_chars
        if chars is None:
            raise ParameterError("calibrate", "calibration", str(path),
                                 "token ids (the model has no character vocabulary to encode a text)")
        tok = CharTokenizer(list(chars))
        for i, c in enumerate(text):
            if c not in tok.index:
                raise FormatError(str(path), f"character {c!r} at offset {i}", None,
                                  "is not in the model's vocabulary")
        calibration = tok.encode(text[:max_tokens])
    if isinstance(calibration, torch.Tensor):
        ids = calibration.long()
        if ids.dim() == 1:
            ids = ids[:max_tokens]
            if len(ids) < 1:
                raise ShapeError("calibrate", "calibration ids are empty")
            n = max(1, len(ids) // L)
            batches = [ids[i * L:(i + 1) * L][None] for i in range(n)]
            return [torch.cat(batches[i:i + 8]) if all(b.shape == batches[i].shape for b in batches[i:i + 8])
                    else batches[i] for i in range(0, len(batches), 8)]
        calibration = [ids]
    if isinstance(calibration, (list, tuple)) and calibration:
        out, total = [], 0
        for b in calibration:
            b = torch.as_tensor(b).long()
            if b.dim() != 2 or b.numel() == 0:
                raise ShapeError("calibrate", f"each calibration batch must be ids [B, L], got {tuple(b.shape)}")
            if b.max() >= model.config.vocab_size or b.min() < 0:
                raise ParameterError("calibrate", "calibration", int(b.max()),
                                     f"token ids in [0, {model.config.vocab_size})")
            out.append(b[:, :L])
            total += b[:, :L].numel()
            if total >= max_tokens:
                break
        return out
    raise ParameterError("calibrate", "calibration", type(calibration).__name__,
                         "a text file path, a tensor of token ids or a non-empty list of id batches")


# ------------------------------------------------------------------------------------ calibrate
@dataclass
class CalibrationRecord:
    """Activation statistics of the float model (independent of T).

    ``ranges``: encoder path -> per-channel absolute maximum (float64, the encoder's step shape);
    ``outputs``: operator path -> absolute maximum of its output; ``outliers``: encoder path -> the
    channels whose range is ``outlier_ratio`` x the median channel's or more; ``tokens``: how many
    calibration tokens were seen.
    """

    ranges: dict
    outputs: dict
    outliers: dict
    tokens: int

    def summary(self) -> dict:
        return {"tokens": self.tokens, "encoders": len(self.ranges), "operators": len(self.outputs),
                "outlier_channels": {k: v for k, v in self.outliers.items() if v}}


def _absmax(t: torch.Tensor, keep: Iterable[int]) -> torch.Tensor:
    """Absolute maximum over every dim but ``keep``. Shape: -> [sizes of keep]."""
    keep = [k % t.dim() for k in keep]
    red = [d for d in range(t.dim()) if d not in keep]
    return t.detach().abs().double().amax(dim=red) if red else t.detach().abs().double()


def run_hooked(model: nn.Module, batches, hooks: list, progress: bool = False) -> int:
    """Runs the float model on every calibration batch (``[B, L]`` token ids) with its recording hooks
    attached, removes the hooks whatever happens, and returns the number of tokens seen."""
    tokens = 0
    try:
        with torch.no_grad():
            it = batches
            if progress:
                from tqdm.auto import tqdm
                it = tqdm(batches, desc="calibrate", unit="batch", leave=False)
            for ids in it:
                model(ids)
                tokens += ids.numel()
    finally:
        for h in hooks:
            h.remove()
    return tokens


def calibrate(model: TransformerLM, calibration, max_tokens: int = 8192, outlier_ratio: float = 8.0,
              progress: bool = False) -> CalibrationRecord:
    """Run the float model on the calibration data and record the ranges the encoders and grids need."""
    backend = backend_for(model)
    if backend is not None:
        return backend.calibrate(model, calibration, max_tokens, outlier_ratio, progress)
    validate(model)
    batches = calibration_batches(model, calibration, max_tokens)
    cfg = model.config
    ranges: dict = {}
    outputs: dict = {}

    def upd(d, key, val):
        d[key] = torch.maximum(d[key], val) if key in d else val

    def pre(key, fn):
        return lambda m, inp: upd(ranges, key, fn(*inp))

    def post(key):
        return lambda m, inp, out: upd(outputs, key, out.detach().abs().double().amax())

    def kv(t):  # [B, H, X, Y] with heads = kv heads repeated -> per (kv head, dim) [Hkv, 1, dh]
        return t.view(cfg.n_kv_head, cfg.n_head // cfg.n_kv_head, 1, cfg.d_head).amax(1)

    hooks = []
    reg_pre = lambda m, key, fn: hooks.append(m.register_forward_pre_hook(pre(key, fn)))  # noqa: E731
    reg_post = lambda m, key: hooks.append(m.register_forward_hook(post(key)))  # noqa: E731
    chan = lambda x, *rest: _absmax(x, [-1])  # noqa: E731
    for i, b in enumerate(model.blocks):
        p, a = f"blocks.{i}", b.attn
        reg_pre(a.q, f"{p}.attn.enc_x", chan)
        reg_pre(a.qk, f"{p}.attn.enc_q", lambda q, kt: _absmax(q, [1, 3]).view(cfg.n_head, 1, cfg.d_head))
        hooks.append(a.qk.register_forward_pre_hook(
            lambda m, inp, key=f"{p}.attn.enc_k": upd(ranges, key, kv(_absmax(inp[1], [1, 2])))))
        ranges[f"{p}.attn.enc_p"] = torch.ones(1, dtype=DTYPE)  # probabilities: the fixed range [0, 1]
        hooks.append(a.pv.register_forward_pre_hook(
            lambda m, inp, key=f"{p}.attn.enc_v": upd(ranges, key, kv(_absmax(inp[1], [1, 3])))))
        reg_pre(a.o, f"{p}.attn.enc_y", chan)
        if a.rotary is not None:
            reg_post(a.rotary, f"{p}.attn.rotary")
        reg_post(a.softmax, f"{p}.attn.softmax")
        mlp = b.mlp
        first, last = (mlp.gate, mlp.down) if isinstance(mlp, GatedMLP) else (mlp.fc, mlp.proj)
        reg_pre(first, f"{p}.mlp.enc_x", chan)
        reg_pre(last, f"{p}.mlp.enc_h", chan)
        reg_post(mlp.act, f"{p}.mlp.act")
        if isinstance(mlp, GatedMLP):
            reg_post(mlp.mul, f"{p}.mlp.mul")
        reg_post(b.norm1, f"{p}.norm1")
        reg_post(b.norm2, f"{p}.norm2")
    if model.head is not None:
        reg_pre(model.head, "enc_f", chan)
        reg_post(model.norm_f, "norm_f")
    if model.embed.norm is not None:
        reg_post(model.embed.norm, "embed.norm")
    tokens = run_hooked(model, batches, hooks, progress)
    # the embedding sum is bounded by its tables (so every token, seen or not, fits the grid)
    e = model.embed
    bound = e.tok.weight.detach().abs().double().amax()
    if e.pos is not None:
        bound = bound + e.pos.weight.detach().abs().double().amax()
    if e.type is not None:
        bound = bound + e.type.weight.detach().abs().double().amax()
    outputs["embed"] = bound
    outliers = {}
    for key, r in ranges.items():
        flat = r.flatten()
        med = float(flat.median()) if flat.numel() else 0.0
        outliers[key] = [] if flat.numel() < 2 or med <= 0 else torch.nonzero(flat >= outlier_ratio * med).flatten().tolist()
    return CalibrationRecord(ranges, outputs, outliers, tokens)


# ------------------------------------------------------------------------------------ map
def _grid(absmax, fine_bits: int) -> torch.Tensor:
    m = float(absmax)
    e = math.ceil(math.log2(m)) if m > 0 and math.isfinite(m) else 0
    return torch.tensor(2.0 ** (e - fine_bits), dtype=DTYPE)


EXACT_BITS = 52  # integer sums below 2^52 units of their grid are exact in float64 (one bit of margin)


def exact_spread(path: str, cfg, params: ConversionParams) -> int:
    """The step spread (log2) of the encoder at ``path``: ``spread_bits``, tightened so that the
    worst-case sum it feeds stays below ``2^52`` units of its grid (exact in float64, whatever the order):

    * q and k (``QK^T`` over ``d_h``): ``log2 d_h + 2 T + 2 spread <= 52``;
    * v (``PV`` over at most ``max_seq`` keys, probabilities on the fixed grid ``2^-T``):
      ``log2 max_seq + 2 T + spread <= 52``;
    * inputs of linear layers (fan-in ``n``, weights of ``weight_bits`` signed bits):
      ``log2 n + weight_bits - 1 + T + spread <= 52``.

    Raises ParameterError when even a spread of 0 cannot be exact (T too large for the layer).
    """
    T, name = params.timesteps, path.rpartition(".")[2]
    lg = lambda n: math.ceil(math.log2(max(1, n)))  # noqa: E731
    if name in ("enc_q", "enc_k"):
        room = (EXACT_BITS - lg(cfg.d_head) - 2 * T) // 2
    elif name == "enc_v":
        room = EXACT_BITS - lg(cfg.max_seq) - 2 * T
    else:
        fan_in = {"enc_h": cfg.d_ff, "enc_y": cfg.n_head * cfg.d_head}.get(name, cfg.d_model)
        room = EXACT_BITS - lg(fan_in) - (params.weight_bits - 1) - T
    if room < 0:
        raise ParameterError("map_model", "timesteps", T, f"small enough for exact float64 sums at {path} "
                                                          f"({-room} bit(s) over the budget)")
    return min(params.spread_bits, room)


def _input_encoder(path: str) -> str:
    """The encoder that feeds the linear layer at ``path``."""
    parent, _, name = path.rpartition(".")
    enc = {"q": "enc_x", "k": "enc_x", "v": "enc_x", "o": "enc_y", "fc": "enc_x", "gate": "enc_x", "up": "enc_x",
           "proj": "enc_h", "down": "enc_h", "head": "enc_f"}[name]
    return f"{parent}.{enc}" if parent else enc


def _map_linear(src: nn.Linear, dst, path, model, conv, params):
    w = src.weight.detach().to(DTYPE)
    b = src.bias.detach().to(DTYPE) if src.bias is not None else None
    if path.endswith("attn.q"):  # fold the 1/sqrt(d_h) constant into q
        scale = model.get_submodule(path.rpartition(".")[0]).scale
        w, b = w * scale, (b * scale if b is not None else None)
    wq, row_step = quantize_weight(w, params.weight_bits)
    dst.weight.copy_(wq)
    in_step = conv.get_submodule(_input_encoder(path)).step
    dst.float32_exact.fill_(exact_in_float32(wq, row_step, in_step))
    if b is not None:
        g = row_step * in_step.min()                                       # [out] grid of the products
        dst.bias.copy_(torch.round(b / g) * g)


def _map_embedding(src: nn.Embedding, dst, path, model, conv, params):
    name = path.rpartition(".")[2]
    getattr(conv.embed, {"tok": "tok", "pos": "pos", "type": "types"}[name]).copy_(src.weight.detach().to(DTYPE))


def _map_norm(src, dst, path, model, conv, params):
    dst.weight.copy_(src.weight.detach().to(DTYPE))
    if getattr(src, "bias", None) is not None:
        dst.bias.copy_(src.bias.detach().to(DTYPE))


def _map_nothing(src, dst, path, model, conv, params):
    """Operators without parameters (activations, softmax, rotary, products): the grid is set from calibration."""


# float module type -> fill(src, dst, path, model, converted, params): the registry of the map stage
MAPPINGS: dict[type, Callable] = {
    nn.Linear: _map_linear, nn.Embedding: _map_embedding, nn.LayerNorm: _map_norm, RMSNorm: _map_norm,
    nn.GELU: _map_nothing, nn.ReLU: _map_nothing, nn.SiLU: _map_nothing, Rotary: _map_nothing,
    MatMul: _map_nothing, Softmax: _map_nothing, Mul: _map_nothing,
}


@dataclass
class MapRecord:
    """What :func:`map_model` did: (path, original type, converted type) per op, and the encoders."""

    layers: list
    encoders: list


def map_model(model: TransformerLM, calib: CalibrationRecord, params: ConversionParams, twin: bool = False):
    """Build the spiking model (or, ``twin=True``, its quantized twin) from ``model`` and ``calib``.

    Returns the model; its ``records["map"]`` is a :class:`MapRecord`.
    """
    backend = backend_for(model)
    if backend is not None:
        return backend.map_model(model, calib, params, twin)
    validate(model)
    if isinstance(params, dict):
        params = ConversionParams.from_dict(params)
    cls = QuantizedTransformer if twin else SpikingTransformer
    conv = cls(model.config, params)
    levels = 2 ** params.timesteps - 1
    encoders = []
    with torch.no_grad():
        # encoders first: the biases sit on the grid of their input steps
        for path, sub in conv.named_modules():
            if path.rpartition(".")[2].startswith("enc_"):
                if path not in calib.ranges:
                    raise ParameterError("map_model", "calib", path, "a calibration record holding this encoder's range")
                if path.endswith("attn.enc_p"):  # probabilities in [0, 1]: step 2^-T
                    sub.step.fill_(2.0 ** -params.timesteps)
                else:
                    clip = calib.ranges[path].view(sub.step.shape) * 2.0 ** params.headroom
                    sub.step.copy_(pow2_step(clip, levels, exact_spread(path, model.config, params)))
                encoders.append(path)
            elif hasattr(sub, "grid") and path:
                if path == "embed":
                    sub.grid.copy_(_grid(calib.outputs["embed"], params.fine_bits))
                elif path.endswith("softmax"):
                    sub.grid.copy_(_grid(1.0, params.fine_bits))
                elif path in calib.outputs:
                    sub.grid.copy_(_grid(calib.outputs[path], params.fine_bits))
                else:  # pragma: no cover - calibrate records every operator
                    raise ParameterError("map_model", "calib", path, "a calibration record holding this operator's range")
        layers = []
        for path, src in model.named_modules():
            fill = MAPPINGS.get(type(src))
            if fill is None:
                continue
            dst = conv.get_submodule(path) if not path.startswith("embed.") or path == "embed.norm" else conv.embed
            fill(src, dst, path, model, conv, params)
            layers.append((path, type(src).__name__, type(dst).__name__))
        if model.head is not None and conv.head is not None and "head" not in [p for p, _, _ in layers]:
            _map_linear(model.head, conv.head, "head", model, conv, params)  # tied head: shares embed.tok
            layers.append(("head", "Linear", type(conv.head).__name__))
    conv.records = {"map": MapRecord(layers, encoders)}
    return conv


def quantized_twin(model: TransformerLM, calib: CalibrationRecord, params: ConversionParams) -> QuantizedTransformer:
    """The quantized ANN twin: the same quantizers at the same places, computing on values."""
    return map_model(model, calib, params, twin=True)


# ------------------------------------------------------------------------------------ headroom
@dataclass
class HeadroomRecord:
    """How the encoders' headroom was chosen (:func:`choose_headroom`).

    ``scores``: headroom bits -> the twin's loss on the held-out calibration windows (``metric``: mean
    next-token cross-entropy in nats for decoders, 1 - cosine similarity with the float model for
    encoders; lower is better); ``chosen``: the lowest-scoring candidate."""

    timesteps: int
    chosen: int
    scores: dict
    metric: str
    fit_tokens: int
    held_out_tokens: int

    def summary(self) -> dict:
        return {"timesteps": self.timesteps, "headroom_bits": self.chosen, "metric": self.metric,
                "scores": {str(k): v for k, v in self.scores.items()}, "fit_tokens": self.fit_tokens,
                "held_out_tokens": self.held_out_tokens}


@dataclass
class HeadroomSplit:
    """Calibration windows split for :func:`choose_headroom`: ranges from the first three quarters
    (``fit``), the twin scored on the last quarter (``held_out``, batches ``[B, L]``)."""

    fit: CalibrationRecord
    held_out: list


def headroom_split(model: TransformerLM, calibration, max_tokens: int = 8192) -> Optional[HeadroomSplit]:
    """Calibrate on the first three quarters of the calibration windows and keep the rest to score
    candidate headrooms on; None when there are fewer than two windows."""
    rows = [r for b in calibration_batches(model, calibration, max_tokens) for r in b]       # windows [L]
    if len(rows) < 2:
        return None
    n_held = max(1, len(rows) // 4)

    def group(rs):  # consecutive windows of one length, up to 8 per batch
        out = []
        for r in rs:
            if out and out[-1][-1].shape == r.shape and len(out[-1]) < 8:
                out[-1].append(r)
            else:
                out.append([r])
        return [torch.stack(g) for g in out]

    return HeadroomSplit(calibrate(model, group(rows[:-n_held])), group(rows[-n_held:]))


def _held_out_loss(model: TransformerLM, twin: QuantizedTransformer, batches: list, refs: Optional[list]) -> float:
    """Mean next-token cross-entropy of ``twin`` (decoders) or 1 - cosine of its hidden states with the
    float model's ``refs`` (encoders, one per batch) over ``batches``."""
    total, n = 0.0, 0
    with torch.no_grad():
        for i, b in enumerate(batches):
            y = twin(b)                                                     # [B, L, V] logits or [B, L, D]
            if model.config.is_encoder:
                total += (1.0 - cosine(refs[i], y)) * b.numel()
            else:
                logp = torch.log_softmax(y[:, :-1].double(), -1)           # [B, L-1, V]
                total -= float(logp.gather(-1, b[:, 1:, None]).sum())
            n += b.numel() if model.config.is_encoder else b[:, 1:].numel()
    return total / max(n, 1)


def auto_headroom_split(model, calibration, params: ConversionParams,
                        max_tokens: int = 8192) -> Optional[HeadroomSplit]:
    """:func:`headroom_split` where :func:`choose_headroom` will use it: a Transformer (other backends
    keep their own ranges) whose ``params.headroom_bits`` is None; else None."""
    if backend_for(model) is not None or params.headroom_bits is not None:
        return None
    return headroom_split(model, calibration, max_tokens)


def choose_headroom(model: TransformerLM, split: Optional[HeadroomSplit], params: ConversionParams):
    """``(params, record)`` with ``params.headroom_bits`` set to the candidate in ``0 .. the default rule's
    value`` whose quantized twin, mapped from the ranges of ``split.fit``, scores best on
    ``split.held_out`` (so range beyond the calibrated maxima is bought only where unseen data needs it).
    An explicit ``params.headroom_bits``, or no split, leaves ``params`` as they are (record None)."""
    if params.headroom_bits is not None or split is None:
        return params, None
    with torch.no_grad():                                                   # the float outputs, once
        refs = [model(b) for b in split.held_out] if model.config.is_encoder else None
    scores = {}
    for h in range(0, params.headroom + 1):
        twin = quantized_twin(model, split.fit, params.replace(headroom_bits=h))
        scores[h] = _held_out_loss(model, twin, split.held_out, refs)
    best = min(scores, key=lambda h: (scores[h], -h))                       # a tie keeps the wider range
    rec = HeadroomRecord(params.timesteps, best, scores,
                         "1 - cosine" if model.config.is_encoder else "cross_entropy",
                         split.fit.tokens, sum(b.numel() for b in split.held_out))
    return params.replace(headroom_bits=best), rec


# ------------------------------------------------------------------------------------ report
def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two tensors, flattened (float64)."""
    a, b = a.double().flatten(), b.double().flatten()
    return float(a @ b / (a.norm() * b.norm()).clamp_min(1e-300))


def op_table(snn: SpikingTransformer, ids: torch.Tensor) -> list:
    """Per layer of the converted model: operations per token on ``ids`` (an :class:`~neuro.energy.OpCounter`
    run): accumulates, multiplies and non-linear evaluations. Rows with ``mac`` or ``nonlinear`` are what
    is not accumulate-only."""
    from ..energy import OpCounter

    with OpCounter(snn, multistep=True) as counter:
        snn(ids)
    counts = counter.counts()
    n = ids.numel()
    rows = []
    for name, lc in counts.layers.items():
        row = {"layer": name, "op": lc.module_type, "kind": lc.kind,
               "ac_per_token": lc.total("ac") / n, "mac_per_token": lc.total("mac") / n,
               "nonlinear_per_token": lc.total("nonlinear") / n, "spikes_per_token": lc.total("spike") / n}
        rows.append(row)
    return rows


@dataclass
class FidelityReport:
    """Fidelity of one conversion. Decoders: perplexities; encoders: cosine similarities of hidden states."""

    timesteps: int
    ann: Optional[float]
    twin: Optional[float]
    snn: Optional[float]
    metric: str                      # "perplexity" or "cosine_similarity"
    snn_equals_twin: bool
    cosine_to_ann: float
    layers: list = field(default_factory=list)

    def to_dict(self) -> dict:
        d = {"timesteps": self.timesteps, "metric": self.metric, "snn_equals_twin": self.snn_equals_twin,
             "cosine_similarity": self.cosine_to_ann, "layers": self.layers}
        if self.metric == "perplexity":
            d.update(ann_perplexity=self.ann, twin_perplexity=self.twin, snn_perplexity=self.snn)
        return d


def perplexity_report(model, snn, twin, ids: torch.Tensor, seq_len: int, batch_size: int):
    """Perplexity of a decoder, its twin and ``snn`` on ``ids`` (:func:`~neuro.models.transformer.evaluate_lm`,
    windows of ``seq_len``), and, on the first window (the returned probe ``[1, L]``), whether ``snn``
    equals the twin exactly and the cosine of its logits with the float model's. Call under ``no_grad``."""
    ann = evaluate_lm(model, ids, seq_len, batch_size=batch_size)["perplexity"]
    tw = evaluate_lm(twin, ids, seq_len, batch_size=batch_size)["perplexity"] if twin is not None else None
    sn = evaluate_lm(snn, ids, seq_len, batch_size=batch_size)["perplexity"]
    probe = ids[: min(len(ids), seq_len)][None]
    y_ann, y_snn = model(probe), snn(probe)
    equal = bool(twin is not None and torch.equal(y_snn, twin(probe)))
    return FidelityReport(snn.timesteps, ann, tw, sn, "perplexity", equal, cosine(y_ann, y_snn)), probe


def report(model: TransformerLM, snn: SpikingTransformer, twin: Optional[QuantizedTransformer], ids: torch.Tensor,
           seq_len: Optional[int] = None, batch_size: int = 8, layers: bool = True) -> FidelityReport:
    """Compare ``snn`` with the float ``model`` and the ``twin`` on ``ids`` (a 1-D token stream for
    decoders, scored with :func:`~neuro.models.transformer.evaluate_lm`; ``[B, L]`` for encoders)."""
    backend = backend_for(model)
    if backend is not None:
        return backend.report(model, snn, twin, ids, seq_len, batch_size, layers)
    L = int(seq_len or model.config.max_seq)
    ids = torch.as_tensor(ids).long()
    with torch.no_grad():
        if model.config.is_encoder:
            batch = ids if ids.dim() == 2 else ids[: (len(ids) // L) * L].view(-1, L)[:batch_size]
            h_ann, h_snn = model(batch), snn(batch)
            h_twin = twin(batch) if twin is not None else None
            rep = FidelityReport(snn.timesteps, None, None, None, "cosine_similarity",
                                 bool(h_twin is not None and torch.equal(h_snn, h_twin)), cosine(h_ann, h_snn))
            probe = batch[:1, :min(L, 16)]
        else:
            rep, probe = perplexity_report(model, snn, twin, ids, L, batch_size)
            probe = probe[:, :16]
    if layers:
        rep.layers = op_table(snn, probe)
    return rep


# ------------------------------------------------------------------------------------ convert
def convert(model: TransformerLM, calibration, timesteps: int = 8, weight_bits: int = 10, fine_bits: int = 20,
            spread_bits: int = 8, headroom_bits: Optional[int] = None, max_calibration_tokens: int = 8192,
            eval_ids: Optional[torch.Tensor] = None,
            progress: bool = False) -> SpikingTransformer:
    """Convert a :class:`~neuro.models.transformer.TransformerLM` into a :class:`SpikingTransformer`, or an
    :class:`~neuro.models.rwkv.RWKVLM` into a :class:`~neuro.converters.spiking_rwkv.SpikingRWKV` (:data:`BACKENDS`).

    Args:
        model: the float model (every module must have a spiking mapping, see :func:`validate`).
        calibration: a text file, a tensor of token ids or a list of id batches ``[B, L]``.
        timesteps: T (1..16), the steps of each window and the bits of every activation code.
        weight_bits, fine_bits, spread_bits, headroom_bits: see :class:`ConversionParams`.
        eval_ids: if given, the fidelity :func:`report` on these tokens is computed too.

    Returns the spiking model; ``snn.records`` holds the stage records (``validate``, ``calibrate``,
    ``map``, ``twin`` and, with ``eval_ids``, ``report``).
    """
    if not isinstance(timesteps, int) or isinstance(timesteps, bool) or timesteps < 1:
        raise ParameterError("convert", "timesteps", timesteps, "an integer >= 1")
    params = ConversionParams(timesteps=timesteps, weight_bits=weight_bits, fine_bits=fine_bits,
                              spread_bits=spread_bits, headroom_bits=headroom_bits)
    val = validate(model)
    calib = calibrate(model, calibration, max_calibration_tokens, progress=progress)
    params, chosen = choose_headroom(model, auto_headroom_split(model, calibration, params, max_calibration_tokens),
                                     params)
    snn = map_model(model, calib, params)
    twin = quantized_twin(model, calib, params)
    records = {"validate": val, "calibrate": calib, "map": snn.records["map"], "twin": twin}
    if chosen is not None:
        records["headroom"] = chosen
    if eval_ids is not None:
        records["report"] = report(model, snn, twin, eval_ids)
    snn.records = records
    return snn
