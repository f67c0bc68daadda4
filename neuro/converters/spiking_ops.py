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
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

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


def running_sum(x: torch.Tensor) -> torch.Tensor:
    """``bar X_t = sum_{s <= t} X_s`` over the leading time axis, in float64 (exact on dyadic grids). Shape: [T, ...].

    A train made by :func:`step_difference` carries the running sum it was made from (the sender's
    membrane), which equals its cumulative sum exactly, so the receiver reads it instead of re-adding.
    """
    known = getattr(x, "_running_sum", None)
    if known is not None and known.shape == x.shape:
        return known
    return torch.cumsum(x, dim=0, dtype=DTYPE)


def window_sum(x: torch.Tensor) -> torch.Tensor:
    """``sum_t X_t`` over the window, in float64 (the last running sum when the train carries it). Shape: [T, ...] -> [...]."""
    known = getattr(x, "_running_sum", None)
    if known is not None and known.shape == x.shape:
        return known[-1]
    return x.sum(0, dtype=DTYPE)


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
        codes = quantize_codes(window_sum(x), self.step, self.timesteps)  # [..., C]
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
    """Accumulate-only synapse: ``Y_t = W S_t`` (+ ``b`` at the first step). Shape: [T, ..., in] -> [T, ..., out]."""

    step_mode = "m"

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        rows = s.reshape(-1, s.shape[-1])                                   # [T*..., in]: time folded into rows
        if bool(self.float32_exact):
            w32 = getattr(self, "_w32", None)
            if w32 is None or w32[0] is not self.weight or w32[1] != self.weight._version:
                self._w32 = w32 = (self.weight, self.weight._version, self.weight.t().to(torch.float32).contiguous())
            y = (rows.to(torch.float32) @ w32[2]).to(DTYPE)
        else:
            y = rows.to(DTYPE) @ self.weight.t()
        y = y.reshape(*s.shape[:-1], -1)                                    # [T, ..., out]
        if self.bias is not None:
            y[0] += self.bias
        return y


class QuantMatMul(nn.Module):
    """Product of two quantized tensors ``a @ b``. Shape: [..., n, k], [..., k, m] -> [..., n, m]."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class SpikingMatMul(QuantMatMul):
    """Running-sum product of two spike trains: ``O_t = bar A_t bar B_t - bar A_{t-1} bar B_{t-1}``.

    Shape: [T, ..., n, k], [T, ..., k, m] -> [T, ..., n, m].
    """

    step_mode = "m"

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self._forward_hooks:  # an operation counter is attached: it reads both inputs
            self._observed_b = b
        return step_difference(torch.matmul(running_sum(a), running_sum(b)))


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

    def forward(self, *xs, **static):
        if self._forward_hooks and len(xs) > 1:
            self._observed_b = xs[1]
        return step_difference(self.evaluate(*(running_sum(x) for x in xs), **static))


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


class SpikingSoftmax(AccDiff, QuantSoftmax):
    """Accumulated-difference softmax (mask static). Shape: [T, ..., S] -> [T, ..., S]."""


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
