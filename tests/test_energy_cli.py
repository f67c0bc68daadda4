"""``neuro energy``: saved models, inputs, targets, JSON, plots, and bad input."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from neuro.cli import main
from neuro.io import save_model, savable
from neuro.models import SpikingSequential, w2_network
from neuro.neurons import LIF
from neuro.synapses import Linear


@pytest.fixture()
def mlp_dir(tmp_path):
    torch.manual_seed(0)
    net = SpikingSequential(Linear(20, 16), LIF(tau_ms=2.0, step_mode="m"), Linear(16, 4), LIF(tau_ms=2.0, step_mode="m"))
    with torch.no_grad():
        net[0].weight.mul_(6.0)
        net[2].weight.mul_(4.0)
    return save_model(net, tmp_path / "mlp")


def spikes_file(tmp_path, shape=(10, 3, 20), name="x.npy"):
    x = (np.random.default_rng(0).random(shape) < 0.3).astype(np.float32)
    p = tmp_path / name
    if name.endswith(".npy"):
        np.save(p, x)
    else:
        from safetensors.numpy import save_file

        save_file({"spikes": x}, str(p))
    return p, x


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_mlp_json_and_plot(mlp_dir, tmp_path, capsys):
    inp, x = spikes_file(tmp_path)
    plot = tmp_path / "energy.png"
    d = run_json(capsys, ["energy", str(mlp_dir), "--input", str(inp), "--targets", "45nm,loihi1,spinnaker2,gpu",
                          "--json", "--plot", str(plot)])
    assert set(d["targets"]) == {"45nm", "loihi1", "spinnaker2", "gpu"}
    for t in d["targets"].values():
        assert t["energy_j"] > 0 and t["ann_energy_j"] > 0
    for key in ("synops_ac", "synops_mac", "neuron_updates", "ann_energy_j"):
        assert key in d
    assert d["synops_mac"] == 0 and d["synops_ac"] > 0
    assert d["neuron_updates"] == 10 * 3 * (16 + 4)
    # the first layer's effective ACs from the definition
    from neuro.io import load_model

    w = load_model(mlp_dir)[0].weight.detach().numpy()
    fan = (w != 0).sum(0)
    assert d["layers"][0]["ac"] == int((x != 0).sum((0, 1)) @ fan)
    assert plot.stat().st_size > 0


def test_safetensors_input_and_text_report(mlp_dir, tmp_path, capsys):
    inp, _ = spikes_file(tmp_path, name="x.safetensors")
    assert main(["energy", str(mlp_dir), "--input", str(inp), "--targets", "45nm_int8"]) == 0
    out = capsys.readouterr().out
    assert "45nm_int8" in out and "ANN/SNN" in out and "totals:" in out


def test_recurrent_network_with_steps(tmp_path, capsys):
    net = w2_network(n=300, p=0.05)
    folder = save_model(net, tmp_path / "w2")
    d = run_json(capsys, ["energy", str(folder), "--steps", "50", "--targets", "45nm,loihi1,spinnaker1", "--json",
                          "--engine", "torch"])
    res = net.run(50, engine="torch")
    fan = np.diff(net.synapses.indptr.numpy())
    t_idx = np.repeat(np.arange(50), res.spikes.counts().numpy())
    delivered = (t_idx < 49)
    assert d["synops_ac"] == int(fan[res.spikes.indices.numpy()[delivered]].sum())
    assert d["neuron_updates"] == 300 * 50 and "ann_energy_j" not in d
    assert d["targets"]["spinnaker1"]["static_j"] > 0


def test_user_model_file_as_target(mlp_dir, tmp_path, capsys):
    from neuro.energy.targets import REQUIRED_OPS

    ops = "\n".join(f'[ops.{op}]\nenergy_j = 1e-12\nsource = "mine"' for op in REQUIRED_OPS)
    mf = tmp_path / "chip.toml"
    mf.write_text('name = "chip"\n' + ops + "\n")
    inp, _ = spikes_file(tmp_path)
    d = run_json(capsys, ["energy", str(mlp_dir), "--input", str(inp), "--targets", f"45nm,{mf}", "--json"])
    assert set(d["targets"]) == {"45nm", "chip"}


def test_wrong_input_shape_is_a_shape_error(mlp_dir, tmp_path, capsys):
    inp, _ = spikes_file(tmp_path, shape=(10, 3, 21))
    assert main(["energy", str(mlp_dir), "--input", str(inp)]) == 2
    err = capsys.readouterr().err
    assert "input has shape (10, 3, 21)" in err and "[T, B, 20]" in err
    inp2, _ = spikes_file(tmp_path, shape=(10, 20), name="flat.npy")
    assert main(["energy", str(mlp_dir), "--input", str(inp2)]) == 2


def test_bad_energy_model_file(mlp_dir, tmp_path, capsys):
    mf = tmp_path / "neg.json"
    mf.write_text(json.dumps({"name": "neg", "ops": {"ac": {"energy_j": -1, "source": "x"}}}))
    inp, _ = spikes_file(tmp_path)
    assert main(["energy", str(mlp_dir), "--input", str(inp), "--targets", str(mf)]) == 2
    err = capsys.readouterr().err
    assert "neg.json" in err and "ops." in err
    assert main(["energy", str(mlp_dir), "--input", str(inp), "--targets", "tpu9000"]) == 2
    assert "tpu9000" in capsys.readouterr().err


@savable("EnergyTestOddLayer")
class OddLayer(nn.Module):
    """A savable module without a counting rule."""

    def forward(self, x):
        return x.cos()

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls()


def test_model_folder_the_counters_cannot_observe(tmp_path, capsys):
    net = SpikingSequential(Linear(20, 4), OddLayer(), LIF(step_mode="m"), OddLayer())
    folder = save_model(net, tmp_path / "odd")
    inp, _ = spikes_file(tmp_path)
    assert main(["energy", str(folder), "--input", str(inp)]) == 2
    err = capsys.readouterr().err
    assert "2 unsupported module(s) for energy counting" in err and "1: " in err and "3: " in err
