"""The bundled char-level Tiny Shakespeare models: they load, know their vocabulary, and predict the
valid split about as well as when they were saved."""
import pytest
import torch

from neuro.data import tinyshakespeare
from neuro.io import load_model
from neuro.models.transformer import BUNDLED, TransformerLM, bundled_model_dir, evaluate_lm, generate

# Perplexity per character on the first 2,000 valid characters, measured when the models were saved
# (gpt-char 5.141, llama-char 4.557), with a 5 % margin. A uniform guess scores 65.
THRESHOLDS = {"gpt-char": 5.4, "llama-char": 4.8}


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_valid_perplexity(name):
    folder = bundled_model_dir(name)
    assert sum(f.stat().st_size for f in folder.iterdir()) < 4_000_000  # a few MB at most
    m = load_model(folder).eval()
    data = tinyshakespeare()
    assert isinstance(m, TransformerLM) and m.config.arch == name.split("-")[0]
    assert m.vocab_chars == "".join(data.tokenizer.chars)
    r = evaluate_lm(m, data.valid, m.config.max_seq, max_chars=2000)
    assert r["tokens"] == 1999
    assert 1.0 < r["perplexity"] < THRESHOLDS[name]


def test_bundled_gpt_streams_like_its_full_forward():
    m = load_model(bundled_model_dir("gpt-char")).eval()
    tok = tinyshakespeare().tokenizer
    out = generate(m, tok.encode("ROMEO:")[None], 20, temperature=0)
    ids = out[:, :-1]
    with torch.no_grad():
        greedy = m(ids).argmax(-1)[:, 5:]  # each position's most likely next character
    assert torch.equal(greedy, out[:, 6:])


def test_unknown_bundled_name():
    from neuro.core.errors import ParameterError

    with pytest.raises(ParameterError, match="gpt-char"):
        bundled_model_dir("bert-char")
