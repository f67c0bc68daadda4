import json
import subprocess
import sys

import pytest

from neuro.cli import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("demo", "simulate", "bench"):
        assert cmd in out


def test_no_command_is_usage_error(capsys):
    assert main([]) == 2


def test_console_script_entry_point_runs():
    p = subprocess.run([sys.executable, "-m", "neuro.cli", "--version"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith("neuro ")


def test_simulate_json_and_raster(tmp_path, capsys):
    png = tmp_path / "r.png"
    assert main(["simulate", "--neurons", "400", "--steps", "200", "--raster", str(png), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["neurons"] == 400 and s["steps"] == 200 and s["spikes"] > 0
    assert 0 < s["active_fraction_per_step"] < 0.2
    assert png.stat().st_size > 5000


def test_simulate_saved_model(tmp_path, capsys):
    from neuro.io import save_model
    from neuro.models import w2_network

    save_model(w2_network(n=300, p=0.05), tmp_path / "net")
    assert main(["simulate", str(tmp_path / "net"), "--steps", "50", "--no-plot", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["neurons"] == 300


def test_simulate_bad_input_exit_code_2(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "missing"), "--no-plot"]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["simulate", "--steps", "0", "--neurons", "50", "--no-plot"]) == 2
    assert main(["simulate", "--engine", "gpu", "--neurons", "50", "--no-plot"]) == 2


def test_demo_small(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--neurons", "500", "--steps", "200", "--eval-chars", "200",
               "--no-progress", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert report["brian2"]["identical"] is True
    assert report["network"]["spikes"] == report["brian2"]["brian2_spikes"]
    assert (out / "w2_raster.png").stat().st_size > 5000 and (out / "demo.json").exists()
    conv = report["conversion"]
    rows = {r["timesteps"]: r for r in conv["rows"]}
    assert set(rows) == {2, 4, 8, 16}
    assert rows[16]["snn_perplexity"] == rows[16]["twin_perplexity"]
    assert rows[16]["snn_perplexity"] < 1.01 * rows[16]["ann_perplexity"]
    assert len(conv["samples"]) == 3 and (out / "conversion" / "fidelity.png").exists()
    e = conv["energy"]
    assert set(e["targets"]) == {"45nm", "loihi1", "spinnaker2", "gpu"} and e["tokens"] == 128
    assert all(t["per_token_j"] > 0 and t["ann_per_token_j"] > 0 for t in e["targets"].values())
