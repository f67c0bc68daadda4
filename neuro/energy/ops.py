r"""Operations that NeuroBench leaves out: products between two activity tensors (spiking attention
:math:`Q K^\top`, :math:`A V`), recurrent matmuls of EGRU/RWKV. A converter's counting rule calls
:func:`spiking_matmul_ops` on the operands it multiplies.

.. math::
    \mathrm{ops}^{eff} = \sum_{\ldots} \sum_{m, k, n} [A_{mk} \ne 0]\,[B_{kn} \ne 0]
    = \sum_{\ldots} \mathbf{1}^\top (\mathrm{nz}(A)\,\mathrm{nz}(B))\,\mathbf{1},

AC when both operands are spike-like (entries in {-c, 0, c}, c a power of two: the product of two
spikes is a sign and a shift), MAC otherwise. Dense: :math:`M K N` per batch entry.
"""
from __future__ import annotations

import torch

from ..core.errors import ShapeError
from .rules import spike_like


def spiking_matmul_ops(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Counts of ``a @ b``. Shape: a [..., M, K], b [..., K, N] (broadcast batch axes).

    Returns {'ac', 'mac', 'ac_dense', 'mac_dense'} as Python ints.
    """
    if a.dim() < 2 or b.dim() < 2 or a.shape[-1] != b.shape[-2]:
        raise ShapeError("spiking_matmul_ops", f"cannot multiply {tuple(a.shape)} by {tuple(b.shape)}")
    nza = (a.detach() != 0).to(torch.float64)
    nzb = (b.detach() != 0).to(torch.float64)
    eff = int((nza @ nzb).sum().round())
    prod_shape = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    batch = 1
    for s in prod_shape:
        batch *= s
    dense = batch * a.shape[-2] * a.shape[-1] * b.shape[-1]
    ac = bool(spike_like(a.reshape(1, -1))[0]) and bool(spike_like(b.reshape(1, -1))[0])
    return {"ac": eff if ac else 0, "mac": 0 if ac else eff, "ac_dense": dense if ac else 0,
            "mac_dense": 0 if ac else dense}
