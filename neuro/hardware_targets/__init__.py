"""Hardware targets and reference simulators; each reads an IR :class:`~neuro.ir.Graph`.

* :mod:`neuro.hardware_targets.brian2`: Brian2 as the reference simulator
  (:func:`~neuro.hardware_targets.brian2.run_brian2`, :func:`~neuro.hardware_targets.brian2.compare_with_brian2`).
* :mod:`neuro.hardware_targets.nir`: NIR files out and in (:func:`export_nir`, :func:`import_nir`, :func:`load_nir`).
* :mod:`neuro.hardware_targets.loihi`: Loihi 2 fixed point, its bit-exact emulator and the Lava runner.
* :mod:`neuro.hardware_targets.spinnaker`: SpiNNaker 1/2 mapping (partitioning, placement, multicast
  routing, delays), the event-graph emulator, its energy (:func:`emulation_counts`) and exports to a
  py-spinnaker2-style JSON and a PyNN script (:func:`to_spinnaker2`, :func:`to_pynn`).

Targets are imported on first use: importing this package imports no simulator.
"""
import importlib

_LAZY = {"compare_with_brian2": "brian2", "run_brian2": "brian2", "export_nir": "nir", "import_nir": "nir",
         "load_nir": "nir", "to_nir": "nir", "from_nir": "nir"}
_PACKAGES = ("loihi", "spinnaker")
__all__ = sorted(_LAZY) + list(_PACKAGES)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    if name in _PACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'neuro.hardware_targets' has no attribute {name!r}")
