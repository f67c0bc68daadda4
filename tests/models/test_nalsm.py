"""NALSM: liquid construction, branching factor, astrocyte-controlled STDP, digits read-out."""
import math

import numpy as np
import pytest
import torch

from neuro.core.errors import ParameterError
from neuro.models.nalsm import Liquid, NALSMParams, branching_factor, poisson_digits, run_digits


def test_liquid_structure_follows_the_reference():
    p = NALSMParams(grid=8)
    liq = Liquid(64, p, seed=0)
    n = p.n
    assert int(liq.exc.sum()) == round(0.8 * n)
    A = liq.adjacency
    assert not A.diagonal().any()                                      # no autapses
    # distance-dependent probability: E->E pairs at distance 1 vs distance 2 (grid units)
    g = np.arange(p.grid)
    pos = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    d2 = ((pos[:, None] - pos[None]) ** 2).sum(-1)
    ee = liq.exc.numpy()[:, None] & liq.exc.numpy()[None, :]
    for dist2 in (1, 4):
        sel = ee & (d2 == dist2)
        want = 0.2 * math.exp(-dist2 / 9.0)
        assert abs(A[sel].mean() - want) < 4 * math.sqrt(want * (1 - want) / sel.sum())
    assert liq.syn_e.nnz + liq.syn_i.nnz == int(A.sum())
    assert (liq.syn_e.values >= 0).all() and (liq.syn_i.values <= 0).all()


def test_branching_factor_of_a_chain_is_exact():
    # 0 -> 1 -> 2 (adjacency [pre, post]); 0 fires at t=0, 1 at t=2, 2 at t=4
    A = np.zeros((3, 3), dtype=bool)
    A[0, 1] = A[1, 2] = True
    s = torch.zeros(8, 1, 3)
    s[0, 0, 0] = s[2, 0, 1] = s[4, 0, 2] = 1
    # spike of 0: 1 descendant, 0 ancestors -> 1; of 1: 1 descendant / 1 ancestor -> 1; of 2: 0 / 1 -> 0
    assert branching_factor(s, A) == pytest.approx(2 / 3)
    s[3, 0, 2] = 1                                                     # neuron 2 fires twice after 1
    # 0: 1; 1: 2 / 1; 2 (t=3): 0 / 1; 2 (t=4): 0 / 1
    assert branching_factor(s, A) == pytest.approx(3 / 4)
    s2 = torch.zeros(8, 1, 3)
    s2[0, 0, 0] = s2[6, 0, 1] = 1                                      # outside the 4 ms window
    assert branching_factor(s2, A) == pytest.approx(0.0)


def test_astrocyte_sets_depression_and_weights_keep_their_bounds():
    torch.manual_seed(0)
    p = NALSMParams(grid=5)
    X, _ = poisson_digits(0.3, 40, seed=0, n=3)
    liq = Liquid(64, p, seed=0)
    _, info = liq.run(X[:, :1], "nalsm")
    A = info["astro"]
    # A follows A <- A + (w_A (liquid - input) + b_A - A) / tau_A; recompute from the spikes of a replay
    assert len(A) == 40 and A[0] != p.a0
    stdp = Liquid(64, p, seed=0)
    _, info2 = stdp.run(X[:, :1], "stdp")
    assert set(info2["astro"]) == {p.a0}                              # unmodulated: constant depression
    for m, lo, hi in ((liq.syn_e, 0.0, 3.0), (liq.syn_i, -3.0, 0.0), (liq.syn_in, -3.0, 3.0)):
        assert m.values.min() >= lo and m.values.max() <= hi
    assert not torch.equal(liq.syn_in.values, Liquid(64, p, seed=0).syn_in.values)   # it learned


def test_astrocyte_trace_matches_its_equation():
    p = NALSMParams(grid=4, w_astro=0.01)
    X, _ = poisson_digits(0.3, 10, seed=1, n=1)
    liq = Liquid(64, p, seed=1)
    ref = Liquid(64, p, seed=1)
    s, info = liq.run(X, "nalsm")
    # replay the same liquid with the same plasticity to get its spikes step by step
    spikes, _ = ref.run(X, "nalsm")
    A, want = p.a0, []
    for t in range(10):
        A = A + (0.01 * (float(spikes[t].sum()) - float(X[t].sum())) + p.a0 - A) / 100.0
        want.append(A)
    assert info["astro"] == pytest.approx(want, abs=1e-12)


def test_digits_readout_beats_chance_on_a_small_liquid():
    r = run_digits("nalsm", NALSMParams(grid=5), steps=40, n_samples=300, n_plastic=3, seed=0)
    assert r.accuracy > 0.6                                            # chance: 0.1
    assert 0 < r.branching_factor < 10 and r.rate_hz > 0


def test_bad_plasticity_and_batch_raise():
    with pytest.raises(ParameterError, match="plasticity"):
        NALSMParams(plasticity="hebb")
    liq = Liquid(64, NALSMParams(grid=3))
    with pytest.raises(ParameterError, match="plasticity"):
        liq.run(torch.zeros(5, 1, 64), "hebb")
    with pytest.raises(ParameterError, match="batch"):
        liq.run(torch.zeros(5, 2, 64), "nalsm")


def test_cli_reports_all_three_liquids(tmp_path, capsys):
    import json

    from neuro.cli import main

    code = main(["train", "nalsm", "--grid", "3", "--steps", "10", "--samples", "60", "--n-plastic", "1",
                 "--json", "--no-progress", "--threads", "1", "--out", str(tmp_path)])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and out["neurons"] == 27
    assert set(out["runs"]) == {"none", "stdp", "nalsm"}
    for r in out["runs"].values():
        assert 0 <= r["accuracy"] <= 1 and r["rate_hz"] >= 0
    assert main(["train", "nalsm", "--n-plastic", "0", "--out", str(tmp_path)]) != 0
