"""The EGRU LM through the SpiNNaker 2 packet emulator: events and logits identical to the dense fixed-point
run, that run equal to neuro's EGRUCell up to the payload rounding, counts equal to the analytic formula,
routing through several chips and compressed tables, typed errors, the deploy CLI and the demo section."""
import json
from argparse import Namespace

import numpy as np
import pytest
import torch

from neuro.cli import main
from neuro.core.errors import HardwareLimitError, ParameterError, ShapeError
from neuro.hardware_targets.spinnaker.egru import compress_lm, pe_counts
from neuro.hardware_targets.spinnaker.egru_emulator import (egru_emulated, egru_update, emulate_egru,
                                                             emulation_energy, fixed_egru, map_fixed, reference_run)
from neuro.io import save_model
from neuro.models.egru_lm import EGRULM

SMALL = {"width": 2, "height": 2, "cores_per_chip": 3, "neurons_per_core": 8}


def _model(seed=0, vocab=None):
    torch.manual_seed(seed)
    model = EGRULM(vocab or [chr(97 + i) for i in range(10)], embed=8, hidden_sizes=(24, 16))
    with torch.no_grad():
        for lay in model.rnn.layers:
            lay.w_ih.mul_(4)
            lay.w_hh.mul_(4)
    return model


def _ids(L=30):
    return np.random.default_rng(0).integers(0, 10, L)


@pytest.fixture(scope="module")
def run():
    net = fixed_egru(_model(), 0.5)
    mapping = map_fixed(net, "spinnaker2", **SMALL)
    return net, mapping, emulate_egru(mapping, _ids())


def test_emulated_events_and_logits_equal_the_dense_fixed_point_run(run):
    net, mapping, emu = run
    ref = reference_run(net, _ids())
    for a, b in zip(emu.events, ref["events"]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(emu.logits, ref["logits"])
    assert all(int((e != 0).sum()) > 20 for e in emu.events)
    # PEs spread over two chips: packets leave chip (0, 0), none is lost or misrouted
    assert {s.chip for s in mapping.slices} == {(0, 0), (1, 0)} and emu.hops > 0 and emu.dropped == 0
    # one packet per nonzero embedding entry and per nonzero event (every PE slice has targets)
    emb = int((net.embedding[_ids()] != 0).sum())
    assert emu.packets == emb + sum(int((e != 0).sum()) for e in emu.events)


def test_fixed_point_run_equals_neuros_egru_cell_up_to_the_payload_rounding(run):
    net, _, emu = run
    f = net.frac_bits
    q, _ = compress_lm(_model(), 0.5)
    q = q.double().eval()
    with torch.no_grad():
        q.embedding.weight.copy_(torch.from_numpy(net.embedding * 2.0 ** -f))
        x = q.embedding(torch.as_tensor(_ids())[:, None])                         # [L, 1, E]
        for li, lay in enumerate(q.rnn.layers):
            y = lay(x)[:, 0].numpy()                                              # neuro's EGRUCell, float64
            a = emu.events[li] * 2.0 ** -f
            np.testing.assert_array_equal(y != 0, a != 0)
            assert np.abs(y - a).max() < 3e-5                                     # 2^-17 rounding + float32 weights
            x = torch.from_numpy(a)[:, None]


def test_counts_equal_the_analytic_formula_of_the_same_events(run):
    net, mapping, emu = run
    quant, _ = compress_lm(_model(), 0.5)                       # same zero pattern as the int8 rows
    ids = _ids()
    inputs = [torch.from_numpy(net.embedding[ids].astype(np.float64))] + \
             [torch.from_numpy(e.astype(np.float64)) for e in emu.events[:-1]]
    counts = pe_counts(quant, mapping.pes, {"inputs": inputs, "events": [torch.from_numpy(e) for e in emu.events]})
    for s, c in zip(mapping.slices[:-1], counts):
        for k in ("packets_in", "synops", "packets_out"):
            np.testing.assert_array_equal(emu.per_pe[s.index][k], c[k])
    m = mapping.machine
    s0 = mapping.slices[0]
    p = emu.per_pe[0]
    np.testing.assert_array_equal(p["cycles"], p["packets_in"] * 100 + p["synops"] * 10 + s0.n * 50 + 3 * s0.n * 40)
    assert emu.latency_s[0] * m.clock_hz == max(emu.per_pe[i]["cycles"][0] for i in (0, 1, 2)) + \
        max(emu.per_pe[i]["cycles"][0] for i in (3, 4))
    e = emulation_energy(mapping, emu)
    assert e["packet_bits"] == 72 and e["router_j"] == pytest.approx((emu.packets + emu.hops) * 72 * 25e-12 / 30)
    assert e["energy_j"] == pytest.approx(e["dynamic_j"] + e["static_j"]) and e["static_j"] > 0


def test_compressed_tables_keep_the_events_and_a_short_token_period_is_late():
    net = fixed_egru(_model(), 0.5)
    full = map_fixed(net, "spinnaker2", **SMALL)
    small = map_fixed(net, "spinnaker2", router_entries=4, **SMALL)
    assert max(full.routing.uncompressed.values()) > 4 >= small.routing.entries_max()
    a, b = emulate_egru(full, _ids()), emulate_egru(small, _ids(), token_ms=1e-3)
    for x, y in zip(a.events, b.events):
        np.testing.assert_array_equal(x, y)
    assert b.dropped == 0 and (a.packets, a.hops) == (b.packets, b.hops)
    assert a.late_tokens == 0 and b.late_tokens == 30 and b.budget_cycles == 200.0


def test_egru_update_is_the_same_for_any_grouping_of_units():
    rng = np.random.default_rng(1)
    n = 37
    args = [rng.integers(-10 ** 6, 10 ** 6, 3 * n), rng.integers(-10 ** 6, 10 ** 6, 3 * n), rng.uniform(-1, 1, n),
            rng.uniform(1e-3, 1e-2, 3 * n), rng.uniform(1e-3, 1e-2, 3 * n), rng.normal(size=3 * n),
            rng.normal(size=n), rng.uniform(0, 0.5, n)]
    a, c = egru_update(*args, 16)
    parts = [(0, 5), (5, 21), (21, 37)]
    for lo, hi in parts:
        rows = np.concatenate([np.arange(lo, hi) + g * n for g in range(3)])
        sub = [x[rows] if x.size == 3 * n else x[lo:hi] for x in args]
        a2, c2 = egru_update(*sub, 16)
        np.testing.assert_array_equal(a2, a[lo:hi])
        np.testing.assert_array_equal(c2, c[lo:hi])
    assert (a != 0).any() and (a == 0).any()


def test_egru_path_errors_are_typed():
    model = _model()
    for d in (0, 1.5, -0.1, True):
        with pytest.raises(ParameterError, match="density"):
            fixed_egru(model, d)
    with pytest.raises(ParameterError, match="frac_bits"):
        fixed_egru(model, 0.5, frac_bits=31)
    with pytest.raises(HardwareLimitError, match="payload") as e:
        fixed_egru(model, 0.5, frac_bits=6, payload_bits=8)                  # embedding entries beyond +-2
    assert e.value.usage[0]["population"] == "embedding"
    net = fixed_egru(model, 0.5)
    with pytest.raises(HardwareLimitError) as e:                              # a PE budget too small for one unit
        map_fixed(net, "spinnaker2", core_memory_bytes=16384 + 200)
    assert e.value.usage[0]["layer"] == 0 and e.value.usage[0]["memory_budget_bytes"] == 200
    with pytest.raises(HardwareLimitError) as e:                              # too few cores
        map_fixed(net, "spinnaker2", width=1, height=1, cores_per_chip=5, neurons_per_core=8)
    assert e.value.usage[0]["cores_needed"] == 6 and e.value.usage[0]["cores_available"] == 5
    with pytest.raises(HardwareLimitError) as e:                              # too few cores for the PEs
        map_fixed(net, "spinnaker2", width=1, height=1, cores_per_chip=3, neurons_per_core=8)
    assert e.value.usage[0]["pes_needed"] == 5 and e.value.usage[0]["pes_available"] == 3
    with pytest.raises(HardwareLimitError, match="routing tables") as e:     # tables that do not compress
        map_fixed(net, "spinnaker2", router_entries=1, **SMALL)
    assert {tuple(r["chip"]) for r in e.value.usage} <= {(0, 0), (1, 0)} and e.value.usage[0]["router_entries"] == 1
    with pytest.raises(HardwareLimitError, match="packets"):
        map_fixed(fixed_egru(model, 0.5, payload_bits=40), "spinnaker1")     # 72-bit packets: 32-bit payload
    mapping = map_fixed(net, "spinnaker2", **SMALL)
    with pytest.raises(ParameterError, match="ids"):
        emulate_egru(mapping, [0, 10])
    with pytest.raises(ShapeError):
        emulate_egru(mapping, [[0, 1]])
    with pytest.raises(ParameterError, match="token_ms"):
        emulate_egru(mapping, [0, 1], token_ms=0)
    with pytest.raises(ParameterError, match="density"):
        egru_emulated(model=model, density=2.0, ids=[0, 1])


def test_egru_emulated_report_next_to_analytic(tmp_path):
    rep = egru_emulated(model=_model(), density=0.5, ids=_ids(), routing=True, **SMALL)
    assert rep["agreement"]["identical"] == 1.0 and rep["agreement"]["logits_identical"] is True
    assert rep["fits"] is True and rep["cores_used"] == 6 and rep["pes_used"] == 5 == rep["analytic"]["pes_used"]
    assert rep["routing_entries_max"] == max(len(t["entries"]) for t in rep["routing"]["tables"])
    q = rep["quality"]
    assert set(q) == {"float", "pruned", "pruned_quantized"}
    assert abs(rep["bpc_fixed_point"] - q["pruned_quantized"]["bpc"]) < 0.01
    assert rep["per_token"]["energy_j"] == rep["energy_j"] > 0 and rep["dropped"] == 0
    json.dumps(rep)


def _run(capsys, *argv):
    code = main(list(map(str, argv)))
    return code, json.loads(capsys.readouterr().out)


def test_deploy_the_bundled_egru_lm_on_spinnaker2(tmp_path, capsys):
    from neuro.hardware_targets.spinnaker.egru import BUNDLED_MODEL

    code, rep = _run(capsys, "deploy", BUNDLED_MODEL, "--target", "spinnaker2", "--valid-chars", "40",
                     "--density", "0.5", "--out", tmp_path / "o", "--json")
    assert code == 0 and rep["target"] == "spinnaker2" and rep["model"] == "EGRULM" and rep["fits"] is True
    for k in ("cores_used", "routing_entries_max", "packets", "energy_j", "agreement", "per_token", "quality"):
        assert k in rep
    assert rep["agreement"] == 1.0 and rep["agreement_detail"]["logits_identical"] is True
    assert rep["tokens"] == 40 and rep["density"] == 0.5
    assert rep["quality"]["float"]["bpc"] < rep["quality"]["pruned_quantized"]["bpc"]
    assert rep["pes_used"] == rep["analytic"]["pes_used"] and rep["cores_used"] == rep["pes_used"] + 1
    saved = json.loads((tmp_path / "o" / "egru_report.json").read_text())
    assert saved["packets"] == rep["packets"]
    tables = json.loads((tmp_path / "o" / "egru_routing.json").read_text())["tables"]
    assert max(len(t["entries"]) for t in tables) == rep["routing_entries_max"]


def test_deploy_egru_bad_input(tmp_path, capsys):
    from neuro.data.text import tinyshakespeare

    save_model(_model(vocab=tinyshakespeare().tokenizer.chars), tmp_path / "lm")
    assert main(["deploy", str(tmp_path / "lm"), "--target", "spinnaker2", "--density", "0", "--out",
                 str(tmp_path / "o")]) == 2
    assert "density" in capsys.readouterr().err
    assert main(["deploy", str(tmp_path / "lm"), "--target", "pynn", "--out", str(tmp_path / "o")]) == 2
    assert "EGRULM" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # bad input leaves no output folder behind
    code, rep = _run(capsys, "deploy", tmp_path / "lm", "--target", "spinnaker2", "--chips", "1,1",
                     "--valid-chars", "5", "--out", tmp_path / "o2", "--json")
    assert code == 0 and rep["chips_used"] == 1
    assert main(["deploy", str(tmp_path / "lm"), "--target", "spinnaker1", "--valid-chars", "5", "--out",
                 str(tmp_path / "o3")]) == 0
    assert "EGRU LM on spinnaker1" in capsys.readouterr().out


def test_demo_section_reports_the_egru_on_spinnaker2():
    from neuro.commands.deploy import egru_summary
    from neuro.commands.demo import _spinnaker_egru

    rep = _spinnaker_egru(Namespace(egru_chars=20))
    assert rep["tokens"] == 20 and rep["agreement"]["identical"] == 1.0 and "usage" not in rep
    text = egru_summary(rep)
    assert "EGRU LM on spinnaker2" in text and "0.0653 J" in text
    with pytest.raises(ParameterError, match="egru-chars"):
        _spinnaker_egru(Namespace(egru_chars=1))
