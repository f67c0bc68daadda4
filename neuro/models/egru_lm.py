r"""Character-level language models: an EGRU LM and a GRU LM of equal hidden size for comparison.

Architecture (both): embedding [V, E] -> recurrent layers -> linear read-out [V]. The EGRU read-out sees
the last layer's graded events :math:`y_t`, or its output trace when ``trace_decay`` is set (a trace
is rebuilt by the receiver from the events, so every signal between layers stays event-based).

Data: the bundled Tiny Shakespeare (:func:`neuro.data.tinyshakespeare`), split at fixed character
offsets: first 90 % train (1,003,854 characters), next 5 % valid (55,770), last 5 % test (55,770);
65 symbols. Training reads ``batch`` contiguous streams of the train split in windows of ``bptt``
characters, carrying the state across windows and cutting the graph between them (truncated BPTT).
Evaluation streams a split through the model in ``bptt``-long chunks with the state carried, and
reports bits per character, :math:`\mathrm{BPC} = \overline{-\log_2 p(x_{t+1} \mid x_{\le t})}`.

Activity regulariser (EGRU only): ``act_reg`` times the mean absolute graded event over every layer,
unit and step, which pushes the states below threshold and raises the activity sparsity.

Saved as a model folder (``config.json`` holds the vocabulary, so a folder alone decodes text).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import ParameterError
from ..data.text import CharTokenizer
from ..io import savable
from ..neurons.egru import EGRU, EGRUParams


@savable("EGRULM")
class EGRULM(nn.Module):
    """Character EGRU language model.

    Args: vocab (list of characters), embed, hidden_sizes, params (:class:`EGRUParams`), dropout.

    Shape: idx [B, L] int64 -> logits [B, L, V]. The recurrent state is kept between calls (streaming);
    :meth:`reset` forgets it, :meth:`detach` cuts its graph.
    """

    def __init__(self, vocab, embed: int = 64, hidden_sizes=(512,), params: Optional[EGRUParams] = None,
                 dropout: float = 0.0):
        super().__init__()
        self.tokenizer = CharTokenizer(vocab)
        V = self.tokenizer.vocab_size
        if not isinstance(embed, int) or embed < 1:
            raise ParameterError("EGRULM", "embed", embed, "an integer >= 1")
        self.embed_dim = embed
        self.embedding = nn.Embedding(V, embed)
        self.rnn = EGRU(embed, list(hidden_sizes), params, dropout=dropout, step_mode="m")
        self.head = nn.Linear(self.rnn.hidden_sizes[-1], V)
        self.dropout = float(dropout)
        self._act = None  # mean |y| of the last forward (the regulariser's input)

    @property
    def vocab(self) -> list:
        return self.tokenizer.chars

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embedding(idx.t())                                # [L, B, E]
        act = []
        for i, layer in enumerate(self.rnn.layers):
            out = layer(x)                                         # [L, B, H] or ([L, B, H], trace)
            y = out[0] if isinstance(out, tuple) else out
            act.append(y.abs().mean())
            x = out[1] if isinstance(out, tuple) else out          # last layer: the trace feeds the read-out
            if self.dropout and self.training:
                x = F.dropout(x, self.dropout)
        self._act = torch.stack(act).mean()
        return self.head(x).transpose(0, 1)                        # [B, L, V]

    def regularizer(self) -> torch.Tensor:
        return self._act

    def reset(self) -> None:
        self.rnn.reset()

    def detach(self) -> None:
        self.rnn.detach()

    def sparsity(self) -> list[dict]:
        return self.rnn.sparsity()

    def reset_stats(self) -> None:
        self.rnn.reset_stats()

    def get_config(self) -> dict:
        return {"vocab": self.vocab, "embed": self.embed_dim, "hidden_sizes": self.rnn.hidden_sizes,
                "params": self.rnn.params.to_dict(), "dropout": self.dropout}

    @classmethod
    def from_config(cls, config: dict) -> "EGRULM":
        c = dict(config)
        params = EGRUParams.from_dict(c.pop("params", {}))
        return cls(c.pop("vocab"), params=params, **c)

    def check_loaded(self) -> None:
        self.rnn.check_loaded()


@savable("GRULM")
class GRULM(nn.Module):
    """Character GRU language model (the dense baseline). Shape: idx [B, L] -> logits [B, L, V]."""

    def __init__(self, vocab, embed: int = 64, hidden_sizes=(512,), dropout: float = 0.0):
        super().__init__()
        self.tokenizer = CharTokenizer(vocab)
        V = self.tokenizer.vocab_size
        hs = list(hidden_sizes)
        if len(set(hs)) != 1:
            raise ParameterError("GRULM", "hidden_sizes", hs, "equal sizes (torch.nn.GRU stacks equal layers)")
        self.embed_dim, self.hidden_sizes, self.dropout = embed, hs, float(dropout)
        self.embedding = nn.Embedding(V, embed)
        self.rnn = nn.GRU(embed, hs[0], num_layers=len(hs), dropout=dropout if len(hs) > 1 else 0.0)
        self.head = nn.Linear(hs[0], V)
        self.state = None

    @property
    def vocab(self) -> list:
        return self.tokenizer.chars

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embedding(idx.t())                                # [L, B, E]
        y, self.state = self.rnn(x, self.state)                    # [L, B, H]
        if self.dropout and self.training:
            y = F.dropout(y, self.dropout)
        return self.head(y).transpose(0, 1)                        # [B, L, V]

    def regularizer(self) -> torch.Tensor:
        return torch.zeros(())

    def reset(self) -> None:
        self.state = None

    def detach(self) -> None:
        if self.state is not None:
            self.state = self.state.detach()

    def sparsity(self) -> list[dict]:
        return []

    def reset_stats(self) -> None:
        pass

    def get_config(self) -> dict:
        return {"vocab": self.vocab, "embed": self.embed_dim, "hidden_sizes": self.hidden_sizes,
                "dropout": self.dropout}

    @classmethod
    def from_config(cls, config: dict) -> "GRULM":
        c = dict(config)
        return cls(c.pop("vocab"), **c)


# -- data and scoring ----------------------------------------------------------------------------------
def streams(ids: torch.Tensor, batch: int) -> torch.Tensor:
    """Cut ``ids`` into ``batch`` contiguous streams. Shape: [N] -> [batch, N // batch]."""
    n = len(ids) // batch
    if n < 2:
        raise ParameterError("streams", "batch", batch, f"at most {len(ids) // 2} for {len(ids)} tokens")
    return ids[: n * batch].view(batch, n)


@torch.no_grad()
def evaluate_bpc(model: nn.Module, ids: torch.Tensor, batch: int = 8, bptt: int = 100) -> dict:
    """Bits per character of ``model`` on ``ids`` (streamed, state carried) and the EGRU sparsity.

    Returns {"bpc", "chars", "sparsity": per-layer list}.
    """
    was = model.training
    model.eval()
    model.reset()
    model.reset_stats()
    data = streams(ids, batch)                                      # [B, N]
    total, count = 0.0, 0
    for s in range(0, data.shape[1] - 1, bptt):
        x = data[:, s: s + bptt]
        y = data[:, s + 1: s + 1 + bptt]
        x = x[:, : y.shape[1]]
        logits = model(x)                                          # [B, L, V]
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        count += y.numel()
    model.reset()
    model.train(was)
    return {"bpc": total / count / math.log(2), "chars": count, "sparsity": model.sparsity()}


@dataclass
class LMConfig:
    """Training set-up shared by the EGRU and the GRU runs."""

    embed: int = 64
    hidden_sizes: tuple = (256,)
    batch: int = 64
    bptt: int = 64
    lr: float = 8e-3
    weight_decay: float = 0.0
    clip: float = 1.0
    dropout: float = 0.0
    act_reg: float = 0.7
    gamma: float = 0.7
    eps: float = 1.0
    thr_mean: float = 0.3
    trace_decay: Optional[float] = None
    minutes: float = 10.0
    max_steps: Optional[int] = None
    eval_every: int = 200
    eval_batch: int = 8
    extra_evals: tuple = field(default_factory=tuple)  # further step counts at which to score valid


def build_model(kind: str, vocab, cfg: LMConfig) -> nn.Module:
    if kind == "egru":
        params = EGRUParams(gamma=cfg.gamma, eps=cfg.eps, thr_mean=cfg.thr_mean, trace_decay=cfg.trace_decay)
        return EGRULM(vocab, cfg.embed, cfg.hidden_sizes, params, cfg.dropout)
    if kind == "gru":
        return GRULM(vocab, cfg.embed, cfg.hidden_sizes, cfg.dropout)
    raise ParameterError("build_model", "kind", kind, "'egru' or 'gru'")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train_lm(model: nn.Module, train_ids: torch.Tensor, valid_ids: torch.Tensor, cfg: LMConfig,
             progress: bool = False, desc: str = "train") -> dict:
    """Train for ``cfg.minutes`` of this process's CPU time (``time.process_time``; with one torch thread,
    the work of one core, whatever else the machine runs), or ``cfg.max_steps`` optimizer steps, whichever
    comes first. Evaluation time is not counted.

    Adam, gradient clipping, cross-entropy plus ``cfg.act_reg`` times the model's regulariser; EGRU
    thresholds are projected back onto [0, 1] after every step.
    Returns the history: step, wall seconds, train loss and valid BPC at each evaluation.
    """
    from tqdm import tqdm

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    data = streams(train_ids, cfg.batch)                            # [B, N]
    n = data.shape[1]
    budget = cfg.minutes * 60.0
    evals, history = set(cfg.extra_evals), []
    model.train()
    model.reset()
    clock = time.process_time
    step, pos, t0, t_eval, w0 = 0, 0, clock(), 0.0, time.perf_counter()
    bar = tqdm(total=cfg.max_steps, desc=desc, disable=not progress, unit="step", mininterval=2.0)
    loss_avg = None
    while True:
        elapsed = clock() - t0 - t_eval
        if elapsed >= budget or (cfg.max_steps is not None and step >= cfg.max_steps):
            break
        if pos + cfg.bptt + 1 > n:
            pos = 0
            model.reset()
        x = data[:, pos: pos + cfg.bptt]                            # [B, L]
        y = data[:, pos + 1: pos + 1 + cfg.bptt]                    # [B, L]
        pos += cfg.bptt
        model.detach()
        logits = model(x)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss = ce + cfg.act_reg * model.regularizer()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        if isinstance(model, EGRULM):
            model.rnn.clamp_thresholds_()                           # projected step: thresholds stay in [0, 1]
        step += 1
        loss_avg = ce.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * ce.item()
        bar.update(1)
        bar.set_postfix(bpc=f"{loss_avg / math.log(2):.3f}")
        if step % cfg.eval_every == 0 or step in evals:
            te = clock()
            state = _save_state(model)
            r = evaluate_bpc(model, valid_ids, cfg.eval_batch, cfg.bptt)
            _load_state(model, state)
            t_eval += clock() - te
            history.append({"step": step, "cpu_seconds": round(clock() - t0 - t_eval, 1),
                            "train_bpc": loss_avg / math.log(2), "valid_bpc": r["bpc"],
                            "activity_sparsity": _mean_sparsity(r["sparsity"])})
    bar.close()
    return {"steps": step, "cpu_seconds": round(clock() - t0 - t_eval, 1),
            "wall_seconds": round(time.perf_counter() - w0, 1), "history": history,
            "chars_seen": step * cfg.batch * cfg.bptt}


def _save_state(model):
    # evaluation resets the streaming state; keep the training streams' state across it
    if isinstance(model, EGRULM):
        return [layer.state for layer in model.rnn.layers]
    return model.state


def _load_state(model, state) -> None:
    if isinstance(model, EGRULM):
        for layer, s in zip(model.rnn.layers, state):
            layer.state = s
    else:
        model.state = state


def _mean_sparsity(layers: list) -> Optional[float]:
    if not layers:
        return None
    tot = sum(s["unit_steps"] for s in layers)
    return sum(s["activity_sparsity"] * s["unit_steps"] for s in layers) / tot


def mean_activity_sparsity(layers: list) -> Optional[float]:
    """Unit-step weighted mean of the per-layer activity sparsity (None for a dense model)."""
    return _mean_sparsity(layers)
