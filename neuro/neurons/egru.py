r"""Event-based gated recurrent unit (EGRU).

A GRU whose units communicate only when their internal state crosses a per-unit threshold. With
gates ordered (u, r, z) and the previous step's graded events :math:`y_{t-1}`:

.. math::
    u_t = \sigma(W_u x_t + R_u y_{t-1} + b_u)                          \quad\text{(update gate)}

    r_t = \sigma(W_r x_t + R_r y_{t-1} + b_r)                          \quad\text{(reset gate)}

    z_t = \tanh(W_z x_t + b_x + r_t \odot (R_z y_{t-1} + b_{rz}))

    c_t = u_t \odot c_{t-1} + (1 - u_t) \odot z_t

    o_t = H(c_t - \theta), \quad H(0) = 0

    y_t = o_t \odot c_t                                                \quad\text{(graded event)}

    c_t \leftarrow c_t - o_t \odot \theta                              \quad\text{(subtractive reset)}

The recurrence sees :math:`y`, never :math:`c`: a unit that emits no event costs its receivers
nothing. The backward pass replaces :math:`\partial H/\partial c` by the pseudo-derivative
:math:`\gamma \max(0, 1 - \epsilon |c - \theta|)` (damping ``gamma``, support ``1/eps``), the
:class:`~neuro.core.surrogate.Triangle` surrogate. The thresholds :math:`\theta` are learnable, one
per unit, initialised from :math:`\mathrm{Beta}(\alpha, 3)` with :math:`\alpha = 3m/(1-m)` (mean
``m = thr_mean``) and clamped to :math:`[0, 1]` in every step.

Optional output trace (``trace_decay = a``): :math:`\mathrm{tr}_t = a\,\mathrm{tr}_{t-1} + (1 - a)\,y_t`,
a low-pass of the unit's own events that a receiver can rebuild from the events alone (so reading
it out keeps the communication event-based).

**Event-driven inference.** ``propagation='event'`` computes :math:`R y_{t-1}` from the columns of
:math:`R` whose unit emitted an event in the step (any batch row), and :math:`W x_t` from the
columns of active inputs when the input's density is below ``input_density`` (a dense input takes
the dense product). Same numbers as ``propagation='dense'`` up to summation order.

Statistics per layer (:attr:`EGRUCell.stats`): forward activity sparsity :math:`1 - \overline{o}` and
backward sparsity, the fraction of unit-steps with :math:`|c - \theta| > 1/\epsilon` (zero
pseudo-derivative, so no gradient flows through that unit's event function).

Shapes: input x [B, I] ('s') or [T, B, I] ('m'); state c, y, tr [B, H].

Sources: REFERENCE §1; Subramoney, Nazeer, Schöne, Mayr, Kappel, "Efficient recurrent architectures
through activity sparsity and sparse back-propagation through time", ICLR 2023 (EvNN code);
Bellec et al. 2018 for the triangular pseudo-derivative.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, Sequence

import torch
from torch import nn

from ..core.errors import ParameterError, ShapeError, StepModeError
from ..core.loop import StatefulModule, check_dtype
from ..core.params import Params, optional, param, positive, record
from ..core.surrogate import Triangle, spike
from ..io import savable


def _open_unit(v):
    return None if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1 else "in (0, 1)"


def _decay(v):
    return None if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1 else "in [0, 1)"


@record
class EGRUParams(Params):
    gamma: float = param(0.7, positive, doc="damping: peak of the pseudo-derivative")
    eps: float = param(1.0, positive, doc="inverse half-width of the pseudo-derivative's support")
    thr_mean: float = param(0.3, _open_unit, doc="mean m of the Beta(3m/(1-m), 3) threshold initialisation")
    trace_decay: Optional[float] = param(None, optional(_decay), doc="output-trace decay a; None = no trace")

    @property
    def surrogate(self) -> Triangle:
        return Triangle(gamma=self.gamma, eps=self.eps)


class EGRUState(NamedTuple):
    c: torch.Tensor   # [B, H] internal (cell) state after the reset
    y: torch.Tensor   # [B, H] graded events of the last step
    tr: torch.Tensor  # [B, H] output trace (zeros without a trace)


class EGRUWeights(NamedTuple):
    w_ih: torch.Tensor  # [3H, I] input weights (u, r, z)
    w_hh: torch.Tensor  # [3H, H] recurrent weights (u, r, z)
    b_ih: torch.Tensor  # [3H]    b_u, b_r, b_x
    b_rz: torch.Tensor  # [H]     bias inside the reset gate's product
    theta: torch.Tensor  # [H]    thresholds (clamped to [0, 1] by the step)


# -- propagation strategies: x [B, K] @ w[:, K]^T ---------------------------------------------------
def dense_matmul(x: torch.Tensor, w: torch.Tensor, density: float = 1.0) -> torch.Tensor:
    """``x @ w.T``. Shape: x [B, K], w [N, K] -> [B, N]."""
    return x @ w.t()


def event_matmul(x: torch.Tensor, w: torch.Tensor, density: float = 1.0) -> torch.Tensor:
    """``x @ w.T`` touching only the columns of ``w`` whose input is nonzero in some row of ``x``.

    Falls back to the dense product when more than ``density`` of the columns are active.
    Shape: x [B, K], w [N, K] -> [B, N].
    """
    active = (x != 0).any(0)                                   # [K]
    k = int(active.sum())
    if k > density * x.shape[1]:
        return x @ w.t()
    if k == 0:
        return x.new_zeros(x.shape[0], w.shape[0])
    idx = active.nonzero().squeeze(1)                          # [k]
    return x.index_select(1, idx) @ w.index_select(1, idx).t()  # [B, k] @ [k, N]


PROPAGATIONS: dict[str, Callable] = {"dense": dense_matmul, "event": event_matmul}


def egru_cell(gx: torch.Tensor, state: EGRUState, w_hh: torch.Tensor, b_rz: torch.Tensor,
              theta: torch.Tensor, p: EGRUParams, matmul: Callable = dense_matmul):
    """One EGRU step from the projected input ``gx = W x + b`` [B, 3H]. Returns (y or (y, tr), state)."""
    H = state.c.shape[-1]
    gh = matmul(state.y, w_hh)                                  # [B, 3H] recurrence on events only
    u = torch.sigmoid(gx[:, :H] + gh[:, :H])                    # [B, H]
    r = torch.sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])          # [B, H]
    z = torch.tanh(gx[:, 2 * H:] + r * (gh[:, 2 * H:] + b_rz))  # [B, H]
    c = u * state.c + (1 - u) * z                               # [B, H]
    th = theta.clamp(0.0, 1.0)                                  # [H]
    o = spike(c - th, p.surrogate, strict=True)                 # [B, H], H(0) = 0
    y = o * c                                                   # [B, H] graded events
    c = c - o * th                                              # subtractive reset
    if p.trace_decay is None:
        return y, EGRUState(c, y, state.tr)
    tr = p.trace_decay * state.tr + (1 - p.trace_decay) * y
    return (y, tr), EGRUState(c, y, tr)


def egru_step(x: torch.Tensor, state: EGRUState, w: EGRUWeights, p: EGRUParams,
              matmul: Callable = dense_matmul, input_matmul: Callable = dense_matmul):
    """One EGRU step. Shape: x [B, I] -> y [B, H] (and the trace [B, H] when ``p.trace_decay`` is set)."""
    gx = input_matmul(x, w.w_ih) + w.b_ih                       # [B, 3H]
    return egru_cell(gx, state, w.w_hh, w.b_rz, w.theta, p, matmul)


def beta_thresholds(n: int, m: float = 0.3) -> torch.Tensor:
    """``n`` thresholds from Beta(3m/(1-m), 3) (global torch generator), clamped to [0, 1]. Shape: [n]."""
    alpha = 3 * m / (1 - m)
    s = torch.distributions.Beta(torch.tensor(alpha), torch.tensor(3.0)).sample((n,))
    return s.clamp(0.0, 1.0)


@dataclass
class EGRUStats:
    """Counts behind the sparsity figures of one layer (unit-steps)."""

    events: int = 0
    outside_support: int = 0
    total: int = 0

    @property
    def activity_sparsity(self) -> float:
        """1 - fraction of unit-steps with an event (forward sparsity)."""
        return 1.0 - self.events / self.total if self.total else float("nan")

    @property
    def backward_sparsity(self) -> float:
        """Fraction of unit-steps with |c - theta| > 1/eps (zero pseudo-derivative)."""
        return self.outside_support / self.total if self.total else float("nan")

    def as_dict(self) -> dict:
        return {"activity_sparsity": self.activity_sparsity, "backward_sparsity": self.backward_sparsity,
                "unit_steps": self.total}


def _check_thresholds(owner: str, theta: torch.Tensor) -> None:
    t = theta.detach()
    if not torch.isfinite(t).all() or (t < 0).any() or (t > 1).any():
        bad = t[~(torch.isfinite(t) & (t >= 0) & (t <= 1))][0].item()
        raise ParameterError(owner, "thresholds", bad, "in [0, 1] for every unit")


@savable("EGRUCell")
class EGRUCell(StatefulModule):
    """One EGRU layer (see the module docstring).

    Args: input_size, hidden_size, params (:class:`EGRUParams`, or its fields as keywords),
    thresholds (float or [H] tensor in [0, 1]; default: Beta draw), propagation ('dense' or 'event'),
    input_density (the event path's input product goes column-wise below this density), step_mode.

    Shape: 's' [B, I] -> [B, H]; 'm' [T, B, I] -> [T, B, H]. With a trace, a tuple (y, tr).

    Examples:
        >>> cell = EGRUCell(16, 32, step_mode="m")
        >>> y = cell(torch.randn(10, 4, 16))          # [10, 4, 32] graded events
        >>> cell.stats.activity_sparsity               # doctest: +SKIP
    """

    def __init__(self, input_size: int, hidden_size: int, params: Optional[EGRUParams] = None,
                 thresholds=None, propagation: str = "dense", input_density: float = 0.3,
                 step_mode: str = "s", **fields):
        super().__init__(step_mode)
        register_energy_rules()
        name = type(self).__name__
        for f, v in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ParameterError(name, f, v, "an integer >= 1")
        params = params if params is not None else EGRUParams()
        if not isinstance(params, EGRUParams):
            raise ParameterError(name, "params", params, "an EGRUParams")
        self.params = params.replace(**fields) if fields else params
        self.input_size, self.hidden_size = input_size, hidden_size
        self.propagation = propagation
        if not (isinstance(input_density, (int, float)) and 0 <= input_density <= 1):
            raise ParameterError(name, "input_density", input_density, "in [0, 1]")
        self.input_density = float(input_density)
        H = hidden_size
        k = 1 / math.sqrt(H)
        self.w_ih = nn.Parameter(torch.empty(3 * H, input_size).uniform_(-k, k))
        self.w_hh = nn.Parameter(torch.empty(3 * H, H).uniform_(-k, k))
        self.b_ih = nn.Parameter(torch.empty(3 * H).uniform_(-k, k))
        self.b_rz = nn.Parameter(torch.empty(H).uniform_(-k, k))
        if thresholds is None:
            theta = beta_thresholds(H, self.params.thr_mean)
        else:
            theta = torch.as_tensor(thresholds, dtype=torch.float32).clone()
            if theta.dim() == 0:
                theta = theta.expand(H).clone()
            if theta.shape != (H,):
                raise ShapeError(name, f"thresholds of shape {tuple(theta.shape)}, expected ({H},)")
            _check_thresholds(name, theta)
        self.theta = nn.Parameter(theta)
        self.stats = EGRUStats()

    @property
    def propagation(self) -> str:
        return self._propagation

    @propagation.setter
    def propagation(self, value: str) -> None:
        if value not in PROPAGATIONS:
            raise ParameterError(type(self).__name__, "propagation", value, "one of " + ", ".join(PROPAGATIONS))
        self._propagation = value

    # -- state and weights ------------------------------------------------------------------------
    def weights(self) -> EGRUWeights:
        return EGRUWeights(self.w_ih, self.w_hh, self.b_ih, self.b_rz, self.theta)

    def init_state(self, x: torch.Tensor) -> EGRUState:
        z = x.new_zeros(x.shape[0], self.hidden_size)
        return EGRUState(z, z, z)

    def _state_for(self, x: torch.Tensor) -> EGRUState:
        name = type(self).__name__
        check_dtype(name, x)
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ShapeError(name, f"input of shape {tuple(x.shape)}, expected [B, {self.input_size}] per step")
        if self.state is None:
            return self.init_state(x)
        if self.state.c.shape[0] != x.shape[0]:
            raise StepModeError(f"{name}: batch {x.shape[0]} does not match the kept state's batch "
                                f"{self.state.c.shape[0]}; call reset() between sequences of different shape")
        return self.state

    def reset_stats(self) -> None:
        self.stats = EGRUStats()

    def _matmuls(self):
        rec = PROPAGATIONS[self._propagation]
        if self._propagation == "dense":
            return rec, dense_matmul
        dens = self.input_density

        def inp(x, w):
            return event_matmul(x, w, dens)

        return rec, inp

    def _account(self, ys, cs) -> None:
        """Add the counts of steps with events ``ys`` and post-reset states ``cs`` (lists of [B, H])."""
        with torch.no_grad():
            y = torch.stack([t.detach() for t in ys])             # [T, B, H]
            c = torch.stack([t.detach() for t in cs])             # [T, B, H]
            th = self.theta.detach().clamp(0, 1)
            o = (y != 0).to(c.dtype)
            c_pre = c + o * th                                    # state before the reset
            outside = (c_pre - th).abs() > 1.0 / self.params.eps
            self.stats.events += int(o.sum())
            self.stats.outside_support += int(outside.sum())
            self.stats.total += y.numel()

    def single_step(self, x: torch.Tensor):
        """Shape: x [B, I] -> y [B, H] (or (y, tr))."""
        rec, inp = self._matmuls()
        out, self.state = egru_step(x, self._state_for(x), self.weights(), self.params, rec, inp)
        self._account([self.state.y], [self.state.c])
        if self._recorder is not None:
            self._recorder(out, self.state)
        return out

    def multi_step(self, x_seq: torch.Tensor):
        """Shape: x_seq [T, B, I] -> y [T, B, H] (or (y, tr)). The input projection runs once for all steps
        on the dense path (event path: per step, column-wise when the input is sparse)."""
        if x_seq.dim() != 3:
            raise StepModeError(f"{type(self).__name__}: multi-step input needs shape [T, B, I], "
                                f"got {tuple(x_seq.shape)}")
        state = self._state_for(x_seq[0])
        rec, inp = self._matmuls()
        if self._propagation == "dense":
            gxs = (x_seq @ self.w_ih.t() + self.b_ih).unbind(0)   # T x [B, 3H]
        else:
            gxs = [inp(x, self.w_ih) + self.b_ih for x in x_seq.unbind(0)]
        outs, ys, cs = [], [], []
        for gx in gxs:
            out, state = egru_cell(gx, state, self.w_hh, self.b_rz, self.theta, self.params, rec)
            outs.append(out)
            ys.append(state.y)
            cs.append(state.c)
            if self._recorder is not None:
                self._recorder(out, state)
        self.state = state
        self._account(ys, cs)
        if isinstance(outs[0], tuple):
            return tuple(torch.stack(o) for o in zip(*outs))
        return torch.stack(outs)

    # -- saving -------------------------------------------------------------------------------------
    def get_config(self) -> dict:
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "params": self.params.to_dict(), "propagation": self._propagation,
                "input_density": self.input_density, "step_mode": self.step_mode}

    @classmethod
    def from_config(cls, config: dict) -> "EGRUCell":
        c = dict(config)
        params = EGRUParams.from_dict(c.pop("params", {}))
        return cls(c.pop("input_size"), c.pop("hidden_size"), params, thresholds=0.5, **c)

    def check_loaded(self) -> None:
        _check_thresholds(type(self).__name__, self.theta)

    @torch.no_grad()
    def clamp_thresholds_(self) -> None:
        """Project the thresholds onto [0, 1] (the step uses them clamped, so outputs do not change);
        call after an optimizer step so that a saved model always holds valid thresholds."""
        self.theta.clamp_(0.0, 1.0)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, {self.params}, propagation={self._propagation!r}, "
                f"step_mode={self.step_mode!r}")


@savable("EGRU")
class EGRU(nn.Module):
    """Stacked EGRU layers: layer k reads the graded events of layer k-1.

    Args: input_size, hidden_sizes (one int per layer), params (shared :class:`EGRUParams`),
    dropout (between layers, training only), propagation, step_mode.

    Shape: 's' [B, I] -> [B, H_last]; 'm' [T, B, I] -> [T, B, H_last] (tuple (y, tr) with a trace).
    """

    def __init__(self, input_size: int, hidden_sizes: Sequence[int], params: Optional[EGRUParams] = None,
                 dropout: float = 0.0, propagation: str = "dense", step_mode: str = "s", **fields):
        super().__init__()
        hidden_sizes = [hidden_sizes] if isinstance(hidden_sizes, int) else list(hidden_sizes)
        if not hidden_sizes:
            raise ParameterError("EGRU", "hidden_sizes", hidden_sizes, "at least one layer size")
        if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
            raise ParameterError("EGRU", "dropout", dropout, "in [0, 1)")
        params = params if params is not None else EGRUParams()
        params = params.replace(**fields) if fields else params
        self.params = params
        # inner layers pass events on; only the last layer may expose its trace
        inner = params.replace(trace_decay=None)
        sizes = [input_size] + hidden_sizes
        self.layers = nn.ModuleList(
            EGRUCell(sizes[i], sizes[i + 1], params if i == len(hidden_sizes) - 1 else inner,
                     propagation=propagation, step_mode=step_mode)
            for i in range(len(hidden_sizes)))
        self.dropout = float(dropout)
        self.input_size, self.hidden_sizes = input_size, hidden_sizes

    @property
    def step_mode(self) -> str:
        return self.layers[0].step_mode

    @step_mode.setter
    def step_mode(self, mode: str) -> None:
        for layer in self.layers:
            layer.step_mode = mode

    @property
    def propagation(self) -> str:
        return self.layers[0].propagation

    @propagation.setter
    def propagation(self, value: str) -> None:
        for layer in self.layers:
            layer.propagation = value

    def forward(self, x: torch.Tensor):
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1 and self.dropout and self.training:
                x = nn.functional.dropout(x, self.dropout)
        return x

    def reset(self) -> None:
        for layer in self.layers:
            layer.reset()

    def detach(self) -> None:
        for layer in self.layers:
            layer.detach()

    def reset_stats(self) -> None:
        for layer in self.layers:
            layer.reset_stats()

    def sparsity(self) -> list[dict]:
        """Per layer: forward activity sparsity, backward sparsity and the unit-steps counted."""
        return [layer.stats.as_dict() for layer in self.layers]

    def get_config(self) -> dict:
        return {"input_size": self.input_size, "hidden_sizes": self.hidden_sizes, "params": self.params.to_dict(),
                "dropout": self.dropout, "propagation": self.propagation, "step_mode": self.step_mode}

    @classmethod
    def from_config(cls, config: dict) -> "EGRU":
        c = dict(config)
        params = EGRUParams.from_dict(c.pop("params", {}))
        return cls(c.pop("input_size"), c.pop("hidden_sizes"), params, **c)

    def check_loaded(self) -> None:
        for layer in self.layers:
            layer.check_loaded()

    def clamp_thresholds_(self) -> None:
        for layer in self.layers:
            layer.clamp_thresholds_()


# -- energy counting ---------------------------------------------------------------------------------
def egru_cell_rule(m: EGRUCell, x: torch.Tensor, y, act) -> dict:
    """Operations of one EGRU layer per step (x [T, B, I], y [T, B, H] or (y, tr)).

    Input product: every nonzero input times its 3H fan-out (MAC: inputs are real-valued). Recurrent
    product: only the units that emitted an event in the previous step, each times 3H (MAC, graded
    events). Gates: 3H nonlinear evaluations (two sigmoids, one tanh) per row and step. Neuron updates:
    one per unit and step; active = emitted an event. Memory: weights read per operation, states c, y
    read and written, one 32-bit address plus a 32-bit value per event.
    """
    from ..energy.rules import SPIKE_EVENT_BYTES

    y = y[0] if isinstance(y, tuple) else y
    T, B, H = y.shape[0], y[0].numel() // m.hidden_size, m.hidden_size
    I = m.input_size
    nz_in = (x.detach().reshape(T, -1, I) != 0).sum((1, 2)).to(torch.int64)        # [T]
    ev = (y.detach().reshape(T, -1, H) != 0).sum((1, 2)).to(torch.int64)            # [T] events of step t
    ev_prev = torch.cat([ev.new_zeros(1), ev[:-1]])                                  # recurrence reads y_{t-1}
    mac = (nz_in + ev_prev) * 3 * H
    dense = torch.full((T,), B * (I + H) * 3 * H, dtype=torch.int64)
    n = B * H
    wb = m.w_hh.element_size()
    zero = torch.zeros(T, dtype=torch.int64)
    return {"ac": zero, "mac": mac, "ac_dense": zero, "mac_dense": dense,
            "nonlinear": torch.full((T,), 3 * n, dtype=torch.int64),
            "neuron_update_active": ev, "neuron_update_inactive": n - ev, "spike": ev,
            "mem_read_byte": mac * wb + (nz_in + ev_prev) * wb + 2 * n * wb,
            "mem_write_byte": 2 * n * wb + ev * (SPIKE_EVENT_BYTES + wb)}


_REGISTERED = []


def register_energy_rules() -> None:
    """Register the EGRU counting rule with :mod:`neuro.energy.rules` (once; the first EGRUCell does it,
    since importing the energy room while ``neuro.neurons`` itself is being imported would be circular)."""
    if _REGISTERED:
        return
    from ..energy.rules import register_container, register_rule

    register_rule(EGRUCell, "neuron", egru_cell_rule)
    register_container(EGRU)
    _REGISTERED.append(True)
