"""``neuro train spikegpt`` on tiny sizes: both models trained and scored, spike rates, saved folders, usage errors."""
import json
import math

import pytest

from neuro.cli import main
from neuro.converters import SpikingRWKV
from neuro.data import tinyshakespeare
from neuro.io import load_model
from neuro.models.rwkv import RWKVLM
from neuro.models.spikegpt import SpikeGPT
from neuro.models.transformer import evaluate_lm

TINY = ["--batch-size", "2", "--seq-len", "16", "--d-model", "16", "--layers", "2", "--eval-chars", "200",
        "--warmup", "2", "--json", "--no-progress", "--threads", "1"]


def test_trains_both_models_and_reports_bpc_and_rates(tmp_path, capsys):
    rc = main(["train", "spikegpt", "--steps", "3", "--baseline", "rwkv", "--out", str(tmp_path), *TINY])
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    sg, fl = s["spikegpt"], s["rwkv"]
    assert sg["steps"] == fl["steps"] == 3 and sg["valid_chars"] == fl["valid_chars"] == 200
    for r in (sg, fl):
        assert r["valid_bpc"] == pytest.approx(r["valid_loss"] / math.log(2))
        assert math.log(65) * 0.5 < r["valid_loss"] < math.log(65) * 2
    assert sorted(sg["spike_rates"]) == ["binary", "blocks.0.lif1", "blocks.0.lif2", "blocks.1.lif1", "blocks.1.lif2"]
    assert all(0.0 <= v <= 1.0 for v in sg["spike_rates"].values()) and 0.2 < sg["spike_rates"]["binary"] < 0.8
    m = load_model(tmp_path / "spikegpt-char")
    assert isinstance(m, SpikeGPT) and m.num_parameters() == sg["parameters"]
    assert m.vocab_chars == "".join(tinyshakespeare().tokenizer.chars)
    again = evaluate_lm(m.eval(), tinyshakespeare().valid, 16, max_chars=200)
    assert again["loss"] == pytest.approx(sg["valid_loss"], rel=1e-6)
    assert isinstance(load_model(tmp_path / "rwkv-char-baseline"), RWKVLM)
    # the float baseline converted to spiking at T = 8 and scored on the same characters: close to the float
    cv = s["converted"]
    assert cv["timesteps"] == 8 and cv["valid_chars"] == 200
    assert abs(cv["valid_bpc"] - fl["valid_bpc"]) < 0.05 * fl["valid_bpc"]
    snn = load_model(tmp_path / "rwkv-char-baseline-spiking-T8")
    assert isinstance(snn, SpikingRWKV) and snn.timesteps == 8
    assert json.loads((tmp_path / "train_spikegpt.json").read_text())["spikegpt"]["steps"] == 3


def test_baseline_only_trains_the_float_model(tmp_path, capsys):
    rc = main(["train", "spikegpt", "--steps", "2", "--baseline", "rwkv", "--baseline-only", "--out", str(tmp_path),
               "--convert-timesteps", "0", *TINY])
    s = json.loads(capsys.readouterr().out)
    assert rc == 0 and "spikegpt" not in s and s["rwkv"]["steps"] == 2 and "converted" not in s


def test_usage_errors_are_exit_2(tmp_path, capsys):
    for argv, flag in ((["--minutes", "0"], "--minutes"), (["--steps", "0"], "--steps"),
                       (["--seq-len", "1"], "--seq-len"), (["--lr", "-1"], "--lr"),
                       (["--baseline-only"], "--baseline-only"), (["--epochs", "2"], "--epochs"),
                       (["--convert-timesteps", "17"], "--convert-timesteps"),
                       (["--convert-timesteps", "-1"], "--convert-timesteps")):
        rc = main(["train", "spikegpt", *argv, "--out", str(tmp_path)])
        assert rc == 2 and flag in capsys.readouterr().err
