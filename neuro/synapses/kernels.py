"""Event-driven propagation kernels, chosen by name from a registry.

A kernel set implements the sparse-input products the synapses need. Every set gives the same
numbers as the dense computation to float tolerance (tests at several densities). ``'torch'`` is
pure PyTorch and always present; ``'native'`` (a C extension compiled at install time, see
:mod:`neuro._native`) registers itself when it was built.

Conventions (R rows of a batch, K inputs, N outputs):

* ``rows_matmul(x [R, K], wt [K, N], bias [N] | None) -> [R, N]``: ``y[r] = bias + sum over k with x[r, k] != 0 of x[r, k] * wt[k]``;
* ``outer_accumulate(x [R, K], gy [R, N]) -> [K, N]``: ``g[k] = sum over r with x[r, k] != 0 of x[r, k] * gy[r]``;
* ``csr_matmul(x [R, K], indptr [K+1], indices [nnz], values [nnz], n_out) -> [R, N]``: CSR rows by input;
* ``csr_value_grad(x [R, K], gy [R, N], indptr, indices) -> [nnz]``: ``g[e] = sum_r x[r, pre(e)] gy[r, post(e)]``;
* ``csr_input_grad(gy [R, N], indptr, indices, values, K) -> [R, K]`` (dense in gy).
"""
from __future__ import annotations

from typing import Callable

import torch

_KERNELS: dict[str, object] = {}


def register_kernels(name: str, kernels: object) -> None:
    _KERNELS[name] = kernels


def get_kernels(name: str | None = None):
    """The kernel set ``name``; ``None`` picks 'native' when built, else 'torch'."""
    if name is None:
        name = "native" if "native" in _KERNELS else "torch"
    if name not in _KERNELS:
        from ..core.errors import ParameterError

        raise ParameterError("kernels", "name", name, "one of " + ", ".join(sorted(_KERNELS)))
    return _KERNELS[name]


def available_kernels() -> list[str]:
    return sorted(_KERNELS)


def _csr_events(x: torch.Tensor, indptr: torch.Tensor):
    """Expand nonzero inputs into their synapses: (row r, input value, synapse position e)."""
    r, k = x.nonzero(as_tuple=True)
    xv = x[r, k]
    start = indptr[k]
    cnt = indptr[k + 1] - start
    total = int(cnt.sum())
    base = torch.repeat_interleave(start - (cnt.cumsum(0) - cnt), cnt, output_size=total)
    pos = base + torch.arange(total)
    rep = torch.repeat_interleave(torch.arange(r.numel()), cnt, output_size=total)
    return r[rep], xv[rep], pos


class TorchKernels:
    """Pure-PyTorch event kernels (CSR sparse products; no compiled code)."""

    name = "torch"

    @staticmethod
    def rows_matmul(x, wt, bias=None):
        y = torch.sparse.mm(x.to_sparse_csr(), wt)
        return y if bias is None else y.add_(bias)

    @staticmethod
    def outer_accumulate(x, gy):
        return torch.sparse.mm(x.t().to_sparse_csr(), gy)

    @staticmethod
    def csr_matmul(x, indptr, indices, values, n_out):
        R = x.shape[0]
        rows, xv, pos = _csr_events(x, indptr)
        y = torch.zeros(R * n_out, dtype=values.dtype)
        y.index_add_(0, rows * n_out + indices[pos], xv * values[pos])
        return y.view(R, n_out)

    @staticmethod
    def csr_value_grad(x, gy, indptr, indices):
        rows, xv, pos = _csr_events(x, indptr)
        g = torch.zeros(indices.numel(), dtype=gy.dtype)
        g.index_add_(0, pos, xv * gy[rows, indices[pos]])
        return g

    @staticmethod
    def csr_input_grad(gy, indptr, indices, values, K):
        pre = torch.repeat_interleave(torch.arange(K), indptr.diff())
        # gx[r, k] = sum_{e in row k} values[e] * gy[r, post(e)]
        contrib = gy[:, indices] * values  # [R, nnz]
        gx = torch.zeros(gy.shape[0], K, dtype=gy.dtype)
        gx.index_add_(1, pre, contrib)
        return gx


register_kernels("torch", TorchKernels)

# Imported for its side effect: registers 'native' when the extension was built.
try:  # pragma: no cover - depends on the build
    from .. import _native  # noqa: F401
except ImportError:  # the extension is optional; the torch kernels always work
    pass

KernelFn = Callable[..., torch.Tensor]
