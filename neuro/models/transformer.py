r"""Reference Transformer language models in plain PyTorch: GPT-2, GPT-NeoX/Pythia, Llama and BERT.

One configurable family (:class:`TransformerConfig`, :class:`TransformerLM`) covers the four
architectures. Every operation that is not an addition is its own submodule (linear layers, norms,
activations, :class:`Rotary`, the two attention products :class:`MatMul`, :class:`Softmax`, the gate
product :class:`Mul`), so a converter can walk the module tree, list what it does not know and
swap each op by type.

Block (``x`` the residual stream, ``N1``/``N2`` the two norms, Vaswani et al. 2017; Radford et al.
2019 for pre-LN; Black et al. 2022 for the parallel residual; Devlin et al. 2019 for post-LN)::

    pre-LN (GPT, Llama):        x = x + Attn(N1(x));  x = x + MLP(N2(x))
    parallel (GPT-NeoX):        x = x + Attn(N1(x)) + MLP(N2(x))
    post-LN (BERT):             x = N1(x + Attn(x));  x = N2(x + MLP(x))

Attention per head (``d_h = d_model / n_head``), with an additive mask ``M`` (0 where a key may be
seen, :data:`MASK_VALUE` where not: causal and/or padding)::

    A = softmax((q / sqrt(d_h)) k^T + M);   out = A v

The ``1/sqrt(d_h)`` factor multiplies the output of ``q`` inside :meth:`Attention.forward` as a
constant (so a converter can fold it into ``q``'s weights). Grouped-query attention (Ainslie et al.
2023) shares each key/value head among ``n_head / n_kv_head`` consecutive query heads.

Rotary position embedding (Su et al. 2021, the "rotate half" layout of GPT-NeoX and Llama) rotates
the first ``r = int(d_h * rotary_pct)`` dims of q and k: with ``theta_i = base^(-2i/r)``,
``x' = x cos(p theta) + rotate_half(x) sin(p theta)``, ``rotate_half([a, b]) = [-b, a]``.

RMSNorm (Zhang & Sennrich 2019): ``y = w * x / sqrt(mean(x^2) + eps)``. SwiGLU (Shazeer 2020):
``down(silu(gate(x)) * up(x))``.

Streaming: :meth:`TransformerLM.init_cache` and :meth:`TransformerLM.decode_step` keep the keys and
values of every layer (after rotary, before the GQA repeat); positions continue from the cache.
:func:`generate` samples with any object offering these two methods; :func:`evaluate_lm` scores any
callable that maps ids to logits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import ParameterError, ShapeError
from ..core.params import Params, boolean, integer, one_of, optional, param, positive, record, unit_interval_closed
from ..io import savable
from .lm import LanguageModel, check_token_ids

# Additive mask value for a key a query may not see: finite (so masked scores never make NaN or Inf
# in a quantized copy), and far below any real score (exp underflows to exactly 0 in float32).
MASK_VALUE = -1e9

ARCHS = ("gpt", "neox", "llama", "bert")


def _optional_chars(v):
    if v is None:
        return None
    if isinstance(v, str) and v and len(set(v)) == len(v):
        return None
    return "None or a non-empty string of distinct characters"


@record
class TransformerConfig(Params):
    """Architecture of a :class:`TransformerLM` (validated, frozen).

    ``n_kv_head`` and ``d_ff`` default to ``n_head`` and ``4 * d_model``. ``arch == "bert"`` makes an
    encoder (no final norm, no head: the forward returns hidden states; embedding LayerNorm); the
    other archs are decoders with a final norm and a head to the vocabulary. :func:`config_for`
    fills in the usual settings of each arch.
    """

    arch: str = param("gpt", one_of(*ARCHS), doc="architecture family")
    vocab_size: int = param(65, integer(lo=1), doc="number of tokens")
    d_model: int = param(128, integer(lo=1), doc="width of the residual stream")
    n_layer: int = param(4, integer(lo=1), doc="number of blocks")
    n_head: int = param(4, integer(lo=1), doc="query heads")
    n_kv_head: Optional[int] = param(None, optional(integer(lo=1)), doc="key/value heads (GQA); None: n_head")
    d_ff: Optional[int] = param(None, optional(integer(lo=1)), doc="hidden width of the MLP; None: 4 d_model")
    max_seq: int = param(128, integer(lo=1), doc="longest sequence (learned positions, caches)")
    norm: str = param("layernorm", one_of("layernorm", "rmsnorm"))
    norm_eps: float = param(1e-5, positive)
    mlp: str = param("gelu", one_of("gelu", "gelu_tanh", "swiglu", "relu"))
    pos: str = param("learned", one_of("learned", "rotary"))
    rotary_pct: float = param(1.0, unit_interval_closed, doc="fraction of each head's dims that rotate")
    rotary_base: float = param(10000.0, positive)
    parallel_residual: bool = param(False, boolean, doc="GPT-NeoX: attention and MLP read the same input")
    post_norm: bool = param(False, boolean, doc="BERT: norm after each residual addition")
    causal: bool = param(True, boolean)
    bias: bool = param(True, boolean, doc="biases of linear layers and LayerNorms")
    tie_embeddings: bool = param(True, boolean, doc="head weight is the token embedding")
    type_vocab_size: int = param(0, integer(lo=0), doc="BERT token types; 0: none")
    vocab_chars: Optional[str] = param(None, _optional_chars, doc="character vocabulary of char-level models")

    def _check(self):
        if self.n_kv_head is None:
            object.__setattr__(self, "n_kv_head", self.n_head)
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        if self.d_model % self.n_head:
            self.fail("d_model", f"a multiple of n_head = {self.n_head}")
        if self.n_head % self.n_kv_head:
            self.fail("n_kv_head", f"a divisor of n_head = {self.n_head}")
        if self.pos == "rotary" and (self.rotary_dim < 2 or self.rotary_dim % 2):
            self.fail("rotary_pct", f"such that int(d_head * rotary_pct) is even and >= 2 (d_head = {self.d_head})")
        if self.post_norm and self.parallel_residual:
            self.fail("post_norm", "False when parallel_residual is True")
        if self.arch == "bert" and self.causal:
            self.fail("causal", "False for the encoder arch 'bert'")
        if self.arch == "bert" and self.tie_embeddings:
            self.fail("tie_embeddings", "False for the encoder arch 'bert' (it has no head)")
        if self.vocab_chars is not None and len(self.vocab_chars) != self.vocab_size:
            self.fail("vocab_chars", f"a string of vocab_size = {self.vocab_size} characters")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head

    @property
    def rotary_dim(self) -> int:
        return int(self.d_head * self.rotary_pct) if self.pos == "rotary" else 0

    @property
    def is_encoder(self) -> bool:
        return self.arch == "bert"


# The usual settings of each arch; :func:`config_for` applies them under the caller's overrides.
ARCH_DEFAULTS = {
    "gpt": dict(norm="layernorm", mlp="gelu", pos="learned", bias=True, tie_embeddings=True),
    "neox": dict(norm="layernorm", mlp="gelu", pos="rotary", rotary_pct=0.25, parallel_residual=True, bias=True,
                 tie_embeddings=False),
    "llama": dict(norm="rmsnorm", norm_eps=1e-6, mlp="swiglu", pos="rotary", bias=False, tie_embeddings=False),
    "bert": dict(norm="layernorm", norm_eps=1e-12, mlp="gelu", pos="learned", post_norm=True, causal=False,
                 bias=True, tie_embeddings=False, type_vocab_size=2),
}


def config_for(arch: str, **overrides) -> TransformerConfig:
    """A :class:`TransformerConfig` with the usual settings of ``arch`` (see :data:`ARCH_DEFAULTS`)."""
    if arch not in ARCH_DEFAULTS:
        raise ParameterError("config_for", "arch", arch, "one of " + ", ".join(map(repr, ARCHS)))
    return TransformerConfig(arch=arch, **{**ARCH_DEFAULTS[arch], **overrides})


# ------------------------------------------------------------------------------------ pure ops
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``w * x / sqrt(mean(x^2, -1) + eps)``, computed in float32. Shape: [..., D] -> [..., D]."""
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[a, b] -> [-b, a]`` over the last dim (halves a, b). Shape: [..., r] -> [..., r]."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def rotary_angles(positions: torch.Tensor, dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of ``p * base^(-2i/dim)``, each half repeated. Shape: positions [L] -> [L, dim] twice."""
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))  # [dim/2]
    freqs = positions.to(torch.float32)[:, None] * inv_freq[None, :]  # [L, dim/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [L, dim]
    return emb.cos(), emb.sin()


# ------------------------------------------------------------------------------------ op modules
class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain (no bias, no centring). Shape: [..., D] -> [..., D]."""

    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps}"


class Rotary(nn.Module):
    """Rotary position embedding of the first ``dim`` channels of each head (no parameters).

    Shape: x [B, H, L, d_h], positions [L] (int64) -> [B, H, L, d_h].
    """

    def __init__(self, dim: int, base: float = 10000.0):
        super().__init__()
        self.dim, self.base = int(dim), float(base)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        cos, sin = rotary_angles(positions, self.dim, self.base)  # [L, r]
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        rot, rest = x[..., :self.dim], x[..., self.dim:]  # [B, H, L, r], [B, H, L, d_h - r]
        rot = rot * cos + rotate_half(rot) * sin
        return torch.cat((rot, rest), dim=-1) if rest.shape[-1] else rot

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base={self.base}"


class MatMul(nn.Module):
    """Batched matrix product of its two inputs: ``a @ b``. Shape: [..., n, k], [..., k, m] -> [..., n, m]."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class Mul(nn.Module):
    """Element-wise product of two tensors of the same (broadcastable) shape."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b


class Softmax(nn.Module):
    """``softmax(x + mask)`` over the last dim, in float32; ``mask`` is additive (0 or :data:`MASK_VALUE`).

    Shape: x [..., L_k], mask broadcastable to x or None -> [..., L_k].
    """

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if mask is not None:
            x = x + mask
        return torch.softmax(x.float(), dim=-1).to(x.dtype)


def _norm(cfg: TransformerConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return RMSNorm(cfg.d_model, cfg.norm_eps)
    return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=cfg.bias)


# activation name -> factory (GPT-2's "gelu_new" is the tanh approximation)
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
    "swiglu": nn.SiLU,
}


class MLP(nn.Module):
    """``proj(act(fc(x)))``. Shape: [..., D] -> [..., D]."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.act = ACTIVATIONS[cfg.mlp]()
        self.proj = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.act(self.fc(x)))  # [..., D]


class GatedMLP(nn.Module):
    """SwiGLU: ``down(mul(silu(gate(x)), up(x)))``. Shape: [..., D] -> [..., D]."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.up = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.act = nn.SiLU()
        self.mul = Mul()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.mul(self.act(self.gate(x)), self.up(x)))  # [..., D]


@dataclass(frozen=True)
class LayerCache:
    """Keys and values of one attention layer so far. Shape: each [B, n_kv_head, S, d_h]."""

    k: torch.Tensor
    v: torch.Tensor


class Attention(nn.Module):
    """Multi-head (grouped-query) self-attention; see the module docstring for the equations.

    Shape: x [B, L, D], positions [L], mask broadcastable to [B, H, L, S] or None -> [B, L, D]
    (and the updated :class:`LayerCache` when one is given).
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.d_head = cfg.n_head, cfg.n_kv_head, cfg.d_head
        self.scale = 1.0 / math.sqrt(cfg.d_head)  # constant factor on q's output
        self.q = nn.Linear(cfg.d_model, cfg.n_head * cfg.d_head, bias=cfg.bias)
        self.k = nn.Linear(cfg.d_model, cfg.n_kv_head * cfg.d_head, bias=cfg.bias)
        self.v = nn.Linear(cfg.d_model, cfg.n_kv_head * cfg.d_head, bias=cfg.bias)
        self.o = nn.Linear(cfg.n_head * cfg.d_head, cfg.d_model, bias=cfg.bias)
        self.rotary = Rotary(cfg.rotary_dim, cfg.rotary_base) if cfg.pos == "rotary" else None
        self.qk = MatMul()
        self.softmax = Softmax()
        self.pv = MatMul()

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: Optional[torch.Tensor] = None,
                cache: Optional[LayerCache] = None):
        B, L, _ = x.shape
        q = (self.q(x) * self.scale).view(B, L, self.n_head, self.d_head).transpose(1, 2)  # [B, H, L, d_h]
        k = self.k(x).view(B, L, self.n_kv_head, self.d_head).transpose(1, 2)  # [B, Hkv, L, d_h]
        v = self.v(x).view(B, L, self.n_kv_head, self.d_head).transpose(1, 2)  # [B, Hkv, L, d_h]
        if self.rotary is not None:
            q, k = self.rotary(q, positions), self.rotary(k, positions)
        if cache is not None:
            k = torch.cat((cache.k, k), dim=2)  # [B, Hkv, S, d_h]
            v = torch.cat((cache.v, v), dim=2)
        new_cache = LayerCache(k, v)
        rep = self.n_head // self.n_kv_head
        if rep > 1:
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)  # [B, H, S, d_h]
        att = self.softmax(self.qk(q, k.transpose(-2, -1)), mask)  # [B, H, L, S]
        y = self.pv(att, v)  # [B, H, L, d_h]
        y = self.o(y.transpose(1, 2).reshape(B, L, self.n_head * self.d_head))  # [B, L, D]
        return y, new_cache


class Block(nn.Module):
    """One Transformer block (pre-LN, parallel residual or post-LN). Shape: [B, L, D] -> [B, L, D]."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.parallel_residual, self.post_norm = cfg.parallel_residual, cfg.post_norm
        self.norm1 = _norm(cfg)
        self.attn = Attention(cfg)
        self.norm2 = _norm(cfg)
        self.mlp = GatedMLP(cfg) if cfg.mlp == "swiglu" else MLP(cfg)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: Optional[torch.Tensor] = None,
                cache: Optional[LayerCache] = None):
        if self.post_norm:
            a, cache = self.attn(x, positions, mask, cache)
            x = self.norm1(x + a)
            return self.norm2(x + self.mlp(x)), cache
        a, cache = self.attn(self.norm1(x), positions, mask, cache)
        if self.parallel_residual:
            return x + a + self.mlp(self.norm2(x)), cache
        x = x + a
        return x + self.mlp(self.norm2(x)), cache


class Embeddings(nn.Module):
    """Token (+ learned position) (+ token type) embeddings, then BERT's LayerNorm if any.

    Shape: idx [B, L], positions [L], token_type_ids [B, L] or None -> [B, L, D].
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.tok = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_seq, cfg.d_model) if cfg.pos == "learned" else None
        # registered directly: ``type`` is also the name of nn.Module's dtype cast, which the property
        # below shadows on this class (cast with ``.to(dtype)`` instead)
        self._modules["type"] = nn.Embedding(cfg.type_vocab_size, cfg.d_model) if cfg.type_vocab_size else None
        self.norm = _norm(cfg) if cfg.is_encoder else None

    @property
    def type(self) -> Optional[nn.Embedding]:
        """The token-type embedding (BERT), or None."""
        return self._modules["type"]

    def forward(self, idx: torch.Tensor, positions: torch.Tensor,
                token_type_ids: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.tok(idx)  # [B, L, D]
        if self.pos is not None:
            x = x + self.pos(positions)[None]
        if self.type is not None:
            types = token_type_ids if token_type_ids is not None else torch.zeros_like(idx)
            x = x + self.type(types)
        return self.norm(x) if self.norm is not None else x


@dataclass(frozen=True)
class KVCache:
    """The streaming state of a :class:`TransformerLM`: one :class:`LayerCache` per block (None before the
    first step) and the number of positions seen."""

    layers: tuple
    length: int
    batch_size: int


@savable("TransformerLM")
class TransformerLM(LanguageModel, nn.Module):
    """A Transformer language model (decoder) or encoder built from a :class:`TransformerConfig`.

    Args:
        config: the architecture (a :class:`TransformerConfig`, or a dict of its fields).

    Shape: idx [B, L] int64 (L <= max_seq), token_type_ids [B, L] or None, attention_mask [B, L] of
    0/1 (1: a real token) or None -> logits [B, L, V] (decoders) or hidden states [B, L, D] (``bert``).

    Examples::

        >>> m = TransformerLM(config_for("llama", vocab_size=65, d_model=64, n_layer=2, n_head=4, n_kv_head=2))
        >>> m(torch.zeros(1, 8, dtype=torch.long)).shape
        torch.Size([1, 8, 65])
    """

    CONFIG = TransformerConfig

    def __init__(self, config):
        super().__init__()
        self._configure(config)
        config = self.config
        self.embed = Embeddings(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm_f = None if config.is_encoder else _norm(config)
        self.head = None if config.is_encoder else nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.reset_parameters()
        if self.head is not None and config.tie_embeddings:
            self.head.weight = self.embed.tok.weight

    # -- construction and saving ------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """GPT-2 initialisation: N(0, 0.02) weights, zero biases, residual outputs scaled by 1/sqrt(2 n_layer)."""
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * self.config.n_layer) if name.endswith(
                    ("attn.o.weight", "mlp.proj.weight", "mlp.down.weight")) else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
            else:
                nn.init.ones_(p)  # norm gains

    # -- running ----------------------------------------------------------------------------------
    def _check_idx(self, idx: torch.Tensor, start: int) -> None:
        check_token_ids("TransformerLM", idx, start, self.config.max_seq)

    def _out(self, x: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            return x  # [B, L, D]
        return self.head(self.norm_f(x))  # [B, L, V]

    def forward(self, idx: torch.Tensor, token_type_ids: Optional[torch.Tensor] = None,
                attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        self._check_idx(idx, 0)
        B, L = idx.shape
        positions = torch.arange(L, device=idx.device)  # [L]
        mask = None
        if self.config.causal:
            mask = causal_mask(L, 0, idx.device)  # [L, L]
        if attention_mask is not None:
            if tuple(attention_mask.shape) != (B, L):
                raise ShapeError("TransformerLM", f"attention_mask must be [B, L] = {(B, L)}, "
                                                  f"got {tuple(attention_mask.shape)}")
            pad = padding_mask(attention_mask)  # [B, 1, 1, L]
            mask = pad if mask is None else mask + pad
        x = self.embed(idx, positions, token_type_ids)  # [B, L, D]
        for block in self.blocks:
            x, _ = block(x, positions, mask)
        return self._out(x)

    def init_cache(self, batch_size: int) -> KVCache:
        """An empty key/value cache for ``batch_size`` sequences (decoders only)."""
        if not self.config.causal:
            raise ParameterError("TransformerLM", "causal", False, "True for streaming (decode_step)")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ParameterError("TransformerLM.init_cache", "batch_size", batch_size, "an integer >= 1")
        return KVCache((None,) * self.config.n_layer, 0, batch_size)

    def decode_step(self, idx_new: torch.Tensor, cache: KVCache) -> tuple[torch.Tensor, KVCache]:
        """Run ``l`` new tokens after the cached ones. Shape: idx_new [B, l] -> logits [B, l, V], new cache."""
        if not isinstance(cache, KVCache):
            raise ParameterError("TransformerLM.decode_step", "cache", type(cache).__name__,
                                 "a KVCache from init_cache")
        self._check_idx(idx_new, cache.length)
        B, L = idx_new.shape
        if B != cache.batch_size:
            raise ShapeError("TransformerLM", f"idx_new has batch {B}, the cache {cache.batch_size}")
        positions = torch.arange(cache.length, cache.length + L, device=idx_new.device)  # [l]
        mask = causal_mask(L, cache.length, idx_new.device)  # [l, S]
        x = self.embed(idx_new, positions)  # [B, l, D]
        layers = []
        for block, lc in zip(self.blocks, cache.layers):
            x, lc = block(x, positions, mask, lc)
            layers.append(lc)
        return self._out(x), KVCache(tuple(layers), cache.length + L, B)


def causal_mask(n_new: int, n_past: int, device=None) -> torch.Tensor:
    """Additive mask of ``n_new`` queries at positions ``n_past..`` over all keys. Shape: [n_new, n_past + n_new]."""
    q = torch.arange(n_past, n_past + n_new, device=device)[:, None]
    k = torch.arange(n_past + n_new, device=device)[None, :]
    return torch.where(k <= q, 0.0, MASK_VALUE)


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Additive mask from a 0/1 attention mask (0: padding). Shape: [B, L] -> [B, 1, 1, L]."""
    return torch.where(attention_mask.bool(), 0.0, MASK_VALUE)[:, None, None, :]


# ------------------------------------------------------------------------------------ generation
@torch.no_grad()
def generate(model, prompt_ids: torch.Tensor, n_tokens: int, temperature: float = 1.0,
             top_k: Optional[int] = None, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Sample ``n_tokens`` after ``prompt_ids`` with any model offering ``init_cache``/``decode_step``.

    ``temperature == 0`` takes the most likely token (greedy). The context is kept within the model's
    ``config.max_seq`` (when it has one): once full, the cache restarts from the last half of the text.

    Shape: prompt_ids [B, L0] int64 -> [B, L0 + n_tokens].
    """
    if not isinstance(n_tokens, int) or n_tokens < 0:
        raise ParameterError("generate", "n_tokens", n_tokens, "an integer >= 0")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise ParameterError("generate", "temperature", temperature, "a finite number >= 0")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise ParameterError("generate", "top_k", top_k, "None or an integer >= 1")
    if not isinstance(prompt_ids, torch.Tensor) or prompt_ids.dim() != 2 or prompt_ids.shape[1] < 1:
        raise ShapeError("generate", f"prompt_ids must be [B, L0] with L0 >= 1, got {tuple(prompt_ids.shape)}")
    cfg = getattr(model, "config", None)
    max_seq = getattr(cfg, "max_seq", None)
    if max_seq is None and isinstance(cfg, dict):
        max_seq = cfg.get("max_seq")
    ids = prompt_ids.long()
    B = ids.shape[0]
    context = ids if max_seq is None else ids[:, -max_seq:]
    cache = model.init_cache(B)
    logits, cache = model.decode_step(context, cache)  # [B, L, V]
    seen = context.shape[1]
    for _ in range(n_tokens):
        nxt = sample_next(logits[:, -1, :], temperature, top_k, generator)  # [B, 1]
        ids = torch.cat((ids, nxt), dim=1)
        if max_seq is not None and seen + 1 > max_seq:
            keep = max(1, max_seq // 2)
            cache = model.init_cache(B)
            logits, cache = model.decode_step(ids[:, -keep:], cache)
            seen = keep
        else:
            logits, cache = model.decode_step(nxt, cache)
            seen += 1
    return ids


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: Optional[int] = None,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One token per row from ``logits / temperature`` (top-k filtered). Shape: [B, V] -> [B, 1]."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)


# ------------------------------------------------------------------------------------ bundled models
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "data" / "models"
BUNDLED = ("gpt-char", "llama-char")  # trained by `neuro train gpt` / `neuro train llama`; gpt-char is the default


def bundled_model_dir(name: str = "gpt-char") -> Path:
    """The folder of a bundled char-level Tiny Shakespeare model (load it with :func:`neuro.io.load_model`)."""
    if name not in BUNDLED:
        raise ParameterError("bundled_model_dir", "name", name, "one of " + ", ".join(map(repr, BUNDLED)))
    return BUNDLED_DIR / name


# ------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate_lm(model: Callable[[torch.Tensor], torch.Tensor], ids: torch.Tensor, seq_len: int,
                max_chars: Optional[int] = None, batch_size: int = 16) -> dict:
    """Next-token loss of ``model`` on ``ids``, in nats, bits per token and perplexity.

    The text (its first ``max_chars`` tokens, if given) is cut into consecutive windows of
    ``seq_len + 1`` tokens overlapping by one, each scored from an empty context: every token but
    the first is predicted exactly once. ``model`` is any callable mapping ids [B, L] to logits
    [B, L, V]. ``loss`` = mean cross-entropy (nats), ``bpc = loss / ln 2``, ``perplexity = exp(loss)``
    (per token: per character for char-level models).

    Shape: ids [N] int64.
    """
    if not isinstance(seq_len, int) or seq_len < 1:
        raise ParameterError("evaluate_lm", "seq_len", seq_len, "an integer >= 1")
    if max_chars is not None and (not isinstance(max_chars, int) or max_chars < 2):
        raise ParameterError("evaluate_lm", "max_chars", max_chars, "None or an integer >= 2")
    ids = torch.as_tensor(ids).long().flatten()
    if max_chars is not None:
        ids = ids[:max_chars]
    if len(ids) < 2:
        raise ShapeError("evaluate_lm", f"ids must hold at least 2 tokens, got {len(ids)}")
    n = len(ids) - 1  # tokens predicted
    starts = list(range(0, n, seq_len))
    total, count = 0.0, 0
    full = [s for s in starts if s + seq_len <= n]
    for i in range(0, len(full), batch_size):
        s = torch.tensor(full[i:i + batch_size])
        offs = s[:, None] + torch.arange(seq_len)[None, :]  # [b, L]
        total += _nll(model, ids[offs], ids[offs + 1])
        count += offs.numel()
    rest = [s for s in starts if s + seq_len > n]
    for s in rest:  # the last, shorter window
        x, y = ids[s:n][None], ids[s + 1:n + 1][None]  # [1, l]
        total += _nll(model, x, y)
        count += x.numel()
    loss = total / count
    return {"loss": loss, "bpc": loss / math.log(2), "perplexity": math.exp(loss), "tokens": count}


def _nll(model, x: torch.Tensor, y: torch.Tensor) -> float:
    logits = model(x)  # [b, L, V]
    if not isinstance(logits, torch.Tensor) or logits.shape[:2] != x.shape:
        raise ShapeError("evaluate_lm", f"the model must return logits [B, L, V] for input {tuple(x.shape)}, got "
                                        f"{tuple(getattr(logits, 'shape', ()))}")
    return float(F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"))


__all__ = ["ACTIVATIONS", "ARCHS", "ARCH_DEFAULTS", "Attention", "BUNDLED", "BUNDLED_DIR", "Block", "Embeddings",
           "GatedMLP", "KVCache", "LayerCache", "MASK_VALUE", "MLP", "MatMul", "Mul", "RMSNorm", "Rotary", "Softmax",
           "TransformerConfig", "TransformerLM", "bundled_model_dir", "causal_mask", "config_for", "evaluate_lm",
           "generate", "padding_mask", "rms_norm", "rotary_angles", "rotate_half", "sample_next"]
