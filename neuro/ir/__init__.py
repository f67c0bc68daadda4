"""The intermediate representation every exporter reads (:mod:`neuro.ir.graph`, numpy only) and
its builder from neuro's modules (:func:`to_ir`, :mod:`neuro.ir.trace`, loaded on first use so that
importing the IR does not import torch)."""
from .graph import (ConstantCurrent, GivenCurrent, Graph, IFPopulation, LIFPopulation, PoissonInput,
                    Projection, SpikeSource)

__all__ = ["ConstantCurrent", "GivenCurrent", "Graph", "IFPopulation", "LIFPopulation", "PoissonInput",
           "Projection", "SpikeSource", "to_ir"]


def __getattr__(name):
    if name == "to_ir":
        from .trace import to_ir

        return to_ir
    raise AttributeError(f"module 'neuro.ir' has no attribute {name!r}")
