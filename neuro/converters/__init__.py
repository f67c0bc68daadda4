"""Converters into neuro: SpikingJelly networks (:func:`from_spikingjelly`) and Transformer and RWKV language
models into spiking Transformers and spiking RWKVs (:func:`convert`, with its stages :func:`validate`, :func:`calibrate`,
:func:`choose_headroom`, :func:`map_model`, :func:`report`; :func:`demo_conversion` for the demo), reading Hugging
Face folders (:func:`load_hf_folder`, :func:`from_hf`).

Submodules are imported on first use, so ``import neuro.converters`` does not load SpikingJelly.
"""
from __future__ import annotations

import importlib

_LAZY = {"from_spikingjelly": "neuro.converters.spikingjelly",
         "convert": "neuro.converters.conversion", "validate": "neuro.converters.conversion",
         "calibrate": "neuro.converters.conversion", "map_model": "neuro.converters.conversion",
         "choose_headroom": "neuro.converters.conversion", "headroom_split": "neuro.converters.conversion",
         "quantized_twin": "neuro.converters.conversion", "report": "neuro.converters.conversion",
         "ConversionParams": "neuro.converters.spiking_transformer",
         "SpikingTransformer": "neuro.converters.spiking_transformer",
         "QuantizedTransformer": "neuro.converters.spiking_transformer",
         "SpikingRWKV": "neuro.converters.spiking_rwkv", "QuantizedRWKV": "neuro.converters.spiking_rwkv",
         "demo_conversion": "neuro.converters.workflow",
         "load_hf_folder": "neuro.converters.huggingface", "from_hf": "neuro.converters.huggingface"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'neuro.converters' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
