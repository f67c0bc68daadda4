"""Bundled data and encoders.

``tinyshakespeare.txt``: Karpathy's Tiny Shakespeare (public domain), the character-level corpus
of every language-model task in the package; :mod:`neuro.data.text` loads and splits it.
"""
from .text import CharTokenizer, TextSplits, batches, load_text, tinyshakespeare

__all__ = ["CharTokenizer", "TextSplits", "batches", "load_text", "tinyshakespeare"]
