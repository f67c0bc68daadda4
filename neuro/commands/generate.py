"""``neuro generate MODEL_DIR --prompt TEXT --tokens N``: sample text from a character-level model folder.

Loads the folder with :func:`neuro.io.load_model` and samples with
:func:`neuro.models.transformer.generate`, which feeds the prompt once and then one token at a
time through the model's ``init_cache``/``decode_step`` (its key/value cache, or for a converted
spiking model its state in spiking form). Any savable model offering those two methods and a
character vocabulary (``vocab_chars`` on the model or its config) works. Prints the prompt and
its continuation (``--json``: a summary with the text and the speed). Exit code 2 for a model
without a character vocabulary or streaming methods, or a prompt character outside the vocabulary.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

HELP = "generate text from a character-level language model folder"


def add_arguments(p):
    p.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="model folder (config.json + model.safetensors)")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    p.add_argument("--tokens", type=int, default=200, help="characters to generate (default 200)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature; 0: greedy (default 0.8)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely characters only")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of the text")


def vocab_chars_of(model) -> Optional[str]:
    """The character vocabulary of a model: ``model.vocab_chars``, else its config's ``vocab_chars``, else None."""
    chars = getattr(model, "vocab_chars", None)
    if chars is None:
        cfg = getattr(model, "config", None)
        chars = cfg.get("vocab_chars") if isinstance(cfg, dict) else getattr(cfg, "vocab_chars", None)
    if chars is None and callable(getattr(model, "get_config", None)):
        cfg = model.get_config()
        chars = cfg.get("vocab_chars") if isinstance(cfg, dict) else None
    return chars if isinstance(chars, str) and chars else None


def _fail(message: str) -> int:
    print(f"neuro generate: error: {message}", file=sys.stderr)
    return 2


def run(args) -> int:
    import torch

    from ..core.errors import ParameterError
    from ..data import CharTokenizer
    from ..io import load_model
    from ..models.transformer import generate

    if args.tokens < 0:
        raise ParameterError("neuro generate", "--tokens", args.tokens, "an integer >= 0")
    if not args.prompt:
        raise ParameterError("neuro generate", "--prompt", args.prompt, "a non-empty text")
    torch.set_num_threads(max(1, args.threads))
    model = load_model(args.model_dir)
    chars = vocab_chars_of(model)
    if chars is None:
        return _fail(f"{args.model_dir} has no character vocabulary (vocab_chars in its config): "
                     f"it is not a character-level language model")
    for method in ("init_cache", "decode_step"):
        if not callable(getattr(model, method, None)):
            return _fail(f"{args.model_dir} holds a {type(model).__name__}, which cannot stream tokens "
                         f"(it has no {method} method)")
    tok = CharTokenizer(list(chars))
    unknown = sorted({c for c in args.prompt if c not in tok.index})
    if unknown:
        return _fail(f"--prompt holds character(s) {', '.join(map(repr, unknown))} outside the model's "
                     f"vocabulary of {len(chars)} characters")
    if hasattr(model, "eval"):
        model.eval()
    prompt = tok.encode(args.prompt)[None]  # [1, L0]
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    out = generate(model, prompt, args.tokens, temperature=args.temperature, top_k=args.top_k, generator=gen)
    seconds = time.perf_counter() - t0
    text = tok.decode(out[0])
    if args.json:
        print(json.dumps({"model": str(args.model_dir), "class": type(model).__name__, "prompt": args.prompt,
                          "tokens": args.tokens, "temperature": args.temperature, "top_k": args.top_k,
                          "seed": args.seed, "text": text, "continuation": text[len(args.prompt):],
                          "seconds": round(seconds, 4),
                          "tokens_per_s": round(args.tokens / seconds, 2) if seconds > 0 else None}))
    else:
        print(text)
    return 0
