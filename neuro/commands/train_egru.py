"""``neuro train egru-lm``: a character-level EGRU language model on the bundled Tiny Shakespeare.

Trains for a budget of process CPU time (``--minutes``; with ``--threads 1`` one core's work, so
the budget means the same on a loaded machine), scores bits per character on the fixed valid and
test splits (see :mod:`neuro.models.egru_lm`), reports the activity sparsity of every layer and saves
the model folder to ``OUT/egru-lm``. ``--baseline gru`` then trains a GRU of equal hidden size under
the same budget, threads, data order and optimiser (Adam; its own learning rate, ``--baseline-lr``),
and scores it both at the EGRU's number of optimizer steps and at the end of its budget, so the two
are compared at equal steps and at equal CPU time.

Example: ``neuro train egru-lm --minutes 10 --baseline gru --threads 1 --json``.
"""
from __future__ import annotations

import time

from .train import TrainTask


def _arguments(p) -> None:
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per model in CPU minutes of this process (default 10)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps (default: budget only)")
    p.add_argument("--hidden", type=int, nargs="+", default=[256], help="hidden units per layer (default 256)")
    p.add_argument("--embed", type=int, default=64, help="embedding size (default 64)")
    p.add_argument("--batch", type=int, default=64, help="contiguous training streams (default 64)")
    p.add_argument("--bptt", type=int, default=64, help="truncated-BPTT window, characters (default 64)")
    p.add_argument("--lr", type=float, default=8e-3, help="Adam learning rate (default 8e-3)")
    p.add_argument("--act-reg", type=float, default=0.7, help="weight of the activity regulariser (default 0.7)")
    p.add_argument("--trace-decay", type=float, default=-1.0,
                   help="output-trace decay of the last EGRU layer, read by the head; <0 for none (default: none, "
                        "the head reads the events)")
    p.add_argument("--gamma", type=float, default=0.7, help="pseudo-derivative damping (default 0.7)")
    p.add_argument("--eps", type=float, default=1.0, help="pseudo-derivative support 1/eps (default 1.0)")
    p.add_argument("--eval-every", type=int, default=250, help="score valid every N steps (default 250)")
    p.add_argument("--baseline", choices=("none", "gru"), default="none",
                   help="also train a GRU of equal hidden size with the same budget (default none)")
    p.add_argument("--baseline-lr", type=float, default=3e-3,
                   help="the GRU's Adam learning rate (default 3e-3; at the EGRU's 8e-3 the GRU diverged after "
                        "about 2,000 steps)")
    p.add_argument("--no-egru", action="store_true",
                   help="train only the baseline (to run EGRU and GRU as two parallel processes)")
    p.add_argument("--compare-steps", type=int, default=None,
                   help="score the baseline's valid BPC at this step too (default: the EGRU's step count)")


def _run(args):
    import torch

    from ..core.errors import ParameterError
    from ..data import tinyshakespeare
    from ..io import save_model
    from ..models import egru_lm as E

    if args.minutes <= 0:
        raise ParameterError("neuro train egru-lm", "--minutes", args.minutes, "a number > 0")
    progress = not args.no_progress
    data = tinyshakespeare()
    cfg = E.LMConfig(embed=args.embed, hidden_sizes=tuple(args.hidden), batch=args.batch, bptt=args.bptt,
                     lr=args.lr, act_reg=args.act_reg, gamma=args.gamma, eps=args.eps,
                     trace_decay=None if args.trace_decay < 0 else args.trace_decay, minutes=args.minutes,
                     max_steps=args.max_steps, eval_every=args.eval_every)
    vocab = data.tokenizer.chars
    out = {"task": "egru-lm", "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()},
           "threads": torch.get_num_threads(),
           "split": {"train": len(data.train), "valid": len(data.valid), "test": len(data.test)}}

    def score(model, kind, hist):
        t = time.perf_counter()
        v = E.evaluate_bpc(model, data.valid, cfg.eval_batch, cfg.bptt)
        te = E.evaluate_bpc(model, data.test, cfg.eval_batch, cfg.bptt)
        return {"kind": kind, "parameters": E.count_parameters(model), "steps": hist["steps"],
                "train_cpu_seconds": hist["cpu_seconds"], "train_wall_seconds": hist["wall_seconds"], "chars_seen": hist["chars_seen"],
                "valid_bpc": v["bpc"], "test_bpc": te["bpc"],
                "activity_sparsity": E.mean_activity_sparsity(v["sparsity"]), "layers": v["sparsity"],
                "history": hist["history"], "eval_seconds": round(time.perf_counter() - t, 1)}

    if args.no_egru and args.baseline == "none":
        raise ParameterError("neuro train egru-lm", "--no-egru", True, "combined with --baseline gru")
    res = None
    if not args.no_egru:
        torch.manual_seed(args.seed)
        egru = E.build_model("egru", vocab, cfg)
        hist = E.train_lm(egru, data.train, data.valid, cfg, progress, desc="EGRU")
        res = score(egru, "egru", hist)
        res["model"] = str(save_model(egru, args.out / "egru-lm", overwrite=True))
        out["egru"] = res
    if res is not None and not args.json:
        print(f"EGRU {cfg.hidden_sizes}: {res['steps']} steps in {res['train_cpu_seconds']} CPU s, valid BPC "
              f"{res['valid_bpc']:.3f}, test BPC {res['test_bpc']:.3f}, activity sparsity "
              f"{res['activity_sparsity']:.3f} (per layer: "
              + ", ".join(f"{s['activity_sparsity']:.3f}/{s['backward_sparsity']:.3f}" for s in res["layers"])
              + " forward/backward); model: " + res["model"])
    ok = True
    if args.baseline == "gru":
        torch.manual_seed(args.seed)
        gru = E.build_model("gru", vocab, cfg)
        n_cmp = args.compare_steps if args.compare_steps is not None else (res["steps"] if res else None)
        gcfg = E.LMConfig(**{**vars(cfg), "lr": args.baseline_lr, "extra_evals": () if n_cmp is None else (n_cmp,)})
        ghist = E.train_lm(gru, data.train, data.valid, gcfg, progress, desc="GRU")
        g = score(gru, "gru", ghist)
        at = [h for h in ghist["history"] if h["step"] == n_cmp]
        g["compare_steps"] = n_cmp
        g["valid_bpc_at_compare_steps"] = at[0]["valid_bpc"] if at else None
        out["gru"] = g
        if res is None:
            if not args.json:
                print(f"GRU  {cfg.hidden_sizes}: {g['steps']} steps in {g['train_cpu_seconds']} CPU s, valid BPC "
                      f"{g['valid_bpc']:.3f}, test BPC {g['test_bpc']:.3f}")
            return out, True
        cmp = {"equal_cpu_time": res["valid_bpc"] / g["valid_bpc"] - 1,
               "equal_steps": None if not at else res["valid_bpc"] / at[0]["valid_bpc"] - 1}
        out["relative_bpc_gap"] = cmp
        ok = cmp["equal_cpu_time"] <= 0.05 and res["activity_sparsity"] >= 0.8
        out["target_met"] = ok
        if not args.json:
            s_at = "n/a" if not at else f"{at[0]['valid_bpc']:.3f}"
            print(f"GRU  {cfg.hidden_sizes}: {g['steps']} steps in {g['train_cpu_seconds']} CPU s, valid BPC "
                  f"{g['valid_bpc']:.3f} (at {res['steps']} steps: {s_at}), test BPC {g['test_bpc']:.3f}")
            eq = "n/a" if cmp["equal_steps"] is None else f"{100 * cmp['equal_steps']:+.1f}%"
            print(f"EGRU vs GRU valid BPC: {100 * cmp['equal_cpu_time']:+.1f}% at equal CPU time, {eq} at equal steps; "
                  f"target (<= +5% at equal CPU time, sparsity >= 0.8) " + ("met" if ok else "not met"))
    return out, ok


TASK = TrainTask("character-level EGRU language model on Tiny Shakespeare (BPC, activity sparsity, GRU baseline)",
                 _arguments, _run, uses_epochs=False)
