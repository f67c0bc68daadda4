r"""Spiking operators of converted Transformers, and their quantized-ANN twins.

Every operator exists twice, with the same buffers and the same pure functions:

* the **twin** (``Quant*``) computes on values: the ANN with the converter's quantizers;
* the **spiking** operator (``Spiking*``) computes on a leading time axis ``[T, ...]`` of per-step
  currents or spikes; integrated over its ``T`` steps it gives exactly the twin's value.

Numbers. All signals are dyadic rationals on power-of-two grids with bounded integer codes, held in
float64, so every sum below is exact whatever its order (the integer codes stay far below 2^53).

Encoder (bit-serial signed multi-threshold neuron, LAS-style; REFERENCE §3). With a per-channel
step :math:`s_c = 2^{e_c}` and :math:`T` steps, it integrates its input currents over the window,
:math:`A = \sum_t X_t`, and emits the binary expansion of the code of :math:`A`, most significant
bit first:

.. math::
    k = \operatorname{sign}(A)\,\min(\lfloor |A|/s + 1/2 \rfloor,\ 2^T - 1),\qquad
    S_t = \operatorname{sign}(k)\, b_{T-1-t}(|k|)\, 2^{T-1-t} s,\qquad \sum_t S_t = k s = Q_T(A).

Each step's spikes take values in :math:`\{-c_t, 0, c_t\}` per channel with :math:`c_t = 2^{T-1-t} s_c`
(a power of two: a shift folded into the weights), so a synapse fed by it only accumulates.

Linear (accumulate-only): :math:`Y_t = W S_t + b\,[t = 0]`, so :math:`\sum_t Y_t = W Q_T(A) + b`.
Weights are :math:`W = W_{int} 2^{e_j}` (per output row, ``weight_bits`` signed bits) and the bias
lies on the grid :math:`2^{e_j} \min_c s_c` of the products.

Spike x spike products (QK^T, PV), running-sum form (REFERENCE §3), with :math:`\bar A_t = \sum_{\le t} A`:

.. math::
    O_t = \bar A_t \bar B_t - \bar A_{t-1} \bar B_{t-1} = A_t \bar B_t + \bar A_{t-1} B_t,
    \qquad \sum_t O_t = \bar A_T \bar B_T.

(``A_t`` and ``B_t`` are spikes, so both terms are accumulates of running sums.)

Non-linear operators (LayerNorm, RMSNorm, GELU, SiLU, ReLU, softmax, rotary, the gate product),
accumulated-difference form with the output requantized onto the operator's grid :math:`g` (a power
of two, ``fine_bits`` below the calibrated output range):

.. math::
    F_t = Q_g(f(\bar X_t)),\quad Q_g(y) = g\,\mathrm{round}(y/g),\qquad Y_t = F_t - F_{t-1},\ F_0 = 0,
    \qquad \sum_t Y_t = Q_g(f(\bar X_T)).

Because :math:`\bar X_T` equals the twin's input exactly, :math:`f` sees the same float64 tensor
in both models and the sums above are exact, the spiking model integrated over its window returns
the twin's output bit for bit.

Exactness budget. Every sum is exact while its integer value stays below 2^53 units of its finest
grid. The converter bounds the worst case of every synapse and spike-product sum by tightening the
encoders' channel spread (``neuro.converters.conversion.exact_spread``); the residual stream
(embeddings on a ``fine_bits`` grid plus the layers' outputs) is not bounded formally: on the bundled
char-level GPT and Llama it uses at most 35 of the 53 bits at T = 16 (27 at T = 8). Where float32 is provably exact it is used for
speed: spikes (signed powers of two), a synapse's per-step sum when its bound is below 2^24
(:func:`exact_in_float32`), and the element-wise functions and softmax (evaluated in float32 in
both models on the same input, rounded onto their power-of-two grid, which is exact in float32).

Fast paths (same values bit for bit; ``tests/converters/test_spiking_speedpaths.py``):

* fused time-axis passes (:mod:`neuro._native.timeaxis`, compiled; each falls back to the PyTorch
  expression when the extension is missing): the encoder's codes and planes in one pass, running and
  window sums, the grid rounding with its step differences, with one IEEE operation per value as in
  PyTorch;
* event-driven synapses: the encoder counts the spikes of each step (``_step_spikes``) and marks which
  channels spike (``_active_channels``). A step with few spikes (below a measured density,
  :meth:`SpikingLinear.event_below`) accumulates the weight rows of its spikes alone
  (:func:`neuro._native.timeaxis.spike_matmul`); one where fewer than half of the channels spike
  multiplies only their weight columns (the others are exactly zero, so every per-step sum is the
  same). With MSB-first planes these are the leading steps;
* fused residual additions (:func:`residual_add`: one pass widening a float32 current into the
  float64 residual stream);
* float32 where provably exact: the synapses' per-step sums (:func:`exact_in_float32`); the spike
  products when the bound checked on the data at each call holds (:class:`SpikingMatMul`); the outputs
  of the accumulated-difference operators when every ``|F_t| / g < 2^23`` (so ``F_t`` and
  ``F_t - F_{t-1}`` are float32 numbers; checked in the same pass, float64 otherwise). Float32 outputs
  are enabled per module by ``narrow_output``, which :class:`~neuro.converters.spiking_transformer.SpikingTransformer`
  sets where every receiver sums or widens in float64 (encoders, accumulated-difference operators,
  the float64 residual stream, the readout); :func:`running_sum` and :func:`window_sum` return float64
  whatever the train's dtype.

Cost floor. The spiking model does per step what the float model does once: ``T`` planes through
every synapse (``T`` times the float model's matrix products, less the skipped columns), ``T`` running-sum
products per attention product, and ``T`` evaluations of every non-linear function, on tensors ``T``
times larger. On the bundled char-level GPT the matrix products alone cost 4-5x the float model's
whole forward pass at ``T = 8`` and about 10x at ``T = 16`` (where the spike products need float64).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .._native import timeaxis as _fused
from ..models.transformer import rotary_angles, rotate_half

DTYPE = torch.float64


# ------------------------------------------------------------------------------------ pure functions
def pow2_step(clip: torch.Tensor, levels: int, spread_bits: int) -> torch.Tensor:
    """Power-of-two quantization steps ``2^ceil(log2(clip / levels))``, at most ``2^spread_bits``
    times finer than the coarsest one (channels that never fire get that finest step).
    Shape: clip [...] -> [...] float64."""
    clip = clip.to(DTYPE)
    top = float(clip.max()) if clip.numel() else 0.0
    if not math.isfinite(top) or top <= 0:
        top = 1.0
    floor = top * 2.0 ** -spread_bits
    return torch.exp2(torch.ceil(torch.log2(clip.clamp_min(floor) / levels)))


def quantize_codes(a: torch.Tensor, step: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed integer codes ``sign(a) min(floor(|a|/s + 1/2), 2^bits - 1)`` (as float64)."""
    top = float(2 ** bits - 1)
    return torch.sign(a) * torch.clamp(torch.floor(a.abs() / step + 0.5), max=top)


def bit_planes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed binary expansion, most significant bit first: ``sum_t planes[t] == codes``.

    Shape: codes [...] -> planes [bits, ...] float32 with values in {-2^(bits-1-t), 0, 2^(bits-1-t)}.
    """
    mag = codes.abs().to(torch.int32)                                        # [...] (bits <= 16)
    view = (-1,) + (1,) * codes.dim()
    shifts = torch.arange(bits - 1, -1, -1, dtype=torch.int32).view(view)    # [T, 1...]
    planes = ((mag.unsqueeze(0) >> shifts) & 1).to(torch.float32)            # [T, ...] in {0, 1}
    planes *= torch.exp2(shifts.to(torch.float32))
    return planes.mul_(torch.sign(codes).to(torch.float32))


def q_grid(y: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Round onto the power-of-two grid ``g``: ``g round(y / g)`` (exact scaling, ties to even)."""
    g = float(grid)
    return (y * (1.0 / g)).round_().mul_(g)


def quantize_weight(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row power-of-two quantization: ``W_int 2^e_j`` with ``|W_int| <= 2^(bits-1) - 1``.

    Shape: w [out, in] -> (quantized weight [out, in] float64, row step [out] float64).
    """
    w = w.detach().to(DTYPE)
    top = 2 ** (bits - 1) - 1
    step = pow2_step(w.abs().amax(1), top, 60)                              # [out]
    return torch.clamp(torch.round(w / step[:, None]), -top, top) * step[:, None], step


def _dense_layout(x: torch.Tensor):
    """``(y, back)``: ``y = x.permute(0, *p)`` contiguous for some order ``p`` of the non-time axes (a
    transposed view of a dense train), with ``back`` the inverse order for a result of ``y``'s shape
    (or, with the time axis dropped, of ``y[0]``'s); None when no such order exists."""
    if x.is_contiguous():
        return x, None
    order = sorted(range(1, x.dim()), key=lambda d: -x.stride(d))
    y = x.permute(0, *order)
    if not y.is_contiguous():
        return None
    inv = [0] * x.dim()
    for i, d in enumerate([0] + order):
        inv[d] = i
    return y, inv


def running_sum(x: torch.Tensor) -> torch.Tensor:
    """``bar X_t = sum_{s <= t} X_s`` over the leading time axis, in float64 (exact on dyadic grids). Shape: [T, ...].

    A train made by :func:`step_difference` carries the running sum it was made from (the sender's
    membrane), which equals its cumulative sum exactly, so the receiver reads it instead of re-adding.
    """
    known = getattr(x, "_running_sum", None)
    if known is not None and known.shape == x.shape:
        return known if known.dtype == DTYPE else known.to(DTYPE)          # a float32 membrane is exact
    dense = _dense_layout(x)                                                # element-wise over the other axes
    if dense is not None:
        fused = _fused.running_sum(dense[0])
        if fused is not None:
            return fused if dense[1] is None else fused.permute(*dense[1])
    return torch.cumsum(x, dim=0, dtype=DTYPE)


def window_sum(x: torch.Tensor) -> torch.Tensor:
    """``sum_t X_t`` over the window, in float64 (the last running sum when the train carries it). Shape: [T, ...] -> [...]."""
    known = getattr(x, "_running_sum", None)
    if known is not None and known.shape == x.shape:
        return known[-1].to(DTYPE)
    dense = _dense_layout(x)
    if dense is not None:
        fused = _fused.window_sum(dense[0])
        if fused is not None:
            return fused if dense[1] is None else fused.permute(*[d - 1 for d in dense[1][1:]])
    return x.sum(0, dtype=DTYPE)


def residual_add(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``x + a`` for the float64 residual stream ``x`` and a current ``a`` of its shape (float32 or float64,
    widened exactly as PyTorch's promotion does), in one pass into a reused buffer. Shape: [...] -> [...]."""
    out = _fused.add_wide(x, a)
    return out if out is not None else x + a


def exact_in_float32(weight: torch.Tensor, row_step: torch.Tensor, in_step: torch.Tensor) -> bool:
    """Whether one step of ``spikes @ W^T`` is exact in float32. With ``W_ji = W_int 2^e_j`` and spikes
    ``+-2^k s_i``, row ``j`` sums integers times ``2^(e_j + k) min_i s_i``; float32 holds every partial
    sum exactly when ``sum_i |W_int,ji| s_i / min_i s_i < 2^24``. Shape: weight [out, in], row_step [out],
    in_step [in] (any shape with ``in`` elements)."""
    ratio = in_step.flatten().to(DTYPE) / in_step.min().to(DTYPE)            # [in]
    bound = ((weight.to(DTYPE).abs() / row_step[:, None]) * ratio[None, :]).sum(1)  # [out]
    return bool((bound < 2.0 ** 24).all())


def step_difference(f: torch.Tensor) -> torch.Tensor:
    """``Y_t = F_t - F_{t-1}`` with ``F_0 = 0``. Shape: [T, ...] -> [T, ...]."""
    out = _fused.step_diff(f)
    if out is None:
        out = torch.empty_like(f)
        out[0] = f[0]
        torch.sub(f[1:], f[:-1], out=out[1:])
    out._running_sum = f  # exact: cumsum(out) == f on the dyadic grids used here
    return out


# ------------------------------------------------------------------------------------ encoders
class QuantEncoder(nn.Module):
    """Twin of :class:`BitSerialEncoder`: ``Q_T(a) = k s`` (see the module docstring).

    Args:
        shape: shape of the per-channel step (broadcast against the last dims of the input).
        timesteps: T, the number of bits.
    Shape: [..., C] -> [..., C].
    """

    def __init__(self, shape, timesteps: int):
        super().__init__()
        self.timesteps = int(timesteps)
        self.register_buffer("step", torch.ones(tuple(shape), dtype=DTYPE))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return quantize_codes(a, self.step, self.timesteps) * self.step

    def extra_repr(self) -> str:
        return f"channels={tuple(self.step.shape)}, T={self.timesteps}"


class BitSerialEncoder(QuantEncoder):
    """Signed bit-serial neuron: integrates its currents over the window, emits the MSB-first
    binary expansion of its code. Shape: currents [T, ..., C] -> spikes [T, ..., C]."""

    step_mode = "m"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = window_sum(x)                                                   # [..., C] float64
        fused = _fused.encode(a, self.step, self.timesteps)                 # codes and planes in one pass
        if fused is not None:
            return fused
        codes = quantize_codes(a, self.step, self.timesteps)                # [..., C]
        # float32 is exact here: every spike is +-2^k s_c (a power of two)
        return bit_planes(codes, self.timesteps).mul_(self.step.to(torch.float32))  # [T, ..., C]


# ------------------------------------------------------------------------------------ synapses
class QuantLinear(nn.Module):
    """``y = x W^T + b`` with quantized ``W`` and ``b`` (float64 buffers). Shape: [..., in] -> [..., out]."""

    def __init__(self, n_in: int, n_out: int, bias: bool):
        super().__init__()
        self.register_buffer("weight", torch.zeros(n_out, n_in, dtype=DTYPE))
        self.register_buffer("bias", torch.zeros(n_out, dtype=DTYPE) if bias else None)
        # 1 when every per-step sum of this layer stays below 2^24 units of its grid, so float32 is exact
        # (set by the converter from the input encoder's steps, see exact_in_float32)
        self.register_buffer("float32_exact", torch.zeros((), dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.weight.t()                                             # [..., out]
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, bias={self.bias is not None}"


class SpikingLinear(QuantLinear):
    """Accumulate-only synapse: ``Y_t = W S_t`` (+ ``b`` at the first step). Shape: [T, ..., in] -> [T, ..., out].

    Output dtype: float64; float32 when ``narrow_output`` is set (by a wiring whose receivers all widen
    or sum in float64), the layer is ``float32_exact`` and the first step plus the bias is exact in
    float32 (checked): the same values in half the memory.
    """

    step_mode = "m"
    narrow_output = False
    sparse_below = 0.5  # a step whose active channels are fewer than this fraction runs on them alone

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        rows = s.reshape(-1, s.shape[-1])                                   # [T*..., in]: time folded into rows
        if bool(self.float32_exact):
            w32 = getattr(self, "_w32", None)
            if w32 is None or w32[0] is not self.weight or w32[1] != self.weight._version:
                self._w32 = w32 = (self.weight, self.weight._version, self.weight.t().to(torch.float32).contiguous())
            y32 = self._plane_products(s, w32[2])                            # [T, ..., out]
            if self.narrow_output:
                if self.bias is None:
                    return y32
                exact = _fused.add_bias32(y32[0], self.bias)                # in place when exact in float32
                if exact is None:
                    first = y32[0].to(DTYPE) + self.bias                    # [..., out]
                    first32 = first.to(torch.float32)
                    exact = torch.equal(first32.to(DTYPE), first)
                    if exact:
                        y32[0] = first32
                if exact:
                    return y32
            y = _fused.widen_bias(y32, self.bias)                           # exact widening, bias at t = 0
            if y is not None:
                return y
            y = y32.to(DTYPE)
        else:
            y = (rows.to(DTYPE) @ self.weight.t()).reshape(*s.shape[:-1], -1)
        if self.bias is not None:
            y[0] += self.bias
        return y

    @staticmethod
    def event_below(n_out: int) -> float:
        """Spike density below which a step accumulates the weight rows of its spikes
        (:func:`neuro._native.timeaxis.spike_matmul`) instead of a dense product. Measured on one core
        (512 rows, float32): the two cost the same at about 5 % with 128 outputs and 15 % with 512."""
        return min(0.15, 0.04 * n_out / 128)

    def _plane_products(self, s: torch.Tensor, wt: torch.Tensor) -> torch.Tensor:
        """``S_t @ W^T`` per step in float32, event-driven on the leading (most significant, sparse)
        steps: a step with few spikes (``_step_spikes``, counted by the encoder) accumulates the weight
        rows of its spikes, one with few active channels (``_active_channels`` [T, in]) multiplies only
        their columns; the other steps run as one matrix product. Every per-step sum is exact in
        float32, so all three give the same values. Shape: s [T, ..., in], wt [in, out] -> [T, ..., out]."""
        T, n_in, n_out = s.shape[0], s.shape[-1], wt.shape[1]
        rows = s.reshape(-1, n_in).to(torch.float32)                        # [T*R, in]
        out = _fused.buffer((*s.shape[:-1], n_out), torch.float32)          # [T, ..., out], reused across calls
        R = rows.shape[0] // T
        planes, y = rows.view(T, R, n_in), out.view(T, R, n_out)            # [T, R, in], [T, R, out]
        spikes = getattr(s, "_step_spikes", None)                           # [T] spikes per step
        active = getattr(s, "_active_channels", None)                       # [T, in] any spike per channel
        if not s.is_contiguous() or active is None or tuple(active.shape) != (T, n_in):
            active = None
        if spikes is None or len(spikes) != T:
            spikes = [math.inf] * T                                         # unknown: no step counts as sparse
        t0, per_channel = 0, None
        while active is not None and t0 < T:                                # MSB first: the sparse steps lead
            if spikes[t0] < self.event_below(n_out) * R * n_in and _fused.spike_matmul(planes[t0], wt, y[t0]):
                t0 += 1
                continue
            if per_channel is None:
                per_channel = active.sum(1).tolist()                        # active channels per step
            if per_channel[t0] >= self.sparse_below * n_in:
                break
            idx = active[t0].nonzero().squeeze(1)
            torch.matmul(planes[t0].index_select(1, idx), wt.index_select(0, idx), out=y[t0])
            t0 += 1
        if t0 < T:
            torch.matmul(planes[t0:].reshape(-1, n_in), wt, out=y[t0:].view(-1, n_out))
        return out


class QuantMatMul(nn.Module):
    """Product of two quantized tensors ``a @ b``. Shape: [..., n, k], [..., k, m] -> [..., n, m]."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class SpikingMatMul(QuantMatMul):
    r"""Running-sum product of two spike trains: ``O_t = bar A_t bar B_t - bar A_{t-1} bar B_{t-1}``.

    Float32 when provably exact (checked on the data at every call, else float64). Let every nonzero
    spike of ``A`` be :math:`\pm 2^j \ge u_A` (:math:`u_A` its smallest magnitude) and
    :math:`\sigma_A = \sum_t |A_t|` per element; likewise for ``B``. Every running sum is an integer
    multiple of :math:`u_A` (:math:`u_B`) of magnitude at most :math:`\sigma_A` (:math:`\sigma_B`), so
    every product is a multiple of :math:`u = u_A u_B` and every partial sum of output ``(n, m)``, in
    any order, is bounded by :math:`M = \max_n \sum_k \sigma_A[n, k] \cdot \max \sigma_B`. When
    :math:`M < 2^{24} u`, :math:`\max\sigma_A < 2^{24} u_A`, :math:`\max\sigma_B < 2^{24} u_B` and
    :math:`u \ge 2^{-149}`, every operand and partial sum is a float32 number: the float32 product equals
    the float64 one bit for bit.

    Shape: [T, ..., n, k], [T, ..., k, m] -> [T, ..., n, m].
    """

    step_mode = "m"
    narrow_output = False  # float32 output and membrane when exact (set by wirings whose receivers widen)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self._forward_hooks:  # an operation counter is attached: it reads both inputs
            self._observed_b = b
        bars = self._float32_bars(a, b)
        if bars is not None:
            bar = self._product(*bars[:2])                                  # [T, ..., n, m] exact in float32
            if self.narrow_output and bars[2]:
                out = _fused.step_diff32(bar)                               # differences below 2^24 u: float32 too
                if out is not None:
                    out._running_sum = bar
                    return out
            return step_difference(bar.to(DTYPE))
        return step_difference(self._product(running_sum(a), running_sum(b)))

    @staticmethod
    def _product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``a @ b`` into a reused buffer. Shape: [..., n, k], [..., k, m] -> [..., n, m]."""
        if a.dim() < 2 or b.dim() < 2 or a.dtype != b.dtype:
            return torch.matmul(a, b)
        shape = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        return torch.matmul(a, b, out=_fused.buffer(shape, a.dtype))

    @staticmethod
    def _float32_bars(a: torch.Tensor, b: torch.Tensor):
        """``(bar A, bar B, small)`` as float32 when the product is exact in float32 (see above), else None;
        ``small``: ``M < 2^23 u``, so the step differences of the product are float32 numbers too."""
        if a.dtype != torch.float32 or b.dtype != torch.float32 or a.dim() < 3 or b.dim() < 3:
            return None
        bt = b.transpose(-2, -1) if not b.is_contiguous() else None         # K^T is a view of a contiguous train
        if bt is not None and not bt.is_contiguous():
            return None
        sa, sb = _fused.scan_train(a), _fused.scan_train(b if bt is None else bt)  # one pass each
        if sa is None or sb is None or not (sa[2] and sb[2]):
            return None
        (bar_a, ua, _, top_a, rows_a), (bar_b, ub, _, top_b, _) = sa, sb
        if not (math.isfinite(ua) and math.isfinite(ub)):                   # an all-zero train
            return None
        bound, u = rows_a * top_b, ua * ub                                  # M, the product's unit
        if not (u >= 2.0 ** -149 and bound < 2.0 ** 24 * u and top_a < 2.0 ** 24 * ua and top_b < 2.0 ** 24 * ub
                and bound < 2.0 ** 120):
            return None
        return bar_a, bar_b if bt is None else bar_b.transpose(-2, -1), bound < 2.0 ** 23 * u


# ------------------------------------------------------------------------------------ non-linear operators
class GridOp(nn.Module):
    """A twin operator ``Q_g(f(x))``: subclasses define :meth:`f`; ``grid`` is a float64 buffer.

    Class attributes for the operation count (per output element and step): ``mults`` multiplies
    and ``evals`` non-linear function evaluations.
    """

    mults = 0
    evals = 1
    compute_dtype = DTYPE

    def __init__(self):
        super().__init__()
        self.register_buffer("grid", torch.ones((), dtype=DTYPE))

    def f(self, *xs, **static) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, *xs, **static) -> torch.Tensor:
        return self.evaluate(*xs, **static)

    def evaluate(self, *xs, **static) -> torch.Tensor:
        """``Q_g(f(x))`` as float64, with ``f`` in ``compute_dtype``: float32 for the element-wise
        functions and softmax (the same function of the same input in both models, so exactness holds),
        float64 for the norms. Rounding a float32 value onto a power-of-two grid is exact in float32,
        so ``Q_g`` runs before the (exact) widening to float64."""
        if self.compute_dtype == DTYPE:
            return q_grid(self.f(*xs, **static), self.grid)
        return q_grid(self.f(*(x.to(self.compute_dtype) for x in xs), **static), self.grid).to(DTYPE)


class AccDiff:
    """Mixin making a :class:`GridOp` spiking: ``Y_t = Q_g(f(bar X_t)) - Q_g(f(bar X_{t-1}))``.

    Timed inputs ``[T, ...]`` are positional; static ones (mask, positions) are keywords.
    """

    step_mode = "m"
    narrow_output = False  # float32 output and membrane when exact (set by wirings whose receivers widen)

    def forward(self, *xs, **static):
        if self._forward_hooks and len(xs) > 1:
            self._observed_b = xs[1]
        if type(self).evaluate is not GridOp.evaluate:                       # a subclass with its own evaluation
            return step_difference(self.evaluate(*(running_sum(x) for x in xs), **static))
        bars, owned = zip(*(self._bar(x) for x in xs))                      # [T, ...] bar X_t in compute_dtype
        raw = self.f_fresh(*bars, **static) if all(owned) else self.f(*bars, **static)  # f(bar X_t)
        # F may overwrite f's result when that is a fresh tensor or one this operator owns (not a sender's membrane)
        spare = raw._base is None and all(own or raw.data_ptr() != b.data_ptr() for b, own in zip(bars, owned))
        if self.narrow_output:
            fused = _fused.grid_diff32(raw, self.grid, inplace=spare)        # float32 when exact
            if fused is not None:
                fused[1]._running_sum = fused[0]
                return fused[1]
            # a refusal after working in place left Q_g(raw) in raw (float32, exact), which Q_g maps to itself
        fused = _fused.grid_diff(raw, self.grid, inplace=spare)             # Q_g and the step difference in one pass
        if fused is None:
            return step_difference(q_grid(raw, self.grid).to(DTYPE))
        f, out = fused
        out._running_sum = f
        return out

    def _bar(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """``bar X_t`` as ``compute_dtype`` (summed in float64), and whether it is a fresh tensor this
        operator owns (False: the sender's membrane itself)."""
        known = getattr(x, "_running_sum", None)
        if known is not None and known.shape == x.shape and known.dtype == self.compute_dtype:
            return known, False
        if self.compute_dtype == DTYPE:
            return running_sum(x), known is None
        if known is None or known.shape != x.shape:
            narrow = _fused.running_sum_narrow(x)                            # no float64 array in between
            if narrow is not None:
                return narrow, True
        return running_sum(x).to(self.compute_dtype), True

    def f_fresh(self, *xs, **static) -> torch.Tensor:
        """:meth:`f` on inputs this operator owns (which it may overwrite)."""
        return self.f(*xs, **static)


class QuantLayerNorm(GridOp):
    """LayerNorm in float64. Shape: [..., D] -> [..., D]."""

    mults = 3  # square, normalise, gain

    def __init__(self, d: int, eps: float, bias: bool):
        super().__init__()
        self.eps = float(eps)
        self.register_buffer("weight", torch.ones(d, dtype=DTYPE))
        self.register_buffer("bias", torch.zeros(d, dtype=DTYPE) if bias else None)

    def f(self, x):
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)


class QuantRMSNorm(GridOp):
    """RMSNorm in float64: ``w x / sqrt(mean(x^2) + eps)``. Shape: [..., D] -> [..., D]."""

    mults = 3

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.eps = float(eps)
        self.register_buffer("weight", torch.ones(d, dtype=DTYPE))

    def f(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


# activation name -> element-wise function
ACTIVATION_FNS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


# activation name -> the same function in place (the same kernels: equal results bit for bit)
INPLACE_ACTIVATION_FNS = {
    "gelu": lambda x: torch.ops.aten.gelu_(x),
    "gelu_tanh": lambda x: torch.ops.aten.gelu_(x, approximate="tanh"),
    "relu": torch.relu_,
    "silu": lambda x: F.silu(x, inplace=True),
}


class QuantActivation(GridOp):
    """Element-wise activation by name (:data:`ACTIVATION_FNS`), evaluated in float32. Shape: [...] -> [...]."""

    compute_dtype = torch.float32

    def __init__(self, name: str):
        super().__init__()
        self.name = name
        self.fn = ACTIVATION_FNS[name]

    def f(self, x):
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


class QuantSoftmax(GridOp):
    """``softmax(x + mask)`` over the last dim, evaluated in float32 (as the original). Shape: [..., S] -> [..., S]."""

    mults = 1  # the normalising division
    compute_dtype = torch.float32

    def f(self, x, mask: Optional[torch.Tensor] = None):
        return torch.softmax(x + mask.to(x.dtype) if mask is not None else x, dim=-1)


class QuantRotary(GridOp):
    """Rotary embedding of the first ``dim`` channels (cos/sin from the reference model, as float64).

    Shape: [..., L, d_h], positions [L] -> [..., L, d_h].
    """

    mults = 2
    evals = 0

    def __init__(self, dim: int, base: float):
        super().__init__()
        self.dim, self.base = int(dim), float(base)

    def f(self, x, positions: Optional[torch.Tensor] = None):
        cos, sin = (t.to(DTYPE) for t in rotary_angles(positions, self.dim, self.base))  # [L, r]
        rot, rest = x[..., :self.dim], x[..., self.dim:]
        rot = rot * cos + rotate_half(rot) * sin
        return torch.cat((rot, rest), dim=-1) if rest.shape[-1] else rot


class QuantMul(GridOp):
    """Element-wise product of two tensors (the SwiGLU gate). Shape: [...], [...] -> [...]."""

    mults = 1
    evals = 0

    def f(self, a, b):
        return a * b


class SpikingLayerNorm(AccDiff, QuantLayerNorm):
    """Accumulated-difference LayerNorm. Shape: [T, ..., D] -> [T, ..., D]."""


class SpikingRMSNorm(AccDiff, QuantRMSNorm):
    """Accumulated-difference RMSNorm. Shape: [T, ..., D] -> [T, ..., D]."""


class SpikingActivation(AccDiff, QuantActivation):
    """Accumulated-difference GELU / SiLU / ReLU. Shape: [T, ...] -> [T, ...]."""

    def f_fresh(self, x):
        inplace = INPLACE_ACTIVATION_FNS.get(self.name)                     # x is this operator's own copy
        return inplace(x) if inplace is not None and self.fn is ACTIVATION_FNS.get(self.name) else self.f(x)


class SpikingSoftmax(AccDiff, QuantSoftmax):
    """Accumulated-difference softmax (mask static). Shape: [T, ..., S] -> [T, ..., S]."""

    def f(self, x, mask: Optional[torch.Tensor] = None):
        return self._softmax(x, mask, inplace=False)

    def f_fresh(self, x, mask: Optional[torch.Tensor] = None):
        return self._softmax(x, mask, inplace=True)                          # x is this operator's own copy

    def _softmax(self, x, mask, inplace: bool):
        """:meth:`QuantSoftmax.f` with the same kernels, written into reused buffers (the masked input
        too, or into ``x`` itself when ``inplace``)."""
        if x.dtype != torch.float32 or not x.is_contiguous() or (
                mask is not None and torch.broadcast_shapes(x.shape, mask.shape) != x.shape):
            return super().f(x, mask=mask)
        if mask is not None:
            m = mask.to(x.dtype)
            x = x.add_(m) if inplace else torch.add(x, m, out=_fused.buffer(x.shape, x.dtype))
        return torch.ops.aten._softmax.out(x, -1, False, out=_fused.buffer(x.shape, x.dtype))


class SpikingRotary(AccDiff, QuantRotary):
    """Accumulated-difference rotary embedding (positions static). Shape: [T, ..., L, d_h]."""


class SpikingMul(AccDiff, QuantMul):
    """Accumulated-difference product of two current trains. Shape: [T, ...], [T, ...] -> [T, ...]."""


# ------------------------------------------------------------------------------------ time boundary
class Hold(nn.Module):
    """Twin of :class:`Inject`: the identity."""

    def __init__(self, timesteps: int):
        super().__init__()
        self.timesteps = int(timesteps)

    def forward(self, x):
        return x


class Inject(Hold):
    """Feeds a value into the time window as a current at the first step. Shape: [...] -> [T, ...]."""

    step_mode = "m"

    def forward(self, x):
        out = x.new_zeros((self.timesteps, *x.shape))
        out[0] = x
        return out


class Readout(nn.Module):
    """Twin of :class:`Integrate`: casts the result to float32 (the dtype of the original model)."""

    def __init__(self, timesteps: int):
        super().__init__()
        self.timesteps = int(timesteps)

    def forward(self, x):
        return x.float()


class Integrate(Readout):
    """Output integrator: the sum of the currents over the window, as float32. Shape: [T, ...] -> [...]."""

    step_mode = "m"

    def forward(self, x):
        return window_sum(x).float()


class OpSet:
    """Which operator classes build a model: the spiking set or the quantized twin's set."""

    def __init__(self, name: str, timed: bool, classes: dict):
        self.name, self.timed, self.classes = name, timed, dict(classes)

    def __getitem__(self, kind: str) -> type:
        return self.classes[kind]


TWIN_OPS = OpSet("twin", False, {
    "encoder": QuantEncoder, "linear": QuantLinear, "matmul": QuantMatMul, "layernorm": QuantLayerNorm,
    "rmsnorm": QuantRMSNorm, "activation": QuantActivation, "softmax": QuantSoftmax, "rotary": QuantRotary,
    "mul": QuantMul, "inject": Hold, "readout": Readout})
SPIKING_OPS = OpSet("spiking", True, {
    "encoder": BitSerialEncoder, "linear": SpikingLinear, "matmul": SpikingMatMul, "layernorm": SpikingLayerNorm,
    "rmsnorm": SpikingRMSNorm, "activation": SpikingActivation, "softmax": SpikingSoftmax, "rotary": SpikingRotary,
    "mul": SpikingMul, "inject": Inject, "readout": Integrate})
