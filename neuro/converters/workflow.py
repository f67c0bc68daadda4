"""The conversion job end to end, shared by ``neuro convert``, the demo, the notebook and the benchmark.

:func:`load_any` reads a neuro model folder or a Hugging Face folder; :func:`eval_ids` picks the
tokens a conversion is scored on; :func:`sweep` converts at several T from one calibration and
scores each; :func:`plot_fidelity` draws the fidelity curve; :func:`demo_conversion` is the demo.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..core.errors import FormatError, ParameterError
from ..models.transformer import TransformerLM, generate
from .conversion import (auto_headroom_split, backend_for, calibrate, choose_headroom, map_model, quantized_twin,
                         report, validate)
from .spiking_transformer import ConversionParams

BUNDLED = Path(__file__).resolve().parent.parent / "data" / "models"


def bundled_model_dir(name: str = "gpt-char") -> Path:
    """Folder of a bundled trained checkpoint (``gpt-char``, ``llama-char`` or ``rwkv-char``)."""
    path = BUNDLED / name
    if not (path / "config.json").is_file():
        raise FormatError(str(path), None, None, "no bundled model folder of this name")
    return path


def load_any(folder, trust_pickle: bool = False):
    """A :class:`TransformerLM` or an :class:`~neuro.models.rwkv.RWKVLM` (any class with conversion stages in
    :data:`~neuro.converters.conversion.BACKENDS`) from a neuro model folder or a Hugging Face folder (``config.json``
    with ``model_type``/``architectures``), read with safetensors only unless ``trust_pickle``."""
    from ..io import load_model

    folder = Path(folder)
    cfg = folder / "config.json"
    doc = None
    if cfg.is_file():
        try:
            doc = json.loads(cfg.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise FormatError(str(cfg), None, None, f"not valid JSON: {e}") from e
    if isinstance(doc, dict) and doc.get("format") != "neuro-model" and ("model_type" in doc or "architectures" in doc):
        from .huggingface import load_hf_folder

        return load_hf_folder(folder, trust_pickle=trust_pickle)
    model = load_model(folder)
    if not isinstance(model, TransformerLM) and backend_for(model) is None:
        raise ParameterError("convert", "model", type(model).__name__,
                             "a TransformerLM or RWKVLM model folder (see neuro.converters.conversion.BACKENDS)")
    return model


def eval_ids(model: TransformerLM, n_chars: int, text_file=None) -> torch.Tensor:
    """Evaluation tokens: the first ``n_chars`` characters of ``text_file`` or, for a char-level model
    whose vocabulary is Tiny Shakespeare's, of the bundled valid split; otherwise ``n_chars`` token ids
    drawn with a fixed seed (for models without a character vocabulary)."""
    from ..data.text import CharTokenizer, load_text, tinyshakespeare

    chars = model.config.vocab_chars
    if text_file is not None:
        if chars is None:
            raise ParameterError("eval_ids", "text_file", str(text_file), "None for a model without a character vocabulary")
        text = load_text(text_file)[:n_chars]
        tok = CharTokenizer(list(chars))
        bad = sorted(set(text) - set(tok.index))
        if bad:
            raise FormatError(str(text_file), f"character {bad[0]!r}", None, "is not in the model's vocabulary")
        return tok.encode(text)
    if chars is not None:
        splits = tinyshakespeare()
        if set(splits.tokenizer.chars) <= set(chars):
            tok = CharTokenizer(list(chars))
            return tok.encode(splits.tokenizer.decode(splits.valid[:n_chars]))
    g = torch.Generator().manual_seed(1234)
    return torch.randint(0, model.config.vocab_size, (n_chars,), generator=g)


def sweep(model: TransformerLM, calibration, timesteps: Sequence[int], ids: torch.Tensor,
          progress: bool = False, layers_at: Optional[int] = None, **params) -> dict:
    """Calibrate once, convert at each T, and score the float model, the twin and the spiking model.

    Returns ``{"calibration": CalibrationRecord, "rows": [report dicts per T], "models": {T: snn}}``.
    """
    validate(model)
    calib = calibrate(model, calibration, progress=progress)
    split = auto_headroom_split(model, calibration, ConversionParams(**params))  # headroom chosen per T
    rows, models = [], {}
    it = list(timesteps)
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(it, desc="convert", unit="T")
    ann = None
    for T in it:
        if not isinstance(T, int) or isinstance(T, bool) or T < 1:
            raise ParameterError("convert", "timesteps", T, "an integer >= 1")
        p, chosen = choose_headroom(model, split, ConversionParams(timesteps=T, **params))
        snn, twin = map_model(model, calib, p), quantized_twin(model, calib, p)
        rep = report(model, snn, twin, ids, layers=(layers_at == T))
        if ann is None:
            ann = rep.ann
        rows.append(rep.to_dict() | {"headroom_bits": p.headroom}
                    | ({"headroom_scores": chosen.summary()["scores"]} if chosen is not None else {}))
        models[T] = snn
    return {"calibration": calib, "rows": rows, "models": models}


def plot_fidelity(rows: list, path, title: str = "spiking conversion: fidelity vs T") -> Path:
    """Perplexity (decoders) or cosine similarity (encoders) against T, with the float and twin values."""
    from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

    Ts = [r["timesteps"] for r in rows]
    fig = Figure(figsize=(5, 3.4))
    ax = fig.add_subplot()
    if rows and rows[0]["metric"] == "perplexity":
        ax.plot(Ts, [r["snn_perplexity"] for r in rows], "o-", label="spiking")
        ax.plot(Ts, [r["twin_perplexity"] for r in rows], "x--", label="quantized twin")
        ax.axhline(rows[0]["ann_perplexity"], color="k", lw=1, label="float")
        ax.axhline(1.01 * rows[0]["ann_perplexity"], color="k", lw=0.8, ls=":", label="float +1%")
        ax.set_ylabel("perplexity")
        ax.set_yscale("log")
    else:
        ax.plot(Ts, [1 - r["cosine_similarity"] for r in rows], "o-", label="1 - cosine (spiking vs float)")
        ax.set_yscale("log")
        ax.set_ylabel("1 - cosine similarity")
    ax.set_xscale("log", base=2)
    ax.set_xticks(Ts)
    ax.set_xticklabels([str(t) for t in Ts])
    ax.set_xlabel("timesteps T")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def demo_conversion(out_dir, timesteps=(2, 4, 8, 16), eval_chars: int = 1000, progress: bool = True,
                    model_dir=None, calib_chars: int = 4096, n_lines: int = 3, line_chars: int = 60) -> dict:
    """Convert the bundled char-level GPT at each T, score it on the first ``eval_chars`` characters of
    the valid split, write ``fidelity.png`` into ``out_dir`` and generate a few lines from the spiking
    model at the smallest T within 1 % of the float perplexity (the largest T if none is), which is
    saved as the model folder ``out_dir/spiking-T<T>``. Calibration: the first ``calib_chars``
    characters of the train split.

    Returns ``{"model", "eval_chars", "rows": [per T: ann/twin/snn perplexity...], "plot", "samples",
    "spiking_model", "timesteps_generated"}``.
    """
    from ..data.text import CharTokenizer, tinyshakespeare

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    folder = Path(model_dir) if model_dir is not None else bundled_model_dir("gpt-char")
    model = load_any(folder).eval()
    splits = tinyshakespeare()
    tok = CharTokenizer(list(model.config.vocab_chars))
    calib = tok.encode(splits.tokenizer.decode(splits.train[:calib_chars]))
    ids = eval_ids(model, eval_chars)
    res = sweep(model, calib, list(timesteps), ids, progress=progress)
    plot = plot_fidelity(res["rows"], out / "fidelity.png")
    good = [r["timesteps"] for r in res["rows"] if r["snn_perplexity"] <= 1.01 * r["ann_perplexity"]]
    T_gen = min(good) if good else max(timesteps)
    snn = res["models"][T_gen]
    g = torch.Generator().manual_seed(0)
    prompts = ["ROMEO:\n", "First Citizen:\n", "KING HENRY:\n"][:n_lines]
    samples = []
    for p in prompts:
        pid = tok.encode(p)[None]
        gen = generate(snn, pid, line_chars, temperature=0.8, top_k=10, generator=g)
        samples.append(tok.decode(gen[0]))
    from ..io import save_model

    saved = save_model(snn, out / f"spiking-T{T_gen}", overwrite=True)
    rows = [{k: v for k, v in r.items() if k != "layers"} for r in res["rows"]]
    return {"model": str(folder), "eval_chars": int(len(ids)), "rows": rows, "plot": str(plot), "samples": samples,
            "spiking_model": str(saved),
            "timesteps_generated": T_gen}
