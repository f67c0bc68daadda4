"""Fidelity and speed of the ANN -> SNN conversion of Transformer language models.

    python benchmarks/conversion.py [--eval-chars 10000] [--timesteps 2,4,8,16] [--plot conversion.png]
                                    [--reps 5] [--threads 2] [--json] [--skip-hf] [--skip-speed]

1. Bundled char-level checkpoints (``neuro/data/models/gpt-char`` and ``llama-char``): calibrated on
   the first 8,192 characters of the Tiny Shakespeare train split, scored on the first
   ``--eval-chars`` characters (default 10,000) of the valid split in windows of the model's
   ``max_seq``. Per T: float perplexity, quantized-twin perplexity, spiking perplexity, the gap to
   the float model, and whether the spiking logits equal the twin's exactly (on one window).
   Target: spiking perplexity within 1 % of the float model at some T <= 16.
2. Tiny random Hugging Face models (GPT-2, GPT-NeoX, Llama with GQA, BERT; built from ``transformers``
   configs in memory, no network): calibrated on 8 x 64 random tokens, compared on 4 x 64 other random
   tokens. Per T: cosine similarity of the logits (hidden states for BERT) with the float model.
   Target: >= 0.999 at T = 16.
3. Speed: CPU wall time of the GPT's spiking model vs the float model on the same input (4 x 128
   tokens), at the smallest T meeting the fidelity target and at T = 8 and 16 (those in
   ``--timesteps``): median of ``--reps`` runs after a warm-up, float and spiking interleaved; the
   ratio spiking / float is printed, and where the spiking model's time goes (one more run with
   timing hooks, per operator kind; "glue" is the rest: residual adds, embedding, reshapes). Aim: <= 3x.

Prints tables (and ``--json``) and writes the fidelity plot (perplexity and 1 - cosine vs T).
Exit code 0, or 1 when a target is missed.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--eval-chars", type=int, default=10_000)
    p.add_argument("--calib-chars", type=int, default=8192)
    p.add_argument("--timesteps", default="2,4,8,16")
    p.add_argument("--plot", type=Path, default=Path("conversion_fidelity.png"))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.add_argument("--skip-hf", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--models", default="gpt-char,llama-char")
    return p.parse_args(argv)


def char_models(names, Ts, eval_chars, calib_chars, log):
    from neuro.converters.workflow import bundled_model_dir, eval_ids, load_any, sweep
    from neuro.data.text import CharTokenizer, tinyshakespeare

    splits = tinyshakespeare()
    out = {}
    for name in names:
        try:
            folder = bundled_model_dir(name)
        except Exception as e:  # a checkout without the bundled checkpoints
            log(f"{name}: skipped ({e})")
            continue
        model = load_any(folder).eval()
        tok = CharTokenizer(list(model.config.vocab_chars))
        calib = tok.encode(splits.tokenizer.decode(splits.train[:calib_chars]))
        ids = eval_ids(model, eval_chars)
        t0 = time.perf_counter()
        res = sweep(model, calib, Ts, ids)
        rows = [{k: v for k, v in r.items() if k != "layers"} for r in res["rows"]]
        for r in rows:
            r["gap_pct"] = 100 * (r["snn_perplexity"] / r["ann_perplexity"] - 1)
        out[name] = {"folder": str(folder), "eval_chars": int(len(ids)), "rows": rows,
                     "seconds": time.perf_counter() - t0, "model": model, "snn": res["models"]}
        log(f"\n{name} ({model.num_parameters():,} parameters), first {len(ids)} valid characters:")
        log(f"{'T':>3} {'float ppl':>10} {'twin ppl':>10} {'spiking ppl':>12} {'gap':>8}  spiking==twin")
        for r in rows:
            log(f"{r['timesteps']:>3} {r['ann_perplexity']:>10.4f} {r['twin_perplexity']:>10.4f} "
                f"{r['snn_perplexity']:>12.4f} {r['gap_pct']:>+7.2f}%  {r['snn_equals_twin']}")
    return out


def hf_models(Ts, log):
    import torch

    from neuro.converters.conversion import calibrate, cosine, map_model
    from neuro.converters.huggingface import from_hf, import_transformers
    from neuro.converters.spiking_transformer import ConversionParams

    tf = import_transformers()
    V = 100
    cfgs = {
        "gpt2": (tf.GPT2LMHeadModel, tf.GPT2Config(vocab_size=V, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                                                   bos_token_id=0, eos_token_id=0)),
        "neox": (tf.GPTNeoXForCausalLM, tf.GPTNeoXConfig(vocab_size=V, hidden_size=64, num_hidden_layers=2,
                                                         num_attention_heads=4, intermediate_size=128,
                                                         max_position_embeddings=64)),
        "llama": (tf.LlamaForCausalLM, tf.LlamaConfig(vocab_size=V, hidden_size=64, intermediate_size=128,
                                                      num_hidden_layers=2, num_attention_heads=4,
                                                      num_key_value_heads=2, max_position_embeddings=64)),
        "bert": (tf.BertModel, tf.BertConfig(vocab_size=V, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                             intermediate_size=128, max_position_embeddings=64)),
    }
    g = torch.Generator().manual_seed(0)
    calib = torch.randint(0, V, (8, 64), generator=g)
    x = torch.randint(0, V, (4, 64), generator=g)
    out = {}
    log("\ntiny random Hugging Face models: cosine similarity with the float model (4 x 64 tokens)")
    log(f"{'model':<8}" + "".join(f"{'T=' + str(T):>12}" for T in Ts))
    for name, (cls, cfg) in cfgs.items():
        torch.manual_seed(0)
        model = from_hf(cls(cfg).eval()).eval()
        rec = calibrate(model, [calib])
        with torch.no_grad():
            ref = model(x)
        row = {}
        for T in Ts:
            snn = map_model(model, rec, ConversionParams(timesteps=T))
            row[T] = cosine(ref, snn(x))
        out[name] = row
        log(f"{name:<8}" + "".join(f"{row[T]:>12.6f}" for T in Ts))
    return out


# operator kind -> spiking operator classes (by name) whose forward time the breakdown adds up
TIME_KINDS = {
    "synapses (linear)": ("SpikingLinear",),
    "spike products (QK^T, PV)": ("SpikingMatMul",),
    "encoders": ("BitSerialEncoder",),
    "softmax": ("SpikingSoftmax",),
    "norms": ("SpikingLayerNorm", "SpikingRMSNorm"),
    "activations, gate, rotary": ("SpikingActivation", "SpikingMul", "SpikingRotary"),
}


def time_breakdown(snn, x) -> dict:
    """Seconds per operator kind (:data:`TIME_KINDS`) in one forward pass, and the rest ("glue")."""
    import torch

    kind_of = {c: k for k, cs in TIME_KINDS.items() for c in cs}
    spent = dict.fromkeys(list(TIME_KINDS) + ["glue"], 0.0)
    starts, handles = {}, []

    def pre(m, args):
        starts[id(m)] = time.perf_counter()

    def post(m, args, out):
        spent[kind_of[type(m).__name__]] += time.perf_counter() - starts.pop(id(m))

    for m in snn.modules():
        if type(m).__name__ in kind_of:
            handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    try:
        with torch.no_grad():
            t0 = time.perf_counter()
            snn(x)
            total = time.perf_counter() - t0
    finally:
        for h in handles:
            h.remove()
        for m in snn.modules():  # operators keep their second input while hooked (for operation counters)
            if getattr(m, "_observed_b", None) is not None:
                m._observed_b = None
    spent["glue"] = max(0.0, total - sum(spent.values()))
    return {"total_s": total, "kinds_s": spent}


def speed(model, snns: dict, reps, log):
    """Float vs spiking wall time per T (``snns``: T -> spiking model), medians of interleaved runs."""
    import torch

    x = torch.randint(0, model.config.vocab_size, (4, model.config.max_seq), generator=torch.Generator().manual_seed(1))
    out = {"tokens": list(x.shape), "threads": torch.get_num_threads(), "by_T": {}}
    log(f"\nspeed on {tuple(x.shape)} tokens ({torch.get_num_threads()} threads), median of {reps} interleaved runs:")
    log(f"{'T':>3} {'float ms':>9} {'spiking ms':>11} {'ratio':>7}   spiking time by operator kind")
    for T, snn in sorted(snns.items()):
        with torch.no_grad():
            model(x), snn(x)  # warm-up
            tf, ts = [], []
            for _ in range(reps):
                t0 = time.perf_counter()
                model(x)
                tf.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                snn(x)
                ts.append(time.perf_counter() - t0)
        f, s = statistics.median(tf), statistics.median(ts)
        parts = time_breakdown(snn, x)
        share = {k: v / parts["total_s"] for k, v in parts["kinds_s"].items()}
        log(f"{T:>3} {1e3 * f:>9.1f} {1e3 * s:>11.1f} {s / f:>6.1f}x   "
            + ", ".join(f"{k} {100 * v:.0f}%" for k, v in sorted(share.items(), key=lambda kv: -kv[1])))
        out["by_T"][T] = {"float_s": f, "spiking_s": s, "ratio": s / f, "float_runs_s": tf, "spiking_runs_s": ts,
                          "time_share": share}
    return out


def plot(chars, hf, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, res in chars.items():
        Ts = [r["timesteps"] for r in res["rows"]]
        axes[0].plot(Ts, [r["snn_perplexity"] for r in res["rows"]], "o-", label=f"{name} spiking")
        axes[0].axhline(res["rows"][0]["ann_perplexity"], ls=":", lw=1, color=axes[0].lines[-1].get_color(),
                        label=f"{name} float")
    axes[0].set_yscale("log")
    axes[0].set_ylabel("valid perplexity")
    for name, row in hf.items():
        Ts = sorted(row)
        axes[1].plot(Ts, [max(1e-12, 1 - row[T]) for T in Ts], "o-", label=name)
    axes[1].axhline(1e-3, color="k", ls=":", lw=1, label="target 0.999")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("1 - cosine similarity")
    Ts = sorted({r["timesteps"] for res in chars.values() for r in res["rows"]} | {T for row in hf.values() for T in row})
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(Ts)
        ax.set_xticklabels([str(T) for T in Ts])
        ax.set_xlabel("timesteps T")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle("ANN -> SNN conversion: fidelity vs T", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    args = _args(argv)
    import torch

    torch.set_num_threads(args.threads)
    Ts = [int(t) for t in args.timesteps.split(",")]
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    chars = char_models([n for n in args.models.split(",") if n], Ts, args.eval_chars, args.calib_chars, log)
    hf = {} if args.skip_hf else hf_models(Ts, log)
    ok = True
    result = {"eval_chars": args.eval_chars, "timesteps": Ts, "char_models": {}, "hf_models": hf}
    for name, res in chars.items():
        meets = [r["timesteps"] for r in res["rows"] if r["timesteps"] <= 16 and r["gap_pct"] <= 1.0]
        res["target_T"] = min(meets) if meets else None
        ok &= bool(meets)
        log(f"{name}: within 1% of the float perplexity from T = {res['target_T']}")
        result["char_models"][name] = {k: v for k, v in res.items() if k not in ("model", "snn")}
    if hf and 16 in Ts:
        ok &= all(row[16] >= 0.999 for row in hf.values())
    if not args.skip_speed and "gpt-char" in chars:
        res = chars["gpt-char"]
        wanted = {T for T in (res["target_T"], 8, 16) if T is not None}
        snns = {T: m for T, m in res["snn"].items() if T in wanted}
        if snns:
            result["speed"] = speed(res["model"], snns, args.reps, log)
            result["speed"]["target_T"] = res["target_T"]
    if chars or hf:
        result["plot"] = str(plot(chars, hf, args.plot))
        log(f"fidelity plot: {args.plot}")
    if args.json:
        print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
