"""Event tensors: the indices of active neurons per time step.

An :class:`EventTensor` stores a spike train ``[T, *shape]`` as the flat indices of the nonzero
entries of each step, concatenated, with per-step offsets (CSR over time). Graded events (EGRU,
signed spikes) keep their values too. Conversion to and from dense is lossless.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .errors import ShapeError


@dataclass(frozen=True)
class EventTensor:
    """Sparse spike train.

    Attributes:
        indices: int64 [nnz], flat index into ``shape`` of each event, step by step.
        offsets: int64 [T + 1], events of step t are ``indices[offsets[t]:offsets[t+1]]``.
        shape:   per-step shape (e.g. (B, N)).
        values:  optional [nnz] event values; None means every event is 1.
        dtype:   dtype of the dense tensor.
    """

    indices: torch.Tensor
    offsets: torch.Tensor
    shape: tuple
    values: Optional[torch.Tensor] = None
    dtype: torch.dtype = torch.float32

    def __post_init__(self):
        if self.offsets.dim() != 1 or self.offsets.numel() < 1:
            raise ShapeError("EventTensor", f"offsets must be 1-D with T+1 entries, got {tuple(self.offsets.shape)}")
        if int(self.offsets[-1]) != self.indices.numel():
            raise ShapeError(
                "EventTensor", f"offsets end at {int(self.offsets[-1])} but there are {self.indices.numel()} indices"
            )
        if self.values is not None and self.values.shape != self.indices.shape:
            raise ShapeError("EventTensor", f"values {tuple(self.values.shape)} != indices {tuple(self.indices.shape)}")
        numel = 1
        for s in self.shape:
            numel *= s
        if self.indices.numel() and (int(self.indices.min()) < 0 or int(self.indices.max()) >= numel):
            raise ShapeError("EventTensor", f"an index lies outside the step shape {self.shape}")

    @property
    def steps(self) -> int:
        return self.offsets.numel() - 1

    @property
    def nnz(self) -> int:
        return self.indices.numel()

    def counts(self) -> torch.Tensor:
        """Events per step. Shape: [T]."""
        return self.offsets.diff()

    def step(self, t: int) -> torch.Tensor:
        """Flat indices of the events of step t."""
        return self.indices[self.offsets[t] : self.offsets[t + 1]]

    @classmethod
    def from_dense(cls, x: torch.Tensor, binary: Optional[bool] = None) -> "EventTensor":
        """Shape: x [T, *shape]. ``binary=None`` keeps values unless every nonzero is 1."""
        if x.dim() < 1:
            raise ShapeError("EventTensor.from_dense", "needs a leading time axis")
        T = x.shape[0]
        flat = x.reshape(T, -1)
        t_idx, n_idx = flat.nonzero(as_tuple=True)  # row-major: sorted by t, then index
        counts = torch.bincount(t_idx, minlength=T)
        offsets = torch.zeros(T + 1, dtype=torch.int64)
        offsets[1:] = counts.cumsum(0)
        vals = flat[t_idx, n_idx]
        if binary is None:
            binary = bool((vals == 1).all())
        return cls(n_idx.to(torch.int64), offsets, tuple(x.shape[1:]), None if binary else vals.clone(), x.dtype)

    def to_dense(self) -> torch.Tensor:
        """Shape: [T, *shape]."""
        T = self.steps
        numel = 1
        for s in self.shape:
            numel *= s
        out = torch.zeros(T, numel, dtype=self.dtype)
        t_idx = torch.repeat_interleave(torch.arange(T), self.counts())
        vals = self.values if self.values is not None else torch.ones(self.nnz, dtype=self.dtype)
        out[t_idx, self.indices] = vals.to(self.dtype)
        return out.reshape(T, *self.shape)

    def to_lists(self):
        """Per step, the list of active flat indices (for plotting and exporters)."""
        return [self.step(t).tolist() for t in range(self.steps)]
