"""Energy of language models: a converted spiking model and its float original, counted on the same
characters by the same :class:`~neuro.energy.OpCounter`, reported per token.

Each family is a :class:`LanguageModelKind` in :data:`LANGUAGE_MODELS` (how to run a text under the
counter, and which float model stands in for the original when none is given):

* Transformer (:class:`~neuro.converters.SpikingTransformer`, :class:`~neuro.models.transformer.TransformerLM`):
  the text in windows of the model's context ``max_seq``, each from an empty cache.
* converted RWKV (:class:`~neuro.converters.spiking_rwkv.SpikingRWKV`): RWKV has no context limit, so
  the text streams through :meth:`decode_step` in windows of :data:`RWKV_WINDOW` tokens with the state
  (token-shift spike trains and WKV numerator/denominator) carried from one window to the next: the
  counts are those of the whole text read as one sequence, at a memory of one window.
* float RWKV (:class:`~neuro.models.rwkv.RWKVLM`) and SpikeGPT (:class:`~neuro.models.spikegpt.SpikeGPT`):
  one forward call over the whole text (their sequence form runs the WKV recurrence token by token,
  equal to the streaming form with the state carried), plus the token-shift interpolations that no
  hook sees (:func:`~neuro.energy.rwkv_rules.token_shift_mixes`).

Used by ``neuro energy LM_DIR --input text.txt`` and by the demo.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

RWKV_WINDOW = 128  # tokens per decode_step call of a converted RWKV (memory only; counts do not depend on it)


@dataclass(frozen=True)
class LanguageModelKind:
    """A family of language models: ``types`` (classes), ``run(model, ids) -> Counts`` (counts one text,
    ids int64 [L]), ``float_original(model)`` (a float model of the same architecture, or None)."""

    name: str
    types: tuple
    run: Callable
    float_original: Optional[Callable] = None


def _count(model, calls, multistep=None, source=""):
    import torch

    from .counter import OpCounter

    counter = OpCounter(model, multistep)
    with torch.no_grad(), counter:
        calls()
    return counter.counts(source or type(model).__name__)


def _run_windows(model, ids, multistep=None):
    """Transformers: windows of ``max_seq`` tokens, each from an empty cache."""
    def calls():
        for w in ids.split(model.config.max_seq):
            model(w[None])
    return _count(model, calls, multistep)


def _run_stream(model, ids, multistep=None):
    """Converted RWKV: decode_step over windows of :data:`RWKV_WINDOW` tokens, the state carried."""
    def calls():
        state = model.init_cache(1)
        for w in ids.split(RWKV_WINDOW):
            _, state = model.decode_step(w[None], state)
    return _count(model, calls, multistep)


def _run_sequence(model, ids, multistep=None):
    """Float RWKV and SpikeGPT: one call over the whole text, with the token-shift interpolations."""
    from .rwkv_rules import token_shift_mixes

    counts = _count(model, lambda: model(ids[None]), multistep)
    return token_shift_mixes(counts, model, int(ids.numel()))


def _transformer():
    from ..converters.spiking_transformer import SpikingTransformer
    from ..models.transformer import TransformerLM

    return LanguageModelKind("transformer", (SpikingTransformer, TransformerLM), _run_windows,
                             lambda m: TransformerLM(m.config) if isinstance(m, SpikingTransformer) else None)


def _rwkv():
    from ..converters.spiking_rwkv import SpikingRWKV
    from ..models.rwkv import RWKVLM

    return [LanguageModelKind("spiking rwkv", (SpikingRWKV,), _run_stream, lambda m: RWKVLM(m.config)),
            LanguageModelKind("rwkv", (RWKVLM,), _run_sequence)]


def _spikegpt():
    from ..models.rwkv import RWKVLM
    from ..models.spikegpt import SpikeGPT

    return LanguageModelKind("spikegpt", (SpikeGPT,), _run_sequence, lambda m: RWKVLM(m.config.rwkv()))


#: builders of the known families (imported on first use)
LANGUAGE_MODELS: list = [_transformer, _rwkv, _spikegpt]


def language_kind(model) -> Optional[LanguageModelKind]:
    """The :class:`LanguageModelKind` of ``model``, or None when it is no known language model."""
    for build in LANGUAGE_MODELS:
        kinds = build()
        for kind in kinds if isinstance(kinds, list) else [kinds]:
            if isinstance(model, kind.types):
                return kind
    return None


def language_model_report(model, text: str, targets="45nm", ann=None, max_chars: int = 256):
    """The EnergyReport of a language model (any of :data:`LANGUAGE_MODELS`, converted or float) on the
    first ``max_chars`` characters of ``text``, with per-token figures (``tokens``, ``per_token``, per
    target ``per_token_j`` and ``ann_per_token_j``).

    The ANN side: ``ann`` (the float original, run the way its own family runs) when given; else, for
    a spiking model, a float model of the same architecture (its counts depend on the architecture and
    on which weights are zero, and the float weights of a trained model are all nonzero).
    """
    from ..core.errors import ParameterError, UnsupportedLayerError
    from ..data.text import CharTokenizer
    from .report import EnergyReport
    from .targets import get_models

    kind = language_kind(model)
    if kind is None:
        raise UnsupportedLayerError([("model", type(model).__name__)], context="neuro energy on text")
    chars = getattr(model.config, "vocab_chars", None)
    if not chars:
        raise ParameterError("neuro energy", "model", type(model).__name__, "a character-level model (vocab_chars)")
    if not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars < 2:
        raise ParameterError("neuro energy", "--max-chars", max_chars, "an integer >= 2")
    if not isinstance(text, str) or not text:
        raise ParameterError("neuro energy", "input", text if isinstance(text, str) else type(text).__name__,
                             "a non-empty text")
    ids = CharTokenizer(list(chars)).encode(text[:max_chars])
    if ids.numel() < 1:
        raise ParameterError("neuro energy", "input", text[:20], "a non-empty text")
    models = get_models(targets)
    if ann is None and kind.float_original is not None:
        ann = kind.float_original(model)
    counts = kind.run(model, ids)
    ann_counts = None
    if ann is not None and ann is not model:
        ann_kind = language_kind(ann)
        if ann_kind is None:
            raise UnsupportedLayerError([("ann", type(ann).__name__)], context="neuro energy --ann")
        ann.eval()
        ann_counts = ann_kind.run(ann, ids, multistep=False)
        ann_counts.source = "ANN original"
    return EnergyReport(counts, models, ann=ann_counts, tokens=int(ids.numel()))
