r"""Neuron-astrocyte liquid state machine (NALSM).

Liquid (REFERENCE §1, after Ivanov & Michmizos, NeurIPS 2021): ``n`` neurons on a 3-D grid, 80 %
excitatory and 20 % inhibitory (random assignment); a pair (i -> j) is connected with probability
:math:`P = C_{type(i)type(j)} \exp(-(D_{ij}/\lambda)^2)`, :math:`C_{EE}, C_{EI}, C_{IE}, C_{II} =
0.2, 0.1, 0.3, 0.05`, :math:`\lambda = 3` (grid units). Every (input, neuron) pair is connected with
probability 0.15 (input density). Neurons are current-based LIF with :math:`\tau_v = 64` ms, threshold
20, reset 0, 2 ms refractory period and the synaptic kernel :math:`e^{-s/\tau_u}/\tau_u` (unit area), with
:math:`\tau_u = 1` ms for excitatory and input synapses and 2 ms for inhibitory ones; dt = 1 ms:

.. math::
    I^{E}_t = d_1 I^{E}_{t-1} + (1 - d_1)(W_{in} x_t + W_{E} s^E_{t-1}), \quad
    I^{I}_t = d_2 I^{I}_{t-1} + (1 - d_2)\, W_{I} s^I_{t-1}

    v_t = d_v v_{t-1} + I^E_t + I^I_t \ \text{(not refractory)}, \quad s_t = H(v_t - 20), \quad v \to 0

Weights start at E 1.0, I -1.0 (times ``w_scale``) and input uniform in [0, 3] and stay clipped to
E [0, 3], I [-3, 0], input [-3, 3].

Plasticity (:mod:`neuro.synapses.stdp`, traces with increment 0.1 and decay :math:`e^{-1/10}` per ms):
excitatory and input presynaptic neurons :math:`\Delta w = \eta_+ x_{pre} s_{post} - A(t)\, s_{pre} x_{post}`,
inhibitory ones :math:`\Delta w = -A(t)\, x_{pre} s_{post} + \eta_+ s_{pre} x_{post}`, :math:`\eta_+ = 0.15`.
The depression rate :math:`A` is

* ``'stdp'``: constant, :math:`A = A_0 = 0.15` (unmodulated STDP);
* ``'nalsm'``: an astrocyte integrating liquid and input activity,
  :math:`A \leftarrow A + (w_A (\sum s^{liquid} - \sum s^{input}) + b_A - A) / \tau_A`,
  :math:`\tau_A = 100` ms, :math:`A_0 = b_A = 0.15`, :math:`w_A = 0.015` (1000 neurons; scaled by
  1000/n otherwise): when the liquid fires more than its input, depression grows and pulls it back.

Branching factor (:func:`branching_factor`): for each liquid spike of neuron i at t, the spikes of its
postsynaptic neurons in (t, t+4] divided by max(1, the spikes of its presynaptic neurons in [t-4, t)),
averaged over spikes. Near 1: activity neither dies out nor explodes.

Read-out: spike counts of the liquid per sample, logistic regression (scikit-learn).
Demo (:func:`run_digits`): scikit-learn's 8x8 digits as Poisson spike trains (rate = pixel / 16 times
``max_rate`` per ms), liquid ``'none'`` (plain LSM), ``'stdp'`` and ``'nalsm'``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np
import torch
from torch import nn

from ..core.errors import ParameterError
from ..core.params import Params, integer, non_negative, one_of, param, positive, record
from ..synapses.sparse import SparseLinear
from ..synapses.stdp import STDP, STDPParams

PLASTICITY = ("none", "stdp", "nalsm")


@record
class NALSMParams(Params):
    grid: int = param(10, integer(2), doc="neurons per side of the cubic grid (n = grid^3)")
    frac_exc: float = param(0.8, positive, doc="fraction of excitatory neurons")
    c_ee: float = param(0.2, non_negative)
    c_ei: float = param(0.1, non_negative)
    c_ie: float = param(0.3, non_negative)
    c_ii: float = param(0.05, non_negative)
    lam: float = param(3.0, positive, doc="connection length scale (grid units)")
    input_density: float = param(0.15, positive, doc="probability of each (input, neuron) synapse")
    tau_v_ms: float = param(64.0, positive)
    v_th: float = param(20.0, positive)
    refractory_ms: float = param(2.0, non_negative)
    tau_u_exc_ms: float = param(1.0, positive)
    tau_u_inh_ms: float = param(2.0, positive)
    w_scale: float = param(1.0, positive, doc="initial |w| of liquid synapses")
    eta_plus: float = param(0.15, non_negative)
    a0: float = param(0.15, non_negative, doc="A_0 = b_A")
    tau_astro_ms: float = param(100.0, positive, doc="tau_A")
    w_astro: Optional[float] = param(None, doc="w_A; None = 0.015 * 1000 / n")
    plasticity: str = param("nalsm", one_of(*PLASTICITY))
    dt_ms: float = param(1.0, positive)

    def _check(self):
        if not self.frac_exc < 1:
            self.fail("frac_exc", "in (0, 1)")
        if self.w_astro is not None and not (isinstance(self.w_astro, (int, float)) and math.isfinite(self.w_astro)):
            self.fail("w_astro", "a finite number or None")

    @property
    def n(self) -> int:
        return self.grid ** 3


class LiquidState(NamedTuple):
    v: torch.Tensor      # [B, n]
    i_e: torch.Tensor    # [B, n] excitatory + input synaptic current
    i_i: torch.Tensor    # [B, n] inhibitory synaptic current
    ref: torch.Tensor    # [B, n] remaining refractory steps
    s: torch.Tensor      # [B, n] spikes of the last step


def liquid_step(x: torch.Tensor, state: LiquidState, syn_in: nn.Module, syn_e: nn.Module, syn_i: nn.Module,
                exc: torch.Tensor, p: NALSMParams):
    """One liquid step. Shape: x [B, n_in] input spikes -> spikes [B, n]."""
    d1 = math.exp(-p.dt_ms / p.tau_u_exc_ms)
    d2 = math.exp(-p.dt_ms / p.tau_u_inh_ms)
    dv = math.exp(-p.dt_ms / p.tau_v_ms)
    i_e = d1 * state.i_e + (1 - d1) * (syn_in(x) + syn_e(state.s[:, exc]))      # [B, n]
    i_i = d2 * state.i_i + (1 - d2) * syn_i(state.s[:, ~exc])                  # [B, n]
    free = state.ref <= 0
    v = torch.where(free, dv * state.v + i_e + i_i, torch.zeros_like(state.v))  # [B, n]
    s = (v >= p.v_th).to(v.dtype)
    v = v * (1 - s)                                                            # reset to 0
    ref = torch.where(s > 0, torch.full_like(state.ref, round(p.refractory_ms / p.dt_ms)), state.ref - 1)
    return s, LiquidState(v, i_e, i_i, ref, s)


def _grid_positions(g: int) -> np.ndarray:
    ax = np.arange(g)
    return np.stack(np.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3).astype(np.float64)  # [n, 3]


def _csr_from_mask(mask: np.ndarray, values: np.ndarray) -> SparseLinear:
    """mask [n_in, n_out] bool, values [n_in, n_out] -> SparseLinear (by presynaptic row)."""
    r, c = np.nonzero(mask)
    indptr = np.zeros(mask.shape[0] + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(np.bincount(r, minlength=mask.shape[0]))
    return SparseLinear(indptr, c.astype(np.int64), torch.as_tensor(values[r, c], dtype=torch.float32), mask.shape[1])


class Liquid(nn.Module):
    """The 3-D liquid with its three synapse groups and (optionally) plasticity.

    Args: n_in (input channels), params (:class:`NALSMParams`), seed.
    """

    def __init__(self, n_in: int, params: Optional[NALSMParams] = None, seed: int = 0):
        super().__init__()
        p = params if params is not None else NALSMParams()
        self.params, self.n_in = p, n_in
        rng = np.random.default_rng(seed)
        n = p.n
        exc = np.zeros(n, dtype=bool)
        exc[rng.permutation(n)[: int(round(p.frac_exc * n))]] = True
        pos = _grid_positions(p.grid)
        d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1)                 # [n, n] squared distance
        C = np.where(exc[:, None], np.where(exc[None, :], p.c_ee, p.c_ei), np.where(exc[None, :], p.c_ie, p.c_ii))
        prob = C * np.exp(-d2 / p.lam ** 2)
        np.fill_diagonal(prob, 0.0)
        mask = rng.random((n, n)) < prob                                       # [pre, post]
        self.register_buffer("exc", torch.as_tensor(exc))
        self.syn_e = _csr_from_mask(mask[exc], np.full((int(exc.sum()), n), p.w_scale))
        self.syn_i = _csr_from_mask(mask[~exc], np.full((int((~exc).sum()), n), -p.w_scale))
        in_mask = rng.random((n_in, n)) < p.input_density
        self.syn_in = _csr_from_mask(in_mask, rng.uniform(0.0, 3.0, (n_in, n)))
        self.adjacency = mask                                                  # [pre, post] numpy bool
        for m in (self.syn_e, self.syn_i, self.syn_in):
            m.values.requires_grad_(False)

    @property
    def w_astro(self) -> float:
        p = self.params
        return p.w_astro if p.w_astro is not None else 0.015 * 1000 / p.n

    def init_state(self, batch: int) -> LiquidState:
        z = torch.zeros(batch, self.params.n)
        return LiquidState(z, z, z, z, z)

    @torch.no_grad()
    def run(self, x_seq: torch.Tensor, plasticity: str = "none") -> tuple[torch.Tensor, dict]:
        """Drive the liquid with input spikes; learn with STDP when asked.

        Shape: x_seq [T, B, n_in] -> spikes [T, B, n]. Returns (spikes, info with the astrocyte trace).
        Plasticity runs with B = 1 (one sample at a time, as in the original).
        """
        if plasticity not in PLASTICITY:
            raise ParameterError("Liquid.run", "plasticity", plasticity, "one of " + ", ".join(PLASTICITY))
        p = self.params
        T, B, _ = x_seq.shape
        state = self.init_state(B)
        exc = self.exc
        rules = None
        if plasticity != "none":
            if B != 1:
                raise ParameterError("Liquid.run", "batch", B, "1 while plasticity is on")
            sp = STDPParams(tau_pre_ms=10.0, tau_post_ms=10.0, dt_ms=p.dt_ms, eta_plus=p.eta_plus, eta_minus=p.a0,
                            trace_increment=0.1, w_min=-3.0, w_max=3.0)
            rules = {"in": STDP(self.syn_in, sp), "e": STDP(self.syn_e, sp), "i": STDP(self.syn_i, sp)}
        A = p.a0
        astro, out = [], []
        for t in range(T):
            x = x_seq[t]
            s, state = liquid_step(x, state, self.syn_in, self.syn_e, self.syn_i, exc, p)
            out.append(s)
            if rules is not None:
                if plasticity == "nalsm":
                    A = A + (self.w_astro * (float(s.sum()) - float(x.sum())) + p.a0 - A) * p.dt_ms / p.tau_astro_ms
                astro.append(A)
                # every spike enters the rule at its emission step; a liquid spike reaches its targets one
                # step later, the first step at which the pair rule counts a causal pair
                rules["in"].step(x, s, eta_plus=p.eta_plus, eta_minus=A, w_min=-3.0, w_max=3.0)
                rules["e"].step(s[:, exc], s, eta_plus=p.eta_plus, eta_minus=A, w_min=0.0, w_max=3.0)
                rules["i"].step(s[:, ~exc], s, eta_plus=-A, eta_minus=-p.eta_plus, w_min=-3.0, w_max=0.0)
        return torch.stack(out), {"astro": astro}


def branching_factor(spikes: torch.Tensor, adjacency: np.ndarray, window: int = 4) -> float:
    """Mean over liquid spikes of (postsynaptic spikes in (t, t+w]) / max(1, presynaptic spikes in [t-w, t)).

    Shape: spikes [T, B, n] (0/1); adjacency [n, n] bool (pre, post). Steps are 1 ms.
    """
    s = spikes.detach().to(torch.float64)
    T = s.shape[0]
    c = torch.cat([torch.zeros(1, *s.shape[1:], dtype=s.dtype), s.cumsum(0)])   # [T+1, B, n]
    t = torch.arange(T)
    hi = (t + window).clamp(max=T - 1)
    fwd = c[hi + 1] - c[t + 1]                                                 # spikes in (t, t+w]
    lo = (t - window).clamp(min=0)
    bwd = c[t] - c[lo]                                                         # spikes in [t-w, t)
    A = torch.as_tensor(adjacency, dtype=torch.float64)                        # [pre, post]
    desc = fwd @ A.t()                                                         # [T, B, n]: sum over posts of i
    anc = bwd @ A                                                              # [T, B, n]: sum over pres of i
    ratio = desc / anc.clamp(min=1)
    n_spk = s.sum()
    return float((ratio * s).sum() / n_spk) if n_spk > 0 else float("nan")


def poisson_digits(max_rate: float = 0.2, steps: int = 100, seed: int = 0, n: Optional[int] = None):
    """scikit-learn's 8x8 digits as Poisson spike trains. Returns (spikes [T, N, 64], labels [N])."""
    from sklearn.datasets import load_digits

    d = load_digits()
    X = torch.as_tensor(d.data, dtype=torch.float32) / 16.0                    # [N, 64] in [0, 1]
    y = torch.as_tensor(d.target)
    if n is not None:
        X, y = X[:n], y[:n]
    g = torch.Generator().manual_seed(seed)
    spikes = (torch.rand(steps, *X.shape, generator=g) < X[None] * max_rate).float()  # [T, N, 64]
    return spikes, y


@dataclass
class DigitsResult:
    plasticity: str
    accuracy: float
    branching_factor: float
    rate_hz: float
    seconds: float

    def as_dict(self) -> dict:
        return dict(vars(self))


def run_digits(plasticity: str, params: Optional[NALSMParams] = None, steps: int = 100, max_rate: float = 0.2,
               n_samples: Optional[int] = None, n_plastic: int = 100, seed: int = 0, progress: bool = False,
               chunk: int = 256) -> DigitsResult:
    """Build a liquid, (optionally) let it learn on ``n_plastic`` training samples, then read out digits."""
    from sklearn.linear_model import LogisticRegression
    from tqdm import tqdm

    t0 = time.perf_counter()
    params = (params or NALSMParams()).replace(plasticity=plasticity)
    torch.manual_seed(seed)
    X, y = poisson_digits(max_rate, steps, seed, n_samples)                    # [T, N, 64], [N]
    N = X.shape[1]
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(seed))
    n_train = int(0.8 * N)
    tr, te = perm[:n_train], perm[n_train:]
    liquid = Liquid(64, params, seed)
    if plasticity != "none":
        for k in tqdm(tr[:n_plastic].tolist(), desc=f"{plasticity} learning", disable=not progress):
            liquid.run(X[:, k: k + 1], plasticity)
    counts, bfs, spk = [], [], 0.0
    for a in tqdm(range(0, N, chunk), desc=f"{plasticity} read-out", disable=not progress):
        s, _ = liquid.run(X[:, a: a + chunk])                                  # [T, b, n]
        counts.append(s.sum(0))
        bfs.append((branching_factor(s, liquid.adjacency), float(s.sum())))
        spk += float(s.sum())
    C = torch.cat(counts).numpy()                                              # [N, n]
    clf = LogisticRegression(max_iter=2000)
    Cn = np.log1p(C)
    clf.fit(Cn[tr.numpy()], y[tr].numpy())
    acc = float(clf.score(Cn[te.numpy()], y[te].numpy()))
    w = sum(b for _, b in bfs if b > 0)
    bf = sum(f * b for f, b in bfs if b > 0) / w if w > 0 else float("nan")
    rate = spk / (N * params.n * steps * params.dt_ms * 1e-3)
    return DigitsResult(plasticity, acc, bf, rate, round(time.perf_counter() - t0, 1))
