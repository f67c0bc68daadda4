r"""Counting rules of the float reference Transformer (:mod:`neuro.models.transformer`), so that the
ANN original of a converted model is counted by the same :class:`~neuro.energy.OpCounter` as its
spiking conversion (like for like; the spiking operators' rules live in
:mod:`neuro.converters.counting`).

Per call (the ANN is counted in single-step mode, one "step" per forward call), for an output of
``n`` elements:

* ``nn.Linear``: :func:`~neuro.energy.rules.linear_rule` (float activations: MACs, NeuroBench's
  effective and dense counts).
* :class:`~neuro.models.transformer.MatMul` ``[..., n, k] @ [..., k, m]``: ``n_out * k`` MACs; each
  reads its two operands.
* :class:`~neuro.models.transformer.Mul` (the SwiGLU gate): ``n`` MACs.
* :class:`~neuro.models.transformer.Softmax`: ``n`` exponentials (``nonlinear``) and ``n`` divisions
  (counted as ``mac``).
* ``nn.LayerNorm`` and :class:`~neuro.models.transformer.RMSNorm` over rows of ``D``: 3 MACs per
  element (square, normalise, gain) and one ``nonlinear`` (the reciprocal square root) per row.
* :class:`~neuro.models.transformer.Rotary`: 2 MACs per rotated element (cos and sin products).
* ``nn.Embedding``: a table read per output element (``mem_read_byte``), no arithmetic.
* GELU / SiLU / ReLU: :func:`~neuro.energy.rules.nonlinear_rule`.

Residual additions and the constant 1/sqrt(d_head) scale happen inside the container modules and
are not counted (additions cost a fraction of a MAC; the same holds for the spiking model).
"""
from __future__ import annotations

import torch
from torch import nn

from ..models.transformer import (MLP, Attention, Block, Embeddings, GatedMLP, MatMul, Mul, RMSNorm, Rotary,
                                  Softmax, TransformerLM)
from .rules import register_container, register_rule


def _full(T: int, v: int) -> torch.Tensor:
    return torch.full((T,), int(v), dtype=torch.int64)


def _io_bytes(x, y, T, reads_per_out: int = 1) -> dict:
    return {"mem_read_byte": _full(T, y[0].numel() * reads_per_out * x.element_size()),
            "mem_write_byte": _full(T, y[0].numel() * y.element_size())}


def matmul_rule(m, x, y, act) -> dict:
    """``a @ b``: x is ``a`` [T, ..., n, k]; y [T, ..., n, m]."""
    T, k = y.shape[0], x.shape[-1]
    macs = y[0].numel() * k
    return {"mac": _full(T, macs), "mac_dense": _full(T, macs),
            "mem_read_byte": _full(T, 2 * macs * x.element_size()),
            "mem_write_byte": _full(T, y[0].numel() * y.element_size())}


def mul_rule(m, x, y, act) -> dict:
    T, n = y.shape[0], y[0].numel()
    return {"mac": _full(T, n), "mac_dense": _full(T, n), **_io_bytes(x, y, T, 2)}


def softmax_rule(m, x, y, act) -> dict:
    T, n = y.shape[0], y[0].numel()
    return {"nonlinear": _full(T, n), "mac": _full(T, n), "mac_dense": _full(T, n), **_io_bytes(x, y, T)}


def norm_rule(m, x, y, act) -> dict:
    T, n = y.shape[0], y[0].numel()
    rows = n // y.shape[-1]
    return {"mac": _full(T, 3 * n), "mac_dense": _full(T, 3 * n), "nonlinear": _full(T, rows), **_io_bytes(x, y, T)}


def rotary_rule(m, x, y, act) -> dict:
    T = y.shape[0]
    n = y[0].numel() // y.shape[-1] * min(m.dim, y.shape[-1])
    return {"mac": _full(T, 2 * n), "mac_dense": _full(T, 2 * n), **_io_bytes(x, y, T)}


def embedding_rule(m, x, y, act) -> dict:
    T = y.shape[0]
    return {"mem_read_byte": _full(T, y[0].numel() * y.element_size())}


def _register() -> None:
    register_rule(MatMul, "synapse", matmul_rule)
    register_rule(Mul, "nonlinear", mul_rule)
    register_rule(Softmax, "nonlinear", softmax_rule)
    for cls in (nn.LayerNorm, RMSNorm):
        register_rule(cls, "nonlinear", norm_rule)
    register_rule(Rotary, "nonlinear", rotary_rule)
    register_rule(nn.Embedding, "passive", embedding_rule)
    for cls in (TransformerLM, Block, Attention, MLP, GatedMLP, Embeddings):
        register_container(cls)


_register()
