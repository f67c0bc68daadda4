"""EGRU: equations, event-driven path, pseudo-derivative, thresholds, statistics, saving, errors."""
import math

import pytest
import torch

from neuro.core.errors import ParameterError, ShapeError
from neuro.io import load_model, save_model
from neuro.neurons.egru import (EGRU, EGRUCell, EGRUParams, EGRUState, beta_thresholds, dense_matmul,
                                egru_cell, egru_cell_rule, event_matmul)


def _reference_step(x, c, y, cell):
    """The REFERENCE §1 equations written out, with the cell's weights."""
    H = cell.hidden_size
    W, R, b, brz = cell.w_ih.detach(), cell.w_hh.detach(), cell.b_ih.detach(), cell.b_rz.detach()
    th = cell.theta.detach().clamp(0, 1)
    Wu, Wr, Wz = W[:H], W[H:2 * H], W[2 * H:]
    Ru, Rr, Rz = R[:H], R[H:2 * H], R[2 * H:]
    u = torch.sigmoid(x @ Wu.T + y @ Ru.T + b[:H])
    r = torch.sigmoid(x @ Wr.T + y @ Rr.T + b[H:2 * H])
    z = torch.tanh(x @ Wz.T + b[2 * H:] + r * (y @ Rz.T + brz))
    c = u * c + (1 - u) * z
    o = (c > th).to(c.dtype)
    y = o * c
    return y, c - o * th


def test_step_matches_reference_equations():
    torch.manual_seed(0)
    cell = EGRUCell(5, 7, step_mode="s").double()
    x = torch.randn(6, 3, 5, dtype=torch.float64)
    c = y = torch.zeros(3, 7, dtype=torch.float64)
    for t in range(6):
        out = cell(x[t])
        y, c = _reference_step(x[t], c, y, cell)
        assert torch.allclose(out, y, atol=1e-12, rtol=0)
        assert torch.allclose(cell.state.c, c, atol=1e-12, rtol=0)
    assert (y != 0).any() and (y == 0).any()  # both events and silence occurred


def test_heaviside_is_strict_and_reset_subtracts_theta():
    p = EGRUParams()
    z = torch.zeros(1, 2, dtype=torch.float64)
    st = EGRUState(z, z, z)
    theta = torch.tensor([0.5, 0.25], dtype=torch.float64)
    # u = sigmoid(-inf) = 0, so c = z = tanh(gx_z); choose gx_z so that c hits theta exactly for unit 0
    gx = torch.tensor([[-1e9, -1e9, 0.0, 0.0, math.atanh(0.5), math.atanh(0.75)]], dtype=torch.float64)
    w_hh = torch.zeros(6, 2, dtype=torch.float64)
    y, st = egru_cell(gx, st, w_hh, torch.zeros(2, dtype=torch.float64), theta, p)
    assert y[0, 0] == 0 and st.c[0, 0] == pytest.approx(0.5, abs=1e-15)        # c == theta: no event (H(0) = 0)
    assert y[0, 1] == pytest.approx(0.75, abs=1e-15)                           # graded event y = c
    assert st.c[0, 1] == pytest.approx(0.75 - 0.25, abs=1e-15)                 # subtractive reset


def test_pseudo_derivative_of_thresholds():
    gamma, eps = 0.7, 3.6
    p = EGRUParams(gamma=gamma, eps=eps)
    z = torch.zeros(1, 3, dtype=torch.float64)
    cs = torch.tensor([0.6, 0.35, 0.9], dtype=torch.float64)
    gx = torch.cat([torch.full((3,), -1e9, dtype=torch.float64), torch.zeros(3, dtype=torch.float64),
                    torch.atanh(cs)])[None]
    theta = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64, requires_grad=True)
    y, _ = egru_cell(gx, EGRUState(z, z, z), torch.zeros(9, 3, dtype=torch.float64),
                     torch.zeros(3, dtype=torch.float64), theta, p)
    y.sum().backward()
    # y = H(c - theta) c  =>  dy/dtheta = -c * gamma * max(0, 1 - eps |c - theta|)
    want = -cs * gamma * (1 - eps * (cs - theta.detach()).abs()).clamp_min(0)
    assert torch.allclose(theta.grad, want, atol=1e-12, rtol=0)
    assert theta.grad[2] == 0  # |c - theta| = 0.7 > 1/eps: outside the support


@pytest.mark.parametrize("dtype", [torch.float64])
def test_event_path_equals_dense_path(dtype):
    torch.manual_seed(1)
    net = EGRU(12, [16, 10], step_mode="m", gamma=0.7).to(dtype)
    x = torch.randn(20, 4, 12, dtype=dtype) * (torch.rand(20, 4, 12) < 0.1)   # sparse input
    y_dense = net(x)
    s_dense = net.sparsity()
    net.reset(), net.reset_stats()
    net.propagation = "event"
    y_event = net(x)
    assert torch.allclose(y_dense, y_event, atol=1e-12, rtol=0)
    assert net.sparsity() == s_dense
    assert 0 < s_dense[0]["activity_sparsity"] < 1


def test_event_matmul_touches_only_active_columns():
    w = torch.randn(5, 6, dtype=torch.float64)
    x = torch.zeros(2, 6, dtype=torch.float64)
    x[0, 1], x[1, 4] = 2.0, -1.0
    w_poisoned = w.clone()
    w_poisoned[:, [0, 2, 3, 5]] = float("nan")                                 # columns of silent units
    assert torch.equal(event_matmul(x, w_poisoned, density=0.5), x[:, [1, 4]] @ w[:, [1, 4]].T)
    assert torch.allclose(event_matmul(x, w), dense_matmul(x, w), atol=1e-14)
    assert torch.equal(event_matmul(torch.zeros(2, 6), w.float()), torch.zeros(2, 5))


def test_single_and_multi_step_agree_and_stack():
    torch.manual_seed(2)
    net = EGRU(4, [8, 8, 3], step_mode="m").double()
    x = torch.randn(9, 2, 4, dtype=torch.float64)
    ym = net(x)
    net.reset()
    net.step_mode = "s"
    ys = torch.stack([net(xt) for xt in x])
    assert ym.shape == (9, 2, 3) and torch.allclose(ym, ys, atol=1e-12, rtol=0)


def test_trace_output():
    torch.manual_seed(3)
    cell = EGRUCell(3, 4, step_mode="m", trace_decay=0.9).double()
    y, tr = cell(torch.randn(15, 2, 3, dtype=torch.float64))
    ref = torch.zeros(2, 4, dtype=torch.float64)
    for t in range(15):
        ref = 0.9 * ref + 0.1 * y[t]
        assert torch.allclose(tr[t], ref, atol=1e-14)


def test_beta_threshold_initialisation():
    torch.manual_seed(4)
    th = beta_thresholds(40000, 0.3)
    assert th.min() >= 0 and th.max() <= 1
    assert abs(th.mean().item() - 0.3) < 0.005          # Beta(3m/(1-m), 3) has mean m
    a, b = 3 * 0.3 / 0.7, 3.0
    assert abs(th.var().item() - a * b / ((a + b) ** 2 * (a + b + 1))) < 0.003


def test_sparsity_statistics_match_outputs():
    torch.manual_seed(5)
    cell = EGRUCell(6, 20, step_mode="m", eps=2.0)
    x = torch.randn(30, 3, 6)
    cs = []
    cell._recorder = lambda out, st: cs.append(st.c.clone())
    y = cell(x)
    st = cell.stats
    assert st.total == 30 * 3 * 20
    assert st.events == int((y != 0).sum())
    c_pre = torch.stack(cs) + (y != 0).float() * cell.theta.detach().clamp(0, 1)
    outside = int(((c_pre - cell.theta.detach().clamp(0, 1)).abs() > 0.5).sum())
    assert st.outside_support == outside
    assert st.activity_sparsity == pytest.approx(1 - st.events / st.total)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(6)
    net = EGRU(5, [7, 6], step_mode="m", eps=3.6, gamma=3.6)
    x = torch.randn(8, 2, 5)
    y = net(x)
    loaded = load_model(save_model(net, tmp_path / "egru"))
    assert isinstance(loaded, EGRU) and loaded.params == net.params
    assert torch.equal(loaded(x), y)
    assert torch.equal(loaded.layers[0].theta, net.layers[0].theta)


def test_energy_rule_counts_events():
    torch.manual_seed(7)
    cell = EGRUCell(4, 6, step_mode="m")
    x = torch.randn(5, 2, 4)
    x[1] = 0
    y = cell(x)
    ops = egru_cell_rule(cell, x, y, None)
    nz_in = (x != 0).sum((1, 2))
    ev = (y != 0).sum((1, 2))
    prev = torch.cat([torch.zeros(1, dtype=torch.int64), ev[:-1]])
    assert torch.equal(ops["mac"], (nz_in + prev) * 18)
    assert torch.equal(ops["spike"], ev) and torch.equal(ops["nonlinear"], torch.full((5,), 36))
    assert torch.equal(ops["mac_dense"], torch.full((5,), 2 * (4 + 6) * 18))


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_thresholds_outside_unit_interval_raise(bad):
    with pytest.raises(ParameterError, match="thresholds"):
        EGRUCell(3, 4, thresholds=bad)
    with pytest.raises(ParameterError, match="thresholds"):
        EGRUCell(3, 2, thresholds=torch.tensor([0.5, bad]))


def test_loaded_thresholds_outside_unit_interval_raise():
    cell = EGRUCell(3, 4)
    with torch.no_grad():
        cell.theta[1] = 1.2
    with pytest.raises(ParameterError, match="1.2"):
        cell.check_loaded()


@pytest.mark.parametrize("field,value", [("gamma", 0.0), ("gamma", -1.0), ("eps", 0.0), ("eps", -2.0),
                                         ("thr_mean", 1.0), ("trace_decay", 1.0)])
def test_bad_parameters_raise(field, value):
    with pytest.raises(ParameterError, match=field):
        EGRUParams(**{field: value})
    with pytest.raises(ParameterError, match=field):
        EGRUCell(3, 4, **{field: value})


def test_bad_sizes_and_shapes_raise():
    with pytest.raises(ParameterError, match="hidden_size"):
        EGRUCell(3, 0)
    with pytest.raises(ParameterError, match="propagation"):
        EGRUCell(3, 4, propagation="magic")
    with pytest.raises(ShapeError, match="thresholds"):
        EGRUCell(3, 4, thresholds=torch.full((3,), 0.5))
    with pytest.raises(ShapeError):
        EGRUCell(3, 4)(torch.zeros(2, 5))


def test_op_counter_uses_the_egru_rule():
    from neuro.energy.counter import OpCounter

    torch.manual_seed(8)
    net = EGRU(8, [16, 12], step_mode="m")
    x = torch.randn(10, 2, 8)
    with OpCounter(net) as counter:
        y = net(x)
    s = counter.counts().summary()
    assert s["steps"] == 10 and s["neuron_updates"] == 10 * 2 * (16 + 12)
    assert s["spikes"] == sum(layer.stats.events for layer in net.layers) > 0
    assert y.shape == (10, 2, 12)
    assert s["synops_mac"] < s["synops_dense_mac"] == 10 * 2 * 3 * (16 * (8 + 16) + 12 * (16 + 12))
