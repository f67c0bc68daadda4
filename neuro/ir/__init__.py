"""The intermediate representation every exporter reads (:mod:`neuro.ir.graph`, numpy only), its
builder from neuro's modules (:func:`to_ir`, :mod:`neuro.ir.trace`) and the way back to a runnable
model (:func:`to_module`, :mod:`neuro.ir.build`); the last two are loaded on first use so that
importing the IR does not import torch."""
from .graph import (ALIFPopulation, ConstantCurrent, Conv2dProjection, CubaLIFPopulation, EGRULayer, GivenCurrent,
                    Graph, IFPopulation, LIFPopulation, LIPopulation, PoissonInput, Pool2dProjection, Projection,
                    SpikeSource, ThresholdPopulation)

__all__ = ["ALIFPopulation", "ConstantCurrent", "Conv2dProjection", "CubaLIFPopulation", "EGRULayer", "GivenCurrent",
           "Graph", "GraphNetwork", "IFPopulation", "LIFPopulation", "LIPopulation", "PoissonInput", "Pool2d",
           "Pool2dProjection",
           "Projection", "SpikeSource", "ThresholdPopulation", "delay_projections", "to_ir", "to_module"]

_LAZY = {"to_ir": "trace", "delay_projections": "trace", "GraphNetwork": "build", "Pool2d": "build",
         "to_module": "build"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'neuro.ir' has no attribute {name!r}")
