r"""Astrocyte-modulated LIF unit (tripartite synapse).

Biology the unit follows: an astrocyte ensheathes the synapses of a group of neurons (its *domain*);
neurotransmitter spill-over from their activity raises the astrocyte's intracellular Ca2+, which rises
and decays slowly (seconds, against milliseconds for the membrane); Ca2+ triggers gliotransmitter
release (glutamate, D-serine, ATP/adenosine) that feeds back on the same synapses, scaling their
efficacy, and on the neurons' excitability. The unit keeps those three elements and nothing more.

Choices, per neuron :math:`i` in the domain :math:`k(i)` of astrocyte :math:`k` (contiguous blocks
of ``N / n_astro`` neurons; every neuron has exactly one astrocyte):

.. math::
    m_{t,k} = \frac{1}{|k|}\sum_{i \in k} s_{t-1,i}        \quad\text{(domain activity seen by the astrocyte)}

    a_{t,k} = d_a\, a_{t-1,k} + \beta\,(1 - a_{t-1,k})\, [m_{t,k} - m_0]_+, \quad d_a = e^{-dt/\tau_a}
             \quad\text{(slow, saturating Ca}^{2+}\text{ state in [0, 1))}

    g_{t,i} = 1 + \kappa_g\, a_{t,k(i)}                     \quad\text{(gliotransmitter gain on the synaptic input)}

    \vartheta_{t,i} = \vartheta_0\,(1 - \kappa_\vartheta\, a_{t,k(i)})   \quad\text{(excitability: lowered threshold)}

    H_t = \mathrm{LIF\ charge}(g_t \odot X_t,\ V_{t-1}), \quad S_t = H(H_t - \vartheta_t), \quad V_t = \text{reset}

with the LIF charge and reset of :mod:`neuro.neurons.lif` (same ``tau_ms``, ``v_th`` = :math:`\vartheta_0`,
``v_reset``, ``decay_input``). With :math:`\kappa_g = \kappa_\vartheta = 0` the unit *is* that LIF (tested).
The astrocyte sees the spikes of the previous step, as Ca2+ follows transmitter release with a lag.

Why these choices: the saturating uptake keeps :math:`a` bounded whatever the firing rate (Ca2+
stores are finite), and a small uptake (``uptake = 0.05``) keeps background firing, integrated over
:math:`\tau_a`, from saturating it, so that a burst of the domain stands out for hundreds of steps;
the optional uptake threshold :math:`m_0` (``uptake_threshold``, default 0) makes the astrocyte
answer only synchronous activity of a good part of its domain (astrocytic Ca2+ responses need
spatially summed transmitter release); the couplings :math:`\kappa` are fixed biophysical
constants, not learned, so a network built of these units has exactly the parameter count of the
same network built of LIF units; every term is smooth in the spikes, so surrogate gradients flow
through the astrocyte state, whose slow decay :math:`d_a \approx 1` carries them across long delays.
The unit is a drop-in neuron: input [B, N] per step (or [T, B, N]) to spikes of the same shape,
step modes 's' and 'm'.

Shape: x [B, N] ('s') or [T, B, N] ('m'); state v [B, N], a [B, n_astro].

Sources: Araque et al. 1999 (tripartite synapse); Volterra & Meldolesi 2005 (gliotransmission);
De Pittà et al. 2011 (astrocyte-regulated synaptic release); the AstroSNN abstract (arXiv 2312.07625)
names the mechanism only; REFERENCE §1.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch

from ..core.errors import ShapeError
from ..core.params import (Params, boolean, finite, integer, non_negative, one_of, optional, param, positive,
                           record, unit_interval_open_closed)
from ..core.surrogate import Surrogate
from ..io import savable
from .base import NeuronModule, fire_and_reset
from .lif import LIFParams, lif_charge


def _below_one(v):
    return None if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1 else "in [0, 1)"


@record
class AstroLIFParams(Params):
    # neuron (as LIFParams)
    tau_ms: float = param(2.0, positive, doc="membrane time constant (ms)")
    dt_ms: float = param(1.0, positive, doc="time step (ms)")
    integration: str = param("euler", one_of("exact", "euler"), doc="how tau_ms and dt_ms give the decay")
    v_th: float = param(1.0, positive, doc="resting firing threshold theta_0")
    v_reset: Optional[float] = param(0.0, optional(finite), doc="hard reset value; None = soft reset")
    decay_input: bool = param(True, boolean, doc="scale the input by 1 - d")
    # astrocyte
    tau_astro_ms: float = param(300.0, positive, doc="astrocyte Ca2+ time constant (ms)")
    uptake: float = param(0.05, unit_interval_open_closed, doc="beta: Ca2+ rise per unit of domain activity")
    uptake_threshold: float = param(0.0, _below_one, doc="m_0: domain activity below it raises no Ca2+")
    k_gain: float = param(4.0, non_negative, doc="kappa_g: synaptic gain per unit of astrocyte state")
    k_threshold: float = param(0.5, _below_one, doc="kappa_theta: relative threshold drop per unit of state")
    n_astro: int = param(8, integer(1), doc="astrocytes; each covers a contiguous block of neurons")

    def _check(self):
        if self.integration == "euler" and self.dt_ms >= self.tau_ms:
            self.fail("dt_ms", f"< tau_ms={self.tau_ms} for forward-Euler integration")

    def lif(self) -> LIFParams:
        return LIFParams(tau_ms=self.tau_ms, dt_ms=self.dt_ms, integration=self.integration, v_th=self.v_th,
                         v_reset=self.v_reset, decay_input=self.decay_input)

    @property
    def decay_astro(self) -> float:
        return math.exp(-self.dt_ms / self.tau_astro_ms)


class AstroLIFState(NamedTuple):
    v: torch.Tensor  # [B, N] membrane potential
    a: torch.Tensor  # [B, n_astro] astrocyte state
    s: torch.Tensor  # [B, N] spikes of the last step (what the astrocyte integrates next)


def domains(n: int, n_astro: int) -> torch.Tensor:
    """Astrocyte of each neuron: contiguous blocks. Shape: int64 [n] with values in [0, n_astro)."""
    return torch.arange(n) * n_astro // n


def astro_lif_step(x: torch.Tensor, state: AstroLIFState, p: AstroLIFParams, surrogate: Surrogate):
    """One step of the astrocyte-modulated LIF (module docstring). Shape: x [B, N] -> spikes [B, N]."""
    B, N = x.shape
    dom = domains(N, p.n_astro).to(x.device)                                   # [N]
    counts = torch.bincount(dom, minlength=p.n_astro).to(x.dtype)             # [K] neurons per astrocyte
    m = x.new_zeros(B, p.n_astro).index_add(1, dom, state.s) / counts          # [B, K] domain activity
    drive = (m - p.uptake_threshold).clamp_min(0.0)                           # [B, K]
    a = p.decay_astro * state.a + p.uptake * (1 - state.a) * drive             # [B, K]
    a_n = a.index_select(1, dom)                                               # [B, N]
    lif = p.lif()
    h = lif_charge((1 + p.k_gain * a_n) * x, state.v, lif)                     # [B, N]
    theta = p.v_th * (1 - p.k_threshold * a_n)                                 # [B, N]
    s, v = fire_and_reset(h, theta, p.v_reset, surrogate, False, False)
    return s, AstroLIFState(v, a, s)


@savable("AstroLIF")
class AstroLIF(NeuronModule):
    """Astrocyte-modulated LIF layer; a drop-in for :class:`~neuro.neurons.LIF`.

    ``AstroLIF(tau_astro_ms=300.0, n_astro=8, k_gain=4.0, step_mode='m')``. No learnable parameters.

    Shape: 's' [B, N] -> [B, N]; 'm' [T, B, N] -> [T, B, N]. ``N`` must be at least ``n_astro``.
    """

    params_cls = AstroLIFParams
    step_fn = staticmethod(astro_lif_step)

    def init_state(self, x):
        if x.dim() != 2:
            raise ShapeError("AstroLIF", f"input of shape {tuple(x.shape)} per step, expected [B, N]")
        if x.shape[1] < self.params.n_astro:
            raise ShapeError("AstroLIF", f"{x.shape[1]} neurons cannot host n_astro={self.params.n_astro} astrocytes")
        v = self._full(x, self.params.v_reset if self.params.v_reset is not None else 0.0)
        return AstroLIFState(v, x.new_zeros(x.shape[0], self.params.n_astro), torch.zeros_like(x))

    @property
    def astro(self) -> Optional[torch.Tensor]:
        """Astrocyte states [B, n_astro] after the last step."""
        return None if self.state is None else self.state.a
