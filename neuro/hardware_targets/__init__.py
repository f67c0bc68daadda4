"""Hardware targets and reference simulators; each reads an IR :class:`~neuro.ir.Graph`.

* :mod:`neuro.hardware_targets.brian2`: Brian2 as the reference simulator
  (:func:`~neuro.hardware_targets.brian2.run_brian2`, :func:`~neuro.hardware_targets.brian2.compare_with_brian2`).

Targets are imported on first use: importing this package imports no simulator.
"""

__all__ = ["compare_with_brian2", "run_brian2"]


def __getattr__(name):
    if name in __all__:
        from . import brian2

        return getattr(brian2, name)
    raise AttributeError(f"module 'neuro.hardware_targets' has no attribute {name!r}")
