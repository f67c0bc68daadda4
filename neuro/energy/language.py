"""Energy of language models: a converted spiking Transformer and its float original, counted on the
same characters by the same :class:`~neuro.energy.OpCounter`, reported per token.

Used by ``neuro energy LM_DIR --input text.txt`` and by the demo.
"""
from __future__ import annotations


def language_model_report(model, text: str, targets="45nm", ann=None, max_chars: int = 256):
    """The EnergyReport of a converted language model (:class:`~neuro.converters.SpikingTransformer`)
    or a float :class:`~neuro.models.transformer.TransformerLM` on the first ``max_chars`` characters
    of ``text`` (run in windows of the model's context), with per-token figures.

    The ANN side: ``ann`` (the float original) when given; else, for a spiking model, a float
    TransformerLM of the same architecture (its counts depend on the architecture and on which
    weights are zero, and the float weights of a trained model are all nonzero).
    """
    import torch

    from ..converters.spiking_transformer import SpikingTransformer
    from ..core.errors import ParameterError, UnsupportedLayerError
    from ..data.text import CharTokenizer
    from .counter import OpCounter
    from .report import EnergyReport
    from .targets import get_models
    from ..models.transformer import TransformerLM

    if not isinstance(model, (SpikingTransformer, TransformerLM)):
        raise UnsupportedLayerError([("model", type(model).__name__)], context="neuro energy on text")
    cfg = model.config
    if not cfg.vocab_chars:
        raise ParameterError("neuro energy", "model", type(model).__name__, "a character-level model (vocab_chars)")
    if not isinstance(max_chars, int) or max_chars < 2:
        raise ParameterError("neuro energy", "--max-chars", max_chars, "an integer >= 2")
    ids = CharTokenizer(list(cfg.vocab_chars)).encode(text[:max_chars])
    if ids.numel() < 1:
        raise ParameterError("neuro energy", "input", text[:20], "a non-empty text")
    models = get_models(targets)
    windows = ids.split(cfg.max_seq)
    if ann is None and isinstance(model, SpikingTransformer):
        ann = TransformerLM(cfg)
    snn_counter = OpCounter(model)
    with torch.no_grad(), snn_counter:
        for w in windows:
            model(w[None])
    ann_counts = None
    if ann is not None and ann is not model:
        ann.eval()
        ann_counter = OpCounter(ann, multistep=False)
        with torch.no_grad(), ann_counter:
            for w in windows:
                ann(w[None])
        ann_counts = ann_counter.counts("ANN original")
    return EnergyReport(snn_counter.counts(type(model).__name__), models, ann=ann_counts, tokens=int(ids.numel()))
