r"""The converted RWKV-4: :class:`SpikingRWKV` and its quantized ANN twin :class:`QuantizedRWKV`, and the
conversion stages of :class:`~neuro.models.rwkv.RWKVLM` (dispatched to by :mod:`neuro.converters.conversion`).

Both models are built by the same wiring from an operator set: the spiking one carries a leading time
axis ``[T, ...]`` of per-step currents and spikes through every operator, the twin computes on values.
The operators are those of :mod:`~neuro.converters.spiking_ops` (bit-serial encoders, accumulate-only
synapses, accumulated-difference non-linear operators) plus the RWKV-specific ones defined here. With
``h`` a block's LayerNorm output and ``s = enc_x(h)`` its spikes (paths as in the float model)::

    time mixing:     s -> [s, shift(s)] -> key, value, receptance -> sigmoid, wkv -> gate (r * wkv) -> enc_y -> output
    channel mixing:  s -> [s, shift(s)] -> key -> act (relu^2) -> enc_h -> value;  receptance -> sigmoid -> gate
    head:            ln_out -> enc_f -> head -> readout (integrates the window)

Token shift and mixes. The encoder quantizes each token on its own, so shifting the spike trains by one
token is shifting the encoded values: ``shift(s)`` is the previous token's spike train (carried as
state between calls). The mixes ``mu x + (1 - mu) x_{-1}`` are per-channel constants folded into the
weights of the linear layer that follows, which reads both trains::

    W xk = [W diag(mu), W diag(1 - mu)] [s; shift(s)]

so every synapse stays accumulate-only (the concatenated weight is quantized per row as any other).

WKV (:class:`SpikingWKV`), an accumulated-difference operator over the window of each token: with the
running sums ``bar k_t``, ``bar v_t`` of its input currents and the numerator/denominator state
``(a, b, p)`` of the previous tokens (log-max form of :func:`neuro.models.rwkv.wkv_step`)::

    F_t = Q_g(wkv(a, b, p; bar k_t, bar v_t)),   Y_t = F_t - F_{t-1},   sum_t Y_t = Q_g(wkv(a, b, p; k, v))

and after the window the state advances once with the token's complete ``k = bar k_T``, ``v = bar v_T``
(exactly the twin's values). The state is float64 and identical in both models. Cost per channel: each
step two exponentials and a division (3 non-linear evaluations) and 3 multiplies; each token the
state update, two exponentials and 3 multiplies; the report lists them.

Exactness. The WKV read runs on ``[T, B, C]`` in the spiking model and on ``[B, C]`` in the twin; its
only transcendental, ``exp``, gives an element the same value whatever the shape and layout of its tensor
(torch runs one vectorised routine on every element, tails included), and the sigmoid is written as
``1 / (1 + exp(-x))`` in float64 for the same reason (``torch.sigmoid`` rounds some elements differently
in its vectorised body and its scalar tail). So the spiking model integrated over its window equals the
twin bit for bit (tested with ``torch.equal``).

Context. RWKV has no trained context limit: the recurrence carries any number of tokens in a state of
constant size, so neither model checks a length. Scoring cuts a text into windows of
:data:`EVAL_SEQ_LEN` tokens (the training length of the bundled model) only to match its training
figures.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..core.errors import ParameterError, ShapeError, UnsupportedLayerError
from ..io import savable
from ..models.rwkv import (P0, WKV, Block, ChannelMix, RWKVConfig, RWKVLM, SquaredReLU, TimeMix, TokenShift,
                           WKVState)
from ..models.lm import check_token_ids
from ..models.transformer import Mul
from .conversion import (EXACT_BITS, CalibrationRecord, FidelityReport, MapRecord, ValidationRecord, _absmax,
                         _grid, calibration_batches, op_table, perplexity_report, run_hooked)
from .spiking_ops import (DTYPE, SPIKING_OPS, TWIN_OPS, AccDiff, GridOp, OpSet, exact_in_float32, pow2_step,
                          q_grid, quantize_weight, running_sum, step_difference)
from .spiking_transformer import ConversionParams, ConvertedLM

EVAL_SEQ_LEN = 128  # scoring and calibration windows (the bundled model's training length; not a limit)


# ------------------------------------------------------------------------------------ pure functions
def wkv_read(w, u, k, v, a, b, p) -> torch.Tensor:
    """The WKV output for the current token from the state of the previous ones (log-max form, as
    :func:`neuro.models.rwkv.wkv_step`). Shape: w, u [C]; k, v [..., B, C]; a, b, p [B, C] -> [..., B, C]."""
    q = torch.maximum(p, u + k)
    e1, e2 = torch.exp(p - q), torch.exp(u + k - q)
    return (e1 * a + e2 * v) / (e1 * b + e2)


def wkv_write(w, k, v, a, b, p) -> tuple:
    """The state after the current token: ``a' = e^{p+w-q} a + e^{k-q} v``, ``b' = e^{p+w-q} b + e^{k-q}``,
    ``p' = q = max(p + w, k)``. Shape: all [B, C] (w [C])."""
    q = torch.maximum(p + w, k)
    e1, e2 = torch.exp(p + w - q), torch.exp(k - q)
    return e1 * a + e2 * v, e1 * b + e2, q


def shift_tokens(x: torch.Tensor, last: Optional[torch.Tensor]) -> torch.Tensor:
    """The previous token's input along the token axis (dim -2), ``last`` (or zeros) first.

    Shape: x [*t, B, L, D], last [*t, B, D] or None -> [*t, B, L, D]."""
    first = torch.zeros_like(x.narrow(-2, 0, 1)) if last is None else last.unsqueeze(-2).to(x.dtype)
    return torch.cat((first, x.narrow(-2, 0, x.shape[-2] - 1)), dim=-2)


# ------------------------------------------------------------------------------------ RWKV operators
class QuantSigmoid(GridOp):
    """``sigmoid(x) = 1 / (1 + e^{-x})`` in float64 (see the module docstring). Shape: [...] -> [...]."""

    mults = 1  # the division

    def f(self, x):
        return 1.0 / (1.0 + torch.exp(-x))


class QuantSquaredReLU(GridOp):
    """``relu(x)^2`` (channel mixing). Shape: [...] -> [...]."""

    mults = 1

    def f(self, x):
        return torch.square(torch.relu(x))


class SpikingSigmoid(AccDiff, QuantSigmoid):
    """Accumulated-difference sigmoid. Shape: [T, ...] -> [T, ...]."""


class SpikingSquaredReLU(AccDiff, QuantSquaredReLU):
    """Accumulated-difference squared ReLU. Shape: [T, ...] -> [T, ...]."""


class QuantShift(nn.Module):
    """Token shift of the encoded values (:func:`shift_tokens`). Shape: [B, L, D], [B, D] -> [B, L, D]."""

    def forward(self, x, last=None):
        return shift_tokens(x, last)


class SpikingShift(QuantShift):
    """Token shift of spike trains: the previous token's train. Shape: [T, B, L, D], [T, B, D] -> [T, B, L, D]."""

    step_mode = "m"


class QuantWKV(nn.Module):
    """The WKV recurrence with its output on the grid ``g`` (float64 buffers ``w = -exp(time_decay)``,
    ``u = time_first``, ``grid``). Shape: k, v [B, L, C], state -> [B, L, C], new :class:`WKVState`.

    Operations per output element: ``evals``/``mults`` per step, ``state_evals``/``state_mults`` per token.
    """

    evals, mults = 3, 3
    state_evals, state_mults = 2, 3

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("w", torch.zeros(channels, dtype=DTYPE))
        self.register_buffer("u", torch.zeros(channels, dtype=DTYPE))
        self.register_buffer("grid", torch.ones((), dtype=DTYPE))

    def _run(self, K, V, state, last):
        """``K``, ``V`` [*t, B, L, C]: per token the read on all of ``*t`` and the write from ``last(K)``."""
        a, b, p = state.a, state.b, state.p
        outs = []
        for i in range(K.shape[-2]):
            k, v = K.select(-2, i), V.select(-2, i)                        # [*t, B, C]
            outs.append(q_grid(wkv_read(self.w, self.u, k, v, a, b, p), self.grid))
            a, b, p = wkv_write(self.w, last(k), last(v), a, b, p)          # [B, C]
        return torch.stack(outs, dim=-2), WKVState(a, b, p)                 # [*t, B, L, C]

    def forward(self, k, v, state: WKVState):
        return self._run(k.to(DTYPE), v.to(DTYPE), state, lambda t: t)

    def extra_repr(self) -> str:
        return f"{self.w.numel()}"


class SpikingWKV(QuantWKV):
    """Accumulated-difference WKV over each token's window (module docstring).

    Shape: k, v [T, B, L, C] currents, state -> [T, B, L, C] currents, new state.
    """

    step_mode = "m"

    def forward(self, k, v, state: WKVState):
        out, state = self._run(running_sum(k), running_sum(v), state, lambda t: t[-1])
        return step_difference(out), state


RWKV_TWIN_OPS = OpSet("twin", False, {**TWIN_OPS.classes, "sigmoid": QuantSigmoid, "sqrelu": QuantSquaredReLU,
                                      "shift": QuantShift, "wkv": QuantWKV})
RWKV_SPIKING_OPS = OpSet("spiking", True, {**SPIKING_OPS.classes, "sigmoid": SpikingSigmoid,
                                           "sqrelu": SpikingSquaredReLU, "shift": SpikingShift, "wkv": SpikingWKV})


# ------------------------------------------------------------------------------------ wiring
class QRWKVEmbed(nn.Module):
    """Token embedding on the grid ``g``, fed into the window. Shape: idx [B, L] -> [*t, B, L, D]."""

    def __init__(self, cfg: RWKVConfig, ops: OpSet, T: int):
        super().__init__()
        self.register_buffer("tok", torch.zeros(cfg.vocab_size, cfg.d_model, dtype=DTYPE))
        self.register_buffer("grid", torch.ones((), dtype=DTYPE))
        self.inject = ops["inject"](T)

    def forward(self, idx):
        return self.inject(q_grid(self.tok[idx], self.grid))               # [*t, B, L, D]


class QTimeMix(nn.Module):
    """Time mixing with the mixes folded into key, value and receptance (module docstring).

    Shape: h [*t, B, L, D], shift state [*t, B, D], WKV state -> [*t, B, L, D], new shift and WKV states.
    """

    def __init__(self, cfg: RWKVConfig, ops: OpSet, T: int):
        super().__init__()
        D, C = cfg.d_model, cfg.d_attn
        self.enc_x = ops["encoder"]((D,), T)
        self.shift = ops["shift"]()
        self.key = ops["linear"](2 * D, C, False)
        self.value = ops["linear"](2 * D, C, False)
        self.receptance = ops["linear"](2 * D, C, False)
        self.sigmoid = ops["sigmoid"]()
        self.wkv = ops["wkv"](C)
        self.gate = ops["mul"]()
        self.enc_y = ops["encoder"]((C,), T)
        self.output = ops["linear"](C, D, False)

    def forward(self, h, last, state: WKVState):
        s = self.enc_x(h)                                                   # [*t, B, L, D]
        sx = torch.cat((s, self.shift(s, last)), dim=-1)                    # [*t, B, L, 2D]
        y, state = self.wkv(self.key(sx), self.value(sx), state)            # [*t, B, L, C]
        out = self.output(self.enc_y(self.gate(self.sigmoid(self.receptance(sx)), y)))
        return out, s.select(-2, -1), state


class QChannelMix(nn.Module):
    """Channel mixing ``sigmoid(R xr) * V enc_h(relu(K xk)^2)`` with folded mixes.

    Shape: g [*t, B, L, D], shift state [*t, B, D] -> [*t, B, L, D], new shift state.
    """

    def __init__(self, cfg: RWKVConfig, ops: OpSet, T: int):
        super().__init__()
        D = cfg.d_model
        self.enc_x = ops["encoder"]((D,), T)
        self.shift = ops["shift"]()
        self.key = ops["linear"](2 * D, cfg.d_ff, False)
        self.act = ops["sqrelu"]()
        self.enc_h = ops["encoder"]((cfg.d_ff,), T)
        self.value = ops["linear"](cfg.d_ff, D, False)
        self.receptance = ops["linear"](2 * D, D, False)
        self.sigmoid = ops["sigmoid"]()
        self.gate = ops["mul"]()

    def forward(self, g, last):
        s = self.enc_x(g)                                                   # [*t, B, L, D]
        sx = torch.cat((s, self.shift(s, last)), dim=-1)                    # [*t, B, L, 2D]
        kv = self.value(self.enc_h(self.act(self.key(sx))))                 # [*t, B, L, D]
        return self.gate(self.sigmoid(self.receptance(sx)), kv), s.select(-2, -1)


@dataclass(frozen=True)
class QLayerState:
    """Streaming state of one converted block: the last token's encoded input of time and channel mixing
    (spike trains ``[T, B, D]`` in the spiking model, values ``[B, D]`` in the twin) and the WKV state ``[B, C]``."""

    att_x: torch.Tensor
    ffn_x: torch.Tensor
    wkv: WKVState


class QRWKVBlock(nn.Module):
    """``x = x + TimeMix(LN1(x)); x = x + ChannelMix(LN2(x))`` on the operator set."""

    def __init__(self, cfg: RWKVConfig, ops: OpSet, T: int):
        super().__init__()
        self.ln1 = ops["layernorm"](cfg.d_model, cfg.norm_eps, True)
        self.att = QTimeMix(cfg, ops, T)
        self.ln2 = ops["layernorm"](cfg.d_model, cfg.norm_eps, True)
        self.ffn = QChannelMix(cfg, ops, T)

    def forward(self, x, state: QLayerState):
        a, att_x, wkv = self.att(self.ln1(x), state.att_x, state.wkv)
        x = x + a
        f, ffn_x = self.ffn(self.ln2(x), state.ffn_x)
        return x + f, QLayerState(att_x, ffn_x, wkv)


@dataclass(frozen=True)
class QRWKVState:
    """Streaming state of a converted RWKV: one :class:`QLayerState` per block, the tokens seen and the batch."""

    layers: tuple
    length: int
    batch_size: int


class _QuantRWKVBase(ConvertedLM, nn.Module):
    """Shared wiring of :class:`SpikingRWKV` and :class:`QuantizedRWKV`; ``OPS`` picks the operator set."""

    OPS: OpSet = RWKV_TWIN_OPS
    CONFIG = RWKVConfig

    def __init__(self, config, params):
        super().__init__()
        self._configure(config, params)
        config, params = self.config, self.params
        ops, T = self.OPS, params.timesteps
        self.embed = QRWKVEmbed(config, ops, T)
        self.ln_in = ops["layernorm"](config.d_model, config.norm_eps, True)
        self.blocks = nn.ModuleList(QRWKVBlock(config, ops, T) for _ in range(config.n_layer))
        self.ln_out = ops["layernorm"](config.d_model, config.out_norm_eps, True)
        self.enc_f = ops["encoder"]((config.d_model,), T)
        self.head = ops["linear"](config.d_model, config.vocab_size, False)
        self.readout = ops["readout"](T)
        self.records = None  # the conversion's stage records (not saved)

    def _shift_shape(self, B: int) -> tuple:
        return ((self.timesteps,) if self.OPS.timed else ()) + (B, self.config.d_model)

    def init_cache(self, batch_size: int) -> QRWKVState:
        """The state before any token: zero shift inputs, empty WKV (``a = b = 0``, ``p = P0``)."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ParameterError(f"{type(self).__name__}.init_cache", "batch_size", batch_size, "an integer >= 1")
        C = self.config.d_attn
        sdt = torch.float32 if self.OPS.timed else DTYPE
        zeros = lambda shape, dt: torch.zeros(shape, dtype=dt)  # noqa: E731
        layers = tuple(QLayerState(zeros(self._shift_shape(batch_size), sdt), zeros(self._shift_shape(batch_size), sdt),
                                   WKVState(zeros((batch_size, C), DTYPE), zeros((batch_size, C), DTYPE),
                                            torch.full((batch_size, C), P0, dtype=DTYPE)))
                       for _ in range(self.config.n_layer))
        return QRWKVState(layers, 0, batch_size)

    def _check_idx(self, idx) -> None:
        check_token_ids(type(self).__name__, idx, min_len=1)

    def _check_state(self, state, B: int) -> None:
        name = type(self).__name__
        if not isinstance(state, QRWKVState):
            raise ParameterError(f"{name}.decode_step", "state", type(state).__name__, "a QRWKVState from init_cache")
        if B != state.batch_size:
            raise ShapeError(name, f"idx_new has batch {B}, the state {state.batch_size}")
        if len(state.layers) != self.config.n_layer:
            raise ShapeError(name, f"the state holds {len(state.layers)} layers, the model {self.config.n_layer}")
        shift, wkv = self._shift_shape(B), (B, self.config.d_attn)
        for i, ls in enumerate(state.layers):
            for part, t, want in (("att_x", ls.att_x, shift), ("ffn_x", ls.ffn_x, shift), ("wkv.a", ls.wkv.a, wkv),
                                  ("wkv.b", ls.wkv.b, wkv), ("wkv.p", ls.wkv.p, wkv)):
                if tuple(t.shape) != want:
                    raise ShapeError(name, f"state of layer {i} (blocks.{i}): {part} is {tuple(t.shape)}, "
                                           f"expected {want}")

    @torch.no_grad()
    def decode_step(self, idx_new, state: QRWKVState):
        """``l`` new tokens after the state (any number: no length limit). Shape: idx_new [B, l] ->
        logits [B, l, V] float32, new state (constant size per sequence)."""
        self._check_idx(idx_new)
        B, L = idx_new.shape
        self._check_state(state, B)
        x = self.ln_in(self.embed(idx_new))                                 # [*t, B, l, D]
        layers = []
        for block, ls in zip(self.blocks, state.layers):
            x, ls = block(x, ls)
            layers.append(ls)
        logits = self.readout(self.head(self.enc_f(self.ln_out(x))))       # [B, l, V]
        return logits, QRWKVState(tuple(layers), state.length + L, B)

    @torch.no_grad()
    def forward(self, idx):
        """All tokens from the empty state. Shape: idx [B, L] -> logits [B, L, V] float32."""
        self._check_idx(idx)
        return self.decode_step(idx, self.init_cache(idx.shape[0]))[0]


@savable("SpikingRWKV")
class SpikingRWKV(_QuantRWKVBase):
    """An RWKV-4 language model converted to spiking operators (module docstring).

    Args:
        config: the :class:`~neuro.models.rwkv.RWKVConfig` of the original.
        params: the :class:`~neuro.converters.spiking_transformer.ConversionParams` (``timesteps`` T, bit widths).

    Shape: as :class:`~neuro.models.rwkv.RWKVLM` (``forward``, ``init_cache``/``decode_step``); inside,
    every tensor carries a leading time axis of ``T`` steps. No length limit. Build it with
    :func:`neuro.converters.convert`.
    """

    OPS = RWKV_SPIKING_OPS


@savable("QuantizedRWKV")
class QuantizedRWKV(_QuantRWKVBase):
    """The quantized ANN twin of a :class:`SpikingRWKV`: the same quantizers, folds and WKV state,
    computing on values. Build it with :func:`neuro.converters.quantized_twin`."""

    OPS = RWKV_TWIN_OPS


# ------------------------------------------------------------------------------------ conversion stages
LEAVES = (nn.Linear, nn.Embedding, nn.LayerNorm, nn.Sigmoid, SquaredReLU, WKV, Mul, TokenShift)
CONTAINERS = (RWKVLM, Block, TimeMix, ChannelMix, nn.ModuleList)


def check_wkv(model: RWKVLM) -> None:
    """Raise :class:`ParameterError` naming the first non-finite ``time_decay``/``time_first`` (path, channel)."""
    for path, m in model.named_modules():
        if isinstance(m, WKV):
            for name in ("time_decay", "time_first"):
                p = getattr(m, name).detach()
                bad = ~torch.isfinite(p)
                if bad.any():
                    i = int(bad.nonzero()[0, 0])
                    raise ParameterError("convert", f"{path}.{name}", float(p[i]),
                                         f"finite (channel {i} of {p.numel()})")


def validate(model: RWKVLM) -> ValidationRecord:
    """Every submodule has a spiking mapping (else one :class:`UnsupportedLayerError` lists them all),
    and the WKV parameters are finite (else :class:`ParameterError`)."""
    bad, seen = [], []
    for path, m in model.named_modules():
        t = type(m)
        if t in CONTAINERS or t in LEAVES:
            if t is nn.LayerNorm and (not m.elementwise_affine or len(m.normalized_shape) != 1):
                bad.append((path, "LayerNorm without a per-channel affine over the last dim"))
            else:
                seen.append((path or "<model>", t.__name__))
        elif not any(path.startswith(f"{p}.") for p, _ in bad):
            bad.append((path or "<model>", f"{t.__module__}.{t.__qualname__}"))
    if bad:
        raise UnsupportedLayerError(bad, context="spiking conversion")
    check_wkv(model)
    return ValidationRecord(seen)


def calibrate(model: RWKVLM, calibration, max_tokens: int = 8192, outlier_ratio: float = 8.0,
              progress: bool = False) -> CalibrationRecord:
    """Run the float model on the calibration data (windows of :data:`EVAL_SEQ_LEN` tokens) and record the
    per-channel ranges of the encoders' inputs and the output ranges of the non-linear operators."""
    validate(model)
    batches = calibration_batches(model, calibration, max_tokens, seq_len=EVAL_SEQ_LEN)
    ranges: dict = {}
    outputs: dict = {}

    def upd(d, key, val):
        d[key] = torch.maximum(d[key], val) if key in d else val

    hooks = []

    def out_range(m, key, per_channel=False, enc=None):
        def hook(mod, inp, out):
            upd(outputs, key, out.detach().abs().double().amax())
            if enc is not None:
                upd(ranges, enc, _absmax(out, [-1]))
        hooks.append(m.register_forward_hook(hook))

    def in_range(m, enc):
        hooks.append(m.register_forward_pre_hook(lambda mod, inp: upd(ranges, enc, _absmax(inp[0], [-1]))))

    out_range(model.ln_in, "ln_in")
    for i, b in enumerate(model.blocks):
        p = f"blocks.{i}"
        out_range(b.ln1, f"{p}.ln1", enc=f"{p}.att.enc_x")
        out_range(b.ln2, f"{p}.ln2", enc=f"{p}.ffn.enc_x")
        for name in ("att.sigmoid", "att.wkv", "att.gate", "ffn.act", "ffn.sigmoid", "ffn.gate"):
            out_range(b.get_submodule(name), f"{p}.{name}")
        in_range(b.att.output, f"{p}.att.enc_y")
        in_range(b.ffn.value, f"{p}.ffn.enc_h")
    out_range(model.ln_out, "ln_out", enc="enc_f")
    tokens = run_hooked(model, batches, hooks, progress)
    outputs["embed"] = model.emb.weight.detach().abs().double().amax()
    outliers = {}
    for key, r in ranges.items():
        med = float(r.median()) if r.numel() else 0.0
        outliers[key] = [] if r.numel() < 2 or med <= 0 else torch.nonzero(r >= outlier_ratio * med).flatten().tolist()
    return CalibrationRecord(ranges, outputs, outliers, tokens)


_FAN_IN = {"att.enc_x": lambda c: 2 * c.d_model, "ffn.enc_x": lambda c: 2 * c.d_model,
           "att.enc_y": lambda c: c.d_attn, "ffn.enc_h": lambda c: c.d_ff, "enc_f": lambda c: c.d_model}


def exact_spread(path: str, cfg: RWKVConfig, params: ConversionParams) -> int:
    """``spread_bits``, tightened so that the worst-case sum of the synapse fed by the encoder at ``path``
    (fan-in ``n``) stays exact in float64: ``log2 n + weight_bits - 1 + T + spread <= 52``."""
    key = path if path == "enc_f" else ".".join(path.split(".")[-2:])
    n = _FAN_IN[key](cfg)
    room = EXACT_BITS - math.ceil(math.log2(max(1, n))) - (params.weight_bits - 1) - params.timesteps
    if room < 0:
        raise ParameterError("map_model", "timesteps", params.timesteps,
                             f"small enough for exact float64 sums at {path} ({-room} bit(s) over the budget)")
    return min(params.spread_bits, room)


def _fill_linear(dst, w: torch.Tensor, in_step: torch.Tensor, params: ConversionParams) -> None:
    wq, row_step = quantize_weight(w, params.weight_bits)
    dst.weight.copy_(wq)
    dst.float32_exact.fill_(exact_in_float32(wq, row_step, in_step))


def _mixed(lin: nn.Linear, mu: nn.Parameter) -> torch.Tensor:
    """``[W diag(mu), W diag(1 - mu)]``: the mix folded into the weight. Shape: [out, 2 in] float64."""
    w, m = lin.weight.detach().to(DTYPE), mu.detach().to(DTYPE)
    return torch.cat((w * m, w * (1 - m)), dim=1)


def _norm(src: nn.LayerNorm, dst) -> None:
    dst.weight.copy_(src.weight.detach().to(DTYPE))
    dst.bias.copy_(src.bias.detach().to(DTYPE))


def map_model(model: RWKVLM, calib: CalibrationRecord, params: ConversionParams, twin: bool = False):
    """Build the :class:`SpikingRWKV` (or, ``twin=True``, the :class:`QuantizedRWKV`) from ``model`` and
    ``calib``; its ``records["map"]`` is a :class:`~neuro.converters.conversion.MapRecord`."""
    validate(model)
    if isinstance(params, dict):
        params = ConversionParams.from_dict(params)
    conv = (QuantizedRWKV if twin else SpikingRWKV)(model.config, params)
    cfg, levels = model.config, 2 ** params.timesteps - 1
    encoders, layers = [], []
    with torch.no_grad():
        for path, sub in conv.named_modules():
            if path.rpartition(".")[2].startswith("enc_"):
                if path not in calib.ranges:
                    raise ParameterError("map_model", "calib", path,
                                         "a calibration record holding this encoder's range")
                clip = calib.ranges[path].view(sub.step.shape) * 2.0 ** params.headroom
                sub.step.copy_(pow2_step(clip, levels, exact_spread(path, cfg, params)))
                encoders.append(path)
            elif hasattr(sub, "grid") and path:
                if path not in calib.outputs:
                    raise ParameterError("map_model", "calib", path,
                                         "a calibration record holding this operator's range")
                sub.grid.copy_(_grid(calib.outputs[path], params.fine_bits))
        conv.embed.tok.copy_(model.emb.weight.detach().to(DTYPE))
        layers.append(("emb", "Embedding", "QRWKVEmbed"))
        for path in ("ln_in", "ln_out"):
            _norm(model.get_submodule(path), conv.get_submodule(path))
            layers.append((path, "LayerNorm", type(conv.get_submodule(path)).__name__))
        for i, (src, dst) in enumerate(zip(model.blocks, conv.blocks)):
            p = f"blocks.{i}"
            _norm(src.ln1, dst.ln1), _norm(src.ln2, dst.ln2)
            a, qa = src.att, dst.att
            x2 = torch.cat((qa.enc_x.step, qa.enc_x.step))
            for name, mu in (("key", a.mu_k), ("value", a.mu_v), ("receptance", a.mu_r)):
                _fill_linear(getattr(qa, name), _mixed(getattr(a, name), mu), x2, params)
            _fill_linear(qa.output, a.output.weight.detach().to(DTYPE), qa.enc_y.step, params)
            qa.wkv.w.copy_(-torch.exp(a.wkv.time_decay.detach().to(DTYPE)))
            qa.wkv.u.copy_(a.wkv.time_first.detach().to(DTYPE))
            f, qf = src.ffn, dst.ffn
            x2 = torch.cat((qf.enc_x.step, qf.enc_x.step))
            _fill_linear(qf.key, _mixed(f.key, f.mu_k), x2, params)
            _fill_linear(qf.receptance, _mixed(f.receptance, f.mu_r), x2, params)
            _fill_linear(qf.value, f.value.weight.detach().to(DTYPE), qf.enc_h.step, params)
            for name in ("ln1", "ln2", "att.key", "att.value", "att.receptance", "att.sigmoid", "att.wkv", "att.gate",
                         "att.output", "ffn.key", "ffn.act", "ffn.value", "ffn.receptance", "ffn.sigmoid", "ffn.gate"):
                layers.append((f"{p}.{name}", type(src.get_submodule(name)).__name__,
                               type(dst.get_submodule(name)).__name__))
        _fill_linear(conv.head, model.head.weight.detach().to(DTYPE), conv.enc_f.step, params)
        layers.append(("head", "Linear", type(conv.head).__name__))
    conv.records = {"map": MapRecord(layers, encoders)}
    return conv


def report(model: RWKVLM, snn: SpikingRWKV, twin: Optional[QuantizedRWKV], ids: torch.Tensor,
           seq_len: Optional[int] = None, batch_size: int = 8, layers: bool = True) -> FidelityReport:
    """Perplexities of the float model, the twin and ``snn`` on the token stream ``ids`` (windows of
    ``seq_len``, default :data:`EVAL_SEQ_LEN`, each from the empty state), whether ``snn`` equals the
    twin exactly on the first window, and (``layers``) the operation table of a 16-token run."""
    L = int(seq_len or EVAL_SEQ_LEN)
    ids = torch.as_tensor(ids).long().flatten()
    with torch.no_grad():
        rep, probe = perplexity_report(model, snn, twin, ids, L, batch_size)
    if layers:
        rep.layers = op_table(snn, probe[:, :16])
    return rep


class RWKVBackend:
    """The conversion stages of :class:`~neuro.models.rwkv.RWKVLM` (:data:`neuro.converters.conversion.BACKENDS`)."""

    validate = staticmethod(validate)
    calibrate = staticmethod(calibrate)
    map_model = staticmethod(map_model)
    report = staticmethod(report)


BACKEND = RWKVBackend()

from .counting import register_rwkv as _register_rwkv  # noqa: E402

_register_rwkv()

__all__ = ["BACKEND", "EVAL_SEQ_LEN", "QRWKVState", "QLayerState", "QuantSigmoid", "QuantSquaredReLU", "QuantShift",
           "QuantWKV", "QuantizedRWKV", "RWKV_SPIKING_OPS", "RWKV_TWIN_OPS", "SpikingRWKV", "SpikingShift",
           "SpikingSigmoid", "SpikingSquaredReLU", "SpikingWKV", "calibrate", "check_wkv", "exact_spread",
           "map_model", "report", "shift_tokens", "validate", "wkv_read", "wkv_write"]
