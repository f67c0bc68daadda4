"""``neuro deploy``: NIR export and Loihi compilation from a saved model folder, JSON report."""
import json

import numpy as np
import pytest
import torch

from neuro.cli import main
from neuro.io import save_model
from neuro.models.sequential import SpikingSequential
from neuro.neurons import LIF
from neuro.synapses import DelayLinear, Linear


@pytest.fixture
def model_dir(tmp_path):
    torch.manual_seed(0)
    net = SpikingSequential(Linear(30, 50), LIF(decay=0.9, decay_input=False, step_mode="m"), Linear(50, 10),
                            LIF(decay=0.8, decay_input=False, step_mode="m"))
    with torch.no_grad():
        net[0].weight.mul_(3)
        net[2].weight.mul_(3)
    save_model(net, tmp_path / "model")
    return tmp_path / "model"


def _run(capsys, *argv):
    code = main(list(map(str, argv)))
    return code, json.loads(capsys.readouterr().out)


def test_deploy_nir_writes_a_file_neuro_reads_back(model_dir, tmp_path, capsys):
    from neuro.hardware_targets.nir import import_nir

    code, rep = _run(capsys, "deploy", model_dir, "--target", "nir", "--out", tmp_path / "o", "--json")
    assert code == 0 and rep["target"] == "nir" and rep["fits"] is True
    assert [r["neurons"] for r in rep["usage"]] == [50, 10]
    assert sorted(import_nir(rep["files"][0]).populations()) == ["1", "3"]


def test_deploy_loihi_with_lava_agrees_exactly(model_dir, tmp_path, capsys):
    code, rep = _run(capsys, "deploy", model_dir, "--target", "loihi", "--lava", "--steps", "80", "--rate", "0.2",
                     "--out", tmp_path / "o", "--json")
    assert code == 0 and rep["fits"] is True and rep["latency"] == {"1": 1, "3": 2}
    a = rep["agreement_detail"]
    assert rep["agreement"] == a["identical"] == 1.0 and a["compared"].startswith("emulator vs Lava")
    assert all(r["identical_voltages"] == 1.0 and r["spikes"] > 0 for r in a["per_layer"].values())
    assert {r["layer"] for r in rep["usage"]} == {"0", "1", "2", "3"}


def test_deploy_loihi_without_lava_reports_float_agreement(model_dir, tmp_path, capsys):
    x = (np.random.default_rng(0).random((60, 2, 30)) < 0.2).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, rep = _run(capsys, "deploy", model_dir, "--target", "loihi", "--input", tmp_path / "x.npy",
                     "--out", tmp_path / "o", "--json")
    a = rep["agreement_detail"]
    assert code == 0 and a["compared"].startswith("emulator vs float") and a["steps"] == 60
    assert rep["agreement"] == a["identical"] > 0.95 and all(s["rate_correlation"] > 0.9 for s in a["per_layer"].values())


def test_deploy_loihi_out_of_range_fails_and_clip_reports(tmp_path, capsys):
    torch.manual_seed(0)
    dl = DelayLinear(8, 6, max_delay=80, init_delays="zero")
    with torch.no_grad():
        dl.positions[0, 0] = 75.0
    dl.finalize()
    save_model(SpikingSequential(dl, LIF(decay=0.9, step_mode="m")), tmp_path / "d")
    code, rep = _run(capsys, "deploy", tmp_path / "d", "--target", "loihi", "--out", tmp_path / "o", "--json")
    assert code == 1 and rep["fits"] is False
    bad = [r for r in rep["usage"] if not r["fits"]]
    assert bad and "delay 75 > 62" in bad[0]["problems"]
    code, rep = _run(capsys, "deploy", tmp_path / "d", "--target", "loihi", "--clip", "--out", tmp_path / "o",
                     "--json")
    assert code == 0 and rep["fits"] is True and rep["clipped"][0]["clipped"] == "delay 75 > 62"
