r"""NIR (Neuromorphic Intermediate Representation, NIR 1.0.x): export the IR to a NIR file, import NIR files.

**Export** (:func:`to_nir`, :func:`export_nir`). NIR's neurons are continuous-time ODEs and the
standard fixes no discretisation (REFERENCE §7), so the exporter writes the time constants that make
a *forward-Euler* consumer with step ``dt_s`` (seconds) reproduce neuro's discrete dynamics exactly,
and records the convention in the graph's metadata (key ``neuro``, JSON):

* ``LIFPopulation`` (decay :math:`d`) -> ``LIF`` with :math:`\tau = dt / (1 - d)` and
  :math:`v_{leak} = V_{rest}`; the input integration picks :math:`R`: ``decay_input=True`` (input held
  over the step, :math:`H = V + (1-d)(X - (V - V_{rest}))`) gives :math:`R = 1`; ``decay_input=False``
  (input as a jump, :math:`H = d(V - V_{rest}) + V_{rest} + X`) gives :math:`R = \tau / dt`.
  Euler's :math:`v \mathrel{+}= \tfrac{dt}{\tau}(v_{leak} - v + R I)` is then neuro's update. A LIF with
  :math:`d = 1` and jump input is an ``IF``.
* ``IFPopulation`` -> ``IF`` with :math:`R = 1/dt` (:math:`v \mathrel{+}= dt\,R\,I = I`).
* ``LIPopulation`` (non-spiking readout) -> ``LI`` (as LIF), ``CubaLI`` (as CubaLIF) or, with decay 1,
  ``I`` (:math:`R = 1/dt`); ``ThresholdPopulation`` -> ``Threshold``.
* ``CubaLIFPopulation`` -> ``CubaLIF`` with :math:`\tau_{syn} = dt/(1 - d_{syn})`,
  :math:`w_{in} = \tau_{syn}/dt`, :math:`\tau_{mem} = dt/(1-d)`, :math:`R = \tau_{mem}/dt`.
* projections -> ``Affine`` (bias from the target's :class:`~neuro.ir.ConstantCurrent`) or ``Linear``,
  ``Conv2d``, ``SumPool2d`` / ``AvgPool2d``; a ``Flatten`` before a dense map of a shaped source;
  ``delay_steps`` -> a ``Delay`` node of ``delay_steps * dt`` seconds in front of the map, except on
  an edge that closes a cycle, which carries one step implicitly (a NIR consumer evaluates a cycle
  with the previous step's output), so it gets ``delay_steps - 1`` steps of ``Delay``.
* reset timing: neuro resets in the step that fires, as NIR's ``v_reset`` does. What NIR cannot say
  goes into the node's metadata (``neuro``, JSON): ``>=`` thresholds (NIR fires on ``v > v_threshold``),
  soft reset (written with ``v_reset = 0``; only neuro's importer restores it), a nonzero ``v_init``.
  Nodes NIR has no counterpart for (ALIF, EGRU, Poisson or given drives, a bias without synapses)
  raise :class:`~neuro.core.errors.UnsupportedLayerError` naming each node.

Timing: a zero-delay edge means "the same step", as in neuro and in snnTorch's and Norse's NIR
importers (they evaluate the graph node by node within a step). Lava adds one step per ``Dense``
connection; neuro's own Loihi path (:mod:`neuro.hardware_targets.loihi.compiler`) does not go through
NIR but computes each population's lag and the per-synapse ``DelayDense`` delays that undo it.

Consumers fix their own step: snnTorch (1.0) uses ``dt = 1e-4`` s and reads a ``LIF`` with
:math:`R = \tau/dt` as ``Leaky(beta = 1 - dt/\tau)`` (jump input, zero reset, ``>``); Norse's
``from_nir(graph, dt=...)`` runs ``LIF`` as Euler with :math:`R` ignored (input held over the step).
Export with the ``dt_s`` of the consumer; the IR's own ``dt_ms`` is recorded beside it.

**Import** (:func:`read_nir`, :func:`import_nir`, :func:`load_nir`): the file is checked first
with h5py (version 1.0.x, known node types, every field's presence, dtype and shape), so that a
bad file raises :class:`~neuro.core.errors.FormatError` naming the file, the node and the field
rather than an assert or an h5py error; then the graph becomes IR populations (``LIF``, ``IF``,
``CubaLIF``) joined by projections composed from the linear nodes between them (``Affine``,
``Linear``, ``Scale``, ``Flatten``, ``Conv2d``, ``SumPool2d``, ``AvgPool2d``, ``Delay``), with the
inverse of the conventions above at the step ``dt_s`` (the file's metadata, or the argument).
``LI``, ``CubaLI`` and ``I`` become non-spiking :class:`~neuro.ir.LIPopulation` readouts (their output
is the membrane potential), ``Threshold`` a :class:`~neuro.ir.ThresholdPopulation`; ``Conv1d`` and
grouped or dilated convolutions raise UnsupportedLayerError.
:func:`load_nir` returns a runnable :class:`~neuro.ir.build.GraphNetwork`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.errors import FormatError, ParameterError, UnsupportedLayerError
from ..ir.graph import (ALIFPopulation, ConstantCurrent, Conv2dProjection, CubaLIFPopulation, EGRULayer, Graph,
                        IFPopulation, LIFPopulation, LIPopulation, Pool2dProjection, Projection, SpikeSource,
                        ThresholdPopulation)

META_KEY = "neuro"
CONVENTION_VERSION = 1


def _nir():
    import nir

    return nir


# ============================================================================ export
def _meta(d: dict) -> dict:
    return {META_KEY: json.dumps(d)}


def _full(shape, v) -> np.ndarray:
    return np.full(shape, float(v), dtype=np.float64)


def _lif_node(nir, node: LIFPopulation, dt: float):
    meta = {"kind": "LIFPopulation", "decay": node.decay, "decay_input": node.decay_input,
            "strict_threshold": node.strict_threshold, "soft_reset": node.soft_reset, "v_rest": node.v_rest}
    if np.any(node.v_init != (node.v_reset or 0.0)):
        meta["v_init"] = node.v_init.tolist()
    shape, v_reset = node.shape, 0.0 if node.v_reset is None else node.v_reset
    if node.decay == 1.0:
        if node.decay_input:
            return None, "LIF with decay 1 and decay_input=True (its input is scaled by 0)"
        return nir.IF(r=_full(shape, 1.0 / dt), v_threshold=_full(shape, node.v_th), v_reset=_full(shape, v_reset),
                      metadata=_meta(meta)), None
    tau = dt / (1.0 - node.decay)
    r = 1.0 if node.decay_input else tau / dt
    return nir.LIF(tau=_full(shape, tau), r=_full(shape, r), v_leak=_full(shape, node.v_rest),
                   v_threshold=_full(shape, node.v_th), v_reset=_full(shape, v_reset), metadata=_meta(meta)), None


def _if_node(nir, node: IFPopulation, dt: float):
    meta = {"kind": "IFPopulation", "strict_threshold": node.strict_threshold, "soft_reset": node.soft_reset}
    if np.any(node.v_init != 0.0):
        meta["v_init"] = node.v_init.tolist()
    v_reset = 0.0 if node.v_reset is None else node.v_reset
    return nir.IF(r=_full(node.shape, 1.0 / dt), v_threshold=_full(node.shape, node.v_th),
                  v_reset=_full(node.shape, v_reset), metadata=_meta(meta)), None


def _cuba_node(nir, node: CubaLIFPopulation, dt: float):
    if node.decay == 1.0 or node.decay_syn == 1.0:
        return None, "CubaLIF with a decay of 1 (an infinite time constant)"
    if node.decay_input:
        return None, "CubaLIF with decay_input=True (NIR's CubaLIF takes its current as a jump)"
    meta = {"kind": "CubaLIFPopulation", "decay": node.decay, "decay_syn": node.decay_syn,
            "strict_threshold": node.strict_threshold, "soft_reset": node.soft_reset, "v_rest": node.v_rest}
    if np.any(node.v_init != (node.v_reset or 0.0)):
        meta["v_init"] = node.v_init.tolist()
    s = node.shape
    tau_syn, tau_mem = dt / (1.0 - node.decay_syn), dt / (1.0 - node.decay)
    v_reset = 0.0 if node.v_reset is None else node.v_reset
    return nir.CubaLIF(tau_syn=_full(s, tau_syn), tau_mem=_full(s, tau_mem), r=_full(s, tau_mem / dt),
                       v_leak=_full(s, node.v_rest), v_threshold=_full(s, node.v_th), v_reset=_full(s, v_reset),
                       w_in=_full(s, tau_syn / dt), metadata=_meta(meta)), None


def _li_node(nir, node: LIPopulation, dt: float):
    meta = {"kind": "LIPopulation", "decay": node.decay, "decay_syn": node.decay_syn, "decay_input": node.decay_input}
    s = node.shape
    if node.decay == 1.0:
        if node.decay_input or node.decay_syn or node.v_rest:
            return None, "a leaky integrator with decay 1 and decay_input, a current filter or v_rest"
        return nir.I(r=_full(s, 1.0 / dt), metadata=_meta(meta)), None
    tau = dt / (1.0 - node.decay)
    if node.decay_syn == 0.0:
        return nir.LI(tau=_full(s, tau), r=_full(s, 1.0 if node.decay_input else tau / dt),
                      v_leak=_full(s, node.v_rest), metadata=_meta(meta)), None
    if node.decay_input:
        return None, "a current-based leaky integrator with decay_input=True (NIR's CubaLI takes a jump)"
    tau_syn = dt / (1.0 - node.decay_syn)
    return nir.CubaLI(tau_syn=_full(s, tau_syn), tau_mem=_full(s, tau), r=_full(s, tau / dt),
                      v_leak=_full(s, node.v_rest), w_in=_full(s, tau_syn / dt), metadata=_meta(meta)), None


def _threshold_node(nir, node: ThresholdPopulation, dt: float):
    return nir.Threshold(threshold=_full(node.shape, node.v_th)), None


# population type -> fn(nir, node, dt_s) -> (NIR node or None, reason it cannot be exported)
EXPORTERS = {LIFPopulation: _lif_node, IFPopulation: _if_node, CubaLIFPopulation: _cuba_node, LIPopulation: _li_node,
             ThresholdPopulation: _threshold_node}
REFUSED = {ALIFPopulation: "ALIF: NIR has no adaptive-threshold neuron",
           EGRULayer: "EGRU: NIR has no gating primitives"}


def _back_edges(graph: Graph) -> set:
    """Indices of projections that close a cycle (target not after source in the topological order)."""
    order = {k: i for i, k in enumerate(graph.topological_order())}
    return {i for i, p in enumerate(graph.projections) if order[p.post] <= order[p.pre]}


def to_nir(graph: Graph, dt_s: Optional[float] = None):
    """The NIR graph of ``graph`` for a forward-Euler consumer with step ``dt_s`` seconds (default: the
    graph's ``dt_ms``). See the module docstring for the conventions."""
    nir = _nir()
    if not isinstance(graph, Graph):
        raise ParameterError("to_nir", "graph", type(graph).__name__, "a neuro.ir.Graph")
    dt = graph.dt_ms * 1e-3 if dt_s is None else dt_s
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ParameterError("to_nir", "dt_s", dt_s, "a finite number of seconds > 0")
    nodes, edges, bad = {}, [], []
    for name, node in graph.nodes.items():
        if isinstance(node, SpikeSource):
            nodes[name] = nir.Input(input_type={"input": np.array(node.shape)})
        elif type(node) in EXPORTERS:
            out, why = EXPORTERS[type(node)](nir, node, dt)
            if out is None:
                bad.append((name, why))
            nodes[name] = out
        elif type(node) in REFUSED:
            bad.append((name, REFUSED[type(node)]))
        elif not isinstance(node, ConstantCurrent):
            bad.append((name, f"{type(node).__name__}: NIR has no input source with values of its own"))
    bias = {}
    for name, node in graph.nodes.items():
        if isinstance(node, ConstantCurrent):
            if not graph.projections_into(node.target):
                bad.append((name, "a bias on a population without synapses (NIR carries biases on Affine nodes)"))
            bias[node.target] = bias.get(node.target, 0.0) + node.values
    if bad:
        raise UnsupportedLayerError(bad, context="NIR")

    back, used, taken = _back_edges(graph), set(nodes), set()

    def fresh(base: str) -> str:
        base = base.replace("/", "_") or "proj"
        name, k = base, 1
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        return name

    for i, p in enumerate(graph.projections):
        pre, post = graph.nodes[p.pre], graph.nodes[p.post]
        src = p.pre
        steps = p.delay_steps - 1 if i in back else p.delay_steps
        if steps > 0:
            dname = fresh(f"{p.name or p.pre + '->' + p.post}.delay")
            nodes[dname] = nir.Delay(delay=_full(pre.shape, steps * dt))
            edges.append((src, dname))
            src = dname
        b = None
        if p.post in bias and p.post not in taken:
            b, _ = bias[p.post], taken.add(p.post)
        base = p.name or f"{p.pre}->{p.post}"
        if isinstance(p, Conv2dProjection):
            out_c = p.kernel.shape[0]
            cb = np.zeros(out_c)
            if b is not None:
                per = np.asarray(b).reshape(p.out_shape)
                if not np.all(per == per[:, :1, :1]):
                    raise UnsupportedLayerError([(p.post, "a bias that varies within a channel of a convolution")],
                                                context="NIR")
                cb = per[:, 0, 0].copy()
            op = nir.Conv2d(input_shape=tuple(p.in_shape[1:]), weight=np.array(p.kernel), stride=p.stride,
                            padding=p.padding, dilation=1, groups=1, bias=cb)
        elif isinstance(p, Pool2dProjection):
            if b is not None:
                raise UnsupportedLayerError([(p.post, "a bias behind a pooling layer")], context="NIR")
            cls = nir.SumPool2d if p.kind == "sum" else nir.AvgPool2d
            op = cls(kernel_size=np.array(p.kernel_size), stride=np.array(p.stride), padding=np.array(p.padding))
        else:
            if len(pre.shape) > 1:
                fname = fresh(f"{base}.flatten")
                nodes[fname] = nir.Flatten(input_type={"input": np.array(pre.shape)}, start_dim=0, end_dim=-1)
                edges.append((src, fname))
                src = fname
            w = p.to_dense(post.n)
            op = nir.Linear(weight=w) if b is None else nir.Affine(weight=w, bias=np.asarray(b, dtype=np.float64))
        oname = fresh(base)
        nodes[oname] = op
        edges += [(src, oname), (oname, p.post)]
    for name, node in graph.populations().items():  # sinks (ignoring edges that close cycles) get an Output
        if not any(p.pre == name for i, p in enumerate(graph.projections) if i not in back):
            oname = fresh(f"{name}.output")
            nodes[oname] = nir.Output(output_type={"output": np.array(node.shape)})
            edges.append((name, oname))
    meta = {"convention_version": CONVENTION_VERSION, "dt_s": dt, "dt_ms": graph.dt_ms,
            "discretisation": "forward Euler with step dt_s: v += dt/tau (v_leak - v + R I); tau = dt / (1 - decay)",
            "threshold": "spike when v > v_threshold; node metadata strict_threshold=false means neuro used >=",
            "reset": "in the step that fires, to v_reset; node metadata soft_reset=true means subtract v_threshold",
            "delay": "Delay nodes in seconds (steps * dt_s); an edge closing a cycle carries one implicit step",
            "ir": {k: v for k, v in graph.metadata.items() if isinstance(v, (str, int, float))}}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=_meta(meta))


def export_nir(graph: Graph, path, dt_s: Optional[float] = None) -> Path:
    """Write :func:`to_nir` of ``graph`` to ``path`` (``nir.write``). Returns the path."""
    nir = _nir()
    path = Path(path)
    nir.write(path, to_nir(graph, dt_s))
    return path


# ============================================================================ validation of files
_F, _I, _S = "float", "int", "str"
# node type -> {field: (kind, ndim or None, required)}
NODE_FIELDS = {
    "Input": {"shape": (_I, 1, True)},
    "Output": {"shape": (_I, 1, True)},
    "Affine": {"weight": (_F, 2, True), "bias": (_F, 1, True)},
    "Linear": {"weight": (_F, 2, True)},
    "Scale": {"scale": (_F, None, True)},
    "Conv1d": {"weight": (_F, 3, True), "bias": (_F, 1, True)},
    "Conv2d": {"weight": (_F, 4, True), "bias": (_F, 1, True), "stride": (_I, None, True),
               "padding": (_I, None, True), "dilation": (_I, None, True), "groups": (_I, 0, True)},
    "Delay": {"delay": (_F, None, True)},
    "Flatten": {"start_dim": (_I, 0, True), "end_dim": (_I, 0, True)},
    "Threshold": {"threshold": (_F, None, True)},
    "I": {"r": (_F, None, True)},
    "IF": {"r": (_F, None, True), "v_threshold": (_F, None, True), "v_reset": (_F, None, False)},
    "LI": {"tau": (_F, None, True), "r": (_F, None, True), "v_leak": (_F, None, True)},
    "LIF": {"tau": (_F, None, True), "r": (_F, None, True), "v_leak": (_F, None, True),
            "v_threshold": (_F, None, True), "v_reset": (_F, None, False)},
    "CubaLI": {"tau_syn": (_F, None, True), "tau_mem": (_F, None, True), "r": (_F, None, True),
               "v_leak": (_F, None, True), "w_in": (_F, None, False)},
    "CubaLIF": {"tau_syn": (_F, None, True), "tau_mem": (_F, None, True), "r": (_F, None, True),
                "v_leak": (_F, None, True), "v_threshold": (_F, None, True), "v_reset": (_F, None, False),
                "w_in": (_F, None, False)},
    "SumPool2d": {"kernel_size": (_I, 1, True), "stride": (_I, 1, True), "padding": (_I, 1, True)},
    "AvgPool2d": {"kernel_size": (_I, 1, True), "stride": (_I, 1, True), "padding": (_I, 1, True)},
    "NIRGraph": {},
}
# fields of one neuron node that must share a shape
SAME_SHAPE = {"IF": ("r", "v_threshold", "v_reset"), "LIF": ("tau", "r", "v_leak", "v_threshold", "v_reset"),
              "LI": ("tau", "r", "v_leak"), "CubaLI": ("tau_syn", "tau_mem", "r", "v_leak", "w_in"),
              "CubaLIF": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")}


def _str(v) -> Optional[str]:
    v = v.decode("utf8", "replace") if isinstance(v, bytes) else v
    return v if isinstance(v, str) else None


def _check_group(file: str, g, path: str) -> None:
    """Check one NIRGraph group (``path`` names it in errors) and its nodes, recursively."""
    if "nodes" not in g:
        raise FormatError(file, path or "node", "nodes", "missing")
    names = set(g["nodes"].keys())
    for name in names:
        item = g["nodes"][name]
        where = f"{path}nodes/{name}"
        if not hasattr(item, "keys"):
            raise FormatError(file, where, None, "not a group")
        if "type" not in item:
            raise FormatError(file, where, "type", "missing")
        kind = _str(item["type"][()])
        if kind not in NODE_FIELDS:
            raise FormatError(file, where, "type", f"unknown node type {kind!r} (known: {', '.join(sorted(NODE_FIELDS))})")
        for field, (want, ndim, required) in NODE_FIELDS[kind].items():
            if field not in item:
                if required:
                    raise FormatError(file, where, field, f"missing (a {kind} node needs it)")
                continue
            ds = item[field]
            if not hasattr(ds, "dtype"):
                raise FormatError(file, where, field, "not a dataset")
            dt = ds.dtype
            ok = (np.issubdtype(dt, np.integer) if want == _I else
                  np.issubdtype(dt, np.floating) or np.issubdtype(dt, np.integer))
            if not ok:
                raise FormatError(file, where, field, f"expected {'integers' if want == _I else 'numbers'}, "
                                                      f"got dtype {dt}")
            if ndim is not None and len(ds.shape) != ndim:
                raise FormatError(file, where, field, f"expected {ndim}-D, got shape {ds.shape}")
            if want == _F and ds.size and not np.isfinite(np.asarray(ds[()], dtype=np.float64)).all():
                raise FormatError(file, where, field, "holds NaN or Inf")
        shapes = {f: item[f].shape for f in SAME_SHAPE.get(kind, ()) if f in item}
        if len(set(shapes.values())) > 1:
            raise FormatError(file, where, max(shapes, key=lambda f: shapes[f] != next(iter(shapes.values()))),
                              f"shapes differ between fields: {shapes}")
        if kind == "Affine" and item["weight"].shape[0] != item["bias"].shape[0]:
            raise FormatError(file, where, "bias", f"shape {item['bias'].shape} does not match weight "
                                                   f"{item['weight'].shape}")
        if kind == "NIRGraph":
            _check_group(file, item, where + "/")
    if "edges" not in g:
        raise FormatError(file, path or "node", "edges", "missing")
    edges = g["edges"]
    if len(edges.shape) != 2 or (edges.shape[0] and edges.shape[1] != 2):
        raise FormatError(file, path or "node", "edges", f"expected pairs [E, 2], got shape {edges.shape}")
    for a, b in edges[()]:
        for end in (a, b):
            s = _str(end)
            if s not in names:
                raise FormatError(file, path or "node", "edges", f"edge end {s!r} is not a node")


def read_nir(path):
    """Read a NIR file after checking it (FormatError names file, node and field). Returns a nir.NIRGraph."""
    import h5py

    nir = _nir()
    file = str(path)
    if not Path(file).is_file():
        raise FormatError(file, None, None, "no such file")
    try:
        f = h5py.File(file, "r")
    except OSError as e:
        raise FormatError(file, None, None, f"not a readable HDF5 file (truncated or corrupt: {e})") from None
    with f:
        if "version" not in f:
            raise FormatError(file, None, "version", "missing (not a NIR file)")
        version = _str(f["version"][()])
        if version is None or not version.startswith("1.0."):
            raise FormatError(file, None, "version", f"unknown NIR version {version!r}; this reader knows 1.0.x")
        if "node" not in f:
            raise FormatError(file, None, "node", "missing")
        root = f["node"]
        if "type" not in root or _str(root["type"][()]) != "NIRGraph":
            raise FormatError(file, "node", "type", "the root node must be a NIRGraph")
        try:
            _check_group(file, root, "")
        except (OSError, KeyError, RuntimeError) as e:  # damaged datasets inside a readable file
            raise FormatError(file, None, None, f"damaged HDF5 content ({e})") from None
    try:
        return nir.read(file)
    except Exception as e:  # nir's own checks (types between nodes), reported with the file named
        raise FormatError(file, None, None, f"NIR could not build the graph: {type(e).__name__}: {e}") from None


# ============================================================================ import
def _node_meta(node) -> dict:
    raw = (getattr(node, "metadata", None) or {}).get(META_KEY)
    if raw is None:
        return {}
    try:
        return json.loads(_str(raw) if not isinstance(raw, str) else raw)
    except (TypeError, ValueError):
        return {}


def _uniform(file: str, name: str, field: str, v) -> float:
    a = np.asarray(v, dtype=np.float64)
    if a.size == 0:
        raise FormatError(file, name, field, "empty")
    if not np.all(a == a.flat[0]):
        raise UnsupportedLayerError([(name, f"per-neuron {field} (the IR holds one value per population)")],
                                    context="NIR import")
    return float(a.flat[0])


def _shape_of(nir, node) -> tuple:
    for f in ("v_threshold", "threshold", "tau", "tau_mem", "r"):
        if hasattr(node, f):
            return tuple(int(a) for a in np.shape(getattr(node, f))) or (1,)
    raise AssertionError  # pragma: no cover


def _population(nir, file: str, name: str, node, dt: float, dt_ms: float):
    """(IR population, input scale) of a NIR neuron node; the scale multiplies every input of it."""
    meta = _node_meta(node)
    shape = _shape_of(nir, node)
    n = math.prod(shape)
    if isinstance(node, nir.Threshold):
        return ThresholdPopulation(n, _uniform(file, name, "threshold", node.threshold), shape=shape), 1.0
    if isinstance(node, (nir.LI, nir.CubaLI, nir.I)):
        return _leaky_integrator(nir, file, name, node, dt, dt_ms, meta, n, shape)
    strict = bool(meta.get("strict_threshold", True))
    v_th = _uniform(file, name, "v_threshold", node.v_threshold)
    v_reset = None if meta.get("soft_reset") else (
        0.0 if node.v_reset is None else _uniform(file, name, "v_reset", node.v_reset))
    v_init = meta.get("v_init")
    if isinstance(node, nir.IF):
        r = _uniform(file, name, "r", node.r)
        if meta.get("kind") == "LIFPopulation":  # a neuro LIF with decay 1
            return LIFPopulation(n, 1.0, v_th, v_reset, 0.0, False, strict, v_init, dt_ms=dt_ms, shape=shape), r * dt
        return IFPopulation(n, v_th, v_reset, strict, 0.0 if v_init is None else v_init, shape=shape), r * dt
    if isinstance(node, nir.LIF):
        tau, r = _uniform(file, name, "tau", node.tau), _uniform(file, name, "r", node.r)
        v_leak = _uniform(file, name, "v_leak", node.v_leak)
        decay = float(meta["decay"]) if "decay" in meta else 1.0 - dt / tau
        if not 0.0 < decay <= 1.0:
            raise FormatError(file, name, "tau", f"tau={tau} s gives decay {decay} at dt={dt} s, outside (0, 1]")
        if "decay_input" in meta:
            jump, scale = not meta["decay_input"], 1.0
        elif math.isclose(r * dt / tau, 1.0, rel_tol=1e-6):
            jump, scale = True, 1.0                    # R = tau / dt: the input is a jump (snnTorch's Leaky)
        else:
            jump, scale = False, r                     # input held over the step, times R (R = 1: Norse)
        return LIFPopulation(n, decay, v_th, v_reset, v_leak, not jump, strict, v_init, dt_ms=dt_ms, shape=shape), scale
    # CubaLIF
    tau_syn, tau_mem = _uniform(file, name, "tau_syn", node.tau_syn), _uniform(file, name, "tau_mem", node.tau_mem)
    r, v_leak = _uniform(file, name, "r", node.r), _uniform(file, name, "v_leak", node.v_leak)
    w_in = _uniform(file, name, "w_in", node.w_in)
    decay = float(meta["decay"]) if "decay" in meta else 1.0 - dt / tau_mem
    decay_syn = float(meta["decay_syn"]) if "decay_syn" in meta else 1.0 - dt / tau_syn
    # i += dt/tau_syn (w_in X - i); v += dt/tau_mem (v_leak - v + R i): neuro's i = d_syn i + X', v = d v + i'
    # with X' = (dt/tau_syn) w_in (dt/tau_mem) R X, exact when w_in = tau_syn/dt and R = tau_mem/dt
    scale = 1.0 if "decay" in meta else (dt / tau_syn) * w_in * (dt / tau_mem) * r
    return CubaLIFPopulation(n, decay, decay_syn, v_th, v_reset, v_leak, False, strict, v_init, dt_ms=dt_ms,
                             shape=shape), scale


def _leaky_integrator(nir, file, name, node, dt, dt_ms, meta, n, shape):
    """(LIPopulation, input scale) of a NIR ``I``, ``LI`` or ``CubaLI`` node (forward Euler at ``dt``)."""
    if isinstance(node, nir.I):  # dv/dt = R I: v += dt R X
        return LIPopulation(n, 1.0, 0.0, 0.0, False, dt_ms, shape), dt * _uniform(file, name, "r", node.r)
    r, v_leak = _uniform(file, name, "r", node.r), _uniform(file, name, "v_leak", node.v_leak)
    if isinstance(node, nir.LI):
        tau = _uniform(file, name, "tau", node.tau)
        decay = float(meta["decay"]) if "decay" in meta else 1.0 - dt / tau
        if "decay_input" in meta:
            jump, scale = not meta["decay_input"], 1.0
        elif math.isclose(r * dt / tau, 1.0, rel_tol=1e-6):
            jump, scale = True, 1.0
        else:
            jump, scale = False, r
        return LIPopulation(n, decay, 0.0, v_leak, not jump, dt_ms, shape), scale
    tau_syn, tau_mem = _uniform(file, name, "tau_syn", node.tau_syn), _uniform(file, name, "tau_mem", node.tau_mem)
    w_in = _uniform(file, name, "w_in", node.w_in)
    decay = float(meta["decay"]) if "decay" in meta else 1.0 - dt / tau_mem
    decay_syn = float(meta["decay_syn"]) if "decay_syn" in meta else 1.0 - dt / tau_syn
    scale = 1.0 if "decay" in meta else (dt / tau_syn) * w_in * (dt / tau_mem) * r
    return LIPopulation(n, decay, decay_syn, v_leak, False, dt_ms, shape), scale


def _inline(nir, graph, prefix: str = ""):
    """Nodes and edges of a NIR graph with nested NIRGraph nodes inlined (names joined by '.')."""
    nodes, edges = {}, []
    entry, exit_ = {}, {}
    for k, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _inline(nir, node, f"{prefix}{k}.")
            ins = [s for s, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [s for s, v in node.nodes.items() if isinstance(v, nir.Output)]
            entry[k] = [b for a, b in sub_edges if a in {f"{prefix}{k}.{s}" for s in ins}]
            exit_[k] = [a for a, b in sub_edges if b in {f"{prefix}{k}.{s}" for s in outs}]
            drop = {f"{prefix}{k}.{s}" for s in ins + outs}
            nodes.update({a: v for a, v in sub_nodes.items() if a not in drop})
            edges += [(a, b) for a, b in sub_edges if a not in drop and b not in drop]
        else:
            nodes[f"{prefix}{k}"] = node
    for a, b in graph.edges:
        srcs = exit_.get(a, [f"{prefix}{a}"])
        dsts = entry.get(b, [f"{prefix}{b}"])
        edges += [(s, d) for s in srcs for d in dsts]
    return nodes, edges


SPIKING = ("LIF", "IF", "CubaLIF", "LI", "CubaLI", "I", "Threshold")  # the node types that become populations
LINEAR = ("Affine", "Linear", "Scale", "Flatten", "Conv2d", "SumPool2d", "AvgPool2d", "Delay")


def from_nir(graph, dt_s: Optional[float] = None, file: str = "<NIR graph>") -> Graph:
    """The IR graph of a ``nir.NIRGraph`` at step ``dt_s`` seconds (default: the graph's metadata).

    Raises UnsupportedLayerError for nodes with no IR counterpart and FormatError for inconsistent
    parameters (naming ``file``)."""
    nir = _nir()
    gmeta = _node_meta(graph)
    dt = dt_s if dt_s is not None else gmeta.get("dt_s")
    if dt is None:
        raise ParameterError("from_nir", "dt_s", None, "the step in seconds that the file's time constants "
                                                       "assume (the file records none)")
    dt_ms = float(gmeta.get("dt_ms", dt * 1e3))
    nodes, edges = _inline(nir, graph)
    kinds = {k: type(v).__name__ for k, v in nodes.items()}
    bad = [(k, f"{t}: no spiking population or synapse in the IR for it") for k, t in kinds.items()
           if t not in SPIKING + LINEAR + ("Input", "Output")]
    if bad:
        raise UnsupportedLayerError(bad, context="NIR import")
    succ = {k: [] for k in nodes}
    for a, b in edges:
        succ[a].append(b)

    ir_nodes, scale = {}, {}
    for k, v in nodes.items():
        if isinstance(v, nir.Input):
            shape = tuple(int(a) for a in np.asarray(next(iter(v.input_type.values()))).reshape(-1))
            ir_nodes[k] = SpikeSource(math.prod(shape), shape=shape)
        elif kinds[k] in SPIKING:
            try:
                ir_nodes[k], scale[k] = _population(nir, file, k, v, dt, dt_ms)
            except ParameterError as e:  # e.g. a threshold <= 0: the file's value, named
                raise FormatError(file, k, e.field, str(e)) from None

    # walk each spiking node's outgoing linear paths to the populations they reach
    paths = []  # (pre, post, [linear node names])

    def walk(start, at, ops, seen):
        for nxt in succ[at]:
            if nxt in ir_nodes and kinds[nxt] in SPIKING:
                paths.append((start, nxt, ops))
            elif kinds[nxt] in LINEAR:
                if nxt in seen:
                    raise UnsupportedLayerError([(nxt, "a cycle through linear nodes only")], context="NIR import")
                walk(start, nxt, ops + [nxt], seen | {nxt})

    for k in ir_nodes:
        walk(k, k, [], set())

    # edges that close a cycle between populations get the one implicit step of a recurrent NIR edge
    pop_succ = {}
    for pre, post, _ in paths:
        pop_succ.setdefault(pre, []).append(post)
    back, state = set(), {}

    def dfs(u):
        state[u] = 1
        for w in pop_succ.get(u, []):
            if state.get(w) == 1:
                back.add((u, w))
            elif w not in state:
                dfs(w)
        state[u] = 2

    for k in ir_nodes:
        if isinstance(ir_nodes[k], SpikeSource) and k not in state:
            dfs(k)
    for k in ir_nodes:
        if k not in state:
            dfs(k)

    projections, biases = [], {}
    for pre, post, ops in paths:
        shape, n_pre = ir_nodes[pre].shape, ir_nodes[pre].n
        M, b, delay = np.eye(n_pre), np.zeros(n_pre), 0.0
        structured = None
        for name in ops:
            op = nodes[name]
            if isinstance(op, nir.Delay):
                if M.shape[0] != n_pre or np.any(M != np.eye(n_pre)):
                    raise UnsupportedLayerError([(name, "a Delay after a linear map (only directly behind neurons)")],
                                                context="NIR import")
                delay += _uniform(file, name, "delay", op.delay)
                continue
            if isinstance(op, nir.Flatten):
                shape = (math.prod(shape),)
                continue
            if isinstance(op, nir.Scale):
                s = np.broadcast_to(np.asarray(op.scale, dtype=np.float64).reshape(-1), (M.shape[0],))
                M, b = M * s[:, None], b * s
                continue
            if isinstance(op, (nir.Affine, nir.Linear)):
                W = np.asarray(op.weight, dtype=np.float64)
                if W.shape[1] != M.shape[0]:
                    raise FormatError(file, name, "weight", f"takes {W.shape[1]} inputs, gets {M.shape[0]}")
                M, b = W @ M, W @ b + (np.asarray(op.bias, dtype=np.float64) if isinstance(op, nir.Affine) else 0.0)
                shape = (W.shape[0],)
                continue
            if len(shape) != 3:
                raise FormatError(file, name, "input", f"needs [C, H, W] spikes, gets shape {shape}")
            if isinstance(op, nir.Conv2d):
                if int(np.asarray(op.groups)) != 1 or np.any(np.asarray(op.dilation) != 1):
                    raise UnsupportedLayerError([(name, "Conv2d with groups or dilation")], context="NIR import")
                if isinstance(op.padding, str):
                    raise UnsupportedLayerError([(name, f"Conv2d padding {op.padding!r}")], context="NIR import")
                proj = Conv2dProjection.from_kernel("a", "b", np.asarray(op.weight, dtype=np.float64), shape,
                                                    tuple(np.broadcast_to(op.stride, 2)),
                                                    tuple(np.broadcast_to(op.padding, 2)))
                cb = np.repeat(np.asarray(op.bias, dtype=np.float64), math.prod(proj.out_shape[1:]))
            else:
                kind = "sum" if isinstance(op, nir.SumPool2d) else "avg"
                proj = Pool2dProjection.from_window("a", "b", kind, tuple(np.broadcast_to(op.kernel_size, 2)), shape,
                                                    tuple(np.broadcast_to(op.stride, 2)),
                                                    tuple(np.broadcast_to(op.padding, 2)))
                cb = 0.0
            D = proj.to_dense(proj.n_post)
            M, b = D @ M, D @ b + cb
            shape = proj.out_shape
            structured = proj if len([o for o in ops if not isinstance(nodes[o], (nir.Delay, nir.Flatten))]) == 1 else None
        post_node = ir_nodes[post]
        if M.shape[0] != post_node.n:
            raise FormatError(file, post, "input", f"receives {M.shape[0]} values from {pre!r}, has {post_node.n} neurons")
        steps = delay / dt
        if not math.isclose(steps, round(steps), abs_tol=1e-6):
            raise FormatError(file, ",".join(ops), "delay", f"{delay} s is not a whole number of steps of {dt} s")
        d = int(round(steps)) + (1 if (pre, post) in back else 0)
        sc = scale[post]
        if structured is not None and sc == 1.0:
            kw = dict(delay_steps=d, name=ops[-1])
            if isinstance(structured, Conv2dProjection):
                proj = Conv2dProjection.from_kernel(pre, post, structured.kernel, structured.in_shape,
                                                    structured.stride, structured.padding, **kw)
            else:
                proj = Pool2dProjection.from_window(pre, post, structured.kind, structured.kernel_size,
                                                    structured.in_shape, structured.stride, structured.padding, **kw)
        else:
            proj = Projection.from_dense(pre, post, M * sc, delay_steps=d, name=ops[-1] if ops else f"{pre}->{post}")
        projections.append(proj)
        if np.any(b != 0):
            biases[post] = biases.get(post, 0.0) + b * sc
    for post, b in biases.items():
        ir_nodes[f"{post}.bias"] = ConstantCurrent(post, b)
    return Graph(ir_nodes, projections, dt_ms=dt_ms, metadata={"source": f"NIR {file}", "nir_dt_s": dt})


def import_nir(path, dt_s: Optional[float] = None) -> Graph:
    """The IR graph of the NIR file ``path`` (checked by :func:`read_nir`); values that pass the file
    checks but contradict each other raise FormatError naming the file."""
    from ..core.errors import NeuroError

    graph = read_nir(path)
    try:
        return from_nir(graph, dt_s, file=str(path))
    except (FormatError, UnsupportedLayerError):
        raise
    except NeuroError as e:
        if dt_s is None and isinstance(e, ParameterError) and e.field == "dt_s":
            raise
        raise FormatError(str(path), getattr(e, "owner", None), getattr(e, "field", None), str(e)) from None
    except (ValueError, TypeError, IndexError, KeyError) as e:
        raise FormatError(str(path), None, None, f"inconsistent NIR graph: {type(e).__name__}: {e}") from None


def load_nir(path, dt_s: Optional[float] = None, dtype=None):
    """A runnable neuro model (:class:`~neuro.ir.build.GraphNetwork`) of the NIR file ``path``."""
    import torch

    from ..ir.build import GraphNetwork

    return GraphNetwork(import_nir(path, dt_s), dtype=torch.float64 if dtype is None else dtype)


__all__ = ["EXPORTERS", "NODE_FIELDS", "export_nir", "from_nir", "import_nir", "load_nir", "read_nir", "to_nir"]
