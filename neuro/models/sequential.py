"""Feed-forward spiking networks: a savable :class:`torch.nn.Sequential` and a step-mode-aware Flatten.

:class:`SpikingSequential` chains savable modules (synapses, neurons, :class:`Flatten`); its saved
config is the list of its children's ``{"class", "config"}`` specs, so a network such as
Linear -> LIF -> Linear -> LIF round-trips through :func:`neuro.io.save_model` and
:func:`neuro.io.load_model`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.errors import ParameterError, ShapeError, StepModeError
from ..core.loop import reset_net, set_step_mode
from ..io import build_module, module_spec, savable


@savable("Flatten")
class Flatten(nn.Module):
    """Flatten dims ``start_dim..end_dim`` of one time step, as :class:`torch.nn.Flatten`.

    In step mode 'm' the time and batch axes are folded first, so the dims count from the batch
    axis in both modes (SpikingJelly's ``layer.Flatten``).

    Shape: 's' [B, C, H, W] -> [B, C*H*W]; 'm' [T, B, C, H, W] -> [T, B, C*H*W] (defaults).
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1, step_mode: str = "s"):
        super().__init__()
        for name, v in (("start_dim", start_dim), ("end_dim", end_dim)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise ParameterError("Flatten", name, v, "an integer")
        if step_mode not in ("s", "m"):
            raise StepModeError(f"Flatten.step_mode must be 's' or 'm', got {step_mode!r}")
        self.start_dim, self.end_dim, self.step_mode = start_dim, end_dim, step_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "s":
            return x.flatten(self.start_dim, self.end_dim)
        if x.dim() < 2:
            raise ShapeError("Flatten", f"step mode 'm' expects [T, B, ...], got {tuple(x.shape)}")
        T, B = x.shape[:2]
        return x.flatten(0, 1).flatten(self.start_dim, self.end_dim).unflatten(0, (T, B))

    def get_config(self) -> dict:
        return {"start_dim": self.start_dim, "end_dim": self.end_dim, "step_mode": self.step_mode}

    @classmethod
    def from_config(cls, config: dict) -> "Flatten":
        return cls(**config)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}, step_mode={self.step_mode!r}"


@savable("SpikingSequential")
class SpikingSequential(nn.Sequential):
    """:class:`torch.nn.Sequential` of savable modules, with state and step-mode helpers.

    Shape: that of its layers ('m' mode: [T, B, ...] -> [T, B, ...]).

    Examples:
        >>> net = SpikingSequential(Linear(784, 100), LIF(step_mode="m"), Linear(100, 10), LIF(step_mode="m"))
        >>> out = net(torch.rand(20, 8, 784))   # [20, 8, 10]
        >>> net.reset()                         # before the next sequence
    """

    def reset(self) -> None:
        """Forget the state of every neuron."""
        reset_net(self)

    def set_step_mode(self, mode: str) -> "SpikingSequential":
        """Set the step mode of every layer that has one."""
        set_step_mode(self, mode)
        return self

    def get_config(self) -> dict:
        return {"layers": [module_spec(m, node=f"SpikingSequential.layers[{i}]") for i, m in enumerate(self)]}

    @classmethod
    def from_config(cls, config: dict) -> "SpikingSequential":
        layers = config.get("layers")
        if not isinstance(layers, list) or set(config) != {"layers"}:
            raise ParameterError("SpikingSequential", "config", config, "an object {'layers': [spec, ...]}")
        return cls(*(build_module(s, node=f"SpikingSequential.layers[{i}]") for i, s in enumerate(layers)))
