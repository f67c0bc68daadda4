import numpy as np
import pytest
import torch

from neuro.core import ParameterError, ShapeError
from neuro.core.random import binomial
from neuro.models import ENGINES, ConstantDrive, GivenDrive, PoissonDrive, RecurrentNetwork, w2_network
from neuro.neurons import LIFParams
from neuro.synapses import SparseLinear


def numpy_reference(net: RecurrentNetwork, steps: int):
    """An independent float64 implementation of the recurrent semantics (W2's per-step update)."""
    p = net.params
    indptr, post = net.synapses.indptr.numpy(), net.synapses.indices.numpy()
    w = net.synapses.values.detach().numpy().astype(np.float64)
    v = net.v0.numpy().astype(np.float64).copy()
    d = p.decay_factor
    cdf = net.drive.cdf(p.dt_ms) if isinstance(net.drive, PoissonDrive) else None
    spiking = np.zeros(0, dtype=np.int64)
    raster = []
    for t in range(steps):
        acc = np.zeros(net.n)
        for j in spiking:
            np.add.at(acc, post[indptr[j]:indptr[j + 1]], w[indptr[j]:indptr[j + 1]])
        if isinstance(net.drive, PoissonDrive):
            ext = binomial(net.drive.seed, t, net.n, cdf) * net.drive.weight
        elif isinstance(net.drive, ConstantDrive):
            ext = net.drive.values
        else:
            ext = np.zeros(net.n)
        h = v * d + (ext + acc)
        s = h >= p.v_th
        v = np.where(s, p.v_reset, h)
        spiking = np.flatnonzero(s)
        raster.append(spiking)
    return raster, v


def small_net(drive="poisson", n=300):
    return w2_network(n=n, p=0.05, seed=5, drive=drive)


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_w2_semantics_against_independent_reference(engine):
    net = small_net()
    res = net.run(300, engine=engine)
    ref, v_ref = numpy_reference(net, 300)
    assert res.spikes.nnz > 300  # the network is active
    for t in range(300):
        assert res.spikes.step(t).tolist() == ref[t].tolist(), f"step {t}"
    np.testing.assert_array_equal(res.v.numpy(), v_ref)


def test_engines_agree_with_each_kind_of_drive():
    if "native" not in ENGINES:
        pytest.skip("native engine not built")
    rng = np.random.default_rng(0)
    for drive in ["poisson", ConstantDrive(0.03 + 0.05 * rng.random(300)), GivenDrive(rng.random((100, 300)) * 0.1), None]:
        net = small_net(drive)
        a, b = net.run(100, engine="torch", record_v=True), net.run(100, engine="native", record_v=True)
        assert torch.equal(a.spikes.indices, b.spikes.indices) and torch.equal(a.spikes.offsets, b.spikes.offsets)
        assert torch.equal(a.v_trace, b.v_trace)


def test_w2_full_size_activity_is_sparse():
    net = w2_network()
    assert net.n == 10_000 and abs(net.synapses.nnz / 1e6 - 1.0) < 0.01
    res = net.run(100)
    frac = res.counts.sum() / (net.n * 100)
    assert 0.005 < frac < 0.08  # ~3 % of neurons per step


def test_run_records_voltage_trace():
    net = small_net()
    res = net.run(20, engine="torch", record_v=True)
    assert res.v_trace.shape == (20, 300)
    assert torch.equal(res.v_trace[-1], res.v)
    assert res.rates_hz(1.0).shape == (300,)


def test_recurrent_network_rejects_bad_input():
    syn = SparseLinear.random(10, 10, 0.5)
    with pytest.raises(ShapeError, match="square"):
        RecurrentNetwork(SparseLinear.random(10, 8, 0.5), LIFParams())
    with pytest.raises(ShapeError, match="v0"):
        RecurrentNetwork(syn, LIFParams(), v0=np.zeros(9))
    with pytest.raises(ShapeError, match="ConstantDrive"):
        RecurrentNetwork(syn, LIFParams(), ConstantDrive(np.zeros(9)))
    with pytest.raises(ShapeError, match="GivenDrive"):
        RecurrentNetwork(syn, LIFParams(), GivenDrive(np.zeros(10)))
    with pytest.raises(ParameterError, match="synapses"):
        RecurrentNetwork(torch.nn.Linear(3, 3), LIFParams())
    net = RecurrentNetwork(syn, LIFParams(), GivenDrive(np.zeros((5, 10))))
    with pytest.raises(ShapeError, match="5 steps"):
        net.run(6, engine="torch")
    with pytest.raises(ParameterError, match="engine"):
        net.run(3, engine="gpu")
    with pytest.raises(ParameterError, match="steps"):
        net.run(0)
    with pytest.raises(ParameterError, match="rate_hz"):
        PoissonDrive(rate_hz=-1.0)
    with pytest.raises(ParameterError, match="rate_hz"):
        PoissonDrive(rate_hz=5000.0).cdf(1.0)


@pytest.mark.parametrize("drive", ["poisson", "constant", "given", None])
def test_recurrent_network_model_folder_round_trip(tmp_path, drive):
    from neuro.io import load_model, save_model

    rng = np.random.default_rng(1)
    d = {"poisson": "poisson", "constant": ConstantDrive(0.05 * rng.random(300)),
         "given": GivenDrive(0.1 * rng.random((50, 300))), None: None}[drive]
    net = small_net(d)
    save_model(net, tmp_path / "net")
    back = load_model(tmp_path / "net")
    assert isinstance(back, RecurrentNetwork) and back.params == net.params
    a, b = net.run(50, engine="torch"), back.run(50, engine="torch")
    assert torch.equal(a.spikes.indices, b.spikes.indices) and torch.equal(a.v, b.v)


def test_recurrent_network_rejects_unknown_drive_kind():
    from neuro.models.recurrent import RecurrentNetwork as R

    cfg = small_net().get_config()
    cfg["drive"] = {"kind": "noise"}
    with pytest.raises(ParameterError, match="drive.kind"):
        R.from_config(cfg)
    with pytest.raises(ParameterError, match="drive"):
        R(SparseLinear.random(10, 10, 0.5), LIFParams(), drive="poisson")
