r"""Raster plots, membrane traces and firing-rate histograms.

Figures are built on matplotlib's Agg canvas directly (``matplotlib.figure.Figure``), never through
``pyplot``: no display is needed, no global figure state is touched, and a figure is freed as soon
as it is no longer referenced. Every function returns the :class:`~matplotlib.figure.Figure`; pass
``ax`` to draw into an existing axes instead.

Time axes are in milliseconds (step ``t`` at ``t * dt_ms``); rates are in Hz:
:math:`r_n = \text{count}_n / (T\,dt_{ms} / 1000)`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..core.errors import ParameterError, ShapeError
from ..core.events import EventTensor


def _new_axes(ax: Optional[Axes], figsize=(6.4, 4.0)) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _positive(owner: str, name: str, value) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value) or value <= 0:
        raise ParameterError(owner, name, value, "a finite number > 0")
    return float(value)


def _dense_2d(owner: str, name: str, x) -> np.ndarray:
    """A [T, N] float array from a tensor or array; ShapeError for any other rank."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu").numpy()
    x = np.asarray(x)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise ParameterError(owner, name, f"array of dtype {x.dtype}", "numeric")
    if x.ndim != 2:
        raise ShapeError(owner, f"{name} must be [T, N] (time, neuron), got shape {tuple(x.shape)}")
    return x.astype(np.float64)


def spike_coordinates(spikes, owner: str = "spike_coordinates") -> tuple[np.ndarray, np.ndarray, int, int]:
    """(step index, neuron index, T, N) of every event of a dense [T, N] train or an EventTensor over (N,)."""
    if isinstance(spikes, EventTensor):
        if len(spikes.shape) != 1:
            raise ShapeError(owner, f"EventTensor must have per-step shape (N,), got {spikes.shape}")
        steps = np.repeat(np.arange(spikes.steps), spikes.counts().numpy())
        return steps, spikes.indices.numpy().astype(np.int64), spikes.steps, int(spikes.shape[0])
    dense = _dense_2d(owner, "spikes", spikes)
    t, n = np.nonzero(dense)
    return t, n, dense.shape[0], dense.shape[1]


def raster(spikes, ax: Optional[Axes] = None, title: str = "Spike raster", max_neurons: Optional[int] = None,
           dt_ms: float = 1.0, marker_size: float = 4.0) -> Figure:
    """Dot per spike at (time in ms, neuron index).

    Args:
        spikes: dense [T, N] tensor or array (any nonzero entry is an event), or an
            :class:`~neuro.core.events.EventTensor` with per-step shape (N,).
        max_neurons: plot only neurons ``0 .. max_neurons - 1``.
        dt_ms: duration of a step.

    Shape: spikes [T, N].
    """
    dt_ms = _positive("raster", "dt_ms", dt_ms)
    if max_neurons is not None and (not isinstance(max_neurons, int) or isinstance(max_neurons, bool)
                                    or max_neurons < 1):
        raise ParameterError("raster", "max_neurons", max_neurons, "an integer >= 1 or None")
    t, n, T, N = spike_coordinates(spikes, "raster")
    if max_neurons is not None:
        keep = n < max_neurons
        t, n, N = t[keep], n[keep], min(N, max_neurons)
    fig, ax = _new_axes(ax)
    ax.scatter(t * dt_ms, n, s=marker_size, marker="|" if N > 50 else "o", c="k", linewidths=0.8)
    ax.set_xlim(-0.5 * dt_ms, T * dt_ms)
    ax.set_ylim(-0.5, max(N, 1) - 0.5)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("neuron")
    ax.set_title(title)
    return fig


def membrane_traces(v, neurons: Optional[Sequence[int]] = None, v_th: Optional[float] = None, dt_ms: float = 1.0,
                    ax: Optional[Axes] = None, title: str = "Membrane potential") -> Figure:
    """One line per chosen neuron, and the threshold as a dashed line.

    Args:
        v: membrane potentials [T, N] (tensor or array).
        neurons: indices to draw (default: the first five).
        v_th: threshold to mark, or None.

    Shape: v [T, N].
    """
    dt_ms = _positive("membrane_traces", "dt_ms", dt_ms)
    vv = _dense_2d("membrane_traces", "v", v)
    T, N = vv.shape
    chosen = list(range(min(N, 5))) if neurons is None else list(neurons)
    for i in chosen:
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not 0 <= i < N:
            raise ParameterError("membrane_traces", "neurons", i, f"neuron indices in [0, {N})")
    if v_th is not None and (isinstance(v_th, bool) or not isinstance(v_th, (int, float)) or not np.isfinite(v_th)):
        raise ParameterError("membrane_traces", "v_th", v_th, "a finite number or None")
    fig, ax = _new_axes(ax)
    time = np.arange(T) * dt_ms
    for i in chosen:
        ax.plot(time, vv[:, i], lw=1.0, label=f"neuron {int(i)}")
    if v_th is not None:
        ax.axhline(v_th, color="r", ls="--", lw=1.0, label="threshold")
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("membrane potential")
    ax.set_title(title)
    if chosen or v_th is not None:
        ax.legend(loc="upper right", fontsize="small")
    return fig


def firing_rates_hz(spikes, dt_ms: float = 1.0) -> np.ndarray:
    """Spike count per neuron over the run, in Hz. Shape: [N]."""
    dt_ms = _positive("rate_histogram", "dt_ms", dt_ms)
    _, n, T, N = spike_coordinates(spikes, "rate_histogram")
    if T == 0:
        raise ShapeError("rate_histogram", "spikes has no time steps")
    counts = np.bincount(n, minlength=N)
    return counts / (T * dt_ms * 1e-3)


def rate_histogram(spikes, dt_ms: float = 1.0, bins=20, ax: Optional[Axes] = None,
                   title: str = "Firing rates") -> Figure:
    """Histogram of per-neuron firing rates in Hz.

    Args:
        spikes: dense [T, N] or an EventTensor over (N,).
        bins: number of bins or bin edges (as :func:`numpy.histogram`).

    Shape: spikes [T, N].
    """
    if isinstance(bins, bool) or (isinstance(bins, int) and bins < 1):
        raise ParameterError("rate_histogram", "bins", bins, "an integer >= 1 or a sequence of edges")
    rates = firing_rates_hz(spikes, dt_ms)
    fig, ax = _new_axes(ax)
    ax.hist(rates, bins=bins, color="C0", edgecolor="k")
    ax.set_xlabel("firing rate (Hz)")
    ax.set_ylabel("neurons")
    ax.set_title(title)
    return fig


def save_figure(fig: Figure, path, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix), creating parent folders; returns the path."""
    if not isinstance(fig, Figure):
        raise ParameterError("save_figure", "fig", type(fig).__name__, "a matplotlib Figure")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


__all__ = ["firing_rates_hz", "membrane_traces", "raster", "rate_histogram", "save_figure", "spike_coordinates"]
