r"""Integrate-and-fire neuron (no leak): :math:`H_t = V_{t-1} + X_t`, then fire and reset as LIF.

With a soft reset and :math:`V_0 = v_{th}/2` this is the classic rate-conversion neuron
(REFERENCE §3): its spike count over T steps approximates the clipped, rounded mean input.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from ..core.params import Params, boolean, finite, optional, param, positive, record
from ..core.surrogate import Surrogate
from .base import NeuronModule, fire_and_reset


@record
class IFParams(Params):
    v_th: float = param(1.0, positive, doc="firing threshold")
    v_reset: Optional[float] = param(0.0, optional(finite), doc="hard reset value; None = soft reset")
    v_init: float = param(0.0, finite, doc="initial membrane potential")
    strict_threshold: bool = param(False, boolean, doc="spike when h > v_th instead of h >= v_th")
    detach_reset: bool = param(False, boolean, doc="no gradient through the reset")


class IFState(NamedTuple):
    v: torch.Tensor


def if_step(x: torch.Tensor, state: IFState, p: IFParams, surrogate: Surrogate):
    """One IF step. Shape: x [B, ...] -> spikes [B, ...]."""
    s, v = fire_and_reset(state.v + x, p.v_th, p.v_reset, surrogate, p.strict_threshold, p.detach_reset)
    return s, IFState(v)


class IF(NeuronModule):
    """IF layer. Shape: as :class:`~neuro.neurons.LIF`."""

    params_cls = IFParams
    step_fn = staticmethod(if_step)

    def init_state(self, x):
        return IFState(self._full(x, self.params.v_init))

    @property
    def v(self):
        return None if self.state is None else self.state.v
