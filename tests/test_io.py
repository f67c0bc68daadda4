"""Model folders (neuro.io): round trips of every savable module, one negative test per load rule,
and atomic saving."""
import json
import re
import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import neuro.io as nio
from neuro.core.errors import FormatError, ParameterError
from neuro.core.surrogate import ATan, Sigmoid
from neuro.io import load_model, register_savable, save_model, savable
from neuro.models.sequential import Flatten, SpikingSequential
from neuro.neurons import ALIF, IF, LIF, STBIF, CubaLIF
from neuro.synapses import Conv2d, Linear, SparseLinear


def _run(model, x):
    with torch.no_grad():
        out = model(x)
    for m in model.modules():
        if hasattr(m, "reset"):
            m.reset()
    return out


def _roundtrip(model, x, tmp_path):
    before = _run(model, x)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is type(model)
    assert loaded.get_config() == json.loads(json.dumps(model.get_config()))
    after = _run(loaded, x)
    assert torch.equal(before, after)
    for (n1, t1), (n2, t2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and t1.dtype == t2.dtype and torch.equal(t1, t2)
    return loaded, before


# -- round trips -----------------------------------------------------------------------------------
NEURONS = [
    LIF(tau_ms=3.0, v_reset=None, decay_input=False, surrogate=Sigmoid(alpha=5.0), step_mode="m"),
    LIF(tau_ms=5.0, dt_ms=1.0, integration="exact", v_rest=-0.1, v_reset=-0.2, detach_reset=True, step_mode="m"),
    IF(v_reset=None, v_init=0.5, step_mode="m"),
    CubaLIF(tau_syn_ms=4.0, tau_ms=8.0, v_th=0.7, step_mode="m"),
    ALIF(tau_ms=10.0, beta=0.5, v_reset=None, surrogate=ATan(alpha=3.0), step_mode="m"),
    STBIF(theta=0.25, pos_max=5, neg_min=-3, step_mode="m"),
]


@pytest.mark.parametrize("neuron", NEURONS, ids=lambda m: type(m).__name__)
def test_neuron_roundtrip(neuron, tmp_path):
    x = torch.randn(12, 3, 7) * 3
    loaded, out = _roundtrip(neuron, x, tmp_path)
    assert loaded.params == neuron.params and loaded.surrogate == neuron.surrogate
    assert loaded.step_mode == "m"
    assert out.abs().sum() > 0  # the comparison saw spikes


def test_neuron_single_step_mode_kept(tmp_path):
    lif = LIF(tau_ms=4.0)
    loaded, _ = _roundtrip(lif, torch.rand(3, 5) * 3, tmp_path)
    assert loaded.step_mode == "s"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_linear_roundtrip(dtype, tmp_path):
    fc = Linear(9, 4, dtype=dtype, switch_density=0.5)
    loaded, _ = _roundtrip(fc, torch.rand(5, 9, dtype=dtype), tmp_path)
    assert loaded.weight.dtype == dtype and loaded.switch_density == 0.5


def test_linear_without_bias_roundtrip(tmp_path):
    loaded, _ = _roundtrip(Linear(6, 3, bias=False), torch.rand(2, 6), tmp_path)
    assert loaded.bias is None


def test_sparse_linear_roundtrip(tmp_path):
    sp = SparseLinear.random(30, 12, 0.2, weight=lambda pre: torch.randn(len(pre)).numpy(), seed=3,
                             bias=torch.randn(12))
    x = (torch.rand(4, 30) < 0.3).float()
    loaded, _ = _roundtrip(sp, x, tmp_path)
    assert torch.equal(loaded.indptr, sp.indptr) and torch.equal(loaded.indices, sp.indices)
    assert torch.equal(loaded.to_dense(), sp.to_dense())
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert {"indptr", "indices", "values", "bias"} <= set(cfg["tensors"])
    assert cfg["model"]["config"]["nnz"] == sp.nnz


def test_conv2d_roundtrip(tmp_path):
    conv = Conv2d(2, 3, kernel_size=3, stride=2, padding=1, step_mode="m")
    loaded, _ = _roundtrip(conv, torch.rand(4, 2, 2, 9, 9), tmp_path)
    assert (loaded.kernel_size, loaded.stride, loaded.padding) == ((3, 3), (2, 2), (1, 1))


def test_sequential_linear_lif_roundtrip(tmp_path):
    net = SpikingSequential(Linear(20, 32), LIF(tau_ms=2.0, step_mode="m"),
                            Linear(32, 5), LIF(tau_ms=3.0, v_reset=None, step_mode="m"))
    with torch.no_grad():
        net[0].weight.mul_(3)
        net[2].weight.mul_(4)
    _, out = _roundtrip(net, torch.rand(15, 4, 20) * 2, tmp_path)
    assert out.shape == (15, 4, 5) and out.sum() > 0
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["format"] == "neuro-model" and cfg["format_version"] == 1
    assert [layer["class"] for layer in cfg["model"]["config"]["layers"]] == ["Linear", "LIF", "Linear", "LIF"]
    assert cfg["tensors"]["0.weight"] == {"shape": [32, 20], "dtype": "float32"}


def test_sequential_conv_roundtrip(tmp_path):
    net = SpikingSequential(Conv2d(1, 4, 3, padding=1, step_mode="m"), IF(step_mode="m"),
                            Flatten(step_mode="m"), Linear(4 * 6 * 6, 3), LIF(step_mode="m"))
    _roundtrip(net, torch.rand(5, 2, 1, 6, 6) * 3, tmp_path)


@savable("test_io.Scale")
class Scale(nn.Module):
    """A class from outside the package, saved through the same protocol."""

    def __init__(self, n, factor):
        super().__init__()
        self.factor = factor
        self.register_buffer("gain", torch.full((n,), float(factor)))

    def forward(self, x):
        return x * self.gain

    def get_config(self):
        return {"n": self.gain.numel(), "factor": self.factor}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def test_nested_sequential_and_custom_class(tmp_path):
    inner = SpikingSequential(Linear(4, 4), Scale(4, 2.5))
    net = SpikingSequential(inner, LIF(step_mode="m"))
    _roundtrip(net, torch.rand(3, 2, 4), tmp_path)
    assert json.loads((tmp_path / "m" / "config.json").read_text())["tensors"]["0.1.gain"]["shape"] == [4]


def test_registry_refuses_second_class_under_a_name():
    class Other(nn.Module):
        get_config = from_config = staticmethod(lambda *a: {})

    with pytest.raises(ParameterError, match="LIF"):
        register_savable("LIF", Other)
    register_savable("LIF", LIF)  # the same class again is fine
    with pytest.raises(ParameterError, match="get_config"):
        register_savable("test_io.nothing", type("Nothing", (nn.Module,), {}))


# -- saving: atomic, refusals ----------------------------------------------------------------------
def _siblings(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir())


def test_refuses_to_overwrite_then_replaces(tmp_path):
    save_model(Linear(3, 2), tmp_path / "m")
    with pytest.raises(FileExistsError, match="overwrite"):
        save_model(Linear(5, 2), tmp_path / "m")
    assert load_model(tmp_path / "m").in_features == 3
    save_model(Linear(5, 2), tmp_path / "m", overwrite=True)
    assert load_model(tmp_path / "m").in_features == 5
    assert _siblings(tmp_path) == ["m"]


def test_save_creates_parent_folders(tmp_path):
    save_model(Linear(3, 2), tmp_path / "a" / "b" / "m")
    assert load_model(tmp_path / "a" / "b" / "m").out_features == 2


def test_unserialisable_config_leaves_no_folder(tmp_path):
    lif = LIF()
    lif.get_config = lambda: {"params": {"tau_ms": object()}}
    with pytest.raises(FormatError) as err:
        save_model(lif, tmp_path / "m")
    assert "config.json" in str(err.value) and "tau_ms" in str(err.value)
    assert _siblings(tmp_path) == []


def test_non_finite_config_value_refused(tmp_path):
    lif = LIF()
    lif.get_config = lambda: {"params": {"tau_ms": math.inf}}
    with pytest.raises(FormatError, match="tau_ms"):
        save_model(lif, tmp_path / "m")
    assert _siblings(tmp_path) == []


def test_unregistered_class_refused(tmp_path):
    class Mine(Linear):
        pass

    with pytest.raises(FormatError, match="not registered"):
        save_model(Mine(2, 2), tmp_path / "m")
    with pytest.raises(FormatError, match=r"layers\[1\].*not registered"):
        save_model(SpikingSequential(Linear(2, 2), nn.ReLU()), tmp_path / "m")
    assert _siblings(tmp_path) == []


def test_nan_weights_refused_at_save(tmp_path):
    fc = Linear(3, 2)
    with torch.no_grad():
        fc.weight[0, 1] = float("nan")
    with pytest.raises(FormatError, match="weight"):
        save_model(fc, tmp_path / "m")
    assert _siblings(tmp_path) == []


def test_failure_mid_write_leaves_no_folder(tmp_path, monkeypatch):
    def broken(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(nio, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_model(Linear(3, 2), tmp_path / "m")
    assert _siblings(tmp_path) == []


def test_failure_mid_overwrite_keeps_the_old_folder(tmp_path, monkeypatch):
    save_model(Linear(3, 2), tmp_path / "m")
    good = load_model(tmp_path / "m").weight.clone()

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(nio, "save_file", broken)
    with pytest.raises(OSError):
        save_model(Linear(7, 2), tmp_path / "m", overwrite=True)
    assert _siblings(tmp_path) == ["m"]
    assert torch.equal(load_model(tmp_path / "m").weight, good)


def test_failure_during_swap_restores_the_old_folder(tmp_path, monkeypatch):
    save_model(Linear(3, 2), tmp_path / "m")
    real_rename = nio.os.rename
    calls = []

    def rename(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the new folder into place
            raise OSError("rename failed")
        return real_rename(src, dst)

    monkeypatch.setattr(nio.os, "rename", rename)
    with pytest.raises(OSError, match="rename failed"):
        save_model(Linear(7, 2), tmp_path / "m", overwrite=True)
    monkeypatch.undo()
    assert _siblings(tmp_path) == ["m"]
    assert load_model(tmp_path / "m").in_features == 3


# -- loading: one negative test per rule -----------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    net = SpikingSequential(Linear(6, 4), LIF(step_mode="m"))
    return save_model(net, tmp_path / "m")


def _edit_config(folder, change):
    path = folder / "config.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def _raises(folder, file, node=None, field=None, match=None):
    with pytest.raises(FormatError, match=match) as err:
        load_model(folder)
    e = err.value
    assert e.file.endswith(file), e
    if node is not None:
        assert e.node == node, e
    if field is not None:
        assert e.field == field, e
    return e


def test_missing_folder(tmp_path):
    with pytest.raises(FormatError, match="no such model folder"):
        load_model(tmp_path / "nothing")


def test_missing_config(saved):
    (saved / "config.json").unlink()
    _raises(saved, "config.json", match="missing")


def test_missing_weights(saved):
    (saved / "model.safetensors").unlink()
    _raises(saved, "model.safetensors", match="missing")


def test_unparsable_json(saved):
    (saved / "config.json").write_text('{"format": "neuro-model", ')
    _raises(saved, "config.json", match="not valid JSON.*line 1")


def test_nan_constant_in_json(saved):
    text = re.sub(r'"switch_density": [0-9.]+', '"switch_density": NaN', (saved / "config.json").read_text(), count=1)
    assert "NaN" in text
    (saved / "config.json").write_text(text)
    _raises(saved, "config.json", match="NaN")


def test_wrong_format(saved):
    _edit_config(saved, lambda d: d.update(format="onnx"))
    _raises(saved, "config.json", field="format", match="onnx")


@pytest.mark.parametrize("version", [2, "1", None, True])
def test_wrong_format_version(saved, version):
    _edit_config(saved, lambda d: d.update(format_version=version))
    _raises(saved, "config.json", field="format_version")


def test_unknown_class(saved):
    _edit_config(saved, lambda d: d["model"].update({"class": "Transformer9000"}))
    _raises(saved, "config.json", node="model", field="class", match="Transformer9000")


def test_unknown_nested_class(saved):
    _edit_config(saved, lambda d: d["model"]["config"]["layers"][1].update({"class": "Nope"}))
    _raises(saved, "config.json", node="SpikingSequential.layers[1]", field="class", match="Nope")


def test_config_rejected_by_class(saved):
    _edit_config(saved, lambda d: d["model"]["config"]["layers"][1]["config"]["params"].update(tau_ms=-1.0))
    _raises(saved, "config.json", node="SpikingSequential.layers[1]", field="config", match="tau_ms")


def test_config_with_unknown_key(saved):
    _edit_config(saved, lambda d: d["model"]["config"]["layers"][0]["config"].update(colour="red"))
    _raises(saved, "config.json", field="config", match="colour")


def test_config_tensor_table_names_differ_from_module(saved):
    _edit_config(saved, lambda d: d["tensors"].update({"0.extra": {"shape": [1], "dtype": "float32"}}))
    _raises(saved, "config.json", node="0.extra", match="not a tensor")
    _edit_config(saved, lambda d: (d["tensors"].pop("0.extra"), d["tensors"].pop("0.bias")))
    _raises(saved, "config.json", node="0.bias", match="missing")


def test_config_shape_differs_from_module(saved):
    _edit_config(saved, lambda d: d["model"]["config"]["layers"][0]["config"].update(in_features=7))
    _raises(saved, "config.json", node="0.weight", field="shape", match=r"\[4, 6\].*\[4, 7\]")


def test_config_dtype_differs_from_module(saved):
    _edit_config(saved, lambda d: d["tensors"]["0.weight"].update(dtype="float64"))
    _raises(saved, "config.json", node="0.weight", field="dtype")


def test_bad_tensor_table_entry(saved):
    _edit_config(saved, lambda d: d["tensors"]["0.weight"].update(shape=[4, -6]))
    _raises(saved, "config.json", node="0.weight", field="shape")
    _edit_config(saved, lambda d: d["tensors"]["0.weight"].update(shape=[4, 6], dtype="complex32"))
    _raises(saved, "config.json", node="0.weight", field="dtype")


def test_file_shape_differs_from_config(saved):
    # config and module agree on [4, 7]; the file still holds [4, 6]
    def change(d):
        d["model"]["config"]["layers"][0]["config"]["in_features"] = 7
        d["tensors"]["0.weight"]["shape"] = [4, 7]

    _edit_config(saved, change)
    _raises(saved, "model.safetensors", node="0.weight", field="shape")


def test_file_dtype_differs_from_config(saved):
    def change(d):
        d["model"]["config"]["layers"][0]["config"]["dtype"] = "float64"
        d["tensors"]["0.weight"]["dtype"] = d["tensors"]["0.bias"]["dtype"] = "float64"

    _edit_config(saved, change)
    _raises(saved, "model.safetensors", node="0.bias", field="dtype", match="float32.*float64")


def test_file_missing_a_tensor(saved):
    tensors = load_file(str(saved / "model.safetensors"))
    del tensors["0.bias"]
    save_file(tensors, str(saved / "model.safetensors"))
    _raises(saved, "model.safetensors", node="0.bias", match="not in the file")


def test_file_with_an_extra_tensor(saved):
    tensors = load_file(str(saved / "model.safetensors"))
    tensors["stowaway"] = torch.zeros(2)
    save_file(tensors, str(saved / "model.safetensors"))
    _raises(saved, "model.safetensors", node="stowaway", match="not listed")


def test_truncated_file(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[:-20])
    _raises(saved, "model.safetensors", match="truncated or corrupt")


def test_corrupt_header(saved):
    data = bytearray((saved / "model.safetensors").read_bytes())
    data[10:20] = b"\x00" * 10
    (saved / "model.safetensors").write_bytes(bytes(data))
    _raises(saved, "model.safetensors", match="truncated or corrupt")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights(saved, bad):
    tensors = load_file(str(saved / "model.safetensors"))
    tensors["0.weight"][2, 3] = bad
    save_file(tensors, str(saved / "model.safetensors"))
    e = _raises(saved, "model.safetensors", node="0.weight", field="values")
    assert "[2, 3]" in str(e)


def test_inconsistent_sparse_structure(tmp_path):
    sp = SparseLinear.random(10, 6, 0.4, seed=1)
    folder = save_model(sp, tmp_path / "m")
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["indices"][0] = 99  # a target neuron that does not exist
    save_file(tensors, str(folder / "model.safetensors"))
    _raises(folder, "model.safetensors", node="model", match="indices")
