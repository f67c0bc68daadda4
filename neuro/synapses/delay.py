r"""Learnable per-synapse delays: trained densely (DCLS style), run event-driven.

Every synapse :math:`(o, i)` has a weight :math:`w_{oi}` and a delay position :math:`p_{oi} \in [0, D]`
(``max_delay`` :math:`D`, in time steps; :math:`L = D + 1` taps). The output is

.. math::
    y_o[t] = b_o + \sum_i \sum_{d=0}^{D} K_{oi}[d]\, x_i[t - d]

**Training** (REFERENCE §2, DCLS; Hammouamri, Khalfaoui-Hassani & Masquelier, ICLR 2024): each
synapse is a Gaussian-interpolated tap over the delay axis,

.. math::
    K_{oi}[d] = w_{oi}\, \frac{\exp(-\tfrac12 ((d - p_{oi}) / \sigma)^2)}
                              {\sum_{d'} \exp(-\tfrac12 ((d' - p_{oi}) / \sigma)^2)}

so that the loss is differentiable in :math:`p_{oi}`. This is the reference's kernel with the
delay axis flipped (:math:`d = L - 1 - k`) and the position measured from delay 0
(:math:`p = D - (P + \lfloor L/2 \rfloor)`). :math:`\sigma` follows :class:`SigmaSchedule`: it
starts at :math:`L/2` and shrinks geometrically each epoch to 0.5 over the first quarter of
training; the last fifth of the epochs then runs with a single tap at the rounded position
(:math:`\sigma = 0`, this package's addition, so that the weights adapt to the integer delays kept
for inference and rounding costs no accuracy). Positions are clamped to :math:`[0, D]` after each optimiser step
(:meth:`DelayLinear.clamp_positions`) and get their own optimiser group
(:meth:`DelayLinear.position_parameters`; DCLS uses 100x the weights' learning rate). The sum over
time is one dense temporal convolution (:func:`delay_conv`). :math:`\sigma = 0` means one tap at the
rounded position, which is the layer after :meth:`DelayLinear.finalize`.

**Inference** after :meth:`DelayLinear.finalize` (positions rounded to integers
:math:`d_{oi}`, one tap each) is event-driven (:func:`delay_event_step`): a ring buffer
:math:`R` of :math:`L` slots ``[L, B, out]`` holds the input that will arrive at the next :math:`L`
steps. A nonzero input :math:`x_i[t]` adds :math:`w_{oi} x_i[t]` to slot :math:`(t + d_{oi}) \bmod L`
for every :math:`o`; the output of step :math:`t` is slot :math:`t \bmod L` (then cleared). The work
per step is proportional to the number of active inputs times ``out``, never to :math:`L` or to
silent inputs. It equals :func:`delay_conv` with :math:`\sigma = 0` (tested exactly in float64).

Hardware and the IR: :meth:`DelayLinear.delays` gives the integer delay of every synapse
(int64 ``[out, in]``); :func:`delay_projections` turns a layer into IR
:class:`~neuro.ir.graph.Projection` edges, one per distinct delay value (each with its
``delay_steps``), so that exporters read each synapse's delay with the IR as it is;
:func:`check_delay_limit` compares the largest delay with a target's documented limit
(:data:`DELAY_LIMITS`) and raises :class:`~neuro.core.errors.HardwareLimitError`.

Shape: 'm' mode x [T, B, in] -> [T, B, out]; 's' mode (event-driven, after ``finalize``) x [B, in] -> [B, out].
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import HardwareLimitError, ParameterError, ShapeError, StepModeError
from ..core.loop import StatefulModule, check_dtype
from ..io import savable
from .kernels import get_kernels
from .linear import check_finite, dtype_from_name, dtype_name, reject_unknown

# Largest integer delay (time steps) each target holds natively, with its source. The
# hardware-target issues map a delay d to the target's own offset (e.g. Lava adds one step).
DELAY_LIMITS = {
    "loihi2": (62, "Lava DelayDense/DelaySparse: 6-bit delay d <= 62, spike at t arrives at t + 1 + d (REFERENCE §5)"),
    "spinnaker": (16, "sPyNNaker: 4-bit delay field, 16 native ticks without delay extensions (REFERENCE §6)"),
    "spinnaker2": (7, "py-spinnaker2 LIF: delays 0..7, hardware adds 1 (REFERENCE §6)"),
}


def _check_int(owner: str, name: str, v, lo: int = 0) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise ParameterError(owner, name, v, f"an integer >= {lo}")
    return v


# ------------------------------------------------------------------------------------ sigma
@dataclass(frozen=True)
class SigmaSchedule:
    r"""Width of the Gaussian taps per epoch :math:`e` of :math:`E`.

    .. math:: \sigma_e = \max(\sigma_1, \sigma_0 (\sigma_1/\sigma_0)^{e / (f E)}) \quad (e < (1 - h) E),
              \qquad \sigma_e = 0 \quad (e \ge (1 - h) E)

    from ``start`` :math:`\sigma_0` (default :math:`L/2`) to ``end`` :math:`\sigma_1` (0.5) over the
    first ``fraction`` :math:`f` (1/4) of training (DCLS, REFERENCE §2), then held; the last
    ``hard_fraction`` :math:`h` of the epochs (default 0.2; at least one epoch when :math:`h > 0` and :math:`E > 1`)
    run with a single tap at the rounded position (:math:`\sigma = 0`), so that the weights adapt to
    the integer delays that :meth:`DelayLinear.finalize` keeps for inference.
    """

    max_delay: int
    epochs: int
    start: Optional[float] = None
    end: float = 0.5
    fraction: float = 0.25
    hard_fraction: float = 0.2

    def __post_init__(self):
        _check_int("SigmaSchedule", "max_delay", self.max_delay, 0)
        _check_int("SigmaSchedule", "epochs", self.epochs, 1)
        if not (isinstance(self.end, (int, float)) and self.end > 0):
            raise ParameterError("SigmaSchedule", "end", self.end, "a number > 0")
        if self.start is not None and not (isinstance(self.start, (int, float)) and self.start >= self.end):
            raise ParameterError("SigmaSchedule", "start", self.start, f"a number >= end={self.end}")
        if not (isinstance(self.fraction, (int, float)) and 0 < self.fraction <= 1):
            raise ParameterError("SigmaSchedule", "fraction", self.fraction, "in (0, 1]")
        if not (isinstance(self.hard_fraction, (int, float)) and 0 <= self.hard_fraction < 1):
            raise ParameterError("SigmaSchedule", "hard_fraction", self.hard_fraction, "in [0, 1)")

    @property
    def hard_from(self) -> int:
        """First epoch with a single tap (sigma 0); ``epochs`` when there is none."""
        if self.hard_fraction == 0:
            return self.epochs
        return min(self.epochs - 1, int(math.floor((1 - self.hard_fraction) * self.epochs))) if self.epochs > 1 \
            else self.epochs

    def __call__(self, epoch: int) -> float:
        if epoch >= self.hard_from:
            return 0.0
        s0 = self.start if self.start is not None else max((self.max_delay + 1) / 2, self.end)
        span = max(self.fraction * self.epochs, 1e-9)
        return float(max(self.end, s0 * (self.end / s0) ** min(epoch / span, 1.0)))


# ------------------------------------------------------------------------------------ pure functions
def gaussian_taps(positions: torch.Tensor, max_delay: int, sigma: float) -> torch.Tensor:
    r"""Normalised Gaussian tap weights over delays 0..D; ``sigma = 0``: one-hot at ``round(p)``.

    Shape: positions [out, in] -> [out, in, D + 1].
    """
    d = torch.arange(max_delay + 1, dtype=positions.dtype, device=positions.device)  # [L]
    if sigma == 0:
        return (d == positions.detach().round().unsqueeze(-1)).to(positions.dtype)
    g = torch.exp(-0.5 * ((d - positions.unsqueeze(-1)) / sigma) ** 2)  # [out, in, L]
    return g / g.sum(-1, keepdim=True)


def delay_kernel(weight: torch.Tensor, positions: torch.Tensor, max_delay: int, sigma: float) -> torch.Tensor:
    """K[o, i, d] = w[o, i] * taps[o, i, d]. Shape: [out, in] x2 -> [out, in, D + 1]."""
    return weight.unsqueeze(-1) * gaussian_taps(positions, max_delay, sigma)


def delay_conv(x: torch.Tensor, kernel: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""Dense temporal convolution :math:`y_o[t] = b_o + \sum_{i,d} K_{oi}[d] x_i[t-d]` (zero before t=0).

    This is how DCLS runs both in training and at inference. Shape: x [T, B, in], kernel [out, in, L]
    -> [T, B, out].
    """
    T, B, _ = x.shape
    L = kernel.shape[-1]
    xc = F.pad(x.permute(1, 2, 0), (L - 1, 0))   # [B, in, T + L - 1]
    y = F.conv1d(xc, kernel.flip(-1), bias)      # [B, out, T]; tap k of the flipped kernel = delay L-1-k
    return y.permute(2, 0, 1)                     # [T, B, out]


class RingState(NamedTuple):
    buffer: torch.Tensor  # [B, 2L, out]: input arriving at the next L steps (see delay_event_step)
    t: int                # the index of the next step


class EventPlan(NamedTuple):
    """The layer as a CSR matrix by input over the expanded (delay, output) axis, built once per layer.

    Row ``i`` holds input i's synapses: column ``d[o, i] * out + o``, value ``w[o, i]``.
    """
    indptr: torch.Tensor    # int64 [in + 1]
    columns: torch.Tensor   # int64 [in * out]
    values: torch.Tensor    # [in * out]
    taps: int               # L = max_delay + 1
    bias: Optional[torch.Tensor]
    kernels: object         # the event kernel set (neuro.synapses.kernels)


def init_ring(batch: int, out_features: int, max_delay: int, dtype=torch.float32, device=None) -> RingState:
    return RingState(torch.zeros(batch, 2 * (max_delay + 1), out_features, dtype=dtype, device=device), 0)


def event_plan(weight: torch.Tensor, delays: torch.Tensor, max_delay: int, bias: Optional[torch.Tensor] = None,
               kernels: Optional[str] = None) -> EventPlan:
    """Shape: weight [out, in], delays int64 [out, in] -> EventPlan."""
    N, K = weight.shape
    indptr = torch.arange(0, (K + 1) * N, N, dtype=torch.int64)                      # [in + 1]
    columns = (delays.t().to(torch.int64) * N + torch.arange(N)).reshape(-1).contiguous()  # [in * out]
    values = weight.detach().t().reshape(-1).contiguous()                            # [in * out]
    return EventPlan(indptr, columns, values, max_delay + 1, None if bias is None else bias.detach(),
                     get_kernels(kernels))


def delay_event_steps(x: torch.Tensor, state: RingState, plan: EventPlan):
    r"""Event-driven steps: scatter active inputs into their arrival slots, read each step's slot.

    The active inputs of the C given steps are scattered in one call through the layer's CSR rows
    (only the rows of nonzero inputs are read; work ~ active inputs x out) into arrival blocks
    ``[C, B, L, out]`` (block column d = arrival d steps later). Step by step, a block is added to
    the ring at slot :math:`t \bmod L` and the step's slot is read. An event of step c only reaches
    steps >= c, so scattering C steps ahead is exact. The ring has :math:`2L` slots so that no
    modulo is needed per synapse: an event of step :math:`t` with delay :math:`d` lands in slot
    :math:`(t \bmod L) + d`; step :math:`\tau` reads (and clears) slots :math:`\tau \bmod L` and
    :math:`(\tau \bmod L) + L`. Pending arrivals lie within L consecutive steps, so the two slots
    never hold different steps.

    A kernel set with ``delay_ring_steps`` (the compiled ``'native'`` one) fuses the two: each event
    is added straight into its ring slot, so a step costs active inputs x fan-out plus one read of
    ``out`` values, and no block of L x out is ever written.

    Shape: x [C, B, in], buffer [B, 2L, out] -> y [C, B, out]. Returns (y, new state); the buffer
    is updated in place. Inference only (no gradient).
    """
    buf, t = state
    C, B, _ = x.shape
    N = buf.shape[2]
    L = plan.taps
    fused = getattr(plan.kernels, "delay_ring_steps", None)    # a kernel set may fuse scatter and ring
    y = None if fused is None or buf.device.type != "cpu" else fused(
        x.to(plan.values.dtype), buf, t % L, plan.indptr, plan.columns, plan.values)
    if y is not None:
        if plan.bias is not None:
            y += plan.bias
        return y, RingState(buf, t + C)
    z = plan.kernels.csr_matmul(x.reshape(C * B, -1).to(plan.values.dtype), plan.indptr, plan.columns,
                                plan.values, L * N).view(C, B, L, N)            # arrival blocks
    y = torch.empty(C, B, N, dtype=buf.dtype, device=buf.device)
    if buf.device.type == "cpu" and not buf.requires_grad:
        # The per-step ring bookkeeping is small; numpy runs it on the calling thread, so it never
        # wakes a thread pool between two event scatters.
        bn, zn, yn = buf.numpy(), z.numpy(), y.numpy()
        for c in range(C):
            s = (t + c) % L
            bn[:, s:s + L] += zn[c]                                            # arrivals at t+c .. t+c+L-1
            np.add(bn[:, s], bn[:, s + L], out=yn[c])                          # [B, out]
            bn[:, s] = 0
            bn[:, s + L] = 0
    else:
        for c in range(C):
            s = (t + c) % L
            buf[:, s:s + L] += z[c]
            torch.add(buf[:, s], buf[:, s + L], out=y[c])
            buf[:, s].zero_()
            buf[:, s + L].zero_()
    if plan.bias is not None:
        y += plan.bias
    return y, RingState(buf, t + C)


def delay_event_step(x: torch.Tensor, state: RingState, plan: EventPlan):
    """One event-driven step (:func:`delay_event_steps` with C = 1). Shape: x [B, in] -> y [B, out]."""
    y, state = delay_event_steps(x.unsqueeze(0), state, plan)
    return y[0], state


def check_delays(owner: str, delays, max_delay: int) -> torch.Tensor:
    """Integer delays in [0, max_delay] as int64; ParameterError naming ``delays`` otherwise."""
    _check_int(owner, "max_delay", max_delay, 0)
    d = torch.as_tensor(delays)
    if d.is_floating_point():
        if not bool(torch.isfinite(d).all()):
            raise ParameterError(owner, "delays", d[~torch.isfinite(d)].flatten()[0].item(), "finite integers")
        frac = d != d.round()
        if bool(frac.any()):
            raise ParameterError(owner, "delays", d[frac].flatten()[0].item(), "integers (whole time steps)")
    elif d.dtype == torch.bool or d.is_complex():
        raise ParameterError(owner, "delays", str(d.dtype), "an integer tensor")
    d = d.to(torch.int64)
    if d.numel() and int(d.min()) < 0:
        raise ParameterError(owner, "delays", int(d.min()), "integers >= 0")
    if d.numel() and int(d.max()) > max_delay:
        raise ParameterError(owner, "delays", int(d.max()), f"integers <= max_delay={max_delay}")
    return d


# ------------------------------------------------------------------------------------ module
@savable("DelayLinear")
class DelayLinear(StatefulModule):
    r"""Fully connected synapse with one learnable delay per synapse.

    Args:
        in_features, out_features: sizes.
        max_delay: largest delay D in time steps (D + 1 taps).
        bias: learnable bias.
        sigma: width of the Gaussian taps in training (set it each epoch from a :class:`SigmaSchedule`);
            default (D + 1) / 2.
        step_mode: 'm' (sequences [T, B, in], dense in training, event-driven after finalize) or 's'
            (one step [B, in], event-driven ring buffer; needs :meth:`finalize`).
        init_delays: 'uniform' (positions uniform in [0, D]), 'zero', or 'random_int' (uniform integers).

    Parameters: ``weight`` [out, in], ``positions`` [out, in] (float, in [0, D]), ``bias`` [out].
    Give positions their own learning rate::

        opt = torch.optim.Adam([{"params": layer.weight_parameters(), "lr": 1e-3},
                                {"params": layer.position_parameters(), "lr": 1e-1}])

    Examples:
        >>> layer = DelayLinear(16, 4, max_delay=9)
        >>> y = layer(torch.rand(30, 8, 16))          # [30, 8, 4], Gaussian taps (training)
        >>> layer.finalize(); layer.delays()           # int64 [4, 16]
        >>> with torch.no_grad():                      # finalized + no gradient: event-driven ring buffer
        ...     y = layer((torch.rand(30, 8, 16) < 0.05).float())

    In step mode 'm' a finalized layer runs event-driven when no gradient is recorded and as the
    one-tap dense convolution otherwise (so its weights can still be fine-tuned). The ring buffer
    reads the weights and delays when it starts (after :meth:`reset`; every 'm' call starts anew).
    """

    def __init__(self, in_features: int, out_features: int, max_delay: int, bias: bool = False,
                 sigma: Optional[float] = None, step_mode: str = "m", init_delays: str = "uniform",
                 dtype: torch.dtype | None = None):
        super().__init__(step_mode)
        _check_int("DelayLinear", "in_features", in_features, 1)
        _check_int("DelayLinear", "out_features", out_features, 1)
        _check_int("DelayLinear", "max_delay", max_delay, 0)
        if init_delays not in ("uniform", "zero", "random_int"):
            raise ParameterError("DelayLinear", "init_delays", init_delays, "'uniform', 'zero' or 'random_int'")
        self.in_features, self.out_features, self.max_delay = in_features, out_features, max_delay
        self.sigma = float((max_delay + 1) / 2) if sigma is None else sigma
        self.finalized = False
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=dtype))
        self.positions = nn.Parameter(torch.empty(out_features, in_features, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(out_features, dtype=dtype)) if bias else None
        self.init_delays = init_delays
        self.reset_parameters()

    # -- properties with validation --------------------------------------------------------------
    @property
    def sigma(self) -> float:
        return self._sigma

    @sigma.setter
    def sigma(self, value) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise ParameterError("DelayLinear", "sigma", value, "a finite number >= 0")
        self._sigma = float(value)

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            nn.init.uniform_(self.bias, -1 / math.sqrt(self.in_features), 1 / math.sqrt(self.in_features))
        with torch.no_grad():
            if self.init_delays == "zero":
                self.positions.zero_()
            elif self.init_delays == "random_int":
                self.positions.copy_(torch.randint(0, self.max_delay + 1, self.positions.shape))
            else:
                self.positions.uniform_(0, self.max_delay)
        self.finalized = False

    @classmethod
    def from_delays(cls, weight, delays, max_delay: int, bias=None, **kw) -> "DelayLinear":
        """An inference layer (already finalized) from weights [out, in] and integer delays [out, in]."""
        weight = torch.as_tensor(weight)
        if weight.dim() != 2:
            raise ShapeError("DelayLinear.from_delays", f"weight must be 2-D [out, in], got {tuple(weight.shape)}")
        check_finite("DelayLinear", "weight", weight)
        d = check_delays("DelayLinear", delays, max_delay)
        if d.shape != weight.shape:
            raise ShapeError("DelayLinear.from_delays", f"delays shape {tuple(d.shape)} != weight shape {tuple(weight.shape)}")
        layer = cls(weight.shape[1], weight.shape[0], max_delay, bias=bias is not None,
                    dtype=weight.dtype if weight.is_floating_point() else None, **kw)
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.positions.copy_(d)
            if bias is not None:
                layer.bias.copy_(torch.as_tensor(bias))
        layer.finalized = True
        return layer

    # -- parameter groups ------------------------------------------------------------------------
    def position_parameters(self) -> list:
        """The delay positions (their own optimiser group; DCLS uses 100x the weights' learning rate)."""
        return [self.positions]

    def weight_parameters(self) -> list:
        """Weights and bias."""
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    @torch.no_grad()
    def clamp_positions(self) -> None:
        """Clamp positions to [0, max_delay]; call after every optimiser step."""
        self.positions.clamp_(0, self.max_delay)

    @torch.no_grad()
    def finalize(self) -> "DelayLinear":
        """Round positions to integer delays (clamped); from now on one tap each and event-driven inference."""
        self.positions.clamp_(0, self.max_delay).round_()
        self.positions.requires_grad_(False)
        self.finalized = True
        self.sigma = 0.0
        self.reset()
        return self

    def delays(self) -> torch.Tensor:
        """Integer delay of every synapse, int64 [out, in]. Needs :meth:`finalize` (or integer positions)."""
        return check_delays("DelayLinear", self.positions.detach(), self.max_delay)

    def kernel(self, sigma: Optional[float] = None) -> torch.Tensor:
        """The dense kernel [out, in, D + 1] at ``sigma`` (default: the layer's; 0 once finalized)."""
        s = 0.0 if self.finalized else (self.sigma if sigma is None else sigma)  # 0: one tap, no position gradient
        return delay_kernel(self.weight, self.positions, self.max_delay, s)

    # -- state (the ring buffer of 's' mode; reset() and neuro.core.reset_net forget it) ------------
    def detach(self) -> None:
        if self.state is not None:
            self.state = RingState(self.state.buffer.detach(), self.state.t)

    # -- calls ---------------------------------------------------------------------------------------
    def _check_input(self, x: torch.Tensor, rank: int) -> None:
        check_dtype("DelayLinear", x)
        if x.dim() != rank:
            want = "[T, B, in]" if rank == 3 else "[B, in]"
            raise StepModeError(f"DelayLinear: step mode {self.step_mode!r} expects {want}, got {tuple(x.shape)}")
        if x.shape[-1] != self.in_features:
            raise ShapeError("DelayLinear", f"input has {x.shape[-1]} features, layer expects {self.in_features}")

    def dense(self, x: torch.Tensor, sigma: Optional[float] = None) -> torch.Tensor:
        """Training-mode forward (dense temporal convolution). Shape: [T, B, in] -> [T, B, out]."""
        self._check_input(x, 3)
        return delay_conv(x, self.kernel(sigma), self.bias)

    def _start(self, x: torch.Tensor) -> None:
        """A fresh ring buffer for batch x [B, in], and the event plan from the current weights and delays."""
        if not self.finalized:
            raise StepModeError("DelayLinear: event-driven inference needs integer delays; call finalize() first")
        self.state = init_ring(x.shape[0], self.out_features, self.max_delay, self.weight.dtype, x.device)
        self._plan = event_plan(self.weight, self.delays(), self.max_delay, self.bias)

    def event_step(self, x: torch.Tensor) -> torch.Tensor:
        """Event-driven single step with the kept ring buffer. Shape: [B, in] -> [B, out]."""
        self._check_input(x, 2)
        if self.state is None:
            self._start(x)
        elif self.state.buffer.shape[0] != x.shape[0]:
            raise StepModeError(f"DelayLinear: batch {x.shape[0]} differs from the kept ring buffer's "
                                f"{self.state.buffer.shape[0]}; call reset() between sequences")
        y, self.state = delay_event_step(x, self.state, self._plan)
        return y

    def events(self, x: torch.Tensor, chunk: int = 8) -> torch.Tensor:
        """Event-driven forward over a sequence (from a fresh buffer), scattering ``chunk`` steps per
        kernel call. Shape: [T, B, in] -> [T, B, out]."""
        self._check_input(x, 3)
        _check_int("DelayLinear.events", "chunk", chunk, 1)
        self.reset()
        self._start(x[0])
        outs = []
        for x_c in x.split(chunk, 0):
            y, self.state = delay_event_steps(x_c, self.state, self._plan)
            outs.append(y)
        return torch.cat(outs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._step_mode == "s":
            return self.event_step(x)
        if self.finalized and not torch.is_grad_enabled():
            return self.events(x)
        return self.dense(x)

    # -- saving (the neuro.io protocol) ----------------------------------------------------------
    def get_config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "max_delay": self.max_delay,
                "bias": self.bias is not None, "sigma": self.sigma, "step_mode": self.step_mode,
                "finalized": self.finalized, "dtype": dtype_name(self.weight.dtype)}

    @classmethod
    def from_config(cls, config: dict) -> "DelayLinear":
        c = dict(config)
        dtype = dtype_from_name("DelayLinear", c.pop("dtype", "float32"))
        finalized = c.pop("finalized", False)
        layer = cls(c.pop("in_features"), c.pop("out_features"), c.pop("max_delay"), bias=c.pop("bias", False),
                    sigma=c.pop("sigma", None), step_mode=c.pop("step_mode", "m"), dtype=dtype,
                    **reject_unknown("DelayLinear", c))
        if not isinstance(finalized, bool):
            raise ParameterError("DelayLinear", "finalized", finalized, "True or False")
        layer.finalized = finalized
        return layer

    def check_loaded(self) -> None:
        """Positions inside [0, max_delay] (integers once finalized); ParameterError naming ``positions``."""
        p = self.positions.detach()
        bad = (p < 0) | (p > self.max_delay)
        if bool(bad.any()):
            raise ParameterError("DelayLinear", "positions", p[bad].flatten()[0].item(),
                                 f"in [0, max_delay={self.max_delay}]")
        if self.finalized:
            frac = p != p.round()
            if bool(frac.any()):
                raise ParameterError("DelayLinear", "positions", p[frac].flatten()[0].item(),
                                     "integers in a finalized layer")
            self.positions.requires_grad_(False)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, max_delay={self.max_delay}, "
                f"bias={self.bias is not None}, sigma={self.sigma:g}, finalized={self.finalized}, "
                f"step_mode={self.step_mode!r}")


# ------------------------------------------------------------------------------------ hardware, IR
def _delay_layers(model: nn.Module) -> list:
    if isinstance(model, DelayLinear):
        return [("", model)]
    return [(n, m) for n, m in model.named_modules() if isinstance(m, DelayLinear)]


def check_delay_limit(model, target: str) -> None:
    """Raise :class:`HardwareLimitError` if a delay exceeds ``target``'s limit (:data:`DELAY_LIMITS`).

    ``model``: a :class:`DelayLinear`, a module holding some, or an integer tensor of delays.
    Checks the layer's ``max_delay`` (what the target must provision) and, once finalized, its delays.
    """
    if target not in DELAY_LIMITS:
        raise ParameterError("check_delay_limit", "target", target, "one of " + ", ".join(sorted(DELAY_LIMITS)))
    limit, source = DELAY_LIMITS[target]
    rows = []
    if isinstance(model, torch.Tensor):
        d = check_delays("check_delay_limit", model, int(model.max()) if model.numel() else 0)
        layers = [("delays", int(d.max()) if d.numel() else 0)]
    else:
        layers = [(name or "layer", m.max_delay) for name, m in _delay_layers(model)]
    for name, used in layers:
        if used > limit:
            rows.append({"layer": name, "max_delay": used, "limit": limit, "source": source})
    if rows:
        raise HardwareLimitError(target, rows)


def delay_projections(layer: DelayLinear, pre: str, post: str, name: str = "") -> list:
    """IR edges of a finalized layer; lives in :func:`neuro.ir.trace.delay_projections` (kept here for compatibility)."""
    from ..ir.trace import delay_projections as build

    return build(layer, pre, post, name)


__all__ = ["DELAY_LIMITS", "DelayLinear", "EventPlan", "RingState", "SigmaSchedule", "check_delay_limit", "check_delays",
           "delay_conv", "delay_event_step", "delay_event_steps", "delay_kernel", "event_plan", "delay_projections", "gaussian_taps", "init_ring"]
