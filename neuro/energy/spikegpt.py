r"""Operation counts of SpikeGPT (:mod:`neuro.models.spikegpt`) and of the float RWKV-4 it is built from.

Two ways to count, compared in the tests:

(a) :func:`spikegpt_ops`, the *formula* count for ``T`` tokens, width ``d``, ``L`` blocks and a spike
rate ``r``. SpikeGPT's own energy claims changed across the paper's versions (5x energy, 20x, 32.2x
fewer operations) and could not be reproduced by users (REFERENCE §1), so no version's per-layer
table is followed. Implemented is the convention of spiking-Transformer energy estimates (e.g. the
Spike-driven Transformer's supplement, Yao et al. 2023: ``SOP = R * FLOPs`` of the ANN twin, energy
``E_MAC * MAC + E_AC * SOP``), applied to SpikeGPT's block with one average spike rate: every weight
layer of a block is treated as fed by spikes, so its synaptic operations are accumulates at the
firing rate, ``AC = r * dense``, with ``dense = T * L * (4 d C + 2 d F + d^2)``
(time mixing: key, value, receptance ``d x C`` and output ``C x d``; channel mixing: key ``d x F``,
value ``F x d``, receptance ``d x d``); everything that is not a spike-driven weight layer is a MAC
at full density: the WKV recurrence, the sigmoid gates' products, squared ReLU, LayerNorms, the
token-shift interpolations and the head. Energy with REFERENCE §4's 45 nm figures:
``E = 4.6 pJ * MAC + 0.9 pJ * AC``.

(b) the counting rules below, registered with :func:`~neuro.energy.rules.register_rule`, so that
:class:`~neuro.energy.OpCounter` counts an *actual run* of a (trained) model: a linear layer's
operations are ACs only when every input it receives is a spike (REFERENCE §4, NeuroBench), MACs
otherwise; LIF layers by the package's neuron rule.

The two differ, and the difference is the point: in SpikeGPT the only binary tensors are the
embedding and the LIF outputs, which are *added to the residual stream*; every weight layer reads a
LayerNorm output (real-valued), and the head reads the final LayerNorm. So a counted run finds no
spike-driven weight layer at all: its block projections are ``dense`` MACs where (a) claims
``r * dense`` ACs. Two smaller differences: the rules leave the token-shift interpolations
uncounted (they happen inside :class:`~neuro.models.rwkv.TimeMix` / ``ChannelMix``, which the
counter walks through, like the residual additions of :mod:`neuro.energy.transformer_rules`), and
(a) leaves out the neuron updates' own cost (reported separately as ``neuron_update``).

Per-operation constants (each per element, per token):

* WKV (:func:`~neuro.models.rwkv.wkv_step`, the log-max recurrence as implemented):
  :data:`WKV_MAC` = 7 (six products and one division) and :data:`WKV_EXP` = 4 exponentials.
* squared ReLU: one comparison (``nonlinear``) and one product (``mac``).
* binary embedding (:class:`~neuro.models.spikegpt.Heaviside`): one comparison (``nonlinear``).
* token shift: a delay line, no arithmetic (its interpolations: 2 MACs per element and mix, in (a)).
* LayerNorm, sigmoid, the gate products (:class:`~neuro.models.transformer.Mul`): the rules of
  :mod:`neuro.energy.transformer_rules` / :mod:`neuro.energy.rules` (3 MACs + 1 ``nonlinear`` per row;
  1 ``nonlinear``; 1 MAC).
"""
from __future__ import annotations

import math

import torch

from ..core.errors import ParameterError
from ..models.rwkv import WKV, Block, ChannelMix, RWKVLM, SquaredReLU, TimeMix, TokenShift
from ..models.spikegpt import Heaviside, SpikeBlock, SpikeGPT
from .rules import nonlinear_rule, passive_rule, register_container, register_rule

WKV_MAC = 7   # per channel and token: out = (e1 a + e2 v) / (e1 b + e2), a' = e1' a + e2' v, b' = e1' b + e2'
WKV_EXP = 4   # e^{p-q}, e^{u+k-q}, e^{p+w-q'}, e^{k-q'}
MIX_MAC = 2   # mu x + (1 - mu) x_prev per element (1 - mu folded into a constant)
E_MAC_PJ, E_AC_PJ = 4.6, 0.9  # REFERENCE §4 (Horowitz 2014, 45 nm, fp32)


def _full(T: int, v: int) -> torch.Tensor:
    return torch.full((T,), int(v), dtype=torch.int64)


def wkv_rule(m, x, y, act) -> dict:
    """The WKV recurrence: :data:`WKV_MAC` MACs and :data:`WKV_EXP` exponentials per output element."""
    T, n = y.shape[0], y[0].numel()
    return {"mac": _full(T, WKV_MAC * n), "mac_dense": _full(T, WKV_MAC * n), "nonlinear": _full(T, WKV_EXP * n),
            "mem_read_byte": _full(T, 2 * n * x.element_size()), "mem_write_byte": _full(T, n * y.element_size())}


def squared_relu_rule(m, x, y, act) -> dict:
    """``relu(x)^2``: one comparison and one product per element."""
    out = nonlinear_rule(m, x, y, act)
    T, n = y.shape[0], y[0].numel()
    return {**out, "mac": _full(T, n), "mac_dense": _full(T, n)}


def _register() -> None:
    register_rule(WKV, "nonlinear", wkv_rule)
    register_rule(SquaredReLU, "nonlinear", squared_relu_rule)
    register_rule(Heaviside, "nonlinear", nonlinear_rule)
    register_rule(TokenShift, "passive", passive_rule)
    for cls in (SpikeGPT, SpikeBlock, RWKVLM, Block, TimeMix, ChannelMix):
        register_container(cls)


_register()


def spikegpt_ops(T: int, d: int, layers: int, rate: float, vocab: int, d_attn: int | None = None,
                 d_ff: int | None = None) -> dict:
    """Formula operation counts of SpikeGPT over ``T`` tokens (module docstring, (a)).

    Returns ``ac`` (= ``rate * synaptic_dense``), ``synaptic_dense`` (the block weight layers' dense count),
    ``mac`` (non-spiking parts: WKV, gates, squared ReLU, LayerNorms, token-shift mixes, head; its parts
    in ``mac_parts``), ``nonlinear``, ``neuron_update`` and ``spike`` (``rate`` times the LIF units'
    updates), and ``energy_pj`` / ``energy_pj_float`` (the same model with every synaptic op a MAC).
    """
    for name, v in (("T", T), ("d", d), ("layers", layers), ("vocab", vocab)):
        if not isinstance(v, int) or v < 1:
            raise ParameterError("spikegpt_ops", name, v, "an integer >= 1")
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and 0.0 <= rate <= 1.0):
        raise ParameterError("spikegpt_ops", "rate", rate, "a spike rate in [0, 1]")
    C = d if d_attn is None else d_attn
    F = 4 * d if d_ff is None else d_ff
    dense = T * layers * (4 * d * C + 2 * d * F + d * d)
    parts = {
        "wkv": T * layers * WKV_MAC * C,
        "gates": T * layers * (C + d),             # r * wkv and sigmoid(r) * kv
        "squared_relu": T * layers * F,
        "layernorm": T * (layers * 2 + 1) * 3 * d,
        "token_shift_mix": T * layers * MIX_MAC * 5 * d,  # 3 mixes in time mixing, 2 in channel mixing
        "head": T * d * vocab,
    }
    mac = sum(parts.values())
    ac = rate * dense
    nonlinear = T * (d + layers * (WKV_EXP * C + C + d + F + 2) + 1)  # binarise, WKV exps, sigmoids, relu, LN rsqrt
    units = T * layers * 2 * d
    return {"ac": ac, "synaptic_dense": dense, "mac": mac, "mac_parts": parts, "nonlinear": nonlinear,
            "neuron_update": units, "spike": rate * units,
            "energy_pj": E_MAC_PJ * mac + E_AC_PJ * ac, "energy_pj_float": E_MAC_PJ * (mac + dense)}


__all__ = ["E_AC_PJ", "E_MAC_PJ", "MIX_MAC", "WKV_EXP", "WKV_MAC", "spikegpt_ops", "squared_relu_rule", "wkv_rule"]
