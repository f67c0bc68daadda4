r"""Reference RWKV-4 language model in plain PyTorch, in a sequence form and a streaming form.

RWKV-4 (Peng et al. 2023, "RWKV: Reinventing RNNs for the Transformer Era"; the block SpikeGPT,
Zhu et al. 2023, makes spiking). With ``x`` the residual stream::

    x = LN0(Embedding(idx))
    x = x + TimeMix(LN1(x));   x = x + ChannelMix(LN2(x))        (each block)
    logits = Head(LNout(x))

Token shift mixes each input with the previous token's (``x_{-1} = 0`` at the start of a text)::

    xk = mu_k * x_t + (1 - mu_k) * x_{t-1}                       (same for v, r with mu_v, mu_r)

Time mixing, with ``w = -exp(time_decay)`` (< 0, per channel) and ``u = time_first``::

    k = W_k xk,  v = W_v xv,  r = sigmoid(W_r xr),   out = W_o (r * wkv)
    wkv_t = (sum_{i<t} e^{(t-1-i) w + k_i} v_i + e^{u + k_t} v_t)
            / (sum_{i<t} e^{(t-1-i) w + k_i} + e^{u + k_t})

Channel mixing: ``out = sigmoid(W_r xr) * W_v (ReLU(W_k xk))^2``.

Two forms of the WKV operator give the same numbers:

* parallel (:func:`wkv_parallel`): ``wkv_t`` is a softmax-weighted average of the values over
  ``i <= t`` with logits ``(t-1-i) w + k_i`` (``i < t``) and ``u + k_t`` (``i = t``); the softmax
  subtracts the row maximum, so no exponential overflows. Cost O(L^2) per channel.
* recurrent (:func:`wkv_step`; over a sequence :func:`wkv_scan`): the running numerator ``A`` and
  denominator ``B`` are kept as ``(a, b, p)`` with ``A = a e^p``, ``B = b e^p`` (the log-max form)::

      q = max(p, u + k_t);   wkv_t = (e^{p-q} a + e^{u+k_t-q} v_t) / (e^{p-q} b + e^{u+k_t-q})
      q' = max(p + w, k_t);  a' = e^{p+w-q'} a + e^{k_t-q'} v_t;  b' = e^{p+w-q'} b + e^{k_t-q'};  p' = q'

  starting from ``a = b = 0``, ``p = P0`` (:data:`P0`, far below any key).

:class:`WKV` runs the recurrence: on CPU it trains faster than the O(L^2) parallel form (the
projections, not the WKV loop, dominate a training step), and it is what streaming needs.

Every operation a converter may swap is its own submodule (:class:`TokenShift`, :class:`WKV`,
``nn.Sigmoid`` receptances, :class:`SquaredReLU`, the gate products
:class:`~neuro.models.transformer.Mul`, the linear layers and LayerNorms).

Sequence form (:meth:`RWKVLM.forward`, for training and scoring): every layer over the whole
sequence at once, the WKV recurrence over its tokens from the empty state. Streaming form
(:meth:`RWKVLM.init_cache` / :meth:`RWKVLM.decode_step`, the contract of
:class:`~neuro.models.transformer.TransformerLM`): any number of new tokens after a carried
:class:`RWKVState`, whose size per sequence is constant however long the text, so
:func:`~neuro.models.transformer.generate` never has to restart it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..core.errors import ParameterError, ShapeError
from ..core.params import Params, integer, optional, param, positive, record
from ..io import savable
from .lm import LanguageModel, check_token_ids
from .transformer import BUNDLED_DIR, Mul, _optional_chars

# Initial log-scale of the WKV state: far below any key, so e^{P0 - q} is exactly 0 (as in the
# reference implementations, which start from -1e38).
P0 = -1e38


@record
class RWKVConfig(Params):
    """Architecture of an :class:`RWKVLM` (validated, frozen).

    ``d_attn`` (width of k, v, r and the WKV state) and ``d_ff`` (channel-mixing hidden width) default
    to ``d_model`` and ``4 * d_model``.
    """

    vocab_size: int = param(65, integer(lo=1), doc="number of tokens")
    d_model: int = param(128, integer(lo=1), doc="width of the residual stream")
    n_layer: int = param(4, integer(lo=1), doc="number of blocks")
    d_attn: Optional[int] = param(None, optional(integer(lo=1)), doc="time-mixing width; None: d_model")
    d_ff: Optional[int] = param(None, optional(integer(lo=1)), doc="channel-mixing hidden width; None: 4 d_model")
    norm_eps: float = param(1e-5, positive, doc="eps of the embedding and block LayerNorms")
    out_norm_eps: float = param(1e-5, positive, doc="eps of the final LayerNorm")
    vocab_chars: Optional[str] = param(None, _optional_chars, doc="character vocabulary of char-level models")

    def _check(self):
        if self.d_attn is None:
            object.__setattr__(self, "d_attn", self.d_model)
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        if self.vocab_chars is not None and len(self.vocab_chars) != self.vocab_size:
            self.fail("vocab_chars", f"a string of vocab_size = {self.vocab_size} characters")


# ------------------------------------------------------------------------------------ pure ops
def token_shift(x: torch.Tensor, last: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x_{t-1}`` for every t: the sequence moved one token later, ``last`` (or zeros) first.

    Shape: x [B, L, D], last [B, D] or None -> [B, L, D].
    """
    first = torch.zeros_like(x[:, :1]) if last is None else last[:, None].to(x.dtype)  # [B, 1, D]
    return torch.cat((first, x[:, :-1]), dim=1)


def mix(x: torch.Tensor, prev: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Token-shift interpolation ``mu * x + (1 - mu) * prev``. Shape: [B, L, D] twice, mu [D] -> [B, L, D]."""
    return x * mu + prev * (1 - mu)


def wkv_parallel(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """WKV of a whole sequence from an empty state, as a per-channel causal softmax average (module docstring).

    ``w`` is the (negative) per-token log decay ``-exp(time_decay)``. Shape: w, u [C], k, v [B, L, C] -> [B, L, C].
    """
    B, L, C = k.shape
    t = torch.arange(L, device=k.device)
    dist = (t[:, None] - 1 - t[None, :]).to(k.dtype)  # [L, L]: t - 1 - i
    kt = k.transpose(1, 2)  # [B, C, L]
    logits = w[None, :, None, None] * dist + kt[:, :, None, :]  # [B, C, L(t), L(i)]
    diag = (u[None, :, None] + kt)[..., None]  # [B, C, L, 1]: u + k_t
    eye = (t[:, None] == t[None, :])  # [L, L]
    logits = torch.where(eye, diag, logits)
    logits = logits.masked_fill(t[None, :] > t[:, None], float("-inf"))
    att = torch.softmax(logits, dim=-1)  # [B, C, L, L]
    return torch.einsum("bcti,bic->btc", att, v)  # [B, L, C]


@dataclass(frozen=True)
class WKVState:
    """Running WKV numerator and denominator in log-max form: ``A = a e^p``, ``B = b e^p``. Shape: each [B, C]."""

    a: torch.Tensor
    b: torch.Tensor
    p: torch.Tensor


def wkv_init(batch_size: int, channels: int, dtype=torch.float32, device=None) -> WKVState:
    """The empty WKV state (no token seen): ``a = b = 0``, ``p = P0``."""
    zeros = torch.zeros(batch_size, channels, dtype=dtype, device=device)
    return WKVState(zeros, zeros.clone(), torch.full_like(zeros, P0))


def wkv_step(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             state: WKVState) -> tuple[torch.Tensor, WKVState]:
    """One token of the WKV recurrence in log-max form (module docstring).

    Shape: w, u [C], k, v [B, C], state [B, C] each -> wkv [B, C], new state.
    """
    a, b, p = state.a, state.b, state.p
    q = torch.maximum(p, u + k)
    e1, e2 = torch.exp(p - q), torch.exp(u + k - q)
    out = (e1 * a + e2 * v) / (e1 * b + e2)  # [B, C]
    q2 = torch.maximum(p + w, k)
    e1, e2 = torch.exp(p + w - q2), torch.exp(k - q2)
    return out, WKVState(e1 * a + e2 * v, e1 * b + e2, q2)


def wkv_scan(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
             state: Optional[WKVState] = None) -> tuple[torch.Tensor, WKVState]:
    """The recurrence (:func:`wkv_step`) over a sequence, from ``state`` (default: empty).

    Shape: w, u [C], k, v [B, L, C] -> wkv [B, L, C], state after the last token.
    """
    if state is None:
        state = wkv_init(k.shape[0], k.shape[2], k.dtype, k.device)
    outs = []
    for t in range(k.shape[1]):
        o, state = wkv_step(w, u, k[:, t], v[:, t], state)  # [B, C]
        outs.append(o)
    return torch.stack(outs, dim=1), state


# ------------------------------------------------------------------------------------ op modules
class TokenShift(nn.Module):
    """The previous token's input (no parameters); see :func:`token_shift`. Shape: [B, L, D], [B, D] -> [B, L, D]."""

    def forward(self, x: torch.Tensor, last: Optional[torch.Tensor] = None) -> torch.Tensor:
        return token_shift(x, last)


class SquaredReLU(nn.Module):
    """``relu(x)^2`` (the channel-mixing activation). Shape: any -> same."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.square(torch.relu(x))


class WKV(nn.Module):
    """The WKV operator with its per-channel parameters ``time_decay`` (``w = -exp(time_decay)``) and
    ``time_first`` (``u``). :meth:`forward` runs a whole sequence from the empty state, :meth:`scan`
    continues from a given state; both use the log-max recurrence (:func:`wkv_scan`).

    Non-finite parameters raise :class:`~neuro.core.errors.ParameterError` naming the bad value.
    Shape: k, v [B, L, C] -> [B, L, C] (and the new state from :meth:`scan`).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.time_decay = nn.Parameter(torch.zeros(channels))
        self.time_first = nn.Parameter(torch.zeros(channels))

    def _wu(self) -> tuple[torch.Tensor, torch.Tensor]:
        for name in ("time_decay", "time_first"):
            p = getattr(self, name)
            bad = ~torch.isfinite(p.detach())
            if bad.any():
                i = int(bad.nonzero()[0, 0])
                raise ParameterError("WKV", name, float(p.detach()[i]), f"finite (channel {i} of {p.numel()})")
        return -torch.exp(self.time_decay), self.time_first

    def forward(self, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.scan(k, v)[0]

    def scan(self, k: torch.Tensor, v: torch.Tensor, state: Optional[WKVState] = None) -> tuple[torch.Tensor, WKVState]:
        w, u = self._wu()
        return wkv_scan(w.to(k.dtype), u.to(k.dtype), k, v, state)

    def extra_repr(self) -> str:
        return f"{self.time_decay.numel()}"


@dataclass(frozen=True)
class LayerState:
    """Streaming state of one block: the last LN1 and LN2 outputs (token shift) and the WKV state.

    Shape: att_x, ffn_x [B, D]; wkv [B, C] each.
    """

    att_x: torch.Tensor
    ffn_x: torch.Tensor
    wkv: WKVState


class TimeMix(nn.Module):
    """RWKV-4 time mixing (module docstring). Shape: x [B, L, D] -> [B, L, D] (and the new state parts)."""

    def __init__(self, cfg: RWKVConfig):
        super().__init__()
        D, C = cfg.d_model, cfg.d_attn
        self.shift = TokenShift()
        self.mu_k = nn.Parameter(torch.full((D,), 0.5))
        self.mu_v = nn.Parameter(torch.full((D,), 0.5))
        self.mu_r = nn.Parameter(torch.full((D,), 0.5))
        self.key = nn.Linear(D, C, bias=False)
        self.value = nn.Linear(D, C, bias=False)
        self.receptance = nn.Linear(D, C, bias=False)
        self.sigmoid = nn.Sigmoid()
        self.wkv = WKV(C)
        self.gate = Mul()
        self.output = nn.Linear(C, D, bias=False)

    def _kvr(self, x: torch.Tensor, last: Optional[torch.Tensor]):
        prev = self.shift(x, last)  # [B, L, D]
        k = self.key(mix(x, prev, self.mu_k))  # [B, L, C]
        v = self.value(mix(x, prev, self.mu_v))
        r = self.sigmoid(self.receptance(mix(x, prev, self.mu_r)))
        return k, v, r

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, v, r = self._kvr(x, None)
        return self.output(self.gate(r, self.wkv(k, v)))  # [B, L, D]

    def stream(self, x: torch.Tensor, last: torch.Tensor, state: WKVState) -> tuple[torch.Tensor, WKVState]:
        """The recurrent form over the ``l`` tokens of ``x`` after a shift input ``last`` and WKV ``state``."""
        k, v, r = self._kvr(x, last)
        out, state = self.wkv.scan(k, v, state)  # [B, l, C]
        return self.output(self.gate(r, out)), state  # [B, l, D]


class ChannelMix(nn.Module):
    """RWKV-4 channel mixing: ``sigmoid(W_r xr) * W_v relu(W_k xk)^2``. Shape: x [B, L, D] -> [B, L, D]."""

    def __init__(self, cfg: RWKVConfig):
        super().__init__()
        D = cfg.d_model
        self.shift = TokenShift()
        self.mu_k = nn.Parameter(torch.full((D,), 0.5))
        self.mu_r = nn.Parameter(torch.full((D,), 0.5))
        self.key = nn.Linear(D, cfg.d_ff, bias=False)
        self.act = SquaredReLU()
        self.value = nn.Linear(cfg.d_ff, D, bias=False)
        self.receptance = nn.Linear(D, D, bias=False)
        self.sigmoid = nn.Sigmoid()
        self.gate = Mul()

    def forward(self, x: torch.Tensor, last: Optional[torch.Tensor] = None) -> torch.Tensor:
        prev = self.shift(x, last)  # [B, L, D]
        kv = self.value(self.act(self.key(mix(x, prev, self.mu_k))))  # [B, L, D]
        return self.gate(self.sigmoid(self.receptance(mix(x, prev, self.mu_r))), kv)


class Block(nn.Module):
    """``x = x + TimeMix(LN1(x)); x = x + ChannelMix(LN2(x))``. Shape: [B, L, D] -> [B, L, D]."""

    def __init__(self, cfg: RWKVConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.att = TimeMix(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.ffn = ChannelMix(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.att(self.ln1(x))
        return x + self.ffn(self.ln2(x))

    def stream(self, x: torch.Tensor, state: LayerState) -> tuple[torch.Tensor, LayerState]:
        h = self.ln1(x)  # [B, l, D]
        out, wkv = self.att.stream(h, state.att_x, state.wkv)
        x = x + out
        g = self.ln2(x)
        x = x + self.ffn(g, state.ffn_x)
        return x, LayerState(h[:, -1], g[:, -1], wkv)


@dataclass(frozen=True)
class RWKVState:
    """The streaming state of an :class:`RWKVLM`: one :class:`LayerState` per block and the tokens seen."""

    layers: tuple
    length: int
    batch_size: int


class BlockStreamLM(LanguageModel):
    """The running of a stack of token-recurrent blocks (RWKV, SpikeGPT): ``_embed`` the ids, run every
    block in sequence (``forward``) or streaming from a state (``decode_step``; each block's
    ``stream(x, layer_state)``), then ``head(ln_out(x))``. ``STATE`` is the state record (``layers``,
    ``length``, ``batch_size``); :meth:`_check_state` checks its type, batch and number of layers."""

    STATE: type

    def _embed(self, idx: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_idx(self, idx: torch.Tensor) -> None:
        check_token_ids(type(self).__name__, idx)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """The sequence form. Shape: idx [B, L] -> logits [B, L, V]."""
        self._check_idx(idx)
        x = self._embed(idx)  # [B, L, D]
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_out(x))  # [B, L, V]

    def _check_state(self, state, B: int) -> None:
        name = type(self).__name__
        if not isinstance(state, self.STATE):
            raise ParameterError(f"{name}.decode_step", "state", type(state).__name__,
                                 f"a {self.STATE.__name__} from init_cache")
        if B != state.batch_size:
            raise ShapeError(name, f"idx_new has batch {B}, the state {state.batch_size}")
        if len(state.layers) != self.config.n_layer:
            raise ShapeError(name, f"the state holds {len(state.layers)} layers, the model {self.config.n_layer}")

    def decode_step(self, idx_new: torch.Tensor, state):
        """The recurrent form: ``l`` new tokens after the state. Shape: idx_new [B, l] -> logits [B, l, V], state."""
        self._check_idx(idx_new)
        B, L = idx_new.shape
        self._check_state(state, B)
        x = self._embed(idx_new)  # [B, l, D]
        layers = []
        for blk, ls in zip(self.blocks, state.layers):
            x, ls = blk.stream(x, ls)
            layers.append(ls)
        return self.head(self.ln_out(x)), self.STATE(tuple(layers), state.length + L, B)


@savable("RWKVLM")
class RWKVLM(BlockStreamLM, nn.Module):
    """An RWKV-4 language model built from an :class:`RWKVConfig` (module docstring).

    Args:
        config: the architecture (an :class:`RWKVConfig`, or a dict of its fields).

    Shape: idx [B, L] int64 -> logits [B, L, V]. No length limit: the recurrence carries any context.

    Examples::

        >>> m = RWKVLM(RWKVConfig(vocab_size=65, d_model=32, n_layer=2))
        >>> m(torch.zeros(1, 8, dtype=torch.long)).shape
        torch.Size([1, 8, 65])
    """

    CONFIG, STATE = RWKVConfig, RWKVState

    def __init__(self, config):
        super().__init__()
        self._configure(config)
        config = self.config
        self.emb = nn.Embedding(config.vocab_size, config.d_model)
        self.ln_in = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_out = nn.LayerNorm(config.d_model, eps=config.out_norm_eps)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.reset_parameters()

    # -- construction and saving ------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """RWKV-4 initialisation (Peng et al. 2023, released code), with ``l`` the block index, ``L`` the
        number of blocks and ``h`` the channel index out of ``C``::

            time_decay_h = -5 + 8 (h / (C-1))^(0.7 + 1.3 l / (L-1));  time_first_h = ln 0.3 + zigzag_h
            mu_k = (d / D)^(1 - l / L), mu_v = mu_k + 0.3 l / (L-1), mu_r = (d / D)^(0.5 (1 - l / L))

        tiny embeddings (LN0 follows), zero output, channel-mix value and receptance weights,
        N(0, 1/D) other projections, N(0, 0.25/D) head.
        """
        cfg = self.config
        D, C, L = cfg.d_model, cfg.d_attn, cfg.n_layer
        with torch.no_grad():
            nn.init.uniform_(self.emb.weight, -1e-4, 1e-4)
            nn.init.normal_(self.head.weight, 0.0, 0.5 / math.sqrt(D))
            ramp = torch.arange(D, dtype=torch.float32) / D  # d / D
            h = torch.arange(C, dtype=torch.float32) / max(1, C - 1)
            zigzag = 0.5 * (((torch.arange(C) + 1) % 3) - 1).float()
            for i, blk in enumerate(self.blocks):
                r01 = i / max(1, L - 1)
                r10 = 1.0 - i / L
                att, ffn = blk.att, blk.ffn
                att.wkv.time_decay.copy_(-5 + 8 * h ** (0.7 + 1.3 * r01))
                att.wkv.time_first.copy_(math.log(0.3) + zigzag)
                att.mu_k.copy_(ramp ** r10)
                att.mu_v.copy_(ramp ** r10 + 0.3 * r01)
                att.mu_r.copy_(ramp ** (0.5 * r10))
                ffn.mu_k.copy_(ramp ** r10)
                ffn.mu_r.copy_(ramp ** r10)
                for lin in (att.key, att.value, att.receptance, ffn.key):
                    nn.init.normal_(lin.weight, 0.0, 1.0 / math.sqrt(D))
                for lin in (att.output, ffn.value, ffn.receptance):
                    nn.init.zeros_(lin.weight)
                for ln in (blk.ln1, blk.ln2):
                    nn.init.ones_(ln.weight), nn.init.zeros_(ln.bias)
            for ln in (self.ln_in, self.ln_out):
                nn.init.ones_(ln.weight), nn.init.zeros_(ln.bias)

    # -- running ----------------------------------------------------------------------------------
    def _embed(self, idx: torch.Tensor) -> torch.Tensor:
        return self.ln_in(self.emb(idx))  # [B, L, D]

    def init_cache(self, batch_size: int) -> RWKVState:
        """The state before any token for ``batch_size`` sequences (zero shifts, empty WKV)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ParameterError("RWKVLM.init_cache", "batch_size", batch_size, "an integer >= 1")
        ref = self.head.weight
        D, C = self.config.d_model, self.config.d_attn
        layers = tuple(LayerState(torch.zeros(batch_size, D, dtype=ref.dtype, device=ref.device),
                                  torch.zeros(batch_size, D, dtype=ref.dtype, device=ref.device),
                                  wkv_init(batch_size, C, ref.dtype, ref.device))
                       for _ in range(self.config.n_layer))
        return RWKVState(layers, 0, batch_size)

    def _check_state(self, state, B: int) -> None:
        super()._check_state(state, B)
        D, C = self.config.d_model, self.config.d_attn
        for i, ls in enumerate(state.layers):
            for name, t, want in (("att_x", ls.att_x, (B, D)), ("ffn_x", ls.ffn_x, (B, D)), ("wkv.a", ls.wkv.a, (B, C)),
                                  ("wkv.b", ls.wkv.b, (B, C)), ("wkv.p", ls.wkv.p, (B, C))):
                if tuple(t.shape) != want:
                    raise ShapeError("RWKVLM", f"state of layer {i}: {name} is {tuple(t.shape)}, expected {want}")


def bundled_rwkv_dir() -> Path:
    """The folder of the bundled char-level Tiny Shakespeare RWKV (``neuro train rwkv --minutes 10``, 4 blocks of
    width 128; its ``train.json`` has the figures). Load it with :func:`neuro.io.load_model`."""
    return BUNDLED_DIR / "rwkv-char"


__all__ = ["Block", "ChannelMix", "LayerState", "P0", "RWKVConfig", "RWKVLM", "RWKVState", "SquaredReLU",
           "TimeMix", "TokenShift", "WKV", "WKVState", "bundled_rwkv_dir", "mix", "token_shift", "wkv_init",
           "wkv_parallel", "wkv_scan", "wkv_step"]
