r"""Memory retention: delayed recall of a symbol across a distractor gap, LIF vs astrocyte-modulated LIF.

Task (generated in code, :func:`recall_batch`): ``n_symbols`` cue channels, ``n_distract`` distractor
channels and one *go* channel. A sequence is: distractor noise for ``gap_max - gap`` steps, the cue
(one symbol's channel on for ``cue_steps``), ``gap`` steps of distractors (each channel on with
probability ``p_distract`` per step), then the go channel for ``go_steps``. The gap is drawn per
sequence, uniformly in ``[gap_min, gap_max]``; the target is the cue's symbol. Chance: 1 / n_symbols.

Network (:class:`RecallNet`), identical for both neuron kinds: input synapse ``Linear(I, N)`` plus a
recurrent synapse ``Linear(N, N, bias=False)`` on the previous step's spikes, a neuron layer (LIF or
:class:`~neuro.neurons.astro.AstroLIF`, same membrane parameters), and a linear read-out of the spike
counts during the go window. The neurons hold no parameters, so both networks have the same
parameter count (:func:`compare_recall` asserts it).
"""
from __future__ import annotations

import time
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import ParameterError
from ..neurons.astro import AstroLIF, AstroLIFParams
from ..neurons.lif import LIF
from ..synapses.linear import Linear


def recall_batch(batch: int, n_symbols: int = 4, n_distract: int = 4, gap_min: int = 50, gap_max: int = 200,
                 cue_steps: int = 5, go_steps: int = 5, p_distract: float = 0.2,
                 generator: Optional[torch.Generator] = None):
    """One batch of the delayed-recall task.

    Returns (x [T, B, n_symbols + n_distract + 1], y [B] int64, gaps [B] int64) with
    T = gap_max + cue_steps + go_steps.
    """
    if not 1 <= gap_min <= gap_max:
        raise ParameterError("recall_batch", "gap_min", gap_min, f"an integer in [1, gap_max={gap_max}]")
    T = gap_max + cue_steps + go_steps
    I = n_symbols + n_distract + 1
    y = torch.randint(0, n_symbols, (batch,), generator=generator)
    gaps = torch.randint(gap_min, gap_max + 1, (batch,), generator=generator)
    x = torch.zeros(T, batch, I)
    noise = (torch.rand(T, batch, n_distract, generator=generator) < p_distract).float()
    x[: gap_max, :, n_symbols: n_symbols + n_distract] = noise[: gap_max]
    t = torch.arange(T)[:, None]                                               # [T, 1]
    start = (gap_max - gaps)[None, :]                                          # [1, B] cue onset
    cue = (t >= start) & (t < start + cue_steps)                               # [T, B]
    x[:, :, n_symbols: n_symbols + n_distract] *= (~cue).float()[..., None]    # no distractor under the cue
    x[:, :, :n_symbols] = cue.float()[..., None] * F.one_hot(y, n_symbols).float()[None]
    x[T - go_steps:, :, -1] = 1.0
    return x, y, gaps


class RecallNet(nn.Module):
    """Recurrent spiking network for :func:`recall_batch`. Shape: x [T, B, I] -> logits [B, n_symbols]."""

    def __init__(self, n_in: int, hidden: int, n_out: int, neuron: nn.Module, go_steps: int = 5,
                 in_scale: float = 1.5):
        super().__init__()
        self.inp = Linear(n_in, hidden)
        self.rec = Linear(hidden, hidden, bias=False)
        with torch.no_grad():                      # inputs strong enough to cross threshold from the start
            self.inp.weight.normal_(0.0, in_scale)
            self.inp.bias.zero_()
            self.rec.weight.normal_(0.0, 0.5 / hidden ** 0.5)
        self.neuron = neuron
        self.neuron.step_mode = "s"
        self.readout = nn.Linear(hidden, n_out)
        self.go_steps = go_steps
        self.hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.neuron.reset()
        cur = self.inp(x)                                                      # [T, B, N]
        s = x.new_zeros(x.shape[1], self.hidden)                               # [B, N]
        counts = 0
        T = x.shape[0]
        for t in range(T):
            s = self.neuron(cur[t] + self.rec(s))
            if t >= T - self.go_steps:
                counts = counts + s
        return self.readout(counts)                                            # [B, n_out]


def make_neuron(kind: str, tau_ms: float = 10.0, **astro) -> nn.Module:
    """'lif' or 'astro', sharing the membrane parameters (tau_ms, v_th = 1, hard reset to 0)."""
    if kind == "lif":
        return LIF(tau_ms=tau_ms)
    if kind == "astro":
        return AstroLIF(AstroLIFParams(tau_ms=tau_ms, **astro))
    raise ParameterError("make_neuron", "kind", kind, "'lif' or 'astro'")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train_recall(kind: str, steps: int = 200, batch: int = 32, hidden: int = 32, gap_min: int = 50,
                 gap_max: int = 200, n_symbols: int = 4, lr: float = 1e-2, seed: int = 0, eval_batch: int = 256,
                 in_scale: float = 1.5, progress: bool = False, **astro) -> dict:
    """Train one network on the recall task; returns accuracy on a fresh evaluation batch and the model."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    n_in = n_symbols + 4 + 1
    net = RecallNet(n_in, hidden, n_symbols, make_neuron(kind, **astro), in_scale=in_scale)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    t0 = time.perf_counter()
    for _ in tqdm(range(steps), desc=kind, disable=not progress):
        x, y, _ = recall_batch(batch, n_symbols, gap_min=gap_min, gap_max=gap_max, generator=g)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
    ge = torch.Generator().manual_seed(10_000 + seed)
    with torch.no_grad():
        x, y, gaps = recall_batch(eval_batch, n_symbols, gap_min=gap_min, gap_max=gap_max, generator=ge)
        acc = (net(x).argmax(1) == y).float().mean().item()
    return {"kind": kind, "accuracy": acc, "parameters": count_parameters(net), "steps": steps,
            "gap": [gap_min, gap_max], "chance": 1 / n_symbols, "seconds": round(time.perf_counter() - t0, 1),
            "model": net}


def compare_recall(steps: int = 200, hidden: int = 32, gap_min: int = 50, gap_max: int = 200, seed: int = 0,
                   lr: float = 1e-2, batch: int = 32, progress: bool = False, **astro) -> dict:
    """Train the LIF and the astrocyte network alike (same data, seed, optimiser); assert equal parameter
    counts; report both accuracies. ``astro``: AstroLIFParams fields for the astrocyte network."""
    runs = {k: train_recall(k, steps=steps, batch=batch, hidden=hidden, gap_min=gap_min, gap_max=gap_max, lr=lr,
                            seed=seed, progress=progress, **(astro if k == "astro" else {}))
            for k in ("lif", "astro")}
    assert runs["lif"]["parameters"] == runs["astro"]["parameters"], "parameter counts differ"
    for r in runs.values():
        r.pop("model")
    return {"gap": [gap_min, gap_max], "parameters": runs["lif"]["parameters"], "lif": runs["lif"],
            "astro": runs["astro"], "astro_better": runs["astro"]["accuracy"] > runs["lif"]["accuracy"]}


if __name__ == "__main__":  # python -m neuro.models.astro_tasks [steps]
    import json
    import sys

    torch.set_num_threads(1)
    print(json.dumps(compare_recall(steps=int(sys.argv[1]) if len(sys.argv) > 1 else 200, progress=True), indent=1))
