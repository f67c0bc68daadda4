r"""Compile an IR graph to Loihi 2 fixed-point parameters (Lava's ``LIF`` + ``Dense``/``DelayDense``).

Lava's fixed-point neuron (REFERENCE §5; lava-nc 0.10 ``lava/proc/lif/models.py``, ``PyLifModelBitAcc``):

.. math::
    u_t = \mathrm{wrap}_{24}\big(\mathrm{rs}_{12}(u_{t-1}(4096 - du - 1)) + (a_t \ll 6)\big), \qquad
    v_t = \mathrm{clip}\big(\mathrm{rs}_{12}(v_{t-1}(4096 - dv)) + u_t + (b_m \ll b_e), \pm(2^{23} - 1)\big)

    s_t = [v_t > v_{th} \ll 6], \qquad v_t \leftarrow 0 \text{ where } s_t

(:math:`\mathrm{rs}_{12}(x) = \mathrm{sign}(x)\lfloor |x| / 2^{12} \rfloor`), with synaptic input
:math:`a_t = (W s_{t-1-d}) \ll w_e` from ``Dense`` (one step of delay) or ``DelayDense`` (spike at
t arrives at t + 1 + d).

The float populations map onto it exactly where the float maths allows:

* ``LIFPopulation`` with ``decay_input=False`` (:math:`H = d V + X`): ``du = 4095`` (u holds one
  step's input), ``dv = round(4096 (1 - d))``; with ``decay_input=True``
  (:math:`H = d V + (1 - d) X`) the factor :math:`1 - d` is folded into the weights and the bias.
* ``IFPopulation``: ``dv = 0``. ``CubaLIFPopulation``: ``du = round(4096 (1 - d_{syn})) - 1``.
* units: population P runs in integer units :math:`2^{e_P}` per float unit, chosen so that the
  threshold mantissa :math:`v_{th} 2^{e_P} \in [1024, 2048)` (64x headroom below the 24-bit
  voltage range); each connection gets the weight exponent that puts its largest weight at the top
  of the 8-bit mantissa (even mantissas for mixed signs, which Lava's ``truncate_weights`` keeps).
* timing: every Loihi connection delays by at least one step. Population P is therefore run
  :math:`L_P` steps late, with :math:`L_P` the least solution of :math:`L_P \ge L_Q + 1 - d` over
  the projections Q -> P of IR delay d (sources at 0); a projection then gets the Lava delay
  :math:`d + L_P - L_Q - 1 \ge 0` (``Dense`` when 0 everywhere, else ``DelayDense``). A cycle whose
  IR delays sum to less than its length cannot be timed on Loihi (HardwareLimitError).

What differs from the float model is rounding, not convention: the float model thresholds with
``>=`` unless ``strict_threshold`` (Loihi with ``>``), and decays, weights and the threshold are
quantized as above; :func:`neuro.hardware_targets.loihi.agreement` measures the effect.

Limits are checked before anything is quantized (:class:`LoihiLimits`); a network that does not fit
raises :class:`~neuro.core.errors.HardwareLimitError` with per-layer usage, unless ``clip=True``,
and then :attr:`LoihiNetwork.clipped` lists every value that was clipped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ...core.errors import HardwareLimitError, ParameterError, UnsupportedLayerError
from ...ir.graph import (ConstantCurrent, CubaLIFPopulation, Graph, IFPopulation, LIFPopulation, SpikeSource)

TARGET = "loihi2"


@dataclass(frozen=True)
class LoihiLimits:
    """The fixed-point ranges of Lava's Loihi 2 processes and a chip capacity model.

    Ranges: lava-nc 0.10 ``PyLifModelBitAcc`` / ``PyDenseModelBitAcc`` / ``PyDelayDenseModelBitAcc``
    (REFERENCE §5). Capacity: REFERENCE §5's Loihi chip (128 cores x 1024 compartments, 128 KB of
    synaptic state per core), at 2 bytes per synapse (8-bit weight, 6-bit delay, padding), an estimate.
    """

    weight_bits: int = 8
    weight_exp_min: int = -8
    weight_exp_max: int = 7
    vth_max: int = 2 ** 17 - 1
    bias_mant_max: int = 2 ** 12 - 1
    bias_exp_max: int = 7
    decay_max: int = 4095
    delay_max: int = 62
    cores: int = 128
    neurons_per_core: int = 1024
    synapse_bytes_per_core: int = 128 * 1024
    bytes_per_synapse: int = 2


LOIHI2 = LoihiLimits()


@dataclass
class LoihiPopulation:
    """One Lava ``LIF`` process: integer parameters, its unit scale and its lag ``latency`` in steps."""

    name: str
    n: int
    du: int
    dv: int
    vth: int
    bias_mant: np.ndarray   # int64 [n]
    bias_exp: np.ndarray    # int64 [n]
    scale: float            # integer voltage units per float unit (vth << 6 = v_th * scale)
    latency: int


@dataclass
class LoihiConnection:
    """One Lava ``Dense`` / ``DelayDense`` (``sparse``: ``Sparse`` / ``DelaySparse``) process.

    weights: int64 [n_post, n_pre] mantissas; delays: int64 [n_post, n_pre] Lava delays (None: Dense).
    """

    name: str
    pre: str
    post: str
    weights: np.ndarray
    weight_exp: int
    delays: Optional[np.ndarray]
    sparse: bool
    num_weight_bits: int = 8

    @property
    def max_delay(self) -> int:
        return 0 if self.delays is None else int(self.delays.max())


@dataclass
class LoihiNetwork:
    """A compiled network. ``sources``: name -> n; ``populations``, ``connections`` in build order;
    ``usage``: per-layer rows; ``clipped``: what ``clip=True`` changed; ``dt_ms``."""

    sources: dict
    populations: dict
    connections: list
    usage: list
    clipped: list = field(default_factory=list)
    dt_ms: float = 1.0

    @property
    def latency(self) -> dict:
        return {k: p.latency for k, p in self.populations.items()}

    @property
    def fits(self) -> bool:
        return all(row["fits"] for row in self.usage)


# ----------------------------------------------------------------------------- checks
def _unsupported(graph: Graph) -> list:
    bad = []
    for name, node in graph.nodes.items():
        if isinstance(node, (SpikeSource, ConstantCurrent)):
            continue
        if not isinstance(node, (LIFPopulation, IFPopulation, CubaLIFPopulation)):
            bad.append((name, f"{type(node).__name__} (Loihi 2 runs LIF, IF and CubaLIF populations fed by spike "
                              "sources, with constant biases)"))
            continue
        if node.v_reset is None:
            bad.append((name, f"{type(node).__name__} with soft reset (Lava's LIF resets to 0)"))
        elif node.v_reset != 0.0:
            bad.append((name, f"{type(node).__name__} with v_reset={node.v_reset} (Lava's LIF resets to 0)"))
        if getattr(node, "v_rest", 0.0) != 0.0:
            bad.append((name, f"{type(node).__name__} with v_rest={node.v_rest} (Lava's LIF leaks to 0)"))
        if np.any(node.v_init != 0.0):
            bad.append((name, f"{type(node).__name__} with a nonzero v_init (Lava's LIF starts at 0)"))
        if isinstance(node, CubaLIFPopulation) and graph.drives_of(name):
            bad.append((name, "CubaLIFPopulation with a bias (Loihi adds the bias to v, the float model to the current)"))
        if isinstance(node, CubaLIFPopulation) and node.decay_input:
            bad.append((name, "CubaLIFPopulation with decay_input=True"))
    return bad


def latencies(graph: Graph) -> dict:
    r"""Least :math:`L_P \ge L_Q + 1 - d` over the projections (sources and input-free populations at 0).
    Raises HardwareLimitError naming the populations of a cycle that cannot be timed."""
    names = list(graph.sources()) + list(graph.populations())
    lat = {k: 0 for k in names}
    for _ in range(len(names) + 1):
        changed = set()
        for p in graph.projections:
            want = lat[p.pre] + 1 - p.delay_steps
            if want > lat[p.post]:
                lat[p.post] = want
                changed.add(p.post)
        if not changed:
            return lat
    raise HardwareLimitError(TARGET, [{"layer": k, "problem": "in a cycle whose delays sum to less than its length; "
                                       "Loihi delays every synapse by at least one step"} for k in sorted(changed)])


def _input_factor(node) -> float:
    """The factor the float model applies to its input X (1 - d with decay_input, else 1)."""
    return (1.0 - node.decay) if isinstance(node, LIFPopulation) and node.decay_input else 1.0


def _group(graph: Graph) -> dict:
    """(pre, post) -> projections; synapses of one pair must be disjoint to share one Lava process."""
    groups = {}
    for p in graph.projections:
        groups.setdefault((p.pre, p.post), []).append(p)
    return groups


def _mixed(w: np.ndarray) -> bool:
    return bool((w > 0).any() and (w < 0).any())


def _weight_exp(max_abs: float, mixed: bool, limits: LoihiLimits) -> int:
    top = 2 ** limits.weight_bits - 2 if mixed else 2 ** limits.weight_bits - 1
    return math.ceil(math.log2(max_abs / top)) if max_abs > 0 else 0


def _quantize_weights(w: np.ndarray, wexp: int, mixed: bool, limits: LoihiLimits) -> np.ndarray:
    top = 2 ** limits.weight_bits
    x = w * 2.0 ** (-wexp)
    if mixed:  # Lava keeps only even mantissas of a mixed-sign matrix (truncate_weights)
        return np.clip(2 * np.round(x / 2), -top, top - 2).astype(np.int64)
    return np.clip(np.round(x), -(top - 1), top - 1).astype(np.int64)


def _bias(b: np.ndarray, limits: LoihiLimits):
    """bias (integer units, float [n]) -> (mantissa, exponent) int64 [n], smallest exponent that fits."""
    mant, exp = np.zeros(b.shape, np.int64), np.zeros(b.shape, np.int64)
    for e in range(limits.bias_exp_max + 1):
        m = np.round(b / 2.0 ** e)
        todo = (exp == 0) & (mant == 0) & (np.abs(m) <= limits.bias_mant_max) & (b != 0)
        mant[todo], exp[todo] = m[todo].astype(np.int64), e
    return mant, exp


# ----------------------------------------------------------------------------- compile
def compile_graph(graph: Graph, clip: bool = False, limits: LoihiLimits = LOIHI2) -> LoihiNetwork:
    """Quantize ``graph`` for Loihi 2 (see the module docstring). Raises UnsupportedLayerError for
    nodes Loihi cannot run, HardwareLimitError (per-layer usage) for values out of range unless
    ``clip``; the returned network's ``clipped`` lists what was clipped."""
    if not isinstance(graph, Graph):
        raise ParameterError("compile_graph", "graph", type(graph).__name__, "a neuro.ir.Graph")
    bad = _unsupported(graph)
    if bad:
        raise UnsupportedLayerError(bad, context="Loihi 2")
    lat = latencies(graph)
    pops = graph.populations()
    groups = _group(graph)

    # -- per-population exponent e_P: threshold mantissa in [1024, 2048), lowered if weights need it
    exps = {}
    for name, node in pops.items():
        e = math.floor(math.log2(2048 / node.v_th))
        if 2.0 ** e * node.v_th >= 2048:
            e -= 1
        f = _input_factor(node)
        for (pre, post), projs in groups.items():
            if post != name:
                continue
            w = np.concatenate([p.weights for p in projs]) * f
            m = float(np.abs(w).max()) if w.size else 0.0
            if m > 0:
                need = _weight_exp(m * 2.0 ** e, _mixed(w), limits) - limits.weight_exp_max
                e -= max(need, 0)
        exps[name] = e

    rows, clipped, problems = [], [], []
    out_pops = {}
    for name, node in pops.items():
        e, f = exps[name], _input_factor(node)
        vth = round(node.v_th * 2.0 ** e)
        if isinstance(node, IFPopulation):
            du, dv = limits.decay_max, 0
        elif isinstance(node, CubaLIFPopulation):
            du, dv = round(4096 * (1.0 - node.decay_syn)) - 1, round(4096 * (1.0 - node.decay))
        else:
            du, dv = limits.decay_max, round(4096 * (1.0 - node.decay))
        b = np.zeros(node.n)
        for _, d in graph.drives_of(name):
            b = b + d.values
        b_int = b * f * 2.0 ** (e + 6)
        big = np.abs(b_int) > limits.bias_mant_max * 2 ** limits.bias_exp_max
        issues = []
        if vth < 1 or vth > limits.vth_max:
            issues.append(f"vth={vth} outside [1, {limits.vth_max}]")
        if big.any():
            issues.append(f"bias {float(np.abs(b).max())} needs more than 13+3 bits at this scale")
        for what, val in (("du", du), ("dv", dv)):
            if not 0 <= val <= limits.decay_max:
                issues.append(f"{what}={val} outside [0, {limits.decay_max}]")
        if issues and clip:
            clipped += [{"layer": name, "clipped": i} for i in issues]
            vth = int(np.clip(vth, 1, limits.vth_max))
            du, dv = int(np.clip(du, 0, limits.decay_max)), int(np.clip(dv, 0, limits.decay_max))
            top = limits.bias_mant_max * 2 ** limits.bias_exp_max
            b_int = np.clip(b_int, -top, top)
            issues = []
        mant, bexp = _bias(b_int, limits)
        n_syn = sum(p.nnz for (pre, post), ps in groups.items() if post == name for p in ps)
        cores = max(math.ceil(node.n / limits.neurons_per_core),
                    math.ceil(n_syn * limits.bytes_per_synapse / limits.synapse_bytes_per_core))
        rows.append({"layer": name, "kind": type(node).__name__, "neurons": node.n, "synapses_in": int(n_syn),
                     "cores": cores, "vth": vth, "du": du, "dv": dv, "scale_exp": e, "latency": lat[name],
                     "fits": not issues, **({"problems": "; ".join(issues)} if issues else {})})
        problems += issues
        out_pops[name] = LoihiPopulation(name, node.n, int(du), int(dv), int(vth), mant, bexp, 2.0 ** (e + 6), lat[name])

    conns = []
    for (pre, post), projs in groups.items():
        node, e = pops[post], exps[post]
        n_pre = graph.nodes[pre].n
        f = _input_factor(node)
        dense = np.zeros((node.n, n_pre))
        delays = np.zeros((node.n, n_pre), dtype=np.int64)
        seen = np.zeros((node.n, n_pre), dtype=bool)
        for p in projs:
            ii, jj = p.indices, p.pre_indices()
            if seen[ii, jj].any() and len(projs) > 1:
                raise UnsupportedLayerError([(p.name or f"{pre}->{post}", "projections between the same pair of "
                                              "populations sharing synapses (Lava holds one delay per synapse)")],
                                            context="Loihi 2")
            np.add.at(dense, (ii, jj), p.weights)
            seen[ii, jj] = True
            delays[ii, jj] = p.delay_steps + lat[post] - lat[pre] - 1
        w = dense * f * 2.0 ** e                          # in units of 2^6 voltage units (a_in << 6)
        mixed = _mixed(w)
        wexp = _weight_exp(float(np.abs(w).max()), mixed, limits) if w.size else 0
        cname = projs[0].name.split("@")[0] if projs[0].name else f"{pre}->{post}"
        issues = []
        if wexp > limits.weight_exp_max:
            issues.append(f"weight exponent {wexp} > {limits.weight_exp_max}")
        wexp = max(wexp, limits.weight_exp_min)
        max_d = int(delays[seen].max()) if seen.any() else 0
        if max_d > limits.delay_max:
            issues.append(f"delay {max_d} > {limits.delay_max}")
        if issues and clip:
            clipped += [{"layer": cname, "clipped": i} for i in issues]
            wexp = min(wexp, limits.weight_exp_max)
            delays = np.minimum(delays, limits.delay_max)
            issues = []
        rows.append({"layer": cname, "kind": "DelayDense" if max_d else "Dense", "synapses": int(seen.sum()),
                     "weight_exp": int(wexp), "max_delay": min(max_d, limits.delay_max) if clip else max_d,
                     "fits": not issues, **({"problems": "; ".join(issues)} if issues else {})})
        problems += issues
        wq = _quantize_weights(w, wexp, mixed, limits)
        density = seen.mean() if seen.size else 1.0
        conns.append(LoihiConnection(cname, pre, post, wq, int(wexp),
                                     delays if (delays[seen] > 0).any() else None, bool(density < 0.25),
                                     limits.weight_bits))

    total = sum(r.get("cores", 0) for r in rows)
    if total > limits.cores:
        problems.append(f"{total} cores > {limits.cores}")
        rows.append({"layer": "<chip>", "cores": total, "limit": limits.cores, "fits": False})
    if problems:
        raise HardwareLimitError(TARGET, rows)
    return LoihiNetwork({k: v.n for k, v in graph.sources().items()}, out_pops, conns, rows, clipped, graph.dt_ms)
