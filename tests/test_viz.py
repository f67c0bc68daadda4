"""Plots (neuro.viz): files with content, plotted data equal to the input, typed errors."""
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from matplotlib.image import imread

from neuro.core.errors import ParameterError, ShapeError
from neuro.core.events import EventTensor
from neuro.viz import membrane_traces, raster, rate_histogram, save_figure
from neuro.viz.plots import firing_rates_hz


@pytest.fixture
def spikes():
    g = torch.Generator().manual_seed(0)
    return (torch.rand(50, 12, generator=g) < 0.2).float()  # [T, N]


def _png_has_content(path):
    assert path.stat().st_size > 5_000
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.05  # not a blank canvas


def _offsets(fig):
    (ax,) = fig.axes
    (points,) = ax.collections
    return points.get_offsets()


def test_raster_dense_plots_every_event(spikes, tmp_path):
    fig = raster(spikes, dt_ms=0.5, title="test")
    assert isinstance(fig, Figure)
    t, n = np.nonzero(spikes.numpy())
    np.testing.assert_array_equal(_offsets(fig), np.column_stack([t * 0.5, n]))
    assert fig.axes[0].get_title() == "test" and fig.axes[0].get_xlabel() == "time (ms)"
    path = save_figure(fig, tmp_path / "deep" / "er" / "raster.png")
    assert path == tmp_path / "deep" / "er" / "raster.png"
    _png_has_content(path)


def test_raster_event_tensor_equals_dense(spikes):
    ev = EventTensor.from_dense(spikes)
    steps = np.repeat(np.arange(ev.steps), ev.counts().numpy())
    coords = np.column_stack([steps * 2.0, ev.indices.numpy()])
    np.testing.assert_array_equal(_offsets(raster(ev, dt_ms=2.0)), coords)
    np.testing.assert_array_equal(_offsets(raster(spikes, dt_ms=2.0)), coords)


def test_raster_accepts_numpy_and_max_neurons(spikes):
    fig = raster(spikes.numpy().astype(bool), max_neurons=5)
    t, n = np.nonzero(spikes.numpy()[:, :5])
    np.testing.assert_array_equal(_offsets(fig), np.column_stack([t, n]))
    assert fig.axes[0].get_ylim() == (-0.5, 4.5)


def test_raster_into_given_axes(spikes):
    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    assert raster(spikes, ax=ax2) is fig
    assert len(ax2.collections) == 1 and len(ax1.collections) == 0


def test_raster_empty_train(tmp_path):
    fig = raster(torch.zeros(10, 4))
    assert len(_offsets(fig)) == 0
    assert save_figure(fig, tmp_path / "empty.png").stat().st_size > 1_000


def test_membrane_traces_plot_the_input(tmp_path):
    g = torch.Generator().manual_seed(1)
    v = torch.randn(40, 6, generator=g).cumsum(0)
    fig = membrane_traces(v, neurons=[0, 3, 5], v_th=1.0, dt_ms=0.25)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 4  # three neurons and the threshold
    for line, i in zip(lines, [0, 3, 5]):
        np.testing.assert_array_equal(line.get_xdata(), np.arange(40) * 0.25)
        np.testing.assert_allclose(line.get_ydata(), v[:, i].numpy().astype(np.float64))
        assert line.get_label() == f"neuron {i}"
    np.testing.assert_array_equal(lines[3].get_ydata(), [1.0, 1.0])
    _png_has_content(save_figure(fig, tmp_path / "v.png"))


def test_membrane_traces_default_neurons_and_pdf(tmp_path):
    fig = membrane_traces(np.random.default_rng(0).normal(size=(20, 9)))
    assert len(fig.axes[0].get_lines()) == 5
    path = save_figure(fig, tmp_path / "v.pdf")
    assert path.read_bytes()[:4] == b"%PDF"


def test_rate_histogram_counts(spikes, tmp_path):
    fig = rate_histogram(spikes, dt_ms=2.0, bins=6)
    rates = spikes.sum(0).numpy() / (50 * 2.0 / 1000)  # Hz
    np.testing.assert_allclose(firing_rates_hz(spikes, 2.0), rates)
    counts, edges = np.histogram(rates, bins=6)
    bars = fig.axes[0].patches
    np.testing.assert_array_equal([b.get_height() for b in bars], counts)
    np.testing.assert_allclose([b.get_x() for b in bars], edges[:-1])
    assert fig.axes[0].get_xlabel() == "firing rate (Hz)"
    np.testing.assert_allclose(firing_rates_hz(EventTensor.from_dense(spikes), 2.0), rates)
    _png_has_content(save_figure(fig, tmp_path / "rates.png"))


@pytest.mark.parametrize("bad", [torch.zeros(5), torch.zeros(2, 3, 4), np.zeros(())])
def test_wrong_rank_is_a_shape_error(bad):
    for fn in (raster, membrane_traces, rate_histogram):
        with pytest.raises(ShapeError, match=r"\[T, N\]"):
            fn(bad)


def test_event_tensor_with_batch_axis_is_a_shape_error():
    ev = EventTensor.from_dense(torch.ones(3, 2, 4))
    with pytest.raises(ShapeError, match="per-step shape"):
        raster(ev)
    with pytest.raises(ShapeError, match="per-step shape"):
        rate_histogram(ev)


def test_bad_arguments_are_parameter_errors(spikes):
    with pytest.raises(ParameterError, match="dt_ms"):
        raster(spikes, dt_ms=0)
    with pytest.raises(ParameterError, match="max_neurons"):
        raster(spikes, max_neurons=0)
    with pytest.raises(ParameterError, match="neurons"):
        membrane_traces(torch.zeros(4, 3), neurons=[3])
    with pytest.raises(ParameterError, match="v_th"):
        membrane_traces(torch.zeros(4, 3), v_th=float("nan"))
    with pytest.raises(ParameterError, match="bins"):
        rate_histogram(spikes, bins=0)
    with pytest.raises(ParameterError, match="numeric"):
        raster(np.array([["a", "b"]]))
    with pytest.raises(ParameterError, match="Figure"):
        save_figure("not a figure", "x.png")
