r"""Where the event-driven path of :class:`~neuro.synapses.Linear` stops paying off.

:func:`measure_switch_density` times one layer's event path (``switch_density=1.0``: only the weight rows
of nonzero inputs are read) against its dense path (``switch_density=0.0``: one matmul) on Bernoulli
inputs of increasing density, and interpolates the density at which both take the same time: the
*crossover*. Below it the event path is faster. :data:`~neuro.synapses.linear.DEFAULT_SWITCH_DENSITY`
was set from this measurement at the W1 layer-1 shape (784 -> 1000, 6400 rows); ``neuro bench switch``
prints it for that shape and a few others.

The crossover is interpolated linearly in density on the logarithm of the time ratio
event / dense between the two measured densities where the ratio crosses 1. Timings are medians of
``reps`` runs, the two paths interleaved rep by rep.
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Optional, Sequence

import torch

from ..core.errors import ParameterError
from .linear import Linear

DEFAULT_DENSITIES = (0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
MODES = ("forward", "forward_backward")


def _inputs(rows: int, n_in: int, density: float, dtype, gen) -> torch.Tensor:
    return (torch.rand(rows, n_in, generator=gen) < density).to(dtype)


def _call(layer: Linear, x: torch.Tensor, mode: str):
    if mode == "forward":
        with torch.no_grad():
            return layer(x)
    layer.weight.grad = None
    if layer.bias is not None:
        layer.bias.grad = None
    y = layer(x)
    y.sum().backward()
    return y


def crossover(densities: Sequence[float], event_s: Sequence[float], dense_s: Sequence[float]) -> Optional[float]:
    """The density where event time = dense time, interpolated on log(event / dense); None when the
    ratio never crosses 1 within the measured densities (see the sign of the first ratio)."""
    logs = [math.log(e / d) for e, d in zip(event_s, dense_s)]
    if not logs or logs[0] >= 0:
        return None
    for i in range(1, len(logs)):
        if logs[i] >= 0:
            d0, d1, l0, l1 = densities[i - 1], densities[i], logs[i - 1], logs[i]
            return d0 + (0.0 - l0) * (d1 - d0) / (l1 - l0)
    return None


def measure_switch_density(n_in: int, n_out: int, rows: int, densities: Sequence[float] = DEFAULT_DENSITIES,
                           reps: int = 5, warmup: int = 1, mode: str = "forward", kernels: str | None = None,
                           dtype: torch.dtype = torch.float32, seed: int = 0, progress=None) -> dict:
    """Time the event and dense paths of one ``Linear(n_in, n_out)`` on ``rows`` input rows.

    Args:
        n_in, n_out: layer shape; rows: rows of the input batch (e.g. T * B in step mode 'm').
        densities: input densities (fractions of nonzero inputs) to measure, increasing.
        reps, warmup: timed and untimed runs per density and path.
        mode: 'forward' (under no_grad) or 'forward_backward' (backward of sum(y), weight gradient).
        kernels: event kernel set (None: the fastest built).
        progress: a tqdm-like bar to ``update(1)`` per run, or None.

    Returns:
        dict with ``crossover_density`` (float, or None when the ratio does not cross 1 in range),
        ``note``, ``table`` (per density: ``event_s``, ``dense_s``, ``event_speedup`` = dense / event),
        the shape, mode, kernels and dtype.
    """
    if mode not in MODES:
        raise ParameterError("measure_switch_density", "mode", mode, "one of " + ", ".join(MODES))
    densities = [float(d) for d in densities]
    if not densities or any(not 0.0 < d < 1.0 for d in densities) or densities != sorted(densities):
        raise ParameterError("measure_switch_density", "densities", densities, "increasing values in (0, 1)")
    for name, v in (("rows", rows), ("reps", reps)):
        if not isinstance(v, int) or v < 1:
            raise ParameterError("measure_switch_density", name, v, "an integer >= 1")
    gen = torch.Generator().manual_seed(seed)
    event = Linear(n_in, n_out, switch_density=1.0, kernels=kernels, dtype=dtype)
    dense = Linear.from_weights(event.weight.detach(), event.bias.detach(), switch_density=0.0, kernels=kernels)
    rows_out = []
    for density in densities:
        x = _inputs(rows, n_in, density, dtype, gen)
        times = {"event": [], "dense": []}
        for r in range(warmup + reps):
            for name, layer in (("event", event), ("dense", dense)):
                t0 = time.perf_counter()
                _call(layer, x, mode)
                dt = time.perf_counter() - t0
                if r >= warmup:
                    times[name].append(dt)
                if progress is not None:
                    progress.update(1)
        e, d = statistics.median(times["event"]), statistics.median(times["dense"])
        rows_out.append({"density": density, "event_s": e, "dense_s": d, "event_speedup": d / e})
    cross = crossover(densities, [r["event_s"] for r in rows_out], [r["dense_s"] for r in rows_out])
    if cross is not None:
        note = f"event path faster below density {cross:.3f}"
    elif rows_out[0]["event_s"] >= rows_out[0]["dense_s"]:
        note = f"dense path faster at every measured density (from {densities[0]})"
    else:
        note = f"event path faster at every measured density (up to {densities[-1]})"
    return {"n_in": n_in, "n_out": n_out, "rows": rows, "mode": mode, "kernels": getattr(event.kernels, "name", type(event.kernels).__name__),
            "dtype": str(dtype).replace("torch.", ""), "reps": reps, "warmup": warmup,
            "crossover_density": cross, "note": note, "table": rows_out}
