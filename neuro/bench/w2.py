r"""Benchmark W2: a sparse recurrent LIF network in the event-driven regime.

:func:`neuro.models.w2_network`: N = 10,000 LIF neurons, each ordered pair connected with p = 0.01 (no
autapses, about 1 M synapses), 80 % excitatory (+0.05) and 20 % inhibitory (-0.25), tau 20 ms,
dt 1 ms, exact decay, threshold 1, reset to 0, v(0) ~ U[0, 1), external drive Binomial(100, 12 Hz dt)
kicks of 0.05 per neuron and step. About 3 % of the neurons fire per step. 1000 steps, float64.

Per step: :math:`v \leftarrow e^{-dt/\tau} v + \text{drive}_t + \sum_j W_{j\cdot} s_j(t-1)`, spike where
:math:`v \ge 1`, reset. Throughput is reported as synaptic events per second: every spike counts its
neuron's out-degree.

neuro runs with ``engine='auto'`` (the compiled engine when built, else the PyTorch one); the
engine that ran is reported. Check: on a shortened run the auto engine's spikes must equal those of
the float64 PyTorch reference engine, spike for spike.

Peers share the connectivity and the initial membrane but draw their drive with their own random
generators (Brian2: its ``PoissonInput``), so their spike counts agree with neuro's only in
statistics: this comparison is about speed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .common import (best_peer, fmt_ratio, fmt_s, Options, peer_fields, progress_bar, quiet_known_warnings,
                     ratio, repeat, Report, select_peers, split_available, set_threads, table, time_call)
from .peers import W2_PEERS, W2Problem


@dataclass(frozen=True)
class W2Config:
    n: int = 10_000
    steps: int = 1000
    check_steps: int = 100


FULL = W2Config()
QUICK = W2Config(n=2000, steps=100, check_steps=50)
DEFAULT_REPS, DEFAULT_WARMUP = 5, 1
QUICK_REPS, QUICK_WARMUP = 1, 0
# peers that take tens of seconds a run get fewer runs unless --reps/--warmup say otherwise
SLOW_PEER_REPS = {"spikingjelly": (1, 0)}


def problem_from(net, steps: int, threads: int) -> W2Problem:
    """The peers' view of a :class:`~neuro.models.RecurrentNetwork` with a Poisson drive."""
    syn, d, p = net.synapses, net.drive, net.params
    return W2Problem(indptr=syn.indptr.numpy().astype(np.int64), post=syn.indices.numpy().astype(np.int64),
                     w=syn.values.detach().double().numpy(), v0=net.v0.double().numpy(),
                     tau_ms=float(p.tau_ms), dt_ms=float(p.dt_ms), steps=steps, n_sources=int(d.n_sources),
                     rate_hz=float(d.rate_hz), w_ext=float(d.weight), seed=int(d.seed), threads=threads)


def engine_check(net, engine: str, steps: int) -> dict:
    """Spikes of ``engine`` against the float64 torch engine over ``steps`` steps."""
    import torch

    if net.v0.dtype != torch.float64:
        raise ValueError("the reference engine check needs a float64 network")
    ref = net.run(steps, engine="torch")
    if engine == "torch":
        return {"steps": steps, "engines": ["torch", "torch"], "identical": True, "spikes": int(ref.counts.sum()),
                "note": "the auto engine is the torch reference engine itself"}
    got = net.run(steps, engine=engine)
    same = (torch.equal(got.spikes.offsets, ref.spikes.offsets)
            and torch.equal(got.spikes.indices, ref.spikes.indices))
    out = {"steps": steps, "engines": [engine, "torch"], "identical": bool(same),
           "spikes": int(got.counts.sum()), "reference_spikes": int(ref.counts.sum())}
    if not same:
        out["first_differing_step"] = _first_difference(got.spikes, ref.spikes)
    return out


def _first_difference(a, b) -> int:
    for t in range(min(a.steps, b.steps)):
        ia = a.indices[a.offsets[t]:a.offsets[t + 1]]
        ib = b.indices[b.offsets[t]:b.offsets[t + 1]]
        if ia.numel() != ib.numel() or not bool((ia.sort().values == ib.sort().values).all()):
            return t
    return min(a.steps, b.steps)


def run(opts: Options) -> Report:
    import torch

    from ..models.recurrent import w2_network

    set_threads(opts.threads)
    quiet_known_warnings()
    cfg = QUICK if opts.quick else FULL
    steps = opts.steps if opts.steps is not None else cfg.steps
    reps = opts.reps_or(QUICK_REPS if opts.quick else DEFAULT_REPS)
    warmup = opts.warmup_or(QUICK_WARMUP if opts.quick else DEFAULT_WARMUP)
    peers = select_peers("w2", W2_PEERS, opts.peers)

    build_s, net = time_call(lambda: w2_network(n=cfg.n, dtype=torch.float64))
    outdeg = net.synapses.indptr.diff().numpy()
    prob = problem_from(net, steps, opts.threads)

    result_peers, runnable = split_available(peers)

    def peer_reps(name):
        r, w = SLOW_PEER_REPS.get(name, (reps, warmup))
        return opts.reps_or(r if not opts.quick else min(r, reps)), opts.warmup_or(w if not opts.quick else 0)

    total = reps + warmup + sum(sum(peer_reps(p.name)) for p in runnable)
    with progress_bar(total, "W2", opts.progress) as bar:
        counts_per_rep = []

        def neuro_run():
            res = net.run(steps, engine="auto")
            counts_per_rep.append(res.counts)
            return res

        timing, res = repeat(neuro_run, reps, warmup, bar)
        for peer in runnable:
            r, w = peer_reps(peer.name)
            try:
                m = peer.build(prob, r, w, bar)
            except Exception as e:  # noqa: BLE001 - reported, the others still run
                result_peers[peer.name] = {"status": "failed", "reason": f"{type(e).__name__}: {e}"[:300]}
                continue
            events = int((m.counts * outdeg).sum())
            result_peers[peer.name] = {
                "status": "ok", "description": peer.description, "median_s": m.timing.median_s,
                "events_per_s": events / m.timing.median_s, "spikes": int(m.counts.sum()), "events": events,
                "mean_rate_hz": float(m.counts.sum()) / prob.n / (steps * prob.dt_ms * 1e-3),
                "timing": m.timing.to_dict(), **m.extra}
    check = engine_check(net, res.engine, min(cfg.check_steps, steps))
    deterministic = all(np.array_equal(c, counts_per_rep[0]) for c in counts_per_rep)

    neuro_s = timing.median_s
    spikes = int(res.counts.sum())
    events = int((res.counts * outdeg).sum())
    for rec in result_peers.values():
        if rec["status"] == "ok":
            rec["ratio"] = ratio(rec["median_s"], neuro_s)
    best, best_s = best_peer({k: v["median_s"] for k, v in result_peers.items() if v["status"] == "ok"})
    ok = bool(check["identical"]) and deterministic
    data = {
        "workload": "W2",
        "description": "sparse recurrent LIF network (w2_network), event-driven, float64",
        "config": {"n": prob.n, "synapses": int(len(prob.post)), "steps": steps, "dt_ms": prob.dt_ms,
                   "tau_ms": prob.tau_ms, "reps": reps, "warmup": warmup, "threads": opts.threads,
                   "timing": "sequential per implementation, in one run; Brian2 C++ standalone in a fresh "
                             "process (its binary), the others in this process"},
        "engine": res.engine,
        "neuro_median_s": neuro_s,
        "neuro_events_per_s": events / neuro_s,
        "spikes": spikes,
        "events": events,
        "neuro": {"timing": timing.to_dict(), "build_s": build_s,
                  "mean_rate_hz": spikes / prob.n / (steps * prob.dt_ms * 1e-3),
                  "mean_frac_active_per_step": spikes / (prob.n * steps)},
        "best_peer": best,
        "ratio_vs_best_peer": ratio(best_s, neuro_s),
        "note": "peers draw their own Poisson drive (Brian2: PoissonInput): spike counts agree in statistics "
                "only; the comparison is speed",
        **peer_fields(result_peers, {"engine_vs_torch_float64": check, "deterministic_across_reps": deterministic}, ok, opts.threads),
    }
    return Report(data, _text(data), ok)


def _text(d: dict) -> str:
    c = d["config"]
    head = (f"W2 sparse recurrent LIF: N={c['n']}, {c['synapses']} synapses, {c['steps']} steps, "
            f"{c['threads']} threads; neuro engine '{d['engine']}'")
    rows = [["neuro", fmt_s(d["neuro_median_s"]), f"{d['neuro_events_per_s'] / 1e6:.1f} M", str(d["spikes"]),
             f"{d['neuro']['mean_rate_hz']:.1f}", "1.00x", f"{d['neuro']['timing']['reps']}"]]
    notes = []
    for name, p in d["peers"].items():
        if p["status"] != "ok":
            notes.append(f"  {name}: {p['status']} - {p['reason']}")
            continue
        rows.append([name, fmt_s(p["median_s"]), f"{p['events_per_s'] / 1e6:.1f} M", str(p["spikes"]),
                     f"{p['mean_rate_hz']:.1f}", fmt_ratio(p["ratio"]), str(p["timing"]["reps"])])
    lines = [head, table(["implementation", "median", "events/s", "spikes", "rate Hz", "ratio", "runs"], rows),
             "ratio = peer median / neuro median (> 1: neuro is faster)",
             f"ratio vs best peer: {fmt_ratio(d['ratio_vs_best_peer'])} ({d['best_peer'] or 'none'})"]
    extra = []
    for name, p in d["peers"].items():
        if p["status"] == "ok" and "compile_s" in p:
            extra.append(f"  {name}: code generation {p['setup_s']:.1f} s + compilation {p['compile_s']:.1f} s "
                         f"(not timed); main loop alone {fmt_s(p['main_loop_median_s'])}")
        if p["status"] == "ok" and "first_run_incl_codegen_s" in p:
            extra.append(f"  {name}: first run incl. code generation {p['first_run_incl_codegen_s']:.1f} s (not timed)")
    if extra:
        lines += ["excluded from the timings:"] + extra
    if notes:
        lines += ["not run:"] + notes
    ch = d["checks"]["engine_vs_torch_float64"]
    verdict = "OK" if ch["identical"] else f"FAILED (first difference at step {ch.get('first_differing_step')})"
    lines.append(f"check, engine '{ch['engines'][0]}' vs float64 torch engine over {ch['steps']} steps: "
                 f"{verdict}" + (f" ({ch['note']})" if "note" in ch else ""))
    if not d["checks"]["deterministic_across_reps"]:
        lines.append("check, same spikes in every repetition: FAILED")
    lines.append(d["note"])
    return "\n".join(lines)
