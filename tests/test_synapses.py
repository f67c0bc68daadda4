import pytest
import torch
import torch.nn.functional as F

from neuro.core import DTypeError, ParameterError, ShapeError, StepModeError
from neuro.synapses import Conv2d, Linear, SparseLinear, available_kernels

DENSITIES = [0.001, 0.01, 0.1, 0.5]
KERNELS = available_kernels()


def spikes(shape, density, dtype=torch.float64, signed=False):
    x = (torch.rand(shape) < density).to(dtype)
    if signed:
        x = x * (torch.randint(0, 2, shape) * 2 - 1).to(dtype)
    return x


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_linear_event_path_equals_dense_forward_and_backward(kernels, density, dtype):
    x = spikes((6, 40, 120), density, dtype, signed=True)
    ev = Linear(120, 70, switch_density=1.0, kernels=kernels, dtype=dtype)
    dn = Linear(120, 70, switch_density=0.0, dtype=dtype)
    dn.load_state_dict(ev.state_dict())
    xe, xd = x.clone().requires_grad_(), x.clone().requires_grad_()
    ye, yd = ev(xe), dn(xd)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ye, yd, **tol)
    g = torch.randn_like(ye)
    (ye * g).sum().backward()
    (yd * g).sum().backward()
    torch.testing.assert_close(xe.grad, xd.grad, **tol)
    torch.testing.assert_close(ev.weight.grad, dn.weight.grad, **tol)
    torch.testing.assert_close(ev.bias.grad, dn.bias.grad, **tol)


def test_linear_switches_on_density():
    calls = []

    class Spy:
        @staticmethod
        def rows_matmul(x, wt, bias=None):
            calls.append(x.shape)
            return x @ wt + bias

    layer = Linear(50, 80, switch_density=0.2)
    layer.kernels = Spy
    layer(spikes((10, 50), 0.05, torch.float32))
    assert len(calls) == 1
    layer(torch.ones(10, 50))
    assert len(calls) == 1  # dense input: the matmul path
    narrow = Linear(50, 10, switch_density=1.0)  # fewer outputs than EVENT_MIN_OUT_FEATURES: always dense
    narrow.kernels = Spy
    narrow(spikes((10, 50), 0.05, torch.float32))
    assert len(calls) == 1


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("density", DENSITIES)
def test_sparse_linear_paths_agree_with_dense_matrix(kernels, density):
    torch.manual_seed(1)
    w = torch.randn(70, 90, dtype=torch.float64) * (torch.rand(70, 90) < 0.1)
    ev = SparseLinear.from_dense(w, switch_density=1.0, kernels=kernels)
    al = SparseLinear.from_dense(w, switch_density=0.0, kernels=kernels)
    assert torch.equal(ev.to_dense(), w)
    x = spikes((8, 90), density, signed=True)
    for layer in (ev, al):
        xr = x.clone().requires_grad_()
        y = layer(xr)
        torch.testing.assert_close(y, x @ w.t(), rtol=1e-12, atol=1e-12)
        g = torch.randn_like(y)
        (y * g).sum().backward()
        torch.testing.assert_close(xr.grad, g @ w, rtol=1e-12, atol=1e-12)
        dense_grad = (g.t() @ x)  # [out, in]
        pre = torch.repeat_interleave(torch.arange(90), layer.indptr.diff())
        torch.testing.assert_close(layer.values.grad, dense_grad[layer.indices, pre], rtol=1e-12, atol=1e-12)


def test_sparse_linear_random_connectivity():
    s = SparseLinear.random(400, 400, 0.05, weight=0.5, seed=3, autapses=False)
    dense = s.to_dense()
    assert torch.diagonal(dense).abs().sum() == 0
    assert abs(s.nnz / (400 * 399) - 0.05) < 0.005
    assert torch.equal(SparseLinear.random(400, 400, 0.05, seed=3, autapses=False).indices, s.indices)


@pytest.mark.parametrize("density", DENSITIES)
@pytest.mark.parametrize("stride,padding", [(1, 0), (1, 1), (2, 1)])
def test_conv_event_path_equals_dense(density, stride, padding):
    ev = Conv2d(3, 5, 3, stride=stride, padding=padding, switch_density=1.0).double()
    x = spikes((2, 3, 11, 11), density)
    xe, xd = x.clone().requires_grad_(), x.clone().requires_grad_()
    ye = ev(xe)
    yd = F.conv2d(xd, ev.weight, ev.bias, stride, padding)
    torch.testing.assert_close(ye, yd, rtol=1e-12, atol=1e-12)
    ye.sum().backward()
    gw = ev.weight.grad.clone()
    ev.weight.grad = None
    yd.sum().backward()
    torch.testing.assert_close(xe.grad, xd.grad)
    torch.testing.assert_close(gw, ev.weight.grad)


def test_conv_multi_step_folds_time():
    c = Conv2d(2, 4, 3, padding=1, step_mode="m").double()
    x = spikes((5, 3, 2, 8, 8), 0.1)
    y = c(x)
    assert y.shape == (5, 3, 4, 8, 8)
    torch.testing.assert_close(y[2], F.conv2d(x[2], c.weight, c.bias, 1, 1))


# ---------------------------------------------------------------- bad input
def test_linear_input_width_mismatch():
    with pytest.raises(ShapeError, match="expects 20"):
        Linear(20, 5)(torch.zeros(3, 19))


def test_linear_rejects_int_input():
    with pytest.raises(DTypeError, match="Linear"):
        Linear(4, 2)(torch.zeros(3, 4, dtype=torch.int32))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_linear_from_weights_rejects_non_finite(bad):
    w = torch.zeros(3, 4)
    w[1, 2] = bad
    with pytest.raises(ParameterError, match="weight"):
        Linear.from_weights(w)


def test_linear_from_weights_bias_shape():
    with pytest.raises(ShapeError, match="bias"):
        Linear.from_weights(torch.zeros(3, 4), torch.zeros(4))


@pytest.mark.parametrize("v", [-0.1, 1.5, "auto"])
def test_switch_density_range(v):
    with pytest.raises(ParameterError, match="switch_density"):
        Linear(3, 3, switch_density=v)


def test_linear_sizes():
    with pytest.raises(ParameterError, match="in_features"):
        Linear(0, 3)


def test_sparse_linear_rejects_bad_csr():
    with pytest.raises(ParameterError, match="indices"):
        SparseLinear([0, 1, 2], [0, 7], torch.ones(2), n_out=5)
    with pytest.raises(ShapeError, match="indptr"):
        SparseLinear([0, 2, 1], [0, 1], torch.ones(2), n_out=5)
    with pytest.raises(ShapeError, match="indices"):
        SparseLinear([0, 1, 3], [0, 1], torch.ones(2), n_out=5)
    with pytest.raises(ParameterError, match="values"):
        SparseLinear([0, 1, 2], [0, 1], torch.tensor([1.0, float("nan")]), n_out=5)
    with pytest.raises(ParameterError, match="p"):
        SparseLinear.random(5, 5, 0.0)


def test_sparse_linear_input_mismatch():
    s = SparseLinear.random(10, 4, 0.5)
    with pytest.raises(ShapeError, match="expects 10"):
        s(torch.zeros(2, 9))
    with pytest.raises(ShapeError, match="dtype"):
        s(torch.zeros(2, 10, dtype=torch.float64))


def test_conv_rejects_bad_args_and_shapes():
    with pytest.raises(ParameterError, match="stride"):
        Conv2d(1, 2, 3, stride=0)
    with pytest.raises(ShapeError, match="expected"):
        Conv2d(3, 2, 3)(torch.zeros(1, 2, 5, 5))
    with pytest.raises(StepModeError):
        Conv2d(3, 2, 3, step_mode="m")(torch.zeros(1, 3, 5, 5))


def test_cached_transpose_follows_weight_updates():
    layer = Linear(30, 80, switch_density=1.0, dtype=torch.float64)
    x = spikes((5, 30), 0.2)
    y0 = layer(x)
    with torch.no_grad():
        layer.weight.mul_(2.0)  # in-place update, as an optimizer step does
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(x).sum().backward()
    opt.step()
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    layer.load_state_dict({"weight": torch.zeros(80, 30, dtype=torch.float64), "bias": layer.bias.detach()})
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias))
    assert not torch.equal(y0, layer(x))
