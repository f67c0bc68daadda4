"""Character-level text data: the bundled Tiny Shakespeare, a tokenizer and the fixed split.

The split is contiguous and fixed, so every model in the package is scored on the same characters:
the first 90 % of the text is ``train``, the next 5 % ``valid``, the last 5 % ``test`` (cut at
character offsets ``floor(0.90 n)`` and ``floor(0.95 n)``). The vocabulary is the sorted set of
characters of the whole bundled text (65 symbols), so every split encodes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import torch

from ..core.errors import FormatError, ParameterError

DATA_DIR = Path(__file__).resolve().parent
TINYSHAKESPEARE = DATA_DIR / "tinyshakespeare.txt"
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)


def load_text(path) -> str:
    """Read a UTF-8 text file; a missing, empty or non-UTF-8 file raises :class:`FormatError`."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(str(path), None, None, "does not exist")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(str(path), f"byte {e.start}", None, "is not UTF-8 text") from None
    if not text.strip():
        raise FormatError(str(path), None, None, "is empty (no text)")
    return text


class CharTokenizer:
    """Maps characters to ids (sorted order) and back.

    Example: ``tok = CharTokenizer.from_text("abca"); tok.encode("cab") -> tensor([2, 0, 1])``.
    """

    def __init__(self, chars):
        chars = list(chars)
        if not chars or len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ParameterError("CharTokenizer", "chars", "".join(map(str, chars))[:40],
                                 "a non-empty list of distinct single characters")
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        """Text -> ids. Shape: [len(text)], int64. An unknown character raises :class:`ParameterError`."""
        try:
            return torch.tensor([self.index[c] for c in text], dtype=torch.long)
        except KeyError as e:
            raise ParameterError("CharTokenizer", "text", e.args[0], "characters of the tokenizer's vocabulary") from None

    def decode(self, ids) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        for i in ids:
            if not 0 <= int(i) < len(self.chars):
                raise ParameterError("CharTokenizer", "id", i, f"in [0, {len(self.chars)})")
        return "".join(self.chars[int(i)] for i in ids)

    def to_json(self) -> str:
        return json.dumps(self.chars)

    @classmethod
    def from_json(cls, s: str) -> "CharTokenizer":
        return cls(json.loads(s))


@dataclass(frozen=True)
class TextSplits:
    """Encoded splits of one text. Shape: each [n_chars] int64."""

    tokenizer: CharTokenizer
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor

    def split(self, name: str) -> torch.Tensor:
        if name not in ("train", "valid", "test"):
            raise ParameterError("TextSplits", "split", name, "'train', 'valid' or 'test'")
        return getattr(self, name)


def split_text(text: str, tokenizer: Optional[CharTokenizer] = None) -> TextSplits:
    """Encode ``text`` and cut it 90/5/5 at fixed offsets (see the module docstring)."""
    tok = tokenizer or CharTokenizer.from_text(text)
    ids = tok.encode(text)
    n = len(ids)
    a, b = int(n * SPLIT_FRACTIONS[0]), int(n * (SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]))
    return TextSplits(tok, ids[:a], ids[a:b], ids[b:])


def tinyshakespeare() -> TextSplits:
    """The bundled Tiny Shakespeare, split 90/5/5: 1,003,854 / 55,770 / 55,770 characters, 65 symbols."""
    return split_text(load_text(TINYSHAKESPEARE))


def batches(ids: torch.Tensor, batch_size: int, seq_len: int, generator: Optional[torch.Generator] = None
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless random (input, target) windows for next-character training.

    Shape: ids [N] -> x [B, L], y [B, L] with y[:, i] = ids[start + i + 1].
    """
    if batch_size < 1 or seq_len < 1:
        raise ParameterError("batches", "batch_size/seq_len", (batch_size, seq_len), "integers >= 1")
    if len(ids) < seq_len + 2:
        raise ParameterError("batches", "ids", len(ids), f"at least seq_len + 2 = {seq_len + 2} tokens")
    while True:
        start = torch.randint(0, len(ids) - seq_len - 1, (batch_size,), generator=generator)
        offs = start[:, None] + torch.arange(seq_len)[None, :]  # [B, L]
        yield ids[offs], ids[offs + 1]
