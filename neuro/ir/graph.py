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
  a LIF with decay 1: its charge ``V + X`` has no leak term to round);
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
                      v_init=_float_array(o, "v_init", init, (n,)), tau_ms=tau, dt_ms=dt)
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
    Fields: n, v_th (> 0), v_reset (None = soft reset), strict_threshold, v_init [n] (scalar broadcast).

    Shape: v_init [n]; state and spikes [n] per step.
    """

    n: int
    v_th: float = 1.0
    v_reset: Optional[float] = 0.0
    strict_threshold: bool = False
    v_init: Union[float, np.ndarray] = 0.0

    def __post_init__(self):
        o = "IFPopulation"
        n = _int(o, "n", self.n, 1)
        values = dict(n=n, v_th=_positive(o, "v_th", self.v_th),
                      v_reset=None if self.v_reset is None else _finite(o, "v_reset", self.v_reset),
                      strict_threshold=_bool(o, "strict_threshold", self.strict_threshold),
                      v_init=_float_array(o, "v_init", self.v_init, (n,)))
        for k, v in values.items():
            object.__setattr__(self, k, v)

    @property
    def soft_reset(self) -> bool:
        return self.v_reset is None


Population = Union[LIFPopulation, IFPopulation]
POPULATION_TYPES = (LIFPopulation, IFPopulation)


# ----------------------------------------------------------------------------- sources and drives
@dataclass(frozen=True, eq=False)
class SpikeSource:
    """``n`` binary spike channels whose spikes are given at run time (Shape: [T, n]); NIR's Input."""

    n: int

    def __post_init__(self):
        object.__setattr__(self, "n", _int("SpikeSource", "n", self.n, 1))


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
Node = Union[LIFPopulation, IFPopulation, SpikeSource, PoissonInput, ConstantCurrent, GivenCurrent]
NODE_TYPES = POPULATION_TYPES + (SpikeSource,) + DRIVE_TYPES


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


# ----------------------------------------------------------------------------- graph
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
                              for k, v in nodes.items() if isinstance(v, LIFPopulation)}
                             | {k: "jump" for k, v in nodes.items() if isinstance(v, IFPopulation)},
        "integration": {k: (v.integration or "decay") for k, v in nodes.items() if isinstance(v, LIFPopulation)},
        "reset": {k: ("soft (subtract v_th)" if v.soft_reset else "hard (to v_reset)")
                  for k, v in nodes.items() if isinstance(v, POPULATION_TYPES)},
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
            if isinstance(node, LIFPopulation) and not math.isclose(node.dt_ms, dt, rel_tol=1e-12):
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
