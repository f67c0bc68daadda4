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
windows. With the baseline, the trained float RWKV is also converted to spiking at
``--convert-timesteps`` (default 8; :func:`neuro.converters.convert`, calibrated on the first 8,192
training characters) and scored the same way (``converted``). Models are saved to ``OUT/spikegpt-char``,
``OUT/rwkv-char-baseline`` and ``OUT/rwkv-char-baseline-spiking-T<T>``.

Example: ``neuro train spikegpt --minutes 15 --baseline rwkv --threads 1 --json``.
"""
from __future__ import annotations

import math
import time

from .train import TrainTask
from .train_lm import add_lm_arguments, check_lm_args, fit


def add_arguments(p):
    add_lm_arguments(p, minutes=15.0, minutes_help="training budget per model in CPU minutes of this process",
                     weight_decay=0.01, eval_chars=20000, steps_help="as the budget allows")
    p.add_argument("--baseline", choices=("none", "rwkv"), default="none",
                   help="also train a float RWKV-4 of the same size and budget (default none)")
    p.add_argument("--baseline-only", action="store_true", help="train only the --baseline model")
    p.add_argument("--convert-timesteps", type=int, default=8,
                   help="with --baseline rwkv: also convert the trained float RWKV to spiking at this T and score it "
                        "(calibrated on the first 8192 train characters; 0: skip; default 8)")


def _check(args) -> None:
    from ..core.errors import ParameterError

    check_lm_args(args)
    if args.baseline_only and args.baseline == "none":
        raise ParameterError("neuro train spikegpt", "--baseline-only", True, "used with --baseline rwkv")
    t = args.convert_timesteps
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= 16:
        raise ParameterError("neuro train spikegpt", "--convert-timesteps", t, "an integer in 0..16 (0: no conversion)")


def _train(model, data, args, name: str) -> dict:
    """:func:`~neuro.commands.train_lm.fit` on a CPU-time budget (``time.process_time``)."""
    w0 = time.perf_counter()
    res = fit(model, data.train, args, f"train {name}", args.steps, clock=time.process_time, unit="cpu-s")
    return {"steps": res["steps"], "cpu_s": round(res["seconds"], 2), "wall_s": round(time.perf_counter() - w0, 2),
            "train_loss": res["train_loss"], "parameters": sum(p.numel() for p in model.parameters())}


def _score(model, data, args) -> dict:
    import torch

    from ..models.transformer import evaluate_lm

    model.eval()
    with torch.no_grad():
        v = evaluate_lm(model, data.valid, args.seq_len, max_chars=args.eval_chars)
    return {"valid_loss": v["loss"], "valid_bpc": v["bpc"], "valid_chars": v["tokens"] + 1}


def _convert(base, data, args) -> dict:
    """The float RWKV baseline converted to spiking (:func:`neuro.converters.convert`), scored like the others."""
    from ..converters import convert
    from ..io import save_model

    snn = convert(base.eval(), data.train[:8192].long(), timesteps=args.convert_timesteps)
    res = {"timesteps": args.convert_timesteps, **_score(snn, data, args)}
    res["model"] = str(save_model(snn, args.out / f"rwkv-char-baseline-spiking-T{args.convert_timesteps}", overwrite=True))
    return res


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
        if args.convert_timesteps:
            summary["converted"] = _convert(base, data, args)
            ok = ok and math.isfinite(summary["converted"]["valid_loss"])
    if not args.json:
        for name in ("spikegpt", "rwkv", "converted"):
            if name in summary:
                r = summary[name]
                print(f"{name}: {r['steps']} steps in {r['cpu_s']:.0f} CPU s, {r['parameters']} parameters; "
                      f"valid loss {r['valid_loss']:.4f} nats, {r['valid_bpc']:.4f} bits/char")
        if "spikegpt" in summary:
            print("spike rates: " + ", ".join(f"{k} {v:.3f}" for k, v in summary["spikegpt"]["spike_rates"].items()))
    return summary, bool(ok)


TASK = TrainTask("character-level SpikeGPT (spiking RWKV-4) on Tiny Shakespeare, optionally against a float RWKV; "
                 "saves OUT/spikegpt-char", add_arguments, run, uses_epochs=False)
