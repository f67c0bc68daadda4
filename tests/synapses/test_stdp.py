"""Pair-based STDP on dense and CSR synapses: analytic pair updates, bounds, errors."""
import math

import pytest
import torch
from torch import nn

from neuro.core.errors import ParameterError, ShapeError
from neuro.synapses import Linear, SparseLinear
from neuro.synapses.stdp import STDP, STDPParams

P = dict(eta_plus=0.1, eta_minus=0.05, tau_pre_ms=10.0, tau_post_ms=20.0, w_min=-1.0, w_max=1.0)


def _pair(rule, n_in, n_out, pre_t, post_t, i=0, j=0, T=8):
    for t in range(T):
        pre = torch.zeros(n_in)
        post = torch.zeros(n_out)
        if t == pre_t:
            pre[i] = 1
        if t == post_t:
            post[j] = 1
        rule.step(pre, post)


def _dense(w):
    syn = Linear(2, 3, bias=False, dtype=torch.float64)
    with torch.no_grad():
        syn.weight.fill_(w)
    return syn


@pytest.mark.parametrize("k", [1, 2, 5])
def test_pre_before_post_potentiates_exactly(k):
    syn = _dense(0.5)
    _pair(STDP(syn, **P), 2, 3, pre_t=1, post_t=1 + k, i=1, j=2)
    want = torch.full((3, 2), 0.5, dtype=torch.float64)
    want[2, 1] = 0.5 + 0.1 * math.exp(-k / 10.0)                # eta+ * dx * exp(-k dt / tau_pre)
    assert torch.allclose(syn.weight.detach(), want, atol=1e-7, rtol=0)


@pytest.mark.parametrize("k", [1, 3])
def test_post_before_pre_depresses_exactly(k):
    syn = _dense(0.5)
    _pair(STDP(syn, **P), 2, 3, pre_t=1 + k, post_t=1, i=0, j=1)
    want = torch.full((3, 2), 0.5, dtype=torch.float64)
    want[1, 0] = 0.5 - 0.05 * math.exp(-k / 20.0)               # eta- * dx * exp(-k dt / tau_post)
    assert torch.allclose(syn.weight.detach(), want, atol=1e-7, rtol=0)


def test_simultaneous_spikes_change_nothing_and_increment_scales():
    syn = _dense(0.5)
    _pair(STDP(syn, **P), 2, 3, pre_t=2, post_t=2)
    assert torch.equal(syn.weight.detach(), torch.full((3, 2), 0.5, dtype=torch.float64))
    syn = _dense(0.0)
    _pair(STDP(syn, **{**P, "trace_increment": 0.1}), 2, 3, pre_t=0, post_t=1)
    assert syn.weight[0, 0].item() == pytest.approx(0.1 * 0.1 * math.exp(-0.1), abs=1e-9)


def test_csr_updates_stored_synapses_only_and_matches_dense():
    w = torch.tensor([[0.5, 0.0], [0.0, 0.5], [0.5, 0.5]])           # [out, in]; (0,1) and (1,0) absent
    sp = SparseLinear.from_dense(w)
    dn = Linear.from_weights(w.clone())
    g = torch.Generator().manual_seed(0)
    pre = (torch.rand(30, 4, 2, generator=g) < 0.3).float()          # batched spikes
    post = (torch.rand(30, 4, 3, generator=g) < 0.3).float()
    rs, rd = STDP(sp, **P), STDP(dn, **P)
    mask = w != 0
    for t in range(30):
        rs.step(pre[t], post[t])
        dw = rd.step(pre[t], post[t])
        with torch.no_grad():                                        # dense reference restricted to the mask
            dn.weight.copy_(torch.where(mask, dn.weight, torch.zeros(())))
        assert dw.shape == (2, 3)
    assert torch.allclose(sp.to_dense(), dn.weight.detach(), atol=1e-6)
    assert torch.equal(sp.to_dense() == 0, ~mask)


def test_bounds_clip_and_per_presynaptic_bounds():
    syn = _dense(0.95)
    rule = STDP(syn, **{**P, "eta_plus": 1.0})
    _pair(rule, 2, 3, pre_t=0, post_t=1)
    assert syn.weight.max().item() == 1.0
    sp = SparseLinear.from_dense(torch.tensor([[1.0, -1.0]]))
    rule = STDP(sp, **{**P, "eta_minus": 1.5, "w_min": -3.0, "w_max": 3.0})
    rule.step(torch.zeros(2), torch.ones(1))
    rule.step(torch.ones(2), torch.zeros(1), w_min=torch.tensor([0.0, -3.0]), w_max=torch.tensor([3.0, 0.0]))
    # row 0 (bounds [0, 3]) clips at 0; row 1 (bounds [-3, 0]) takes the full depression
    assert sp.values.tolist() == pytest.approx([0.0, -1.0 - 1.5 * math.exp(-1 / 20)], abs=1e-6)


def test_rates_per_presynaptic_neuron():
    syn = _dense(0.0)
    rule = STDP(syn, **{**P, "w_min": -5.0, "w_max": 5.0})
    rule.step(torch.ones(2), torch.zeros(3))
    rule.step(torch.zeros(2), torch.ones(3), eta_plus=torch.tensor([0.1, -0.2]))
    assert torch.allclose(syn.weight[:, 0], torch.full((3,), 0.1 * math.exp(-0.1), dtype=torch.float64))
    assert torch.allclose(syn.weight[:, 1], torch.full((3,), -0.2 * math.exp(-0.1), dtype=torch.float64))


def test_torch_linear_is_supported_and_reset_forgets_traces():
    syn = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        syn.weight.fill_(0.5)
    rule = STDP(syn, **P)
    rule.step(torch.ones(1), torch.zeros(1))
    rule.reset()
    rule.step(torch.zeros(1), torch.ones(1))
    assert syn.weight.item() == 0.5


def test_bounds_min_above_max_raise():
    with pytest.raises(ParameterError, match="w_min"):
        STDPParams(w_min=1.0, w_max=0.0)
    with pytest.raises(ParameterError, match="w_min"):
        STDP(_dense(0.0), w_min=2.0, w_max=-2.0)


@pytest.mark.parametrize("field,value", [("tau_pre_ms", 0.0), ("tau_post_ms", -1.0), ("eta_plus", -0.1),
                                         ("trace_increment", 0.0)])
def test_bad_parameters_raise(field, value):
    with pytest.raises(ParameterError, match=field):
        STDPParams(**{field: value})


def test_wrong_shapes_and_synapse_types_raise():
    rule = STDP(_dense(0.0))
    with pytest.raises(ShapeError):
        rule.step(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ParameterError, match="synapse"):
        STDP(nn.Conv1d(1, 1, 1))
