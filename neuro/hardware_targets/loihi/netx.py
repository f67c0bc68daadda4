"""lava-dl's netx HDF5 network format for a compiled feed-forward chain (REFERENCE §5).

Layout written::

    /layer/0/       type='input', shape=[n_in]
    /layer/{i}/     type='dense', shape=[n_out], weight [n_out, n_in] (int mantissas), weight_exp,
                    [bias] [n_out] (bias mantissa << exponent), [delay] [n_out, n_in],
                    neuron/ type='CUBA', iDecay, vDecay, vThMant, refDelay, gradedSpike

netx builds a LIF with ``vth = vThMant``, ``du = iDecay - 1``, ``dv = vDecay``, so ``iDecay = du + 1``.
Only chains (each population fed by the one before it, in order) have a netx form; anything else
raises :class:`~neuro.core.errors.UnsupportedLayerError`. :func:`read_netx` reads the file back
(h5py) and raises :class:`~neuro.core.errors.FormatError` naming the layer and field on a malformed file.
lava-dl's own reader is not used: lava-dl 0.6 requires torch 2.3 with its CUDA packages, which the
Lava environment does not install; the files follow the layout its ``netx.hdf5`` reader expects.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.errors import FormatError, UnsupportedLayerError
from .compiler import LoihiNetwork


def _chain(net: LoihiNetwork) -> list:
    if len(net.sources) != 1:
        raise UnsupportedLayerError([("<sources>", f"{len(net.sources)} spike sources (netx has one input layer)")],
                                    context="lava-dl netx")
    pre, order, bad = next(iter(net.sources)), [], []
    by_post = {}
    for c in net.connections:
        by_post.setdefault(c.post, []).append(c)
    for name in net.populations:
        conns = by_post.get(name, [])
        if len(conns) != 1 or conns[0].pre != pre:
            bad.append((name, "not fed by exactly the layer before it (netx holds feed-forward chains)"))
            continue
        order.append((name, conns[0]))
        pre = name
    if bad:
        raise UnsupportedLayerError(bad, context="lava-dl netx")
    return order


def write_netx(net: LoihiNetwork, path) -> Path:
    """Write ``net`` (a chain) to ``path`` in netx HDF5. Returns the path."""
    import h5py

    order = _chain(net)
    path = Path(path)
    with h5py.File(path, "w") as f:
        src = next(iter(net.sources))
        g = f.create_group("layer/0")
        g["type"], g["shape"] = "input", np.array([net.sources[src]], dtype=np.int64)
        for i, (name, c) in enumerate(order, start=1):
            p = net.populations[name]
            g = f.create_group(f"layer/{i}")
            g["type"], g["shape"] = "dense", np.array([p.n], dtype=np.int64)
            g["weight"], g["weight_exp"] = c.weights.astype(np.int64), np.int64(c.weight_exp)
            if np.any(p.bias_mant):
                g["bias"] = (p.bias_mant << p.bias_exp).astype(np.int64)
            if c.delays is not None:
                g["delay"] = c.delays.astype(np.int64)
            nrn = g.create_group("neuron")
            nrn["type"] = "CUBA"
            nrn["iDecay"], nrn["vDecay"] = np.int64(p.du + 1), np.int64(p.dv)
            nrn["vThMant"], nrn["refDelay"], nrn["gradedSpike"] = np.int64(p.vth), np.int64(1), False
    return path


def _get(f, file: str, layer: str, key: str, kind):
    if key not in f[layer]:
        raise FormatError(file, layer, key, "missing")
    v = f[layer][key][()]
    if kind is str:
        v = v.decode() if isinstance(v, bytes) else v
        if not isinstance(v, str):
            raise FormatError(file, layer, key, f"expected a string, got {type(v).__name__}")
        return v
    a = np.asarray(v)
    if not np.issubdtype(a.dtype, np.integer):
        raise FormatError(file, layer, key, f"expected integers, got dtype {a.dtype}")
    return a


def read_netx(path) -> list:
    """The layers of a netx file as dicts (``type``, ``shape``, and for dense layers ``weight``,
    ``weight_exp``, ``bias``, ``delay``, ``neuron`` {iDecay, vDecay, vThMant, refDelay})."""
    import h5py

    file = str(path)
    try:
        f = h5py.File(file, "r")
    except OSError as e:
        raise FormatError(file, None, None, f"not a readable HDF5 file ({e})") from None
    with f:
        if "layer" not in f:
            raise FormatError(file, None, "layer", "missing")
        layers = []
        for i in range(len(f["layer"])):
            name = f"layer/{i}"
            if name not in f:
                raise FormatError(file, name, None, "missing (layers must be numbered 0, 1, ...)")
            d = {"type": _get(f, file, name, "type", str), "shape": _get(f, file, name, "shape", int)}
            if d["type"] == "dense":
                d["weight"] = _get(f, file, name, "weight", int)
                d["weight_exp"] = int(_get(f, file, name, "weight_exp", int)) if "weight_exp" in f[name] else 0
                if d["weight"].ndim != 2 or d["weight"].shape[0] != int(d["shape"][0]):
                    raise FormatError(file, name, "weight", f"shape {d['weight'].shape} does not match {d['shape']}")
                for opt in ("bias", "delay"):
                    if opt in f[name]:
                        d[opt] = _get(f, file, name, opt, int)
                d["neuron"] = {k: int(_get(f, file, name + "/neuron", k, int)) for k in
                               ("iDecay", "vDecay", "vThMant", "refDelay")}
                d["neuron"]["type"] = _get(f, file, name + "/neuron", "type", str)
            layers.append(d)
    return layers
