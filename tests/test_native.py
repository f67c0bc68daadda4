"""The compiled backend neuro._native against the PyTorch code it replaces.

* kernels: equal to TorchKernels (the CSR kernels bit for bit) and to the dense products;
* fused LIF: forward bit-identical to the generic loop, gradients equal to float rounding;
* lif_recurrent_run: bit-identical to a PyTorch loop built from neuro's own pieces;
* the C random numbers equal neuro.core.random.
"""
import itertools

import numpy as np
import pytest
import torch

from neuro import _native
from neuro.core import ATan, Sigmoid, Triangle
from neuro.core.loop import multistep_impl, run_steps
from neuro.core.random import binomial, binomial_cdf, uniform
from neuro.neurons import LIF, LIFParams, LIFState, lif_step
from neuro.synapses import Linear, SparseLinear
from neuro.synapses.kernels import TorchKernels

pytestmark = pytest.mark.skipif(not _native.available, reason=f"neuro._native not built: {_native.BUILD_ERROR}")

NK = _native.NativeKernels
DENSITIES = [0.001, 0.01, 0.1, 0.5]
DTYPES = [torch.float32, torch.float64]
F64 = torch.float64


def tol(dtype):
    return dict(rtol=2e-5, atol=2e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)


def sparse_input(shape, density, dtype, gen):
    """Signed, graded values at the given density (spikes are the special case +-1)."""
    mask = torch.rand(shape, generator=gen) < density
    return (torch.randn(shape, generator=gen, dtype=dtype) * mask).to(dtype)


def threads(n):
    class _Threads:
        def __enter__(self):
            self.old = torch.get_num_threads()
            torch.set_num_threads(n)

        def __exit__(self, *exc):
            torch.set_num_threads(self.old)

    return _Threads()


# ------------------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("density", DENSITIES)
def test_dense_row_kernels_equal_dense_products(density, dtype):
    gen = torch.Generator().manual_seed(1)
    for R, K, N in [(150, 130, 200), (64, 37, 10), (7, 300, 1), (33, 65, 129)]:
        x = sparse_input((R, K), density, dtype, gen)
        wt = torch.randn(K, N, generator=gen, dtype=dtype)
        gy = torch.randn(R, N, generator=gen, dtype=dtype)
        torch.testing.assert_close(NK.rows_matmul(x, wt), x @ wt, **tol(dtype))
        torch.testing.assert_close(NK.outer_accumulate(x, gy), x.t() @ gy, **tol(dtype))
        weight, bias = wt.t().contiguous(), torch.randn(N, generator=gen, dtype=dtype)
        torch.testing.assert_close(NK.rows_matmul(x, weight.t(), bias), x @ wt + bias, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("density", DENSITIES)
def test_csr_kernels_equal_torch_kernels_bit_for_bit_and_dense(density, dtype):
    gen = torch.Generator().manual_seed(2)
    K, N, R = 90, 70, 24
    w = torch.randn(N, K, generator=gen, dtype=dtype) * (torch.rand(N, K, generator=gen) < 0.15)
    syn = SparseLinear.from_dense(w)
    ip, ix, val = syn.indptr, syn.indices, syn.values.detach()
    x = sparse_input((R, K), density, dtype, gen)
    gy = torch.randn(R, N, generator=gen, dtype=dtype)
    y = NK.csr_matmul(x, ip, ix, val, N)
    gv = NK.csr_value_grad(x, gy, ip, ix)
    gx = NK.csr_input_grad(gy, ip, ix, val, K)
    assert torch.equal(y, TorchKernels.csr_matmul(x, ip, ix, val, N))
    assert torch.equal(gv, TorchKernels.csr_value_grad(x, gy, ip, ix))
    assert torch.equal(gx, TorchKernels.csr_input_grad(gy, ip, ix, val, K))
    pre = torch.repeat_interleave(torch.arange(K), ip.diff())
    torch.testing.assert_close(y, x @ w.t(), **tol(dtype))
    torch.testing.assert_close(gv, (gy.t() @ x)[ix, pre], **tol(dtype))
    torch.testing.assert_close(gx, gy @ w, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("density", DENSITIES)
def test_linear_with_native_kernels_forward_and_backward(density, dtype):
    gen = torch.Generator().manual_seed(3)
    x = sparse_input((5, 12, 110), density, dtype, gen)
    ev = Linear(110, 45, switch_density=1.0, kernels="native", dtype=dtype)
    dn = Linear(110, 45, switch_density=0.0, dtype=dtype)
    dn.load_state_dict(ev.state_dict())
    xe, xd = x.clone().requires_grad_(), x.clone().requires_grad_()
    ye, yd = ev(xe), dn(xd)
    torch.testing.assert_close(ye, yd, **tol(dtype))
    g = torch.randn(ye.shape, generator=gen, dtype=dtype)
    (ye * g).sum().backward()
    (yd * g).sum().backward()
    for a, b in [(xe.grad, xd.grad), (ev.weight.grad, dn.weight.grad), (ev.bias.grad, dn.bias.grad)]:
        torch.testing.assert_close(a, b, **tol(dtype))


def test_kernel_results_do_not_depend_on_thread_count():
    gen = torch.Generator().manual_seed(4)
    x = sparse_input((301, 200), 0.1, torch.float32, gen)
    wt, gy = torch.randn(200, 150, generator=gen), torch.randn(301, 150, generator=gen)
    syn = SparseLinear.random(200, 150, 0.1, weight=lambda pre: np.cos(pre), seed=1)
    args = (syn.indptr, syn.indices, syn.values.detach())
    calls = [lambda: NK.rows_matmul(x, wt), lambda: NK.outer_accumulate(x, gy),
             lambda: NK.csr_matmul(x, *args, 150), lambda: NK.csr_value_grad(x, gy, syn.indptr, syn.indices),
             lambda: NK.csr_input_grad(gy, *args, 200)]
    with threads(1):
        one = [f() for f in calls]
    with threads(2):
        two = [f() for f in calls]
    for a, b in zip(one, two):
        assert torch.equal(a, b)
    # the narrow-output path (no column lists) gives the wide path's sums exactly
    assert torch.equal(NK.outer_accumulate(x, gy[:, :20].contiguous()), one[1][:, :20])


def test_kernels_fall_back_to_torch_for_other_inputs(monkeypatch):
    x = (torch.rand(20, 30) < 0.2).float()
    wt = torch.randn(30, 8)
    xt = x.t().contiguous().t()  # non-contiguous view: made contiguous, still native
    torch.testing.assert_close(NK.rows_matmul(xt, wt), x @ wt)
    assert NK.rows_matmul(torch.zeros(0, 30), wt).shape == (0, 8)
    calls = []

    class Spy:
        @staticmethod
        def rows_matmul(x, wt):
            calls.append(x.dtype)
            return x @ wt

    monkeypatch.setattr(_native, "TorchKernels", Spy)
    NK.rows_matmul(x.bfloat16(), wt.bfloat16())  # a dtype the C code does not handle
    NK.rows_matmul(x, wt)
    assert calls == [torch.bfloat16]


# ------------------------------------------------------------------------------------ fused LIF
SURROGATES = [ATan(), Sigmoid(), Triangle(), ATan(alpha=3.7), Sigmoid(alpha=1.5), Triangle(gamma=0.7, eps=2.0)]
VARIANTS = [dict(decay_input=di, v_reset=vr, strict_threshold=st, v_rest=rest, detach_reset=det)
            for di, vr, st, rest, det in itertools.product([True, False], [0.0, None, -0.2], [False, True],
                                                           [0.0, 0.15], [False, True])]


def _lif_case(dtype, seed, T=23, shape=(3, 19)):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((T, *shape), generator=gen, dtype=dtype) * 0.9 + 0.35
    x[4, 0, :6] = 0.8  # lands exactly on the threshold after the charge in some variants
    v0 = torch.rand(shape, generator=gen, dtype=dtype)
    return x, v0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", range(len(VARIANTS)))
def test_fused_lif_bit_identical_forward_and_matching_gradients(variant, dtype):
    p = LIFParams(tau_ms=7.0, integration="exact", v_th=0.8, **VARIANTS[variant])
    x, v0 = _lif_case(dtype, variant)
    for sg in SURROGATES:
        xr, vr_ = x.clone().requires_grad_(), v0.clone().requires_grad_()
        s_ref, st_ref = run_steps(lif_step, xr, LIFState(vr_), p, sg)
        xf, vf = x.clone().requires_grad_(), v0.clone().requires_grad_()
        s_f, st_f = _native.fused_lif(xf, LIFState(vf), p, sg)
        assert torch.equal(s_f, s_ref) and torch.equal(st_f.v, st_ref.v)
        assert 0 < int(s_ref.sum()) < s_ref.numel()
        gen = torch.Generator().manual_seed(variant + 100)
        gs, gv = torch.randn(s_ref.shape, generator=gen, dtype=dtype), torch.randn(v0.shape, generator=gen, dtype=dtype)
        ((s_ref * gs).sum() + (st_ref.v * gv).sum()).backward()
        ((s_f * gs).sum() + (st_f.v * gv).sum()).backward()
        t = dict(rtol=1e-6, atol=1e-10) if dtype == F64 else dict(rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(xf.grad, xr.grad, **t)
        torch.testing.assert_close(vf.grad, vr_.grad, **t)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_lif_forward_without_grad_and_thread_count(dtype):
    p = LIFParams(tau_ms=2.0, decay_input=False, v_th=1.0, v_reset=0.0)
    x, v0 = _lif_case(dtype, 7, T=40, shape=(16, 300))
    with torch.no_grad():
        s_ref, st_ref = run_steps(lif_step, x, LIFState(v0), p, Sigmoid())
        with threads(1):
            s1, st1 = _native.fused_lif(x, LIFState(v0), p, Sigmoid())
        with threads(2):
            s2, st2 = _native.fused_lif(x, LIFState(v0), p, Sigmoid())
    assert torch.equal(s1, s_ref) and torch.equal(st1.v, st_ref.v)
    assert torch.equal(s2, s_ref) and torch.equal(st2.v, st_ref.v)


def test_lif_module_uses_the_fused_step_and_keeps_state_across_calls():
    assert multistep_impl(lif_step, "cpu") is _native.fused_lif
    p = LIFParams(tau_ms=3.0, v_reset=None)
    x, _ = _lif_case(F64, 11, T=30, shape=(2, 9))
    lif = LIF(p, step_mode="m")
    a = torch.cat([lif(x[:12]), lif(x[12:])])
    ref = LIF(p, step_mode="s")
    b = torch.stack([ref(xt) for xt in x])
    assert torch.equal(a, b) and torch.equal(lif.v, ref.v)
    # gradient through a state carried over from an earlier call (truncated BPTT without detach)
    xg = x.clone().requires_grad_()
    lif.reset()
    (lif(xg[:12]).sum() + lif(xg[12:]).sum() + lif.v.sum()).backward()
    xr = x.clone().requires_grad_()
    s_ref, st = run_steps(lif_step, xr, LIFState(torch.zeros(2, 9, dtype=F64)), p, ATan())
    (s_ref.sum() + st.v.sum()).backward()
    torch.testing.assert_close(xg.grad, xr.grad, rtol=1e-6, atol=1e-10)


def test_fused_lif_declines_what_it_does_not_support():
    class MySurrogate(ATan):
        pass

    p = LIFParams()
    x = torch.rand(5, 4)
    assert _native.fused_lif(x, LIFState(torch.zeros(4)), p, MySurrogate()) is None
    assert _native.fused_lif(x.half(), LIFState(torch.zeros(4).half()), p, ATan()) is None
    assert _native.fused_lif(x, LIFState(torch.zeros(4, dtype=F64)), p, ATan()) is None  # mixed dtypes
    assert _native.fused_lif(x, LIFState(torch.zeros(3)), p, ATan()) is None  # shape mismatch


# --------------------------------------------------------------------------- recurrent engine (W2)
def reference_run(v0, syn, steps, p, drive):
    """The per-step semantics in PyTorch, from neuro's pieces: the event path of SparseLinear
    (TorchKernels), neuro.core.random.binomial and lif_step."""
    N = v0.numel()
    state, s = LIFState(v0.clone()), torch.zeros(1, N, dtype=F64)
    idx, offsets, trace = [], [0], []
    with torch.no_grad():
        for t in range(steps):
            acc = syn(s)[0]
            if drive is None:
                x = acc
            elif drive[0] == "poisson":
                x = torch.from_numpy(binomial(drive[1], t, N, drive[2])).to(F64) * drive[3] + acc
            elif drive[0] == "const":
                x = torch.as_tensor(drive[1], dtype=F64) + acc
            else:
                x = torch.as_tensor(drive[1][t], dtype=F64) + acc
            s1, state = lif_step(x, state, p, ATan())
            active = s1.nonzero().squeeze(1)
            idx.append(active)
            offsets.append(offsets[-1] + active.numel())
            trace.append(state.v.clone())
            s = s1.unsqueeze(0)
    return torch.cat(idx), torch.tensor(offsets), state.v, torch.stack(trace)


def small_network(N=300, p=0.05, seed=5):
    syn = SparseLinear.random(N, N, p, weight=lambda pre: np.where(pre < int(0.8 * N), 0.05, -0.25), seed=seed,
                              autapses=False, switch_density=1.0, kernels="torch").to(F64)
    v0 = torch.from_numpy(np.random.default_rng(seed + 1).random(N) * 1.3)
    return syn, v0


W2_PARAMS = {
    "hard": LIFParams(tau_ms=20.0, dt_ms=1.0, integration="exact", decay_input=False, v_th=1.0, v_reset=0.0),
    "soft": LIFParams(tau_ms=20.0, dt_ms=1.0, integration="exact", decay_input=False, v_th=1.0, v_reset=None),
    "input-decay": LIFParams(tau_ms=5.0, decay_input=True, v_th=0.9, v_reset=-0.1, v_rest=0.05,
                             strict_threshold=True),
}


def _drives(N, steps, kind):
    rng = np.random.default_rng(9)
    scale = 12.0 if kind == "input-decay" else 1.0  # decay_input scales the input by 1 - d
    return {
        "none": None,
        "poisson": ("poisson", 1234, binomial_cdf(100, 0.04), 0.05 * scale),
        "const": ("const", (0.03 + 0.05 * rng.random(N)) * scale),
        "given": ("given", rng.random((steps, N)) * 0.12 * scale),
    }


@pytest.mark.parametrize("params", sorted(W2_PARAMS))
@pytest.mark.parametrize("drive", ["none", "poisson", "const", "given"])
def test_recurrent_run_bit_identical_to_pytorch_reference(params, drive):
    syn, v0 = small_network()
    p, steps = W2_PARAMS[params], 200
    d = _drives(v0.numel(), steps, params)[drive]
    ref = reference_run(v0, syn, steps, p, d)
    out = _native.lif_recurrent_run(v0, syn.indptr, syn.indices, syn.values.detach(), steps, p, d, record_v=True)
    assert ref[0].numel() > (0 if drive == "none" else 500)  # the network is active
    for name, a, b in zip(["spikes", "offsets", "v", "v_trace"], out, ref):
        assert torch.equal(a, b), name


def test_recurrent_run_independent_of_threads_and_synapse_order():
    syn, v0 = small_network(N=250, p=0.08, seed=3)
    p = W2_PARAMS["hard"]
    d = ("poisson", 7, binomial_cdf(100, 0.05), 0.05)
    args = (v0, syn.indptr, syn.indices, syn.values.detach(), 150, p, d)
    one = _native.lif_recurrent_run(*args, record_v=True, threads=1)
    for n in (2, 3):
        more = _native.lif_recurrent_run(*args, record_v=True, threads=n)
        assert all(torch.equal(a, b) for a, b in zip(one, more))
    # rows given in another order, with a repeated target: each target's adds keep their order
    ip, ix, w = syn.indptr.clone(), syn.indices.clone(), syn.values.detach().clone()
    gen = torch.Generator().manual_seed(0)
    for j in range(250):
        a, b = int(ip[j]), int(ip[j + 1])
        perm = a + torch.randperm(b - a, generator=gen)
        ix[a:b], w[a:b] = ix[perm], w[perm]
    ix[ip[3]:ip[3] + 2] = ix[ip[3]]  # two synapses 3 -> same target, different weights
    w[ip[3]:ip[3] + 2] = torch.tensor([0.3, -0.1], dtype=F64)
    shuffled = SparseLinear(ip, ix, w, 250, switch_density=1.0, kernels="torch")
    ref = reference_run(v0, shuffled, 150, p, d)
    out = _native.lif_recurrent_run(v0, ip, ix, w, 150, p, d, record_v=True)
    assert all(torch.equal(a, b) for a, b in zip(out, ref))


def test_recurrent_run_rejects_bad_input():
    syn, v0 = small_network(N=50, p=0.1)
    p = W2_PARAMS["hard"]
    args = (syn.indptr, syn.indices, syn.values.detach())
    with pytest.raises(ValueError):
        _native.lif_recurrent_run(v0[:40], *args, 10, p)
    with pytest.raises(ValueError):
        _native.lif_recurrent_run(v0, *args, 10, p, ("const", np.zeros(49)))
    with pytest.raises(ValueError):
        _native.lif_recurrent_run(v0, *args, 10, p, ("given", np.zeros((9, 50))))
    with pytest.raises(ValueError):
        _native.lif_recurrent_run(v0, *args, 10, p, ("poisson", 1, np.array([0.5, 0.2]), 0.1))
    with pytest.raises(ValueError):
        _native.lif_recurrent_run(v0, *args, 10, p, ("bursts", 1))
    idx, off, v, tr = _native.lif_recurrent_run(v0, *args, 0, p)
    assert idx.numel() == 0 and off.tolist() == [0] and torch.equal(v, v0) and tr is None


def test_recurrent_engine_adapter_matches_torch_engine():
    models = pytest.importorskip("neuro.models.recurrent")
    net = models.w2_network(n=300, p=0.05, seed=5)
    ref = models.ENGINES["torch"](net, 120, True, False)
    out = _native.recurrent_engine(net, 120, record_v=True)
    assert torch.equal(out.spikes.indices, ref.spikes.indices) and torch.equal(out.spikes.offsets, ref.spikes.offsets)
    assert torch.equal(out.v, ref.v) and torch.equal(out.v_trace, ref.v_trace)
    assert np.array_equal(out.counts, ref.counts)


# ------------------------------------------------------------------------------- random numbers
def test_c_uniform_equals_numpy_counter_rng():
    cases = [(0, 0, 1), (0, 0, 17), (1234, 5, 10_000), (2**64 - 1, 3, 33), (7, 2**40, 9), (2**63 + 5, 999, 1000)]
    cases += [(int(s), int(t), int(n)) for s, t, n in np.random.default_rng(0).integers(0, 2**62, (20, 3)) % [2**62, 10**6, 300]]
    for seed, step, n in cases:
        assert np.array_equal(_native.uniform(seed, step, n), uniform(seed, step, n)), (seed, step, n)


@pytest.mark.parametrize("n_src,p_src", [(100, 0.012), (100, 0.2), (3, 0.5), (1, 0.3), (40, 0.9)])
def test_c_binomial_equals_numpy_inversion(n_src, p_src):
    cdf = binomial_cdf(n_src, p_src)
    for step in range(0, 50, 7):
        for n in (1, 8, 1001):
            assert np.array_equal(_native.binomial(99, step, n, cdf), binomial(99, step, n, cdf))
