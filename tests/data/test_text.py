import pytest
import torch

from neuro.core.errors import FormatError, ParameterError
from neuro.data import CharTokenizer, batches, load_text, tinyshakespeare


def test_split_sizes_and_roundtrip():
    s = tinyshakespeare()
    assert (len(s.train), len(s.valid), len(s.test)) == (1003854, 55770, 55770)
    assert s.tokenizer.vocab_size == 65
    assert s.tokenizer.decode(s.train[:14]) == "First Citizen:"


def test_batches_are_shifted_windows():
    ids = torch.arange(100)
    x, y = next(batches(ids, 4, 10, torch.Generator().manual_seed(0)))
    assert x.shape == (4, 10) and torch.equal(y, x + 1)


def test_bad_text_inputs(tmp_path):
    with pytest.raises(FormatError, match="does not exist"):
        load_text(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(FormatError, match="empty"):
        load_text(tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(FormatError, match="UTF-8"):
        load_text(tmp_path / "latin1.txt")
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ParameterError, match="'z'"):
        tok.encode("az")
    with pytest.raises(ParameterError):
        tok.decode([5])
    with pytest.raises(ParameterError):
        CharTokenizer(["a", "a"])
    with pytest.raises(ParameterError):
        next(batches(torch.arange(3), 1, 10))
