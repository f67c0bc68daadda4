"""Engine: errors, parameter records, surrogate spike functions, the time loop, event tensors.

Exports are loaded on first use, so that torch-free parts of the package (the IR, the typed errors,
parameter records) can import ``neuro.core.errors`` without importing torch.
"""
import importlib

_EXPORTS = {
    "DTypeError": "errors", "FormatError": "errors", "HardwareLimitError": "errors", "NeuroError": "errors",
    "ParameterError": "errors", "ShapeError": "errors", "StepModeError": "errors",
    "UnsupportedLayerError": "errors",
    "Params": "params", "param": "params", "record": "params",
    "EventTensor": "events", "Monitor": "monitor",
    "SequenceModule": "loop", "StatefulModule": "loop", "detach_net": "loop", "register_multistep": "loop",
    "reset_net": "loop", "run_steps": "loop", "set_step_mode": "loop",
    "ATan": "surrogate", "Sigmoid": "surrogate", "Surrogate": "surrogate", "Triangle": "surrogate",
    "heaviside": "surrogate", "spike": "surrogate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'neuro.core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
