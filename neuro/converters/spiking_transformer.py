r"""The converted Transformer: :class:`SpikingTransformer` and its quantized ANN twin :class:`QuantizedTransformer`.

Both are built by the same wiring (this file) from two operator sets
(:data:`~neuro.converters.spiking_ops.SPIKING_OPS`, :data:`~neuro.converters.spiking_ops.TWIN_OPS`):
the spiking model carries a leading time axis ``[T, ...]`` of per-step currents and spikes through
every operator, the twin computes on values. The wiring mirrors
:class:`neuro.models.transformer.TransformerLM` (same submodule paths for every op of the original),
plus an encoder (bit-serial neuron) in front of every synapse or spike product::

    attention:  enc_x -> q, k, v -> rotary -> enc_q, enc_k, enc_v -> qk -> softmax -> enc_p -> pv -> enc_y -> o
    MLP:        enc_x -> fc -> act -> enc_h -> proj        (gated: enc_x -> gate, up -> act, mul -> enc_h -> down)
    head:       norm_f -> enc_f -> head -> readout (integrates the window)

Schedule. Each encoder integrates its input over a window of ``T`` steps and emits its ``T``-step
spike train in the next window (layer-synchronous, as in LAS); every other operator works inside the
window. A token's latency is therefore ``T`` times the number of encoders on its longest path; the
result after each window is exact (see :mod:`~neuro.converters.spiking_ops`).

Streaming: :meth:`init_cache` / :meth:`decode_step` keep, per layer, the key and value **spike
trains** ``[T, B, n_kv_head, S, d_h]`` (their running sums are the accumulated spike counts the
running-sum product reads), so new queries meet the cached keys in spiking form.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..core.errors import ParameterError, ShapeError
from ..core.params import Params, integer, optional, param, record
from ..io import savable
from ..models.lm import LanguageModel, check_token_ids
from ..models.transformer import TransformerConfig, causal_mask, padding_mask
from .spiking_ops import (DTYPE, SPIKING_OPS, TWIN_OPS, OpSet, SpikingActivation, SpikingLinear, SpikingMatMul,
                          SpikingMul, SpikingRotary, SpikingSoftmax, q_grid, residual_add)


@record
class ConversionParams(Params):
    """Quantization of a converted Transformer (validated, frozen)."""

    timesteps: int = param(8, integer(lo=1, hi=16), doc="T: steps per window = bits of every activation code")
    weight_bits: int = param(10, integer(lo=2, hi=16), doc="signed bits of every weight (per-row power-of-two step)")
    fine_bits: int = param(20, integer(lo=4, hi=30), doc="bits of the non-linear operators' output grids below their range")
    spread_bits: int = param(8, integer(lo=0, hi=20), doc="largest ratio (log2) between two channels' steps in one encoder")
    headroom_bits: Optional[int] = param(None, optional(integer(lo=0, hi=8)),
                                         doc="encoder ranges are the calibrated maxima times 2^headroom_bits; "
                                             "None: convert() chooses it on held-out calibration windows, "
                                             "map_model() takes 1 + (T - 8) // 4 for T > 8, else 1")

    @property
    def headroom(self) -> int:
        """Bits of range above the calibrated maxima. At T <= 8 one bit; beyond, a quarter of the extra
        bits goes to range: rare run-time outliers (e.g. SwiGLU products up to ~20x the calibrated
        maximum on the bundled Llama) then saturate less, while the step stays far below the 8-bit one."""
        if self.headroom_bits is not None:
            return self.headroom_bits
        return 1 + max(0, self.timesteps - 8) // 4


def _heads(t: torch.Tensor, n: int) -> torch.Tensor:
    """[..., L, n*d] -> [..., n, L, d]."""
    return t.view(*t.shape[:-1], n, t.shape[-1] // n).transpose(-3, -2)


def _merge(t: torch.Tensor) -> torch.Tensor:
    """[..., n, L, d] -> [..., L, n*d]."""
    t = t.transpose(-3, -2)
    return t.reshape(*t.shape[:-2], t.shape[-2] * t.shape[-1])


def _norm(cfg: TransformerConfig, ops: OpSet) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return ops["rmsnorm"](cfg.d_model, cfg.norm_eps)
    return ops["layernorm"](cfg.d_model, cfg.norm_eps, cfg.bias)


class QEmbeddings(nn.Module):
    """Token (+ position) (+ type) embeddings on the grid ``g``, fed into the window, then BERT's norm.

    Shape: idx [B, L] -> [*t, B, L, D] (``*t``: the time axis of the spiking model).
    """

    def __init__(self, cfg: TransformerConfig, ops: OpSet, T: int):
        super().__init__()
        D = cfg.d_model
        self.register_buffer("tok", torch.zeros(cfg.vocab_size, D, dtype=DTYPE))
        self.register_buffer("pos", torch.zeros(cfg.max_seq, D, dtype=DTYPE) if cfg.pos == "learned" else None)
        self.register_buffer("types", torch.zeros(cfg.type_vocab_size, D, dtype=DTYPE)
                             if cfg.type_vocab_size else None)
        self.register_buffer("grid", torch.ones((), dtype=DTYPE))
        self.inject = ops["inject"](T)
        self.norm = _norm(cfg, ops) if cfg.is_encoder else None

    def forward(self, idx, positions, token_type_ids=None):
        x = self.tok[idx]                                               # [B, L, D]
        if self.pos is not None:
            x = x + self.pos[positions][None]
        if self.types is not None:
            x = x + self.types[token_type_ids if token_type_ids is not None else torch.zeros_like(idx)]
        x = self.inject(q_grid(x, self.grid))                           # [*t, B, L, D]
        return self.norm(x) if self.norm is not None else x


class QAttention(nn.Module):
    """Attention with an encoder before each synapse and spike product. Shape: [*t, B, L, D] -> [*t, B, L, D]."""

    def __init__(self, cfg: TransformerConfig, ops: OpSet, T: int):
        super().__init__()
        H, Hkv, dh, D = cfg.n_head, cfg.n_kv_head, cfg.d_head, cfg.d_model
        self.n_head, self.n_kv_head = H, Hkv
        enc = ops["encoder"]
        self.enc_x = enc((D,), T)
        self.q = ops["linear"](D, H * dh, cfg.bias)
        self.k = ops["linear"](D, Hkv * dh, cfg.bias)
        self.v = ops["linear"](D, Hkv * dh, cfg.bias)
        self.rotary = ops["rotary"](cfg.rotary_dim, cfg.rotary_base) if cfg.pos == "rotary" else None
        self.enc_q = enc((H, 1, dh), T)
        self.enc_k = enc((Hkv, 1, dh), T)
        self.enc_v = enc((Hkv, 1, dh), T)
        self.qk = ops["matmul"]()
        self.softmax = ops["softmax"]()
        self.enc_p = enc((1,), T)
        self.pv = ops["matmul"]()
        self.enc_y = enc((H * dh,), T)
        self.o = ops["linear"](H * dh, D, cfg.bias)

    def forward(self, x, positions, mask=None, cache=None):
        xs = self.enc_x(x)                                              # [*t, B, L, D]
        q = _heads(self.q(xs), self.n_head)                             # [*t, B, H, L, dh] (1/sqrt(dh) folded into q)
        k = _heads(self.k(xs), self.n_kv_head)                          # [*t, B, Hkv, L, dh]
        v = _heads(self.v(xs), self.n_kv_head)
        if self.rotary is not None:
            q, k = self.rotary(q, positions=positions), self.rotary(k, positions=positions)
        qs, ks, vs = self.enc_q(q), self.enc_k(k), self.enc_v(v)
        if cache is not None:
            ks, vs = torch.cat((cache[0], ks), dim=-2), torch.cat((cache[1], vs), dim=-2)  # [*t, B, Hkv, S, dh]
        new_cache = (ks, vs)
        rep = self.n_head // self.n_kv_head
        if rep > 1:
            ks, vs = ks.repeat_interleave(rep, dim=-3), vs.repeat_interleave(rep, dim=-3)  # [*t, B, H, S, dh]
        att = self.softmax(self.qk(qs, ks.transpose(-2, -1)), mask=mask)  # [*t, B, H, L, S]
        y = self.pv(self.enc_p(att), vs)                                # [*t, B, H, L, dh]
        return self.o(self.enc_y(_merge(y))), new_cache                 # [*t, B, L, D]


class QMLP(nn.Module):
    """``proj(enc_h(act(fc(enc_x(x)))))``. Shape: [*t, ..., D] -> [*t, ..., D]."""

    def __init__(self, cfg: TransformerConfig, ops: OpSet, T: int):
        super().__init__()
        self.enc_x = ops["encoder"]((cfg.d_model,), T)
        self.fc = ops["linear"](cfg.d_model, cfg.d_ff, cfg.bias)
        self.act = ops["activation"](cfg.mlp)
        self.enc_h = ops["encoder"]((cfg.d_ff,), T)
        self.proj = ops["linear"](cfg.d_ff, cfg.d_model, cfg.bias)

    def forward(self, x):
        return self.proj(self.enc_h(self.act(self.fc(self.enc_x(x)))))


class QGatedMLP(nn.Module):
    """``down(enc_h(mul(silu(gate(s)), up(s))))`` with ``s = enc_x(x)``. Shape: [*t, ..., D] -> [*t, ..., D]."""

    def __init__(self, cfg: TransformerConfig, ops: OpSet, T: int):
        super().__init__()
        self.enc_x = ops["encoder"]((cfg.d_model,), T)
        self.gate = ops["linear"](cfg.d_model, cfg.d_ff, cfg.bias)
        self.up = ops["linear"](cfg.d_model, cfg.d_ff, cfg.bias)
        self.act = ops["activation"]("silu")
        self.mul = ops["mul"]()
        self.enc_h = ops["encoder"]((cfg.d_ff,), T)
        self.down = ops["linear"](cfg.d_ff, cfg.d_model, cfg.bias)

    def forward(self, x):
        s = self.enc_x(x)
        return self.down(self.enc_h(self.mul(self.act(self.gate(s)), self.up(s))))


class QBlock(nn.Module):
    """One block, wired as :class:`neuro.models.transformer.Block` (pre-LN, parallel or post-LN)."""

    def __init__(self, cfg: TransformerConfig, ops: OpSet, T: int):
        super().__init__()
        self.parallel_residual, self.post_norm = cfg.parallel_residual, cfg.post_norm
        self.norm1 = _norm(cfg, ops)
        self.attn = QAttention(cfg, ops, T)
        self.norm2 = _norm(cfg, ops)
        self.mlp = QGatedMLP(cfg, ops, T) if cfg.mlp == "swiglu" else QMLP(cfg, ops, T)

    def forward(self, x, positions, mask=None, cache=None):
        if self.post_norm:
            a, cache = self.attn(x, positions, mask, cache)
            x = self.norm1(residual_add(x, a))
            return self.norm2(residual_add(x, self.mlp(x))), cache
        a, cache = self.attn(self.norm1(x), positions, mask, cache)
        if self.parallel_residual:
            return residual_add(residual_add(x, a), self.mlp(self.norm2(x))), cache
        x = residual_add(x, a)
        return residual_add(x, self.mlp(self.norm2(x))), cache


@dataclass(frozen=True)
class SpikeCache:
    """Streaming state: per layer the key and value spike trains (or the twin's values), and the length."""

    layers: tuple
    length: int
    batch_size: int


class ConvertedLM(LanguageModel):
    """What the converted language models (Transformer, RWKV) share, mixed into their ``nn.Module``
    bases: the original's configuration (of class ``CONFIG``, as :class:`~neuro.models.lm.LanguageModel`)
    and the :class:`ConversionParams`, checked and kept by :meth:`_configure`; ``timesteps`` and the model
    folder's config round trip."""

    CONFIG: type = TransformerConfig

    def _configure(self, config, params) -> None:
        """Keeps ``config`` (a ``CONFIG`` or its dict) and ``params`` (a ConversionParams or its dict)."""
        super()._configure(config)
        if isinstance(params, dict):
            params = ConversionParams.from_dict(params)
        if not isinstance(params, ConversionParams):
            raise ParameterError(type(self).__name__, "params", type(params).__name__, "a ConversionParams or a dict")
        self.params = params

    @property
    def timesteps(self) -> int:
        return self.params.timesteps

    def get_config(self) -> dict:
        return {"model": self.config.to_dict(), "conversion": self.params.to_dict()}

    @classmethod
    def from_config(cls, config: dict):
        return cls(cls.CONFIG.from_dict(config["model"]), ConversionParams.from_dict(config["conversion"]))


class _QuantTransformerBase(ConvertedLM, nn.Module):
    """Shared wiring of the spiking model and its twin; ``OPS`` picks the operator set."""

    OPS: OpSet = TWIN_OPS

    def __init__(self, config, params: ConversionParams):
        super().__init__()
        self._configure(config, params)
        config, params = self.config, self.params
        ops, T = self.OPS, params.timesteps
        self.embed = QEmbeddings(config, ops, T)
        self.blocks = nn.ModuleList(QBlock(config, ops, T) for _ in range(config.n_layer))
        self.norm_f = None if config.is_encoder else _norm(config, ops)
        self.enc_f = None if config.is_encoder else ops["encoder"]((config.d_model,), T)
        self.head = None if config.is_encoder else ops["linear"](config.d_model, config.vocab_size, False)
        self.readout = ops["readout"](T)
        self.records = None  # the conversion's stage records (not saved)
        for m in self.modules():
            if isinstance(m, (SpikingLinear, SpikingMatMul, SpikingActivation, SpikingSoftmax, SpikingMul,
                              SpikingRotary)):
                # every receiver of these here sums or widens in float64 (encoders, accumulated-difference
                # operators, the float64 residual stream, the readout), so exact float32 currents may stay
                # float32; the norms' outputs can be the residual stream itself (post-norm), they stay float64
                m.narrow_output = True

    def _check_idx(self, idx, start: int) -> None:
        check_token_ids(type(self).__name__, idx, start, self.config.max_seq)

    def _out(self, x):
        if self.head is None:
            return self.readout(x)                                      # [B, L, D]
        return self.readout(self.head(self.enc_f(self.norm_f(x))))     # [B, L, V]

    @torch.no_grad()
    def forward(self, idx, token_type_ids=None, attention_mask=None):
        """Same inputs and outputs as :meth:`TransformerLM.forward` (float32 logits or hidden states)."""
        self._check_idx(idx, 0)
        B, L = idx.shape
        positions = torch.arange(L)
        mask = causal_mask(L, 0).to(DTYPE) if self.config.causal else None
        if attention_mask is not None:
            if tuple(attention_mask.shape) != (B, L):
                raise ShapeError(type(self).__name__, f"attention_mask must be [B, L] = {(B, L)}, "
                                                      f"got {tuple(attention_mask.shape)}")
            pad = padding_mask(attention_mask).to(DTYPE)
            mask = pad if mask is None else mask + pad
        x = self.embed(idx, positions, token_type_ids)
        for block in self.blocks:
            x, _ = block(x, positions, mask)
        return self._out(x)

    def init_cache(self, batch_size: int) -> SpikeCache:
        if not self.config.causal:
            raise ParameterError(type(self).__name__, "causal", False, "True for streaming (decode_step)")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ParameterError(f"{type(self).__name__}.init_cache", "batch_size", batch_size, "an integer >= 1")
        return SpikeCache((None,) * self.config.n_layer, 0, batch_size)

    @torch.no_grad()
    def decode_step(self, idx_new, cache: SpikeCache):
        """``l`` new tokens after the cached ones. Shape: idx_new [B, l] -> logits [B, l, V], new cache."""
        if not isinstance(cache, SpikeCache):
            raise ParameterError(f"{type(self).__name__}.decode_step", "cache", type(cache).__name__,
                                 "a SpikeCache from init_cache")
        self._check_idx(idx_new, cache.length)
        B, L = idx_new.shape
        if B != cache.batch_size:
            raise ShapeError(type(self).__name__, f"idx_new has batch {B}, the cache {cache.batch_size}")
        positions = torch.arange(cache.length, cache.length + L)
        mask = causal_mask(L, cache.length).to(DTYPE)
        x = self.embed(idx_new, positions)
        layers = []
        for block, lc in zip(self.blocks, cache.layers):
            x, lc = block(x, positions, mask, lc)
            layers.append(lc)
        return self._out(x), SpikeCache(tuple(layers), cache.length + L, B)


@savable("SpikingTransformer")
class SpikingTransformer(_QuantTransformerBase):
    """A Transformer converted to spiking operators (see the module docstring).

    Args:
        config: the :class:`~neuro.models.transformer.TransformerConfig` of the original.
        params: the :class:`ConversionParams` (``timesteps`` T, bit widths).

    Shape: as :class:`~neuro.models.transformer.TransformerLM`; internally every tensor carries a
    leading time axis of ``T`` steps. Build it with :func:`neuro.converters.convert`.
    """

    OPS = SPIKING_OPS


class QuantizedTransformer(_QuantTransformerBase):
    """The quantized ANN twin of a :class:`SpikingTransformer`: the same quantizers at the same
    places, computing on values. Build it with :func:`neuro.converters.quantized_twin`."""

    OPS = TWIN_OPS


from . import counting as _counting  # noqa: E402,F401  (registers the operation-counting rules)
