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
* :func:`widen_bias`: ``y.to(float64)`` plus the bias at the first step; :func:`add_bias32`: the bias
  added in float32 when that is exact;
* :func:`running_sum_narrow`: ``cumsum(x, 0, dtype=float64).to(float32)`` without the float64 array;
* :func:`window_sum`: ``x.sum(0, dtype=float64)`` of a float32 train without a float64 copy;
* :func:`scan_train`: a spike train's running sums in float32 and the magnitudes that bound its
  products (see :class:`~neuro.converters.spiking_ops.SpikingMatMul`); :func:`step_diff32`;
* :func:`add_wide`: ``x + a`` for a float64 ``x`` (the residual stream) and a float32 or float64 ``a``;
* :func:`encode`: ``bit_planes(quantize_codes(a, step, T), T) * step`` (the bit-serial encoder);
* :func:`spike_matmul`: one step of an event-driven synapse (the weight rows of the spiking inputs).

Outputs are fresh tensors from :func:`buffer`. (A pool that handed buffers out again once nothing
referred to them saved about 6 % at T = 8 and nothing at T = 16 on the bundled GPT; it needed a private
torch call to count storage references and kept memory after the run, so it was left out.)
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


def buffer(shape, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised output tensor (``torch.empty``): the one place the fused passes allocate."""
    return torch.empty(tuple(shape), dtype=dtype)


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _columns(fn, x: torch.Tensor, o: torch.Tensor, o2: Optional[torch.Tensor] = None, g: float = 0.0):
    """Runs the column pass ``fn`` of ``_spiking`` on ``x`` [T, ...] (as [T, N]) into ``o`` (and ``o2``)."""
    return fn(_CODE[x.dtype], x.shape[0], x[0].numel() if x.dim() > 1 else 1, x.data_ptr(), g, o.data_ptr(),
              0 if o2 is None else o2.data_ptr(), _threads())


def _ok(x: torch.Tensor) -> bool:
    return (available and x.device.type == "cpu" and x.layout == torch.strided and x.dim() >= 1
            and x.dtype in _CODE and x.numel() >= MIN_ELEMENTS and x.is_contiguous())


def running_sum(x: torch.Tensor) -> Optional[torch.Tensor]:
    """``cumsum(x, 0)`` in float64. Shape: [T, ...] -> [T, ...] float64."""
    if not _ok(x):
        return None
    r = buffer(x.shape, torch.float64)
    _columns(_spiking.running_sum, x, r)
    return r


def grid_diff(x: torch.Tensor, grid: float, inplace: bool = False) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """``(F, Y)``: ``F = g round(x / g)`` (ties to even, in ``x``'s dtype, then float64) and its step
    differences ``Y``; ``inplace``: ``F`` overwrites a float64 ``x``. Shape: [T, ...] -> ([T, ...], [T, ...]) float64."""
    if not _ok(x):
        return None
    f = x if inplace and x.dtype == torch.float64 else buffer(x.shape, torch.float64)
    y = buffer(x.shape, torch.float64)
    _columns(_spiking.grid_diff, x, f, y, float(grid))
    return f, y


def grid_diff32(x: torch.Tensor, grid: float, inplace: bool = False) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`grid_diff` with float32 ``(F, Y)``, or None when they might not be exact (some ``|x/g|``
    rounds to 2^23 or more, or ``g`` is outside [2^-126, 2^100]); ``inplace``: ``F`` overwrites a
    float32 ``x`` (which is then spoilt when None is returned). Shape: [T, ...] -> ([T, ...], [T, ...])."""
    g = float(grid)
    if not _ok(x) or not 2.0 ** -126 <= g <= 2.0 ** 100:
        return None
    f = x if inplace and x.dtype == torch.float32 else buffer(x.shape, torch.float32)
    y = buffer(x.shape, torch.float32)
    exact = _columns(_spiking.grid_diff32, x, f, y, g)
    return (f, y) if exact else None


def step_diff(f: torch.Tensor) -> Optional[torch.Tensor]:
    """``Y_t = F_t - F_{t-1}``, ``Y_0 = F_0`` for a float64 ``F``. Shape: [T, ...] -> [T, ...]."""
    if not _ok(f) or f.dtype != torch.float64:
        return None
    y = buffer(f.shape, f.dtype)
    _columns(_spiking.step_diff, f, y)
    return y


def widen_bias(y: torch.Tensor, bias: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """``y.to(float64)`` with ``bias`` added at the first step. Shape: y [T, ..., N] float32, bias [N]
    -> [T, ..., N] float64."""
    if not _ok(y) or y.dtype != torch.float32 or y.dim() < 2:
        return None
    if bias is not None and (bias.dtype != torch.float64 or not bias.is_contiguous()
                             or bias.shape != (y.shape[-1],)):
        return None
    out = buffer(y.shape, torch.float64)
    N = y.shape[-1]
    _spiking.widen_bias(y.shape[0], y[0].numel() // N, N, y.data_ptr(), 0 if bias is None else bias.data_ptr(),
                        out.data_ptr(), _threads())
    return out


def add_bias32(y: torch.Tensor, bias: torch.Tensor) -> Optional[bool]:
    """Adds ``bias`` to the float32 ``y`` in place when every sum (in float64) is a float32 number, as
    ``first = y.double() + bias; y[...] = first.float()`` when ``torch.equal(first.float().double(), first)``;
    returns whether it did (None: not run). Shape: y [..., N] float32, bias [N] float64."""
    if not (available and y.dtype == torch.float32 and y.is_contiguous() and y.dim() >= 1 and y.device.type == "cpu"
            and bias.dtype == torch.float64 and bias.is_contiguous() and tuple(bias.shape) == (y.shape[-1],)):
        return None
    N = y.shape[-1]
    return _spiking.add_bias32(y.numel() // max(N, 1), N, y.data_ptr(), bias.data_ptr())


def running_sum_narrow(x: torch.Tensor) -> Optional[torch.Tensor]:
    """``cumsum(x, 0, dtype=float64).to(float32)``: the sums in float64, one rounding each.
    Shape: [T, ...] -> [T, ...] float32."""
    if not _ok(x):
        return None
    r = buffer(x.shape, torch.float32)
    _columns(_spiking.running_sum_narrow, x, r)
    return r


def encode(a: torch.Tensor, step: torch.Tensor, bits: int) -> Optional[torch.Tensor]:
    """The encoder's spikes for window sums ``a`` (float64) on the per-channel ``step`` (float64,
    broadcast against ``a``): ``sign(k) b_{T-1-t}(|k|) 2^{T-1-t} step`` with
    ``k = sign(a) min(floor(|a|/step + 1/2), 2^T - 1)``. The result carries ``_active_channels``
    [bits, C] (bool): whether channel ``c`` (the last axis) spikes anywhere at step ``t``, and
    ``_step_spikes`` (a list of ``bits`` ints): how many spikes step ``t`` has.
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
    out = buffer((bits, *shape), torch.float32)
    ors, counts = torch.empty(C, dtype=torch.int32), torch.empty(bits, dtype=torch.int64)
    _spiking.encode(bits, a.numel(), C, a.data_ptr(), s.data_ptr(), smode, out.data_ptr(), ors.data_ptr(),
                    counts.data_ptr(), _threads())
    shifts = torch.arange(bits - 1, -1, -1, dtype=torch.int32)[:, None]          # [T, 1]
    out._active_channels = ((ors[None, :] >> shifts) & 1).bool()                  # [T, C]: any spike at step t
    out._step_spikes = counts.tolist()                                            # [T]: spikes at step t
    return out


def spike_matmul(s: torch.Tensor, wt: torch.Tensor, out: torch.Tensor) -> bool:
    """``out = s @ wt`` from the weight rows of the nonzero entries of ``s`` only (float32; equal to the
    dense product when every partial sum is exact in float32, which the caller guarantees). False when
    not run (no extension, or not dense float32 CPU tensors). Shape: s [R, K], wt [K, N], out [R, N]."""
    if not (available and all(t.dtype == torch.float32 and t.is_contiguous() and t.device.type == "cpu" and t.dim() == 2
                              for t in (s, wt, out))
            and s.shape[1] == wt.shape[0] and tuple(out.shape) == (s.shape[0], wt.shape[1])):
        return False
    _spiking.spike_matmul(s.shape[0], s.shape[1], wt.shape[1], s.data_ptr(), wt.data_ptr(), out.data_ptr(),
                          _threads())
    return True


def add_wide(x: torch.Tensor, a: torch.Tensor) -> Optional[torch.Tensor]:
    """``x + a`` for a float64 ``x`` and a float32 or float64 ``a`` of the same shape (``a`` widened
    exactly, one rounding per sum, as PyTorch's type promotion). Shape: [...], [...] -> [...] float64."""
    if not (_ok(x) and _ok(a)) or x.dtype != torch.float64 or x.shape != a.shape:
        return None
    out = buffer(x.shape, torch.float64)
    _spiking.add_wide(_CODE[a.dtype], 1, a.numel(), a.data_ptr(), 0.0, out.data_ptr(), x.data_ptr(), _threads())
    return out


def window_sum(x: torch.Tensor) -> Optional[torch.Tensor]:
    """``x.sum(0, dtype=float64)`` of a float32 train (exact on the dyadic grids of the converted
    models, so the order of the additions does not matter). Shape: [T, ...] -> [...] float64."""
    if not _ok(x) or x.dtype != torch.float32:
        return None
    w = buffer(x.shape[1:], torch.float64)
    _columns(_spiking.window_sum, x, w)
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
    bar = buffer(x.shape, torch.float32)
    u, pow2, top, rowmax = _spiking.scan_train(x.shape[0], x[0].numel() // K, K, x.data_ptr(), bar.data_ptr(),
                                               _threads())
    return bar, u, pow2, top, rowmax


def step_diff32(f: torch.Tensor) -> Optional[torch.Tensor]:
    """:func:`step_diff` of a float32 ``F`` in float32 (exact when the differences are float32 numbers,
    which the caller guarantees). Shape: [T, ...] -> [T, ...]."""
    if not _ok(f) or f.dtype != torch.float32:
        return None
    y = buffer(f.shape, f.dtype)
    _columns(_spiking.step_diff, f, y)
    return y
