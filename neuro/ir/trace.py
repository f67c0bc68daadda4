"""Build an IR :class:`~neuro.ir.graph.Graph` from neuro's modules.

:func:`to_ir` accepts

* a :class:`~neuro.models.RecurrentNetwork`: one :class:`LIFPopulation` ``"neurons"`` (``v_init`` =
  the network's ``v0``), its synapses as the projection ``"recurrent"`` with ``delay_steps=1``, its
  drive as a :class:`PoissonInput` / :class:`ConstantCurrent` / :class:`GivenCurrent` node
  ``"drive"``, and a synapse bias as a :class:`ConstantCurrent` ``"bias"``;
* a feed-forward chain (an ``nn.Sequential``, nested ones included, or a list of modules) of
  synapses (:class:`~neuro.synapses.Linear`, :class:`~neuro.synapses.SparseLinear`,
  :class:`~neuro.synapses.DelayLinear` after ``finalize()``, :class:`~neuro.synapses.Conv2d`,
  :class:`~neuro.ir.build.Pool2d`), each followed by a neuron layer (:class:`~neuro.neurons.LIF`,
  :class:`~neuro.neurons.IF`, :class:`~neuro.neurons.CubaLIF`, :class:`~neuro.neurons.ALIF`).
  :class:`~neuro.models.Flatten` layers (over all per-sample axes) may stand anywhere: the IR's
  populations are flat in C order, so they only change the shape the next synapse reads. The input
  is a :class:`SpikeSource` ``"input"`` (its shape from ``input_shape``, needed before a
  convolution); each neuron layer becomes a population named by its module path (e.g. ``"1"``,
  ``"block.lif"``), fed by the preceding synapse with ``delay_steps=0`` (a DelayLinear gives one
  projection per delay value, :func:`delay_projections`); a bias becomes a :class:`ConstantCurrent`
  ``"<path>.bias"``. Any other module, and any break of the synapse / neuron alternation, is
  reported in one :class:`~neuro.core.errors.UnsupportedLayerError` listing every offending module
  path before anything is built;
* an :class:`~neuro.neurons.EGRUCell`: a :class:`SpikeSource` ``"input"`` and an
  :class:`EGRULayer` ``"egru"`` (so that exporters can refuse it by name).

Weights are exported in float64 (exact for float32 models). Modules are dispatched through a
type registry (exact types: a subclass with other dynamics is not silently exported as its base).
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from ..core.errors import ParameterError, ShapeError, UnsupportedLayerError
from ..models.recurrent import ConstantDrive, GivenDrive, PoissonDrive, RecurrentNetwork
from ..models.sequential import Flatten
from ..neurons.alif import ALIFParams
from ..neurons.cuba import CubaLIF, CubaLIFParams
from ..neurons.if_ import IF, IFParams
from ..neurons.lif import LIF, LIFParams
from ..synapses.conv import Conv2d
from ..synapses.delay import DelayLinear
from ..synapses.linear import Linear
from ..synapses.sparse import SparseLinear
from .build import Pool2d
from .graph import (ALIFPopulation, ConstantCurrent, Conv2dProjection, CubaLIFPopulation, EGRULayer, GivenCurrent,
                    Graph, IFPopulation, LIFPopulation, PoissonInput, Pool2dProjection, Projection, SpikeSource)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float64).numpy()


# ----------------------------------------------------------------------------- parameter records -> nodes
def lif_population(p: LIFParams, n: int, v_init=None, shape=None) -> LIFPopulation:
    """The IR node of ``n`` neurons with parameters ``p`` (``v_init`` default: ``p.v_init``)."""
    raw = p.decay is not None
    return LIFPopulation(n=n, decay=p.decay_factor, v_th=p.v_th, v_reset=p.v_reset, v_rest=p.v_rest,
                         decay_input=p.decay_input, strict_threshold=p.strict_threshold,
                         v_init=p.v_init if v_init is None else v_init,
                         tau_ms=None if raw else p.tau_ms, dt_ms=p.dt_ms,
                         integration=None if raw else p.integration, shape=shape)


def if_population(p: IFParams, n: int, shape=None) -> IFPopulation:
    return IFPopulation(n=n, v_th=p.v_th, v_reset=p.v_reset, strict_threshold=p.strict_threshold,
                        v_init=p.v_init, shape=shape)


def cuba_population(p: CubaLIFParams, n: int, shape=None) -> CubaLIFPopulation:
    return CubaLIFPopulation(n=n, decay=p.decay_factor, decay_syn=p.syn_decay_factor, v_th=p.v_th,
                             v_reset=p.v_reset, v_rest=p.v_rest, decay_input=p.decay_input,
                             strict_threshold=p.strict_threshold, v_init=p.v_init, dt_ms=p.dt_ms, shape=shape)


def alif_population(p: ALIFParams, n: int, shape=None) -> ALIFPopulation:
    return ALIFPopulation(n=n, decay=p.decay_factor, adapt_decay=p.adapt_decay_factor, beta=p.beta, v_th=p.v_th,
                          v_reset=p.v_reset, v_rest=p.v_rest, decay_input=p.decay_input,
                          strict_threshold=p.strict_threshold, dt_ms=p.dt_ms, shape=shape)


def delay_projections(layer: DelayLinear, pre: str, post: str, name: str = "") -> list:
    """IR edges of a finalized :class:`~neuro.synapses.DelayLinear`: one :class:`Projection` per
    distinct delay value, holding the synapses with that delay (``delay_steps`` = the delay), zero
    weights left out.

    Every synapse's delay is thus readable by exporters with the IR as it is (NIR ``Delay``, Lava
    ``DelayDense`` and SpiNNaker delay slots group synapses by delay in the same way).
    """
    d = layer.delays().cpu().numpy()                        # [out, in]
    w = layer.weight.detach().cpu().double().numpy()         # [out, in]
    out = []
    for value in sorted(set(d[w != 0].tolist())):
        wv = w * (d == value)
        out.append(Projection.from_dense(pre, post, wv, delay_steps=int(value),
                                         name=f"{name or pre + '->' + post}@d{value}"))
    return out


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
# A synapse builder: fn(module, pre, post, path, in_shape) -> (projections, bias [n_out] or None, out_shape)
def _need_width(path: str, m, in_shape: tuple, width: int) -> None:
    if math.prod(in_shape) != width:
        raise ShapeError("to_ir", f"{path!r} takes {width} inputs, the layer before it gives "
                                  f"{math.prod(in_shape)} (shape {in_shape})")


def _first_width(path: str, width: int, n_inputs: int) -> None:
    if width != n_inputs:
        raise ShapeError("to_ir", f"{path!r} takes {width} inputs, n_inputs={n_inputs}")


def _linear_edge(m: Linear, pre: str, post: str, path: str, in_shape: tuple):
    _need_width(path, m, in_shape, m.in_features)
    proj = Projection.from_dense(pre, post, _np(m.weight), delay_steps=0, name=path)
    return [proj], (None if m.bias is None else _np(m.bias)), (m.out_features,)


def _sparse_edge(m: SparseLinear, pre: str, post: str, path: str, in_shape: tuple):
    _need_width(path, m, in_shape, m.n_in)
    proj = Projection(pre, post, m.indptr.cpu().numpy(), m.indices.cpu().numpy(), _np(m.values),
                      delay_steps=0, name=path)
    return [proj], (None if m.bias is None else _np(m.bias)), (m.n_out,)


def _delay_edge(m: DelayLinear, pre: str, post: str, path: str, in_shape: tuple):
    _need_width(path, m, in_shape, m.in_features)
    if not m.finalized:
        raise ParameterError("to_ir", f"{path}.finalized", False, "True: call finalize() to fix integer delays")
    return (delay_projections(m, pre, post, name=path), (None if m.bias is None else _np(m.bias)),
            (m.out_features,))


def _conv_edge(m: Conv2d, pre: str, post: str, path: str, in_shape: tuple):
    if len(in_shape) != 3 or in_shape[0] != m.in_channels:
        raise ShapeError("to_ir", f"{path!r} expects [{m.in_channels}, H, W] per sample, the layer before it "
                                  f"gives shape {in_shape} (pass input_shape=(C, H, W) for a convolutional input)")
    proj = Conv2dProjection.from_kernel(pre, post, _np(m.weight), in_shape, m.stride, m.padding, name=path)
    bias = None if m.bias is None else np.repeat(_np(m.bias), math.prod(proj.out_shape[1:]))
    return [proj], bias, proj.out_shape


def _pool_edge(m: Pool2d, pre: str, post: str, path: str, in_shape: tuple):
    if len(in_shape) != 3:
        raise ShapeError("to_ir", f"{path!r} pools [C, H, W] per sample, the layer before it gives shape {in_shape}")
    proj = Pool2dProjection.from_window(pre, post, m.kind, m.kernel_size, in_shape, m.stride, m.padding, name=path)
    return [proj], None, proj.out_shape


SYNAPSES: dict[type, Callable] = {Linear: _linear_edge, SparseLinear: _sparse_edge, DelayLinear: _delay_edge,
                                  Conv2d: _conv_edge, Pool2d: _pool_edge}
# neuron module type -> fn(module, n, shape) -> population node
NEURONS: dict[type, Callable] = {
    LIF: lambda m, n, shape: lif_population(m.params, n, shape=shape),
    IF: lambda m, n, shape: if_population(m.params, n, shape),
    CubaLIF: lambda m, n, shape: cuba_population(m.params, n, shape),
}
# ALIF is not traced in chains: no hardware target runs it (NIR has no adaptive node, Loihi's LIF no
# adaptive threshold); :func:`alif_population` builds its IR node for code that wants one.
# shape-only layers: fn(module) -> None if acceptable, else the reason
RESHAPES: dict[type, Callable] = {
    Flatten: lambda m: None if (m.start_dim, m.end_dim) == (1, -1) else
    f"Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}) (only the per-sample flatten start_dim=1, end_dim=-1)",
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


def trace_chain(modules, n_inputs: Optional[int] = None, input_shape: Optional[tuple] = None) -> Graph:
    """Graph of a feed-forward chain ``[synapse, neuron, synapse, neuron, ...]`` (Flatten layers anywhere).

    ``n_inputs``, when given, must equal the input width of the first synapse (ShapeError otherwise);
    ``input_shape`` (per sample, e.g. ``(C, H, W)``) gives the input's shape, needed before a convolution.
    """
    flat = _flatten(modules)
    bad, layers, k = [], [], 0
    for path, m in flat:
        if type(m) in RESHAPES:
            why = RESHAPES[type(m)](m)
            if why is not None:
                bad.append((path, why))
            continue
        kind = "synapse" if type(m) in SYNAPSES else "neuron" if type(m) in NEURONS else None
        want = "synapse" if k % 2 == 0 else "neuron"
        k += 1
        if kind is None:
            bad.append((path, f"{type(m).__name__} (supported: "
                              f"{', '.join(t.__name__ for t in (*SYNAPSES, *NEURONS, *RESHAPES))})"))
            continue
        if kind != want:
            bad.append((path, f"{type(m).__name__} where a {want} layer must come "
                              "(the chain alternates synapse, neuron, starting with a synapse)"))
            continue
        layers.append((path, m))
    if not layers and not bad:
        bad.append(("<chain>", "empty: nothing to export"))
    elif len(layers) % 2 == 1 and not bad:
        path, m = layers[-1]
        bad.append((path, f"{type(m).__name__} at the end: a synapse must be followed by a neuron layer"))
    if bad:
        raise UnsupportedLayerError(bad, context="the IR (feed-forward chain)")

    if input_shape is not None:
        shape = tuple(int(a) for a in input_shape)
        if n_inputs is not None and math.prod(shape) != n_inputs:
            raise ShapeError("to_ir", f"input_shape {shape} holds {math.prod(shape)} inputs, n_inputs is {n_inputs}")
    else:
        first = layers[0][1]
        width = n_inputs if n_inputs is not None else getattr(first, "in_features", getattr(first, "n_in", None))
        if width is None:
            raise ParameterError("to_ir", "input_shape", None, f"(C, H, W) for a chain that starts with "
                                                              f"{type(first).__name__}")
        shape = (int(width),)
        w0 = getattr(first, "in_features", getattr(first, "n_in", None))
        if n_inputs is not None and w0 is not None:
            _first_width(layers[0][0], w0, n_inputs)
    nodes = {"input": SpikeSource(math.prod(shape), shape=shape)}
    projections, pre = [], "input"
    for (s_path, syn), (n_path, neuron) in zip(layers[0::2], layers[1::2]):
        name = n_path if n_path not in nodes else f"{n_path}#pop"
        projs, bias, out_shape = SYNAPSES[type(syn)](syn, pre, name, s_path, shape)
        n_out = math.prod(out_shape)
        nodes[name] = NEURONS[type(neuron)](neuron, n_out, out_shape)
        if bias is not None:
            nodes[f"{s_path}.bias"] = ConstantCurrent(name, bias)
        projections.extend(projs)
        pre, shape = name, out_shape
    dts = {v.dt_ms for v in nodes.values() if isinstance(v, (LIFPopulation, CubaLIFPopulation, ALIFPopulation))}
    if len(dts) > 1:
        raise ParameterError("to_ir", "dt_ms", sorted(dts), "the same for every LIF layer of the chain")
    return Graph(nodes, projections, dt_ms=dts.pop() if dts else 1.0, metadata={"source": "feed-forward chain"})


# ----------------------------------------------------------------------------- EGRU
def trace_egru(cell) -> Graph:
    """Graph of an :class:`~neuro.neurons.EGRUCell`: input source and one :class:`EGRULayer` ``"egru"``."""
    nodes = {"input": SpikeSource(cell.input_size),
             "egru": EGRULayer("input", cell.input_size, cell.hidden_size, _np(cell.w_ih), _np(cell.w_hh),
                               _np(cell.b_ih), _np(cell.b_rz), _np(cell.theta))}
    return Graph(nodes, [], metadata={"source": "EGRUCell"})


def _egru_types() -> tuple:
    try:
        from ..neurons.egru import EGRUCell
    except ImportError:  # pragma: no cover - the EGRU module is optional
        return ()
    return (EGRUCell,)


def to_ir(obj, n_inputs: Optional[int] = None, input_shape: Optional[tuple] = None) -> Graph:
    """The IR graph of a :class:`RecurrentNetwork`, an EGRU cell, or a feed-forward chain (list or
    nn.Sequential of synapses each followed by a neuron layer; a single module is a chain of one).

    Examples:
        >>> g = to_ir(nn.Sequential(Linear(4, 3), LIF(), Linear(3, 2), LIF()))
        >>> sorted(g.populations())
        ['1', '3']
    """
    if isinstance(obj, RecurrentNetwork):
        if n_inputs is not None:
            raise ParameterError("to_ir", "n_inputs", n_inputs, "None for a RecurrentNetwork (it has no spike input)")
        return trace_recurrent(obj)
    egru = _egru_types()
    if egru and isinstance(obj, egru):
        return trace_egru(obj)
    if isinstance(obj, (nn.Sequential, list, tuple)):
        return trace_chain(obj, n_inputs, input_shape)
    if isinstance(obj, nn.Module):
        return trace_chain([obj], n_inputs, input_shape)
    raise UnsupportedLayerError([("<object>", type(obj).__name__)], context="the IR")
