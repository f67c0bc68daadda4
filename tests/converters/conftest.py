"""Shared fixtures of the converter tests."""
import pytest
import torch

from neuro.models.transformer import TransformerLM, config_for


@pytest.fixture
def tiny_lm():
    """Builds a tiny random ``TransformerLM(config_for(arch, **config))`` (seeded) with its weights scaled
    by 4, so that attention is far from uniform and the quantizers see wide ranges."""

    def make(arch: str, seed: int = 0, **config) -> TransformerLM:
        torch.manual_seed(seed)
        m = TransformerLM(config_for(arch, **config)).eval()
        with torch.no_grad():
            for p in m.parameters():
                p.mul_(4.0)
        return m

    return make
