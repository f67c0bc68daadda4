"""``neuro train gpt`` / ``neuro train llama``: character-level Transformer LMs on Tiny Shakespeare.

Trains a :class:`~neuro.models.transformer.TransformerLM` (GPT: pre-LN, GELU, learned positions;
Llama-style: RMSNorm, SwiGLU, rotary, grouped-query attention) on the fixed training split of
:func:`neuro.data.tinyshakespeare` with random windows (:func:`neuro.data.batches`), AdamW and a
cosine learning-rate schedule with linear warm-up:

    lr(p) = lr_max * min(1, s / warmup) * (0.1 + 0.9 * (1 + cos(pi p)) / 2)

where ``s`` is the step and ``p`` in [0, 1] the progress through the budget: the larger of
``step / --steps`` and ``elapsed / --minutes``, so a run stopped by the clock still ends its
schedule. The model is scored on the valid split (:func:`~neuro.models.transformer.evaluate_lm`:
loss in nats, bits per character, per-character perplexity) and saved, with its character
vocabulary in the config, to ``OUT/gpt-char`` or ``OUT/llama-char``.
"""
from __future__ import annotations

import math
import time

from .train import TrainTask

# Model defaults of each task: about 0.8 M parameters, context 128.
SIZES = {
    "gpt": dict(d_model=128, n_layer=4, n_head=4, d_ff=512, max_seq=128),
    "llama": dict(d_model=128, n_layer=4, n_head=4, n_kv_head=2, d_ff=352, max_seq=128),
}


def add_lm_arguments(p, seq_len: int = 128, d_model: int = 128, layers: int = 4, minutes: float = 5.0,
                     minutes_help: str = "wall-clock training budget", weight_decay: float = 0.1,
                     eval_chars=None, steps_help: str = ("as many as --minutes allows; --epochs N means N "
                                                          "passes over the training split")) -> None:
    """The options every char-level LM task shares (checked by :func:`check_lm_args`), with the task's defaults."""
    p.add_argument("--minutes", type=float, default=minutes, help=f"{minutes_help} (default {minutes:g})")
    p.add_argument("--steps", type=int, default=None, help=f"optimizer steps (default: {steps_help})")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per step (default 16)")
    p.add_argument("--seq-len", type=int, default=seq_len, help=f"training context (default {seq_len})")
    p.add_argument("--d-model", type=int, default=d_model, help=f"model width (default {d_model})")
    p.add_argument("--layers", type=int, default=layers, help=f"blocks (default {layers})")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    p.add_argument("--weight-decay", type=float, default=weight_decay,
                   help=f"AdamW weight decay on matrices (default {weight_decay:g})")
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps (default 100)")
    p.add_argument("--eval-chars", type=int, default=eval_chars,
                   help="score on the first N valid characters (default: "
                        f"{'the whole valid split' if eval_chars is None else eval_chars})")


def _arguments(arch: str):
    def add(p):
        s = SIZES[arch]
        add_lm_arguments(p, s["max_seq"], s["d_model"], s["n_layer"])
        p.add_argument("--heads", type=int, default=s["n_head"], help=f"attention heads (default {s['n_head']})")
        if arch == "llama":
            p.add_argument("--kv-heads", type=int, default=s["n_kv_head"],
                           help=f"key/value heads (grouped-query attention; default {s['n_kv_head']})")
        p.add_argument("--d-ff", type=int, default=s["d_ff"], help=f"MLP hidden width (default {s['d_ff']})")
    return add


def lr_at(step: int, progress: float, lr_max: float, warmup: int) -> float:
    """Warm-up then cosine decay to 10 % of ``lr_max`` (see the module docstring)."""
    warm = min(1.0, (step + 1) / max(1, warmup))
    return lr_max * warm * (0.1 + 0.45 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def check_lm_args(args) -> None:
    """The options every char-level LM task shares; ParameterError naming the flag and value."""
    from ..core.errors import ParameterError

    who = f"neuro train {args.task}"
    for flag, value, ok, rule in (
            ("--minutes", args.minutes, args.minutes > 0 and math.isfinite(args.minutes), "a finite number > 0"),
            ("--steps", args.steps, args.steps is None or args.steps >= 1, "an integer >= 1"),
            ("--batch-size", args.batch_size, args.batch_size >= 1, "an integer >= 1"),
            ("--seq-len", args.seq_len, args.seq_len >= 2, "an integer >= 2"),
            ("--lr", args.lr, args.lr > 0 and math.isfinite(args.lr), "a finite number > 0"),
            ("--weight-decay", args.weight_decay, args.weight_decay >= 0, "a number >= 0"),
            ("--warmup", args.warmup, args.warmup >= 0, "an integer >= 0"),
            ("--eval-chars", args.eval_chars, args.eval_chars is None or args.eval_chars >= 2, "an integer >= 2")):
        if not ok:
            raise ParameterError(who, flag, value, rule)


def _optimizer(model, lr: float, weight_decay: float):
    import torch

    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.99))


def fit(model, ids, args, desc: str, steps=None, clock=time.perf_counter, unit: str = "s") -> dict:
    """The one training loop of the char-level LM tasks: AdamW (:func:`_optimizer`), next-character
    cross-entropy on random windows of ``ids``, warm-up and cosine schedule (:func:`lr_at`) over
    whichever ends first, ``steps`` optimizer steps or ``args.minutes`` on ``clock`` (wall time by
    default; ``time.process_time`` for a CPU-time budget), gradients clipped to norm 1.

    Returns ``{"steps", "train_loss" (a running mean), "seconds" (on clock)}``.
    """
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from ..data import batches

    opt = _optimizer(model, args.lr, args.weight_decay)
    budget_s = args.minutes * 60.0
    stream = batches(ids, args.batch_size, args.seq_len, torch.Generator().manual_seed(args.seed))
    bar = tqdm(total=steps if steps else round(budget_s), unit="step" if steps else unit,
               disable=args.no_progress, desc=desc, leave=False)
    t0 = clock()
    step, ema = 0, None
    model.train()
    while True:
        elapsed = clock() - t0
        if (steps and step >= steps) or elapsed >= budget_s:
            break
        lr = lr_at(step, max(elapsed / budget_s, step / steps if steps else 0.0), args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = next(stream)  # [B, L] each
        logits = model(x)  # [B, L, V]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        value = loss.item()
        ema = value if ema is None else 0.98 * ema + 0.02 * value
        bar.update(1 if steps else round(clock() - t0) - bar.n)
        bar.set_postfix(step=step, loss=f"{ema:.3f}", lr=f"{lr:.2e}", refresh=False)
    bar.close()
    return {"steps": step, "train_loss": ema, "seconds": clock() - t0}


def train_and_save(name: str, model, cfg, data, args, extra=None):
    """Train ``model`` with :func:`fit` (``--steps`` or ``--epochs`` worth of steps, else ``--minutes``
    of wall time), score it on the valid split, save it to ``OUT/<name>-char``; returns (summary, ok)."""
    from ..io import save_model
    from ..models.transformer import evaluate_lm

    steps = args.steps
    if steps is None and args.epochs is not None:
        steps = math.ceil(args.epochs * len(data.train) / (args.batch_size * args.seq_len))
    res = fit(model, data.train, args, f"train {name}", steps)
    model.eval()
    t1 = time.perf_counter()
    valid = evaluate_lm(model, data.valid, args.seq_len, max_chars=args.eval_chars)
    folder = save_model(model, args.out / f"{name}-char", overwrite=True)
    summary = {
        "task": name, **(extra or {}), "steps": res["steps"], "wall_s": round(res["seconds"], 2),
        "eval_s": round(time.perf_counter() - t1, 2), "parameters": model.num_parameters(),
        "train_loss": res["train_loss"], "valid_loss": valid["loss"], "valid_bpc": valid["bpc"],
        "valid_perplexity": valid["perplexity"], "valid_chars": valid["tokens"] + 1,
        "batch_size": args.batch_size, "seq_len": args.seq_len, "lr": args.lr, "model": str(folder),
        "config": cfg.to_dict(),
    }
    if not args.json:
        print(f"{name}-char: {res['steps']} steps in {res['seconds']:.0f} s, {summary['parameters']} parameters; "
              f"valid loss {valid['loss']:.4f} nats, {valid['bpc']:.4f} bits/char, perplexity "
              f"{valid['perplexity']:.3f}; saved to {folder}")
    return summary, bool(math.isfinite(valid["loss"]))


def train_char_lm(arch: str, args):
    """Train, score and save one char-level Transformer; returns (summary, ok)."""
    import torch

    from ..data import tinyshakespeare
    from ..models.transformer import TransformerLM, config_for

    check_lm_args(args)
    torch.manual_seed(args.seed)
    data = tinyshakespeare()
    chars = "".join(data.tokenizer.chars)
    extra = {"n_kv_head": args.kv_heads} if arch == "llama" else {}
    cfg = config_for(arch, vocab_size=len(chars), d_model=args.d_model, n_layer=args.layers, n_head=args.heads,
                     d_ff=args.d_ff, max_seq=args.seq_len, vocab_chars=chars, **extra)
    return train_and_save(arch, TransformerLM(cfg), cfg, data, args, {"arch": arch})


def _run(arch: str):
    def run(args):
        return train_char_lm(arch, args)
    return run


GPT = TrainTask("character-level GPT (pre-LN, GELU, learned positions) on Tiny Shakespeare; saves OUT/gpt-char",
                _arguments("gpt"), _run("gpt"))
LLAMA = TrainTask("character-level Llama-style LM (RMSNorm, SwiGLU, rotary, GQA) on Tiny Shakespeare; "
                  "saves OUT/llama-char", _arguments("llama"), _run("llama"))
