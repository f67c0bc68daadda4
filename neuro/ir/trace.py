"""Build an IR :class:`~neuro.ir.graph.Graph` from neuro's modules.

:func:`to_ir` accepts

* a :class:`~neuro.models.RecurrentNetwork`: one :class:`LIFPopulation` ``"neurons"`` (``v_init`` =
  the network's ``v0``), its synapses as the projection ``"recurrent"`` with ``delay_steps=1``, its
  drive as a :class:`PoissonInput` / :class:`ConstantCurrent` / :class:`GivenCurrent` node
  ``"drive"``, and a synapse bias as a :class:`ConstantCurrent` ``"bias"``;
* a feed-forward chain (an ``nn.Sequential``, nested ones included, or a list of modules) of
  synapses (:class:`~neuro.synapses.Linear`, :class:`~neuro.synapses.SparseLinear`), each followed by
  a neuron layer (:class:`~neuro.neurons.LIF`, :class:`~neuro.neurons.IF`). The input is a
  :class:`SpikeSource` ``"input"``; each neuron layer becomes a population named by its module path
  (e.g. ``"1"``, ``"block.lif"``), fed by the preceding synapse with ``delay_steps=0``; a bias
  becomes a :class:`ConstantCurrent` ``"<path>.bias"``. Any other module, and any break of the
  synapse / neuron alternation, is reported in one :class:`~neuro.core.errors.UnsupportedLayerError`
  listing every offending module path before anything is built.

Weights are exported in float64 (exact for float32 models). Modules are dispatched through a
type registry (exact types: a subclass with other dynamics is not silently exported as its base).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from ..core.errors import ParameterError, ShapeError, UnsupportedLayerError
from ..models.recurrent import ConstantDrive, GivenDrive, PoissonDrive, RecurrentNetwork
from ..neurons.if_ import IF, IFParams
from ..neurons.lif import LIF, LIFParams
from ..synapses.linear import Linear
from ..synapses.sparse import SparseLinear
from .graph import (ConstantCurrent, GivenCurrent, Graph, IFPopulation, LIFPopulation, PoissonInput,
                    Projection, SpikeSource)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy()


# ----------------------------------------------------------------------------- parameter records -> nodes
def lif_population(p: LIFParams, n: int, v_init=None) -> LIFPopulation:
    """The IR node of ``n`` neurons with parameters ``p`` (``v_init`` default: ``p.v_init``)."""
    raw = p.decay is not None
    return LIFPopulation(n=n, decay=p.decay_factor, v_th=p.v_th, v_reset=p.v_reset, v_rest=p.v_rest,
                         decay_input=p.decay_input, strict_threshold=p.strict_threshold,
                         v_init=p.v_init if v_init is None else v_init,
                         tau_ms=None if raw else p.tau_ms, dt_ms=p.dt_ms,
                         integration=None if raw else p.integration)


def if_population(p: IFParams, n: int) -> IFPopulation:
    return IFPopulation(n=n, v_th=p.v_th, v_reset=p.v_reset, strict_threshold=p.strict_threshold,
                        v_init=p.v_init)


# ----------------------------------------------------------------------------- recurrent networks
def _poisson(d: PoissonDrive, target: str, n: int):
    return PoissonInput(target, n, d.n_sources, d.rate_hz, d.weight, d.seed)


def _constant(d: ConstantDrive, target: str, n: int):
    return ConstantCurrent(target, np.broadcast_to(np.asarray(d.values, dtype=np.float64), (n,)))


def _given(d: GivenDrive, target: str, n: int):
    return GivenCurrent(target, np.asarray(d.values, dtype=np.float64))


# drive record type -> builder(drive, target name, n) -> IR drive node
DRIVES: dict[type, Callable] = {PoissonDrive: _poisson, ConstantDrive: _constant, GivenDrive: _given}


def trace_recurrent(net: RecurrentNetwork) -> Graph:
    """Graph of a :class:`RecurrentNetwork` (see the module docstring for the node names)."""
    syn, n = net.synapses, net.n
    nodes = {"neurons": lif_population(net.params, n, _np(net.v0))}
    if net.drive is not None:
        build = DRIVES.get(type(net.drive))
        if build is None:
            raise UnsupportedLayerError([("drive", type(net.drive).__name__)], context="the IR")
        nodes["drive"] = build(net.drive, "neurons", n)
    if syn.bias is not None:
        nodes["bias"] = ConstantCurrent("neurons", _np(syn.bias))
    proj = Projection("neurons", "neurons", syn.indptr.cpu().numpy(), syn.indices.cpu().numpy(),
                      _np(syn.values), delay_steps=1, name="recurrent")
    return Graph(nodes, [proj], dt_ms=net.params.dt_ms, metadata={"source": "RecurrentNetwork"})


# ----------------------------------------------------------------------------- feed-forward chains
def _linear_edge(m: Linear, pre: str, post: str, path: str):
    proj = Projection.from_dense(pre, post, _np(m.weight), delay_steps=0, name=path)
    return proj, (None if m.bias is None else _np(m.bias)), m.in_features, m.out_features


def _sparse_edge(m: SparseLinear, pre: str, post: str, path: str):
    proj = Projection(pre, post, m.indptr.cpu().numpy(), m.indices.cpu().numpy(), _np(m.values),
                      delay_steps=0, name=path)
    return proj, (None if m.bias is None else _np(m.bias)), m.n_in, m.n_out


# synapse module type -> fn(module, pre, post, path) -> (Projection, bias [n_out] or None, n_in, n_out)
SYNAPSES: dict[type, Callable] = {Linear: _linear_edge, SparseLinear: _sparse_edge}
# neuron module type -> fn(module, n) -> population node
NEURONS: dict[type, Callable] = {
    LIF: lambda m, n: lif_population(m.params, n),
    IF: lambda m, n: if_population(m.params, n),
}


def _flatten(obj, prefix: str = "") -> list:
    """(path, module) pairs of a list or (nested) nn.Sequential, in execution order."""
    items = obj.named_children() if isinstance(obj, nn.Sequential) else ((str(i), m) for i, m in enumerate(obj))
    out = []
    for name, m in items:
        path = f"{prefix}{name}"
        if isinstance(m, nn.Sequential):
            out.extend(_flatten(m, path + "."))
        else:
            out.append((path, m))
    return out


def trace_chain(modules, n_inputs: Optional[int] = None) -> Graph:
    """Graph of a feed-forward chain ``[synapse, neuron, synapse, neuron, ...]``.

    ``n_inputs``, when given, must equal the input width of the first synapse (ShapeError otherwise).
    """
    flat = _flatten(modules)
    bad = []
    for k, (path, m) in enumerate(flat):
        kind = "synapse" if type(m) in SYNAPSES else "neuron" if type(m) in NEURONS else None
        if kind is None:
            bad.append((path, f"{type(m).__name__} (supported: "
                              f"{', '.join(t.__name__ for t in (*SYNAPSES, *NEURONS))})"))
            continue
        want = "synapse" if k % 2 == 0 else "neuron"
        if kind != want:
            bad.append((path, f"{type(m).__name__} where a {want} layer must come "
                              "(the chain alternates synapse, neuron, starting with a synapse)"))
    if not flat:
        bad.append(("<chain>", "empty: nothing to export"))
    elif len(flat) % 2 == 1 and not bad:
        path, m = flat[-1]
        bad.append((path, f"{type(m).__name__} at the end: a synapse must be followed by a neuron layer"))
    if bad:
        raise UnsupportedLayerError(bad, context="the IR (feed-forward chain)")

    nodes = {"input": None}  # placeholder: the source's width is the first synapse's input width
    projections, pre, width = [], "input", n_inputs
    for (s_path, syn), (n_path, neuron) in zip(flat[0::2], flat[1::2]):
        name = n_path if n_path not in nodes else f"{n_path}#pop"
        proj, bias, n_in, n_out = SYNAPSES[type(syn)](syn, pre, name, s_path)
        if width is not None and n_in != width:
            what = f"n_inputs={width}" if pre == "input" else f"the layer before it gives {width}"
            raise ShapeError("to_ir", f"{s_path!r} takes {n_in} inputs, {what}")
        if pre == "input":
            nodes["input"] = SpikeSource(n_in)
        nodes[name] = NEURONS[type(neuron)](neuron, n_out)
        if bias is not None:
            nodes[f"{s_path}.bias"] = ConstantCurrent(name, bias)
        projections.append(proj)
        pre, width = name, n_out
    dts = {v.dt_ms for v in nodes.values() if isinstance(v, LIFPopulation)}
    if len(dts) > 1:
        raise ParameterError("to_ir", "dt_ms", sorted(dts), "the same for every LIF layer of the chain")
    return Graph(nodes, projections, dt_ms=dts.pop() if dts else 1.0, metadata={"source": "feed-forward chain"})


def to_ir(obj, n_inputs: Optional[int] = None) -> Graph:
    """The IR graph of a :class:`RecurrentNetwork` or a feed-forward chain (list or nn.Sequential
    of synapses each followed by a LIF/IF layer; a single module is a chain of one).

    Examples:
        >>> g = to_ir(nn.Sequential(Linear(4, 3), LIF(), Linear(3, 2), LIF()))
        >>> sorted(g.populations())
        ['1', '3']
    """
    if isinstance(obj, RecurrentNetwork):
        if n_inputs is not None:
            raise ParameterError("to_ir", "n_inputs", n_inputs, "None for a RecurrentNetwork (it has no spike input)")
        return trace_recurrent(obj)
    if isinstance(obj, (nn.Sequential, list, tuple)):
        return trace_chain(obj, n_inputs)
    if isinstance(obj, nn.Module):
        return trace_chain([obj], n_inputs)
    raise UnsupportedLayerError([("<object>", type(obj).__name__)], context="the IR")
