"""``neuro train spikegpt``: a character-level SpikeGPT on Tiny Shakespeare, optionally against a float RWKV-4.

Trains a :class:`~neuro.models.spikegpt.SpikeGPT` (surrogate gradients through the binary embedding and
every LIF) on the fixed training split of :func:`neuro.data.tinyshakespeare` with random windows
(:func:`neuro.data.batches`), AdamW and the warm-up + cosine schedule of ``neuro train rwkv``, for a
budget of process CPU time (``--minutes``; with ``--threads 1`` one core's work, so the figure does not
depend on what else the machine runs). ``--baseline rwkv`` then trains a float
:class:`~neuro.models.rwkv.RWKVLM` of the same size with the same budget, data order and optimiser
(``--baseline-only``: that model alone, to run the two side by side). Reported: valid loss and bits per
character of each model (:func:`~neuro.models.transformer.evaluate_lm`, the first ``--eval-chars`` valid
characters) and the spike rate of the binary embedding and of every LIF layer on the first valid
windows. Models are saved to ``OUT/spikegpt-char`` and ``OUT/rwkv-char-baseline``.

Example: ``neuro train spikegpt --minutes 15 --baseline rwkv --threads 1 --json``.
"""
from __future__ import annotations

import math
import time

from .train import TrainTask
from .train_lm import _optimizer, lr_at


def add_arguments(p):
    p.add_argument("--minutes", type=float, default=15.0,
                   help="training budget per model in CPU minutes of this process (default 15)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per model (default: as the budget allows)")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per step (default 16)")
    p.add_argument("--seq-len", type=int, default=128, help="training context (default 128)")
    p.add_argument("--d-model", type=int, default=128, help="model width (default 128)")
    p.add_argument("--layers", type=int, default=4, help="blocks (default 4)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay on matrices (default 0.01)")
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps (default 100)")
    p.add_argument("--eval-chars", type=int, default=20000,
                   help="score on the first N valid characters (default 20000)")
    p.add_argument("--baseline", choices=("none", "rwkv"), default="none",
                   help="also train a float RWKV-4 of the same size and budget (default none)")
    p.add_argument("--baseline-only", action="store_true", help="train only the --baseline model")


def _check(args) -> None:
    from ..core.errors import ParameterError

    for flag, value, ok, rule in (
            ("--minutes", args.minutes, args.minutes > 0 and math.isfinite(args.minutes), "a finite number > 0"),
            ("--steps", args.steps, args.steps is None or args.steps >= 1, "an integer >= 1"),
            ("--batch-size", args.batch_size, args.batch_size >= 1, "an integer >= 1"),
            ("--seq-len", args.seq_len, args.seq_len >= 2, "an integer >= 2"),
            ("--lr", args.lr, args.lr > 0 and math.isfinite(args.lr), "a finite number > 0"),
            ("--warmup", args.warmup, args.warmup >= 0, "an integer >= 0"),
            ("--eval-chars", args.eval_chars, args.eval_chars >= 2, "an integer >= 2"),
            ("--baseline-only", args.baseline_only, not args.baseline_only or args.baseline != "none",
             "used with --baseline rwkv")):
        if not ok:
            raise ParameterError("neuro train spikegpt", flag, value, rule)


def _train(model, data, args, name: str) -> dict:
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from ..data import batches

    torch.manual_seed(args.seed)
    opt = _optimizer(model, args.lr, args.weight_decay)
    budget_s = args.minutes * 60.0
    stream = batches(data.train, args.batch_size, args.seq_len, torch.Generator().manual_seed(args.seed))
    bar = tqdm(total=round(budget_s), unit="cpu-s", disable=args.no_progress, desc=f"train {name}", leave=False)
    t0 = time.process_time()
    w0 = time.perf_counter()
    step, ema = 0, None
    model.train()
    while True:
        elapsed = time.process_time() - t0
        if (args.steps and step >= args.steps) or elapsed >= budget_s:
            break
        progress = max(elapsed / budget_s, step / args.steps if args.steps else 0.0)
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
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        bar.update(round(time.process_time() - t0) - bar.n)
        bar.set_postfix(step=step, loss=f"{ema:.3f}", refresh=False)
    bar.close()
    return {"steps": step, "cpu_s": round(time.process_time() - t0, 2), "wall_s": round(time.perf_counter() - w0, 2),
            "train_loss": ema, "parameters": sum(p.numel() for p in model.parameters())}


def _score(model, data, args) -> dict:
    import torch

    from ..models.transformer import evaluate_lm

    model.eval()
    with torch.no_grad():
        v = evaluate_lm(model, data.valid, args.seq_len, max_chars=args.eval_chars)
    return {"valid_loss": v["loss"], "valid_bpc": v["bpc"], "valid_chars": v["tokens"] + 1}


def run(args):
    """Train, score and save the model(s); returns (summary, ok)."""
    import torch

    from ..data import tinyshakespeare
    from ..io import save_model
    from ..models.rwkv import RWKVLM
    from ..models.spikegpt import SpikeGPT, SpikeGPTConfig

    _check(args)
    data = tinyshakespeare()
    chars = "".join(data.tokenizer.chars)
    cfg = SpikeGPTConfig(vocab_size=len(chars), d_model=args.d_model, n_layer=args.layers, vocab_chars=chars)
    summary = {"task": "spikegpt", "minutes": args.minutes, "batch_size": args.batch_size, "seq_len": args.seq_len,
               "lr": args.lr, "config": cfg.to_dict()}
    ok = True
    if not args.baseline_only:
        torch.manual_seed(args.seed)
        model = SpikeGPT(cfg)
        res = _train(model, data, args, "spikegpt")
        res.update(_score(model, data, args))
        rows = max(1, min(8, len(data.valid) // args.seq_len))  # the first valid windows, up to 8
        res["spike_rates"] = model.spike_rates(data.valid[:rows * args.seq_len].long().reshape(rows, -1))
        res["model"] = str(save_model(model, args.out / "spikegpt-char", overwrite=True))
        summary["spikegpt"] = res
        ok = ok and math.isfinite(res["valid_loss"])
    if args.baseline == "rwkv":
        torch.manual_seed(args.seed)
        base = RWKVLM(cfg.rwkv())
        res = _train(base, data, args, "rwkv")
        res.update(_score(base, data, args))
        res["model"] = str(save_model(base, args.out / "rwkv-char-baseline", overwrite=True))
        summary["rwkv"] = res
        ok = ok and math.isfinite(res["valid_loss"])
    if not args.json:
        for name in ("spikegpt", "rwkv"):
            if name in summary:
                r = summary[name]
                print(f"{name}: {r['steps']} steps in {r['cpu_s']:.0f} CPU s, {r['parameters']} parameters; "
                      f"valid loss {r['valid_loss']:.4f} nats, {r['valid_bpc']:.4f} bits/char")
        if "spikegpt" in summary:
            print("spike rates: " + ", ".join(f"{k} {v:.3f}" for k, v in summary["spikegpt"]["spike_rates"].items()))
    return summary, bool(ok)


TASK = TrainTask("character-level SpikeGPT (spiking RWKV-4) on Tiny Shakespeare, optionally against a float RWKV; "
                 "saves OUT/spikegpt-char", add_arguments, run, uses_epochs=False)
