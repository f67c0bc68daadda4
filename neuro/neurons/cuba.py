r"""Current-based LIF: a synaptic current filters the input before the membrane integrates it.

.. math::
    I_t = d_{syn} I_{t-1} + X_t, \qquad H_t = \text{LIF charge of } I_t, \qquad
    S_t = H(H_t - V_{th}),\ \text{reset as LIF}

with :math:`d_{syn}` from ``tau_syn_ms`` (or ``decay_syn``) and the membrane charge exactly as
:func:`neuro.neurons.lif.lif_charge`. With ``decay_input=False`` this is Loihi's CUBA neuron
(:math:`u \leftarrow (1 - du) u + a,\ v \leftarrow (1 - dv) v + u`; REFERENCE §5) and NIR's CubaLIF.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from ..core.params import (Params, boolean, finite, one_of, optional, param, positive, record,
                           unit_interval_open_closed)
from ..core.surrogate import Surrogate
from .base import NeuronModule, decay_factor, fire_and_reset
from .lif import lif_charge


@record
class CubaLIFParams(Params):
    tau_syn_ms: float = param(5.0, positive, doc="synaptic current time constant (ms)")
    tau_ms: float = param(10.0, positive, doc="membrane time constant (ms)")
    dt_ms: float = param(1.0, positive, doc="time step (ms)")
    integration: str = param("exact", one_of("exact", "euler"))
    decay_syn: Optional[float] = param(None, optional(unit_interval_open_closed), doc="raw current decay")
    decay: Optional[float] = param(None, optional(unit_interval_open_closed), doc="raw membrane decay")
    v_th: float = param(1.0, positive)
    v_reset: Optional[float] = param(0.0, optional(finite), doc="None = soft reset")
    v_rest: float = param(0.0, finite)
    decay_input: bool = param(False, boolean)
    strict_threshold: bool = param(False, boolean)
    detach_reset: bool = param(False, boolean)

    def _check(self):
        if self.integration == "euler":
            if self.decay is None and self.dt_ms >= self.tau_ms:
                self.fail("dt_ms", f"< tau_ms={self.tau_ms} for forward-Euler integration")
            if self.decay_syn is None and self.dt_ms >= self.tau_syn_ms:
                self.fail("dt_ms", f"< tau_syn_ms={self.tau_syn_ms} for forward-Euler integration")

    @property
    def decay_factor(self) -> float:
        return self.decay if self.decay is not None else decay_factor(self.tau_ms, self.dt_ms, self.integration)

    @property
    def syn_decay_factor(self) -> float:
        if self.decay_syn is not None:
            return self.decay_syn
        return decay_factor(self.tau_syn_ms, self.dt_ms, self.integration)

    @property
    def v_init(self) -> float:
        return self.v_reset if self.v_reset is not None else 0.0


class CubaLIFState(NamedTuple):
    i: torch.Tensor  # synaptic current
    v: torch.Tensor  # membrane potential


def cuba_lif_step(x: torch.Tensor, state: CubaLIFState, p: CubaLIFParams, surrogate: Surrogate):
    """One current-based LIF step. Shape: x [B, ...] -> spikes [B, ...]."""
    i = state.i * p.syn_decay_factor + x
    h = lif_charge(i, state.v, p)
    s, v = fire_and_reset(h, p.v_th, p.v_reset, surrogate, p.strict_threshold, p.detach_reset)
    return s, CubaLIFState(i, v)


class CubaLIF(NeuronModule):
    """Current-based LIF layer. Shape: as :class:`~neuro.neurons.LIF`."""

    params_cls = CubaLIFParams
    step_fn = staticmethod(cuba_lif_step)

    def init_state(self, x):
        return CubaLIFState(torch.zeros_like(x), self._full(x, self.params.v_init))
