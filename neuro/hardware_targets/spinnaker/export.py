r"""Network descriptions for SpiNNaker tool chains: a py-spinnaker2-style JSON and a PyNN script.

Both read LIF and IF populations of an IR :class:`~neuro.ir.Graph` (hard or soft reset for
py-spinnaker2, hard reset for PyNN), spike sources and constant drives. A neuro population in
neuro's units (REFERENCE §1, :class:`~neuro.ir.LIFPopulation`):

.. math:: H_t = V_{rest} + d\,(V_{t-1} - V_{rest}) + g\,(X_t + c), \qquad
          g = 1 - d \ (\text{decay\_input}) \text{ or } 1,

``X_t`` the synaptic input, ``c`` the constant drive (:class:`~neuro.ir.ConstantCurrent`).

**Timing.** Hardware spikes travel at least one tick; the IR allows same-step projections. As in
the mapping (:mod:`.delays`) every spiking node ``P`` gets a tick offset :math:`s_P`, and a
projection with IR delay ``d`` gets the delay :math:`D = d + s_{post} - s_{pre} \ge D_{min}`:

* py-spinnaker2 (:func:`to_spinnaker2`, REFERENCE §6): delays 0..7 and the hardware adds one tick,
  so :math:`D_{min} = 1` and the stored delay is :math:`D - 1`; a larger one is a
  :class:`~neuro.core.errors.HardwareLimitError` naming the projection (no delay extension here);
* PyNN (:func:`to_pynn`): a spike sent at time :math:`t_0` over a connection of delay :math:`\delta`
  moves the membrane in the step of :math:`t_0 + \delta + \Delta t` (PyNN's Brian2 backend; measured
  in a test), so :math:`D_{min} = 2` and :math:`\delta = (D - 1)\,\Delta t`.

Population ``P``'s IR step ``t`` is its tick :math:`t + s_P`; both descriptions record the offsets.

**py-spinnaker2 weights** are integers in [-15, 15]. ``weight_scale='auto'`` scales every
population's potentials by :math:`k_P = 15 / \max |g\,w|` over its incoming weights (LIF dynamics
are linear in V, so threshold, reset, rest, initial potential and drive scale with it) and rounds;
the rounding error per projection is reported. A number ``k`` scales all populations by ``k``;
weights outside [-15, 15] after scaling raise HardwareLimitError naming the projection, or with
``clip=True`` are clipped and listed.

**PyNN cells** are ``IF_curr_delta`` (a synaptic weight is a jump of the membrane in mV, the closest
standard cell to neuro's jump input; ``IF_curr_exp``/``IF_cond_*`` would add a synaptic filter neuro's
LIF lacks): :math:`\tau_m = -\Delta t / \ln d` (exact integration keeps the per-step decay ``d``; an IF
gets :math:`\tau_m = 10^{12}` ms), ``cm`` = 1 nF, ``v_rest`` as in neuro (mV), ``tau_refrac`` = 0,
synaptic weight :math:`g\,w` mV (negative weights on the ``inhibitory`` receptor, negative as PyNN
wants for current-based cells), ``i_offset`` :math:`= g c\,c_m / ((1 - d)\,\tau_m)` nA (the constant
current whose exact integration adds :math:`g c` per step; :math:`g c\,c_m / \Delta t` for an IF).
PyNN's Brian2 cells update a step as decay, threshold, synaptic jumps, reset, so the membrane after
the jumps of step ``k`` is neuro's :math:`H` and is tested one step later after one more decay
:math:`S(u) = V_{rest} + d\,(u - V_{rest}) + g c`: hence per neuron
``v_thresh`` :math:`= S(V_{th})`, ``v_reset`` :math:`= S(V_{reset})` (the reset replaces the state of
the step after the spike) and the initial membrane :math:`S^{-s_P}(V_{init})`; the spike is seen one
step after its :math:`H` (the latency above).

Convention differences (the PyNN run equals neuro's apart from these; test on Brian2):

* synaptic input that reaches a neuron in the step right after it spiked is lost in PyNN (the reset
  comes after the jumps) and added after the reset in neuro;
* PyNN's Brian2 threshold is strict (``v > v_thresh``); neuro's default is :math:`H \ge V_{th}`, so a
  membrane landing exactly on the threshold spikes in neuro only (``strict_threshold=True`` agrees);
* soft reset (``v_reset=None``) has no PyNN standard cell: :class:`~neuro.core.errors.UnsupportedLayerError`;
* the schedule and one-step latency above are Brian2's; the script's ``LATENCY_STEPS`` holds the
  latency and should be checked on another backend (sPyNNaker: ``--backend spiNNaker``).

Unsupported nodes (other population kinds, Poisson and given-current drives) raise
:class:`~neuro.core.errors.UnsupportedLayerError` listing every one.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ...core.errors import HardwareLimitError, ParameterError, ShapeError, UnsupportedLayerError
from ...ir.graph import ConstantCurrent, Graph, IFPopulation, LIFPopulation, SpikeSource
from .delays import tick_offsets
from .machine import load_machine

WEIGHT_MAX = 15          # py-spinnaker2 LIF: weights in [-15, 15] (REFERENCE §6)
DELAY_MAX = 7            # py-spinnaker2: delays 0..7, the hardware adds one tick (REFERENCE §6)
IF_TAU_MS = 1e12         # an IF as a LIF whose leak is below float precision over any run


def _cells(graph: Graph, context: str, soft_reset: bool) -> dict:
    """population -> neuro-unit parameters {d, g, v_th, v_reset, v_rest, v_init [n], bias [n], strict}."""
    if not isinstance(graph, Graph):
        raise ParameterError(context, "graph", type(graph).__name__, "a neuro.ir.Graph")
    bad, out = [], {}
    for name, node in graph.nodes.items():
        if isinstance(node, SpikeSource):
            continue
        if isinstance(node, ConstantCurrent):
            if not isinstance(graph.nodes.get(node.target), (LIFPopulation, IFPopulation)):
                bad.append((name, f"ConstantCurrent into {node.target!r}"))
            continue
        if not isinstance(node, (LIFPopulation, IFPopulation)):
            bad.append((name, type(node).__name__))
            continue
        if node.v_reset is None and not soft_reset:
            bad.append((name, f"{type(node).__name__} with soft reset (v_reset=None)"))
            continue
        d = node.decay if isinstance(node, LIFPopulation) else 1.0
        g = 1.0 - d if isinstance(node, LIFPopulation) and node.decay_input else 1.0
        v_rest = node.v_rest if isinstance(node, LIFPopulation) else 0.0
        v_init = node.v_init if node.v_init is not None else (node.v_reset if node.v_reset is not None else 0.0)
        bias = np.zeros(node.n)
        for _, drive in graph.drives_of(name):
            if isinstance(drive, ConstantCurrent):
                bias = bias + drive.values
        out[name] = {"d": float(d), "g": float(g), "v_th": float(node.v_th), "v_reset": node.v_reset,
                     "v_rest": float(v_rest), "v_init": np.broadcast_to(np.asarray(v_init, dtype=float), (node.n,)),
                     "bias": bias, "strict": bool(node.strict_threshold), "n": node.n}
    if bad:
        raise UnsupportedLayerError(bad, context=context)
    return out


def _delays(graph: Graph, delay_min: int) -> tuple:
    """Tick offsets and the per-projection delay D (module docstring)."""
    offsets = tick_offsets(graph, load_machine("spinnaker2", delay_min=delay_min))
    return offsets, [p.delay_steps + offsets[p.post] - offsets[p.pre] for p in graph.projections]


def _label(p, k) -> str:
    return p.name or f"projections[{k}] {p.pre}->{p.post}"


def _pairs(p) -> tuple:
    """(pre, post, w) arrays of a CSR projection."""
    pre = np.repeat(np.arange(len(p.indptr) - 1), np.diff(p.indptr))
    return pre, np.asarray(p.indices), np.asarray(p.weights, dtype=float)


def _source_times(graph, inputs, offsets, steps) -> dict:
    """source -> per neuron list of ticks with a spike (IR step + offset)."""
    out = {}
    for name, node in graph.sources().items():
        x = None if inputs is None else inputs.get(name)
        if x is None:
            out[name] = [[] for _ in range(node.n)]
            continue
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != node.n:
            raise ShapeError("spinnaker export", f"source {name!r} needs spikes [T, {node.n}], got {x.shape}")
        x = x[:steps] if steps is not None else x
        out[name] = [[int(t) + offsets[name] for t in np.nonzero(x[:, i])[0]] for i in range(node.n)]
    return out


# -- py-spinnaker2 ---------------------------------------------------------------------------------
def to_spinnaker2(graph: Graph, inputs=None, weight_scale="auto", clip: bool = False) -> dict:
    """py-spinnaker2-style description (module docstring): ``populations`` (``spike_list`` sources,
    ``lif`` neurons with threshold, alpha_decay, i_offset, v_reset, reset, v_init), ``projections``
    as ``[pre, post, w, d]`` lists, ``weight_scale`` per population, ``tick_offsets``,
    ``quantization`` (max rounding error per projection, in neuro's units) and ``clipped``."""
    cells = _cells(graph, "the py-spinnaker2 export", soft_reset=True)
    offsets, D = _delays(graph, 1)
    bad = [{"projection": _label(p, k), "ir_delay_steps": p.delay_steps, "delay_ticks": D[k],
            "stored_delay": D[k] - 1, "stored_delay_max": DELAY_MAX}
           for k, p in enumerate(graph.projections) if D[k] - 1 > DELAY_MAX]
    if bad:
        raise HardwareLimitError("py-spinnaker2 (delays 0..7, no delay extension)", bad)
    gain = {k: (cells[p.post]["g"] if p.post in cells else 1.0) for k, p in enumerate(graph.projections)}
    if weight_scale == "auto":
        scale = {}
        for name in cells:
            wmax = max((float(np.abs(p.weights).max()) * gain[k] for k, p in enumerate(graph.projections)
                        if p.post == name and p.nnz), default=0.0)
            scale[name] = WEIGHT_MAX / wmax if wmax > 0 else 1.0
    elif isinstance(weight_scale, (int, float)) and not isinstance(weight_scale, bool) and math.isfinite(weight_scale) \
            and weight_scale > 0:
        scale = {name: float(weight_scale) for name in cells}
    else:
        raise ParameterError("to_spinnaker2", "weight_scale", weight_scale, "'auto' or a finite number > 0")
    pops, projs, quant, clipped, over = [], [], [], [], []
    times = _source_times(graph, inputs, offsets, None)
    for name, node in graph.nodes.items():
        if isinstance(node, SpikeSource):
            pops.append({"name": name, "size": node.n, "neuron_model": "spike_list", "tick_offset": offsets[name],
                         "params": {str(i): t for i, t in enumerate(times[name]) if t}})
        elif name in cells:
            c, k = cells[name], scale[name]
            pops.append({"name": name, "size": c["n"], "neuron_model": "lif", "tick_offset": offsets[name],
                         "params": {"threshold": c["v_th"] * k, "alpha_decay": c["d"],
                                    "i_offset": ((c["g"] * c["bias"] + (1 - c["d"]) * c["v_rest"]) * k).tolist(),
                                    "v_reset": 0.0 if c["v_reset"] is None else c["v_reset"] * k,
                                    "reset": "reset_by_subtraction" if c["v_reset"] is None else "reset_to_v_reset",
                                    "v_init": (c["v_init"] * k).tolist()}})
    for j, p in enumerate(graph.projections):
        pre, post, w = _pairs(p)
        k = scale[p.post]
        q = np.round(w * gain[j] * k)                                                       # [nnz]
        out = np.abs(q) > WEIGHT_MAX
        if out.any():
            row = {"projection": _label(p, j), "post": p.post, "weights_out_of_range": int(out.sum()),
                   "largest": float(q[out][np.argmax(np.abs(q[out]))]), "range": [-WEIGHT_MAX, WEIGHT_MAX]}
            (clipped if clip else over).append(row)
            q = np.clip(q, -WEIGHT_MAX, WEIGHT_MAX)
        err = float(np.abs(q / k - w * gain[j]).max()) if q.size else 0.0
        quant.append({"projection": _label(p, j), "max_abs_error": err, "scale": k})
        projs.append({"name": _label(p, j), "pre": p.pre, "post": p.post,
                      "conns": [[int(a), int(b), int(c), D[j] - 1] for a, b, c in zip(pre, post, q)]})
    if over:
        raise HardwareLimitError("py-spinnaker2 (weights in [-15, 15]; clip=True clips and reports)", over)
    return {"format": "neuro-py-spinnaker2-network", "dt_ms": graph.dt_ms, "populations": pops, "projections": projs,
            "weight_scale": scale, "tick_offsets": dict(offsets), "quantization": quant, "clipped": clipped,
            "delay_convention": "stored delay d: the hardware delivers after d + 1 ticks"}


def write_spinnaker2(graph: Graph, path, **kw) -> Path:
    """Write :func:`to_spinnaker2` as JSON to ``path``."""
    path = Path(path)
    path.write_text(json.dumps(to_spinnaker2(graph, **kw), indent=1))
    return path


# -- PyNN ------------------------------------------------------------------------------------------
LATENCY_STEPS = 1        # PyNN Brian2 backend: a spike moves its target one step after its delay


def pynn_cells(graph: Graph, offsets: dict = None) -> dict:
    """population -> IF_curr_delta parameters (module docstring), per neuron where they depend on
    the drive, plus ``v_init`` (the membrane ``offsets[P]`` steps before the population's first step)."""
    dt = graph.dt_ms
    out = {}
    for name, c in _cells(graph, "the PyNN export", soft_reset=False).items():
        d, g, vr = c["d"], c["g"], c["v_rest"]
        tau = -dt / math.log(d) if d < 1.0 else IF_TAU_MS
        per_step = (1.0 - d) * tau if d < 1.0 else dt
        gc = g * c["bias"]                                                    # [n] drive per step
        v0 = c["v_init"].copy()
        for _ in range((offsets or {}).get(name, 0)):                         # undo the steps before t = 0
            v0 = vr + (v0 - gc - vr) / d
        out[name] = {"tau_m": tau, "cm": 1.0, "v_rest": vr, "tau_refrac": 0.0,
                     "v_thresh": (vr + d * (c["v_th"] - vr) + gc).tolist(),
                     "v_reset": (vr + d * (float(c["v_reset"]) - vr) + gc).tolist(),
                     "i_offset": (gc / per_step).tolist(), "v_init": v0.tolist(), "gain": g}
    return out


_SCRIPT = '''"""PyNN description of a spiking network exported by neuro (neuro.hardware_targets.spinnaker.export).

Run:  python {file} [--backend brian2|spiNNaker|nest] [--steps N] [--out spikes.npz]

Cells are IF_curr_delta: weights are membrane jumps in mV, delays in ms; thresholds and resets are
per neuron (the membrane after one step's decay and drive). Population P's IR step t is simulation
step t + TICK_OFFSETS[P]; a connection's delay is (D - LATENCY_STEPS) * DT_MS with D its delay in
steps. LATENCY_STEPS = 1 holds for PyNN's Brian2 backend (check it on another one). Differences from
neuro: strict thresholds (v > v_thresh), and input arriving in the step after a spike is lost. The
spikes are saved per population as [T, n] arrays of 0/1 in IR steps.
"""
import argparse

import numpy as np

DT_MS = {dt!r}
STEPS = {steps!r}
LATENCY_STEPS = {latency!r}
TICK_OFFSETS = {offsets!r}
# source -> per neuron the simulation steps with a spike
SOURCES = {sources!r}
# population -> IF_curr_delta parameters (i_offset per neuron, nA) and the initial membrane (mV)
CELLS = {cells!r}
PER_NEURON = ("v_thresh", "v_reset", "i_offset", "v_init")
# (pre, post, D steps, [(i, j, weight mV), ...])
PROJECTIONS = {projections!r}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="spiNNaker")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--out", default="spikes.npz")
    a = ap.parse_args()
    if a.backend == "brian2":
        import brian2
        brian2.prefs.codegen.target = "numpy"
    sim = __import__("pyNN." + a.backend, fromlist=["setup"])
    sim.setup(timestep=DT_MS, min_delay=DT_MS, max_delay=max([d for _, _, d, _ in PROJECTIONS], default=1) * DT_MS)
    pops = {{}}
    for name, ticks in SOURCES.items():
        seqs = [sim.Sequence([t * DT_MS for t in ts]) for ts in ticks]
        pops[name] = sim.Population(len(ticks), sim.SpikeSourceArray(spike_times=seqs), label=name)
    for name, c in CELLS.items():
        n = len(c["v_init"])
        params = {{k: v for k, v in c.items() if k not in PER_NEURON}}
        pops[name] = sim.Population(n, sim.IF_curr_delta(**params), label=name)
        pops[name].set(**{{k: np.asarray(c[k]) for k in PER_NEURON if k != "v_init"}})
        pops[name].initialize(v=np.asarray(c["v_init"]))
        pops[name].record("spikes")
    for pre, post, D, conns in PROJECTIONS:
        delay = (D - LATENCY_STEPS) * DT_MS
        for receptor, sign in (("excitatory", 1.0), ("inhibitory", -1.0)):
            part = [(i, j, w, delay) for i, j, w in conns if sign * w > 0]   # PyNN: negative current-based weights
            if part:
                sim.Projection(pops[pre], pops[post], sim.FromListConnector(part), sim.StaticSynapse(),
                               receptor_type=receptor)
    sim.run((a.steps + max(TICK_OFFSETS.values(), default=0) + 1) * DT_MS)
    out = {{}}
    for name in CELLS:
        x = np.zeros((a.steps, len(CELLS[name]["v_init"])))
        for i, st in enumerate(pops[name].get_data().segments[0].spiketrains):
            for t in np.asarray(st.magnitude):
                step = int(round(t / DT_MS)) - TICK_OFFSETS[name]
                if 0 <= step < a.steps:
                    x[step, i] = 1.0
        out[name] = x
    np.savez(a.out, **out)
    sim.end()


if __name__ == "__main__":
    main()
'''


def to_pynn(graph: Graph, inputs=None, steps: int = 100, file: str = "model_pynn.py") -> str:
    """Python source of a PyNN script (module docstring) running ``graph`` for ``steps`` IR steps
    with the source spikes ``inputs`` {source: [T, n]} (none: silent sources)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ParameterError("to_pynn", "steps", steps, "an integer >= 1")
    offsets, D = _delays(graph, 1 + LATENCY_STEPS)
    cells = pynn_cells(graph, offsets)
    sources = _source_times(graph, inputs, offsets, steps)
    projections = []
    for p, d in zip(graph.projections, D):
        pre, post, w = _pairs(p)
        g = cells[p.post]["gain"]
        projections.append((p.pre, p.post, int(d), [(int(a), int(b), float(c) * g) for a, b, c in zip(pre, post, w)]))
    cells = {k: {f: v for f, v in c.items() if f != "gain"} for k, c in cells.items()}
    return _SCRIPT.format(file=file, dt=float(graph.dt_ms), steps=steps, latency=LATENCY_STEPS,
                          offsets={k: int(v) for k, v in offsets.items()}, sources=sources, cells=cells,
                          projections=projections)


def write_pynn(graph: Graph, path, **kw) -> Path:
    """Write :func:`to_pynn` to ``path`` (a .py file)."""
    path = Path(path)
    path.write_text(to_pynn(graph, file=path.name, **kw))
    return path
