"""Pieces shared by the neuron step functions: decay factors, firing and reset, module plumbing."""
from __future__ import annotations

import math

import torch

from ..core.loop import StatefulModule
from ..core.params import Params
from ..core.surrogate import ATan, Surrogate, spike


def decay_factor(tau_ms: float, dt_ms: float, integration: str) -> float:
    r"""Per-step decay of :math:`\tau\,dv/dt = -v` over ``dt``.

    ``'exact'``: :math:`e^{-dt/\tau}` (the analytic solution, Brian2 ``method='exact'``);
    ``'euler'``: :math:`1 - dt/\tau` (forward Euler; SpikingJelly's LIF with ``tau`` in steps).
    """
    return math.exp(-dt_ms / tau_ms) if integration == "exact" else 1.0 - dt_ms / tau_ms


def fire_and_reset(h, v_th, v_reset, surrogate: Surrogate, strict: bool, detach_reset: bool):
    r"""Spike and reset from the charged membrane ``h``.

    .. math:: S = H(h - v_{th}); \quad V = h (1 - S) + v_{reset} S \ \text{(hard)}, \quad
              V = h - v_{th} S \ \text{(soft, v\_reset=None)}

    ``v_th`` may be a float or a tensor broadcastable to ``h`` (adaptive thresholds).
    Returns (S, V). Shape: same as h.
    """
    s = spike(h - v_th, surrogate, strict)
    sr = s.detach() if detach_reset else s
    if v_reset is None:
        return s, h - v_th * sr
    return s, h * (1.0 - sr) + v_reset * sr


class NeuronModule(StatefulModule):
    """Thin module over a step function: holds a parameter record and a surrogate.

    ``Module(params=None, surrogate=None, step_mode='s', **fields)``: ``fields`` override the
    record's defaults, e.g. ``LIF(tau_ms=20.0, dt_ms=1.0, integration='exact')``.
    """

    params_cls: type[Params]

    def __init__(self, params: Params | None = None, surrogate: Surrogate | None = None,
                 step_mode: str = "s", **fields):
        super().__init__(step_mode)
        params = params if params is not None else self.params_cls()
        if not isinstance(params, self.params_cls):
            from ..core.errors import ParameterError

            raise ParameterError(type(self).__name__, "params", params, f"a {self.params_cls.__name__}")
        self.params = params.replace(**fields) if fields else params
        self.surrogate = surrogate if surrogate is not None else ATan()

    def _full(self, x: torch.Tensor, value: float) -> torch.Tensor:
        return torch.full_like(x, value)

    # -- saving (the neuro.io protocol) ----------------------------------------------------------
    def get_config(self) -> dict:
        """JSON-able architecture: ``{"params": {...}, "surrogate": {"kind": ..., ...}, "step_mode": ...}``."""
        from ..core.surrogate import surrogate_to_dict

        return {"params": self.params.to_dict(),
                "surrogate": None if self.surrogate is None else surrogate_to_dict(self.surrogate),
                "step_mode": self.step_mode}

    @classmethod
    def from_config(cls, config: dict) -> "NeuronModule":
        """Inverse of :meth:`get_config`; raises ParameterError for unknown keys or bad values."""
        from ..core.errors import ParameterError
        from ..core.surrogate import surrogate_from_dict

        for key in config:
            if key not in ("params", "surrogate", "step_mode"):
                raise ParameterError(cls.__name__, key, config[key],
                                     "a known config key (params, surrogate, step_mode)")
        params = config.get("params", {})
        if not isinstance(params, dict):
            raise ParameterError(cls.__name__, "params", params, "an object of record fields")
        sur = config.get("surrogate")
        if sur is not None and not isinstance(sur, dict):
            raise ParameterError(cls.__name__, "surrogate", sur, "an object with a 'kind' or null")
        return cls(cls.params_cls.from_dict(params), None if sur is None else surrogate_from_dict(sur),
                   step_mode=config.get("step_mode", "s"))
