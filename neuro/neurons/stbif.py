r"""Signed multi-threshold integrate-and-fire neuron (ST-BIF, SpikeZIP-TF; REFERENCE §3).

State: a normalised membrane :math:`q` (starting at ``q0 = 0.5``) and the net spike count :math:`c`.

.. math::
    q \mathrel{+}= X_t / \theta;\quad
    S_t = \begin{cases} +1 & q \ge 1 \wedge c < c_{max} \\ -1 & q < 0 \wedge c > c_{min} \\ 0 \end{cases};
    \quad q \mathrel{-}= S_t;\quad c \mathrel{+}= S_t;\quad \text{out}_t = \theta S_t

Fed an input x at the first step and zeros after, the output sums, once it settles, to the
quantizer :math:`\mathrm{clamp}(\lfloor x/\theta + 0.5 \rfloor, c_{min}, c_{max})\,\theta`; the
negative spikes correct overshoot, so any input sequence with the same sum converges to the same
value. The conversion issue uses it for every quantized activation.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from ..core.params import Params, integer, param, positive, record, unit_interval_closed
from .base import NeuronModule


@record
class STBIFParams(Params):
    theta: float = param(1.0, positive, doc="spike magnitude (quantization step)")
    pos_max: int = param(7, integer(lo=0), doc="largest net spike count")
    neg_min: int = param(0, integer(hi=0), doc="smallest net spike count (<= 0)")
    q0: float = param(0.5, unit_interval_closed, doc="initial normalised membrane (0.5 rounds to nearest)")

    def _check(self):
        if self.pos_max == 0 and self.neg_min == 0:
            self.fail("pos_max", "> 0 when neg_min is 0 (the neuron could never spike)")


class STBIFState(NamedTuple):
    q: torch.Tensor      # normalised membrane
    count: torch.Tensor  # net spike count so far


def stbif_step(x: torch.Tensor, state: STBIFState, p: STBIFParams, surrogate=None):
    """One ST-BIF step. Shape: x [B, ...] -> signed spikes times theta [B, ...]."""
    q = state.q + x / p.theta
    pos = (q >= 1) & (state.count < p.pos_max)
    neg = (q < 0) & (state.count > p.neg_min)
    s = pos.to(x.dtype) - neg.to(x.dtype)
    return s * p.theta, STBIFState(q - s, state.count + s)


class STBIF(NeuronModule):
    """ST-BIF layer (inference; no surrogate). Shape: as :class:`~neuro.neurons.LIF`."""

    params_cls = STBIFParams
    step_fn = staticmethod(stbif_step)

    def init_state(self, x):
        return STBIFState(self._full(x, self.params.q0), torch.zeros_like(x))

    def step_args(self):
        return (self.params, None)
