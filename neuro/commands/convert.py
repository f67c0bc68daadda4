"""``neuro convert``: a trained Transformer or RWKV (neuro or Hugging Face folder) -> a spiking model folder.

    neuro convert MODEL_DIR --timesteps 8 --calibration calib.txt --out snn_dir [--json] [--eval-chars 2000]

MODEL_DIR is a neuro model folder holding a TransformerLM or an RWKVLM, or a Hugging Face folder (``config.json``
with ``model_type``; safetensors weights, a pickle only with ``--trust-pickle``). The calibration file
is UTF-8 text in the model's character vocabulary, or token ids (``.npy``/``.safetensors``) for models
without one. The spiking model is scored against the float model and its quantized twin on the
first ``--eval-chars`` characters of ``--eval`` (default: the bundled Tiny Shakespeare valid split for
char-level models, seeded random tokens otherwise) and saved to OUT_DIR (atomically: a failed
conversion leaves no folder behind). RWKV models are scored in windows of 128 tokens, each from the
empty state (their training length; RWKV itself has no context limit).
"""
from __future__ import annotations

import json
from pathlib import Path

HELP = "convert a Transformer or RWKV language model into a spiking model and report its fidelity"


def add_arguments(p):
    p.add_argument("model", type=Path, help="neuro model folder (TransformerLM, RWKVLM) or Hugging Face folder")
    p.add_argument("--timesteps", "-T", type=int, default=8, help="timesteps T = bits per activation (default 8)")
    p.add_argument("--calibration", type=Path, required=True,
                   help="calibration text (UTF-8, model vocabulary) or token ids (.npy/.safetensors)")
    p.add_argument("--out", type=Path, required=True, help="output model folder")
    p.add_argument("--eval", type=Path, default=None, help="text to score on (default: Tiny Shakespeare valid split)")
    p.add_argument("--eval-chars", type=int, default=2000, help="tokens scored (default 2000)")
    p.add_argument("--calibration-tokens", type=int, default=8192, help="calibration tokens used (default 8192)")
    p.add_argument("--weight-bits", type=int, default=10, help="signed weight bits (default 10)")
    p.add_argument("--headroom-bits", type=int, default=None,
                   help="bits of encoder range above the calibrated maxima (default: chosen on held-out "
                        "calibration windows among 0 .. 1 + max(0, T - 8) // 4)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow a pytorch_model.bin checkpoint (read with torch.load(weights_only=True))")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _calibration(path: Path):
    """Text path (encoded by the converter) or a tensor of token ids from .npy/.safetensors."""
    if path.suffix in (".npy", ".safetensors"):
        from .energy import load_input

        return load_input(path).long()
    return path


def _arch(model) -> str:
    """The architecture's name: the config's ``arch`` (Transformers), else the model class (``RWKVLM``)."""
    return getattr(model.config, "arch", None) or type(model).__name__


def run(args) -> int:
    import torch
    from tqdm.auto import tqdm

    from ..converters.conversion import (auto_headroom_split, calibrate, choose_headroom, map_model, quantized_twin,
                                         report, validate)
    from ..converters.spiking_transformer import ConversionParams
    from ..converters.workflow import eval_ids, load_any
    from ..core.errors import ParameterError
    from ..io import save_model

    if args.timesteps < 1:
        raise ParameterError("neuro convert", "timesteps", args.timesteps, "an integer >= 1")
    if args.eval_chars < 2:
        raise ParameterError("neuro convert", "eval-chars", args.eval_chars, "an integer >= 2")
    if args.out.exists() and not args.overwrite:
        raise ParameterError("neuro convert", "out", str(args.out), "a folder that does not exist yet (or --overwrite)")
    params = ConversionParams(timesteps=args.timesteps, weight_bits=args.weight_bits, headroom_bits=args.headroom_bits)
    with torch.no_grad(), tqdm(total=5, desc="neuro convert", unit="stage", disable=args.json) as bar:
        bar.set_postfix_str("load")
        model = load_any(args.model, trust_pickle=args.trust_pickle).eval()
        bar.update()
        bar.set_postfix_str("validate")
        val = validate(model)
        bar.update()
        bar.set_postfix_str("calibrate")
        calibration = _calibration(args.calibration)
        calib = calibrate(model, calibration, args.calibration_tokens, progress=not args.json)
        split = auto_headroom_split(model, calibration, params, args.calibration_tokens)
        params, chosen = choose_headroom(model, split, params)
        bar.update()
        bar.set_postfix_str("map")
        snn, twin = map_model(model, calib, params), quantized_twin(model, calib, params)
        bar.update()
        bar.set_postfix_str("report")
        ids = eval_ids(model, args.eval_chars, args.eval)
        if getattr(model.config, "is_encoder", False):
            L = model.config.max_seq
            ids = ids[: max(1, len(ids) // L) * L]
            ids = ids.view(-1, min(L, len(ids)))[:8]
        rep = report(model, snn, twin, ids, batch_size=4)
        bar.update()
    out = save_model(snn, args.out, overwrite=args.overwrite)
    doc = {"model": str(args.model), "out": str(out), "timesteps": args.timesteps,
           "arch": _arch(model), "unsupported_ops": [], "validated_modules": len(val.modules),
           "calibration": calib.summary() | {"outlier_channels": {k: len(v) for k, v in calib.outliers.items()}},
           "eval_tokens": int(ids.numel()), "headroom_bits": params.headroom,
           "headroom_choice": chosen.summary() if chosen is not None else None, **rep.to_dict()}
    doc["not_accumulate_only"] = [{"layer": r["layer"], "op": r["op"], "mac_per_token": r["mac_per_token"],
                                   "nonlinear_per_token": r["nonlinear_per_token"]}
                                  for r in rep.layers if r["mac_per_token"] or r["nonlinear_per_token"]]
    if args.json:
        print(json.dumps(doc))
        return 0
    print(f"converted {args.model} ({_arch(model)}, {len(val.modules)} modules) at T = {args.timesteps} -> {out}")
    if rep.metric == "perplexity":
        print(f"  perplexity: float {rep.ann:.4f}  quantized twin {rep.twin:.4f}  spiking {rep.snn:.4f} "
              f"({100 * (rep.snn / rep.ann - 1):+.2f}% vs float) on {ids.numel()} tokens")
    if chosen is not None:
        print(f"  encoder headroom: {chosen.chosen} bit(s), chosen on {chosen.held_out_tokens} held-out calibration "
              f"tokens ({chosen.metric}: " + ", ".join(f"{h}: {v:.4f}" for h, v in chosen.scores.items()) + ")")
    print(f"  cosine similarity of outputs (spiking vs float): {rep.cosine_to_ann:.6f}; "
          f"spiking == twin exactly: {rep.snn_equals_twin}")
    print(f"  not accumulate-only (per token): {len(doc['not_accumulate_only'])} operators, "
          f"{sum(r['mac_per_token'] for r in doc['not_accumulate_only']):.0f} multiplies, "
          f"{sum(r['nonlinear_per_token'] for r in doc['not_accumulate_only']):.0f} non-linear evaluations")
    return 0
