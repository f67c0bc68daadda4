r"""Bit-exact emulator of Lava's fixed-point ``LIF``, ``Dense``/``Sparse`` and ``DelayDense``/``DelaySparse``
processes, batched, in integer PyTorch tensors.

Per Lava time step t (index 0 is Lava's ``time_step`` 1), as lava-nc 0.10 orders it:

1. every connection sends column 0 of its activation buffer (computed from earlier spikes);
2. every LIF sums what its connections sent, :math:`a_t`, and updates (module docstring of
   :mod:`~neuro.hardware_targets.loihi.compiler`): the current ``u`` wraps at 24 bits, the voltage
   ``v`` clips at :math:`\pm(2^{23} - 1)`, a spike is :math:`v > v_{th} \ll 6` and resets v to 0;
   sources send row t of their spike trains;
3. every connection receives its presynaptic spikes of step t and updates its buffer
   :math:`A \leftarrow \mathrm{roll}(A \text{ with column 0 cleared}, -1) +
   \big((\sum_{j:\, d_{ij} = k} W_{ij} s_j)_k \ll w_e\big)` (``>>`` for a negative exponent), so a
   spike of step t reaches its target at step t + 1 + d.

Weights pass through Lava's ``clip_weights`` / ``truncate_weights`` first (sign mode from the
matrix: mixed-sign 8-bit matrices keep only even values), as the Lava processes do on their first step.

Shape: inputs {source: [T, B, n]} (0/1) -> spikes {population: int8 [T, B, n]}, v {population: int64 [T, B, n]}.
"""
from __future__ import annotations

import numpy as np
import torch

from ...core.errors import ShapeError
from .compiler import LoihiNetwork

U_BITS = 24
MAX_UV = 2 ** (U_BITS - 1)


def lava_weights(w: np.ndarray, num_bits: int = 8) -> np.ndarray:
    """Lava's ``clip_weights(.., num_bits=8)`` then ``truncate_weights(.., num_weight_bits)`` (sign mode
    determined from the matrix)."""
    w = np.asarray(w, dtype=np.int64)
    mixed = bool(w.min() < 0 < w.max()) if w.size else False
    inhibitory = bool(w.size and w.max() <= 0 and not (w.min() >= 0))
    x = -w if inhibitory else w.copy()
    x = np.clip(x, -(2 ** 8) * int(mixed), 2 ** 8 - 1)
    shift = 8 - num_bits + int(mixed)
    x = (x >> shift) << shift
    return -x if inhibitory else x


def _rs12(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * (|x| >> 12): Lava's decay rounding toward zero."""
    return torch.sign(x) * (torch.abs(x) >> 12)


def lif_fixed_step(a_in, u, v, du, dv, bias, vth):
    """One Lava ``PyLifModelBitAcc`` step. All int64; shapes [B, n] (du, dv, vth scalars; bias [n]).
    Returns (spikes bool [B, n], u, v)."""
    x = _rs12(u * (4096 - (du + 1))) + (a_in << 6)
    x = torch.where(x > MAX_UV, x - 2 * MAX_UV, x)
    u = torch.where(x <= -MAX_UV, x + 2 * MAX_UV, x)
    v = torch.clamp(_rs12(v * (4096 - dv)) + u + bias, -(MAX_UV - 1), MAX_UV - 1)
    s = v > (vth << 6)
    return s, u, torch.where(s, torch.zeros_like(v), v)


class _Conn:
    """State of one connection: weights per delay column, stacked [(D + 1) n_post, n_pre], and the
    activation buffer [B, n_post, D + 1] (int64).

    The weighted sums run as a float64 matrix product, exact for integers below 2^53 (8-bit weights
    times at most 2^31 inputs), and are turned back into int64 before any shift or rounding."""

    def __init__(self, c, B):
        w = torch.as_tensor(lava_weights(c.weights, c.num_weight_bits))      # [n_post, n_pre]
        d = torch.zeros_like(w) if c.delays is None else torch.as_tensor(c.delays, dtype=torch.int64)
        D = int(d.max()) if d.numel() else 0
        if w.shape[1] and w.abs().max() * w.shape[1] >= 2 ** 53:  # pragma: no cover - far beyond Loihi's sizes
            raise ValueError("weighted sums would exceed float64's exact integers")
        self.pre, self.post, self.exp, self.D = c.pre, c.post, c.weight_exp, D
        self.w = torch.cat([torch.where(d == k, w, torch.zeros_like(w)) for k in range(D + 1)]).double()  # [(D+1) post, pre]
        self.buf = torch.zeros(B, w.shape[0], D + 1, dtype=torch.int64)         # [B, n_post, D + 1]

    def send(self) -> torch.Tensor:
        return self.buf[..., 0]

    def receive(self, s: torch.Tensor) -> None:
        B, n_post = self.buf.shape[:2]
        acc = (s.double() @ self.w.t()).round().to(torch.int64)                   # [B, (D + 1) n_post]
        acc = acc.view(B, self.D + 1, n_post).transpose(1, 2)                     # [B, n_post, D + 1]
        acc = acc << self.exp if self.exp > 0 else acc >> -self.exp
        if self.D == 0:
            self.buf = acc.contiguous()
            return
        buf = torch.roll(self.buf, -1, dims=-1)
        buf[..., -1] = 0                                                           # the cleared column 0, rolled last
        self.buf = buf + acc


def emulate(net: LoihiNetwork, inputs: dict, steps: int | None = None):
    """Run ``net`` on ``inputs`` {source: spikes [T, B, n]} (a tensor when there is one source) for
    ``steps`` Lava steps (default T; missing input steps are silent).

    Returns (spikes {population: int8 [steps, B, n]}, v {population: int64 [steps, B, n]}).
    """
    if not isinstance(inputs, dict):
        if len(net.sources) != 1:
            raise ShapeError("emulate", f"give a dict of inputs for the sources {sorted(net.sources)}")
        inputs = {next(iter(net.sources)): inputs}
    x = {}
    for name, n in net.sources.items():
        t = torch.as_tensor(np.asarray(inputs[name]) if not isinstance(inputs.get(name), torch.Tensor)
                            else inputs[name])
        if t.dim() != 3 or t.shape[-1] != n:
            raise ShapeError("emulate", f"source {name!r} needs spikes [T, B, {n}], got {tuple(t.shape)}")
        x[name] = t.to(torch.int64) != 0
    T, B = next(iter(x.values())).shape[:2] if x else (steps or 0, 1)
    steps = T if steps is None else steps
    pops = net.populations
    state = {k: (torch.zeros(B, p.n, dtype=torch.int64), torch.zeros(B, p.n, dtype=torch.int64)) for k, p in pops.items()}
    bias = {k: torch.as_tensor(p.bias_mant, dtype=torch.int64) << torch.as_tensor(p.bias_exp, dtype=torch.int64)
            for k, p in pops.items()}
    conns = [_Conn(c, B) for c in net.connections]
    spikes = {k: torch.zeros(steps, B, p.n, dtype=torch.int8) for k, p in pops.items()}
    volts = {k: torch.zeros(steps, B, p.n, dtype=torch.int64) for k, p in pops.items()}
    for t in range(steps):
        a_in = {k: torch.zeros(B, p.n, dtype=torch.int64) for k, p in pops.items()}
        for c in conns:
            a_in[c.post] = a_in[c.post] + c.send()
        out = {}
        for k, p in pops.items():
            s, u, v = lif_fixed_step(a_in[k], *state[k], p.du, p.dv, bias[k], p.vth)
            state[k] = (u, v)
            out[k] = s
            spikes[k][t], volts[k][t] = s.to(torch.int8), v
        for name in net.sources:
            out[name] = x[name][t] if t < T else torch.zeros(B, net.sources[name], dtype=torch.bool)
        for c in conns:
            c.receive(out[c.pre])
    return spikes, volts
