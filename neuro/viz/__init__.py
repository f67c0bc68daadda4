"""Plots of spiking activity (matplotlib, Agg canvas; no display needed)."""
from .plots import membrane_traces, raster, rate_histogram, save_figure

__all__ = ["membrane_traces", "raster", "rate_histogram", "save_figure"]
