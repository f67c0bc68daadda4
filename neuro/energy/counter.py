"""Operation counters: observers that attach to a model, record what a run costs, and detach.

    with OpCounter(net) as counter:      # forward hooks on every counted module
        out = net(x_seq)                 # outputs bit-identical to an unobserved run
    counts = counter.counts()            # per layer, per time step

Every module of the model must be countable: a container the counter walks through, or a module
with a counting rule (:mod:`neuro.energy.rules`); otherwise :class:`UnsupportedLayerError` lists
every one before anything runs. Time steps: a module in step mode 'm' (or, for modules without a
step mode, a counter made with ``multistep=True``) is fed ``[T, ...]`` and each call adds ``T``
steps; otherwise each call is one step. Calls append along time: count one run per counter (or
call :meth:`OpCounter.reset` between runs).

Whole-run engines are counted from what they return: :func:`count_recurrent` turns a
:class:`~neuro.models.RunResult` of a :class:`~neuro.models.RecurrentNetwork` into the same
:class:`Counts`. :func:`ann_twin` builds the float ANN of a :class:`~neuro.models.SpikingSequential`
(its synapse weights, ReLU in place of the neurons), which the same counter observes for a
like-for-like comparison.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..core.errors import ParameterError, ShapeError, UnsupportedLayerError
from .rules import OP_TYPES, SPIKE_EVENT_BYTES, Activity, fan_out, is_container, rule_for


@dataclass
class LayerCounts:
    """Operations of one layer. ``ops[op]``: int64 [T] per time step; ``neurons``: units per step
    (neuron layers, and activation layers of an ANN), ``kind``: 'synapse', 'neuron', 'nonlinear' or 'passive'."""

    name: str
    module_type: str
    kind: str
    ops: dict = field(default_factory=dict)
    neurons: int = 0

    @property
    def steps(self) -> int:
        return max((len(v) for v in self.ops.values()), default=0)

    def series(self, op: str, steps: int | None = None) -> np.ndarray:
        """int64 [steps] counts of ``op`` (zeros where none)."""
        steps = self.steps if steps is None else steps
        out = np.zeros(steps, dtype=np.int64)
        v = self.ops.get(op)
        if v is not None:
            out[:len(v)] = v
        return out

    def total(self, op: str) -> int:
        v = self.ops.get(op)
        return int(np.sum(v)) if v is not None else 0


@dataclass
class Counts:
    """Per-layer counts of one run (``layers`` in the order the model runs them)."""

    layers: dict
    source: str = ""

    @property
    def steps(self) -> int:
        return max((lc.steps for lc in self.layers.values()), default=0)

    def total(self, op: str) -> int:
        return sum(lc.total(op) for lc in self.layers.values())

    def totals(self) -> dict:
        return {op: self.total(op) for op in OP_TYPES}

    def per_timestep(self, op: str) -> np.ndarray:
        T = self.steps
        return sum((lc.series(op, T) for lc in self.layers.values()), np.zeros(T, dtype=np.int64))

    @property
    def neurons(self) -> int:
        return sum(lc.neurons for lc in self.layers.values())

    def summary(self) -> dict:
        """Overall figures: synaptic ops (effective and dense), neuron updates, spikes and rate, bytes."""
        t = self.totals()
        updates = t["neuron_update_active"] + t["neuron_update_inactive"]
        return {"steps": self.steps, "synops_ac": t["ac"], "synops_mac": t["mac"],
                "synops_dense_ac": t["ac_dense"], "synops_dense_mac": t["mac_dense"],
                "neuron_updates": updates, "neuron_updates_active": t["neuron_update_active"],
                "neuron_updates_inactive": t["neuron_update_inactive"], "spikes": t["spike"],
                "spike_rate": t["spike"] / updates if updates else 0.0, "nonlinear": t["nonlinear"],
                "mem_read_bytes": t["mem_read_byte"], "mem_write_bytes": t["mem_write_byte"],
                "packets": t["packet"], "hops": t["hop"]}


def _plan(model: nn.Module) -> list:
    """(name, module, rule) for every counted module; raises UnsupportedLayerError listing the rest."""
    plan, bad = [], []

    def walk(name, m):
        rule = rule_for(m)
        if rule is not None:
            plan.append((name or type(m).__name__, m, rule))
            return
        if is_container(m):
            for child_name, child in m.named_children():
                walk(f"{name}.{child_name}" if name else child_name, child)
            return
        bad.append((name or type(m).__name__, f"{type(m).__module__}.{type(m).__qualname__}"))

    walk("", model)
    if bad:
        raise UnsupportedLayerError(bad, context="energy counting")
    return plan


class OpCounter:
    """Counts the operations of every layer of ``model`` while attached (a context manager).

    Args:
        model: the network to observe.
        multistep: whether modules without a step mode of their own (Linear, ReLU) see a leading
            time axis; None: True when any module of the model is in step mode 'm'.
    """

    def __init__(self, model: nn.Module, multistep: bool | None = None):
        if not isinstance(model, nn.Module):
            raise ParameterError("OpCounter", "model", type(model).__name__, "a torch.nn.Module")
        self.model = model
        self._plan = _plan(model)
        if multistep is None:
            multistep = any(getattr(m, "step_mode", "s") == "m" for m in model.modules())
        self.multistep = bool(multistep)
        self._handles: list = []
        self.reset()

    def reset(self) -> None:
        """Forget everything counted so far."""
        self._layers = {name: LayerCounts(name, type(m).__name__, rule.kind) for name, m, rule in self._plan}
        if getattr(self, "_activity", None) is None:
            self._activity = Activity()
        self._activity.clear()

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def _hook(self, name, rule):
        layer = self._layers_ref(name)

        def hook(module, inputs, output):
            with torch.no_grad():
                x = inputs[0] if inputs else output
                mode = getattr(module, "step_mode", None)
                timed = self.multistep if mode is None else mode == "m"
                y = output[0] if isinstance(output, tuple) else output
                if not timed:
                    x, y = x.unsqueeze(0), y.unsqueeze(0)
                ops = rule.fn(module, x, y, self._activity)
                lc = layer()
                if rule.kind in ("neuron", "nonlinear"):  # units a chip must host (static power)
                    lc.neurons = y[0].numel()
                for op, v in ops.items():
                    vals = np.asarray(torch.as_tensor(v, dtype=torch.int64).reshape(-1))
                    prev = lc.ops.get(op)
                    lc.ops[op] = vals if prev is None else np.concatenate([prev, vals])
        return hook

    def _layers_ref(self, name):
        return lambda: self._layers[name]

    def attach(self) -> "OpCounter":
        if not self._handles:
            self._handles = [m.register_forward_hook(self._hook(name, rule)) for name, m, rule in self._plan]
        return self

    def detach(self) -> None:
        """Remove every hook this counter added (and drop the tensors its activity cache holds)."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self._activity.clear()

    def __enter__(self) -> "OpCounter":
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.detach()

    def counts(self, source: str = "") -> Counts:
        """What was counted so far (a copy)."""
        layers = {n: LayerCounts(lc.name, lc.module_type, lc.kind, {k: v.copy() for k, v in lc.ops.items()},
                                 lc.neurons) for n, lc in self._layers.items()}
        return Counts(layers, source or type(self.model).__name__)


def count_run(model: nn.Module, x: torch.Tensor, multistep: bool | None = None):
    """Run ``model(x)`` under an :class:`OpCounter`; returns (output, Counts)."""
    with OpCounter(model, multistep) as c:
        out = model(x)
    return out, c.counts()


# -- whole-run engines -----------------------------------------------------------------------------
def count_recurrent(net, result) -> Counts:
    """Counts of a :class:`~neuro.models.RecurrentNetwork` run from its :class:`RunResult`.

    A spike emitted at step t reaches its targets at step t + 1 (the engine's convention), so the
    synaptic operations of step t are :math:`\\sum_{i \\in S(t-1)} \\mathrm{fanout}_i` with the
    nonzero out-degree of the CSR rows; spikes of the last step are never delivered. The external
    drive is the population's input and is not counted as synaptic operations. All synaptic ops
    are ACs (binary spikes). Dense: every neuron times every (pre, post) pair, every step after
    the first.
    """
    from ..models.recurrent import RecurrentNetwork

    if not isinstance(net, RecurrentNetwork):
        raise ParameterError("count_recurrent", "net", type(net).__name__, "a RecurrentNetwork")
    ev = result.spikes
    if tuple(ev.shape) != (net.n,):
        raise ShapeError("count_recurrent", f"run has {ev.shape} neurons per step, network has {net.n}")
    T = ev.steps
    fan = fan_out(net.synapses).numpy()                                   # [N]
    t_idx = np.repeat(np.arange(T), ev.counts().numpy())                  # step of each spike
    emitted = np.bincount(t_idx, weights=fan[ev.indices.numpy()], minlength=T).astype(np.int64)  # [T]
    spikes = ev.counts().numpy().astype(np.int64)
    syn = np.zeros(T, dtype=np.int64)
    syn[1:] = emitted[:-1]
    dense = np.full(T, net.n * net.n, dtype=np.int64)
    dense[0] = 0
    wb = net.synapses.values.element_size() + net.synapses.indices.element_size()
    vb = net.v0.element_size()
    zeros = np.zeros(T, dtype=np.int64)
    syn_ops = {"ac": syn, "mac": zeros.copy(), "ac_dense": dense, "mac_dense": zeros.copy(),
               "mem_read_byte": syn * wb + np.r_[0, spikes[:-1]] * SPIKE_EVENT_BYTES,
               "mem_write_byte": np.full(T, net.n * vb, dtype=np.int64)}
    neu_ops = {"neuron_update_active": spikes, "neuron_update_inactive": net.n - spikes, "spike": spikes,
               "mem_read_byte": np.full(T, net.n * vb, dtype=np.int64),
               "mem_write_byte": net.n * vb + spikes * SPIKE_EVENT_BYTES}
    layers = {"synapses": LayerCounts("synapses", "SparseLinear", "synapse", syn_ops),
              "neurons": LayerCounts("neurons", "LIF", "neuron", neu_ops, net.n)}
    return Counts(layers, "RecurrentNetwork")


# -- the ANN twin ------------------------------------------------------------------------------------
def ann_twin(model: nn.Module) -> nn.Sequential:
    """The float ANN of a SpikingSequential: same synapse weights (torch.nn.Linear / Conv2d), ReLU for
    every neuron layer, Flatten kept. Fed the spike rates (time mean of the input), it is the network
    rate-based conversion starts from. Raises UnsupportedLayerError for layers it cannot map."""
    from ..core.loop import StatefulModule
    from ..models.sequential import Flatten
    from ..synapses.conv import Conv2d
    from ..synapses.linear import Linear
    from ..synapses.sparse import SparseLinear

    layers, bad = [], []
    for name, m in model.named_children():
        if isinstance(m, (Linear, SparseLinear)):
            w = m.weight if isinstance(m, Linear) else m.to_dense()
            lin = nn.Linear(w.shape[1], w.shape[0], bias=m.bias is not None, dtype=w.dtype)
            with torch.no_grad():
                lin.weight.copy_(w)
                if m.bias is not None:
                    lin.bias.copy_(m.bias)
            layers.append(lin)
        elif isinstance(m, Conv2d):
            conv = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                             bias=m.bias is not None, dtype=m.weight.dtype)
            with torch.no_grad():
                conv.weight.copy_(m.weight)
                if m.bias is not None:
                    conv.bias.copy_(m.bias)
            layers.append(conv)
        elif isinstance(m, StatefulModule):
            layers.append(nn.ReLU())
        elif isinstance(m, Flatten):
            layers.append(nn.Flatten(m.start_dim, m.end_dim))
        else:
            bad.append((name, f"{type(m).__module__}.{type(m).__qualname__}"))
    if bad:
        raise UnsupportedLayerError(bad, context="building the ANN twin")
    return nn.Sequential(*layers)
