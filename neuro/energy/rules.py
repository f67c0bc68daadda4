r"""Counting rules: what one call of a module costs, per time step, by module type.

A rule is a function ``rule(module, x, y, act) -> {op: int64 tensor [T]}`` that receives the
module's input ``x`` and output ``y`` with a leading time axis (a single-step call is seen as
``T = 1``) and an :class:`Activity` (nonzero counts of a tensor, computed once per tensor and shared
by the layer that emits it and the layer that reads it), and returns the operations of each step. Rules are chosen by the module's type (its MRO, nearest class
first) from the table :data:`RULES`; :func:`register_rule` adds one, so that later modules
(learnable delays, converted attention, EGRU/RWKV recurrences) plug in without touching the counter.

Synaptic operations follow NeuroBench's ``SynapticOperations`` (REFERENCE §4):

.. math::
    \mathrm{SOP}^{eff}_t = \sum_{b} \sum_{i:\,x_{b,i}(t) \ne 0} \lvert\{j : W_{ji} \ne 0\}\rvert,
    \qquad \mathrm{SOP}^{dense}_t = \text{the same count with every input and every weight set to one},

bias excluded. They are accumulates (AC) when every input of the step lies in :math:`\{-c, 0, c\}`
with :math:`c = 2^k` (a binary or signed spike, or a power-of-two scaled one: the scale is a shift
folded into the weights), and multiply-accumulates (MAC) otherwise. NeuroBench decides per layer
and forward call; here the decision is per layer and time step, which is the same for a
single-step run and finer for a multi-step one.

Other operation types (each an int64 count per step):

* ``neuron_update_active`` / ``neuron_update_inactive``: one update per neuron and step; *active*
  means the neuron emitted a (possibly signed) spike in that step, *inactive* that it only
  integrated and leaked. ``spike``: nonzero outputs of a neuron layer (one event/packet each).
* ``nonlinear``: element-wise non-linear function evaluations (ReLU, GELU, sigmoid, tanh, softmax...).
* ``mem_read_byte`` / ``mem_write_byte``: memory traffic under this stated model: weights and neuron
  states live in on-chip memory; each synaptic operation reads its weight (and, for CSR synapses,
  its target index); each nonzero input is read once per layer; each synapse-layer output element
  is written once; each neuron update reads and writes every state field; each spike is written
  as one 32-bit address event. Element sizes are those of the tensors' dtypes.
* ``packet`` / ``hop``: routed packets and router hops for event-graph targets (0 here; the
  SpiNNaker placement fills them in).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..core.loop import StatefulModule
from ..synapses.kernels import get_kernels

Rule = Callable[..., dict]

#: every operation type a rule may report (synaptic ops also in their dense form)
OP_TYPES = ("ac", "mac", "ac_dense", "mac_dense", "neuron_update_active", "neuron_update_inactive", "spike",
            "nonlinear", "mem_read_byte", "mem_write_byte", "packet", "hop")

SPIKE_EVENT_BYTES = 4  # one 32-bit address event per spike


@dataclass(frozen=True)
class CountingRule:
    """A counting rule and the kind of layer it describes ('synapse', 'neuron', 'nonlinear', 'passive')."""

    kind: str
    fn: Rule


# module type -> rule; looked up along the module's MRO. Classes, never instances.
RULES: dict[type, CountingRule] = {}

# module types that only hold children: the counter walks through them
CONTAINERS: set[type] = {nn.Sequential, nn.ModuleList, nn.ModuleDict}


def register_rule(cls: type, kind: str, fn: Rule) -> None:
    """Count modules of type ``cls`` (and its subclasses without a rule of their own) with ``fn``."""
    from ..core.errors import ParameterError

    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise ParameterError("register_rule", "cls", cls, "a torch.nn.Module subclass")
    if kind not in ("synapse", "neuron", "nonlinear", "passive"):
        raise ParameterError("register_rule", "kind", kind, "'synapse', 'neuron', 'nonlinear' or 'passive'")
    RULES[cls] = CountingRule(kind, fn)


def register_container(cls: type) -> None:
    """Let the counter walk through modules of type ``cls`` (they compute nothing themselves)."""
    CONTAINERS.add(cls)


def rule_for(module: nn.Module) -> CountingRule | None:
    for cls in type(module).__mro__:
        if cls is nn.Module:
            return None
        if cls in RULES:
            return RULES[cls]
    return None


def is_container(module: nn.Module) -> bool:
    return any(cls in CONTAINERS for cls in type(module).__mro__)


# -- activity analysis -------------------------------------------------------------------------------
# neuron type -> fn(module) -> (c, signed): its outputs lie in {0, c} (or {-c, 0, c} when signed) by
# construction (heaviside spikes), so the counter need not check them element by element.
SPIKE_ALPHABETS: dict[type, Callable] = {}


def register_spike_alphabet(cls: type, fn: Callable) -> None:
    """Declare that modules of type ``cls`` emit only values in {0, c} or {-c, 0, c}: ``fn(module) -> (c, signed)``."""
    SPIKE_ALPHABETS[cls] = fn


def spike_alphabet(module: nn.Module):
    for cls in type(module).__mro__:
        if cls in SPIKE_ALPHABETS:
            return SPIKE_ALPHABETS[cls](module)
    return None


def _pow2(c: float) -> bool:
    import math

    return c == 0 or (c > 0 and math.frexp(c)[0] == 0.5)


class Activity:
    """Nonzero structure of activity tensors: per step and feature, how many (batch) entries are nonzero,
    and whether each step is spike-like. Results are kept for the last few tensors (keyed by storage,
    so a view of the same data reuses them): the counts a neuron layer computes on its spikes serve
    the synapse layer that reads them."""

    def __init__(self, keep: int = 4):
        self._cache: list = []
        self._declared: dict = {}
        self._weights: dict = {}
        self.keep = keep

    def cached(self, weight: torch.Tensor, fn: Callable, tag=None):
        """``fn()`` computed once per weight tensor and version (fan-outs of a layer that is not training)."""
        key = (id(weight), tag)
        hit = self._weights.get(key)
        if hit is not None and hit[0] is weight and hit[1] == weight._version:
            return hit[2]
        value = fn()
        self._weights[key] = (weight, weight._version, value)
        return value

    def _square(self, t3: torch.Tensor) -> torch.Tensor:
        """x * x into a kept buffer (no fresh allocation per call)."""
        buf = getattr(self, "_buf", None)
        if buf is None or buf.dtype != t3.dtype or buf.numel() < t3.numel():
            buf = self._buf = torch.empty(t3.numel(), dtype=t3.dtype)
        return torch.mul(t3, t3, out=buf[:t3.numel()].view(t3.shape))

    def clear(self) -> None:
        """Forget the cached activity (not the weight-derived fan-outs)."""
        self._cache, self._declared = [], {}

    @staticmethod
    def _key(t: torch.Tensor, features: int):
        return (t.data_ptr(), t.numel(), t.dtype, t._version, features)

    def declare(self, t: torch.Tensor, c: float, signed: bool) -> None:
        """``t`` holds only values in {0, c} (or {-c, 0, c})."""
        self._declared[(t.data_ptr(), t.numel(), t.dtype, t._version)] = (t, float(c), bool(signed))
        if len(self._declared) > self.keep:
            self._declared.pop(next(iter(self._declared)))

    def columns(self, t: torch.Tensor, features: int):
        """(cols int64 [T, features], spike_like bool [T]) of ``t`` [T, ..., features]-shaped data."""
        key = self._key(t, features)
        for k, ref, res in self._cache:
            if k == key and ref is not None:
                return res
        res = self._compute(t.detach(), features)
        self._cache.append((key, t, res))
        if len(self._cache) > self.keep:
            self._cache.pop(0)
        return res

    def _compute(self, t: torch.Tensor, F_: int):
        T = t.shape[0]
        t3 = t.reshape(T, -1, F_)                                # [T, R, F]
        R = t3.shape[1]
        dt = t3.dtype if t3.is_floating_point() else torch.float32
        if not t3.is_floating_point():
            t3 = t3.to(dt)
        if R >= 2 ** 24 and dt == torch.float32:
            dt = torch.float64
            t3 = t3.to(dt)
        decl = self._declared.get((t.data_ptr(), t.numel(), t.dtype, t._version))
        fast = getattr(get_kernels(), "column_activity", None)       # one pass in a compiled kernel set
        res = fast(t3.contiguous()) if fast is not None else None
        if res is not None:
            cols, amax, same = res
            if decl is not None and decl[1] > 0:
                return cols, torch.full((T,), _pow2(decl[1]), dtype=torch.bool)
            mant, _ = torch.frexp(amax)
            return cols, same & ((mant == 0.5) | (amax == 0))
        ones = torch.ones(T, 1, R, dtype=dt)
        if decl is not None and decl[1] > 0:
            _, c, signed = decl
            v = t3.abs() if signed else t3
            cols = torch.bmm(ones, v).squeeze(1).div_(c).round_().to(torch.int64)
            return cols, torch.full((T,), _pow2(c), dtype=torch.bool)
        if torch.equal(t3, self._square(t3)):                   # x == x^2 exactly iff x in {0, 1}: binary spikes
            cols = torch.bmm(ones, t3).squeeze(1).round_().to(torch.int64)
            return cols, torch.ones(T, dtype=torch.bool)
        nz = (t3 != 0).to(dt)
        cols = torch.bmm(ones, nz).squeeze(1).round_().to(torch.int64)
        return cols, spike_like(t)


# -- helpers ---------------------------------------------------------------------------------------
def spike_like(x: torch.Tensor) -> torch.Tensor:
    """Per step, whether every entry lies in {-c, 0, c} with c a power of two. Shape: [T, ...] -> bool [T].

    Every |x| <= c = max|x|, so sum|x| == c * nnz holds exactly when every nonzero |x| equals c.
    The sum is taken in float64 (pairwise): exact when the values are equal, and its rounding error
    stays far below the deficit of one float32 value under c otherwise. Used for inputs that are
    neither declared spikes nor binary (the fast paths of :class:`Activity`).
    """
    T = x.shape[0]
    a = x.detach().reshape(T, -1).abs()
    c = a.amax(1) if a.shape[1] else torch.zeros(T, dtype=a.dtype)  # [T]
    nnz = (a != 0).sum(1)
    same = a.sum(1, dtype=torch.float64) == c.double() * nnz
    mant, _ = torch.frexp(c)
    return same & ((mant == 0.5) | (c == 0))


def _split(eff: torch.Tensor, dense: torch.Tensor, ac: torch.Tensor) -> dict:
    zero = torch.zeros_like(eff)
    return {"ac": torch.where(ac, eff, zero), "mac": torch.where(ac, zero, eff),
            "ac_dense": torch.where(ac, dense, zero), "mac_dense": torch.where(ac, zero, dense)}


def _bytes(t: torch.Tensor) -> int:
    return t.element_size()


# -- synapses --------------------------------------------------------------------------------------
def linear_rule(m: nn.Module, x: torch.Tensor, y: torch.Tensor, act: Activity) -> dict:
    """Dense layer ``y = x W^T + b`` (neuro.synapses.Linear, torch.nn.Linear). x [T, *, in]."""
    W = m.weight.detach()  # [out, in]
    n_out, n_in = W.shape
    T = x.shape[0]
    per_input, ac = act.columns(x, n_in)                    # [T, in] nonzero inputs per input line
    fan = act.cached(m.weight, lambda: (W != 0).to(torch.int64).sum(0))  # [in] nonzero fan-out
    eff = per_input @ fan                                   # [T]
    rows = x[0].numel() // n_in
    dense = torch.full((T,), rows * n_in * n_out, dtype=torch.int64)
    out = _split(eff, dense, ac)
    out["mem_read_byte"] = eff * _bytes(W) + per_input.sum(1) * _bytes(x)
    out["mem_write_byte"] = torch.full((T,), rows * n_out * _bytes(y), dtype=torch.int64)
    return out


def sparse_linear_rule(m: nn.Module, x: torch.Tensor, y: torch.Tensor, act: Activity) -> dict:
    """CSR synapse (neuro.synapses.SparseLinear): fan-out = nonzero stored synapses of each input;
    dense = every input times every (pre, post) pair, n_in * n_out."""
    T = x.shape[0]
    per_input, ac = act.columns(x, m.n_in)                  # [T, n_in]
    eff = per_input @ act.cached(m.values, lambda: fan_out(m))
    rows = x[0].numel() // m.n_in
    dense = torch.full((T,), rows * m.n_in * m.n_out, dtype=torch.int64)
    out = _split(eff, dense, ac)
    out["mem_read_byte"] = eff * (_bytes(m.values) + _bytes(m.indices)) + per_input.sum(1) * _bytes(x)
    out["mem_write_byte"] = torch.full((T,), rows * m.n_out * _bytes(y), dtype=torch.int64)
    return out


def delay_linear_rule(m: nn.Module, x: torch.Tensor, y: torch.Tensor, act: Activity) -> dict:
    """Learnable-delay synapse (neuro.synapses.DelayLinear): each nonzero input reaches each of its
    nonzero-weight synapses once, arriving ``d`` steps later, so the synaptic operations are those of
    the same Linear layer (NeuroBench's definition; a layer still training with Gaussian taps is
    counted as its finalized, one-tap-per-synapse equivalent). Memory: per synaptic operation the
    weight, a one-byte delay and a read-modify-write of its ring-buffer slot; each step's output read
    once. x [T, *, in]."""
    W = m.weight.detach()  # [out, in]
    n_out, n_in = W.shape
    T = x.shape[0]
    per_input, ac = act.columns(x, n_in)
    fan = act.cached(m.weight, lambda: (W != 0).to(torch.int64).sum(0))
    eff = per_input @ fan
    rows = x[0].numel() // n_in
    out = _split(eff, torch.full((T,), rows * n_in * n_out, dtype=torch.int64), ac)
    out["mem_read_byte"] = eff * (_bytes(W) + 1 + _bytes(y)) + per_input.sum(1) * _bytes(x)
    out["mem_write_byte"] = eff * _bytes(y) + rows * n_out * _bytes(y)
    return out


def fan_out(m: nn.Module) -> torch.Tensor:
    """Nonzero out-degree of each presynaptic neuron of a SparseLinear. Shape: int64 [n_in]."""
    nzv = (m.values.detach() != 0).to(torch.int64)
    pre = torch.repeat_interleave(torch.arange(m.n_in), m.indptr.diff())
    return torch.zeros(m.n_in, dtype=torch.int64).index_add_(0, pre, nzv)


def _reach(m: nn.Module, weight: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """For each input pixel (c, y, x), the synaptic operations one nonzero input there causes:
    sum over the output positions it reaches of the nonzero weights linking them. Shape: [C, H, W]."""
    O, C, kh, kw = weight.shape
    (sh, sw), (ph, pw) = tuple(m.stride), tuple(m.padding)
    OH, OW = (H + 2 * ph - kh) // sh + 1, (W + 2 * pw - kw) // sw + 1
    oph = H - ((OH - 1) * sh - 2 * ph + kh)
    opw = W - ((OW - 1) * sw - 2 * pw + kw)
    ones = torch.ones(1, O, OH, OW, dtype=torch.float64)
    r = F.conv_transpose2d(ones, weight.to(torch.float64), stride=(sh, sw), padding=(ph, pw),
                           output_padding=(oph, opw))
    return r[0].round().to(torch.int64)  # [C, H, W]


def conv2d_rule(m: nn.Module, x: torch.Tensor, y: torch.Tensor, act: Activity) -> dict:
    """2-D convolution (neuro.synapses.Conv2d, torch.nn.Conv2d; groups = dilation = 1).
    x [T, B, C, H, W] (or [T, C, H, W])."""
    W = m.weight.detach()
    T = x.shape[0]
    C, H, Wd = x.shape[-3:]
    per_input, ac = act.columns(x, C * H * Wd)                       # [T, C*H*W]
    reach = act.cached(m.weight, lambda: _reach(m, (W != 0), H, Wd).reshape(-1), (H, Wd))
    reach_dense = act.cached(m.weight, lambda: _reach(m, torch.ones_like(W, dtype=torch.bool), H, Wd).reshape(-1),
                             (H, Wd, "dense"))
    eff = per_input @ reach
    rows = x[0].numel() // (C * H * Wd)
    dense = torch.full((T,), rows * int(reach_dense.sum()), dtype=torch.int64)
    out = _split(eff, dense, ac)
    out["mem_read_byte"] = eff * _bytes(W) + per_input.sum(1) * _bytes(x)
    out["mem_write_byte"] = torch.full((T,), y[0].numel() * _bytes(y), dtype=torch.int64)
    return out


# -- neurons and functions -------------------------------------------------------------------------
def neuron_rule(m: nn.Module, x: torch.Tensor, y, act: Activity) -> dict:
    """Any StatefulModule neuron: one update per neuron and step; active = emitted a spike."""
    y = y[0] if isinstance(y, tuple) else y
    T = y.shape[0]
    n = y[0].numel()
    alphabet = spike_alphabet(m)
    if alphabet is not None:
        act.declare(y, *alphabet)
    cols, _ = act.columns(y, y.shape[-1] if y.dim() > 1 else 1)      # shared with the next synapse layer
    spikes = cols.sum(1)                                             # [T]
    fields = len(m.state) if getattr(m, "state", None) is not None else 1
    state_bytes = n * fields * _bytes(y)
    return {"neuron_update_active": spikes, "neuron_update_inactive": n - spikes, "spike": spikes,
            "mem_read_byte": torch.full((T,), state_bytes, dtype=torch.int64),
            "mem_write_byte": state_bytes + spikes * SPIKE_EVENT_BYTES}


def nonlinear_rule(m: nn.Module, x: torch.Tensor, y: torch.Tensor, act: Activity) -> dict:
    """Element-wise function (ReLU, GELU, ...): one evaluation per output element."""
    T = y.shape[0]
    n = y[0].numel()
    return {"nonlinear": torch.full((T,), n, dtype=torch.int64),
            "mem_read_byte": torch.full((T,), n * _bytes(x), dtype=torch.int64),
            "mem_write_byte": torch.full((T,), n * _bytes(y), dtype=torch.int64)}


def passive_rule(m: nn.Module, x: torch.Tensor, y: torch.Tensor, act: Activity) -> dict:
    """Reshapes and identities (Flatten, Dropout at inference): no operations."""
    return {}


def _register_builtin() -> None:
    from ..models.sequential import Flatten, SpikingSequential
    from ..synapses.conv import Conv2d
    from ..synapses.linear import Linear
    from ..synapses.sparse import SparseLinear

    for cls in (Linear, nn.Linear):
        register_rule(cls, "synapse", linear_rule)
    register_rule(SparseLinear, "synapse", sparse_linear_rule)
    from ..synapses.delay import DelayLinear

    register_rule(DelayLinear, "synapse", delay_linear_rule)  # before StatefulModule's neuron rule in its MRO
    for cls in (Conv2d, nn.Conv2d):
        register_rule(cls, "synapse", conv2d_rule)
    register_rule(StatefulModule, "neuron", neuron_rule)
    for cls in (nn.ReLU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.SiLU, nn.Softmax, nn.LeakyReLU, nn.ELU):
        register_rule(cls, "nonlinear", nonlinear_rule)
    for cls in (Flatten, nn.Flatten, nn.Identity, nn.Dropout):
        register_rule(cls, "passive", passive_rule)
    register_container(SpikingSequential)
    from ..neurons import ALIF, IF, LIF, STBIF, CubaLIF

    for cls in (LIF, IF, CubaLIF, ALIF):  # heaviside spikes: {0, 1}
        register_spike_alphabet(cls, lambda m: (1.0, False))
    register_spike_alphabet(STBIF, lambda m: (m.params.theta, True))  # theta * {-1, 0, 1}


_register_builtin()
from . import transformer_rules  # noqa: E402,F401  (the float reference Transformer's rules)
