"""Neuron models: each a pure step function plus a thin module."""
from .alif import ALIF, ALIFParams, ALIFState, alif_step
from .cuba import CubaLIF, CubaLIFParams, CubaLIFState, cuba_lif_step
from .if_ import IF, IFParams, IFState, if_step
from .lif import LIF, LIFParams, LIFState, lif_charge, lif_step
from .stbif import STBIF, STBIFParams, STBIFState, stbif_step

__all__ = [
    "ALIF", "ALIFParams", "ALIFState", "alif_step", "CubaLIF", "CubaLIFParams", "CubaLIFState",
    "cuba_lif_step", "IF", "IFParams", "IFState", "if_step", "LIF", "LIFParams", "LIFState",
    "lif_charge", "lif_step", "STBIF", "STBIFParams", "STBIFState", "stbif_step",
]
from .egru import EGRU, EGRUCell, EGRUParams, EGRUState, egru_step  # noqa: E402,F401  (after the LIF family)

# The compiled backend registers its fused multi-step LIF when imported; the package runs without it.
try:  # pragma: no cover - depends on the build
    from .. import _native  # noqa: F401,E402
except ImportError:
    pass
