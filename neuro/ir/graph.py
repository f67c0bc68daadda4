r"""The intermediate representation every exporter reads: small frozen dataclasses, numpy only.

A :class:`Graph` holds named nodes and a list of :class:`Projection` edges. It describes a network
in discrete time with step ``dt_ms``; per step :math:`t`, for every population :math:`P`, in the
topological order of the zero-delay projections (sources first):

.. math::
    X^P_t = \sum_{\text{drives } D \to P} D_t \;+\; \sum_{\text{projections } Q \to P}
            \sum_{j \to i} w_{ji}\, S^Q_j(t - \text{delay\_steps})

    H^P_t = \text{charge}(V^P_{t-1}, X^P_t), \qquad S^P_t = [H^P_t \ge v_{th}] \ (\text{or} >),
    \qquad V^P_t = \text{reset}(H^P_t, S^P_t)

``delay_steps = 0`` means a spike emitted at step t is seen by its target at the same step t (the
layer-by-layer feed-forward semantics of a ``Linear -> LIF`` chain); ``1`` means step t+1 (the
recurrent synapses of :class:`~neuro.models.RecurrentNetwork`). Zero-delay projections must not form
a cycle. A spike is stamped with the index of the step whose update crossed the threshold.

Node kinds:

* populations: :class:`LIFPopulation`, :class:`IFPopulation` (a separate node, as in NIR, rather than
  a LIF with decay 1: its charge ``V + X`` has no leak term to round), :class:`CubaLIFPopulation`
  (a synaptic current filters the input), :class:`ALIFPopulation` (adaptive threshold),
  :class:`ThresholdPopulation` (stateless spikes) and the non-spiking :class:`LIPopulation` (leaky
  integrator readouts, whose output is their membrane potential);
* edges: :class:`Projection` (CSR synapses with an integer ``delay_steps``; dense, sparse and the
  per-delay groups of a delayed layer), and its structured subclasses :class:`Conv2dProjection` and
  :class:`Pool2dProjection` (sum / average pooling), which carry their kernel next to the unrolled CSR
  synapses, so that a consumer that only knows :class:`Projection` still runs them;
* shapes: every population and spike source has a ``shape`` (default ``(n,)``); a dense projection
  reads its source flattened in C order, so a ``Flatten`` is implicit (NIR exporters emit one);
* :class:`EGRULayer`: an event-based GRU layer (graded events, gates), kept with its weights so that
  exporters can refuse it by name (no neuromorphic format has gating primitives);
* spike sources: :class:`SpikeSource` (spikes given at run time);
* drives, added to a target population's input :math:`X_t`: :class:`PoissonInput`,
  :class:`ConstantCurrent`, :class:`GivenCurrent`.

Every node validates its fields on construction and raises
:class:`~neuro.core.errors.ParameterError` or :class:`~neuro.core.errors.ShapeError` naming the
node, the field and the value. Arrays are stored as read-only float64 / int64 copies. The IR
imports neither torch nor any simulator; it is NIR-compatible where NIR has the node (REFERENCE §7:
NIR's LIF ``tau dv/dt = (v_leak - v) + R I``; the discretisation NIR leaves open is recorded in
:attr:`Graph.metadata`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

from ..core.errors import ParameterError, ShapeError
from ..core.random import binomial, binomial_cdf

FORMAT_VERSION = 1


# ----------------------------------------------------------------------------- validation helpers
def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _int(owner: str, name: str, v, lo: int) -> int:
    if not _is_int(v) or v < lo:
        raise ParameterError(owner, name, v, f"an integer >= {lo}")
    return int(v)


def _finite(owner: str, name: str, v) -> float:
    if not _is_num(v) or not math.isfinite(v):
        raise ParameterError(owner, name, v, "a finite number")
    return float(v)


def _positive(owner: str, name: str, v) -> float:
    if not _is_num(v) or not math.isfinite(v) or v <= 0:
        raise ParameterError(owner, name, v, "a finite number > 0")
    return float(v)


def _bool(owner: str, name: str, v) -> bool:
    if not isinstance(v, bool):
        raise ParameterError(owner, name, v, "True or False")
    return v


def _name(owner: str, field_name: str, v) -> str:
    if not isinstance(v, str) or not v:
        raise ParameterError(owner, field_name, v, "a non-empty string")
    return v


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _float_array(owner: str, name: str, v, shape: tuple) -> np.ndarray:
    """A read-only float64 copy of ``v`` broadcast to ``shape``; rejects NaN/Inf."""
    try:
        a = np.array(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(owner, name, type(v).__name__, "an array of numbers") from None
    if a.ndim == 0:
        a = np.full(shape, float(a))
    if a.shape != shape:
        raise ShapeError(owner, f"{name} has shape {a.shape}, expected {shape}")
    if not np.isfinite(a).all():
        raise ParameterError(owner, name, float(a[~np.isfinite(a)].flat[0]), "finite (no NaN or Inf entries)")
    return _frozen(np.ascontiguousarray(a))


def _shape(owner: str, v, n: int) -> tuple:
    """A tuple of positive ints whose product is ``n`` (None: ``(n,)``)."""
    if v is None:
        return (n,)
    try:
        t = tuple(v)
    except TypeError:
        raise ParameterError(owner, "shape", v, "a tuple of positive integers") from None
    if not t or not all(_is_int(a) and a >= 1 for a in t):
        raise ParameterError(owner, "shape", v, "a tuple of positive integers")
    t = tuple(int(a) for a in t)
    if math.prod(t) != n:
        raise ShapeError(owner, f"shape {t} holds {math.prod(t)} neurons, n is {n}")
    return t


def decay_from_tau(tau_ms: float, dt_ms: float, integration: str) -> float:
    r"""Per-step decay of :math:`\tau\,dv/dt = -v`: ``'exact'`` :math:`e^{-dt/\tau}`, ``'euler'``
    :math:`1 - dt/\tau` (the arithmetic of :func:`neuro.neurons.base.decay_factor`)."""
    return math.exp(-dt_ms / tau_ms) if integration == "exact" else 1.0 - dt_ms / tau_ms


# ----------------------------------------------------------------------------- populations
@dataclass(frozen=True, eq=False)
class LIFPopulation:
    r"""A population of leaky integrate-and-fire neurons (neuro's LIF, REFERENCE §1).

    With decay :math:`d` and input :math:`X_t` (drives plus synaptic input of the step):

    .. math::
        H_t = V_{t-1} + (1 - d)\,(X_t - (V_{t-1} - V_{rest}))   \quad \text{(decay\_input=True)}

        H_t = (V_{t-1} - V_{rest})\, d + V_{rest} + X_t           \quad \text{(decay\_input=False)}

        S_t = [H_t \ge V_{th}] \ (\text{strict\_threshold}: H_t > V_{th})

        V_t = V_{reset} \text{ if } S_t \text{ else } H_t \quad
        (\text{soft reset, v\_reset=None: } V_t = H_t - V_{th} S_t)

    Both are the exact solution over one step of :math:`\tau\,dv/dt = (V_{rest} - v) + I` with
    :math:`d = e^{-dt/\tau}`: for ``decay_input=True`` the input is a current :math:`I = X_t` held
    over the step; for ``decay_input=False`` it is a jump :math:`v \mathrel{+}= X_t` at the end of it.

    Fields:
        n: number of neurons.
        decay: :math:`d \in (0, 1]`, the authority for the dynamics.
        v_th (> 0), v_reset (None = soft reset), v_rest, decay_input, strict_threshold: as above.
        v_init: [n] membrane at step -1 (a scalar is broadcast; None: v_reset, or 0 for soft reset).
        tau_ms, dt_ms, integration: where ``decay`` came from (``'exact'`` or ``'euler'``; None when
            ``decay`` was given directly), kept for exporters that need a time constant; see
            :attr:`tau_exact_ms`.

    Shape: v_init [n]; state and spikes [n] per step.
    """

    n: int
    decay: float
    v_th: float = 1.0
    v_reset: Optional[float] = 0.0
    v_rest: float = 0.0
    decay_input: bool = True
    strict_threshold: bool = False
    v_init: Optional[np.ndarray] = None
    tau_ms: Optional[float] = None
    dt_ms: float = 1.0
    integration: Optional[str] = None
    shape: Optional[tuple] = None

    def __post_init__(self):
        o = "LIFPopulation"
        n = _int(o, "n", self.n, 1)
        if not _is_num(self.decay) or not 0.0 < self.decay <= 1.0:
            raise ParameterError(o, "decay", self.decay, "in (0, 1]")
        v_reset = None if self.v_reset is None else _finite(o, "v_reset", self.v_reset)
        if self.integration not in (None, "exact", "euler"):
            raise ParameterError(o, "integration", self.integration, "one of 'exact', 'euler', None")
        tau = None if self.tau_ms is None else _positive(o, "tau_ms", self.tau_ms)
        dt = _positive(o, "dt_ms", self.dt_ms)
        if (tau is None) != (self.integration is None):
            raise ParameterError(o, "integration", self.integration,
                                 "given together with tau_ms (both None when decay is set directly)")
        if tau is not None and not math.isclose(self.decay, decay_from_tau(tau, dt, self.integration),
                                                rel_tol=1e-12):
            raise ParameterError(o, "decay", self.decay, f"{decay_from_tau(tau, dt, self.integration)!r}, "
                                 f"the {self.integration} decay of tau_ms={tau} over dt_ms={dt}")
        init = (v_reset if v_reset is not None else 0.0) if self.v_init is None else self.v_init
        values = dict(n=n, decay=float(self.decay), v_th=_positive(o, "v_th", self.v_th), v_reset=v_reset,
                      v_rest=_finite(o, "v_rest", self.v_rest),
                      decay_input=_bool(o, "decay_input", self.decay_input),
                      strict_threshold=_bool(o, "strict_threshold", self.strict_threshold),
                      v_init=_float_array(o, "v_init", init, (n,)), tau_ms=tau, dt_ms=dt,
                      shape=_shape(o, self.shape, n))
        for k, v in values.items():
            object.__setattr__(self, k, v)

    @property
    def soft_reset(self) -> bool:
        return self.v_reset is None

    @property
    def tau_exact_ms(self) -> float:
        r"""The time constant whose exact solution decays by ``decay`` per step:
        :math:`-dt / \ln d` (``inf`` when ``decay`` is 1)."""
        return math.inf if self.decay == 1.0 else -self.dt_ms / math.log(self.decay)


@dataclass(frozen=True, eq=False)
class IFPopulation:
    r"""A population of integrate-and-fire neurons (no leak; neuro's IF).

    .. math::
        H_t = V_{t-1} + X_t, \qquad S_t = [H_t \ge V_{th}] \ (\text{or} >), \qquad
        V_t = V_{reset} \text{ or } H_t - V_{th} S_t \ (\text{v\_reset=None})

    NIR's ``IF`` node (:math:`C\,dv/dt = R I`) with the input applied as a jump.
    Fields: n, v_th (> 0), v_reset (None = soft reset), strict_threshold, v_init [n] (scalar broadcast),
    shape (default ``(n,)``).

    Shape: v_init [n]; state and spikes [n] per step.
    """

    n: int
    v_th: float = 1.0
    v_reset: Optional[float] = 0.0
    strict_threshold: bool = False
    v_init: Union[float, np.ndarray] = 0.0
    shape: Optional[tuple] = None

    def __post_init__(self):
        o = "IFPopulation"
        n = _int(o, "n", self.n, 1)
        values = dict(n=n, v_th=_positive(o, "v_th", self.v_th),
                      v_reset=None if self.v_reset is None else _finite(o, "v_reset", self.v_reset),
                      strict_threshold=_bool(o, "strict_threshold", self.strict_threshold),
                      v_init=_float_array(o, "v_init", self.v_init, (n,)), shape=_shape(o, self.shape, n))
        for k, v in values.items():
            object.__setattr__(self, k, v)

    @property
    def soft_reset(self) -> bool:
        return self.v_reset is None


def _decay_field(o: str, name: str, v) -> float:
    if not _is_num(v) or not 0.0 < v <= 1.0:
        raise ParameterError(o, name, v, "in (0, 1]")
    return float(v)


@dataclass(frozen=True, eq=False)
class CubaLIFPopulation:
    r"""Current-based LIF (neuro's :class:`~neuro.neurons.CubaLIF`; NIR ``CubaLIF``; Loihi's CUBA neuron).

    .. math::
        I_t = d_{syn} I_{t-1} + X_t, \qquad H_t = \text{LIF charge of } I_t \text{ (as LIFPopulation)},

        S_t = [H_t \ge V_{th}] \ (\text{or} >), \qquad V_t = \text{reset}(H_t, S_t)

    Fields: n, decay (membrane, in (0, 1]), decay_syn (current, in [0, 1]; 0 = no filter), v_th,
    v_reset (None = soft reset), v_rest, decay_input (default False: the current is a jump on v),
    strict_threshold, v_init [n] (None: v_reset or 0), dt_ms, shape.

    Shape: v_init [n]; state (i, v) and spikes [n] per step.
    """

    n: int
    decay: float
    decay_syn: float
    v_th: float = 1.0
    v_reset: Optional[float] = 0.0
    v_rest: float = 0.0
    decay_input: bool = False
    strict_threshold: bool = False
    v_init: Optional[np.ndarray] = None
    dt_ms: float = 1.0
    shape: Optional[tuple] = None

    def __post_init__(self):
        o = "CubaLIFPopulation"
        n = _int(o, "n", self.n, 1)
        if not _is_num(self.decay_syn) or not 0.0 <= self.decay_syn <= 1.0:
            raise ParameterError(o, "decay_syn", self.decay_syn, "in [0, 1]")
        v_reset = None if self.v_reset is None else _finite(o, "v_reset", self.v_reset)
        init = (v_reset if v_reset is not None else 0.0) if self.v_init is None else self.v_init
        values = dict(n=n, decay=_decay_field(o, "decay", self.decay), decay_syn=float(self.decay_syn),
                      v_th=_positive(o, "v_th", self.v_th), v_reset=v_reset, v_rest=_finite(o, "v_rest", self.v_rest),
                      decay_input=_bool(o, "decay_input", self.decay_input),
                      strict_threshold=_bool(o, "strict_threshold", self.strict_threshold),
                      v_init=_float_array(o, "v_init", init, (n,)), dt_ms=_positive(o, "dt_ms", self.dt_ms),
                      shape=_shape(o, self.shape, n))
        for k, v in values.items():
            object.__setattr__(self, k, v)

    @property
    def soft_reset(self) -> bool:
        return self.v_reset is None


@dataclass(frozen=True, eq=False)
class ALIFPopulation:
    r"""Adaptive LIF (neuro's :class:`~neuro.neurons.ALIF`; Bellec et al. 2018).

    .. math::
        H_t = \text{LIF charge}, \quad \theta_t = V_{th} + \beta a_{t-1}, \quad S_t = [H_t \ge \theta_t],
        \quad V_t = \text{reset}(H_t, S_t), \quad a_t = \rho\, a_{t-1} + S_t

    Fields: n, decay, adapt_decay (:math:`\rho` in (0, 1]), beta (>= 0), v_th, v_reset (None = soft
    reset by :math:`\theta_t`), v_rest, decay_input, strict_threshold, dt_ms, shape. NIR has no such
    node; its exporter refuses it by name.
    """

    n: int
    decay: float
    adapt_decay: float
    beta: float = 1.8
    v_th: float = 1.0
    v_reset: Optional[float] = None
    v_rest: float = 0.0
    decay_input: bool = False
    strict_threshold: bool = False
    dt_ms: float = 1.0
    shape: Optional[tuple] = None

    def __post_init__(self):
        o = "ALIFPopulation"
        n = _int(o, "n", self.n, 1)
        beta = _finite(o, "beta", self.beta)
        if beta < 0:
            raise ParameterError(o, "beta", beta, ">= 0")
        values = dict(n=n, decay=_decay_field(o, "decay", self.decay),
                      adapt_decay=_decay_field(o, "adapt_decay", self.adapt_decay), beta=beta,
                      v_th=_positive(o, "v_th", self.v_th),
                      v_reset=None if self.v_reset is None else _finite(o, "v_reset", self.v_reset),
                      v_rest=_finite(o, "v_rest", self.v_rest), decay_input=_bool(o, "decay_input", self.decay_input),
                      strict_threshold=_bool(o, "strict_threshold", self.strict_threshold),
                      dt_ms=_positive(o, "dt_ms", self.dt_ms), shape=_shape(o, self.shape, n))
        for k, v in values.items():
            object.__setattr__(self, k, v)

    @property
    def soft_reset(self) -> bool:
        return self.v_reset is None

    @property
    def v_init(self) -> np.ndarray:
        return np.full(self.n, 0.0 if self.v_reset is None else self.v_reset)


@dataclass(frozen=True, eq=False)
class LIPopulation:
    r"""Non-spiking leaky integrators (NIR's ``LI``, ``CubaLI`` and ``I``; readout layers): the LIF charge
    with no threshold, its output is the membrane potential itself (graded), not spikes.

    .. math::
        I_t = d_{syn} I_{t-1} + X_t \ (d_{syn} = 0: I_t = X_t), \qquad
        V_t = \text{LIF charge of } I_t \text{ (as LIFPopulation; } d = 1 \text{: } V_t = V_{t-1} + I_t)

    Fields: n, decay (in (0, 1]), decay_syn (in [0, 1)), v_rest, decay_input, dt_ms, shape.
    Shape: state (i, v) and output [n] per step.
    """

    n: int
    decay: float
    decay_syn: float = 0.0
    v_rest: float = 0.0
    decay_input: bool = True
    dt_ms: float = 1.0
    shape: Optional[tuple] = None

    def __post_init__(self):
        o = "LIPopulation"
        n = _int(o, "n", self.n, 1)
        if not _is_num(self.decay_syn) or not 0.0 <= self.decay_syn < 1.0:
            raise ParameterError(o, "decay_syn", self.decay_syn, "in [0, 1)")
        values = dict(n=n, decay=_decay_field(o, "decay", self.decay), decay_syn=float(self.decay_syn),
                      v_rest=_finite(o, "v_rest", self.v_rest), decay_input=_bool(o, "decay_input", self.decay_input),
                      dt_ms=_positive(o, "dt_ms", self.dt_ms), shape=_shape(o, self.shape, n))
        for k, v in values.items():
            object.__setattr__(self, k, v)

    @property
    def v_init(self) -> np.ndarray:
        return np.full(self.n, self.v_rest)


@dataclass(frozen=True, eq=False)
class ThresholdPopulation:
    r"""Stateless spiking units (NIR's ``Threshold``): :math:`S_t = [X_t > V_{th}]`, nothing kept between steps.

    Fields: n, v_th (finite), shape. Shape: spikes [n] per step.
    """

    n: int
    v_th: float = 0.0
    shape: Optional[tuple] = None

    def __post_init__(self):
        o = "ThresholdPopulation"
        n = _int(o, "n", self.n, 1)
        values = dict(n=n, v_th=_finite(o, "v_th", self.v_th), shape=_shape(o, self.shape, n))
        for k, v in values.items():
            object.__setattr__(self, k, v)


Population = Union[LIFPopulation, IFPopulation, CubaLIFPopulation, ALIFPopulation, LIPopulation, ThresholdPopulation]
SPIKING_TYPES = (LIFPopulation, IFPopulation, CubaLIFPopulation, ALIFPopulation)  # those with a membrane and a reset
POPULATION_TYPES = SPIKING_TYPES + (LIPopulation, ThresholdPopulation)


# ----------------------------------------------------------------------------- sources and drives
@dataclass(frozen=True, eq=False)
class SpikeSource:
    """``n`` binary spike channels whose spikes are given at run time (Shape: [T, n]); NIR's Input."""

    n: int
    shape: Optional[tuple] = None

    def __post_init__(self):
        object.__setattr__(self, "n", _int("SpikeSource", "n", self.n, 1))
        object.__setattr__(self, "shape", _shape("SpikeSource", self.shape, self.n))


@dataclass(frozen=True, eq=False)
class PoissonInput:
    r"""Each of the ``n`` neurons of ``target`` receives Binomial(n_sources, rate_hz dt) kicks of
    ``weight`` per step, added to its input :math:`X_t` (Brian2's ``PoissonInput``).

    The draws are those of :mod:`neuro.core.random`: step t uses ``binomial(seed, t, n, cdf)`` with
    ``cdf = binomial_cdf(n_sources, rate_hz * dt_ms * 1e-3)``, so every consumer reproduces them.
    """

    target: str
    n: int
    n_sources: int = 100
    rate_hz: float = 12.0
    weight: float = 0.05
    seed: int = 0

    def __post_init__(self):
        o = "PoissonInput"
        _name(o, "target", self.target)
        rate = self.rate_hz
        if not _is_num(rate) or not math.isfinite(rate) or rate < 0:
            raise ParameterError(o, "rate_hz", rate, "a finite number >= 0")
        values = dict(n=_int(o, "n", self.n, 1), n_sources=_int(o, "n_sources", self.n_sources, 1),
                      rate_hz=float(rate), weight=_finite(o, "weight", self.weight),
                      seed=_int(o, "seed", self.seed, 0))
        for k, v in values.items():
            object.__setattr__(self, k, v)

    def check_dt(self, dt_ms: float, owner: str = "PoissonInput", field_name: str = "rate_hz") -> None:
        if self.rate_hz * dt_ms * 1e-3 > 1.0:
            raise ParameterError(owner, field_name, self.rate_hz,
                                 f"<= 1 / dt ({1e3 / dt_ms} Hz) so that rate * dt is a probability")

    def values(self, steps: int, dt_ms: float) -> np.ndarray:
        """float64 [steps, n]: the input of steps 0..steps-1."""
        self.check_dt(dt_ms)
        cdf = binomial_cdf(self.n_sources, self.rate_hz * dt_ms * 1e-3)
        out = np.empty((steps, self.n), dtype=np.float64)
        for t in range(steps):
            out[t] = binomial(self.seed, t, self.n, cdf) * self.weight
        return out


@dataclass(frozen=True, eq=False)
class ConstantCurrent:
    """The same input ``values`` [n] added to ``target``'s :math:`X_t` every step (e.g. a bias)."""

    target: str
    values: np.ndarray

    def __post_init__(self):
        _name("ConstantCurrent", "target", self.target)
        v = np.asarray(self.values)
        if v.ndim != 1 or v.size < 1:
            raise ShapeError("ConstantCurrent", f"values must be 1-D [n], got shape {v.shape}")
        object.__setattr__(self, "values", _float_array("ConstantCurrent", "values", v, v.shape))

    @property
    def n(self) -> int:
        return self.values.shape[0]


@dataclass(frozen=True, eq=False)
class GivenCurrent:
    """Input ``values`` [T, n], row t added to ``target``'s :math:`X_t` (runs need T >= steps)."""

    target: str
    values: np.ndarray

    def __post_init__(self):
        _name("GivenCurrent", "target", self.target)
        v = np.asarray(self.values)
        if v.ndim != 2 or v.size < 1:
            raise ShapeError("GivenCurrent", f"values must be 2-D [T, n], got shape {v.shape}")
        object.__setattr__(self, "values", _float_array("GivenCurrent", "values", v, v.shape))

    @property
    def n(self) -> int:
        return self.values.shape[1]


Drive = Union[PoissonInput, ConstantCurrent, GivenCurrent]
DRIVE_TYPES = (PoissonInput, ConstantCurrent, GivenCurrent)


# ----------------------------------------------------------------------------- edges
@dataclass(frozen=True, eq=False)
class Projection:
    r"""Synapses from the spikes of node ``pre`` to the input of population ``post``, CSR by
    presynaptic neuron: the synapses of ``pre`` neuron k are ``indptr[k]:indptr[k+1]`` of
    ``indices`` (postsynaptic neuron) and ``weights``.

    .. math:: X^{post}_i(t) \mathrel{+}= \sum_{k \to i} w_{ki}\, S^{pre}_k(t - \text{delay\_steps})

    ``delay_steps = 0``: same step (feed-forward layers); ``1``: next step (recurrent synapses).
    Shape: indptr [n_pre + 1], indices [nnz], weights [nnz].
    """

    pre: str
    post: str
    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray
    delay_steps: int = 0
    name: str = ""

    def __post_init__(self):
        o = f"Projection({self.pre!r} -> {self.post!r})" if isinstance(self.pre, str) else "Projection"
        _name("Projection", "pre", self.pre)
        _name("Projection", "post", self.post)
        indptr = np.asarray(self.indptr)
        indices = np.asarray(self.indices)
        if indptr.ndim != 1 or indptr.size < 2 or not np.issubdtype(indptr.dtype, np.integer):
            raise ShapeError(o, f"indptr must be a 1-D integer array [n_pre + 1], got {indptr.dtype} {indptr.shape}")
        if int(indptr[0]) != 0 or bool((np.diff(indptr) < 0).any()):
            raise ParameterError(o, "indptr", indptr[:8].tolist(), "starting at 0 and never decreasing")
        if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
            raise ShapeError(o, f"indices must be a 1-D integer array [nnz], got {indices.dtype} {indices.shape}")
        if int(indptr[-1]) != indices.size:
            raise ShapeError(o, f"indptr ends at {int(indptr[-1])} but there are {indices.size} indices")
        if indices.size and int(indices.min()) < 0:
            raise ParameterError(o, "indices", int(indices.min()), "postsynaptic indices >= 0")
        w = np.asarray(self.weights)
        if w.shape != indices.shape:
            raise ShapeError(o, f"weights has shape {w.shape}, indices {indices.shape}")
        values = dict(indptr=_frozen(indptr.astype(np.int64, copy=True)),
                      indices=_frozen(indices.astype(np.int64, copy=True)),
                      weights=_float_array(o, "weights", w, w.shape),
                      delay_steps=_int(o, "delay_steps", self.delay_steps, 0))
        if not isinstance(self.name, str):
            raise ParameterError(o, "name", self.name, "a string")
        for k, v in values.items():
            object.__setattr__(self, k, v)

    @property
    def n_pre(self) -> int:
        return self.indptr.size - 1

    @property
    def nnz(self) -> int:
        return self.indices.size

    def pre_indices(self) -> np.ndarray:
        """int64 [nnz]: the presynaptic neuron of each synapse."""
        return np.repeat(np.arange(self.n_pre, dtype=np.int64), np.diff(self.indptr))

    def to_dense(self, n_post: int) -> np.ndarray:
        """Dense weight [n_post, n_pre] (``y = W x``, torch.nn.Linear's layout)."""
        w = np.zeros((n_post, self.n_pre))
        np.add.at(w, (self.indices, self.pre_indices()), self.weights)
        return w

    @classmethod
    def from_dense(cls, pre: str, post: str, weight, delay_steps: int = 0, name: str = "") -> "Projection":
        """From a dense [n_post, n_pre] matrix, keeping its nonzero entries."""
        w = np.asarray(weight, dtype=np.float64)
        if w.ndim != 2:
            raise ShapeError("Projection.from_dense", f"weight must be 2-D [n_post, n_pre], got {w.shape}")
        k, j = np.nonzero(w.T)  # by presynaptic neuron, then postsynaptic index
        indptr = np.zeros(w.shape[1] + 1, dtype=np.int64)
        indptr[1:] = np.cumsum(np.bincount(k, minlength=w.shape[1]))
        return cls(pre, post, indptr, j, w.T[k, j], delay_steps, name)


def _pair(owner: str, name: str, v, lo: int) -> tuple:
    t = (v, v) if _is_int(v) else tuple(v) if isinstance(v, (tuple, list, np.ndarray)) else None
    if t is None or len(t) != 2 or not all(_is_int(a) and a >= lo for a in t):
        raise ParameterError(owner, name, v, f"an int or a pair of ints >= {lo}")
    return (int(t[0]), int(t[1]))


def _chw(owner: str, v) -> tuple:
    t = tuple(v) if isinstance(v, (tuple, list, np.ndarray)) else None
    if t is None or len(t) != 3 or not all(_is_int(a) and a >= 1 for a in t):
        raise ParameterError(owner, "in_shape", v, "(channels, height, width), positive ints")
    return tuple(int(a) for a in t)


def conv2d_out_hw(in_hw: tuple, kernel: tuple, stride: tuple, padding: tuple) -> tuple:
    """Output (H', W') of a 2-D convolution or pooling: ``(H + 2 p - k) // s + 1`` per axis."""
    return tuple((h + 2 * p - k) // s + 1 for h, k, s, p in zip(in_hw, kernel, stride, padding))


def _unrolled_csr(weight: np.ndarray, in_shape: tuple, stride: tuple, padding: tuple):
    """CSR (indptr, indices, weights) of a 2-D cross-correlation ``weight`` [O, C, kh, kw] over an input
    [C, H, W] (C order) into an output [O, H', W'] (C order); zero kernel entries are left out."""
    O, C, kh, kw = weight.shape
    _, H, W = in_shape
    OH, OW = conv2d_out_hw((H, W), (kh, kw), stride, padding)
    pre, post, val = [], [], []
    oy, ox = np.meshgrid(np.arange(OH), np.arange(OW), indexing="ij")
    for c in range(C):
        for a in range(kh):
            for b in range(kw):
                iy, ix = oy * stride[0] - padding[0] + a, ox * stride[1] - padding[1] + b
                ok = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
                src = (c * H + iy[ok]) * W + ix[ok]
                for o in range(O):
                    if weight[o, c, a, b] == 0:
                        continue
                    pre.append(src)
                    post.append((o * OH + oy[ok]) * OW + ox[ok])
                    val.append(np.full(src.size, weight[o, c, a, b]))
    n_pre = C * H * W
    if pre:
        pre, post, val = np.concatenate(pre), np.concatenate(post), np.concatenate(val)
    else:
        pre = post = np.zeros(0, dtype=np.int64)
        val = np.zeros(0)
    order = np.lexsort((post, pre))
    indptr = np.zeros(n_pre + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(np.bincount(pre, minlength=n_pre))
    return indptr, post[order].astype(np.int64), val[order]


@dataclass(frozen=True, eq=False)
class Conv2dProjection(Projection):
    r"""A 2-D convolution from ``pre`` (shape [C, H, W]) to ``post`` (shape [O, H', W']), as NIR's
    ``Conv2d`` and :class:`torch.nn.Conv2d` (cross-correlation, no dilation, one group):

    .. math:: X^{post}_{o,y,x} \mathrel{+}= \sum_{c,a,b} K_{o,c,a,b}\,
              S^{pre}_{c,\,sy - p + a,\,sx - q + b}(t - \text{delay\_steps})

    Build it with :meth:`from_kernel`, which also fills the unrolled CSR synapses of the base class
    (so a consumer that only reads :class:`Projection` runs it). A bias is a :class:`ConstantCurrent`.
    Shape: kernel [O, C, kh, kw]; in_shape (C, H, W); out_shape (O, H', W').
    """

    kernel: Optional[np.ndarray] = None
    in_shape: tuple = ()
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)

    def __post_init__(self):
        super().__post_init__()
        o = f"Conv2dProjection({self.pre!r} -> {self.post!r})"
        k = np.asarray(self.kernel, dtype=np.float64) if self.kernel is not None else None
        if k is None or k.ndim != 4:
            raise ShapeError(o, f"kernel must be 4-D [O, C, kh, kw], got {None if k is None else k.shape}")
        in_shape = _chw(o, self.in_shape)
        if k.shape[1] != in_shape[0]:
            raise ShapeError(o, f"kernel has {k.shape[1]} input channels, in_shape {in_shape} has {in_shape[0]}")
        if self.n_pre != math.prod(in_shape):
            raise ShapeError(o, f"{self.n_pre} presynaptic rows, in_shape {in_shape} holds {math.prod(in_shape)}")
        values = dict(kernel=_float_array(o, "kernel", k, k.shape), in_shape=in_shape,
                      stride=_pair(o, "stride", self.stride, 1), padding=_pair(o, "padding", self.padding, 0))
        for key, v in values.items():
            object.__setattr__(self, key, v)
        if min(self.out_shape) < 1:
            raise ShapeError(o, f"kernel {k.shape[2:]} does not fit the padded input {in_shape[1:]}")

    @property
    def out_shape(self) -> tuple:
        return (self.kernel.shape[0],) + conv2d_out_hw(self.in_shape[1:], self.kernel.shape[2:], self.stride,
                                                        self.padding)

    @property
    def n_post(self) -> int:
        return math.prod(self.out_shape)

    @classmethod
    def from_kernel(cls, pre: str, post: str, kernel, in_shape, stride=1, padding=0, delay_steps: int = 0,
                    name: str = "") -> "Conv2dProjection":
        o = f"Conv2dProjection({pre!r} -> {post!r})"
        k = np.asarray(kernel, dtype=np.float64)
        if k.ndim != 4:
            raise ShapeError(o, f"kernel must be 4-D [O, C, kh, kw], got {k.shape}")
        in_shape, stride, padding = _chw(o, in_shape), _pair(o, "stride", stride, 1), _pair(o, "padding", padding, 0)
        if k.shape[1] != in_shape[0]:
            raise ShapeError(o, f"kernel has {k.shape[1]} input channels, in_shape {in_shape} has {in_shape[0]}")
        if min(conv2d_out_hw(in_shape[1:], k.shape[2:], stride, padding)) < 1:
            raise ShapeError(o, f"kernel {k.shape[2:]} does not fit the padded input {in_shape[1:]}")
        indptr, indices, weights = _unrolled_csr(k, in_shape, stride, padding)
        return cls(pre, post, indptr, indices, weights, delay_steps, name, k, in_shape, stride, padding)


POOL_KINDS = ("sum", "avg")


@dataclass(frozen=True, eq=False)
class Pool2dProjection(Projection):
    r"""Sum or average pooling of ``pre``'s spikes (shape [C, H, W]) into ``post`` (shape [C, H', W']),
    NIR's ``SumPool2d`` / ``AvgPool2d``: each output sums its window (times :math:`1/(k_h k_w)` for
    ``'avg'``, padded zeros counted). Build it with :meth:`from_window`; the unrolled CSR synapses
    of the base class hold the same map.
    """

    kind: str = "sum"
    kernel_size: tuple = (2, 2)
    in_shape: tuple = ()
    stride: tuple = (2, 2)
    padding: tuple = (0, 0)

    def __post_init__(self):
        super().__post_init__()
        o = f"Pool2dProjection({self.pre!r} -> {self.post!r})"
        if self.kind not in POOL_KINDS:
            raise ParameterError(o, "kind", self.kind, "one of " + ", ".join(POOL_KINDS))
        in_shape = _chw(o, self.in_shape)
        if self.n_pre != math.prod(in_shape):
            raise ShapeError(o, f"{self.n_pre} presynaptic rows, in_shape {in_shape} holds {math.prod(in_shape)}")
        values = dict(in_shape=in_shape, kernel_size=_pair(o, "kernel_size", self.kernel_size, 1),
                      stride=_pair(o, "stride", self.stride, 1), padding=_pair(o, "padding", self.padding, 0))
        for key, v in values.items():
            object.__setattr__(self, key, v)

    @property
    def out_shape(self) -> tuple:
        return (self.in_shape[0],) + conv2d_out_hw(self.in_shape[1:], self.kernel_size, self.stride, self.padding)

    @property
    def n_post(self) -> int:
        return math.prod(self.out_shape)

    @classmethod
    def from_window(cls, pre: str, post: str, kind: str, kernel_size, in_shape, stride=None, padding=0,
                    delay_steps: int = 0, name: str = "") -> "Pool2dProjection":
        o = f"Pool2dProjection({pre!r} -> {post!r})"
        if kind not in POOL_KINDS:
            raise ParameterError(o, "kind", kind, "one of " + ", ".join(POOL_KINDS))
        ks = _pair(o, "kernel_size", kernel_size, 1)
        stride = ks if stride is None else _pair(o, "stride", stride, 1)
        in_shape, padding = _chw(o, in_shape), _pair(o, "padding", padding, 0)
        if min(conv2d_out_hw(in_shape[1:], ks, stride, padding)) < 1:
            raise ShapeError(o, f"window {ks} does not fit the padded input {in_shape[1:]}")
        C = in_shape[0]
        k = np.zeros((C, C) + ks)
        k[np.arange(C), np.arange(C)] = 1.0 if kind == "sum" else 1.0 / (ks[0] * ks[1])
        indptr, indices, weights = _unrolled_csr(k, in_shape, stride, padding)
        return cls(pre, post, indptr, indices, weights, delay_steps, name, kind, ks, in_shape, stride, padding)


# ----------------------------------------------------------------------------- non-spiking layers
@dataclass(frozen=True, eq=False)
class EGRULayer:
    r"""An event-based GRU layer (REFERENCE §1, Subramoney et al. 2023), gates ordered (u, r, z):

    .. math::
        u_t = \sigma(W_u x_t + R_u y_{t-1} + b_u), \quad r_t = \sigma(W_r x_t + R_r y_{t-1} + b_r),

        z_t = \tanh(W_z x_t + b_x + r_t (R_z y_{t-1} + b_{rz})), \quad c_t = u_t c_{t-1} + (1 - u_t) z_t,

        o_t = [c_t > \theta], \quad y_t = o_t c_t, \quad c_t \leftarrow c_t - o_t \theta

    Its input is the output of node ``pre`` (a spike source or population), and it emits graded
    events y. Kept in the IR with its weights so that an exporter can refuse it by name: neither NIR
    nor Loihi's LIF has gates. Shape: w_x [3n, n_in], w_y [3n, n], bias [3n] (b_u, b_r, b_x),
    b_rz [n], theta [n].
    """

    pre: str
    n_in: int
    n: int
    w_x: np.ndarray
    w_y: np.ndarray
    bias: np.ndarray
    b_rz: np.ndarray
    theta: np.ndarray

    def __post_init__(self):
        o = "EGRULayer"
        _name(o, "pre", self.pre)
        n_in, n = _int(o, "n_in", self.n_in, 1), _int(o, "n", self.n, 1)
        values = dict(n_in=n_in, n=n, w_x=_float_array(o, "w_x", self.w_x, (3 * n, n_in)),
                      w_y=_float_array(o, "w_y", self.w_y, (3 * n, n)), bias=_float_array(o, "bias", self.bias, (3 * n,)),
                      b_rz=_float_array(o, "b_rz", self.b_rz, (n,)), theta=_float_array(o, "theta", self.theta, (n,)))
        for k, v in values.items():
            object.__setattr__(self, k, v)


# ----------------------------------------------------------------------------- graph
Node = Union[Population, SpikeSource, Drive, EGRULayer]
NODE_TYPES = POPULATION_TYPES + (SpikeSource,) + DRIVE_TYPES + (EGRULayer,)

def _conventions(nodes: dict, dt_ms: float) -> dict:
    return {
        "format": "neuro.ir",
        "format_version": FORMAT_VERSION,
        "dt_ms": dt_ms,
        "time": "discrete steps of dt_ms; a spike is stamped with the step whose update crossed the threshold",
        "update": "X_t = drives_t + synaptic input; H_t = charge(V_{t-1}, X_t); "
                  "S_t = H_t >= v_th (> if strict_threshold); V_t = reset(H_t, S_t)",
        "delay": "delay_steps=0: a spike of step t reaches its target at step t (after the source's "
                 "threshold, before the target's); d > 0: at step t + d",
        "input_integration": {k: ("current held over the step" if v.decay_input else "jump after the leak")
                              for k, v in nodes.items()
                              if isinstance(v, (LIFPopulation, CubaLIFPopulation, ALIFPopulation, LIPopulation))}
                             | {k: "jump" for k, v in nodes.items() if isinstance(v, IFPopulation)},
        "integration": {k: (v.integration or "decay") for k, v in nodes.items() if isinstance(v, LIFPopulation)},
        "reset": {k: ("soft (subtract v_th)" if v.soft_reset else "hard (to v_reset)")
                  for k, v in nodes.items() if isinstance(v, SPIKING_TYPES)},
        "output": {k: "membrane potential (graded, no spikes)" for k, v in nodes.items() if isinstance(v, LIPopulation)},
    }


@dataclass(frozen=True, eq=False)
class Graph:
    """A network: ``nodes`` (name -> node), ``projections`` (spike edges), step ``dt_ms`` and
    ``metadata``. Conventions (dt, update order, delay, reset and integration of each population)
    are filled into ``metadata`` under their keys unless given.

    Checks on construction: node types and names, drive and projection endpoints exist with matching
    sizes, LIF populations share ``dt_ms`` with the graph, Poisson rates fit ``dt_ms``, zero-delay
    projections form no cycle.
    """

    nodes: dict
    projections: list = field(default_factory=list)
    dt_ms: float = 1.0
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        o = "Graph"
        if not isinstance(self.nodes, dict) or not self.nodes:
            raise ParameterError(o, "nodes", type(self.nodes).__name__, "a non-empty dict name -> node")
        dt = _positive(o, "dt_ms", self.dt_ms)
        for name, node in self.nodes.items():
            _name(o, "nodes key", name)
            if not isinstance(node, NODE_TYPES):
                raise ParameterError(o, f"nodes[{name!r}]", type(node).__name__,
                                     "one of " + ", ".join(t.__name__ for t in NODE_TYPES))
            if isinstance(node, EGRULayer) and not isinstance(self.nodes.get(node.pre), POPULATION_TYPES + (SpikeSource,)):
                raise ParameterError(o, f"nodes[{name!r}].pre", node.pre, "the name of a population or spike source")
            if (isinstance(node, (LIFPopulation, CubaLIFPopulation, ALIFPopulation, LIPopulation))
                    and not math.isclose(node.dt_ms, dt, rel_tol=1e-12)):
                raise ParameterError(o, f"nodes[{name!r}].dt_ms", node.dt_ms, f"the graph's dt_ms={dt}")
            if isinstance(node, DRIVE_TYPES):
                tgt = self.nodes.get(node.target)
                if not isinstance(tgt, POPULATION_TYPES):
                    raise ParameterError(o, f"nodes[{name!r}].target", node.target, "the name of a population")
                if node.n != tgt.n:
                    raise ShapeError(o, f"drive {name!r} has {node.n} channels, population {node.target!r} has {tgt.n}")
                if isinstance(node, PoissonInput):
                    node.check_dt(dt, o, f"nodes[{name!r}].rate_hz")
        projections = list(self.projections)
        for k, p in enumerate(projections):
            if not isinstance(p, Projection):
                raise ParameterError(o, f"projections[{k}]", type(p).__name__, "a Projection")
            src, dst = self.nodes.get(p.pre), self.nodes.get(p.post)
            if not isinstance(src, POPULATION_TYPES + (SpikeSource,)):
                raise ParameterError(o, f"projections[{k}].pre", p.pre, "the name of a population or spike source")
            if not isinstance(dst, POPULATION_TYPES):
                raise ParameterError(o, f"projections[{k}].post", p.post, "the name of a population")
            if p.n_pre != src.n:
                raise ShapeError(o, f"projection {p.pre!r} -> {p.post!r} has {p.n_pre} presynaptic rows, "
                                    f"{p.pre!r} has {src.n} neurons")
            if p.nnz and int(p.indices.max()) >= dst.n:
                raise ParameterError(o, f"projections[{k}].indices", int(p.indices.max()),
                                     f"< {dst.n}, the size of {p.post!r}")
            if isinstance(p, (Conv2dProjection, Pool2dProjection)):
                if src.shape != p.in_shape:
                    raise ShapeError(o, f"projection {p.pre!r} -> {p.post!r} reads shape {p.in_shape}, "
                                        f"{p.pre!r} has shape {src.shape}")
                if dst.shape != p.out_shape:
                    raise ShapeError(o, f"projection {p.pre!r} -> {p.post!r} writes shape {p.out_shape}, "
                                        f"{p.post!r} has shape {dst.shape}")
        meta = _conventions(self.nodes, dt)
        meta.update(self.metadata or {})
        object.__setattr__(self, "nodes", dict(self.nodes))
        object.__setattr__(self, "projections", projections)
        object.__setattr__(self, "dt_ms", dt)
        object.__setattr__(self, "metadata", meta)
        self.topological_order()  # raises on a zero-delay cycle

    def populations(self) -> dict:
        """name -> population node, in graph order."""
        return {k: v for k, v in self.nodes.items() if isinstance(v, POPULATION_TYPES)}

    def sources(self) -> dict:
        """name -> SpikeSource, in graph order."""
        return {k: v for k, v in self.nodes.items() if isinstance(v, SpikeSource)}

    def drives_of(self, population: str) -> list:
        """(name, drive) pairs targeting ``population``, in graph order."""
        return [(k, v) for k, v in self.nodes.items() if isinstance(v, DRIVE_TYPES) and v.target == population]

    def projections_into(self, population: str) -> list:
        return [p for p in self.projections if p.post == population]

    def topological_order(self) -> list:
        """Spiking node names (sources and populations) such that every zero-delay projection goes
        from an earlier node to a later one; ties keep graph order. Raises ParameterError on a cycle."""
        names = [k for k, v in self.nodes.items() if isinstance(v, POPULATION_TYPES + (SpikeSource,))]
        deps = {k: set() for k in names}
        for p in self.projections:
            if p.delay_steps == 0:
                deps[p.post].add(p.pre)
        order, done = [], set()
        while len(order) < len(names):
            ready = [k for k in names if k not in done and deps[k] <= done]
            if not ready:
                cycle = sorted(k for k in names if k not in done)
                raise ParameterError("Graph", "projections", cycle,
                                     "free of zero-delay cycles (give a projection of the loop delay_steps >= 1)")
            order.append(ready[0])
            done.add(ready[0])
        return order
