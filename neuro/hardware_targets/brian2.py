r"""Brian2 as the reference simulator: run an IR :class:`~neuro.ir.Graph` in Brian2, step for step.

:func:`run_brian2` builds one ``NeuronGroup`` per population, one ``Synapses`` per projection, one
``SpikeGeneratorGroup`` per spike source, and orders every Brian2 object explicitly so that a step of
Brian2 is a step of neuro (float64 throughout; Brian2 is imported only inside the functions).

**Equations** (``method='exact'``). A LIF population with decay :math:`d` gets

.. code-block:: text

    dv/dt = -v/tau_m : 1                        (decay_input=False; (v_rest - v)/tau_m if v_rest != 0)
    dv/dt = (x_in - v)/tau_m : 1                (decay_input=True;  (v_rest - v + x_in)/tau_m if v_rest != 0)
    tau_m = -dt/log(decay) : second             the time constant whose exact decay over dt is d
    x_in : 1                                    input of the step: drives + synaptic sum
    x_syn : 1                                   synaptic sum, accumulated by on_pre='x_syn_post += w'

Brian2's exact integrator substitutes ``tau_m`` and simplifies :math:`e^{-dt/\tau_m}` to ``decay``,
so its generated update is ``_v = decay*v`` (``-x_in*decay + x_in + decay*v`` for a held current): no
``exp`` is evaluated, whatever the code-generation target. Synaptic spikes are summed into
``x_syn`` (``on_pre='x_syn_post += w'``) rather than added to ``v`` one by one, because neuro adds
the whole step's input :math:`X_t` = drives + synaptic sum in one addition; Brian2 sums the synapses
in the same order as neuro's CSR kernels (presynaptic neuron ascending, then CSR order). The input
of the step is ``x_in = d_1 + x_syn`` for one drive (neuro's ``drive + W s``), ``x_in = x_syn``
without one, ``((d_1 + d_2) + ...) + x_syn`` with several. A :class:`~neuro.ir.PoissonInput` is precomputed
for the run with :mod:`neuro.core.random` (so the draws are neuro's) and read from a 2-D
``TimedArray``, like a :class:`~neuro.ir.GivenCurrent`; a :class:`~neuro.ir.ConstantCurrent` is a
per-neuron constant. IF populations have no differential equation (``v += x_in``). Thresholds are
``v >= v_th`` or ``v > v_th`` (``strict_threshold``); resets ``v = v_reset`` or ``v -= v_th``.

**Bit identity.** With ``decay_input=False`` and ``v_rest = 0`` (benchmark W2) and for IF
populations, Brian2 computes ``decay*v + x_in`` with neuro's operands in neuro's order: membrane
traces are bit-identical (checked in tests/test_brian2.py). With ``decay_input=True`` the exact
solution that sympy writes, ``-x_in*decay + x_in + decay*v``, is algebraically neuro's
:math:`V + (1 - d)(X - V)` but cannot be made to round the same way (sympy fixes the form): traces
differ by rounding (at most 1.5e-14 over W3's 10,000 steps) and spikes can only differ when
:math:`H_t` lies within that rounding of ``v_th`` (W3 and the tests see none). The same holds for
``v_rest != 0`` and for more than one drive per population. neuro's dense
``Linear`` sums in BLAS order, so a chain with dense layers is exact only to rounding as well.

**Schedule.** The network schedule is Brian2's default (``start, groups, thresholds, synapses,
resets, end``) and every per-step object runs in the ``groups`` slot with an explicit ``order``:

1. pathways of projections with ``delay_steps >= 1`` (their source's spike space still holds the
   previous step's spikes; a Brian2 delay of ``(delay_steps - 1) dt`` adds the rest);
2. then, node by node in the graph's topological order over zero-delay projections:

   * a spike source: its ``SpikeGeneratorGroup`` (emits this step's spikes);
   * a population: the pathways of its zero-delay projections (their sources have already fired
     this step), then for ``decay_input=True``: gather ``x_in``, state update, for a jump input
     (``decay_input=False``, IF): state update, gather ``x_in`` and ``v += x_in``; then threshold and
     reset.

Monitors run in ``end``: a spike carries the step of the threshold that emitted it (Brian2's time
``t = step * dt``, neuro's step index) and ``v`` is recorded after the reset, as neuro's ``v_trace``.

Targets: ``'numpy'`` (the default: no compiler, no cache, the fastest on a fresh machine) and
``'cython'`` (compiles its code objects into Brian2's cache in the user's home). Measured on a 2-core
x86-64 machine for the full W2 comparison (10,000 neurons, ~1M synapses, 1,000 steps, Poisson
drive), Brian2 2.9.0: numpy 1.4-2.0 s to build and run (plus 2-3 s for the first ``import brian2``);
cython 50-70 s on a fresh cache (compilation), about 7 s once cached. Spikes were identical to
neuro's (291,580 spikes, 29.2 Hz).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from ..core.errors import ParameterError, ShapeError, UnsupportedLayerError
from ..core.events import EventTensor
from ..ir.graph import (ConstantCurrent, GivenCurrent, Graph, IFPopulation, LIFPopulation, PoissonInput,
                        SpikeSource)

TARGETS = ("numpy", "cython")
SCHEDULE = ("start", "groups", "thresholds", "synapses", "resets", "end")
SLOT = "groups"


@dataclass
class Brian2Result:
    """What :func:`run_brian2` recorded.

    Attributes:
        spikes: population name -> EventTensor over (n,), float64 (step index of the threshold).
        v: population name -> float64 [T, n] membrane after each step's reset (``record_v=True``), else None.
        steps, dt_ms, target: the run.
        build_s: seconds to build the Brian2 objects; run_s: seconds in ``Network.run``
            (code generation and, for cython, compilation included).
    """

    spikes: dict
    v: Optional[dict]
    steps: int
    dt_ms: float
    target: str
    build_s: float = 0.0
    run_s: float = 0.0
    brian2_version: str = ""

    def counts(self, name: str) -> np.ndarray:
        """int64 [n]: spikes per neuron of population ``name``."""
        ev = self.spikes[name]
        return np.bincount(ev.indices.numpy(), minlength=ev.shape[0]).astype(np.int64)

    def rates_hz(self, name: str) -> np.ndarray:
        return self.counts(name) / (self.steps * self.dt_ms * 1e-3)


# ----------------------------------------------------------------------------- inputs
def _spike_lists(owner: str, spikes, n: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(neuron indices, step indices) of the binary spikes ``spikes`` [T >= steps, n] (EventTensor,
    numpy array or tensor; [T, 1, n] accepted), restricted to the first ``steps`` steps."""
    if isinstance(spikes, EventTensor):
        if tuple(spikes.shape) not in ((n,), (1, n)):
            raise ShapeError(owner, f"input spikes have step shape {tuple(spikes.shape)}, the source has {n} channels")
        if spikes.values is not None and not bool((spikes.values == 1).all()):
            raise ParameterError(owner, "input_spikes", "graded events", "binary spikes (every event 1)")
        T = spikes.steps
        idx, counts = spikes.indices.numpy(), spikes.counts().numpy()
        t_idx = np.repeat(np.arange(T), counts)
    else:
        a = spikes.detach().cpu().numpy() if isinstance(spikes, torch.Tensor) else np.asarray(spikes)
        if a.ndim == 3 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim != 2 or a.shape[1] != n:
            raise ShapeError(owner, f"input spikes have shape {a.shape}, expected [T, {n}]")
        if not np.isin(a, (0, 1)).all():
            raise ParameterError(owner, "input_spikes", float(a[~np.isin(a, (0, 1))].flat[0]), "binary (0 or 1)")
        T = a.shape[0]
        t_idx, idx = np.nonzero(a)
    if T < steps:
        raise ShapeError(owner, f"input spikes cover {T} steps, the run has {steps}")
    keep = t_idx < steps
    return idx[keep].astype(np.int64), t_idx[keep].astype(np.int64)


def _resolve_inputs(graph: Graph, input_spikes, steps: int) -> dict:
    sources = graph.sources()
    if not sources:
        if input_spikes is not None:
            raise ParameterError("run_brian2", "input_spikes", type(input_spikes).__name__,
                                 "None: the graph has no SpikeSource")
        return {}
    if input_spikes is None:
        raise ParameterError("run_brian2", "input_spikes", None, f"spikes for the source(s) {sorted(sources)}")
    if not isinstance(input_spikes, dict):
        if len(sources) != 1:
            raise ParameterError("run_brian2", "input_spikes", type(input_spikes).__name__,
                                 f"a dict name -> spikes for the sources {sorted(sources)}")
        input_spikes = {next(iter(sources)): input_spikes}
    missing, extra = set(sources) - set(input_spikes), set(input_spikes) - set(sources)
    if missing or extra:
        raise ParameterError("run_brian2", "input_spikes", sorted(input_spikes),
                             f"keys equal to the spike sources {sorted(sources)}")
    return {k: _spike_lists(f"run_brian2 input {k!r}", input_spikes[k], sources[k].n, steps) for k in sources}


# ----------------------------------------------------------------------------- populations
@dataclass
class _GroupSpec:
    equations: str
    namespace: dict
    threshold: str
    reset: str
    jump: bool                    # input added as a jump after the leak (else held over the step)
    method: Optional[str] = "exact"
    extra_eqs: list = field(default_factory=list)   # per-neuron constants of the drives
    constants: dict = field(default_factory=dict)   # their values


def _fire(pop) -> tuple[str, str]:
    threshold = "v > v_th" if pop.strict_threshold else "v >= v_th"
    return threshold, ("v -= v_th" if pop.soft_reset else "v = v_reset")


def _lif_spec(pop: LIFPopulation) -> _GroupSpec:
    rest = pop.v_rest != 0.0
    if pop.decay_input:
        ode = "dv/dt = (v_rest - v + x_in)/tau_m : 1" if rest else "dv/dt = (x_in - v)/tau_m : 1"
    else:
        ode = "dv/dt = (v_rest - v)/tau_m : 1" if rest else "dv/dt = -v/tau_m : 1"
    eqs = "\n".join([ode, "tau_m = -dt/log(decay) : second", "x_in : 1", "x_syn : 1"])
    ns = {"decay": pop.decay, "v_rest": pop.v_rest, "v_th": pop.v_th,
          "v_reset": 0.0 if pop.v_reset is None else pop.v_reset}
    return _GroupSpec(eqs, ns, *_fire(pop), jump=not pop.decay_input)


def _if_spec(pop: IFPopulation) -> _GroupSpec:
    ns = {"v_th": pop.v_th, "v_reset": 0.0 if pop.v_reset is None else pop.v_reset}
    return _GroupSpec("v : 1\nx_in : 1\nx_syn : 1", ns, *_fire(pop), jump=True, method=None)


# population node type -> fn(node) -> _GroupSpec
POPULATIONS: dict[type, Callable] = {LIFPopulation: _lif_spec, IFPopulation: _if_spec}


def _constant_term(b2, d: ConstantCurrent, key: str, steps: int, dt_ms: float, spec: _GroupSpec) -> str:
    spec.extra_eqs.append(f"{key} : 1 (constant)")
    spec.constants[key] = d.values
    return key


def _timed_term(b2, values: np.ndarray, key: str, dt_ms: float, spec: _GroupSpec) -> str:
    spec.namespace[key] = b2.TimedArray(values, dt=dt_ms * b2.ms)  # [steps, n], on the clock's grid
    return f"{key}(t, i)"


def _poisson_term(b2, d: PoissonInput, key: str, steps: int, dt_ms: float, spec: _GroupSpec) -> str:
    return _timed_term(b2, d.values(steps, dt_ms), key, dt_ms, spec)  # neuro's draws for neuro's dt


def _given_term(b2, d: GivenCurrent, key: str, steps: int, dt_ms: float, spec: _GroupSpec) -> str:
    if d.values.shape[0] < steps:
        raise ShapeError("run_brian2", f"GivenCurrent for {d.target!r} has {d.values.shape[0]} steps, "
                                       f"the run has {steps}")
    return _timed_term(b2, np.ascontiguousarray(d.values[:steps]), key, dt_ms, spec)


# drive node type -> fn(brian2, drive, key, steps, dt_ms, spec) -> Brian2 expression of its value
DRIVES: dict[type, Callable] = {ConstantCurrent: _constant_term, PoissonInput: _poisson_term,
                                GivenCurrent: _given_term}


# ----------------------------------------------------------------------------- build and run
def _build(b2, graph: Graph, steps: int, inputs: dict, record_v: bool):
    clock = b2.Clock(dt=graph.dt_ms * b2.ms, name="neuro_clock")
    dt = clock.dt
    objects, groups, monitors, vmons = [], {}, {}, {}
    specs, gathers = {}, {}  # population name -> _GroupSpec, its gather CodeRunner
    order = iter(range(1_000_000))

    def step_object(obj):
        obj.when, obj.order = SLOT, next(order)
        return obj

    # spike sources and populations, not yet ordered
    for k, (name, node) in enumerate(graph.nodes.items()):
        if isinstance(node, SpikeSource):
            idx, st = inputs[name]
            groups[name] = b2.SpikeGeneratorGroup(node.n, idx, st * dt, clock=clock, name=f"neuro_source{k}")
            objects.append(groups[name])
        elif type(node) in POPULATIONS:
            spec = POPULATIONS[type(node)](node)
            terms = [DRIVES[type(d)](b2, d, f"drive_{k}_{j}", steps, graph.dt_ms, spec)
                     for j, (_, d) in enumerate(graph.drives_of(name))] + ["x_syn"]
            G = b2.NeuronGroup(node.n, "\n".join([spec.equations, *spec.extra_eqs]), threshold=spec.threshold,
                               reset=spec.reset, method=spec.method, namespace=spec.namespace, clock=clock,
                               name=f"neuro_pop{k}")
            G.v = node.v_init
            for key, vals in spec.constants.items():
                setattr(G, key, vals)
            # x_in = d_1 + d_2; x_in += d_3 ...; the first statement always adds (Brian2 2.9's numpy
            # target binds `x_in = c` to the array of a constant c without a copy, so a following
            # `x_in += ...` would add into c in place)
            first = f"{terms[0]} + {terms[1]}" if len(terms) > 1 else terms[0]
            gather = [f"x_in = {first}"] + [f"x_in += {t}" for t in terms[2:]] + ["x_syn = 0"]
            if spec.jump:
                gather.append("v += x_in")
            gathers[name] = G.run_regularly("\n".join(gather), when=SLOT, name=f"neuro_gather{k}")
            groups[name], specs[name] = G, spec
            monitors[name] = b2.SpikeMonitor(G, record=True, when="end", order=0, name=f"neuro_spikes{k}")
            objects += [G, monitors[name]]
            if record_v:
                vmons[name] = b2.StateMonitor(G, "v", record=True, when="end", order=1, name=f"neuro_v{k}")
                objects.append(vmons[name])

    # synapses: delayed pathways first, zero-delay ones just before their target's update
    zero_delay = {}
    for k, p in enumerate(graph.projections):
        if p.nnz == 0:
            continue
        delay = max(p.delay_steps - 1, 0) * dt
        S = b2.Synapses(groups[p.pre], groups[p.post], model="w : 1 (constant)", on_pre="x_syn_post += w",
                        delay=delay, clock=clock, name=f"neuro_proj{k}")
        S.connect(i=p.pre_indices(), j=p.indices)
        S.w = p.weights
        objects.append(S)
        if p.delay_steps >= 1:
            step_object(S.pre)
        else:
            zero_delay.setdefault(p.post, []).append(S)
    for name in graph.topological_order():
        G = groups[name]
        if isinstance(graph.nodes[name], SpikeSource):
            step_object(G)
            continue
        for S in zero_delay.get(name, []):
            step_object(S.pre)
        if specs[name].jump:
            step_object(G.state_updater)
            step_object(gathers[name])
        else:
            step_object(gathers[name])
            step_object(G.state_updater)
        step_object(G.thresholder["spike"])
        step_object(G.resetter["spike"])
    net = b2.Network(*objects)
    net.schedule = list(SCHEDULE)
    return net, clock, monitors, vmons


def _import_brian2():
    """Brian2, imported on first use; a failed import says why."""
    try:
        import brian2
    except ImportError as e:
        raise ImportError("the Brian2 target needs the brian2 package (pip install brian2)") from e
    except AttributeError as e:  # Brian2 <= 2.9.0 uses ndarray.ptp, which numpy 2.4 removed
        import numpy

        raise ImportError(f"brian2 cannot be imported with numpy {numpy.__version__} ({e}); "
                          "install numpy<2.4 or a Brian2 release newer than 2.9.0") from e
    return brian2


def _events(i: np.ndarray, t: np.ndarray, n: int, steps: int) -> EventTensor:
    order = np.lexsort((i, t))
    i, t = i[order], t[order]
    offsets = np.zeros(steps + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(np.bincount(t, minlength=steps))
    return EventTensor(torch.from_numpy(i.astype(np.int64)), torch.from_numpy(offsets), (n,), dtype=torch.float64)


def run_brian2(graph: Graph, steps: int, input_spikes=None, record_v: bool = False,
               target: str = "numpy") -> Brian2Result:
    """Simulate ``graph`` for ``steps`` steps in Brian2 (see the module docstring for the mapping).

    Args:
        graph: the network.
        steps: number of steps (Brian2 runs ``steps * dt``).
        input_spikes: for graphs with spike sources: spikes [T >= steps, n] (EventTensor, array or
            tensor, binary), or a dict source name -> spikes when there are several.
        record_v: also record every population's membrane after each step.
        target: Brian2 code-generation target, ``'numpy'`` or ``'cython'``.

    Shape: spikes of population P: EventTensor over (n_P,), ``steps`` steps; v: [steps, n_P].
    """
    if not isinstance(graph, Graph):
        raise ParameterError("run_brian2", "graph", type(graph).__name__, "a neuro.ir.Graph")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ParameterError("run_brian2", "steps", steps, "an integer >= 1")
    if target not in TARGETS:
        raise ParameterError("run_brian2", "target", target, "one of " + ", ".join(repr(t) for t in TARGETS))
    unknown = [(k, f"{type(v).__name__} (Brian2 export runs LIFPopulation and IFPopulation)")
               for k, v in graph.populations().items() if type(v) not in POPULATIONS]
    unknown += [(k, f"{type(d).__name__} drive (Brian2 export runs {', '.join(t.__name__ for t in DRIVES)})")
                for k, d in graph.nodes.items() if hasattr(d, "target") and type(d) not in DRIVES]
    if unknown:
        raise UnsupportedLayerError(unknown, "the Brian2 export")
    inputs = _resolve_inputs(graph, input_spikes, steps)

    with warnings.catch_warnings():  # Brian2 2.9 uses pyparsing names deprecated in pyparsing 3.3
        warnings.simplefilter("ignore", DeprecationWarning)
        b2 = _import_brian2()
        old_target = b2.prefs.codegen.target
        b2.prefs.codegen.target = target
        try:
            t0 = time.perf_counter()
            net, clock, monitors, vmons = _build(b2, graph, steps, inputs, record_v)
            t1 = time.perf_counter()
            net.run(steps * clock.dt, namespace={}, report=None)
            t2 = time.perf_counter()
        finally:
            b2.prefs.codegen.target = old_target
    dt_s = float(clock.dt_)
    spikes, vs = {}, ({} if record_v else None)
    for name, M in monitors.items():
        n = graph.nodes[name].n
        i = np.array(M.i[:], dtype=np.int64)
        t = np.rint(np.array(M.t_[:]) / dt_s).astype(np.int64)
        spikes[name] = _events(i, t, n, steps)
        if record_v:
            vs[name] = np.array(vmons[name].v[:], dtype=np.float64).T.copy()  # [T, n]
    return Brian2Result(spikes, vs, steps, graph.dt_ms, target, t1 - t0, t2 - t1, b2.__version__)


def _pairs(ev: EventTensor) -> np.ndarray:
    """int64 [nnz]: step * n + neuron of every event."""
    n = int(np.prod(ev.shape))
    t = np.repeat(np.arange(ev.steps, dtype=np.int64), ev.counts().numpy())
    return t * n + ev.indices.numpy()


def compare_with_brian2(net, steps: int, engine: str = "auto", target: str = "numpy") -> dict:
    """Run a :class:`~neuro.models.RecurrentNetwork` in neuro and in Brian2 and compare spike trains.

    Brian2 runs in float64, so identical spikes are expected for float64 networks (a float32 network
    is compared with its float64 counterpart). Returns a dict: ``identical`` (bool), ``n_mismatch``
    (spikes, as (step, neuron) pairs, present in one run only), ``first_mismatch_step`` (or None),
    ``neuro_spikes``, ``brian2_spikes``, ``neuro_mean_rate_hz``, ``brian2_mean_rate_hz``,
    ``neuro_wall_s``, ``brian2_wall_s`` (export, first ``import brian2``, build and run, code
    generation included), ``brian2_build_s``, ``brian2_run_s``, ``engine``, ``brian2_target``,
    ``brian2_version``, ``neurons``, ``steps``.
    """
    from ..ir.trace import to_ir

    t0 = time.perf_counter()
    res = net.run(steps, engine=engine)
    t1 = time.perf_counter()
    graph = to_ir(net)
    b = run_brian2(graph, steps, target=target)
    t2 = time.perf_counter()
    pop = next(iter(graph.populations()))
    a, c = _pairs(res.spikes), _pairs(b.spikes[pop])
    diff = np.setxor1d(a, c)
    n, secs = net.n, steps * net.params.dt_ms * 1e-3
    return {
        "identical": bool(diff.size == 0),
        "n_mismatch": int(diff.size),
        "first_mismatch_step": int(diff.min() // n) if diff.size else None,
        "neuro_spikes": int(a.size),
        "brian2_spikes": int(c.size),
        "neuro_mean_rate_hz": a.size / n / secs,
        "brian2_mean_rate_hz": c.size / n / secs,
        "neuro_wall_s": t1 - t0,
        "brian2_wall_s": t2 - t1,
        "brian2_build_s": b.build_s,
        "brian2_run_s": b.run_s,
        "engine": res.engine,
        "brian2_target": target,
        "brian2_version": b.brian2_version,
        "neurons": n,
        "steps": steps,
    }
