"""Engine: errors, parameter records, surrogate spike functions, the time loop, event tensors."""
from .errors import (DTypeError, FormatError, HardwareLimitError, NeuroError, ParameterError,
                     ShapeError, StepModeError, UnsupportedLayerError)
from .events import EventTensor
from .monitor import Monitor
from .loop import (SequenceModule, StatefulModule, detach_net, register_multistep, reset_net,
                   run_steps, set_step_mode)
from .params import Params, param, record
from .surrogate import ATan, Sigmoid, Surrogate, Triangle, heaviside, spike

__all__ = [
    "ATan", "Monitor", "DTypeError", "EventTensor", "FormatError", "HardwareLimitError", "NeuroError",
    "ParameterError", "Params", "SequenceModule", "ShapeError", "Sigmoid", "StatefulModule",
    "StepModeError", "Surrogate", "Triangle", "UnsupportedLayerError", "detach_net", "heaviside",
    "param", "record", "register_multistep", "reset_net", "run_steps", "set_step_mode", "spike",
]
