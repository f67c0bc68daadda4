"""Engine: errors, parameter records, surrogate spike functions, the time loop, event tensors.

Exports are loaded on first use, so that torch-free parts of the package (the IR, the typed errors,
parameter records) can import ``neuro.core.errors`` without importing torch.
"""
from .lazy import lazy_exports

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

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
