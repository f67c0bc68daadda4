"""``neuro simulate``: run a built-in or saved recurrent network, print rates, write a raster plot."""
from __future__ import annotations

import json
import time
from pathlib import Path

HELP = "run a built-in (w2) or saved recurrent network; print firing rates, write a raster PNG"


def add_arguments(p):
    p.add_argument("model", nargs="?", default="w2",
                   help="'w2' (built-in benchmark network) or a saved model folder (default: w2)")
    p.add_argument("--steps", type=int, default=1000, help="time steps to simulate (default 1000)")
    p.add_argument("--neurons", type=int, default=10_000, help="size of the built-in w2 network (default 10000)")
    p.add_argument("--seed", type=int, default=1234, help="connectivity and drive seed of the built-in network")
    p.add_argument("--engine", default="auto", help="'auto', 'native' or 'torch' (default auto)")
    p.add_argument("--raster", type=Path, default=Path("raster.png"), help="raster plot file (default raster.png)")
    p.add_argument("--no-plot", action="store_true", help="do not write the raster plot")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of text")
    p.add_argument("--progress", action="store_true", help="show a progress bar (torch engine)")


def load_network(spec: str, neurons: int, seed: int):
    from ..core.errors import ParameterError
    from ..models import RecurrentNetwork, w2_network

    if spec == "w2":
        return w2_network(n=neurons, seed=seed)
    from ..io import load_model

    net = load_model(spec)
    if not isinstance(net, RecurrentNetwork):
        raise ParameterError("neuro simulate", "model", spec, "a folder holding a RecurrentNetwork")
    return net


def summarize(net, res, wall_s: float) -> dict:
    dt = net.params.dt_ms
    rates = res.rates_hz(dt)
    spikes = int(res.counts.sum())
    outdeg = net.synapses.indptr.diff().numpy()
    return {
        "neurons": net.n, "steps": res.spikes.steps, "dt_ms": dt, "engine": res.engine,
        "spikes": spikes, "mean_rate_hz": float(rates.mean()), "median_rate_hz": float(sorted(rates)[len(rates) // 2]),
        "max_rate_hz": float(rates.max()), "silent_fraction": float((res.counts == 0).mean()),
        "active_fraction_per_step": spikes / (net.n * res.spikes.steps),
        "synaptic_events": int((res.counts * outdeg).sum()), "wall_s": wall_s,
    }


def plot_raster(net, res, path: Path) -> None:
    from ..viz import raster, save_figure

    fig = raster(res.spikes, dt_ms=net.params.dt_ms, max_neurons=min(net.n, 150),
                 title=f"{net.n} LIF neurons, {res.spikes.steps} steps ({res.engine} engine)")
    save_figure(fig, path)


def run(args) -> int:
    net = load_network(args.model, args.neurons, args.seed)
    t0 = time.perf_counter()
    res = net.run(args.steps, engine=args.engine, progress=args.progress)
    summary = summarize(net, res, time.perf_counter() - t0)
    if not args.no_plot:
        plot_raster(net, res, args.raster)
        summary["raster"] = str(args.raster)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{summary['neurons']} neurons x {summary['steps']} steps ({summary['engine']} engine, "
              f"{summary['wall_s']:.3f} s): {summary['spikes']} spikes, mean rate {summary['mean_rate_hz']:.2f} Hz "
              f"(median {summary['median_rate_hz']:.2f}, max {summary['max_rate_hz']:.2f}), "
              f"{100 * summary['active_fraction_per_step']:.2f}% active per step")
        if "raster" in summary:
            print(f"raster plot: {summary['raster']}")
    return 0
