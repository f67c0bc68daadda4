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
from .train_lm import add_lm_arguments, check_lm_args, train_and_save

DEFAULTS = dict(d_model=128, n_layer=4, seq_len=128)


def add_arguments(p):
    d = DEFAULTS
    add_lm_arguments(p, d["seq_len"], d["d_model"], d["n_layer"], weight_decay=0.01)
    p.add_argument("--d-ff", type=int, default=None, help="channel-mixing hidden width (default 4 d_model)")


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
