"""``neuro train TASK``: the task registry, ``neuro train delays`` on small sizes, usage errors."""
import json

import pytest

from neuro.cli import main
from neuro.commands import train


def test_registry_names_tasks():
    assert "delays" in train.TASKS
    for name in train.TASKS:
        t = train.task(name)
        assert isinstance(t, train.TrainTask) and t.help and callable(t.add_arguments) and callable(t.run)


def test_train_help_lists_tasks(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    assert "delays" in capsys.readouterr().out


def test_train_delays_motif_json_and_plot(tmp_path, capsys):
    png = tmp_path / "map.png"
    rc = main(["train", "delays", "--task", "motif", "--epochs", "20", "--n-train", "128", "--json", "--no-progress",
               "--out", str(tmp_path / "out"), "--plot", str(png), "--save"])
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    assert s["task"] == "delays" and s["motif"]["test_accuracy"] > 0.3
    assert png.stat().st_size > 5000
    assert (tmp_path / "out" / "train_delays.json").exists()
    from neuro.io import load_model

    layer = load_model(tmp_path / "out" / "motif_delays")
    assert layer.delays().tolist() == s["motif"]["delays"]


def test_train_delays_compare_small(tmp_path, capsys):
    rc = main(["train", "delays", "--task", "compare", "--seeds", "2", "--epochs", "1", "--n-train", "64",
               "--no-progress", "--json", "--out", str(tmp_path)])
    assert rc == 0
    s = json.loads(capsys.readouterr().out)
    assert set(s["compare"]["accuracy"]) == {"none", "random", "learned"}
    assert s["compare"]["seeds"] == [0, 1] and isinstance(s["compare"]["ordered"], bool)


def test_train_delays_rejects_bad_counts(tmp_path):
    assert main(["train", "delays", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert main(["train", "delays", "--max-delay", "-1", "--out", str(tmp_path)]) == 2


def test_train_text_output(tmp_path, capsys):
    rc = main(["train", "delays", "--task", "digits", "--epochs", "1", "--hidden", "8", "--max-delay", "4",
               "--no-progress", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "learned delays: test accuracy" in out and "summary:" in out


def test_train_usage_errors(tmp_path, capsys):
    assert main(["train"]) == 2
    assert "TASK" in capsys.readouterr().err
    assert main(["train", "delays", "--epochs", "0", "--out", str(tmp_path)]) == 2
    assert "--epochs" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["train", "no-such-task"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["train", "delays", "--task", "nope"])
    assert e.value.code == 2


@pytest.mark.parametrize("task", ["egru-lm", "nalsm"])
def test_epochs_is_refused_by_tasks_with_their_own_budget(task, tmp_path, capsys):
    assert main(["train", task, "--epochs", "3", "--out", str(tmp_path)]) == 2
    assert "--epochs" in capsys.readouterr().err
