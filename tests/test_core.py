import numpy as np
import pytest
import torch

from neuro.core import EventTensor, ShapeError
from neuro.core.errors import FormatError, HardwareLimitError, ParameterError, UnsupportedLayerError
from neuro.core.random import binomial, binomial_cdf, splitmix64, uniform


def test_event_tensor_round_trip_binary():
    x = (torch.rand(25, 3, 7) < 0.2).float()
    ev = EventTensor.from_dense(x)
    assert ev.values is None and ev.steps == 25 and ev.nnz == int(x.sum())
    assert torch.equal(ev.to_dense(), x)
    assert ev.counts().tolist() == x.flatten(1).sum(1).long().tolist()
    t = 4
    assert ev.step(t).tolist() == x[t].flatten().nonzero().squeeze(1).tolist()


def test_event_tensor_round_trip_graded_and_signed():
    x = torch.randn(10, 6, dtype=torch.float64) * (torch.rand(10, 6) < 0.3)
    ev = EventTensor.from_dense(x)
    assert ev.values is not None
    assert torch.equal(ev.to_dense(), x)


def test_event_tensor_empty_steps():
    x = torch.zeros(5, 4)
    x[2, 1] = 1
    ev = EventTensor.from_dense(x)
    assert ev.counts().tolist() == [0, 0, 1, 0, 0]
    assert torch.equal(ev.to_dense(), x)


@pytest.mark.parametrize("kw,match", [
    (dict(indices=torch.tensor([0, 1]), offsets=torch.tensor([0, 1])), "offsets end"),
    (dict(indices=torch.tensor([0, 9]), offsets=torch.tensor([0, 2])), "outside"),
    (dict(indices=torch.tensor([0]), offsets=torch.tensor([0, 1]), values=torch.ones(2)), "values"),
    (dict(indices=torch.tensor([0]), offsets=torch.tensor([[0, 1]])), "offsets must be 1-D"),
])
def test_event_tensor_rejects_inconsistent_parts(kw, match):
    with pytest.raises(ShapeError, match=match):
        EventTensor(shape=(4,), **kw)


def test_counter_rng_is_uniform_and_order_free():
    u = uniform(7, 3, 100_000)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    # the same draw whatever else is asked for: step 3 of a 100,000-wide stream starts at counter 300,000
    assert np.array_equal(uniform(7, 3, 100_000)[:10], u[:10])
    assert not np.array_equal(uniform(8, 3, 10), u[:10])
    # splitmix64 reference values (first outputs of the generator seeded with 0)
    z = splitmix64(np.array([0], dtype=np.uint64))
    assert int(z[0]) == 0xE220A8397B1DCDAF


def test_binomial_by_inversion_has_binomial_moments():
    cdf = binomial_cdf(100, 0.012)
    assert cdf[-1] > 1 - 1e-12
    k = np.concatenate([binomial(1, t, 20_000, cdf) for t in range(50)])
    assert abs(k.mean() - 1.2) < 0.01 and abs(k.var() - 1.2 * 0.988) < 0.02


def test_error_messages_name_object_and_value():
    e = ParameterError("LIFParams", "tau_ms", -1.0, "> 0")
    assert str(e) == "LIFParams.tau_ms must be > 0, got -1.0"
    e = FormatError("model/config.json", "fc1.weight", "shape", "expected [4, 3], got [3, 4]")
    assert "model/config.json" in str(e) and "fc1.weight" in str(e) and "shape" in str(e)
    e = UnsupportedLayerError([("encoder.0", "Softmax"), ("head", "Dropout")])
    assert "encoder.0: Softmax" in str(e) and "head: Dropout" in str(e) and e.items[1] == ("head", "Dropout")
    e = HardwareLimitError("loihi2", [{"layer": "fc1", "neurons": 9000, "limit": 8192}])
    assert "fc1" in str(e) and "9000" in str(e)
