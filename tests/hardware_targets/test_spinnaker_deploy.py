"""``neuro deploy --target spinnaker1|spinnaker2``: map, emulate, compare with neuro, price the traffic."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neuro.cli import main
from neuro.io import save_model
from neuro.models.sequential import SpikingSequential
from neuro.neurons import LIF
from neuro.synapses import Linear


def _save(path, n_in, n_hidden, n_out, seed=0):
    torch.manual_seed(seed)
    net = SpikingSequential(Linear(n_in, n_hidden), LIF(decay=0.9, decay_input=False, step_mode="m"),
                            Linear(n_hidden, n_out), LIF(decay=0.8, decay_input=False, step_mode="m"))
    with torch.no_grad():
        net[0].weight.mul_(3)
        net[2].weight.mul_(3)
    save_model(net, path)
    return path


def _run(capsys, *argv):
    code = main(list(map(str, argv)))
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("target", ["spinnaker1", "spinnaker2"])
def test_deploy_spinnaker_agrees_and_reports_traffic_and_energy(target, tmp_path, capsys):
    model = _save(tmp_path / "m", 30, 50, 10)
    x = (np.random.default_rng(0).random((40, 1, 30)) < 0.2).astype(np.float32)       # [T, B, n]
    np.save(tmp_path / "x.npy", x)
    code, rep = _run(capsys, "deploy", model, "--target", target, "--input", tmp_path / "x.npy",
                     "--chips", "2,2", "--out", tmp_path / "o", "--json")
    assert code == 0 and rep["target"] == target and rep["fits"] is True
    assert rep["agreement"] == rep["agreement_detail"]["identical"] == 1.0 and rep["steps"] == 40
    assert sum(rep["spikes"].values()) > 0
    mapping = json.loads((tmp_path / "o" / "mapping.json").read_text())
    assert sorted(Path(f).name for f in rep["files"]) == ["mapping.json", "model_pynn.py", "network_spinnaker2.json"]
    net = json.loads((tmp_path / "o" / "network_spinnaker2.json").read_text())
    assert [p["size"] for p in net["populations"]] == [30, 50, 10] and rep["exports_skipped"] == {}
    assert mapping["format"] == "neuro-spinnaker-mapping" and mapping["machine"] == target
    assert mapping["usage"]["cores_used"] == rep["cores_used"] == len(rep["usage"]["cores"])
    assert rep["routing_entries_max"] == max(c["routing_entries"] for c in rep["usage"]["chips"])
    # one packet per spike sent (input spikes and both layers' spikes; only the last layer sends to nobody)
    assert rep["packets"] == int(x.sum()) + rep["spikes"]["1"] and rep["hops"] >= 0
    assert rep["late_or_dropped"] == 0
    e = rep["energy_j"]
    assert set(e) == {"spinnaker1", "spinnaker2", target + "+router"}
    router_j = (rep["packets"] + rep["hops"]) * 40 * 25e-12                             # 40-bit packets, 25 pJ/bit
    assert rep["router_energy_j"] == pytest.approx(router_j, rel=1e-12)
    # same static power; the built-in spinnaker1 model prices 1 nJ per neuron spike, the +router model the routers
    spike_j = sum(rep["spikes"].values()) * 1e-9 if target == "spinnaker1" else 0.0
    assert e[target + "+router"] - e[target] == pytest.approx(router_j - spike_j, rel=1e-6)


def test_deploy_spinnaker_that_does_not_fit_exits_1_with_usage(tmp_path, capsys):
    model = _save(tmp_path / "m", 10, 4500, 2)                 # 18 cores of 256 LIF neurons > 17 per chip
    code, rep = _run(capsys, "deploy", model, "--target", "spinnaker1", "--chips", "1,1", "--steps", "5",
                     "--out", tmp_path / "o", "--json")
    assert code == 1 and rep["fits"] is False
    total = [r for r in rep["usage"] if "cores_needed" in r][0]
    assert total["cores_needed"] > total["cores_available"] == 17
    assert not (tmp_path / "o" / "mapping.json").exists()


def test_deploy_spinnaker_text_report_and_bad_chips(tmp_path, capsys):
    model = _save(tmp_path / "m", 8, 12, 4)
    assert main(["deploy", str(model), "--target", "spinnaker2", "--steps", "10", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "target spinnaker2: fits" in out and "agreement (emulator vs GraphNetwork" in out and "1.0000 identical" in out
    assert main(["deploy", str(model), "--target", "spinnaker2", "--chips", "2x2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--chips" in err and "'2x2'" in err and "W,H" in err


def test_deploy_pynn_runs_on_brian2_and_agrees(tmp_path, capsys):
    """Inputs on even steps only and no biases: every input lands on an even step, so the documented PyNN
    convention difference (input in the step after a spike is lost) never applies."""
    torch.manual_seed(0)
    net = SpikingSequential(Linear(30, 50), LIF(decay=0.9, decay_input=False, step_mode="m"),
                            Linear(50, 10), LIF(decay=0.8, decay_input=False, step_mode="m"))
    with torch.no_grad():
        for k in (0, 2):
            net[k].weight.mul_(3)
            net[k].bias.zero_()
    model = tmp_path / "m"
    save_model(net, model)
    x = (np.random.default_rng(0).random((40, 1, 30)) < 0.3).astype(np.float32)      # [T, B, n]
    x[1::2] = 0
    np.save(tmp_path / "x.npy", x)
    code, rep = _run(capsys, "deploy", model, "--target", "pynn", "--input", tmp_path / "x.npy",
                     "--out", tmp_path / "o", "--json")
    assert code == 0 and rep["target"] == "pynn" and rep["pynn_run"] == "PyNN on Brian2"
    assert rep["agreement"] == rep["agreement_detail"]["identical"] == 1.0 and rep["steps"] == 40
    assert rep["spikes"]["1"] > 20 and rep["spikes"]["3"] > 0
    assert sorted(Path(f).name for f in rep["files"]) == ["model_pynn.py", "pynn_spikes.npz"]
    assert [r["neurons"] for r in rep["usage"]] == [50, 10]


def test_deploy_pynn_without_a_pynn_description_is_a_typed_error(tmp_path, capsys):
    torch.manual_seed(0)
    net = SpikingSequential(Linear(6, 4), LIF(decay=0.9, v_reset=None, step_mode="m"))     # soft reset
    save_model(net, tmp_path / "soft")
    assert main(["deploy", str(tmp_path / "soft"), "--target", "pynn", "--steps", "5",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "soft reset" in err and not (tmp_path / "o" / "model_pynn.py").exists()
