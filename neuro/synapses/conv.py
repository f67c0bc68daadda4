r"""2-D convolution synapse with event-driven propagation.

:math:`y = W \star x + b` (cross-correlation, as :class:`torch.nn.Conv2d`). At low input density each
active input pixel scatters its weight slice ``W[:, c, :, :]`` into the output window it reaches,
so inactive pixels cost nothing; at high density a dense convolution runs. Backward uses the dense
gradient formulas. Both paths agree to float tolerance.

Shape: 's' mode x [B, C, H, W] -> [B, C_out, H', W']; 'm' mode x [T, B, C, H, W] -> [T, B, C_out, H', W'].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import ParameterError, ShapeError, StepModeError
from ..core.loop import check_dtype
from .linear import DEFAULT_SWITCH_DENSITY, check_switch_density, density, dtype_from_name, dtype_name, reject_unknown


def _pair(owner, name, v):
    v = (v, v) if isinstance(v, int) else tuple(v)
    if len(v) != 2 or not all(isinstance(a, int) and a >= (1 if name != "padding" else 0) for a in v):
        raise ParameterError(owner, name, v, "an int or a pair of ints" + (" >= 0" if name == "padding" else " >= 1"))
    return v


def conv2d_events(x, weight, bias, stride, padding):
    """Scatter form of conv2d: only nonzero input pixels are visited. Shape: [B, C, H, W] -> [B, O, H', W']."""
    B, C, H, W = x.shape
    O, _, kh, kw = weight.shape
    sh, sw = stride
    ph, pw = padding
    OH, OW = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    b, c, iy, ix = x.nonzero(as_tuple=True)                    # [E] each
    xv = x[b, c, iy, ix]
    ky = torch.arange(kh).view(1, kh, 1)
    kx = torch.arange(kw).view(1, 1, kw)
    ny = iy.view(-1, 1, 1) + ph - ky                            # oy * sh, [E, kh, 1]
    nx = ix.view(-1, 1, 1) + pw - kx                            # ox * sw, [E, 1, kw]
    ok = (ny >= 0) & (ny % sh == 0) & (ny // sh < OH) & (nx >= 0) & (nx % sw == 0) & (nx // sw < OW)
    e, a, q = ok.nonzero(as_tuple=True)                         # valid (event, ky, kx)
    oy, ox = ny[e, a, 0] // sh, nx[e, 0, q] // sw
    contrib = weight[:, c[e], a, q] * xv[e]                      # [O, V]
    base = (b[e] * O * OH + oy) * OW + ox                        # flat index at channel 0
    flat = base.unsqueeze(0) + (torch.arange(O) * OH * OW).unsqueeze(1)  # [O, V]
    y = torch.zeros(B * O * OH * OW, dtype=x.dtype)
    y.index_add_(0, flat.reshape(-1), contrib.reshape(-1))
    y = y.view(B, O, OH, OW)
    if bias is not None:
        y += bias.view(1, O, 1, 1)
    return y


class _EventConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return conv2d_events(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = torch.nn.grad.conv2d_input(x.shape, weight, gy, ctx.stride, ctx.padding)
        if ctx.needs_input_grad[1]:
            gw = torch.nn.grad.conv2d_weight(x, weight.shape, gy, ctx.stride, ctx.padding)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = gy.sum((0, 2, 3))
        return gx, gw, gb, None, None


class Conv2d(nn.Module):
    """Convolution synapse; parameters as :class:`torch.nn.Conv2d` (groups=1, dilation=1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, switch_density: float = DEFAULT_SWITCH_DENSITY, step_mode: str = "s"):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(v, int) or v < 1:
                raise ParameterError("Conv2d", name, v, "an integer >= 1")
        ref = nn.Conv2d(in_channels, out_channels, _pair("Conv2d", "kernel_size", kernel_size),
                        _pair("Conv2d", "stride", stride), _pair("Conv2d", "padding", padding), bias=bias)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = ref.kernel_size, ref.stride, ref.padding
        self.weight, self.bias = ref.weight, ref.bias
        self.switch_density = check_switch_density("Conv2d", switch_density)
        if step_mode not in ("s", "m"):
            raise StepModeError(f"Conv2d.step_mode must be 's' or 'm', got {step_mode!r}")
        self.step_mode = step_mode

    # -- saving (the neuro.io protocol) ----------------------------------------------------------
    def get_config(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding),
                "bias": self.bias is not None, "switch_density": self.switch_density, "step_mode": self.step_mode,
                "dtype": dtype_name(self.weight.dtype)}

    @classmethod
    def from_config(cls, config: dict) -> "Conv2d":
        c = dict(config)
        dtype = dtype_from_name("Conv2d", c.pop("dtype", "float32"))
        layer = cls(c.pop("in_channels"), c.pop("out_channels"), c.pop("kernel_size"), stride=c.pop("stride", 1),
                    padding=c.pop("padding", 0), bias=c.pop("bias", True),
                    switch_density=c.pop("switch_density", DEFAULT_SWITCH_DENSITY), step_mode=c.pop("step_mode", "s"),
                    **reject_unknown("Conv2d", c))
        return layer.to(dtype)

    def _conv(self, x):
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ShapeError("Conv2d", f"expected [B, {self.in_channels}, H, W], got {tuple(x.shape)}")
        check_dtype("Conv2d", x)
        if x.device.type != "cpu" or density(x) >= self.switch_density:
            return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
        return _EventConv2d.apply(x.contiguous(), self.weight, self.bias, self.stride, self.padding)

    def forward(self, x):
        if self.step_mode == "s":
            return self._conv(x)
        if x.dim() != 5:
            raise StepModeError(f"Conv2d in step mode 'm' expects [T, B, C, H, W], got {tuple(x.shape)}")
        T, B = x.shape[:2]
        return self._conv(x.flatten(0, 1)).unflatten(0, (T, B))

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, step_mode={self.step_mode!r}")
