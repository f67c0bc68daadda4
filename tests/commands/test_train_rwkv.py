"""``neuro train rwkv`` on tiny sizes: the JSON summary, the saved model folder, learning, usage errors."""
import json
import math

import pytest
import torch

from neuro.cli import main
from neuro.data import tinyshakespeare
from neuro.io import load_model
from neuro.models.rwkv import RWKVLM
from neuro.models.transformer import evaluate_lm

TINY = ["--batch-size", "4", "--seq-len", "16", "--d-model", "16", "--layers", "1", "--d-ff", "32",
        "--eval-chars", "300", "--warmup", "2", "--json", "--no-progress", "--threads", "1"]


def test_train_saves_a_char_model_and_reports_valid_scores(tmp_path, capsys):
    rc = main(["train", "rwkv", "--steps", "5", "--out", str(tmp_path), *TINY])
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    assert s["task"] == "rwkv" and s["steps"] == 5 and s["valid_chars"] == 300
    assert s["valid_bpc"] == pytest.approx(s["valid_loss"] / math.log(2))
    assert s["valid_perplexity"] == pytest.approx(math.exp(s["valid_loss"]))
    assert math.log(65) * 0.8 < s["valid_loss"] < math.log(65) * 1.3  # 5 steps: near uniform over 65 chars
    m = load_model(tmp_path / "rwkv-char")
    assert isinstance(m, RWKVLM) and m.num_parameters() == s["parameters"] and m.config.d_ff == 32
    assert m.vocab_chars == "".join(tinyshakespeare().tokenizer.chars)
    again = evaluate_lm(m.eval(), tinyshakespeare().valid, 16, max_chars=300)
    assert again["loss"] == pytest.approx(s["valid_loss"], rel=1e-6)
    assert json.loads((tmp_path / "train_rwkv.json").read_text())["steps"] == 5


def test_training_lowers_the_loss(tmp_path, capsys):
    torch.set_num_threads(1)
    rc = main(["train", "rwkv", "--steps", "100", "--lr", "1e-2", "--out", str(tmp_path), *TINY])
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    assert s["valid_loss"] < 3.2  # uniform: ln 65 = 4.17; measured 2.86 after these 100 steps


def test_usage_errors_are_exit_2(tmp_path, capsys):
    for flag, value in (("--minutes", "0"), ("--steps", "0"), ("--seq-len", "1"), ("--lr", "-1"),
                        ("--eval-chars", "1")):
        rc = main(["train", "rwkv", flag, value, "--out", str(tmp_path)])
        assert rc == 2 and flag in capsys.readouterr().err
    rc = main(["train", "rwkv", "--steps", "1", "--d-model", "0", "--out", str(tmp_path)])
    assert rc == 2 and "d_model" in capsys.readouterr().err
