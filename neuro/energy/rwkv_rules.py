r"""Counting rules of the float reference RWKV-4 (:mod:`neuro.models.rwkv`), next to the Transformer's
(:mod:`neuro.energy.transformer_rules`), so that the float original of a converted RWKV is counted by the
same :class:`~neuro.energy.OpCounter` as its spiking conversion.

Per token and per element (``D`` the model width, ``C`` the time-mixing width, ``F`` the hidden width):

* ``nn.Linear`` (key, value, receptance, output, head): :func:`~neuro.energy.rules.linear_rule`
  (float inputs: MACs, NeuroBench's effective and dense counts).
* :class:`~neuro.models.rwkv.WKV`, the log-max recurrence of :func:`~neuro.models.rwkv.wkv_step`: per
  channel 4 exponentials (``nonlinear``) and 7 MACs: six products and the division (counted as a MAC,
  as the Transformer's softmax division). Rule: :func:`neuro.energy.spikegpt.wkv_rule`.
* ``nn.Sigmoid`` receptances: one evaluation (``nonlinear``); :class:`~neuro.models.rwkv.SquaredReLU`:
  one evaluation and one product (:func:`neuro.energy.spikegpt.squared_relu_rule`); the gate products
  (:class:`~neuro.models.transformer.Mul`): one MAC.
* ``nn.LayerNorm`` over rows of ``D``: 3 MACs per element and one reciprocal square root per row.
* token shift: a delay line, no arithmetic; its interpolations ``mu x + (1 - mu) x_{-1}`` (2 MACs per
  element, ``1 - mu`` a stored constant; 3 per token in time mixing, 2 in channel mixing) run inside
  :class:`~neuro.models.rwkv.TimeMix` / ``ChannelMix``, which the counter walks through, so no hook
  sees them: :func:`token_shift_mixes` adds them to the counts of a run as layers ``<mixer>.mix``.

The converted model needs none of the mixes (they are folded into the weights of the linear layer
that follows, :mod:`~neuro.converters.spiking_rwkv`), so a like-for-like comparison counts them on the
float side only. Residual additions are not counted (as for the Transformer).
"""
from __future__ import annotations

import numpy as np

from ..core.errors import ParameterError
from . import spikegpt as _spikegpt  # noqa: F401  (registers WKV, SquaredReLU, TokenShift and the containers)
from .counter import Counts, LayerCounts
from .spikegpt import MIX_MAC, WKV_EXP, WKV_MAC, squared_relu_rule, wkv_rule

#: interpolations per token and element: time mixing (k, v, r), channel mixing (k, r)
MIXES = {"TimeMix": 3, "ChannelMix": 2}


def token_shift_mixes(counts: Counts, model, tokens: int, batch_size: int = 1) -> Counts:
    """``counts`` of one forward call of ``model`` over ``tokens`` tokens (``batch_size`` sequences) with a
    layer ``<name>.mix`` per :class:`~neuro.models.rwkv.TimeMix` / ``ChannelMix`` ``<name>`` inserted before
    its first counted layer: ``mixes * D * tokens * batch_size`` interpolations of :data:`MIX_MAC` MACs each,
    every one reading two operands and writing one result (float32). One step (the call)."""
    from ..models.rwkv import ChannelMix, TimeMix

    if not isinstance(tokens, int) or tokens < 1:
        raise ParameterError("token_shift_mixes", "tokens", tokens, "an integer >= 1")
    extra = {}
    for name, m in model.named_modules():
        if isinstance(m, (TimeMix, ChannelMix)):
            n = MIXES[type(m).__name__] * m.mu_k.numel() * tokens * batch_size   # interpolated elements
            b = m.mu_k.element_size()
            ops = {"mac": np.array([MIX_MAC * n]), "mac_dense": np.array([MIX_MAC * n]),
                   "mem_read_byte": np.array([2 * n * b]), "mem_write_byte": np.array([n * b])}
            extra[name] = LayerCounts(f"{name}.mix", "TokenShiftMix", "nonlinear",
                                      {k: v.astype(np.int64) for k, v in ops.items()}, n)
    layers = {}
    for lname, lc in counts.layers.items():
        for owner in [o for o in extra if lname.startswith(f"{o}.")]:
            mix = extra.pop(owner)
            layers[mix.name] = mix
        layers[lname] = lc
    for mix in extra.values():
        layers[mix.name] = mix
    return Counts(layers, counts.source)


__all__ = ["MIXES", "MIX_MAC", "WKV_EXP", "WKV_MAC", "squared_relu_rule", "token_shift_mixes", "wkv_rule"]
