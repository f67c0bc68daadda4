r"""Leaky integrate-and-fire neuron (discrete time, SpikingJelly / SpikeGPT convention).

Charge, with decay :math:`d` and :math:`\alpha = 1 - d`:

.. math::
    H_t = V_{t-1} + \alpha\,(X_t - (V_{t-1} - V_{rest}))   \quad \text{(decay\_input=True)}

    H_t = (V_{t-1} - V_{rest})\, d + V_{rest} + X_t         \quad \text{(decay\_input=False)}

then :math:`S_t = H(H_t - V_{th})` and a hard reset to ``v_reset`` or a soft reset by subtracting
``v_th`` (``v_reset=None``). The decay comes from ``tau_ms`` and ``dt_ms``: ``'exact'`` integration
gives :math:`d = e^{-dt/\tau}` (the analytic solution of :math:`\tau\,dv/dt = -(v - v_{rest}) + RI`
for input held over the step; Brian2 ``method='exact'``), ``'euler'`` gives :math:`d = 1 - dt/\tau`
(SpikingJelly's ``LIFNode(tau)`` with ``dt = 1``). ``decay`` sets :math:`d` directly and overrides both.

Sources: REFERENCE §1; Fang et al., SpikingJelly (Science Advances 2023); Brian2 exact integration.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from ..core.params import (Params, boolean, finite, one_of, optional, param, positive, record,
                           unit_interval_open_closed)
from ..core.surrogate import Surrogate
from .base import NeuronModule, decay_factor, fire_and_reset


@record
class LIFParams(Params):
    tau_ms: float = param(2.0, positive, doc="membrane time constant (ms)")
    dt_ms: float = param(1.0, positive, doc="time step (ms)")
    integration: str = param("euler", one_of("exact", "euler"), doc="how tau_ms and dt_ms give the decay")
    decay: Optional[float] = param(None, optional(unit_interval_open_closed), doc="raw decay d; overrides tau/dt")
    v_th: float = param(1.0, positive, doc="firing threshold")
    v_reset: Optional[float] = param(0.0, optional(finite), doc="hard reset value; None = soft reset")
    v_rest: float = param(0.0, finite, doc="resting potential the leak pulls towards")
    decay_input: bool = param(True, boolean, doc="scale the input by 1 - d")
    strict_threshold: bool = param(False, boolean, doc="spike when h > v_th (Brian2) instead of h >= v_th")
    detach_reset: bool = param(False, boolean, doc="no gradient through the reset")

    def _check(self):
        if self.decay is None and self.integration == "euler" and self.dt_ms >= self.tau_ms:
            self.fail("dt_ms", f"< tau_ms={self.tau_ms} for forward-Euler integration (decay 1 - dt/tau in (0, 1])")

    @property
    def decay_factor(self) -> float:
        return self.decay if self.decay is not None else decay_factor(self.tau_ms, self.dt_ms, self.integration)

    @property
    def v_init(self) -> float:
        return self.v_reset if self.v_reset is not None else 0.0


class LIFState(NamedTuple):
    v: torch.Tensor  # membrane potential, same shape as the input


def lif_charge(x, v, p) -> torch.Tensor:
    """The charge equation shared by LIF, CubaLIF and adaptive LIF. Shape: same as x."""
    d = p.decay_factor
    if p.decay_input:
        return v + (x - (v - p.v_rest)) * (1.0 - d)
    return (v - p.v_rest) * d + p.v_rest + x


def lif_step(x: torch.Tensor, state: LIFState, p: LIFParams, surrogate: Surrogate):
    """One LIF step. Shape: x [B, ...] -> spikes [B, ...]."""
    h = lif_charge(x, state.v, p)
    s, v = fire_and_reset(h, p.v_th, p.v_reset, surrogate, p.strict_threshold, p.detach_reset)
    return s, LIFState(v)


class LIF(NeuronModule):
    """LIF layer. ``LIF(tau_ms=2.0, v_reset=None, step_mode='m')``.

    Shape: 's' mode [B, ...] -> [B, ...]; 'm' mode [T, B, ...] -> [T, B, ...].

    Examples:
        >>> lif = LIF(tau_ms=2.0, step_mode="m")
        >>> spikes = lif(torch.rand(8, 4, 10) * 3)
    """

    params_cls = LIFParams
    step_fn = staticmethod(lif_step)

    def init_state(self, x):
        return LIFState(self._full(x, self.params.v_init))

    @property
    def v(self) -> Optional[torch.Tensor]:
        return None if self.state is None else self.state.v
