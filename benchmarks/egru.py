"""EGRU inference: event-driven recurrent product vs the dense one, at the trained model's sparsity.

    python benchmarks/egru.py [--model neuro/data/models/egru-char] [--chars 2000] [--batch 1]
                              [--reps 5] [--threads 1] [--json]

Loads a saved EGRU language model (default: the bundled character model), streams the first
``--chars`` characters of the Tiny Shakespeare valid split through it one character at a time (step
mode 's', ``--batch`` parallel streams cut from that text), once with ``propagation='dense'`` and once
with ``propagation='event'`` (the recurrent product reads only the columns of units that emitted an
event in the previous step), and reports tokens per second, the median of ``--reps`` interleaved runs
after a warm-up, their ratio, the measured activity sparsity and the largest difference of the logits
between the two paths.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "neuro" / "data" / "models" / "egru-char"


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--chars", type=int, default=2000)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def stream(model, ids, propagation: str):
    """Feed ids [B, N] one step at a time; returns (logits [N, B, V], seconds)."""
    import torch

    model.rnn.propagation = propagation
    for layer in model.rnn.layers:
        layer.step_mode = "s"
    model.reset()
    model.reset_stats()
    outs = []
    t0 = time.perf_counter()
    with torch.no_grad():
        emb = model.embedding(ids.t())                                      # [N, B, E]
        for x in emb:
            for layer in model.rnn.layers:
                x = layer(x)
                x = x[1] if isinstance(x, tuple) and layer is model.rnn.layers[-1] else x
                x = x[0] if isinstance(x, tuple) else x
            outs.append(model.head(x))
    dt = time.perf_counter() - t0
    return torch.stack(outs), dt


def main(argv=None) -> int:
    args = _args(argv)
    import torch

    from neuro.data import tinyshakespeare
    from neuro.io import load_model
    from neuro.models.egru_lm import mean_activity_sparsity

    torch.set_num_threads(args.threads)
    model = load_model(args.model).eval()
    ids = tinyshakespeare().valid[: args.chars]
    n = len(ids) // args.batch
    ids = ids[: n * args.batch].view(args.batch, n)                         # [B, n]
    stream(model, ids[:, :50], "dense")                                     # warm-up
    stream(model, ids[:, :50], "event")
    times = {"dense": [], "event": []}
    for _ in range(args.reps):
        for mode in ("dense", "event"):
            logits, dt = stream(model, ids, mode)
            times[mode].append(dt)
            if mode == "dense":
                ref = logits
                sparsity = mean_activity_sparsity(model.sparsity())
            else:
                diff = float((logits - ref).abs().max())
    tps = {m: ids.numel() / statistics.median(v) for m, v in times.items()}
    out = {"model": str(args.model), "tokens": ids.numel(), "batch": args.batch, "threads": args.threads,
           "reps": args.reps, "activity_sparsity": sparsity, "tokens_per_s": tps,
           "ratio_event_over_dense": tps["event"] / tps["dense"], "max_abs_logit_diff": diff}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"EGRU {args.model.name}: {ids.numel()} tokens, batch {args.batch}, {args.threads} thread(s), "
              f"activity sparsity {sparsity:.3f}")
        print(f"  dense path : {tps['dense']:10.1f} tokens/s")
        print(f"  event path : {tps['event']:10.1f} tokens/s")
        print(f"  ratio event / dense: {out['ratio_event_over_dense']:.2f}x  (max |logit difference| {diff:.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
