r"""Pair-based spike-timing-dependent plasticity (STDP) as a reusable rule.

Each presynaptic neuron :math:`i` and postsynaptic neuron :math:`j` keeps a trace that jumps by
``trace_increment`` :math:`\Delta x` at a spike and decays with its time constant. One step, in this order:

.. math::
    x^{pre} \leftarrow d_{pre}\, x^{pre}, \qquad x^{post} \leftarrow d_{post}\, x^{post}
    \qquad (d = e^{-dt/\tau})

    \Delta w_{ij} = \eta_+\, x^{pre}_i\, s^{post}_j \;-\; \eta_-\, s^{pre}_i\, x^{post}_j

    x^{pre} \leftarrow x^{pre} + \Delta x\, s^{pre}, \qquad x^{post} \leftarrow x^{post} + \Delta x\, s^{post}

    w \leftarrow \mathrm{clip}(w + \Delta w,\ w_{min},\ w_{max})

The traces are compared before this step's spikes join them, so a single pair with the
postsynaptic spike :math:`k` steps after the presynaptic one gives exactly
:math:`\Delta w = \eta_+ \Delta x\, d_{pre}^{\,k}`, the reverse order :math:`-\eta_- \Delta x\, d_{post}^{\,k}`,
and simultaneous spikes nothing (all-to-all pairing: every earlier spike contributes through the trace).
Batched spikes ([B, n]) sum their updates over the batch.

The rule runs on the engine's synapses through a registry keyed by synapse type
(:data:`WEIGHT_VIEWS`): :class:`~neuro.synapses.Linear` and ``torch.nn.Linear`` (dense weight [out, in])
and :class:`~neuro.synapses.SparseLinear` (CSR by presynaptic neuron; only stored synapses change,
computed per synapse without a dense matrix). ``eta_plus`` / ``eta_minus`` may be overridden per step
(e.g. by an astrocyte, see :mod:`neuro.models.nalsm`) with a float or a per-presynaptic tensor [n_in].

Sources: Bi & Poo 1998; Song, Miller & Abbott 2000 (additive pair-based STDP with traces);
Morrison, Diesmann & Gerstner 2008 (trace formulation); REFERENCE §1 (NALSM traces).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional, Union

import torch
from torch import nn

from ..core.errors import ParameterError, ShapeError
from ..core.params import Params, finite, non_negative, param, positive, record
from .linear import Linear
from .sparse import SparseLinear

Rate = Union[float, torch.Tensor]


@record
class STDPParams(Params):
    tau_pre_ms: float = param(20.0, positive, doc="presynaptic trace time constant (ms)")
    tau_post_ms: float = param(20.0, positive, doc="postsynaptic trace time constant (ms)")
    dt_ms: float = param(1.0, positive, doc="time step (ms)")
    eta_plus: float = param(0.01, non_negative, doc="potentiation learning rate")
    eta_minus: float = param(0.012, non_negative, doc="depression learning rate")
    trace_increment: float = param(1.0, positive, doc="jump of a trace at a spike")
    w_min: float = param(0.0, finite, doc="lower weight bound")
    w_max: float = param(1.0, finite, doc="upper weight bound")

    def _check(self):
        if self.w_min > self.w_max:
            self.fail("w_min", f"<= w_max={self.w_max}")

    @property
    def decay_pre(self) -> float:
        return math.exp(-self.dt_ms / self.tau_pre_ms)

    @property
    def decay_post(self) -> float:
        return math.exp(-self.dt_ms / self.tau_post_ms)


class STDPState(NamedTuple):
    x_pre: torch.Tensor   # [B, n_in]
    x_post: torch.Tensor  # [B, n_out]


def stdp_traces(s_pre: torch.Tensor, s_post: torch.Tensor, state: STDPState, p: STDPParams):
    """Decay the traces (first half of a step). Returns the decayed (x_pre, x_post)."""
    return state.x_pre * p.decay_pre, state.x_post * p.decay_post


def stdp_step_dense(s_pre: torch.Tensor, s_post: torch.Tensor, state: STDPState, p: STDPParams,
                    eta_plus: Optional[Rate] = None, eta_minus: Optional[Rate] = None):
    """One STDP step on a dense [n_in, n_out] update. Shape: s_pre [B, n_in], s_post [B, n_out].

    Returns (dw [n_in, n_out], new state).
    """
    xp, xq = stdp_traces(s_pre, s_post, state, p)
    ep, em = _rates(p, eta_plus, eta_minus)
    dw = _col(ep) * (xp.t() @ s_post) - _col(em) * (s_pre.t() @ xq)           # [n_in, n_out]
    return dw, STDPState(xp + p.trace_increment * s_pre, xq + p.trace_increment * s_post)


def stdp_step_csr(s_pre: torch.Tensor, s_post: torch.Tensor, state: STDPState, p: STDPParams,
                  pre: torch.Tensor, post: torch.Tensor,
                  eta_plus: Optional[Rate] = None, eta_minus: Optional[Rate] = None):
    """One STDP step on the stored synapses (pre[k] -> post[k]) only. Returns (dw [nnz], new state)."""
    xp, xq = stdp_traces(s_pre, s_post, state, p)
    ep, em = _rates(p, eta_plus, eta_minus)
    ltp = (xp[:, pre] * s_post[:, post]).sum(0)                                 # [nnz]
    ltd = (s_pre[:, pre] * xq[:, post]).sum(0)                                  # [nnz]
    ep = ep[pre] if isinstance(ep, torch.Tensor) and ep.dim() else ep
    em = em[pre] if isinstance(em, torch.Tensor) and em.dim() else em
    dw = ep * ltp - em * ltd
    return dw, STDPState(xp + p.trace_increment * s_pre, xq + p.trace_increment * s_post)


def _rates(p: STDPParams, eta_plus, eta_minus):
    return (p.eta_plus if eta_plus is None else eta_plus), (p.eta_minus if eta_minus is None else eta_minus)


def _col(r: Rate):
    return r[:, None] if isinstance(r, torch.Tensor) and r.dim() == 1 else r


# -- synapse types the rule can write to --------------------------------------------------------------
class _DenseView:
    """Weight [out, in] of Linear / torch.nn.Linear, updated through the transposed dense dw."""

    @staticmethod
    def sizes(m):
        return m.weight.shape[1], m.weight.shape[0]

    @staticmethod
    def update(m, s_pre, s_post, state, p, ep, em, lo, hi):
        dw, state = stdp_step_dense(s_pre, s_post, state, p, ep, em)              # [in, out]
        w = m.weight                                                               # [out, in]
        w.add_(dw.t().to(w.dtype))
        if _tensor(lo, hi):
            w.copy_(torch.maximum(torch.minimum(w, _row(hi)), _row(lo)))
        else:
            w.clamp_(lo, hi)
        return dw, state


class _CSRView:
    """Values [nnz] of a SparseLinear (CSR by presynaptic neuron)."""

    @staticmethod
    def sizes(m):
        return m.n_in, m.n_out

    @staticmethod
    def pre_index(m) -> torch.Tensor:
        """Presynaptic neuron of every stored synapse, cached per CSR structure. Shape: int64 [nnz]."""
        key = (m.indptr.data_ptr(), m.indptr._version, m.indices.numel())
        cached = getattr(m, "_stdp_pre", None)
        if cached is None or cached[0] != key:
            cached = (key, torch.repeat_interleave(torch.arange(m.n_in), m.indptr.diff()))
            m._stdp_pre = cached
        return cached[1]

    @classmethod
    def update(cls, m, s_pre, s_post, state, p, ep, em, lo, hi):
        pre = cls.pre_index(m)
        dw, state = stdp_step_csr(s_pre, s_post, state, p, pre, m.indices, ep, em)
        v = m.values
        v.add_(dw.to(v.dtype))
        if _tensor(lo, hi):
            v.copy_(torch.maximum(torch.minimum(v, _per_pre(hi, pre)), _per_pre(lo, pre)))
        else:
            v.clamp_(lo, hi)
        return dw, state


def _tensor(lo, hi) -> bool:
    return isinstance(lo, torch.Tensor) or isinstance(hi, torch.Tensor)


def _row(b):
    # per-presynaptic bound [n_in] -> broadcast over a weight [out, in]
    return b[None, :] if isinstance(b, torch.Tensor) else torch.tensor(b)


def _per_pre(b, pre):
    return b[pre] if isinstance(b, torch.Tensor) else torch.tensor(b)


WEIGHT_VIEWS: dict[type, type] = {Linear: _DenseView, nn.Linear: _DenseView, SparseLinear: _CSRView}


def register_weight_view(cls: type, view: type) -> None:
    """Let :class:`STDP` write to synapses of type ``cls`` (``view`` has ``sizes`` and ``update``)."""
    WEIGHT_VIEWS[cls] = view


def _view_for(synapse: nn.Module):
    for cls in type(synapse).__mro__:
        if cls in WEIGHT_VIEWS:
            return WEIGHT_VIEWS[cls]
    raise ParameterError("STDP", "synapse", type(synapse).__name__,
                         "one of " + ", ".join(c.__name__ for c in WEIGHT_VIEWS))


class STDP:
    """Pair-based STDP bound to one synapse: keeps the traces, writes the weights in place.

    Args: synapse (Linear, torch.nn.Linear or SparseLinear), params (:class:`STDPParams` or its fields).

    ``step(pre, post, eta_plus=None, eta_minus=None, w_min=None, w_max=None) -> dw`` takes the spikes of
    one time step (Shape: pre [B, n_in] or [n_in], post [B, n_out] or [n_out]); rates and bounds may be
    floats or per-presynaptic tensors [n_in]. Returns dw ([n_in, n_out] dense, [nnz] for CSR).

    Examples:
        >>> syn = Linear(2, 1, bias=False)
        >>> rule = STDP(syn, eta_plus=0.1, tau_pre_ms=10.0)
        >>> _ = rule.step(torch.tensor([1., 0.]), torch.tensor([0.]))
        >>> dw = rule.step(torch.tensor([0., 0.]), torch.tensor([1.]))   # 0.1 * exp(-1/10) on w[0, 0]
    """

    def __init__(self, synapse: nn.Module, params: Optional[STDPParams] = None, **fields):
        params = params if params is not None else STDPParams()
        if not isinstance(params, STDPParams):
            raise ParameterError("STDP", "params", params, "an STDPParams")
        self.params = params.replace(**fields) if fields else params
        self.synapse = synapse
        self.view = _view_for(synapse)
        self.n_in, self.n_out = self.view.sizes(synapse)
        self.state: Optional[STDPState] = None

    def reset(self) -> None:
        """Forget the traces."""
        self.state = None

    @torch.no_grad()
    def step(self, pre: torch.Tensor, post: torch.Tensor, eta_plus: Optional[Rate] = None,
             eta_minus: Optional[Rate] = None, w_min: Optional[Rate] = None, w_max: Optional[Rate] = None):
        pre = pre[None] if pre.dim() == 1 else pre
        post = post[None] if post.dim() == 1 else post
        if pre.shape[-1] != self.n_in or post.shape[-1] != self.n_out or pre.shape[0] != post.shape[0]:
            raise ShapeError("STDP", f"spikes pre {tuple(pre.shape)} / post {tuple(post.shape)} do not match the "
                                     f"synapse's {self.n_in} inputs and {self.n_out} outputs")
        dtype = next(self.synapse.parameters()).dtype                           # traces in the weights' dtype
        pre, post = pre.to(dtype), post.to(dtype)
        if self.state is None or self.state.x_pre.shape[0] != pre.shape[0]:
            self.state = STDPState(torch.zeros_like(pre), torch.zeros_like(post))
        lo = self.params.w_min if w_min is None else w_min
        hi = self.params.w_max if w_max is None else w_max
        dw, self.state = self.view.update(self.synapse, pre, post, self.state, self.params,
                                          eta_plus, eta_minus, lo, hi)
        return dw

    def __repr__(self) -> str:
        return f"STDP({type(self.synapse).__name__} {self.n_in}->{self.n_out}, {self.params})"
