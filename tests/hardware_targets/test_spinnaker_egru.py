"""The EGRU LM on SpiNNaker 2: pruning, int8 quantization, PE slices, event counts, per-token cost."""
from pathlib import Path

import numpy as np
import pytest
import torch

import neuro
from neuro.core.errors import HardwareLimitError, ParameterError
from neuro.hardware_targets.spinnaker import load_machine
from neuro.hardware_targets.spinnaker.egru import (CYCLES_PER_NONLINEAR, UNIT_BYTES_TOTAL, compress_lm,
                                                   egru_on_spinnaker2, map_egru, pe_counts, pe_cycles,
                                                   prune_magnitude, quantize_rows, run_events)
from neuro.data.text import tinyshakespeare
from neuro.io import load_model
from neuro.models.egru_lm import EGRULM
from neuro.neurons.egru import EGRUParams


def tiny(hidden=(6,), seed=0):
    torch.manual_seed(seed)
    m = EGRULM(list("abcde"), embed=4, hidden_sizes=hidden, params=EGRUParams(thr_mean=0.3))
    with torch.no_grad():
        for layer in m.rnn.layers:
            layer.theta.fill_(0.05)                                   # low thresholds: many events
    return m


def test_prune_magnitude_keeps_the_largest():
    torch.manual_seed(1)
    w = torch.randn(18, 7)
    p = prune_magnitude(w, 0.5)
    kept = p != 0
    assert int(kept.sum()) == 63                                      # floor(0.5 * 126 + 0.5)
    assert torch.equal(p[kept], w[kept])
    assert w[kept].abs().min() >= w[~kept].abs().max()
    assert torch.equal(prune_magnitude(w, 1.0), w)


def test_quantize_rows_float_and_pow2():
    torch.manual_seed(2)
    w = torch.randn(5, 9)
    q, s = quantize_rows(w, "float")
    assert q.dtype == torch.int8
    assert torch.equal(q.abs().amax(1).to(torch.int64), torch.full((5,), 127))
    assert ((q.float() * s[:, None] - w).abs() <= s[:, None] / 2 + 1e-7).all()
    q2, s2 = quantize_rows(w, "pow2")
    k = torch.log2(s2)
    assert torch.equal(k, torch.round(k))                               # powers of two
    assert (s2 >= w.abs().amax(1) / 127).all() and (s2 < 2 * w.abs().amax(1) / 127).all()
    assert q2.abs().max() <= 127


def test_map_tiny_model_by_hand():
    m = tiny(hidden=(6, 3))
    pes = map_egru(m, "spinnaker2", neurons_per_core=4)
    # layer 0: I=4, H=6 -> slices 0:4 and 4:6; layer 1: I=6, H=3 -> one slice; dense weights
    assert [(p["layer"], p["lo"], p["hi"]) for p in pes] == [(0, 0, 4), (0, 4, 6), (1, 0, 3)]
    assert UNIT_BYTES_TOTAL == 76
    assert pes[0]["memory_bytes"] == (4 + 6) * 8 + 3 * 4 * (4 + 6) * 2 + 4 * 76 == 624
    assert pes[1]["memory_bytes"] == (4 + 6) * 8 + 3 * 2 * (4 + 6) * 2 + 2 * 76 == 352
    assert pes[2]["memory_bytes"] == (6 + 3) * 8 + 3 * 3 * (6 + 3) * 2 + 3 * 76 == 462
    assert [p["pe"] for p in pes] == [0, 1, 2] and all(p["chip"] == [0, 0] for p in pes)
    # pruned to half: w_ih [18, 4] keeps 36, w_hh [18, 6] keeps 54 weights
    pm, rep = compress_lm(m, 0.5, quantize=False)
    assert [r["nonzeros"] for r in rep[:2]] == [36, 54]
    pes = map_egru(pm, "spinnaker2", neurons_per_core=6)
    assert len(pes) == 2 and pes[0]["nonzeros_in"] + pes[0]["nonzeros_rec"] == 90
    assert pes[0]["memory_bytes"] == 10 * 8 + 90 * 2 + 6 * 76
    # the memory budget splits the layer: 624 bytes fit, a fifth unit (+ 60 + 76) does not
    pes = map_egru(m, "spinnaker2", core_memory_bytes=700, core_reserved_bytes=0)
    assert [(p["lo"], p["hi"]) for p in pes if p["layer"] == 0] == [(0, 4), (4, 6)]


def test_map_does_not_fit():
    m = tiny()
    with pytest.raises(HardwareLimitError) as e:
        map_egru(m, "spinnaker2", core_memory_bytes=200, core_reserved_bytes=0)
    assert e.value.usage[0]["memory_bytes"] == 10 * 8 + 3 * 10 * 2 + 76 == 216
    assert e.value.usage[0]["memory_budget_bytes"] == 200
    with pytest.raises(HardwareLimitError) as e:
        map_egru(m, "spinnaker2", width=1, height=1, cores_per_chip=1, neurons_per_core=2)
    assert e.value.usage[0] == {"pes_needed": 3, "pes_available": 1}


def test_bad_arguments():
    m = tiny()
    for d in (0, 1.5, True, "half"):
        with pytest.raises(ParameterError, match="density"):
            compress_lm(m, d)
    with pytest.raises(ParameterError, match="scale"):
        quantize_rows(torch.ones(2, 2), "int4")
    with pytest.raises(ParameterError, match="EGRULM"):
        compress_lm(torch.nn.Linear(2, 2))
    with pytest.raises(ParameterError, match="valid_chars"):
        egru_on_spinnaker2(model=m, valid_chars=1)


def test_counts_of_the_first_token_by_hand():
    m = tiny()
    ids = torch.tensor([0, 1, 2, 3, 4, 0, 1])
    run = run_events(m, ids)
    pes = map_egru(m, "spinnaker2")
    c = pe_counts(m, pes, run)[0]
    assert len(pes) == 1
    # token 0: 4 embedding entries, no recurrent events yet; each packet reaches 3 x 6 weights
    assert c["packets_in"][0] == 4 and c["synops"][0] == 4 * 18
    mach = load_machine("spinnaker2")
    assert pe_cycles(c, mach)[0] == 4 * 100 + 72 * 10 + 6 * 50 + 18 * CYCLES_PER_NONLINEAR == 2140
    # later tokens: the events of t-1 add packets, each again 18 weights (dense model)
    ev = (run["events"][0] != 0).sum(1).numpy()
    assert np.array_equal(c["packets_in"][1:], 4 + ev[:-1])
    assert np.array_equal(c["synops"], 18 * c["packets_in"])
    assert np.array_equal(c["packets_out"], ev) and int(ev.sum()) == run["stats_events"][0] > 0


def test_tiny_report_latency_and_energy():
    m = tiny(hidden=(6, 3))
    ids = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    r = egru_on_spinnaker2(model=m, ids=ids, density=1.0, neurons_per_core=4)
    mach = load_machine("spinnaker2", neurons_per_core=4)
    q, _ = compress_lm(m, 1.0)
    run = run_events(q, ids)
    pes = map_egru(q, mach)
    cyc = [pe_cycles(c, mach) for c in pe_counts(q, pes, run)]
    per_layer = [np.max([c for p, c in zip(pes, cyc) if p["layer"] == k], 0) for k in (0, 1)]
    lat = float(((per_layer[0] + per_layer[1]) / mach.clock_hz).mean())
    assert r["pes_used"] == 3 and r["chips_used"] == 1
    assert r["per_token"]["latency_s"] == pytest.approx(lat, rel=1e-12)
    assert r["per_token"]["static_j"] == pytest.approx(0.39 * lat, rel=1e-12)
    # dynamic: one 40-bit packet x 25 pJ/bit per event
    assert r["per_token"]["dynamic_j"] == pytest.approx(r["packets"] * 40 * 2.5e-11 / len(ids), rel=1e-12)
    assert r["packets"] == sum(r["events"]) == sum(run["stats_events"])


def test_bundled_model_quantized_close_and_events_counted():
    torch.set_num_threads(1)
    r = egru_on_spinnaker2(density=1.0, valid_chars=300)
    q = r["quality"]
    assert q["float"]["bpc"] == q["pruned"]["bpc"]                       # density 1 prunes nothing
    assert abs(q["pruned_quantized"]["bpc"] - q["float"]["bpc"]) < 0.02
    assert q["float"]["perplexity"] == pytest.approx(2 ** q["float"]["bpc"])
    assert r["packets"] == sum(r["events"]) > 0
    # every PE of the (single) layer receives every input and recurrent packet
    n = r["pes_used"]
    assert r["packets_in"] == n * (r["tokens"] * 64 + r["packets"] - _last_token_events(r))
    assert r["memory_per_pe_bytes"]["max"] <= r["memory_per_pe_bytes"]["budget"]
    assert sum(p["units"] for p in r["pes"]) == 256


def _last_token_events(r):
    # the events of the last token reach no PE within the run
    model = load_model(Path(neuro.__file__).resolve().parent / "data" / "models" / "egru-char")
    q, _ = compress_lm(model, r["density"])
    ids = tinyshakespeare().valid[: r["tokens"]]
    return int((run_events(q, ids)["events"][0][-1] != 0).sum())

