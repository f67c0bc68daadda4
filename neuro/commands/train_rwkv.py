"""``neuro train rwkv``: a character-level RWKV-4 language model on Tiny Shakespeare.

Trains an :class:`~neuro.models.rwkv.RWKVLM` (parallel form) on the fixed training split of
:func:`neuro.data.tinyshakespeare` with random windows (:func:`neuro.data.batches`), AdamW and the
warm-up + cosine schedule of ``neuro train gpt`` (:func:`~neuro.commands.train_lm.lr_at`, progress
= the larger of ``step / --steps`` and ``elapsed / --minutes``). Scored on the valid split with
:func:`~neuro.models.transformer.evaluate_lm` (each window from an empty state) and saved, with
its character vocabulary in the config, to ``OUT/rwkv-char``.
"""
from __future__ import annotations

import math
import time

from .train import TrainTask
from .train_lm import _optimizer, lr_at

DEFAULTS = dict(d_model=128, n_layer=4, seq_len=128)


def add_arguments(p):
    d = DEFAULTS
    p.add_argument("--minutes", type=float, default=5.0, help="wall-clock training budget (default 5)")
    p.add_argument("--steps", type=int, default=None,
                   help="optimizer steps (default: as many as --minutes allows; --epochs N means N passes over "
                        "the training split)")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per step (default 16)")
    p.add_argument("--seq-len", type=int, default=d["seq_len"], help=f"training context (default {d['seq_len']})")
    p.add_argument("--d-model", type=int, default=d["d_model"], help=f"model width (default {d['d_model']})")
    p.add_argument("--layers", type=int, default=d["n_layer"], help=f"blocks (default {d['n_layer']})")
    p.add_argument("--d-ff", type=int, default=None, help="channel-mixing hidden width (default 4 d_model)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay on matrices (default 0.01)")
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps (default 100)")
    p.add_argument("--eval-chars", type=int, default=None,
                   help="score on the first N valid characters (default: the whole valid split)")


def _check(args) -> None:
    from ..core.errors import ParameterError

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
            raise ParameterError("neuro train rwkv", flag, value, rule)


def run(args):
    """Train, score and save the model; returns (summary, ok)."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from ..data import batches, tinyshakespeare
    from ..io import save_model
    from ..models.rwkv import RWKVConfig, RWKVLM
    from ..models.transformer import evaluate_lm

    _check(args)
    torch.manual_seed(args.seed)
    data = tinyshakespeare()
    chars = "".join(data.tokenizer.chars)
    cfg = RWKVConfig(vocab_size=len(chars), d_model=args.d_model, n_layer=args.layers, d_ff=args.d_ff,
                     vocab_chars=chars)
    model = RWKVLM(cfg)
    opt = _optimizer(model, args.lr, args.weight_decay)
    steps = args.steps
    if steps is None and args.epochs is not None:
        steps = math.ceil(args.epochs * len(data.train) / (args.batch_size * args.seq_len))
    budget_s = args.minutes * 60.0
    gen = torch.Generator().manual_seed(args.seed)
    stream = batches(data.train, args.batch_size, args.seq_len, gen)

    bar = tqdm(total=steps if steps else round(budget_s), unit="step" if steps else "s",
               disable=args.no_progress, desc="train rwkv", leave=False)
    t0 = time.perf_counter()
    step, ema = 0, None
    model.train()
    while True:
        elapsed = time.perf_counter() - t0
        progress = max(elapsed / budget_s, step / steps if steps else 0.0)
        if (steps and step >= steps) or elapsed >= budget_s:
            break
        lr = lr_at(step, progress, args.lr, args.warmup)
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
        if steps:
            bar.update(1)
        else:
            bar.update(round(time.perf_counter() - t0) - bar.n)
        bar.set_postfix(step=step, loss=f"{ema:.3f}", lr=f"{lr:.2e}", refresh=False)
    wall = time.perf_counter() - t0
    bar.close()

    model.eval()
    t1 = time.perf_counter()
    valid = evaluate_lm(model, data.valid, args.seq_len, max_chars=args.eval_chars)
    folder = save_model(model, args.out / "rwkv-char", overwrite=True)
    summary = {
        "task": "rwkv", "steps": step, "wall_s": round(wall, 2), "eval_s": round(time.perf_counter() - t1, 2),
        "parameters": model.num_parameters(), "train_loss": ema, "valid_loss": valid["loss"],
        "valid_bpc": valid["bpc"], "valid_perplexity": valid["perplexity"], "valid_chars": valid["tokens"] + 1,
        "batch_size": args.batch_size, "seq_len": args.seq_len, "lr": args.lr, "model": str(folder),
        "config": cfg.to_dict(),
    }
    if not args.json:
        print(f"rwkv-char: {step} steps in {wall:.0f} s, {summary['parameters']} parameters; valid loss "
              f"{valid['loss']:.4f} nats, {valid['bpc']:.4f} bits/char, perplexity {valid['perplexity']:.3f}; "
              f"saved to {folder}")
    return summary, bool(math.isfinite(valid["loss"]))


TASK = TrainTask("character-level RWKV-4 language model on Tiny Shakespeare; saves OUT/rwkv-char",
                 add_arguments, run)
