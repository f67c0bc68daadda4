r"""From the IR back to runnable neuro modules (imports torch; loaded on first use).

* :class:`GraphNetwork` runs any IR :class:`~neuro.ir.graph.Graph` in PyTorch, step for step in the
  IR's semantics (module docstring of :mod:`neuro.ir.graph`): populations in the topological order
  of the zero-delay projections, each charged with its drives plus
  :math:`\sum_{Q} W_Q\, S^Q(t - d_Q)`, through neuro's own step functions (:func:`~neuro.neurons.lif_step`,
  :func:`~neuro.neurons.if_step`, :func:`~neuro.neurons.cuba_lif_step`, :func:`~neuro.neurons.alif_step`).
  It is the model a NIR file imports into, and the float reference a quantized target is compared with.
* :class:`Pool2d`: sum / average pooling of spikes over [C, H, W] (NIR's ``SumPool2d`` / ``AvgPool2d``),
  in step modes 's' and 'm', so that pooling layers have a module to trace and to import into.

Shape: GraphNetwork inputs {source: [T, B, n]} -> {population: spikes [T, B, n]} (and voltages).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import ParameterError, ShapeError, StepModeError
from ..core.surrogate import ATan, spike
from ..io import savable
from ..neurons.alif import ALIFParams, ALIFState, alif_step
from ..neurons.cuba import CubaLIFParams, CubaLIFState, cuba_lif_step
from ..neurons.if_ import IFParams, IFState, if_step
from ..neurons.lif import LIFParams, LIFState, lif_charge, lif_step
from .graph import (ALIFPopulation, ConstantCurrent, CubaLIFPopulation, EGRULayer, GivenCurrent, Graph,
                    IFPopulation, LIFPopulation, LIPopulation, PoissonInput, POOL_KINDS, ThresholdPopulation)


# ----------------------------------------------------------------------------- pooling module
@savable("Pool2d")
class Pool2d(nn.Module):
    """Sum (``kind='sum'``) or average (``'avg'``, padded zeros counted) pooling over windows of
    ``kernel_size`` with ``stride`` (default: the window) and zero ``padding``.

    Shape: 's' [B, C, H, W] -> [B, C, H', W']; 'm' [T, B, C, H, W] -> [T, B, C, H', W'].
    """

    def __init__(self, kind: str = "sum", kernel_size=2, stride=None, padding=0, step_mode: str = "s"):
        super().__init__()
        if kind not in POOL_KINDS:
            raise ParameterError("Pool2d", "kind", kind, "one of " + ", ".join(POOL_KINDS))
        pair = (lambda v: (v, v) if isinstance(v, int) else tuple(v))
        self.kind, self.kernel_size = kind, pair(kernel_size)
        self.stride = self.kernel_size if stride is None else pair(stride)
        self.padding = pair(padding)
        if step_mode not in ("s", "m"):
            raise StepModeError(f"Pool2d.step_mode must be 's' or 'm', got {step_mode!r}")
        self.step_mode = step_mode

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ShapeError("Pool2d", f"expected [B, C, H, W], got {tuple(x.shape)}")
        y = F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, count_include_pad=True)
        return y * (self.kernel_size[0] * self.kernel_size[1]) if self.kind == "sum" else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return self._pool(x)
        if x.dim() != 5:
            raise StepModeError(f"Pool2d in step mode 'm' expects [T, B, C, H, W], got {tuple(x.shape)}")
        return self._pool(x.flatten(0, 1)).unflatten(0, x.shape[:2])

    def get_config(self) -> dict:
        return {"kind": self.kind, "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "step_mode": self.step_mode}

    @classmethod
    def from_config(cls, config: dict) -> "Pool2d":
        return cls(**config)


# ----------------------------------------------------------------------------- population dynamics
def _v0(node, B, dtype):
    return torch.tensor(np.asarray(node.v_init), dtype=dtype).expand(B, node.n).clone()


def _lif(node):
    p = LIFParams(decay=node.decay, v_th=node.v_th, v_reset=node.v_reset, v_rest=node.v_rest,
                  decay_input=node.decay_input, strict_threshold=node.strict_threshold)
    return p, lif_step, lambda B, dt: LIFState(_v0(node, B, dt))


def _if(node):
    p = IFParams(v_th=node.v_th, v_reset=node.v_reset, strict_threshold=node.strict_threshold)
    return p, if_step, lambda B, dt: IFState(_v0(node, B, dt))


def _cuba(node):
    if node.decay_syn == 0.0:  # no current filter: a plain LIF
        return _lif(node)
    p = CubaLIFParams(decay=node.decay, decay_syn=node.decay_syn, v_th=node.v_th, v_reset=node.v_reset,
                      v_rest=node.v_rest, decay_input=node.decay_input, strict_threshold=node.strict_threshold)
    return p, cuba_lif_step, lambda B, dt: CubaLIFState(torch.zeros(B, node.n, dtype=dt), _v0(node, B, dt))


def _alif(node):
    tau_adapt = math.inf if node.adapt_decay == 1.0 else -node.dt_ms / math.log(node.adapt_decay)
    p = ALIFParams(decay=node.decay, tau_adapt_ms=min(tau_adapt, 1e300), beta=node.beta, dt_ms=node.dt_ms,
                   integration="exact", v_th=node.v_th, v_reset=node.v_reset, v_rest=node.v_rest,
                   decay_input=node.decay_input, strict_threshold=node.strict_threshold)
    return p, alif_step, lambda B, dt: ALIFState(_v0(node, B, dt), torch.zeros(B, node.n, dtype=dt))


class LIState(NamedTuple):
    i: torch.Tensor  # synaptic current (zeros when decay_syn is 0)
    v: torch.Tensor  # membrane potential, also the output


def li_step(x, state: LIState, p: LIFParams, decay_syn: float):
    """Leaky integrator: the LIF charge (:func:`~neuro.neurons.lif_charge`) without threshold or reset.
    Returns (v, state): the output is the membrane potential. Shape: [B, n]."""
    i = state.i * decay_syn + x
    v = lif_charge(i, state.v, p)
    return v, LIState(i, v)


def _li(node):
    p = LIFParams(decay=node.decay, v_rest=node.v_rest, decay_input=node.decay_input)
    return p, (lambda x, s, p, sur: li_step(x, s, p, node.decay_syn)), \
        lambda B, dt: LIState(torch.zeros(B, node.n, dtype=dt), _v0(node, B, dt))


class ThresholdState(NamedTuple):
    v: torch.Tensor  # the last input (kept for record_v; not used by the next step)


def _threshold(node):
    def step(x, state, p, sur):
        return spike(x - node.v_th, sur, True), ThresholdState(x)
    return None, step, lambda B, dt: ThresholdState(torch.zeros(B, node.n, dtype=dt))


# population type -> fn(node) -> (parameter record, step function, initial state(batch, dtype))
DYNAMICS = {LIFPopulation: _lif, IFPopulation: _if, CubaLIFPopulation: _cuba, ALIFPopulation: _alif,
            LIPopulation: _li, ThresholdPopulation: _threshold}


# ----------------------------------------------------------------------------- the graph runner
class GraphNetwork(nn.Module):
    """Runs an IR graph in PyTorch (float64 by default). ``GraphNetwork(graph)(inputs, steps)``.

    Args of :meth:`forward`:
        inputs: {source name: spikes [T, B, n]} (a single tensor when the graph has one source; None
            when it has none, then give ``steps`` and optionally ``batch``).
        steps: number of steps (default: the inputs' T).
        record_v: also return the membrane potential after each step's reset.

    Returns {population: spikes [T, B, n]} (and {population: v [T, B, n]} with ``record_v``); a
    non-spiking :class:`~neuro.ir.LIPopulation` gives its membrane potential in place of spikes.
    Unsupported nodes (EGRU layers) raise :class:`~neuro.core.errors.UnsupportedLayerError`.
    """

    def __init__(self, graph: Graph, dtype: torch.dtype = torch.float64):
        super().__init__()
        from ..core.errors import UnsupportedLayerError

        if not isinstance(graph, Graph):
            raise ParameterError("GraphNetwork", "graph", type(graph).__name__, "a neuro.ir.Graph")
        bad = [(k, type(v).__name__) for k, v in graph.nodes.items() if isinstance(v, EGRULayer)]
        if bad:
            raise UnsupportedLayerError(bad, context="GraphNetwork (spiking populations only)")
        self.graph, self.dtype = graph, dtype
        self.order = graph.topological_order()
        self.weights = {i: torch.as_tensor(p.to_dense(graph.nodes[p.post].n), dtype=dtype)
                        for i, p in enumerate(graph.projections)}                  # [n_post, n_pre]
        self.max_delay = max([p.delay_steps for p in graph.projections], default=0)
        self.surrogate = ATan()

    def forward(self, inputs=None, steps: Optional[int] = None, record_v: bool = False, batch: int = 1):
        g = self.graph
        sources = g.sources()
        if isinstance(inputs, torch.Tensor) or isinstance(inputs, np.ndarray):
            if len(sources) != 1:
                raise ParameterError("GraphNetwork", "inputs", "a tensor", f"a dict over the sources {sorted(sources)}")
            inputs = {next(iter(sources)): inputs}
        inputs = {k: torch.as_tensor(v, dtype=self.dtype) for k, v in (inputs or {}).items()}
        for name, node in sources.items():
            x = inputs.get(name)
            if x is None or x.dim() != 3 or x.shape[-1] != node.n:
                got = None if x is None else tuple(x.shape)
                raise ShapeError("GraphNetwork", f"source {name!r} needs spikes [T, B, {node.n}], got {got}")
        if inputs:
            T, B = next(iter(inputs.values())).shape[:2]
            steps = T if steps is None else steps
            if steps > T:
                raise ShapeError("GraphNetwork", f"steps={steps} but the inputs hold {T} steps")
        elif steps is None:
            raise ParameterError("GraphNetwork", "steps", None, "an integer >= 1 when there are no inputs")
        else:
            B = batch
        drives = {}
        for name, node in g.nodes.items():
            if isinstance(node, PoissonInput):
                drives[name] = torch.as_tensor(node.values(steps, g.dt_ms), dtype=self.dtype)
            elif isinstance(node, GivenCurrent):
                if node.values.shape[0] < steps:
                    raise ShapeError("GraphNetwork", f"drive {name!r} holds {node.values.shape[0]} steps, run needs {steps}")
                drives[name] = torch.tensor(node.values, dtype=self.dtype)
            elif isinstance(node, ConstantCurrent):
                drives[name] = torch.tensor(node.values, dtype=self.dtype).expand(steps, node.n)
        pops = g.populations()
        dyn = {k: DYNAMICS[type(v)](v) for k, v in pops.items()}
        state = {k: dyn[k][2](B, self.dtype) for k, v in pops.items()}
        into = {k: [(i, p) for i, p in enumerate(g.projections) if p.post == k] for k in pops}
        drives_of = {k: [d for d, _ in g.drives_of(k)] for k in pops}
        history = {k: [] for k in self.order}                                       # spikes [B, n] per step
        out = {k: [] for k in pops}
        vs = {k: [] for k in pops}
        for t in range(steps):
            for name in self.order:
                if name in sources:
                    history[name].append(inputs[name][t])
                    continue
                node = pops[name]
                x = torch.zeros(B, node.n, dtype=self.dtype)                        # [B, n]
                for d in drives_of[name]:
                    x = x + drives[d][t]
                for i, p in into[name]:
                    k = t - p.delay_steps
                    if k >= 0:
                        x = x + history[p.pre][k] @ self.weights[i].t()
                params, step, _ = dyn[name]
                s, state[name] = step(x, state[name], params, self.surrogate)
                history[name].append(s)
                out[name].append(s)
                if record_v:
                    vs[name].append(state[name].v)
        spikes = {k: torch.stack(v) for k, v in out.items()}                        # [T, B, n]
        if record_v:
            return spikes, {k: torch.stack(v) for k, v in vs.items()}
        return spikes


def to_module(graph: Graph) -> GraphNetwork:
    """A runnable neuro model of ``graph`` (:class:`GraphNetwork`)."""
    return GraphNetwork(graph)


__all__ = ["DYNAMICS", "GraphNetwork", "Pool2d", "to_module"]
