r"""Sparse (CSR) linear synapse with event-driven propagation.

Weights are stored by presynaptic neuron: the synapses of input ``k`` are positions
``indptr[k]:indptr[k+1]`` of ``indices`` (postsynaptic neuron) and ``values`` (weight, learnable).
:math:`y_j = \sum_{k \to j} x_k w_{kj}`. At low input density only the rows of active inputs are
scattered (``index_add``-style); at high density every synapse is read (a sparse matrix product over
the CSR of the transpose). Both paths give the same result to float tolerance.

Shape: x [*, n_in] -> [*, n_out].
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..core.errors import ParameterError, ShapeError
from ..core.loop import check_dtype
from .kernels import get_kernels
from .linear import (DEFAULT_SWITCH_DENSITY, check_finite, check_switch_density, density, dtype_from_name,
                     dtype_name, reject_unknown)


class _SparseLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x2d, values, bias, layer):
        if density(x2d, layer.kernels) < layer.switch_density:
            y = layer.kernels.csr_matmul(x2d, layer.indptr, layer.indices, values, layer.n_out)
        else:  # every synapse: CSR of the transpose [n_out, n_in] times x^T
            wt = torch.sparse_csr_tensor(layer.t_indptr, layer.t_indices, values[layer.t_perm],
                                         (layer.n_out, layer.n_in), check_invariants=False)
            y = torch.sparse.mm(wt, x2d.t().contiguous()).t().contiguous()
        if bias is not None:
            y += bias
        ctx.save_for_backward(x2d, values)
        ctx.layer, ctx.has_bias = layer, bias is not None
        return y

    @staticmethod
    def backward(ctx, gy):
        x2d, values = ctx.saved_tensors
        L = ctx.layer
        gy = gy.contiguous()
        gx = L.kernels.csr_input_grad(gy, L.indptr, L.indices, values, L.n_in) if ctx.needs_input_grad[0] else None
        gv = L.kernels.csr_value_grad(x2d, gy, L.indptr, L.indices) if ctx.needs_input_grad[1] else None
        gb = gy.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gv, gb, None


class SparseLinear(nn.Module):
    """CSR synapse matrix by presynaptic neuron.

    Args:
        indptr: int64 [n_in + 1]; indices: int64 [nnz] postsynaptic targets; values: [nnz] weights.
        n_out: number of postsynaptic neurons.
        bias: optional [n_out] tensor (learnable).
        switch_density, kernels: as :class:`~neuro.synapses.Linear`.
    """

    def __init__(self, indptr, indices, values, n_out: int, bias=None,
                 switch_density: float = DEFAULT_SWITCH_DENSITY, kernels: str | None = None):
        super().__init__()
        indptr = torch.as_tensor(np.asarray(indptr), dtype=torch.int64)
        indices = torch.as_tensor(np.asarray(indices), dtype=torch.int64)
        values = torch.as_tensor(values)
        if not values.is_floating_point():
            values = values.to(torch.get_default_dtype())
        if not isinstance(n_out, int) or n_out < 1:
            raise ParameterError("SparseLinear", "n_out", n_out, "an integer >= 1")
        if indptr.dim() != 1 or indptr.numel() < 2 or int(indptr[0]) != 0 or bool((indptr.diff() < 0).any()):
            raise ShapeError("SparseLinear", "indptr must be 1-D, start at 0 and never decrease")
        if int(indptr[-1]) != indices.numel() or values.shape != indices.shape:
            raise ShapeError("SparseLinear", f"indptr ends at {int(indptr[-1])}, but there are "
                             f"{indices.numel()} indices and {values.numel()} values")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= n_out):
            bad = int(indices.max()) if int(indices.max()) >= n_out else int(indices.min())
            raise ParameterError("SparseLinear", "indices", bad, f"in [0, {n_out})")
        check_finite("SparseLinear", "values", values)
        self.n_in, self.n_out = indptr.numel() - 1, n_out
        self.switch_density = check_switch_density("SparseLinear", switch_density)
        self.kernels = get_kernels(kernels)
        self.register_buffer("indptr", indptr)
        self.register_buffer("indices", indices)
        self.values = nn.Parameter(values.clone())
        self.bias = None if bias is None else nn.Parameter(torch.as_tensor(bias, dtype=values.dtype).clone())
        # CSR of the transpose (by postsynaptic neuron), for the all-synapses path
        pre = torch.repeat_interleave(torch.arange(self.n_in), indptr.diff())
        order = torch.argsort(indices * self.n_in + pre, stable=True)
        t_indptr = torch.zeros(n_out + 1, dtype=torch.int64)
        t_indptr[1:] = torch.bincount(indices, minlength=n_out).cumsum(0)
        self.register_buffer("t_perm", order)
        self.register_buffer("t_indptr", t_indptr)
        self.register_buffer("t_indices", pre[order])

    @property
    def nnz(self) -> int:
        return self.indices.numel()

    @classmethod
    def from_dense(cls, weight: torch.Tensor, **kw) -> "SparseLinear":
        """From a dense [n_out, n_in] matrix, keeping its nonzero entries."""
        weight = torch.as_tensor(weight)
        check_finite("SparseLinear", "weight", weight)
        wt = weight.t()  # [in, out]
        k, j = wt.nonzero(as_tuple=True)
        indptr = torch.zeros(wt.shape[0] + 1, dtype=torch.int64)
        indptr[1:] = torch.bincount(k, minlength=wt.shape[0]).cumsum(0)
        return cls(indptr, j, wt[k, j], weight.shape[0], **kw)

    @classmethod
    def random(cls, n_in: int, n_out: int, p: float, weight=1.0, seed: int = 0,
               autapses: bool = True, **kw) -> "SparseLinear":
        """Each ordered pair kept with probability ``p``; ``weight`` a float or a function
        ``f(pre [nnz] int64 array) -> weights array``; ``autapses=False`` drops i -> i (n_in == n_out)."""
        if not 0.0 < p <= 1.0:
            raise ParameterError("SparseLinear.random", "p", p, "in (0, 1]")
        rng = np.random.default_rng(seed)
        posts, counts = [], []
        for i0 in range(0, n_in, 512):
            i1 = min(n_in, i0 + 512)
            m = rng.random((i1 - i0, n_out), dtype=np.float32) < p
            if not autapses:
                rows = np.arange(i0, min(i1, n_out))
                m[rows - i0, rows] = False
            r, c = np.nonzero(m)
            posts.append(c)
            counts.append(np.bincount(r, minlength=i1 - i0))
        indices = np.concatenate(posts).astype(np.int64)
        indptr = np.zeros(n_in + 1, dtype=np.int64)
        indptr[1:] = np.cumsum(np.concatenate(counts))
        pre = np.repeat(np.arange(n_in), np.diff(indptr))
        w = weight(pre) if callable(weight) else np.full(len(indices), float(weight))
        return cls(indptr, indices, torch.as_tensor(np.asarray(w, dtype=np.float32)), n_out, **kw)

    # -- saving (the neuro.io protocol) ----------------------------------------------------------
    def get_config(self) -> dict:
        """Sizes only; ``indptr``/``indices`` (and the derived transpose) are buffers in the state_dict."""
        return {"n_in": self.n_in, "n_out": self.n_out, "nnz": self.nnz, "has_bias": self.bias is not None,
                "switch_density": self.switch_density, "dtype": dtype_name(self.values.dtype)}

    @classmethod
    def from_config(cls, config: dict) -> "SparseLinear":
        """A layer of the right shapes (all synapses on the last input, zero weights) to load into."""
        c = dict(config)
        n_in, n_out, nnz = c.pop("n_in"), c.pop("n_out"), c.pop("nnz")
        for name, v, lo in (("n_in", n_in, 1), ("n_out", n_out, 1), ("nnz", nnz, 0)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ParameterError("SparseLinear", name, v, f"an integer >= {lo}")
        dtype = dtype_from_name("SparseLinear", c.pop("dtype", "float32"))
        has_bias = c.pop("has_bias", False)
        switch_density = c.pop("switch_density", DEFAULT_SWITCH_DENSITY)
        reject_unknown("SparseLinear", c)
        indptr = torch.zeros(n_in + 1, dtype=torch.int64)
        indptr[-1] = nnz
        return cls(indptr, torch.zeros(nnz, dtype=torch.int64), torch.zeros(nnz, dtype=dtype), n_out,
                   bias=torch.zeros(n_out, dtype=dtype) if has_bias else None, switch_density=switch_density)

    def check_loaded(self) -> None:
        """After a state_dict load: the CSR structure is valid and the stored transpose matches it."""
        ref = type(self)(self.indptr, self.indices, self.values.detach(), self.n_out)  # validates
        for name in ("t_perm", "t_indptr", "t_indices"):
            if not torch.equal(getattr(ref, name), getattr(self, name)):
                raise ShapeError("SparseLinear", f"buffer {name} does not match indptr/indices")

    def to_dense(self) -> torch.Tensor:
        """Dense weight [n_out, n_in]."""
        w = torch.zeros(self.n_in, self.n_out, dtype=self.values.dtype)
        pre = torch.repeat_interleave(torch.arange(self.n_in), self.indptr.diff())
        w[pre, self.indices] = self.values.detach()
        return w.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.n_in:
            raise ShapeError("SparseLinear", f"input has {x.shape[-1]} features, layer expects {self.n_in}")
        check_dtype("SparseLinear", x)
        if x.dtype != self.values.dtype:
            raise ShapeError("SparseLinear", f"input dtype {x.dtype} != weight dtype {self.values.dtype}")
        lead = x.shape[:-1]
        y = _SparseLinear.apply(x.reshape(-1, self.n_in).contiguous(), self.values, self.bias, self)
        return y.view(*lead, self.n_out)

    def extra_repr(self) -> str:
        return f"n_in={self.n_in}, n_out={self.n_out}, nnz={self.nnz}, switch_density={self.switch_density}"
