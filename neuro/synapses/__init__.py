"""Synapses: dense, sparse (CSR) and convolutional, each with event-driven propagation."""
from .conv import Conv2d
from .delay import DelayLinear
from .kernels import available_kernels, get_kernels, register_kernels
from .linear import DEFAULT_SWITCH_DENSITY, Linear
from .sparse import SparseLinear
from .stdp import STDP, STDPParams  # noqa: F401  (pair-based plasticity on Linear / SparseLinear)

__all__ = ["Conv2d", "DelayLinear", "DEFAULT_SWITCH_DENSITY", "Linear", "SparseLinear", "available_kernels",
           "get_kernels", "register_kernels"]
