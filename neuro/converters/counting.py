r"""Counting rules of the spiking Transformer operators, for :class:`neuro.energy.OpCounter`.

Per time step ``t`` (every input carries a leading time axis):

* :class:`SpikingLinear` ``[T, ..., n_in] -> [T, ..., n_out]``: accumulates
  :math:`\sum_i \mathrm{nnz}_t(i)\, \mathrm{fan}(i)` (nonzero inputs of channel ``i`` times its nonzero
  fan-out, NeuroBench's effective SOP). Every spike is :math:`\pm 2^{k}` (a per-channel shift folded
  into the weights), so they count as ``ac``; a step holding any other value would count as ``mac``.
  Dense: rows x n_in x n_out.
* :class:`SpikingMatMul` ``[T, ..., n, k] x [T, ..., k, m]``, running-sum form
  :math:`O_t = A_t \bar B_t + \bar A_{t-1} B_t`: each nonzero of :math:`A_t` adds a row of
  :math:`\bar B_t` (``m`` accumulates), each nonzero of :math:`B_t` a column of :math:`\bar A_{t-1}`
  (``n`` accumulates): :math:`\mathrm{nnz}(A_t) m + \mathrm{nnz}(B_t) n`. Dense: ``2 n k m`` per batch item.
* :class:`BitSerialEncoder` (neuron): one update per channel and step; active and ``spike`` = its
  nonzero outputs; each spike is written as one 32-bit event.
* accumulated-difference operators (kind 'nonlinear'): per output element and step, ``evals``
  non-linear function evaluations (``nonlinear``) and ``mults`` multiplies (``mac``): LayerNorm and
  RMSNorm 1 and 3 (square, normalise, gain), GELU/SiLU/ReLU 1 and 0, softmax 1 and 1 (exp, division),
  rotary 0 and 2, the gate product 0 and 1. These are the operations that are not accumulate-only.
* :class:`Inject` and :class:`Integrate` (the window's input and output) and the embedding lookup:
  no operations.
* converted RWKV (:mod:`~neuro.converters.spiking_rwkv`): the sigmoid (1 evaluation, 1 multiply: the
  division) and squared ReLU (1 and 1) as above; :class:`SpikingWKV` per output element and step its
  read (2 exponentials and a division: 3 evaluations, 3 multiplies) and, at the window's last step, the
  state update (2 exponentials, 3 multiplies); the token shift moves spike trains: no operations.
"""
from __future__ import annotations

import torch

from ..energy.rules import SPIKE_EVENT_BYTES, register_container, register_rule
from .spiking_ops import BitSerialEncoder, Inject, Integrate, SpikingLinear, SpikingMatMul
from .spiking_transformer import QAttention, QBlock, QEmbeddings, QGatedMLP, QMLP, SpikingTransformer


def _pow2_spikes(x: torch.Tensor) -> torch.Tensor:
    """Per step: every nonzero entry is +-2^k. Shape: [T, ...] -> bool [T]."""
    T = x.shape[0]
    mant, _ = torch.frexp(x.reshape(T, -1).abs())
    return ((mant == 0.5) | (x.reshape(T, -1) == 0)).all(1)


def _split(eff, dense, ac):
    zero = torch.zeros_like(eff)
    return {"ac": torch.where(ac, eff, zero), "mac": torch.where(ac, zero, eff),
            "ac_dense": torch.where(ac, dense, zero), "mac_dense": torch.where(ac, zero, dense)}


def spiking_linear_rule(m, x, y, act) -> dict:
    T, n_in = x.shape[0], x.shape[-1]
    n_out = m.weight.shape[0]
    cols = (x.reshape(T, -1, n_in) != 0).sum(1)                           # [T, n_in]
    fan = (m.weight != 0).sum(0)                                          # [n_in]
    eff = cols @ fan                                                      # [T]
    rows = x[0].numel() // n_in
    out = _split(eff, torch.full((T,), rows * n_in * n_out, dtype=torch.int64), _pow2_spikes(x))
    out["mem_read_byte"] = eff * m.weight.element_size() + cols.sum(1) * x.element_size()
    out["mem_write_byte"] = torch.full((T,), rows * n_out * y.element_size(), dtype=torch.int64)
    return out


def spiking_matmul_rule(m, a, y, act) -> dict:
    b = getattr(m, "_observed_b", None)
    T = a.shape[0]
    n, k, mm = a.shape[-2], a.shape[-1], y.shape[-1]
    nnz_a = (a.reshape(T, -1) != 0).sum(1)                                # [T]
    nnz_b = (b.reshape(T, -1) != 0).sum(1) if b is not None else torch.zeros(T, dtype=torch.int64)
    batch_a = a[0].numel() // (n * k)
    eff = nnz_a * mm + nnz_b * n                                          # A and B share their batch dims
    dense = torch.full((T,), 2 * batch_a * n * k * mm, dtype=torch.int64)
    ac = _pow2_spikes(a) & (_pow2_spikes(b) if b is not None else torch.ones(T, dtype=torch.bool))
    out = _split(eff, dense, ac)
    out["mem_write_byte"] = torch.full((T,), y[0].numel() * y.element_size(), dtype=torch.int64)
    m._observed_b = None
    return out


def encoder_rule(m, x, y, act) -> dict:
    T = y.shape[0]
    n = y[0].numel()
    spikes = (y.reshape(T, -1) != 0).sum(1)                               # [T]
    return {"neuron_update_active": spikes, "neuron_update_inactive": n - spikes, "spike": spikes,
            "mem_read_byte": torch.full((T,), n * y.element_size(), dtype=torch.int64),
            "mem_write_byte": n * y.element_size() + spikes * SPIKE_EVENT_BYTES}


def accdiff_rule(m, x, y, act) -> dict:
    T = y.shape[0]
    n = y[0].numel()
    m._observed_b = None
    return {"nonlinear": torch.full((T,), m.evals * n, dtype=torch.int64),
            "mac": torch.full((T,), m.mults * n, dtype=torch.int64),
            "mem_read_byte": torch.full((T,), n * x.element_size(), dtype=torch.int64),
            "mem_write_byte": torch.full((T,), n * y.element_size(), dtype=torch.int64)}


def passive_rule(m, x, y, act) -> dict:
    return {}


def register() -> None:
    """Register the rules (idempotent; done when this module is imported)."""
    register_rule(SpikingLinear, "synapse", spiking_linear_rule)
    register_rule(SpikingMatMul, "synapse", spiking_matmul_rule)
    register_rule(BitSerialEncoder, "neuron", encoder_rule)
    from .spiking_ops import (SpikingActivation, SpikingLayerNorm, SpikingMul, SpikingRMSNorm, SpikingRotary,
                              SpikingSoftmax)
    for cls in (SpikingLayerNorm, SpikingRMSNorm, SpikingActivation, SpikingSoftmax, SpikingRotary, SpikingMul):
        register_rule(cls, "nonlinear", accdiff_rule)
    for cls in (Inject, Integrate):
        register_rule(cls, "passive", passive_rule)
    for cls in (SpikingTransformer, QBlock, QAttention, QMLP, QGatedMLP, QEmbeddings):
        register_container(cls)


def wkv_rule(m, x, y, act) -> dict:
    T = y.shape[0]
    n = y[0].numel()
    last = torch.zeros(T, dtype=torch.int64)
    last[-1] = 1
    return {"nonlinear": m.evals * n + last * (m.state_evals * n), "mac": m.mults * n + last * (m.state_mults * n),
            "mem_read_byte": torch.full((T,), 2 * n * x.element_size(), dtype=torch.int64),
            "mem_write_byte": torch.full((T,), n * y.element_size(), dtype=torch.int64)}


def register_rwkv() -> None:
    """Register the rules of the converted RWKV's operators (called when its module is imported)."""
    from .spiking_rwkv import (QChannelMix, QRWKVBlock, QRWKVEmbed, QTimeMix, SpikingRWKV, SpikingShift,
                               SpikingSigmoid, SpikingSquaredReLU, SpikingWKV)
    for cls in (SpikingSigmoid, SpikingSquaredReLU):
        register_rule(cls, "nonlinear", accdiff_rule)
    register_rule(SpikingWKV, "nonlinear", wkv_rule)
    register_rule(SpikingShift, "passive", passive_rule)
    for cls in (SpikingRWKV, QRWKVBlock, QTimeMix, QChannelMix, QRWKVEmbed):
        register_container(cls)


register()
