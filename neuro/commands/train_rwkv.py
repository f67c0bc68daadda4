"""``neuro train rwkv``: a character-level RWKV-4 language model on Tiny Shakespeare.

Trains an :class:`~neuro.models.rwkv.RWKVLM` (parallel form) on the fixed training split of
:func:`neuro.data.tinyshakespeare` with random windows (:func:`neuro.data.batches`), AdamW and the
warm-up + cosine schedule of ``neuro train gpt`` (:func:`~neuro.commands.train_lm.lr_at`, progress
= the larger of ``step / --steps`` and ``elapsed / --minutes``). Scored on the valid split with
:func:`~neuro.models.transformer.evaluate_lm` (each window from an empty state) and saved, with
its character vocabulary in the config, to ``OUT/rwkv-char``.
"""
from __future__ import annotations

from .train import TrainTask
from .train_lm import check_lm_args, train_and_save

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


def run(args):
    """Train, score and save the model; returns (summary, ok)."""
    import torch

    from ..data import tinyshakespeare
    from ..models.rwkv import RWKVConfig, RWKVLM

    check_lm_args(args)
    torch.manual_seed(args.seed)
    data = tinyshakespeare()
    chars = "".join(data.tokenizer.chars)
    cfg = RWKVConfig(vocab_size=len(chars), d_model=args.d_model, n_layer=args.layers, d_ff=args.d_ff,
                     vocab_chars=chars)
    return train_and_save("rwkv", RWKVLM(cfg), cfg, data, args)


TASK = TrainTask("character-level RWKV-4 language model on Tiny Shakespeare; saves OUT/rwkv-char",
                 add_arguments, run)
