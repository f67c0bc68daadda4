r"""SpikingJelly -> neuro: the same network, weights and step modes, giving the same spikes.

Supported (exact types; subclasses such as ``WSConv2d`` change the maths and are refused):

* ``layer.Linear`` / ``torch.nn.Linear`` -> :class:`neuro.synapses.Linear`
* ``layer.Conv2d`` / ``torch.nn.Conv2d`` (groups 1, dilation 1, zero padding) -> :class:`neuro.synapses.Conv2d`
* ``layer.Flatten`` / ``torch.nn.Flatten`` -> :class:`neuro.models.sequential.Flatten`
* ``neuron.LIFNode`` -> :class:`neuro.neurons.LIF`, ``neuron.IFNode`` -> :class:`neuro.neurons.IF`,
  with surrogate ``surrogate.Sigmoid`` or ``surrogate.ATan`` (spiking mode) and their ``alpha``
* containers ``torch.nn.Sequential`` (nested), ``layer.SeqToANNContainer`` and
  ``layer.MultiStepContainer`` (their children see every time step: step mode 'm' here)

SpikingJelly 2.0.0's LIF (``_ops/lif/reference.py``, the CPU kernel ``_ops/lif/cpu.py``), with
:math:`V_r` = ``v_reset`` for a hard reset and 0 for a soft one (``v_reset=None``):

.. math::
    H_t = V_{t-1} + (X_t - (V_{t-1} - V_r)) / \tau \quad \text{(decay\_input)}, \qquad
    H_t = V_{t-1} - (V_{t-1} - V_r) / \tau + X_t \quad \text{(otherwise)}

    S_t = [H_t \ge V_{th}], \qquad V_t = S_t V_r + (1 - S_t) H_t \ \text{(hard)}, \quad
    V_t = H_t - V_{th} S_t \ \text{(soft)}, \qquad V_0 = V_r

This is :mod:`neuro.neurons.lif` with ``tau_ms = tau``, ``dt_ms = 1``, ``integration = 'euler'``
(decay :math:`d = 1 - 1/\tau`), ``v_rest = V_r``, ``v_reset = v_reset``. The IF node is
:math:`H_t = V_{t-1} + X_t` with the same firing and reset, i.e. :mod:`neuro.neurons.if_` with
``v_init = V_r``. The two compute the leak in a different order (SpikingJelly divides by
:math:`\tau`, neuro multiplies by :math:`1 - d`); for :math:`\tau = 2` both are exact in binary
floating point, for other :math:`\tau` they may differ in the last bit of :math:`H_t`
(see tests/test_spikingjelly.py).

The converted network starts from the initial state; the SpikingJelly network's current state
(after a run without ``functional.reset_net``) is not copied.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
from torch import nn

from ..core.errors import UnsupportedLayerError
from ..core.surrogate import ATan, Sigmoid, Surrogate
from ..models.sequential import Flatten, SpikingSequential
from ..neurons.if_ import IF, IFParams
from ..neurons.lif import LIF, LIFParams
from ..synapses.conv import Conv2d
from ..synapses.linear import Linear


class _Where(NamedTuple):
    """Where a module sits. ``folded``: inside a SeqToANNContainer or MultiStepContainer, it sees
    every time step of the sequence (step mode 'm' here); ``seq_to_ann``: inside a SeqToANNContainer
    (time folded into the batch axis, which a neuron cannot follow)."""

    folded: bool = False
    seq_to_ann: bool = False


class _Rule(NamedTuple):
    """How one SpikingJelly/torch module type converts: ``check(module, where) -> problems``
    (empty when convertible) and ``convert(module, where) -> neuro module``."""

    check: Callable[[nn.Module, _Where], list]
    convert: Callable[[nn.Module, _Where], nn.Module]


def _sj():
    from spikingjelly.activation_based import layer, neuron, surrogate

    return layer, neuron, surrogate


def _mode(module: nn.Module, where: _Where) -> str:
    """The step mode of a converted module: 'm' when it sees the whole sequence."""
    return "m" if where.folded else getattr(module, "step_mode", "s")


# -- synapses and reshapes ------------------------------------------------------------------------
def _check_linear(m, where):
    return []


def _convert_linear(m, where):
    bias = None if m.bias is None else m.bias.detach()
    return Linear.from_weights(m.weight.detach(), bias)


def _conv_padding(m):
    """Padding as a pair of ints, or None when it cannot be expressed so."""
    if m.padding == "valid":
        return (0, 0)
    if m.padding == "same":
        if tuple(m.stride) != (1, 1) or any(k % 2 == 0 for k in m.kernel_size):
            return None
        return tuple(k // 2 for k in m.kernel_size)
    return tuple(m.padding)


def _check_conv(m, where):
    problems = []
    if m.groups != 1:
        problems.append(f"groups={m.groups} (only 1)")
    if tuple(m.dilation) != (1, 1):
        problems.append(f"dilation={tuple(m.dilation)} (only 1)")
    if m.padding_mode != "zeros":
        problems.append(f"padding_mode={m.padding_mode!r} (only 'zeros')")
    if _conv_padding(m) is None:
        problems.append(f"padding={m.padding!r} with stride {tuple(m.stride)} and kernel {tuple(m.kernel_size)}")
    return problems


def _convert_conv(m, where):
    # A plain torch Conv2d outside a container only accepts one step [B, C, H, W]: mode 's'.
    conv = Conv2d(m.in_channels, m.out_channels, tuple(m.kernel_size), stride=tuple(m.stride),
                  padding=_conv_padding(m), bias=m.bias is not None, step_mode=_mode(m, where))
    conv = conv.to(m.weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(m.weight)
        if m.bias is not None:
            conv.bias.copy_(m.bias)
    return conv


def _check_flatten(m, where):
    return []


def _convert_flatten(m, where):
    return Flatten(m.start_dim, m.end_dim, step_mode=_mode(m, where))


# -- neurons --------------------------------------------------------------------------------------
def _surrogate(fn) -> Surrogate | str:
    """The neuro surrogate for a SpikingJelly one, or the reason it has none."""
    _, _, sg = _sj()
    kinds = {sg.Sigmoid: Sigmoid, sg.ATan: ATan}
    kind = kinds.get(type(fn))
    if kind is None:
        return f"surrogate_function={type(fn).__name__} (only Sigmoid, ATan)"
    if not getattr(fn, "spiking", True):
        return f"surrogate_function={type(fn).__name__}(spiking=False) outputs no spikes"
    alpha = fn.alpha
    if isinstance(alpha, torch.Tensor) or not isinstance(alpha, (int, float)) or not alpha > 0:
        return f"surrogate_function={type(fn).__name__}(alpha={alpha!r}) (a positive number)"
    return kind(alpha=float(alpha))


def _check_node(m, where, extra=()):
    problems = list(extra)
    sur = _surrogate(m.surrogate_function)
    if isinstance(sur, str):
        problems.append(sur)
    if not (isinstance(m.v_threshold, (int, float)) and math.isfinite(m.v_threshold) and m.v_threshold > 0):
        problems.append(f"v_threshold={m.v_threshold!r} (a finite number > 0)")
    if m.v_reset is not None and not (isinstance(m.v_reset, (int, float)) and math.isfinite(m.v_reset)):
        problems.append(f"v_reset={m.v_reset!r} (a finite number or None)")
    if getattr(m, "_neuron_precision", None) is not None:
        problems.append(f"neuron precision {m._neuron_precision} (only the default float32)")
    if where.seq_to_ann:
        problems.append("neuron inside a SeqToANNContainer (time folded into the batch)")
    return problems


def _check_lif(m, where):
    tau = m.tau
    extra = [] if isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 1 else [f"tau={tau!r} (a number > 1)"]
    return _check_node(m, where, extra)


def _convert_lif(m, where):
    v_rest = 0.0 if m.v_reset is None else float(m.v_reset)
    params = LIFParams(tau_ms=float(m.tau), dt_ms=1.0, integration="euler", v_th=float(m.v_threshold),
                       v_reset=None if m.v_reset is None else float(m.v_reset), v_rest=v_rest,
                       decay_input=bool(m.decay_input), detach_reset=bool(m.detach_reset))
    return LIF(params, _surrogate(m.surrogate_function), step_mode=_mode(m, where))


def _convert_if(m, where):
    params = IFParams(v_th=float(m.v_threshold), v_reset=None if m.v_reset is None else float(m.v_reset),
                      v_init=0.0 if m.v_reset is None else float(m.v_reset), detach_reset=bool(m.detach_reset))
    return IF(params, _surrogate(m.surrogate_function), step_mode=_mode(m, where))


def _rules() -> dict:
    layer, neuron, _ = _sj()
    lin, conv, flat = _Rule(_check_linear, _convert_linear), _Rule(_check_conv, _convert_conv), \
        _Rule(_check_flatten, _convert_flatten)
    return {
        layer.Linear: lin, nn.Linear: lin,
        layer.Conv2d: conv, nn.Conv2d: conv,
        layer.Flatten: flat, nn.Flatten: flat,
        neuron.LIFNode: _Rule(_check_lif, _convert_lif),
        neuron.IFNode: _Rule(_check_node, _convert_if),
    }


def _containers() -> dict:
    """Container type -> whether its children see the whole sequence folded (step mode 'm')."""
    layer, _, _ = _sj()
    return {nn.Sequential: False, SpikingSequential: False, layer.SeqToANNContainer: True,
            layer.MultiStepContainer: True}


def _walk(module: nn.Module, path: str, where: _Where, rules, containers, leaves, problems):
    """Collect (module, where, rule) of every leaf in order, and every problem."""
    kind = type(module)
    if kind in containers:
        layer, _, _ = _sj()
        inner = _Where(where.folded or containers[kind], where.seq_to_ann or kind is layer.SeqToANNContainer)
        for name, child in module.named_children():
            _walk(child, f"{path}.{name}" if path else name, inner, rules, containers, leaves, problems)
        return
    at = path or "(root)"
    rule = rules.get(kind)
    if rule is None:
        problems.append((at, f"{kind.__module__}.{kind.__qualname__}"))
        return
    found = rule.check(module, where)
    if where.folded and getattr(module, "step_mode", "s") != "s":
        found.append(f"step_mode={module.step_mode!r} inside a container that already runs it over time")
    if found:
        problems.append((at, f"{kind.__qualname__}: " + "; ".join(found)))
    leaves.append((module, where, rule))


def from_spikingjelly(net: nn.Module) -> SpikingSequential:
    """Convert a SpikingJelly feed-forward network into a :class:`SpikingSequential`.

    Every module is checked first; anything unsupported raises
    :class:`~neuro.core.errors.UnsupportedLayerError` listing every offending module path and type
    (or setting) before anything is converted.

    Shape: the converted network takes what ``net`` takes ('s': [B, ...]; 'm': [T, B, ...]).

    Examples:
        >>> from spikingjelly.activation_based import layer, neuron
        >>> sj = nn.Sequential(layer.Linear(10, 5), neuron.LIFNode(tau=2.0, step_mode="m"))
        >>> net = from_spikingjelly(sj)          # Linear -> LIF(step_mode='m')
        >>> spikes = net(torch.rand(8, 4, 10))
    """
    rules, containers = _rules(), _containers()
    leaves, problems = [], []
    _walk(net, "", _Where(), rules, containers, leaves, problems)
    if problems:
        raise UnsupportedLayerError(problems, context="SpikingJelly conversion")
    return SpikingSequential(*(rule.convert(m, where) for m, where, rule in leaves))


__all__ = ["from_spikingjelly"]
