"""What every language model of neuro shares: its config record, the model-folder round trip, the
vocabulary it was trained on, and the check of the token ids it is called with."""
from __future__ import annotations

from typing import Optional

import torch

from ..core.errors import ParameterError, ShapeError


def check_token_ids(owner: str, idx, start: int = 0, max_seq: Optional[int] = None, min_len: int = 0) -> None:
    """Raises :class:`ShapeError` naming ``owner`` unless ``idx`` is an integer tensor ``[B, L]`` with
    ``L >= min_len`` whose positions ``start .. start + L - 1`` stay below ``max_seq`` (when given)."""
    if (not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.dtype not in (torch.int64, torch.int32)
            or idx.shape[1] < min_len):
        need = f" with L >= {min_len}" if min_len else ""
        got = f"{getattr(idx, 'dtype', type(idx).__name__)} {tuple(getattr(idx, 'shape', ()))}"
        raise ShapeError(owner, f"idx must be an integer tensor [B, L]{need}, got {got}")
    if max_seq is not None and start + idx.shape[1] > max_seq:
        raise ShapeError(owner, f"positions {start}..{start + idx.shape[1] - 1} exceed max_seq = {max_seq}")


class LanguageModel:
    """Mixin of the language models: ``CONFIG`` is the config record type, kept by :meth:`_configure`
    from an instance or its dict; ``get_config`` / ``from_config`` make the model-folder round trip."""

    CONFIG: type

    def _configure(self, config) -> None:
        if isinstance(config, dict):
            config = self.CONFIG.from_dict(config)
        if not isinstance(config, self.CONFIG):
            raise ParameterError(type(self).__name__, "config", type(config).__name__,
                                 f"an instance of {self.CONFIG.__name__} or a dict")
        self.config = config

    def get_config(self) -> dict:
        return self.config.to_dict()

    @classmethod
    def from_config(cls, config: dict):
        return cls(cls.CONFIG.from_dict(config))

    @property
    def vocab_chars(self) -> Optional[str]:
        """The characters of the vocabulary, in id order, for character-level models (else None)."""
        return self.config.vocab_chars

    def num_parameters(self) -> int:
        """Distinct parameters (a tied head counts once)."""
        return sum(p.numel() for p in self.parameters())
