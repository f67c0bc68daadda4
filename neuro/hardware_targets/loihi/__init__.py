r"""Loihi 2 through Lava: compile the IR to fixed point, emulate it bit-exactly, run it in Lava.

* :func:`compile_graph` (:mod:`.compiler`): IR -> :class:`LoihiNetwork` (weights with exponents, du,
  dv, vth, bias mantissa/exponent, delays), limits checked first (:class:`LoihiLimits`).
* :func:`emulate` (:mod:`.emulator`): Lava's fixed-point LIF / Dense / DelayDense in batched integer
  PyTorch, spike for spike and voltage for voltage.
* :func:`run_lava` (:mod:`.lava`): the same network in Lava (``Loihi2SimCfg(select_tag='fixed_pt')``),
  in the separate Python 3.10 environment, through a subprocess.
* :func:`agreement`: the quantized network against the float IR model, with Loihi's lag removed.
* :func:`write_netx` (:mod:`.netx`): lava-dl's netx HDF5 format for feed-forward chains.

A population P runs ``latency[P]`` steps late on Loihi (every connection delays by one step):
float step t corresponds to Loihi step t + latency[P].
"""
from __future__ import annotations

import numpy as np

from .compiler import (LOIHI2, LoihiConnection, LoihiLimits, LoihiNetwork, LoihiPopulation, compile_graph,
                       latencies)
from .emulator import emulate, lava_weights, lif_fixed_step
from .runner import LavaRunError, LavaUnavailableError, lava_available, lava_python, run_lava
from .netx import read_netx, write_netx

__all__ = ["LOIHI2", "LavaRunError", "LavaUnavailableError", "LoihiConnection", "LoihiLimits", "LoihiNetwork",
           "LoihiPopulation", "agreement", "align", "compile_graph", "emulate", "lava_available", "lava_python",
           "lava_weights", "latencies", "lif_fixed_step", "read_netx", "run_lava", "spike_stats", "write_netx"]


def align(net: LoihiNetwork, spikes: dict, steps: int) -> dict:
    """Loihi-time spikes {population: [T_loihi, ...]} -> float time: rows latency .. latency + steps."""
    return {k: np.asarray(v)[net.populations[k].latency: net.populations[k].latency + steps] for k, v in spikes.items()}


def spike_stats(a, b) -> dict:
    """Agreement of two spike rasters [T, ..., n] (0/1): ``identical`` (fraction of equal entries),
    ``distance`` (mismatches per spike of either raster: |a - b| summed over |a| + |b|, 0 = same,
    1 = disjoint), ``rate_correlation`` (Pearson over neurons of the spike counts; 1.0 when both are
    constant and equal, nan when one is constant), ``spikes`` (counts of a and b)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    total = a.sum() + b.sum()
    ra, rb = a.reshape(a.shape[0], -1).sum(0), b.reshape(b.shape[0], -1).sum(0)
    if ra.std() == 0 or rb.std() == 0:
        corr = 1.0 if np.array_equal(ra, rb) else float("nan")
    else:
        corr = float(np.corrcoef(ra, rb)[0, 1])
    return {"identical": float((a == b).mean()), "distance": float(np.abs(a - b).sum() / total) if total else 0.0,
            "rate_correlation": corr, "spikes": [int(a.sum()), int(b.sum())]}


def agreement(net: LoihiNetwork, graph, inputs, steps: int | None = None) -> dict:
    """Emulated quantized network vs the float IR model (:class:`~neuro.ir.build.GraphNetwork`) on the
    same input spikes {source: [T, B, n]}: per population :func:`spike_stats`, Loihi's lag removed."""
    import torch

    from ...ir.build import GraphNetwork

    if not isinstance(inputs, dict):
        inputs = {next(iter(net.sources)): inputs}
    inputs = {k: torch.as_tensor(np.asarray(v), dtype=torch.float64) for k, v in inputs.items()}
    T = next(iter(inputs.values())).shape[0] if steps is None else steps
    lag = max(net.latency.values(), default=0)
    ref = GraphNetwork(graph)(inputs, steps=T)
    emu, _ = emulate(net, inputs, steps=T + lag)
    emu = align(net, {k: v.numpy() for k, v in emu.items()}, T)
    return {k: spike_stats(emu[k], ref[k].numpy()) for k in net.populations}
