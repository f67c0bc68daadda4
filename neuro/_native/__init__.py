r"""Compiled backend: event kernels, a fused multi-step LIF and a whole-run recurrent engine.

Three small C extension modules are built at install time (``setup.py``; no torch headers):

* ``_kernels``: products of a sparse input with a dense matrix (``rows_matmul``,
  ``outer_accumulate``; FMA allowed, equal to the dense products to float tolerance) and a fast
  ``count_nonzero``;
* ``_engine``: the fused LIF forward and backward, the recurrent engine, the counter-based RNG and
  the CSR kernels, compiled without FMA contraction so that they reproduce the PyTorch code bit for
  bit (the LIF forward, the recurrent run, the CSR products in TorchKernels' summation order).
* ``_spiking`` (wrapped by :mod:`neuro._native.timeaxis`): fused time-axis passes of the converted
  spiking Transformer, also without FMA contraction (bit for bit the PyTorch expressions they replace).

Importing this module registers, when the extension was built:

* the kernel set ``'native'`` (:class:`NativeKernels`, see :mod:`neuro.synapses.kernels`);
* the fused multi-step implementation of :func:`neuro.neurons.lif.lif_step` on CPU
  (:func:`fused_lif`, through :func:`neuro.core.loop.register_multistep`).

:func:`lif_recurrent_run` runs a recurrent LIF population for many steps in one call (benchmark
W2), and :func:`recurrent_engine` adapts it to :class:`neuro.models.recurrent.RecurrentNetwork`.
Threads: as many as ``torch.get_num_threads()``; every result is the same for any thread count.
When the extension is missing, ``available`` is False, nothing is registered and the package runs
on its PyTorch code.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from ..core.loop import register_multistep
from ..core.surrogate import ATan, Sigmoid, Triangle
from ..neurons.lif import LIFParams, LIFState, lif_step
from ..synapses.kernels import TorchKernels, register_kernels

try:
    from . import _engine, _kernels
except ImportError as exc:  # pragma: no cover - depends on the build
    _engine = _kernels = None
    BUILD_ERROR: Optional[str] = f"the compiled modules neuro._native._engine/_kernels are missing or broken ({exc})"
else:
    BUILD_ERROR = None

available: bool = _engine is not None and _kernels is not None

__all__ = ["NativeKernels", "available", "fused_lif", "lif_recurrent_run", "recurrent_engine", "uniform",
           "binomial"]

_DTYPE_CODE = {torch.float32: 0, torch.float64: 1}
_INT32_MAX = 2**31 - 1


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _require(what: str) -> None:
    if not available:
        raise ImportError(f"{what} needs the compiled extension neuro._native, which was not built "
                          f"({BUILD_ERROR}); reinstall with a C compiler (gcc) available")


def _dtype_code(*tensors: torch.Tensor) -> Optional[int]:
    """The C dtype code when every tensor is a dense CPU tensor of one supported float dtype."""
    dt = tensors[0].dtype
    for t in tensors:
        if t.dtype != dt or t.device.type != "cpu" or t.layout != torch.strided:
            return None
    return _DTYPE_CODE.get(dt)


def _index(t: torch.Tensor) -> Optional[torch.Tensor]:
    if t.device.type != "cpu" or t.layout != torch.strided or t.dtype not in (torch.int64, torch.int32):
        return None
    return t.to(torch.int64).contiguous()


# ---------------------------------------------------------------------------------------- kernels
class NativeKernels:
    """The kernel set ``'native'``: C loops over the nonzero inputs, parallel over rows or inputs.

    float32 and float64 CPU tensors; anything else goes to :class:`~neuro.synapses.kernels.TorchKernels`.
    """

    name = "native"

    @staticmethod
    def count_nonzero(x: torch.Tensor) -> int:
        """Number of nonzero entries (NaN counts), in one parallel pass; torch.count_nonzero otherwise."""
        code = _dtype_code(x)
        if code is None or not x.is_contiguous():
            return int(torch.count_nonzero(x))
        return _kernels.count_nonzero(code, x.numel(), x.data_ptr(), _threads()) if x.numel() else 0

    @staticmethod
    def column_activity(x: torch.Tensor):
        """Per step of x [T, R, F]: (cols int64 [T, F] nonzero counts over R, amax float64 [T] of |x|,
        same bool [T]: every nonzero |x| equals amax), in one parallel pass; ``None`` when x does not
        suit the compiled kernel (the caller then counts with torch)."""
        code = _dtype_code(x)
        if code is None or x.dim() != 3 or not x.is_contiguous():
            return None
        T, R, F = x.shape
        cols = torch.empty(T, F, dtype=torch.int64)
        amax = torch.empty(T, dtype=torch.float64)
        same = torch.empty(T, dtype=torch.uint8)
        if T:
            _kernels.column_activity(code, T, R, F, x.data_ptr(), cols.data_ptr(), amax.data_ptr(), same.data_ptr(),
                                     _threads())
        return cols, amax, same.bool()

    @staticmethod
    def rows_matmul(x: torch.Tensor, wt: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Shape: x [R, K], wt [K, N] (any strides: ``weight.t()`` needs no copy), bias [N] -> [R, N]."""
        code = _dtype_code(x, wt) if bias is None else _dtype_code(x, wt, bias)
        if (code is None or x.dim() != 2 or wt.dim() != 2 or x.shape[1] != wt.shape[0] or x.shape[1] > _INT32_MAX
                or (bias is not None and tuple(bias.shape) != (wt.shape[1],))):
            y = TorchKernels.rows_matmul(x, wt)
            return y if bias is None else y + bias
        (R, K), N = x.shape, wt.shape[1]
        if R == 0 or K == 0 or N == 0:
            y = torch.zeros(R, N, dtype=x.dtype)
            return y if bias is None else y + bias
        x = x.contiguous()
        b = None if bias is None else bias.detach().contiguous()
        y = torch.empty(R, N, dtype=x.dtype)
        _kernels.rows_matmul(code, R, K, N, x.data_ptr(), wt.data_ptr(), wt.stride(0), wt.stride(1),
                             0 if b is None else b.data_ptr(), y.data_ptr(), _threads())
        return y

    @staticmethod
    def outer_accumulate(x: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
        """Shape: x [R, K], gy [R, N] -> [K, N]."""
        code = _dtype_code(x, gy)
        if code is None or x.dim() != 2 or gy.dim() != 2 or x.shape[0] != gy.shape[0] or x.shape[0] > _INT32_MAX:
            return TorchKernels.outer_accumulate(x, gy)
        (R, K), N = x.shape, gy.shape[1]
        if R == 0 or K == 0 or N == 0:
            return torch.zeros(K, N, dtype=x.dtype)
        x, gy = x.contiguous(), gy.contiguous()
        g = torch.empty(K, N, dtype=x.dtype)
        _kernels.outer_accumulate(code, R, K, N, x.data_ptr(), gy.data_ptr(), g.data_ptr(), _threads())
        return g

    @staticmethod
    def csr_matmul(x, indptr, indices, values, n_out):
        """Shape: x [R, K], CSR by input (K rows) -> [R, n_out]."""
        code = _dtype_code(x, values)
        ip, ix = _index(indptr), _index(indices)
        if code is None or ip is None or ix is None or x.dim() != 2 or ip.numel() != x.shape[1] + 1:
            return TorchKernels.csr_matmul(x, indptr, indices, values, n_out)
        R, K = x.shape
        x, values = x.contiguous(), values.contiguous()
        y = torch.empty(R, n_out, dtype=x.dtype)
        if R and n_out:
            _engine.csr_matmul(code, R, K, n_out, x.data_ptr(), ip.data_ptr(), ix.data_ptr(), values.data_ptr(),
                               y.data_ptr(), _threads())
        return y

    @staticmethod
    def delay_ring_steps(x, ring, t0, indptr, indices, values):
        """C event-driven delayed steps through the ring buffer, fused (see
        :func:`neuro.synapses.delay.delay_event_steps`). Shape: x [C, B, K], ring [B, 2L, N] (updated
        in place) -> y [C, B, N]; ``None`` when the arguments do not suit the compiled kernel."""
        code = _dtype_code(x, values, ring)
        ip, ix = _index(indptr), _index(indices)
        if (code is None or ip is None or ix is None or x.dim() != 3 or ring.dim() != 3 or not ring.is_contiguous()
                or ip.numel() != x.shape[2] + 1 or ring.requires_grad):
            return None
        (C, B, K), L, N = x.shape, ring.shape[1] // 2, ring.shape[2]
        x, values = x.contiguous(), values.contiguous()
        y = torch.empty(C, B, N, dtype=ring.dtype)
        if C and B:
            _engine.delay_ring(code, C, B, K, N, L, int(t0), x.data_ptr(), ip.data_ptr(), ix.data_ptr(),
                               values.data_ptr(), ring.data_ptr(), y.data_ptr(), _threads())
        return y

    @staticmethod
    def csr_value_grad(x, gy, indptr, indices):
        """Shape: x [R, K], gy [R, N] -> [nnz]."""
        code = _dtype_code(x, gy)
        ip, ix = _index(indptr), _index(indices)
        if (code is None or ip is None or ix is None or x.dim() != 2 or gy.dim() != 2
                or ip.numel() != x.shape[1] + 1 or x.shape[0] > _INT32_MAX):
            return TorchKernels.csr_value_grad(x, gy, indptr, indices)
        (R, K), N = x.shape, gy.shape[1]
        g = torch.zeros(ix.numel(), dtype=gy.dtype)
        if R and K and ix.numel():
            x, gy = x.contiguous(), gy.contiguous()
            _engine.csr_value_grad(code, R, K, N, x.data_ptr(), gy.data_ptr(), ip.data_ptr(), ix.data_ptr(),
                                   g.data_ptr(), _threads())
        return g

    @staticmethod
    def csr_input_grad(gy, indptr, indices, values, K):
        """Shape: gy [R, N] -> [R, K]."""
        code = _dtype_code(gy, values)
        ip, ix = _index(indptr), _index(indices)
        if code is None or ip is None or ix is None or gy.dim() != 2 or ip.numel() != K + 1:
            return TorchKernels.csr_input_grad(gy, indptr, indices, values, K)
        R, N = gy.shape
        gx = torch.empty(R, K, dtype=gy.dtype)
        if R and K:
            gy, values = gy.contiguous(), values.contiguous()
            _engine.csr_input_grad(code, R, K, N, gy.data_ptr(), ip.data_ptr(), ix.data_ptr(), values.data_ptr(),
                                   gx.data_ptr(), _threads())
        return gx


# ------------------------------------------------------------------------------------ fused LIF
# surrogate class -> (C kind, its two constants); subclasses are declined (they may change grad)
_SURROGATES = {
    ATan: lambda s: (0, float(s.alpha), 0.0),
    Sigmoid: lambda s: (1, float(s.alpha), 0.0),
    Triangle: lambda s: (2, float(s.gamma), float(s.eps)),
}


def _lif_tuple(p: LIFParams, kind: int = 0, a: float = 0.0, b: float = 0.0) -> tuple:
    hard = p.v_reset is not None
    return (float(p.decay_factor), float(p.v_rest), float(p.v_th), float(p.v_reset) if hard else 0.0,
            int(bool(p.decay_input)), int(hard), int(bool(p.strict_threshold)), int(bool(p.detach_reset)),
            kind, a, b)


def _lif_forward(x: torch.Tensor, v0: torch.Tensor, lt: tuple, keep_h: bool):
    """x [T, ...] contiguous -> (spikes [T, ...], v_final [...], h [T, ...] or None)."""
    T, M = x.shape[0], v0.numel()
    v = v0.detach().contiguous().clone()
    s = torch.empty_like(x)
    h = torch.empty_like(x) if keep_h else None
    _engine.lif_forward(_DTYPE_CODE[x.dtype], T, M, x.data_ptr(), v.data_ptr(), s.data_ptr(),
                        0 if h is None else h.data_ptr(), lt, _threads())
    return s, v, h


class _FusedLIF(torch.autograd.Function):
    """lif_step over [T, ...] in C. Saves only its inputs: backward recomputes the membrane."""

    @staticmethod
    def forward(ctx, x_seq, v0, lt):
        x, v0 = x_seq.contiguous(), v0.contiguous()
        s, v, _ = _lif_forward(x, v0, lt, keep_h=False)
        ctx.save_for_backward(x, v0)
        ctx.lt = lt
        return s, v

    @staticmethod
    @once_differentiable
    def backward(ctx, g_s, g_v):
        x, v0 = ctx.saved_tensors
        T, M = x.shape[0], v0.numel()
        g_s = g_s.contiguous()
        g_v = g_v.contiguous().clone()  # in: dL/dv_T; out: dL/dv_0
        g_x = torch.empty_like(x)
        _engine.lif_backward(_DTYPE_CODE[x.dtype], T, M, x.data_ptr(), v0.data_ptr(), g_s.data_ptr(), g_v.data_ptr(),
                             g_x.data_ptr(), ctx.lt, _threads())
        return (g_x if ctx.needs_input_grad[0] else None, g_v if ctx.needs_input_grad[1] else None, None)


def fused_lif(x_seq: torch.Tensor, state: LIFState, params: LIFParams, surrogate):
    """Multi-step :func:`~neuro.neurons.lif.lif_step` in C (registered for CPU).

    Same spikes and final membrane as the generic loop bit for bit; gradients (BPTT through the
    membrane and, unless ``detach_reset``, through the reset) equal to float rounding. Returns None
    (the generic loop runs) for an unknown surrogate, another dtype or device, or mismatched shapes.

    Shape: x_seq [T, ...], state.v [...] -> (spikes [T, ...], LIFState(v [...])).
    """
    sg = _SURROGATES.get(type(surrogate))
    v0 = state.v if isinstance(state, tuple) and len(state) == 1 else None
    if (not available or sg is None or not isinstance(params, LIFParams) or not isinstance(v0, torch.Tensor)
            or x_seq.dim() < 1 or x_seq.shape[0] == 0 or _dtype_code(x_seq, v0) is None
            or tuple(v0.shape) != tuple(x_seq.shape[1:])):
        return None
    lt = _lif_tuple(params, *sg(surrogate))
    if torch.is_grad_enabled() and (x_seq.requires_grad or v0.requires_grad):
        s, v = _FusedLIF.apply(x_seq, v0, lt)
    else:
        s, v, _ = _lif_forward(x_seq.contiguous(), v0, lt, keep_h=False)
    return s, LIFState(v)


# --------------------------------------------------------------------------------- random numbers
_MASK64 = 0xFFFFFFFFFFFFFFFF


def uniform(seed: int, step: int, n: int) -> np.ndarray:
    """The C draws of :func:`neuro.core.random.uniform` (float64 [n]); equal bit for bit."""
    _require("uniform")
    out = np.empty(n, dtype=np.float64)
    if n:
        _engine.uniform(seed & _MASK64, step & _MASK64, n, out.ctypes.data)
    return out


def binomial(seed: int, step: int, n: int, cdf) -> np.ndarray:
    """The C counts of :func:`neuro.core.random.binomial` (int64 [n]); equal exactly."""
    _require("binomial")
    cdf = _check_cdf(cdf)
    out = np.empty(n, dtype=np.int64)
    if n:
        _engine.binomial(seed & _MASK64, step & _MASK64, n, cdf.ctypes.data, cdf.size, out.ctypes.data)
    return out


def _check_cdf(cdf) -> np.ndarray:
    cdf = np.ascontiguousarray(np.asarray(cdf, dtype=np.float64))
    if cdf.ndim != 1 or cdf.size == 0 or not np.all(np.diff(cdf) >= 0) or np.isnan(cdf).any():
        raise ValueError("drive cdf must be a non-empty, non-decreasing 1-D float64 table (binomial_cdf)")
    return cdf


# --------------------------------------------------------------------------- recurrent engine (W2)
_NEURONS_PER_THREAD = 2048  # below this many neurons per thread, a step is too short to share
def _as_tensor(a, dtype: torch.dtype, name: str) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))
    if t.is_floating_point() != dtype.is_floating_point:
        raise TypeError(f"lif_recurrent_run: {name} must be {'a float' if dtype.is_floating_point else 'an integer'} array")
    return t.detach().to(device="cpu", dtype=dtype).contiguous()


def lif_recurrent_run(v0, indptr, indices, weights, steps: int, params: LIFParams, drive=None,
                      record_v: bool = False, threads: Optional[int] = None):
    r"""Run a recurrent LIF population for ``steps`` steps in one call (float64, in C).

    Per step :math:`t`: ``acc = 0``; for each neuron j that spiked at step t-1 (ascending) and each
    synapse e of row j in order, ``acc[indices[e]] += weights[e]``; ``x = drive_t + acc``;
    :math:`(s, v) =` :func:`~neuro.neurons.lif.lif_step` ``(x, v)`` (``lif_charge`` then
    ``fire_and_reset``). Bit-identical to that loop in PyTorch.

    Args:
        v0: float64 [N] initial membrane.
        indptr, indices, weights: CSR by presynaptic neuron: int64 [N+1], int64 [nnz], float64 [nnz].
        steps: number of steps.
        params: LIFParams of the population.
        drive: None; ``("poisson", seed, cdf, weight)`` (``k * weight`` with ``k`` the count of
            :func:`neuro.core.random.binomial` ``(seed, t, N, cdf)``); ``("const", values [N])``;
            ``("given", values [steps, N])``.
        record_v: also return the membrane after every step.
        threads: threads to use; None: ``torch.get_num_threads()``, fewer for small populations
            (every step synchronises the threads, which does not pay below a few thousand neurons).
            The result is the same for any number.

    Returns:
        ``(spike_indices int64 [S], offsets int64 [steps+1], v_final float64 [N], v_trace float64 [steps, N] or None)``;
        the spikes of step t are ``spike_indices[offsets[t]:offsets[t+1]]``, ascending.
    """
    _require("lif_recurrent_run")
    if not isinstance(params, LIFParams):
        raise TypeError(f"lif_recurrent_run: params must be a LIFParams, got {type(params).__name__}")
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"lif_recurrent_run: steps must be an integer >= 0, got {steps!r}")
    steps = int(steps)
    v = _as_tensor(v0, torch.float64, "v0").clone().reshape(-1)
    ip = _as_tensor(indptr, torch.int64, "indptr").reshape(-1)
    ix = _as_tensor(indices, torch.int64, "indices").reshape(-1)
    w = _as_tensor(weights, torch.float64, "weights").reshape(-1)
    N = v.numel()
    if N == 0 or N > _INT32_MAX:
        raise ValueError(f"lif_recurrent_run: need 1 <= N < 2^31 neurons, got {N}")
    if ip.numel() != N + 1 or int(ip[0]) != 0 or int(ip[-1]) != ix.numel() or bool((ip.diff() < 0).any()):
        raise ValueError(f"lif_recurrent_run: indptr must have N+1 = {N + 1} non-decreasing entries from 0 to nnz")
    if w.numel() != ix.numel():
        raise ValueError(f"lif_recurrent_run: {w.numel()} weights for {ix.numel()} indices")
    if ix.numel():
        lo, hi = torch.aminmax(ix)
        if int(lo) < 0 or int(hi) >= N:
            raise ValueError(f"lif_recurrent_run: indices must lie in [0, {N})")
        if not _engine.rows_sorted(N, ip.data_ptr(), ix.data_ptr()):
            # sort each row by target, stably: every target still receives its adds in the same order
            pre = np.repeat(np.arange(N), np.diff(ip.numpy()))
            order = torch.from_numpy(np.lexsort((ix.numpy(), pre)))
            ix, w = ix[order].contiguous(), w[order].contiguous()

    kind, values, key, cdf, weight = 0, None, 0, None, 0.0
    if drive is not None:
        name = drive[0] if isinstance(drive, tuple) and drive else None
        if name == "poisson" and len(drive) == 4:
            from ..core.random import splitmix64

            key = int(splitmix64(np.uint64(int(drive[1]) & _MASK64)))
            cdf, weight, kind = _check_cdf(drive[2]), float(drive[3]), 1
        elif name == "const" and len(drive) == 2:
            values, kind = _as_tensor(drive[1], torch.float64, "const drive").reshape(-1), 2
            if values.numel() != N:
                raise ValueError(f"lif_recurrent_run: const drive has {values.numel()} values for {N} neurons")
        elif name == "given" and len(drive) == 2:
            values, kind = _as_tensor(drive[1], torch.float64, "given drive"), 3
            if values.dim() != 2 or values.shape[1] != N or values.shape[0] < steps:
                raise ValueError(f"lif_recurrent_run: given drive must be [steps >= {steps}, {N}], "
                                 f"got {tuple(values.shape)}")
        else:
            raise ValueError("lif_recurrent_run: drive must be None, ('poisson', seed, cdf, weight), "
                             f"('const', values) or ('given', values), got {drive!r}")
    trace = torch.empty(steps, N, dtype=torch.float64) if record_v else None
    if threads is None:
        threads = min(_threads(), max(1, N // _NEURONS_PER_THREAD))
    idx_buf, off_buf = _engine.recurrent_run(
        N, steps, v.data_ptr(), ip.data_ptr(), ix.data_ptr(), w.data_ptr(), _lif_tuple(params), kind,
        0 if values is None else values.data_ptr(), key, 0 if cdf is None else cdf.ctypes.data,
        0 if cdf is None else cdf.size, weight, 0 if trace is None else trace.data_ptr(), max(1, int(threads)))
    spikes = torch.frombuffer(idx_buf, dtype=torch.int64) if idx_buf else torch.zeros(0, dtype=torch.int64)
    offsets = torch.frombuffer(off_buf, dtype=torch.int64)
    return spikes, offsets, v, trace


def recurrent_engine(net, steps: int, record_v: bool = False, progress: bool = False):
    """Engine ``'native'`` for :class:`neuro.models.recurrent.RecurrentNetwork` (``register_engine``).

    Runs :func:`lif_recurrent_run` in float64; results are returned in the network's dtype.
    """
    from ..core.events import EventTensor
    from ..models.recurrent import ConstantDrive, GivenDrive, PoissonDrive, RunResult

    p, d = net.params, net.drive
    if d is None:
        drive = None
    elif isinstance(d, PoissonDrive):
        drive = ("poisson", d.seed, d.cdf(p.dt_ms), d.weight)
    elif isinstance(d, (ConstantDrive, GivenDrive)):
        values = getattr(net, "drive_values", None)  # the network's copy (a buffer), else the drive's own
        values = torch.as_tensor(np.asarray(d.values) if values is None else values, dtype=torch.float64)
        drive = ("const", values) if isinstance(d, ConstantDrive) else ("given", values[:steps])
    else:
        raise TypeError(f"native engine: unsupported drive {type(d).__name__}")
    syn = net.synapses
    spikes, offsets, v, trace = lif_recurrent_run(net.v0, syn.indptr, syn.indices, syn.values.detach(), steps, p,
                                                  drive, record_v)
    dtype = net.v0.dtype
    ev = EventTensor(spikes, offsets, (net.n,), dtype=dtype)
    counts = np.bincount(spikes.numpy(), minlength=net.n).astype(np.int64)
    return RunResult(ev, counts, v.to(dtype), None if trace is None else trace.to(dtype))


if available:
    register_kernels("native", NativeKernels)
    register_multistep(lif_step, "cpu", fused_lif)
