r"""Adaptive LIF: every spike raises the threshold, which relaxes back with ``tau_adapt_ms``.

.. math::
    H_t = \text{LIF charge}, \quad \theta_t = V_{th} + \beta a_{t-1}, \quad S_t = H(H_t - \theta_t),

    V_t = \text{reset}(H_t, S_t) \ (\text{soft: } H_t - \theta_t S_t), \quad a_t = \rho\, a_{t-1} + S_t

with :math:`\rho` from ``tau_adapt_ms`` (exact: :math:`e^{-dt/\tau_a}`). Source: Bellec et al.,
"Long short-term memory and learning-to-learn in networks of spiking neurons" (NeurIPS 2018), LSNN.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from ..core.params import (Params, boolean, finite, non_negative, one_of, optional, param, positive,
                           record, unit_interval_open_closed)
from ..core.surrogate import Surrogate
from .base import NeuronModule, decay_factor, fire_and_reset
from .lif import lif_charge


@record
class ALIFParams(Params):
    tau_ms: float = param(20.0, positive, doc="membrane time constant (ms)")
    tau_adapt_ms: float = param(200.0, positive, doc="threshold adaptation time constant (ms)")
    beta: float = param(1.8, non_negative, doc="threshold increase per unit of adaptation")
    dt_ms: float = param(1.0, positive)
    integration: str = param("exact", one_of("exact", "euler"))
    decay: Optional[float] = param(None, optional(unit_interval_open_closed), doc="raw membrane decay")
    v_th: float = param(1.0, positive)
    v_reset: Optional[float] = param(None, optional(finite), doc="None = soft reset (by theta_t)")
    v_rest: float = param(0.0, finite)
    decay_input: bool = param(False, boolean)
    strict_threshold: bool = param(False, boolean)
    detach_reset: bool = param(False, boolean)

    def _check(self):
        if self.integration == "euler" and self.dt_ms >= min(self.tau_ms, self.tau_adapt_ms):
            self.fail("dt_ms", "< tau_ms and tau_adapt_ms for forward-Euler integration")

    @property
    def decay_factor(self) -> float:
        return self.decay if self.decay is not None else decay_factor(self.tau_ms, self.dt_ms, self.integration)

    @property
    def adapt_decay_factor(self) -> float:
        return decay_factor(self.tau_adapt_ms, self.dt_ms, self.integration)


class ALIFState(NamedTuple):
    v: torch.Tensor  # membrane potential
    a: torch.Tensor  # adaptation variable


def alif_step(x: torch.Tensor, state: ALIFState, p: ALIFParams, surrogate: Surrogate):
    """One adaptive-LIF step. Shape: x [B, ...] -> spikes [B, ...]."""
    h = lif_charge(x, state.v, p)
    theta = p.v_th + p.beta * state.a
    s, v = fire_and_reset(h, theta, p.v_reset, surrogate, p.strict_threshold, p.detach_reset)
    a = state.a * p.adapt_decay_factor + s
    return s, ALIFState(v, a)


class ALIF(NeuronModule):
    """Adaptive LIF layer. Shape: as :class:`~neuro.neurons.LIF`."""

    params_cls = ALIFParams
    step_fn = staticmethod(alif_step)

    def init_state(self, x):
        v0 = self.params.v_reset if self.params.v_reset is not None else 0.0
        return ALIFState(self._full(x, v0), torch.zeros_like(x))
