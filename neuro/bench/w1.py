r"""Benchmark W1: a dense feed-forward spiking network, multi-step.

Input spikes Bernoulli(0.1) ``[T=100, B=64, 784]`` -> Linear(784, 1000) -> LIF -> Linear(1000, 10) -> LIF,
with weights :math:`W_1 \sim N(0, 0.08^2)`, :math:`W_2 \sim N(0, 0.1^2)`, zero biases, all drawn from
one seeded generator so every library sees the same numbers. The LIF of every layer:

.. math:: v \leftarrow 0.5\,v + I_t, \qquad s_t = [v \ge 1], \qquad v \leftarrow 0 \text{ where } s_t

In neuro: :class:`~neuro.synapses.Linear` (event-driven below its switch density) and
``LIF(decay=0.5, decay_input=False, v_reset=0.0, step_mode='m', surrogate=Sigmoid(alpha=4))``.

Two measurements: the forward pass under ``torch.no_grad``, and forward + backward of
``sum(output spikes)`` with each library's default (or sigmoid) surrogate. Forward spikes are the same
in every library (a check: the output and hidden spike counts must agree); gradients differ by
surrogate and are not compared.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .common import (Options, Report, best_peer, fmt_ratio, fmt_s, interleaved, machine, peer_fields, progress_bar,
                     quiet_known_warnings, ratio, select_peers, split_available, set_threads, table,
                     versions)
from .peers import W1_PEERS, W1Run


@dataclass(frozen=True)
class W1Config:
    T: int = 100
    B: int = 64
    n_in: int = 784
    n_hid: int = 1000
    n_out: int = 10
    p_in: float = 0.1
    w1_std: float = 0.08
    w2_std: float = 0.1
    decay: float = 0.5
    seed: int = 0


FULL = W1Config()
QUICK = W1Config(T=20)
DEFAULT_REPS, DEFAULT_WARMUP = 10, 2
QUICK_REPS, QUICK_WARMUP = 2, 1


def make_data(cfg: W1Config = FULL):
    """(x [T, B, n_in] float32 0/1, w1 [n_hid, n_in], b1 [n_hid], w2 [n_out, n_hid], b2 [n_out])."""
    import torch

    gen = torch.Generator().manual_seed(cfg.seed)
    x = (torch.rand(cfg.T, cfg.B, cfg.n_in, generator=gen) < cfg.p_in).float()
    w1 = torch.randn(cfg.n_hid, cfg.n_in, generator=gen) * cfg.w1_std
    w2 = torch.randn(cfg.n_out, cfg.n_hid, generator=gen) * cfg.w2_std
    return x, w1, torch.zeros(cfg.n_hid), w2, torch.zeros(cfg.n_out)


def build_neuro(x, w1, b1, w2, b2, decay: float = 0.5) -> W1Run:
    """neuro's W1 network (see the module docstring)."""
    import torch

    from ..core.loop import reset_net
    from ..core.surrogate import Sigmoid
    from ..neurons.lif import LIF
    from ..synapses.linear import Linear

    def lif():
        return LIF(decay=decay, decay_input=False, v_reset=0.0, step_mode="m", surrogate=Sigmoid(alpha=4.0))

    fc1, fc2 = Linear.from_weights(w1, b1), Linear.from_weights(w2, b2)
    lif1, lif2 = lif(), lif()
    net = torch.nn.ModuleList([fc1, lif1, fc2, lif2])

    def run(inp):
        reset_net(net)
        hidden = lif1(fc1(inp))
        return lif2(fc2(hidden)), hidden

    return W1Run(run, list(net.parameters()), "sigmoid(alpha=4)")


def _forward(impl: W1Run, x):
    import torch

    def call():
        with torch.no_grad():
            return impl.run(x)

    return call


def _fwdbwd(impl: W1Run, x):
    def call():
        for p in impl.params:
            p.grad = None
        out, hidden = impl.run(x)
        out.sum().backward()
        return out.detach(), hidden.detach()

    return call


def _count(t):
    return None if t is None else int(t.sum().item())


def run(opts: Options) -> Report:
    import torch

    from ..synapses.kernels import get_kernels

    set_threads(opts.threads)
    quiet_known_warnings()
    cfg = QUICK if opts.quick else FULL
    if opts.steps is not None:
        cfg = W1Config(**{**asdict(cfg), "T": opts.steps})
    reps = opts.reps_or(QUICK_REPS if opts.quick else DEFAULT_REPS)
    warmup = opts.warmup_or(QUICK_WARMUP if opts.quick else DEFAULT_WARMUP)
    torch.manual_seed(cfg.seed)
    data = make_data(cfg)
    x = data[0]

    peers = select_peers("w1", W1_PEERS, opts.peers)
    result_peers, runnable = split_available(peers)
    impls: dict[str, W1Run] = {"neuro": build_neuro(*data, decay=cfg.decay)}
    for peer in runnable:
        try:
            impls[peer.name] = peer.build(*data)
        except Exception as e:  # noqa: BLE001 - reported, the others still run
            result_peers[peer.name] = {"status": "failed", "reason": f"{type(e).__name__}: {e}"[:300]}

    fwd = {k: _forward(v, x) for k, v in impls.items()}
    bwd = {k: _fwdbwd(v, x) for k, v in impls.items() if v.params}
    with progress_bar((reps + warmup) * (len(fwd) + len(bwd)), "W1", opts.progress) as bar:
        t_fwd, o_fwd, f_fwd = interleaved(fwd, reps, warmup, bar)
        t_bwd, o_bwd, f_bwd = interleaved(bwd, reps, warmup, bar)

    if "neuro" in f_fwd or "neuro" in f_bwd:
        raise RuntimeError(f"neuro's W1 failed: {f_fwd.get('neuro') or f_bwd.get('neuro')}")
    n_out, n_hid = _count(o_fwd["neuro"][0]), _count(o_fwd["neuro"][1])
    neuro_fwd, neuro_bwd = t_fwd["neuro"].median_s, t_bwd["neuro"].median_s
    mismatches = []
    if (_count(o_bwd["neuro"][0]), _count(o_bwd["neuro"][1])) != (n_out, n_hid):
        mismatches.append("neuro (forward+backward pass)")
    for name in impls:
        if name == "neuro":
            continue
        peer = W1_PEERS[name]
        rec: dict = {"status": "ok", "description": peer.description, "ceiling": peer.ceiling,
                     "surrogate": impls[name].surrogate}
        failures = [m for m in (f_fwd.get(name), f_bwd.get(name)) if m]
        if failures:
            result_peers[name] = {"status": "failed", "reason": failures[0]}
            continue
        rec["median_s"] = t_fwd[name].median_s
        rec["fwdbwd_median_s"] = t_bwd[name].median_s if name in t_bwd else None
        rec["forward"] = t_fwd[name].to_dict()
        rec["fwdbwd"] = t_bwd[name].to_dict() if name in t_bwd else None
        rec["ratio_forward"] = ratio(rec["median_s"], neuro_fwd)
        rec["ratio_fwdbwd"] = ratio(rec["fwdbwd_median_s"], neuro_bwd)
        if not peer.ceiling:
            rec["out_spikes"], rec["hidden_spikes"] = _count(o_fwd[name][0]), _count(o_fwd[name][1])
            rec["spikes_match"] = (rec["out_spikes"], rec["hidden_spikes"]) == (n_out, n_hid)
            if name in o_bwd:
                rec["spikes_match"] &= (_count(o_bwd[name][0]), _count(o_bwd[name][1])) == (n_out, n_hid)
            if not rec["spikes_match"]:
                mismatches.append(name)
        result_peers[name] = rec

    ran = {k: v for k, v in result_peers.items() if v["status"] == "ok" and not v["ceiling"]}
    best_f, best_f_s = best_peer({k: v["median_s"] for k, v in ran.items()})
    best_b, best_b_s = best_peer({k: v["fwdbwd_median_s"] for k, v in ran.items() if v["fwdbwd_median_s"]})
    ok = not mismatches
    data_out = {
        "workload": "W1",
        "description": "dense feed-forward LIF network, forward (no_grad) and forward+backward of sum(output spikes)",
        "config": {**asdict(cfg), "reps": reps, "warmup": warmup, "timing": "interleaved, in one process"},
        "neuro_median_s": neuro_fwd,
        "neuro_fwdbwd_median_s": neuro_bwd,
        "neuro": {"forward": t_fwd["neuro"].to_dict(), "fwdbwd": t_bwd["neuro"].to_dict(),
                  "out_spikes": n_out, "hidden_spikes": n_hid, "kernels": get_kernels(None).name,
                  "surrogate": "sigmoid(alpha=4)"},
        "best_peer": {"forward": best_f, "fwdbwd": best_b},
        "ratio_vs_best_peer": {"forward": ratio(best_f_s, neuro_fwd), "fwdbwd": ratio(best_b_s, neuro_bwd)},
        **peer_fields(result_peers, {"spikes_identical": ok, "out_spikes": n_out, "hidden_spikes": n_hid,
                   "mismatched": mismatches}, ok, opts.threads),
    }
    return Report(data_out, _text(data_out), ok)


def _text(d: dict) -> str:
    c = d["config"]
    head = (f"W1 dense feed-forward LIF: T={c['T']} B={c['B']} {c['n_in']}-{c['n_hid']}-{c['n_out']}, "
            f"{d['machine']['torch_threads']} threads, medians of {c['reps']} interleaved runs "
            f"(after {c['warmup']} warmup)")
    rows = [["neuro", fmt_s(d["neuro_median_s"]), fmt_s(d["neuro_fwdbwd_median_s"]), "1.00x", "1.00x",
             str(d["neuro"]["out_spikes"]), d["neuro"]["surrogate"]]]
    notes = []
    for name, p in d["peers"].items():
        if p["status"] != "ok":
            notes.append(f"  {name}: {p['status']} - {p['reason']}")
            continue
        label = f"{name} (ceiling)" if p["ceiling"] else name
        spikes = "-" if p["ceiling"] else str(p["out_spikes"]) + ("" if p["spikes_match"] else " MISMATCH")
        rows.append([label, fmt_s(p["median_s"]), fmt_s(p["fwdbwd_median_s"]), fmt_ratio(p["ratio_forward"]),
                     fmt_ratio(p["ratio_fwdbwd"]), spikes, p["surrogate"]])
    body = table(["implementation", "forward", "fwd+bwd", "fwd ratio", "fwd+bwd ratio", "out spikes",
                  "surrogate"], rows)
    r, b = d["ratio_vs_best_peer"], d["best_peer"]
    lines = [head, body,
             "ratio = peer median / neuro median (> 1: neuro is faster)",
             f"ratio vs best peer: forward {fmt_ratio(r['forward'])} ({b['forward'] or 'none'}), "
             f"fwd+bwd {fmt_ratio(r['fwdbwd'])} ({b['fwdbwd'] or 'none'})",
             f"neuro kernels: {d['neuro']['kernels']}"]
    if notes:
        lines += ["not run:"] + notes
    ch = d["checks"]
    lines.append(f"check, forward spikes identical in every library (output {ch['out_spikes']}, hidden "
                 f"{ch['hidden_spikes']}): " + ("OK" if ch["spikes_identical"] else
                                               "FAILED: " + ", ".join(ch["mismatched"])))
    return "\n".join(lines)


# ================================================================================ switch
# (shape label, n_in, n_out, rows, mode): W1's two layers over all T*B rows at once, then single-step
# batches of a square layer
SWITCH_SHAPES = [
    ("W1 layer 1", 784, 1000, FULL.T * FULL.B, "forward"),
    ("W1 layer 1", 784, 1000, FULL.T * FULL.B, "forward_backward"),
    ("W1 layer 2", 1000, 10, FULL.T * FULL.B, "forward"),
    ("single step", 1000, 1000, FULL.B, "forward"),
    ("single step", 4096, 4096, FULL.B, "forward"),
]
QUICK_DENSITIES = (0.01, 0.1, 0.5)


def run_switch(opts: Options) -> Report:
    """``neuro bench switch``: :func:`neuro.synapses.switch.measure_switch_density` at the shapes above."""
    from ..synapses.linear import DEFAULT_SWITCH_DENSITY
    from ..synapses.switch import DEFAULT_DENSITIES, measure_switch_density

    set_threads(opts.threads)
    quiet_known_warnings()
    reps = opts.reps_or(1 if opts.quick else 5)
    warmup = opts.warmup_or(0 if opts.quick else 1)
    densities = QUICK_DENSITIES if opts.quick else DEFAULT_DENSITIES
    shapes = [(label, n_in, n_out, max(1, rows // 16) if opts.quick else rows, mode)
              for label, n_in, n_out, rows, mode in SWITCH_SHAPES]
    results = []
    with progress_bar(len(shapes) * len(densities) * 2 * (reps + warmup), "switch", opts.progress) as bar:
        for label, n_in, n_out, rows, mode in shapes:
            r = measure_switch_density(n_in, n_out, rows, densities=densities, reps=reps, warmup=warmup,
                                       mode=mode, progress=bar)
            results.append({"label": label, **r})
    data = {"workload": "switch",
            "description": "neuro.synapses.Linear: event path (switch_density=1) vs dense path (switch_density=0)",
            "default_switch_density": DEFAULT_SWITCH_DENSITY,
            "w1_layer1_crossover_density": results[0]["crossover_density"],
            "shapes": results, "ok": True, "versions": versions(), "machine": machine(opts.threads)}
    return Report(data, _switch_text(data), True)


def _switch_text(d: dict) -> str:
    lines = [f"neuro.synapses.Linear event path vs dense path ({d['machine']['torch_threads']} threads); "
             f"default switch_density = {d['default_switch_density']}"]
    for r in d["shapes"]:
        lines += ["", f"{r['label']}: {r['n_in']} -> {r['n_out']}, {r['rows']} rows, {r['mode']}, "
                      f"kernels '{r['kernels']}', medians of {r['reps']}"]
        lines.append(table(["density", "event", "dense", "event speedup"],
                           [[f"{t['density']:g}", fmt_s(t["event_s"]), fmt_s(t["dense_s"]),
                             f"{t['event_speedup']:.2f}x"] for t in r["table"]]))
        cross = r["crossover_density"]
        lines.append(f"crossover: {cross:.3f} ({r['note']})" if cross is not None else f"crossover: none ({r['note']})")
    return "\n".join(lines)
