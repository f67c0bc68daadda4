"""Fidelity and streaming speed of the ANN -> SNN conversion of the bundled RWKV language model.

    python benchmarks/rwkv.py [--eval-chars 10000] [--timesteps 8,16] [--tokens 64] [--reps 5]
                              [--threads 2] [--json] [--skip-speed]

1. Fidelity: the bundled char-level RWKV (``neuro/data/models/rwkv-char``, 4 blocks x 128) is
   calibrated on the first 8,192 characters of the Tiny Shakespeare train split and scored on the
   first ``--eval-chars`` characters (default 10,000) of the valid split, in windows of 128 tokens
   each from the empty state (as its training figures). Per T: float, quantized-twin and spiking
   perplexity, the gap to the float model, and whether the spiking logits equal the twin's exactly
   (on one window). Target: spiking perplexity within 1 % of the float model at some T <= 16.
2. Streaming speed: ``--tokens`` tokens fed one at a time through ``decode_step`` (batch 1, the state
   carried between tokens) by the float RWKV's recurrent form and by the spiking model at each T;
   median tokens/s of ``--reps`` runs after a warm-up, interleaved, and the ratio float / spiking.
   The state's size per sequence is printed too (constant: it does not grow with the text).

Prints tables (and ``--json``). Exit code 0, or 1 when the fidelity target is missed.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--eval-chars", type=int, default=10_000)
    p.add_argument("--calib-chars", type=int, default=8192)
    p.add_argument("--timesteps", default="8,16")
    p.add_argument("--tokens", type=int, default=64, help="tokens streamed per speed run")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    return p.parse_args(argv)


def fidelity(model, Ts, eval_chars, calib_chars, log):
    from neuro.converters.workflow import eval_ids, sweep
    from neuro.data.text import CharTokenizer, tinyshakespeare

    splits = tinyshakespeare()
    tok = CharTokenizer(list(model.config.vocab_chars))
    calib = tok.encode(splits.tokenizer.decode(splits.train[:calib_chars]))
    ids = eval_ids(model, eval_chars)
    t0 = time.perf_counter()
    res = sweep(model, calib, Ts, ids)
    rows = [{k: v for k, v in r.items() if k != "layers"} for r in res["rows"]]
    for r in rows:
        r["gap_pct"] = 100 * (r["snn_perplexity"] / r["ann_perplexity"] - 1)
    log(f"rwkv-char ({model.num_parameters():,} parameters), first {len(ids)} valid characters, windows of 128:")
    log(f"{'T':>3} {'float ppl':>10} {'twin ppl':>10} {'spiking ppl':>12} {'gap':>8}  spiking==twin")
    for r in rows:
        log(f"{r['timesteps']:>3} {r['ann_perplexity']:>10.4f} {r['twin_perplexity']:>10.4f} "
            f"{r['snn_perplexity']:>12.4f} {r['gap_pct']:>+7.2f}%  {r['snn_equals_twin']}")
    return {"eval_chars": int(len(ids)), "rows": rows, "seconds": time.perf_counter() - t0}, res["models"]


def _state_bytes(state) -> int:
    return sum(t.numel() * t.element_size() for ls in state.layers
               for t in (ls.att_x, ls.ffn_x, ls.wkv.a, ls.wkv.b, ls.wkv.p))


def _stream(model, ids):
    """Feed ``ids`` [1, n] one token at a time; returns (seconds, final state)."""
    state = model.init_cache(1)
    t0 = time.perf_counter()
    for i in range(ids.shape[1]):
        _, state = model.decode_step(ids[:, i:i + 1], state)
    return time.perf_counter() - t0, state


def speed(model, snns: dict, n_tokens, reps, log):
    import torch

    ids = torch.randint(0, model.config.vocab_size, (1, n_tokens), generator=torch.Generator().manual_seed(1))
    models = {"float": model, **{f"spiking T={T}": s for T, s in snns.items()}}
    times = {k: [] for k in models}
    sizes = {}
    with torch.no_grad():
        for k, m in models.items():  # warm-up; state size after 1 and after n tokens
            one = _stream(m, ids[:, :1])[1]
            sizes[k] = (_state_bytes(one), _state_bytes(_stream(m, ids)[1]))
        for _ in range(reps):
            for k, m in models.items():
                times[k].append(_stream(m, ids)[0])
    f = statistics.median(times["float"])
    log(f"\nstreaming {n_tokens} tokens one at a time (batch 1), median of {reps}:")
    log(f"{'model':<14} {'tokens/s':>10} {'ms/token':>9} {'float/this':>11} {'state bytes (1 tok, n tok)':>28}")
    out = {}
    for k in models:
        s = statistics.median(times[k])
        out[k] = {"seconds": s, "tokens_per_s": n_tokens / s, "ratio_float_over_this": f / s if k != "float" else 1.0,
                  "slowdown": s / f, "state_bytes": list(sizes[k]), "runs_s": times[k]}
        log(f"{k:<14} {n_tokens / s:>10.1f} {1e3 * s / n_tokens:>9.2f} {f / s:>11.3f} {str(sizes[k]):>28}")
    return out


def main(argv=None) -> int:
    args = _args(argv)
    import torch

    from neuro.io import load_model
    from neuro.models.rwkv import bundled_rwkv_dir

    torch.set_num_threads(args.threads)
    Ts = [int(t) for t in args.timesteps.split(",")]
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    model = load_model(bundled_rwkv_dir()).eval()
    fid, snns = fidelity(model, Ts, args.eval_chars, args.calib_chars, log)
    meets = [r["timesteps"] for r in fid["rows"] if r["timesteps"] <= 16 and r["gap_pct"] <= 1.0]
    fid["target_T"] = min(meets) if meets else None
    log(f"within 1% of the float perplexity from T = {fid['target_T']}")
    result = {"model": str(bundled_rwkv_dir()), "timesteps": Ts, "fidelity": fid}
    if not args.skip_speed:
        result["speed"] = speed(model, snns, args.tokens, args.reps, log)
    if args.json:
        print(json.dumps(result))
    return 0 if meets else 1


if __name__ == "__main__":
    sys.exit(main())
