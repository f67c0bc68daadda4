r"""SpikeGPT: the RWKV-4 language model made spiking (Zhu et al. 2023, "SpikeGPT: Generative Pre-trained
Language Model with Spiking Neural Networks"; block as in its released ``src/model.py``).

Built from the RWKV-4 modules of :mod:`neuro.models.rwkv` (:class:`~neuro.models.rwkv.TimeMix`,
:class:`~neuro.models.rwkv.ChannelMix`, their WKV operator and token shift) and the package's
:class:`~neuro.neurons.LIF`. With ``H`` the Heaviside step (ATan surrogate gradient, alpha = 2)::

    x = H(Embedding(idx))                                        binary embedding
    x = x + LIF(TimeMix(LN1(x)));   x = x + LIF(ChannelMix(LN2(x)))     (each block)
    logits = Head(LNout(x))

Each LIF runs over the token axis (token t is the neuron's time step t; SpikeGPT's LIF: tau = 2,
V_th = 1, V_reset = 0, forward-Euler decay 1 - 1/tau with the input scaled by 1/tau). The only binary
tensors are the embedding and the two LIF outputs per block, so the residual stream holds small
non-negative integers (a count of spikes per channel) and every LayerNorm output is real-valued.

Sequence form (:meth:`SpikeGPT.forward`, for training and scoring) and streaming form
(:meth:`SpikeGPT.init_cache` / :meth:`SpikeGPT.decode_step`: the RWKV state of every block plus the
two LIF membranes per block) give the same numbers, so :func:`~neuro.models.transformer.generate` and
``neuro generate`` run it like an :class:`~neuro.models.rwkv.RWKVLM`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..core.errors import ParameterError
from ..core.params import Params, integer, optional, param, positive, record
from ..core.surrogate import ATan, spike
from ..io import savable
from ..neurons.lif import LIF, LIFState
from .rwkv import BlockStreamLM, ChannelMix, RWKVConfig, RWKVLM, TimeMix, WKVState, wkv_init
from .transformer import _optional_chars


@record
class SpikeGPTConfig(Params):
    """Architecture of a :class:`SpikeGPT` (validated, frozen): the RWKV-4 fields and the LIF's tau and threshold."""

    vocab_size: int = param(65, integer(lo=1), doc="number of tokens")
    d_model: int = param(128, integer(lo=1), doc="width of the residual stream")
    n_layer: int = param(4, integer(lo=1), doc="number of blocks")
    d_attn: Optional[int] = param(None, optional(integer(lo=1)), doc="time-mixing width; None: d_model")
    d_ff: Optional[int] = param(None, optional(integer(lo=1)), doc="channel-mixing hidden width; None: 4 d_model")
    norm_eps: float = param(1e-5, positive, doc="eps of the block LayerNorms")
    out_norm_eps: float = param(1e-5, positive, doc="eps of the final LayerNorm")
    tau: float = param(2.0, positive, doc="LIF membrane time constant in tokens (SpikeGPT: 2)")
    v_th: float = param(1.0, positive, doc="LIF threshold (SpikeGPT: 1)")
    vocab_chars: Optional[str] = param(None, _optional_chars, doc="character vocabulary of char-level models")

    def _check(self):
        if self.tau <= 1.0:
            self.fail("tau", "> 1 (forward-Euler decay 1 - 1/tau in (0, 1))")
        if self.d_attn is None:
            object.__setattr__(self, "d_attn", self.d_model)
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        if self.vocab_chars is not None and len(self.vocab_chars) != self.vocab_size:
            self.fail("vocab_chars", f"a string of vocab_size = {self.vocab_size} characters")

    def rwkv(self) -> RWKVConfig:
        """The float RWKV-4 of the same size (the blocks' mixing modules are built from it)."""
        return RWKVConfig(vocab_size=self.vocab_size, d_model=self.d_model, n_layer=self.n_layer, d_attn=self.d_attn,
                          d_ff=self.d_ff, norm_eps=self.norm_eps, out_norm_eps=self.out_norm_eps,
                          vocab_chars=self.vocab_chars)


class Heaviside(nn.Module):
    """``H(x) = [x >= 0]`` with a surrogate gradient (default ATan, alpha = 2). Shape: any -> same, values {0, 1}."""

    def __init__(self, surrogate=None):
        super().__init__()
        self.surrogate = surrogate if surrogate is not None else ATan()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spike(x, self.surrogate)


def lif_tokens(lif: LIF, x: torch.Tensor, v: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``lif`` (step mode 'm') over the token axis of ``x`` from membrane ``v`` (default: the resting 0).

    Shape: x [B, L, D], v [B, D] or None -> spikes [B, L, D], membrane after the last token [B, D].
    """
    lif.reset()
    if v is not None:
        lif.state = LIFState(v)
    s = lif(x.transpose(0, 1)).transpose(0, 1)  # [L, B, D] -> [B, L, D]
    v = lif.state.v
    lif.reset()
    return s, v


class SpikeBlock(nn.Module):
    """``x = x + LIF(TimeMix(LN1(x))); x = x + LIF(ChannelMix(LN2(x)))``. Shape: [B, L, D] -> [B, L, D]."""

    def __init__(self, cfg: SpikeGPTConfig):
        super().__init__()
        rc = cfg.rwkv()
        self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.att = TimeMix(rc)
        self.lif1 = LIF(step_mode="m", tau_ms=cfg.tau, v_th=cfg.v_th, v_reset=0.0)
        self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps)
        self.ffn = ChannelMix(rc)
        self.lif2 = LIF(step_mode="m", tau_ms=cfg.tau, v_th=cfg.v_th, v_reset=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + lif_tokens(self.lif1, self.att(self.ln1(x)))[0]
        return x + lif_tokens(self.lif2, self.ffn(self.ln2(x)))[0]

    def stream(self, x: torch.Tensor, state: "SpikeLayerState") -> tuple[torch.Tensor, "SpikeLayerState"]:
        h = self.ln1(x)  # [B, l, D]
        out, wkv = self.att.stream(h, state.att_x, state.wkv)
        s, v1 = lif_tokens(self.lif1, out, state.v_att)
        x = x + s
        g = self.ln2(x)
        s, v2 = lif_tokens(self.lif2, self.ffn(g, state.ffn_x), state.v_ffn)
        return x + s, SpikeLayerState(h[:, -1], g[:, -1], wkv, v1, v2)


@dataclass(frozen=True)
class SpikeLayerState:
    """Streaming state of one block: token-shift inputs, WKV state and the two LIF membranes. Shape: [B, D|C]."""

    att_x: torch.Tensor
    ffn_x: torch.Tensor
    wkv: WKVState
    v_att: torch.Tensor
    v_ffn: torch.Tensor


@dataclass(frozen=True)
class SpikeGPTState:
    """The streaming state of a :class:`SpikeGPT`: one :class:`SpikeLayerState` per block and the tokens seen."""

    layers: tuple
    length: int
    batch_size: int


@savable("SpikeGPT")
class SpikeGPT(BlockStreamLM, nn.Module):
    """A SpikeGPT language model built from a :class:`SpikeGPTConfig` (module docstring).

    Args:
        config: the architecture (a :class:`SpikeGPTConfig`, or a dict of its fields).

    Shape: idx [B, L] int64 -> logits [B, L, V].

    Examples::

        >>> m = SpikeGPT(SpikeGPTConfig(vocab_size=65, d_model=32, n_layer=2))
        >>> m(torch.zeros(1, 8, dtype=torch.long)).shape
        torch.Size([1, 8, 65])
    """

    CONFIG, STATE = SpikeGPTConfig, SpikeGPTState

    def __init__(self, config):
        super().__init__()
        self._configure(config)
        config = self.config
        self.emb = nn.Embedding(config.vocab_size, config.d_model)
        self.binary = Heaviside()
        self.blocks = nn.ModuleList(SpikeBlock(config) for _ in range(config.n_layer))
        self.ln_out = nn.LayerNorm(config.d_model, eps=config.out_norm_eps)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The RWKV-4 initialisation of :meth:`RWKVLM.reset_parameters` for every shared parameter (the float
        model of the same size is built and its values copied), and an N(0, 1) embedding, so that about half of
        the binary embedding's bits are set."""
        ref = RWKVLM(self.config.rwkv()).state_dict()
        own = self.state_dict()
        self.load_state_dict({k: v for k, v in ref.items() if k in own}, strict=False)
        with torch.no_grad():
            nn.init.normal_(self.emb.weight, 0.0, 1.0)

    def lifs(self) -> list[tuple[str, LIF]]:
        """The spiking layers by name (``blocks.i.lif1`` after time mixing, ``blocks.i.lif2`` after channel mixing)."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, LIF)]

    # -- running ----------------------------------------------------------------------------------
    def _embed(self, idx: torch.Tensor) -> torch.Tensor:
        return self.binary(self.emb(idx))  # [B, L, D] in {0, 1}

    @torch.no_grad()
    def spike_rates(self, idx: torch.Tensor) -> dict:
        """Fraction of ones in the binary embedding and in every LIF layer's output over ``idx`` ([B, L])."""
        rates, hooks = {}, []
        for name, m in [("binary", self.binary)] + self.lifs():
            hooks.append(m.register_forward_hook(lambda mod, i, o, n=name: rates.__setitem__(n, float(o.mean()))))
        try:
            self(idx)
        finally:
            for h in hooks:
                h.remove()
        return rates

    def init_cache(self, batch_size: int) -> SpikeGPTState:
        """The state before any token for ``batch_size`` sequences (zero shifts and membranes, empty WKV)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ParameterError("SpikeGPT.init_cache", "batch_size", batch_size, "an integer >= 1")
        ref = self.head.weight
        D, C = self.config.d_model, self.config.d_attn

        def z():
            return torch.zeros(batch_size, D, dtype=ref.dtype, device=ref.device)

        layers = tuple(SpikeLayerState(z(), z(), wkv_init(batch_size, C, ref.dtype, ref.device), z(), z())
                       for _ in range(self.config.n_layer))
        return SpikeGPTState(layers, 0, batch_size)


__all__ = ["Heaviside", "SpikeBlock", "SpikeGPT", "SpikeGPTConfig", "SpikeGPTState", "SpikeLayerState", "lif_tokens"]

from ..energy import spikegpt as _counting  # noqa: E402,F401  (registers SpikeGPT's counting rules)
