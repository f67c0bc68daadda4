r"""Benchmark W3: a single LIF neuron against Brian2 (accuracy first, then speed).

.. math:: \tau\,\frac{dv}{dt} = I - v, \qquad \tau = 20\ \text{ms}, \quad dt = 0.1\ \text{ms}, \quad 1\ \text{s}

threshold :math:`v > 1` (strict, as Brian2's ``'v > 1'``), reset to 0, no refractory period, v(0) = 0,
constant :math:`I \in \{1.5, 1.1, 1.01, 3.0\}` (one neuron each; the continuous-time inter-spike interval
is :math:`\tau \ln(I / (I - 1))`). neuro: ``LIF(tau_ms=20, dt_ms=0.1, integration=..., decay_input=True,
strict_threshold=True)`` in step mode 'm', where decay_input=True gives
:math:`v \leftarrow d\,v + (1 - d)\,I`: with ``'exact'`` (:math:`d = e^{-dt/\tau}`) this is the exact
solution over a step with constant input (Brian2 ``method='exact'``), with ``'euler'``
(:math:`d = 1 - dt/\tau`) forward Euler. Both in float32 and float64.

A spike at step k (the k-th update crossed threshold) is stamped t = k dt, Brian2's convention.
Compared with a live Brian2 run: number of spikes and the largest spike-time difference over the spikes
both have. The check: neuro's exact float64 integration gives Brian2's spikes exactly.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .common import (best_peer, fmt_ratio, fmt_s, Options, peer_fields, progress_bar, quiet_known_warnings,
                     ratio, repeat, Report, select_peers, split_available, set_threads, table)
from .peers import W3_PEERS


@dataclass(frozen=True)
class W3Config:
    tau_ms: float = 20.0
    dt_ms: float = 0.1
    duration_ms: float = 1000.0
    v_th: float = 1.0
    currents: tuple = (1.5, 1.1, 1.01, 3.0)

    @property
    def steps(self) -> int:
        return int(round(self.duration_ms / self.dt_ms))


CONFIG = W3Config()
DEFAULT_REPS, DEFAULT_WARMUP = 5, 1
QUICK_REPS, QUICK_WARMUP = 1, 0
VARIANTS = [("exact", "float64"), ("exact", "float32"), ("euler", "float64"), ("euler", "float32")]


def neuro_runner(cfg: W3Config, integration: str, dtype_name: str):
    """A callable returning, per current, the int64 array of steps at which neuro's LIF fired."""
    import torch

    from ..neurons.lif import LIF

    dtype = getattr(torch, dtype_name)
    lif = LIF(tau_ms=cfg.tau_ms, dt_ms=cfg.dt_ms, integration=integration, decay_input=True, v_th=cfg.v_th,
              v_reset=0.0, strict_threshold=True, step_mode="m")
    x = torch.tensor(cfg.currents, dtype=dtype).expand(cfg.steps, len(cfg.currents))  # [T, n]

    def run():
        lif.reset()
        with torch.no_grad():
            s = lif(x)  # [T, n]
        t, k = s.nonzero(as_tuple=True)
        t, k = t.numpy(), k.numpy()
        return [t[k == j] for j in range(len(cfg.currents))]

    return run


def compare(ref_steps: np.ndarray, got_steps: np.ndarray, dt_ms: float) -> dict:
    n = min(len(ref_steps), len(got_steps))
    diff = np.abs(ref_steps[:n] - got_steps[:n])
    return {"n_spikes": int(len(got_steps)), "n_ref": int(len(ref_steps)),
            "max_abs_dt_ms": round(float(diff.max() * dt_ms), 10) if n else None,
            "identical": bool(len(ref_steps) == len(got_steps) and not diff.any())}


def run(opts: Options) -> Report:
    set_threads(opts.threads)
    quiet_known_warnings()
    cfg = CONFIG
    reps = opts.reps_or(QUICK_REPS if opts.quick else DEFAULT_REPS)
    warmup = opts.warmup_or(QUICK_WARMUP if opts.quick else DEFAULT_WARMUP)
    peers = select_peers("w3", W3_PEERS, opts.peers)

    result_peers, runnable = split_available(peers)

    neuro: dict = {}
    ref = None
    with progress_bar((reps + warmup) * (len(VARIANTS) + len(runnable)), "W3", opts.progress) as bar:
        for integration, dtype in VARIANTS:
            timing, steps = repeat(neuro_runner(cfg, integration, dtype), reps, warmup, bar)
            neuro[f"{integration}_{dtype}"] = {"timing": timing, "steps": steps}
        for peer in runnable:
            try:
                m = peer.build(cfg.currents, cfg.tau_ms, cfg.dt_ms, cfg.duration_ms, reps, warmup, bar)
            except Exception as e:  # noqa: BLE001 - reported; neuro's results still stand
                result_peers[peer.name] = {"status": "failed", "reason": f"{type(e).__name__}: {e}"[:300]}
                continue
            result_peers[peer.name] = {"status": "ok", "description": peer.description,
                                       "median_s": m.timing.median_s, "timing": m.timing.to_dict(), **m.extra}
            if peer.name == "brian2":
                ref = m.spike_steps

    cases = []
    for j, current in enumerate(cfg.currents):
        case = {"I": current, "analytic_isi_ms": cfg.tau_ms * math.log(current / (current - 1.0))}
        if ref is not None:
            case["brian2"] = {"n_spikes": int(len(ref[j])),
                              "first_spikes_ms": [round(float(k) * cfg.dt_ms, 10) for k in ref[j][:3]]}
        for name, v in neuro.items():
            got = v["steps"][j]
            entry = {"n_spikes": int(len(got)), "first_spikes_ms": [round(float(k) * cfg.dt_ms, 10) for k in got[:3]]}
            if ref is not None:
                entry.update(compare(ref[j], got, cfg.dt_ms))
            case[f"neuro_{name}"] = entry
        cases.append(case)

    identical = None if ref is None else all(c["neuro_exact_float64"]["identical"] for c in cases)
    neuro_s = neuro["exact_float64"]["timing"].median_s
    for rec in result_peers.values():
        if rec["status"] == "ok":
            rec["ratio"] = ratio(rec["median_s"], neuro_s)
    best, best_s = best_peer({k: v["median_s"] for k, v in result_peers.items() if v["status"] == "ok"})
    ok = identical is not False
    data = {
        "workload": "W3",
        "description": "single LIF neuron, dv/dt = (I - v)/tau, threshold v > 1, reset 0, against a live Brian2 run",
        "config": {**asdict(cfg), "steps": cfg.steps, "reps": reps, "warmup": warmup,
                   "spike_time_convention": "t = k*dt for the step k whose update crossed threshold"},
        "neuro_median_s": neuro_s,
        "neuro": {name: {"timing": v["timing"].to_dict(), "median_s": v["timing"].median_s}
                  for name, v in neuro.items()},
        "cases": cases,
        "identical_to_brian2": identical,
        "best_peer": best,
        "ratio_vs_best_peer": ratio(best_s, neuro_s),
        **peer_fields(result_peers, {"exact_float64_identical_to_brian2": identical}, ok, opts.threads),
    }
    return Report(data, _text(data), ok)


def _text(d: dict) -> str:
    c = d["config"]
    head = (f"W3 single LIF vs Brian2: tau {c['tau_ms']} ms, dt {c['dt_ms']} ms, {c['duration_ms'] / 1000:g} s, "
            f"threshold v > {c['v_th']}, reset 0")
    variants = [k for k in d["cases"][0] if k.startswith("neuro_")]
    have_ref = "brian2" in d["cases"][0]
    headers = ["I", "analytic ISI"] + (["brian2"] if have_ref else []) + [v[len("neuro_"):] for v in variants]
    rows = []
    for case in d["cases"]:
        row = [f"{case['I']:g}", f"{case['analytic_isi_ms']:.3f} ms"]
        if have_ref:
            row.append(str(case["brian2"]["n_spikes"]))
        for v in variants:
            e = case[v]
            if have_ref:
                mark = "=" if e["identical"] else f"max |dt| {e['max_abs_dt_ms']:.1f} ms"
                row.append(f"{e['n_spikes']} ({mark})")
            else:
                row.append(str(e["n_spikes"]))
        rows.append(row)
    lines = [head, "spike counts (= : every spike time identical to Brian2's)", table(headers, rows), "",
             "timing, 1 s of simulated time for the 4 neurons:"]
    trows = [[f"neuro {k}", fmt_s(v["median_s"]), ""] for k, v in d["neuro"].items()]
    notes = []
    for name, p in d["peers"].items():
        if p["status"] == "ok":
            trows.append([f"{name} ({p.get('target', '')})", fmt_s(p["median_s"]), fmt_ratio(p["ratio"])])
        else:
            notes.append(f"  {name}: {p['status']} - {p['reason']}")
    lines.append(table(["implementation", "median", "ratio"], trows))
    lines.append("ratio = peer median / neuro exact float64 median (> 1: neuro is faster)")
    if notes:
        lines += ["not run:"] + notes
    ident = d["identical_to_brian2"]
    lines.append("check, neuro exact float64 identical to Brian2: " +
                 {True: "OK", False: "FAILED", None: "not checked (Brian2 not available)"}[ident])
    return "\n".join(lines)
