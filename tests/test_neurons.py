import math

import numpy as np
import pytest
import torch

from neuro.core import ATan, DTypeError, ParameterError, Sigmoid, StepModeError, Triangle, reset_net
from neuro.core.loop import run_steps
from neuro.neurons import (ALIF, IF, LIF, STBIF, ALIFParams, CubaLIF, CubaLIFParams, IFParams, LIFParams,
                           STBIFParams, lif_step)

F64 = torch.float64


def seq(values, T):
    return torch.tensor(values, dtype=F64).expand(T, len(values)).clone()


# ---------------------------------------------------------------- LIF: analytic traces
def test_lif_exact_integration_matches_analytic_charging_curve():
    # tau dv/dt = -v + I, I below threshold: v(t) = I (1 - exp(-t dt / tau)) at every step
    p = LIFParams(tau_ms=20.0, dt_ms=0.1, integration="exact", v_th=10.0)
    lif = LIF(p, step_mode="m")
    I = 1.5
    x = seq([I], 500)
    with torch.no_grad():
        from neuro.core import Monitor

        with Monitor(lif) as mon:
            s = lif(x)
    v = mon.state("LIF", "v")[:, 0]
    t = torch.arange(1, 501, dtype=F64) * 0.1
    assert s.sum() == 0
    torch.testing.assert_close(v, I * (1 - torch.exp(-t / 20.0)), rtol=0, atol=1e-12)


def test_lif_decay_input_false_is_geometric_sum():
    p = LIFParams(decay=0.9, decay_input=False, v_th=100.0)
    out, st = run_steps(lif_step, seq([0.3], 40), LIF(p).init_state(torch.zeros(1, dtype=F64)), p, ATan())
    expected = 0.3 * (1 - 0.9**40) / (1 - 0.9)
    assert abs(st.v.item() - expected) < 1e-12


def test_decay_factor_exact_and_euler():
    assert LIFParams(tau_ms=20.0, dt_ms=1.0, integration="exact").decay_factor == math.exp(-1 / 20)
    assert LIFParams(tau_ms=20.0, dt_ms=1.0, integration="euler").decay_factor == 1 - 1 / 20
    assert LIFParams(tau_ms=20.0, decay=0.5).decay_factor == 0.5


def test_lif_constant_current_spike_times_match_analytic_period():
    # exact integration with input held over the step: a hard-reset LIF driven by I > v_th fires every
    # ceil(tau/dt * ln(I/(I - v_th))) steps
    tau, dt, I = 20.0, 0.1, 1.5
    p = LIFParams(tau_ms=tau, dt_ms=dt, integration="exact", strict_threshold=True)
    s = LIF(p, step_mode="m")(seq([I], 10_000))[:, 0]
    steps = torch.nonzero(s).squeeze(1)
    period = math.ceil(tau / dt * math.log(I / (I - 1.0)))
    assert (steps.diff() == period).all()
    assert steps[0] == period - 1


def test_hard_and_soft_reset():
    x = seq([1.6], 1)
    hard = LIF(LIFParams(decay=0.5, decay_input=False, v_reset=-0.2))
    soft = LIF(LIFParams(decay=0.5, decay_input=False, v_reset=None))
    assert hard(x[0]).item() == 1.0 and soft(x[0]).item() == 1.0
    assert hard.v.item() == pytest.approx(-0.2)
    assert soft.v.item() == pytest.approx(0.6)


def test_strict_threshold_at_exact_threshold():
    x = torch.tensor([1.0], dtype=F64)
    assert LIF(decay=1.0, decay_input=False)(x).item() == 1.0
    assert LIF(decay=1.0, decay_input=False, strict_threshold=True)(x).item() == 0.0


def test_single_step_streaming_equals_multi_step_and_reset_restarts():
    x = torch.rand(30, 3, 7, dtype=F64) * 2
    m = LIF(tau_ms=3.0, step_mode="m")
    out_m = m(x)
    s = LIF(tau_ms=3.0, step_mode="s")
    out_s = torch.stack([s(x[t]) for t in range(30)])
    assert torch.equal(out_m, out_s)
    torch.testing.assert_close(m.v, s.v)
    s.reset()
    assert s.state is None
    assert torch.equal(torch.stack([s(x[t]) for t in range(30)]), out_m)


def test_state_kept_between_multi_step_calls():
    x = torch.rand(20, 2, 5, dtype=F64) * 2
    a = LIF(step_mode="m")
    whole = a(x)
    b = LIF(step_mode="m")
    halves = torch.cat([b(x[:10]), b(x[10:])])
    assert torch.equal(whole, halves)


def test_detach_keeps_values_and_cuts_graph():
    x = torch.rand(5, 2, 3, requires_grad=True)
    lif = LIF(step_mode="m")
    lif(x)
    assert lif.v.requires_grad
    v = lif.v.clone()
    lif.detach()
    assert not lif.v.requires_grad and torch.equal(lif.v, v)


def test_shape_change_without_reset_is_a_typed_error():
    lif = LIF()
    lif(torch.rand(2, 3))
    with pytest.raises(StepModeError, match="reset"):
        lif(torch.rand(4, 3))


def test_multi_step_needs_time_axis():
    with pytest.raises(StepModeError):
        LIF(step_mode="m")(torch.rand(5))


def test_bad_step_mode():
    with pytest.raises(StepModeError):
        LIF(step_mode="x")


def test_integer_input_is_a_dtype_error():
    with pytest.raises(DTypeError, match="LIF"):
        LIF()(torch.ones(3, dtype=torch.int64))


# ---------------------------------------------------------------- surrogates
@pytest.mark.parametrize("sg,at0", [(ATan(2.0), 1.0), (Sigmoid(4.0), 1.0), (Triangle(0.7, 1.0), 0.7)])
def test_surrogate_gradients(sg, at0):
    x = torch.tensor([0.0, 0.3, -0.7, 2.0], dtype=F64, requires_grad=True)
    y = sg(x)
    assert torch.equal(y.detach(), (x >= 0).to(F64).detach())
    y.sum().backward()
    torch.testing.assert_close(x.grad, sg.grad(x.detach()))
    assert x.grad[0].item() == pytest.approx(at0)


def test_surrogate_formulas():
    x = torch.tensor([0.5], dtype=F64)
    assert ATan(2.0).grad(x).item() == pytest.approx(1.0 / (1 + (math.pi / 2) ** 2))
    s = 1 / (1 + math.exp(-2.0))
    assert Sigmoid(4.0).grad(x).item() == pytest.approx(4 * s * (1 - s))
    assert Triangle(0.7, 1.0).grad(x).item() == pytest.approx(0.35)
    assert Triangle(0.7, 3.6).grad(x).item() == 0.0


def test_lif_gradient_flows_through_time():
    x = (torch.rand(10, 4, 6, dtype=F64) * 2).requires_grad_()
    LIF(tau_ms=2.0, step_mode="m", surrogate=Sigmoid(4.0))(x).sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad[0] != 0).any()


# ---------------------------------------------------------------- IF, CubaLIF, ALIF
def test_if_soft_reset_counts_are_floor_of_integrated_input():
    x = seq([0.375, 0.75, 0.0625], 100)  # exact in binary: no rounding in the sums
    out = IF(v_reset=None, step_mode="m")(x)
    counts = out.sum(0)
    assert counts.tolist() == [37, 75, 6]


def test_cuba_lif_matches_recursion():
    p = CubaLIFParams(decay_syn=0.8, decay=0.9, decay_input=False, v_th=1e9)
    x = torch.zeros(30, 1, dtype=F64)
    x[0] = 1.0
    lif = CubaLIF(p, step_mode="m")
    lif(x)
    i = v = 0.0
    for t in range(30):
        i = 0.8 * i + (1.0 if t == 0 else 0.0)
        v = 0.9 * v + i
    assert lif.state.v.item() == pytest.approx(v, abs=1e-12)
    assert lif.state.i.item() == pytest.approx(0.8**29, abs=1e-15)


def test_alif_threshold_adapts_and_recovers():
    p = ALIFParams(tau_ms=20.0, tau_adapt_ms=200.0, beta=0.5, v_reset=0.0)
    s = ALIF(p, step_mode="m")(seq([0.3], 400))[:, 0]
    isi = torch.nonzero(s).squeeze(1).diff()
    assert isi[0] < isi[-1]  # adaptation slows firing
    assert ALIFParams(beta=0.0).adapt_decay_factor == math.exp(-1 / 200)


def test_alif_with_zero_beta_equals_lif():
    x = torch.rand(50, 2, 4, dtype=F64)
    a = ALIF(ALIFParams(beta=0.0, v_reset=0.0, decay_input=True), step_mode="m")(x)
    b = LIF(LIFParams(tau_ms=20.0, integration="exact", v_reset=0.0), step_mode="m")(x)
    assert torch.equal(a, b)


# ---------------------------------------------------------------- ST-BIF
@pytest.mark.parametrize("theta,pmax,nmin", [(0.5, 7, -7), (0.25, 15, 0), (1.0, 3, -2)])
def test_stbif_equals_quantizer(theta, pmax, nmin):
    x = torch.linspace(-6, 6, 241, dtype=F64)
    T = 40
    xs = torch.zeros(T, x.numel(), dtype=F64)
    xs[0] = x
    out = STBIF(theta=theta, pos_max=pmax, neg_min=nmin, step_mode="m")(xs).sum(0)
    q = torch.clamp(torch.floor(x / theta + 0.5), nmin, pmax) * theta
    torch.testing.assert_close(out, q)


def test_stbif_converges_for_spread_input():
    # the same total spread over steps, with overshoot corrected by negative spikes
    theta = 0.5
    xs = torch.zeros(40, 3, dtype=F64)
    xs[:8] = torch.tensor([0.4, -0.2, 0.33], dtype=F64)
    xs[8] = torch.tensor([-2.0, 1.0, -1.0], dtype=F64)
    out = STBIF(theta=theta, pos_max=15, neg_min=-15, step_mode="m")(xs).sum(0)
    total = xs.sum(0)
    torch.testing.assert_close(out, torch.floor(total / theta + 0.5) * theta)


# ---------------------------------------------------------------- validation, one test per rule
@pytest.mark.parametrize("cls,field,value", [
    (LIFParams, "tau_ms", 0.0), (LIFParams, "tau_ms", -1.0), (LIFParams, "dt_ms", 0.0),
    (LIFParams, "v_th", 0.0), (LIFParams, "v_th", float("nan")), (LIFParams, "decay", 0.0),
    (LIFParams, "decay", 1.5), (LIFParams, "integration", "rk4"), (LIFParams, "v_reset", float("inf")),
    (LIFParams, "decay_input", 1), (IFParams, "v_th", -1.0), (CubaLIFParams, "tau_syn_ms", 0.0),
    (ALIFParams, "beta", -0.1), (ALIFParams, "tau_adapt_ms", 0.0), (STBIFParams, "theta", 0.0),
    (STBIFParams, "pos_max", -1), (STBIFParams, "neg_min", 1), (STBIFParams, "pos_max", 1.5),
    (ATan, "alpha", 0.0), (Triangle, "eps", -1.0),
])
def test_parameter_rules(cls, field, value):
    with pytest.raises(ParameterError) as e:
        cls(**{field: value})
    assert e.value.owner == cls.__name__ and e.value.field == field
    assert cls.__name__ in str(e.value) and field in str(e.value)


def test_euler_needs_dt_below_tau():
    with pytest.raises(ParameterError, match="dt_ms"):
        LIFParams(tau_ms=1.0, dt_ms=1.0, integration="euler")
    LIFParams(tau_ms=1.0, dt_ms=1.0, integration="exact")  # fine: exp(-1) in (0, 1]


def test_stbif_that_can_never_spike():
    with pytest.raises(ParameterError, match="pos_max"):
        STBIFParams(pos_max=0, neg_min=0)


def test_records_are_frozen_and_replace_revalidates():
    p = LIFParams()
    with pytest.raises(Exception):
        p.tau_ms = 3.0
    assert p.replace(tau_ms=3.0).tau_ms == 3.0
    with pytest.raises(ParameterError):
        p.replace(tau_ms=-3.0)


def test_module_rejects_wrong_record_type():
    with pytest.raises(ParameterError, match="LIFParams"):
        LIF(IFParams())


def test_reset_net_resets_every_stateful_module():
    net = torch.nn.Sequential(LIF(), IF())
    net(torch.rand(2, 3))
    reset_net(net)
    assert net[0].state is None and net[1].state is None


def test_np_bool_is_not_accepted_as_float():
    with pytest.raises(ParameterError):
        LIFParams(v_th=True)
    assert np.isclose(LIFParams(v_th=2).v_th, 2.0)
