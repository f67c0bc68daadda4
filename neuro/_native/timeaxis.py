r"""Fused time-axis passes of the converted spiking Transformer (compiled module ``_spiking``).

Each function takes tensors with a leading time axis ``[T, ...]`` and returns the same values as
the PyTorch expression it replaces in :mod:`neuro.converters.spiking_ops`, bit for bit (every
operation is one exact IEEE operation on dyadic values; see ``spiking.c``), in one pass over the
data instead of several. Each returns ``None`` when the compiled module is missing or the input is
not a dense CPU tensor of a supported dtype; the caller then runs its PyTorch expression.

* :func:`running_sum`: ``cumsum(x, 0, dtype=float64)``;
* :func:`grid_diff`: ``F = q_grid(x, g)`` (in ``x``'s precision, widened to float64) and
  ``Y_t = F_t - F_{t-1}``;
* :func:`grid_diff32`: the same with float32 outputs, when they are exact (every ``|x / g|`` rounds
  below 2^23, so ``F`` and its differences are float32 numbers);
* :func:`step_diff`: ``Y_t = F_t - F_{t-1}`` for a float64 ``F``;
* :func:`widen_bias`: ``y.to(float64)`` plus the bias at the first step;
* :func:`running_sum_narrow`: ``cumsum(x, 0, dtype=float64).to(float32)`` without the float64 array;
* :func:`window_sum`: ``x.sum(0, dtype=float64)`` of a float32 train without a float64 copy;
* :func:`scan_train`: a spike train's running sums in float32 and the magnitudes that bound its
  products (see :class:`~neuro.converters.spiking_ops.SpikingMatMul`); :func:`step_diff32`;
* :func:`encode`: ``bit_planes(quantize_codes(a, step, T), T) * step`` (the bit-serial encoder).
"""
from __future__ import annotations

from typing import Optional

import torch

try:
    from . import _spiking
except ImportError:  # pragma: no cover - depends on the build
    _spiking = None

available: bool = _spiking is not None

_CODE = {torch.float32: 0, torch.float64: 1}
MIN_ELEMENTS = 4096  # below this the PyTorch expressions are as fast (call overhead)


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _ok(x: torch.Tensor) -> bool:
    return (available and x.device.type == "cpu" and x.layout == torch.strided and x.dim() >= 1
            and x.dtype in _CODE and x.numel() >= MIN_ELEMENTS and x.is_contiguous())


def running_sum(x: torch.Tensor) -> Optional[torch.Tensor]:
    """``cumsum(x, 0)`` in float64. Shape: [T, ...] -> [T, ...] float64."""
    if not _ok(x):
        return None
    r = torch.empty(x.shape, dtype=torch.float64)
    _spiking.running_sum(_CODE[x.dtype], x.shape[0], x[0].numel(), x.data_ptr(), r.data_ptr(), _threads())
    return r


def grid_diff(x: torch.Tensor, grid: float, inplace: bool = False) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """``(F, Y)``: ``F = g round(x / g)`` (ties to even, in ``x``'s dtype, then float64) and its step
    differences ``Y``; ``inplace``: ``F`` overwrites a float64 ``x``. Shape: [T, ...] -> ([T, ...], [T, ...]) float64."""
    if not _ok(x):
        return None
    f = x if inplace and x.dtype == torch.float64 else torch.empty(x.shape, dtype=torch.float64)
    y = torch.empty(x.shape, dtype=torch.float64)
    _spiking.grid_diff(_CODE[x.dtype], x.shape[0], x[0].numel(), x.data_ptr(), float(grid), f.data_ptr(),
                       y.data_ptr(), _threads())
    return f, y


def grid_diff32(x: torch.Tensor, grid: float, inplace: bool = False) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`grid_diff` with float32 ``(F, Y)``, or None when they might not be exact (some ``|x/g|``
    rounds to 2^23 or more, or ``g`` is outside [2^-126, 2^100]); ``inplace``: ``F`` overwrites a
    float32 ``x`` (which is then spoilt when None is returned). Shape: [T, ...] -> ([T, ...], [T, ...])."""
    g = float(grid)
    if not _ok(x) or not 2.0 ** -126 <= g <= 2.0 ** 100:
        return None
    f = x if inplace and x.dtype == torch.float32 else torch.empty(x.shape, dtype=torch.float32)
    y = torch.empty(x.shape, dtype=torch.float32)
    exact = _spiking.grid_diff32(_CODE[x.dtype], x.shape[0], x[0].numel(), x.data_ptr(), g, f.data_ptr(),
                                 y.data_ptr(), _threads())
    return (f, y) if exact else None


def step_diff(f: torch.Tensor) -> Optional[torch.Tensor]:
    """``Y_t = F_t - F_{t-1}``, ``Y_0 = F_0`` for a float64 ``F``. Shape: [T, ...] -> [T, ...]."""
    if not _ok(f) or f.dtype != torch.float64:
        return None
    y = torch.empty_like(f)
    _spiking.step_diff(f.shape[0], f[0].numel(), f.data_ptr(), y.data_ptr(), _threads())
    return y


def widen_bias(y: torch.Tensor, bias: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """``y.to(float64)`` with ``bias`` added at the first step. Shape: y [T, ..., N] float32, bias [N]
    -> [T, ..., N] float64."""
    if not _ok(y) or y.dtype != torch.float32 or y.dim() < 2:
        return None
    if bias is not None and (bias.dtype != torch.float64 or not bias.is_contiguous()
                             or bias.shape != (y.shape[-1],)):
        return None
    out = torch.empty(y.shape, dtype=torch.float64)
    N = y.shape[-1]
    _spiking.widen_bias(y.shape[0], y[0].numel() // N, N, y.data_ptr(), 0 if bias is None else bias.data_ptr(),
                        out.data_ptr(), _threads())
    return out


def running_sum_narrow(x: torch.Tensor) -> Optional[torch.Tensor]:
    """``cumsum(x, 0, dtype=float64).to(float32)``: the sums in float64, one rounding each.
    Shape: [T, ...] -> [T, ...] float32."""
    if not _ok(x):
        return None
    r = torch.empty(x.shape, dtype=torch.float32)
    _spiking.running_sum_narrow(_CODE[x.dtype], x.shape[0], x[0].numel(), x.data_ptr(), r.data_ptr(), _threads())
    return r


def encode(a: torch.Tensor, step: torch.Tensor, bits: int) -> Optional[torch.Tensor]:
    """The encoder's spikes for window sums ``a`` (float64) on the per-channel ``step`` (float64,
    broadcast against ``a``): ``sign(k) b_{T-1-t}(|k|) 2^{T-1-t} step`` with
    ``k = sign(a) min(floor(|a|/step + 1/2), 2^T - 1)``. The result carries ``_active_channels``
    [bits, C] (bool): whether channel ``c`` (the last axis) spikes anywhere at step ``t``.
    Shape: [...] -> [bits, ...] float32."""
    if not available or a.dtype != torch.float64 or step.dtype != torch.float64 or a.device.type != "cpu" or \
            a.numel() * bits < MIN_ELEMENTS or not 1 <= bits <= 16:
        return None
    shape, C = a.shape, (a.shape[-1] if a.dim() else 1)
    if step.dim() > a.dim() or any(n not in (1, d) for n, d in zip(reversed(step.shape), reversed(shape))):
        return None                                                               # step would broadcast a
    if step.numel() == 1:
        smode, s = 2, step.reshape(1)
    elif step.dim() >= 1 and step.shape[-1] == C and step.numel() == C:
        smode, s = 1, step.reshape(C)                                            # one step per channel
    else:
        smode, s = 0, step.expand(shape)                                         # [...]
    a, s = a.contiguous(), s.contiguous()
    out = torch.empty((bits, *shape), dtype=torch.float32)
    ors = torch.empty(C, dtype=torch.int32)
    _spiking.encode(bits, a.numel(), C, a.data_ptr(), s.data_ptr(), smode, out.data_ptr(), ors.data_ptr(),
                    _threads())
    shifts = torch.arange(bits - 1, -1, -1, dtype=torch.int32)[:, None]          # [T, 1]
    out._active_channels = ((ors[None, :] >> shifts) & 1).bool()                  # [T, C]: any spike at step t
    return out


def window_sum(x: torch.Tensor) -> Optional[torch.Tensor]:
    """``x.sum(0, dtype=float64)`` of a float32 train (exact on the dyadic grids of the converted
    models, so the order of the additions does not matter). Shape: [T, ...] -> [...] float64."""
    if not _ok(x) or x.dtype != torch.float32:
        return None
    w = torch.empty(x.shape[1:], dtype=torch.float64)
    _spiking.window_sum(x.shape[0], x[0].numel(), x.data_ptr(), w.data_ptr(), _threads())
    return w



def scan_train(x: torch.Tensor) -> Optional[tuple[torch.Tensor, float, bool, float, float]]:
    """One pass over a float32 spike train ``x`` [T, ..., K]: ``(bar, u, pow2, top, rowmax)`` with
    ``bar`` the running sums (float64 sums rounded to float32), ``u`` the smallest nonzero ``|x|``
    (``inf`` when all are zero), ``pow2`` whether every nonzero ``|x|`` is a normal power of two,
    ``top = max sum_t |x_t|`` and ``rowmax`` the largest sum over the last axis of ``sum_t |x_t|``."""
    if not _ok(x) or x.dtype != torch.float32 or x.dim() < 2:
        return None
    K = x.shape[-1]
    if K == 0:
        return None
    bar = torch.empty_like(x)
    u, pow2, top, rowmax = _spiking.scan_train(x.shape[0], x[0].numel() // K, K, x.data_ptr(), bar.data_ptr(),
                                               _threads())
    return bar, u, pow2, top, rowmax


def step_diff32(f: torch.Tensor) -> Optional[torch.Tensor]:
    """:func:`step_diff` of a float32 ``F`` in float32 (exact when the differences are float32 numbers,
    which the caller guarantees). Shape: [T, ...] -> [T, ...]."""
    if not _ok(f) or f.dtype != torch.float32:
        return None
    y = torch.empty_like(f)
    _spiking.step_diff32(f.shape[0], f[0].numel(), f.data_ptr(), y.data_ptr(), _threads())
    return y
