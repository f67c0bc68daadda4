"""The bundled char-level Tiny Shakespeare RWKV: it loads, knows its vocabulary, predicts the valid split
about as well as when it was saved, and streams exactly like its sequence form."""
import json

import torch

from neuro.data import tinyshakespeare
from neuro.io import load_model
from neuro.models.rwkv import RWKVLM, bundled_rwkv_dir
from neuro.models.transformer import evaluate_lm, generate

# Perplexity per character on the first 2,000 valid characters, measured when the model was saved: 4.328
# (the whole valid split: 4.596), with a 5 % margin. A uniform guess scores 65.
THRESHOLD = 4.55


def test_bundled_rwkv_valid_perplexity():
    folder = bundled_rwkv_dir()
    assert sum(f.stat().st_size for f in folder.iterdir()) < 4_000_000  # a few MB at most
    m = load_model(folder).eval()
    data = tinyshakespeare()
    assert isinstance(m, RWKVLM) and (m.config.n_layer, m.config.d_model) == (4, 128)
    assert m.vocab_chars == "".join(data.tokenizer.chars)
    r = evaluate_lm(m, data.valid, 128, max_chars=2000)
    assert r["tokens"] == 1999
    assert 1.0 < r["perplexity"] < THRESHOLD
    saved = json.loads((folder / "train.json").read_text())
    assert saved["task"] == "rwkv" and saved["parameters"] == m.num_parameters()


def test_bundled_rwkv_streams_like_its_sequence_form():
    m = load_model(bundled_rwkv_dir()).eval()
    tok = tinyshakespeare().tokenizer
    out = generate(m, tok.encode("ROMEO:")[None], 20, temperature=0)
    with torch.no_grad():
        greedy = m(out[:, :-1]).argmax(-1)[:, 5:]  # each position's most likely next character
    assert torch.equal(greedy, out[:, 6:])
