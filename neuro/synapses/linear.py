r"""Dense linear synapse with event-driven propagation.

:math:`y = x W^\top + b`. When the fraction of nonzero inputs is below ``switch_density``, only the
rows of :math:`W^\top` (columns of :math:`W`) of active inputs are read, and the weight gradient
touches only those columns too; above it, a dense matmul runs. Both paths give the same result to
float tolerance. The default switch point was measured with :func:`neuro.synapses.switch.measure_switch_density`
(``neuro bench switch``); set it per layer with ``switch_density`` (0 = always dense, 1 = always event).

Shape: x [*, in_features] -> [*, out_features] (any leading axes, so 's' and 'm' step modes both work).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import ParameterError, ShapeError
from ..core.loop import check_dtype
from .kernels import get_kernels

# Measured with the native kernels on a 2-core x86-64 CPU (`neuro bench switch`, neuro/synapses/switch.py):
# forward and weight-gradient crossovers lie at 0.18-0.28 for layers 784-2048 wide (W1 layer 1: 0.27
# forward, 0.18 weight gradient), so 0.2.
DEFAULT_SWITCH_DENSITY = 0.2
# Below this many outputs the dense product wins at every density (W1 layer 2, 1000 -> 10: 4.5 ms event
# vs 2.3 ms dense), since a gathered row is too short to amortise the gather.
EVENT_MIN_OUT_FEATURES = 64


def check_switch_density(owner: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ParameterError(owner, "switch_density", value, "a number in [0, 1]")
    return float(value)


def check_finite(owner: str, name: str, t: torch.Tensor) -> None:
    if not torch.isfinite(t).all():
        bad = t[~torch.isfinite(t)].flatten()[0].item()
        raise ParameterError(owner, name, bad, "finite (no NaN or Inf entries)")


_FLOAT_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def dtype_name(dtype: torch.dtype) -> str:
    """'float32' for torch.float32 (the spelling of saved configs)."""
    return str(dtype).replace("torch.", "")


def dtype_from_name(owner: str, name) -> torch.dtype:
    if name not in _FLOAT_DTYPES:
        raise ParameterError(owner, "dtype", name, "one of " + ", ".join(_FLOAT_DTYPES))
    return _FLOAT_DTYPES[name]


def reject_unknown(owner: str, rest: dict) -> dict:
    """Raise ParameterError for the first key left over in a config; returns {} otherwise."""
    if rest:
        key = sorted(rest)[0]
        raise ParameterError(owner, key, rest[key], "a known config key")
    return {}


def density(x: torch.Tensor, kernels=None) -> float:
    """Fraction of nonzero entries (counted by the kernel set when it has a faster count)."""
    n = x.numel()
    if not n:
        return 0.0
    count = getattr(kernels, "count_nonzero", None)
    return (count(x) if count is not None else float(torch.count_nonzero(x))) / n


class _EventLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2d, weight, bias, kernels, wt):
        y = kernels.rows_matmul(x2d, wt, bias)  # [R, N]; wt = weight^T [K, N]
        ctx.save_for_backward(x2d, weight)
        ctx.kernels, ctx.has_bias = kernels, bias is not None
        return y

    @staticmethod
    def backward(ctx, gy):
        x2d, weight = ctx.saved_tensors
        gy = gy.contiguous()
        gx = gy @ weight if ctx.needs_input_grad[0] else None                   # [R, K]
        gw = ctx.kernels.outer_accumulate(x2d, gy).t() if ctx.needs_input_grad[1] else None  # [N, K]
        gb = gy.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None, None


def event_linear(x2d: torch.Tensor, weight: torch.Tensor, bias, kernels, wt=None) -> torch.Tensor:
    """Event-driven :math:`x W^T + b`. Shape: x2d [R, K], weight [N, K] -> [R, N].

    ``wt``: a contiguous copy of ``weight.t()`` if the caller keeps one (it must hold the same values)."""
    if wt is None:
        wt = weight.detach().t().contiguous()
    return _EventLinear.apply(x2d.contiguous(), weight, bias, kernels, wt)


class Linear(nn.Module):
    """Fully connected synapse; parameters as :class:`torch.nn.Linear` (``weight`` [out, in], ``bias``).

    Args:
        in_features, out_features: sizes.
        bias: learnable bias.
        switch_density: below this input density the event path runs.
        kernels: kernel set name ('native', 'torch'); None picks the fastest built.

    Examples:
        >>> fc = Linear(784, 1000)
        >>> y = fc((torch.rand(100, 64, 784) < 0.1).float())  # [100, 64, 1000]
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 switch_density: float = DEFAULT_SWITCH_DENSITY, kernels: str | None = None,
                 dtype: torch.dtype | None = None):
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ParameterError("Linear", name, v, "an integer >= 1")
        self.in_features, self.out_features = in_features, out_features
        self.switch_density = check_switch_density("Linear", switch_density)
        self.kernels = get_kernels(kernels)
        self.weight = nn.Parameter(torch.empty(out_features, in_features, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(out_features, dtype=dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # same init as torch.nn.Linear
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_weights(cls, weight: torch.Tensor, bias: torch.Tensor | None = None, **kw) -> "Linear":
        """A layer holding copies of ``weight`` [out, in] and ``bias`` [out]; rejects NaN/Inf."""
        weight = torch.as_tensor(weight)
        if weight.dim() != 2:
            raise ShapeError("Linear.from_weights", f"weight must be 2-D [out, in], got {tuple(weight.shape)}")
        check_finite("Linear", "weight", weight)
        if bias is not None:
            bias = torch.as_tensor(bias)
            if bias.shape != (weight.shape[0],):
                raise ShapeError("Linear.from_weights", f"bias shape {tuple(bias.shape)} != ({weight.shape[0]},)")
            check_finite("Linear", "bias", bias)
        layer = cls(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype, **kw)
        with torch.no_grad():
            layer.weight.copy_(weight)
            if bias is not None:
                layer.bias.copy_(bias)
        return layer

    # -- saving (the neuro.io protocol) ----------------------------------------------------------
    def get_config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None,
                "switch_density": self.switch_density, "dtype": dtype_name(self.weight.dtype)}

    @classmethod
    def from_config(cls, config: dict) -> "Linear":
        c = dict(config)
        dtype = dtype_from_name("Linear", c.pop("dtype", "float32"))
        return cls(c.pop("in_features"), c.pop("out_features"), bias=c.pop("bias", True),
                   switch_density=c.pop("switch_density", DEFAULT_SWITCH_DENSITY), dtype=dtype,
                   **reject_unknown("Linear", c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ShapeError("Linear", f"input has {x.shape[-1]} features, layer expects {self.in_features}")
        check_dtype("Linear", x)
        if (x.device.type != "cpu" or self.out_features < EVENT_MIN_OUT_FEATURES
                or density(x, self.kernels) >= self.switch_density):
            return F.linear(x, self.weight, self.bias)
        lead = x.shape[:-1]
        y = event_linear(x.reshape(-1, self.in_features), self.weight, self.bias, self.kernels, self._weight_t())
        return y.view(*lead, self.out_features)

    def _weight_t(self) -> torch.Tensor:
        """weight^T [in, out], contiguous, cached until the weight changes (its version counter moves)."""
        w = self.weight
        key = (w.data_ptr(), w._version, w.dtype)
        if getattr(self, "_wt_key", None) != key:
            self._wt = w.detach().t().contiguous()
            self._wt_key = key
        return self._wt

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, switch_density={self.switch_density}")
