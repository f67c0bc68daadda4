"""``neuro demo``: the main job on its bundled default.

For now: the W2 network (10,000 LIF neurons, 1 % connectivity, Poisson drive) for 1,000 steps, its
firing rates, a raster plot and a rate histogram, and its agreement with Brian2 on the same network
and the same drive.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

HELP = "run the default job: the W2 network, its rates and plots, and its agreement with Brian2"


def add_arguments(p):
    p.add_argument("--out", type=Path, default=Path("out"), help="folder for plots and the JSON report (default out)")
    p.add_argument("--neurons", type=int, default=10_000, help="network size (default 10000)")
    p.add_argument("--steps", type=int, default=1000, help="time steps (default 1000)")
    p.add_argument("--no-brian2", action="store_true", help="skip the Brian2 comparison")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    from ..hardware_targets.brian2 import compare_with_brian2
    from ..models import w2_network
    from ..viz import rate_histogram, save_figure
    from .simulate import plot_raster, summarize

    args.out.mkdir(parents=True, exist_ok=True)
    net = w2_network(n=args.neurons)
    t0 = time.perf_counter()
    res = net.run(args.steps)
    report = {"network": summarize(net, res, time.perf_counter() - t0)}
    plot_raster(net, res, args.out / "w2_raster.png")
    save_figure(rate_histogram(res.spikes, dt_ms=net.params.dt_ms, bins=40), args.out / "w2_rates.png")
    report["plots"] = [str(args.out / "w2_raster.png"), str(args.out / "w2_rates.png")]
    ok = True
    if not args.no_brian2:
        cmp = compare_with_brian2(net, args.steps)
        report["brian2"] = cmp
        ok = bool(cmp["identical"])
    (args.out / "demo.json").write_text(json.dumps(report, indent=1))
    if args.json:
        print(json.dumps(report))
        return 0 if ok else 1
    n = report["network"]
    print(f"W2 network: {n['neurons']} LIF neurons, {n['steps']} steps in {n['wall_s']:.3f} s ({n['engine']} engine)")
    print(f"  spikes {n['spikes']}, mean rate {n['mean_rate_hz']:.2f} Hz, "
          f"{100 * n['active_fraction_per_step']:.2f}% of neurons active per step, "
          f"{n['synaptic_events'] / max(n['wall_s'], 1e-9) / 1e6:.0f} M synaptic events/s")
    print(f"  plots: {', '.join(report['plots'])}")
    if "brian2" in report:
        b = report["brian2"]
        verdict = "identical spike trains" if b["identical"] else f"{b['n_mismatch']} spikes differ"
        print(f"Brian2 on the same network and drive: {verdict} "
              f"(neuro {b['neuro_spikes']} spikes, Brian2 {b['brian2_spikes']})")
    print(f"report: {args.out / 'demo.json'}")
    return 0 if ok else 1
