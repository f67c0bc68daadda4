"""``neuro generate``: sampling from a saved char-level model through the CLI, and its usage errors."""
import json

import pytest
import torch

from neuro.cli import main
from neuro.data import CharTokenizer
from neuro.io import save_model
from neuro.models.transformer import TransformerLM, config_for, generate
from neuro.synapses.linear import Linear

CHARS = "\n abcdefgh"


@pytest.fixture
def char_model(tmp_path):
    torch.manual_seed(0)
    m = TransformerLM(config_for("llama", vocab_size=len(CHARS), d_model=16, n_layer=1, n_head=2, n_kv_head=1,
                                 max_seq=16, vocab_chars=CHARS))
    return m, save_model(m, tmp_path / "m")


def _run(capsys, *argv):
    rc = main(["generate", *map(str, argv)])
    return rc, capsys.readouterr()


def test_generate_json_is_seeded_and_uses_the_vocabulary(char_model, capsys):
    _, folder = char_model
    rc, out = _run(capsys, folder, "--prompt", "abc", "--tokens", 30, "--seed", 4, "--json")  # past max_seq 16
    assert rc == 0
    s = json.loads(out.out)
    assert s["text"].startswith("abc") and len(s["text"]) == 33 and s["continuation"] == s["text"][3:]
    assert set(s["text"]) <= set(CHARS) and s["class"] == "TransformerLM"
    rc, again = _run(capsys, folder, "--prompt", "abc", "--tokens", 30, "--seed", 4, "--json")
    assert json.loads(again.out)["text"] == s["text"]


def test_greedy_cli_text_equals_generate(char_model, capsys):
    m, folder = char_model
    rc, out = _run(capsys, folder, "--prompt", "ha ", "--tokens", 12, "--temperature", 0)
    assert rc == 0
    tok = CharTokenizer(list(CHARS))
    want = tok.decode(generate(m, tok.encode("ha ")[None], 12, temperature=0)[0])
    assert out.out == want + "\n"


def test_unknown_prompt_character_is_exit_2(char_model, capsys):
    _, folder = char_model
    rc, out = _run(capsys, folder, "--prompt", "abZ!", "--tokens", 3)
    assert rc == 2 and "'!', 'Z'" in out.err and "vocabulary" in out.err and out.out == ""


def test_model_without_character_vocabulary_is_exit_2(tmp_path, capsys):
    m = TransformerLM(config_for("gpt", vocab_size=12, d_model=8, n_layer=1, n_head=2, max_seq=8))
    folder = save_model(m, tmp_path / "novocab")
    rc, out = _run(capsys, folder, "--prompt", "a")
    assert rc == 2 and "no character vocabulary" in out.err
    folder = save_model(Linear(3, 2), tmp_path / "linear")
    rc, out = _run(capsys, folder, "--prompt", "a")
    assert rc == 2 and "no character vocabulary" in out.err


def test_bad_folder_and_bad_numbers_are_exit_2(char_model, tmp_path, capsys):
    _, folder = char_model
    rc, out = _run(capsys, tmp_path / "absent", "--prompt", "a")
    assert rc == 2 and "no such model folder" in out.err
    rc, out = _run(capsys, folder, "--tokens", -1)
    assert rc == 2 and "--tokens" in out.err
    rc, out = _run(capsys, folder, "--temperature", -0.5)
    assert rc == 2 and "temperature" in out.err
