"""Smoke tests of ``neuro bench``: it runs, its JSON has the documented keys, the correctness checks
work, and missing peers are reported as skipped. No timing is asserted."""
import json

import pytest
import torch

from neuro.bench import peers as bench_peers
from neuro.bench.common import Peer, select_peers, unavailable_reason
from neuro.cli import main

FAST = ["--quick", "--json", "--threads", "1", "--no-progress"]


def bench(capsys, *argv):
    rc = main(["bench", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_w1_quick_json_and_spikes_equal_spikingjelly(capsys):
    pytest.importorskip("spikingjelly.activation_based.neuron")
    rc, out, _ = bench(capsys, "w1", *FAST, "--peers", "spikingjelly,torch,matmul")
    d = json.loads(out)
    assert rc == 0 and d["ok"]
    for key in ("neuro_median_s", "neuro_fwdbwd_median_s", "peers", "ratio_vs_best_peer", "checks"):
        assert key in d
    sj = d["peers"]["spikingjelly"]
    assert sj["status"] == "ok" and sj["median_s"] > 0 and sj["fwdbwd_median_s"] > 0
    assert sj["out_spikes"] == d["neuro"]["out_spikes"] > 0
    assert sj["hidden_spikes"] == d["neuro"]["hidden_spikes"]
    assert d["peers"]["torch"]["spikes_match"]
    assert set(d["ratio_vs_best_peer"]) == {"forward", "fwdbwd"}
    assert d["ratio_vs_best_peer"]["forward"] > 0
    assert d["peers"]["matmul"]["ceiling"] and d["best_peer"]["forward"] != "matmul"


def test_w1_table_output(capsys):
    rc, out, _ = bench(capsys, "w1", "--quick", "--threads", "1", "--peers", "torch", "--steps", "5")
    assert rc == 0
    assert "neuro" in out and "torch" in out and "ratio vs best peer" in out and ": OK" in out


def test_unknown_peer_is_a_usage_error(capsys):
    rc, out, err = bench(capsys, "w1", *FAST, "--peers", "torch,no_such_lib")
    assert rc == 2 and out == ""
    assert "unknown peer 'no_such_lib' for w1" in err and "spikingjelly" in err


def test_peer_that_cannot_import_is_skipped(capsys, monkeypatch, tmp_path):
    # a package that is installed but fails on import (as Brian2 does against a too-new numpy)
    (tmp_path / "neuro_test_broken_peer.py").write_text("raise AttributeError('no attribute ptp')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    build = bench_peers.w1_torch
    monkeypatch.setitem(bench_peers.W1_PEERS, "broken", Peer("broken", ("neuro_test_broken_peer",), build, "test"))
    monkeypatch.setitem(bench_peers.W1_PEERS, "absent", Peer("absent", ("neuro_test_absent_module",), build, "test"))
    rc, out, _ = bench(capsys, "w1", *FAST, "--steps", "5", "--peers", "broken,absent")
    d = json.loads(out)
    assert rc == 0
    assert d["skipped"] == ["absent", "broken"]
    assert d["peers"]["broken"]["status"] == "skipped" and "AttributeError" in d["peers"]["broken"]["reason"]
    assert "ModuleNotFoundError" in d["peers"]["absent"]["reason"]
    assert d["ratio_vs_best_peer"] == {"forward": None, "fwdbwd": None}


def test_select_peers_defaults_and_opt_in():
    names = [p.name for p in select_peers("w2", bench_peers.W2_PEERS, None)]
    assert "spikingjelly" not in names and "brian2_cpp" in names and "torch" in names
    assert [p.name for p in select_peers("w2", bench_peers.W2_PEERS, ["spikingjelly"])] == ["spikingjelly"]
    assert unavailable_reason(Peer("t", ("torch",), None, "")) is None


def test_w2_quick_json(capsys):
    rc, out, _ = bench(capsys, "w2", *FAST, "--peers", "torch")
    d = json.loads(out)
    assert rc == 0 and d["ok"]
    for key in ("neuro_median_s", "neuro_events_per_s", "spikes", "engine", "ratio_vs_best_peer"):
        assert key in d
    assert d["spikes"] > 0 and d["events"] > d["spikes"]
    assert d["checks"]["engine_vs_torch_float64"]["identical"]
    assert d["peers"]["torch"]["median_s"] > 0 and d["peers"]["torch"]["spikes"] > 0
    assert d["best_peer"] == "torch"


def test_w2_engine_check_catches_a_differing_engine(monkeypatch):
    from neuro.bench.w2 import engine_check
    from neuro.core.events import EventTensor
    from neuro.models import recurrent, w2_network

    torch_engine = recurrent.ENGINES["torch"]

    def off_by_one(net, steps, record_v, progress):  # the torch engine, minus one spike
        res = torch_engine(net, steps, record_v, progress)
        ev = res.spikes
        offsets = ev.offsets.clone()
        offsets[offsets > 0] -= 1
        res.spikes = EventTensor(ev.indices[1:], offsets, ev.shape, dtype=ev.dtype)
        return res

    monkeypatch.setitem(recurrent.ENGINES, "off_by_one", off_by_one)
    net = w2_network(n=300, dtype=torch.float64)
    assert engine_check(net, "torch", 10)["identical"]
    bad = engine_check(net, "off_by_one", 10)
    assert not bad["identical"] and bad["first_differing_step"] >= 0


def test_w3_quick_json(capsys):
    rc, out, _ = bench(capsys, "w3", *FAST)
    d = json.loads(out)
    assert rc == 0 and "neuro_median_s" in d and len(d["cases"]) == 4
    # Brian2's spike counts for I = 1.5, 1.1, 1.01, 3.0 (exact integration, 1 s at dt 0.1 ms)
    assert [c["neuro_exact_float64"]["n_spikes"] for c in d["cases"]] == [45, 20, 10, 121]
    if d["peers"]["brian2"]["status"] == "ok":
        assert d["identical_to_brian2"] is True
    else:
        assert d["identical_to_brian2"] is None and d["skipped"] == ["brian2"]


def test_switch_measurement_and_crossover():
    from neuro.synapses.switch import crossover, measure_switch_density

    assert crossover([0.1, 0.2], [1.0, 4.0], [2.0, 2.0]) == pytest.approx(0.15)
    assert crossover([0.1, 0.2], [3.0, 4.0], [2.0, 2.0]) is None
    r = measure_switch_density(64, 32, 16, densities=(0.05, 0.5), reps=1, warmup=0)
    assert [t["density"] for t in r["table"]] == [0.05, 0.5]
    assert all(t["event_s"] > 0 and t["dense_s"] > 0 for t in r["table"])
    assert "crossover_density" in r and r["note"]
    r = measure_switch_density(16, 8, 4, densities=(0.2,), reps=1, warmup=0, mode="forward_backward")
    assert r["mode"] == "forward_backward"


def test_switch_cli_rejects_peers(capsys):
    rc, _, err = bench(capsys, "switch", "--peers", "torch")
    assert rc == 2 and "no --peers" in err
