r"""Spike functions with surrogate gradients.

Forward: the Heaviside step :math:`S = H(x)`, with :math:`H(0) = 1` (``x >= 0``, SpikingJelly's
convention) or :math:`H(0) = 0` (``x > 0``, Brian2's ``v > v_th`` and EGRU's) chosen by the neuron.
Backward: a smooth stand-in for :math:`\delta(x)`, each with its scale parameter:

* :class:`ATan`      :math:`g'(x) = \alpha / (2 (1 + (\pi \alpha x / 2)^2))`  (SpikingJelly, SpikeGPT; alpha = 2)
* :class:`Sigmoid`   :math:`g'(x) = \alpha\, \sigma(\alpha x) (1 - \sigma(\alpha x))`  (SpikingJelly default alpha = 4)
* :class:`Triangle`  :math:`g'(x) = \gamma \max(0, 1 - \epsilon |x|)`  (EGRU pseudo-derivative, Bellec et al. 2018)

Surrogates are frozen records, so they can be compared, saved in a config and hashed.
"""
from __future__ import annotations

import math

import torch

from .params import Params, param, positive, record


@record
class Surrogate(Params):
    """Base: subclasses define :meth:`grad` (the derivative used in the backward pass)."""

    def grad(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x: torch.Tensor, strict: bool = False) -> torch.Tensor:
        return spike(x, self, strict)


@record
class ATan(Surrogate):
    alpha: float = param(2.0, positive, doc="width scale")

    def grad(self, x):
        return self.alpha / 2 / (1 + (math.pi / 2 * self.alpha * x).square())


@record
class Sigmoid(Surrogate):
    alpha: float = param(4.0, positive, doc="slope")

    def grad(self, x):
        sg = torch.sigmoid(self.alpha * x)
        return self.alpha * sg * (1 - sg)


@record
class Triangle(Surrogate):
    gamma: float = param(0.3, positive, doc="peak height (dampening factor)")
    eps: float = param(1.0, positive, doc="inverse half-width of the support")

    def grad(self, x):
        return self.gamma * (1 - self.eps * x.abs()).clamp_min(0)


SURROGATES = {"atan": ATan, "sigmoid": Sigmoid, "triangle": Triangle}


def surrogate_from_dict(d: dict) -> Surrogate:
    from .errors import ParameterError

    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in SURROGATES:
        raise ParameterError("Surrogate", "kind", kind, "one of " + ", ".join(SURROGATES))
    return SURROGATES[kind].from_dict(d)


def surrogate_to_dict(s: Surrogate) -> dict:
    kind = {v: k for k, v in SURROGATES.items()}[type(s)]
    return {"kind": kind, **s.to_dict()}


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, surrogate, strict):
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x > 0).to(x.dtype) if strict else (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * ctx.surrogate.grad(x), None, None


def heaviside(x: torch.Tensor, strict: bool = False) -> torch.Tensor:
    """Heaviside without gradient: ``x > 0`` if strict else ``x >= 0``, in x's dtype."""
    return (x > 0).to(x.dtype) if strict else (x >= 0).to(x.dtype)


def spike(x: torch.Tensor, surrogate: Surrogate, strict: bool = False) -> torch.Tensor:
    """Heaviside forward, ``surrogate.grad`` backward. Shape: same as x."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return heaviside(x, strict)
    return _Spike.apply(x, surrogate, strict)
