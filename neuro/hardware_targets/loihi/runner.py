"""Run compiled networks in Lava itself, in its own virtual environment, through a subprocess.

Lava (lava-nc 0.10) needs Python 3.10 and numpy < 2, so it lives in a separate environment that
``make lava`` creates (``.venv-lava`` at the repository root). :func:`lava_python` finds its
interpreter: the environment variable ``NEURO_LAVA_PYTHON``, else ``.venv-lava/bin/python`` next to
the package; :class:`LavaUnavailableError` says how to get one when neither exists.

:func:`run_lava` writes the integer parameters and the input spikes of one or more networks to an
``.npz`` file in a temporary folder, runs :mod:`~neuro.hardware_targets.loihi.lava_worker` there
(which builds ``RingBuffer -> Dense/DelayDense/Sparse/DelaySparse -> LIF`` process graphs with
monitors and runs them on ``Loihi2SimCfg(select_tag='fixed_pt')``), and reads spikes and voltages
back. Several networks share one Lava start-up.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ...core.errors import NeuroError, ShapeError
from .compiler import LoihiNetwork

ENV_VAR = "NEURO_LAVA_PYTHON"
WORKER = Path(__file__).with_name("lava_worker.py")


class LavaUnavailableError(NeuroError, RuntimeError):
    """No Python environment with Lava was found."""

    def __init__(self, tried: list):
        self.tried = tried
        super().__init__("no Lava environment: tried " + ", ".join(tried) + ". Create one with `make lava` "
                         f"(Python 3.10, lava-nc 0.10, numpy<2) or set {ENV_VAR} to its python")


class LavaRunError(NeuroError, RuntimeError):
    """The Lava worker failed; carries its exit code and the end of its output."""

    def __init__(self, code: int, output: str):
        self.code, self.output = code, output
        super().__init__(f"the Lava worker exited with {code}:\n{output[-4000:]}")


def default_lava_python() -> Path:
    """``.venv-lava/bin/python`` at the repository root (the folder holding the ``neuro`` package)."""
    return Path(__file__).resolve().parents[3] / ".venv-lava" / "bin" / "python"


def lava_python() -> str:
    """The interpreter of the Lava environment (``NEURO_LAVA_PYTHON``, else the default); raises
    :class:`LavaUnavailableError` when it does not exist."""
    tried = []
    env = os.environ.get(ENV_VAR)
    if env:
        if Path(env).exists():
            return env
        tried.append(f"{ENV_VAR}={env}")
    path = default_lava_python()
    if path.exists():
        return str(path)
    tried.append(str(path))
    raise LavaUnavailableError(tried)


def lava_available() -> bool:
    try:
        lava_python()
    except LavaUnavailableError:
        return False
    return True


def _spec(nets: list, steps: int):
    arrays, networks = {}, []
    for i, (net, inputs) in enumerate(nets):
        if not isinstance(net, LoihiNetwork):
            raise ShapeError("run_lava", f"network {i} is a {type(net).__name__}, not a LoihiNetwork")
        if not isinstance(inputs, dict):
            inputs = {next(iter(net.sources)): inputs}
        key = {name: f"n{i}p{j}" for j, name in enumerate([*net.sources, *net.populations])}
        sources = []
        for name, n in net.sources.items():
            x = np.asarray(inputs[name])
            if x.ndim != 2 or x.shape[1] != n:
                raise ShapeError("run_lava", f"source {name!r} needs spikes [T, {n}], got {x.shape}")
            data = np.zeros((n, steps), dtype=np.int32)
            data[:, :min(steps, x.shape[0])] = (x[:steps] != 0).T
            arrays[key[name]] = data
            sources.append({"key": key[name], "n": n})
        pops = []
        for name, p in net.populations.items():
            arrays[key[name] + ".bm"], arrays[key[name] + ".be"] = p.bias_mant, p.bias_exp
            pops.append({"key": key[name], "n": p.n, "du": p.du, "dv": p.dv, "vth": p.vth,
                         "bias_mant": key[name] + ".bm", "bias_exp": key[name] + ".be"})
        conns = []
        for j, c in enumerate(net.connections):
            wk = f"n{i}c{j}.w"
            arrays[wk] = c.weights
            dk = None
            if c.delays is not None:
                dk = f"n{i}c{j}.d"
                arrays[dk] = c.delays
            conns.append({"pre": key[c.pre], "post": key[c.post], "weights": wk, "weight_exp": c.weight_exp,
                          "num_weight_bits": c.num_weight_bits, "delays": dk, "sparse": c.sparse})
        networks.append({"sources": sources, "populations": pops, "connections": conns, "keys": key})
    return {"steps": steps, "networks": networks}, arrays


def run_lava(nets, steps: int, timeout_s: float = 600.0):
    """Run ``nets`` — a list of (LoihiNetwork, inputs {source: spikes [T, n]}) — for ``steps`` Lava steps
    in one Lava process graph. Returns (results, seconds): results[i] = (spikes {population: int8
    [steps, n]}, v {population: int64 [steps, n]}); seconds = the Lava run's wall time."""
    python = lava_python()
    spec, arrays = _spec(list(nets), int(steps))
    with tempfile.TemporaryDirectory(prefix="neuro-lava-") as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(src, spec=np.array(json.dumps(spec)), **arrays)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        proc = subprocess.run([python, "-I", str(WORKER), str(src), str(dst)], capture_output=True, text=True,
                              timeout=timeout_s, env=env, cwd=tmp)
        if proc.returncode != 0 or not dst.exists():
            raise LavaRunError(proc.returncode, proc.stdout + proc.stderr)
        out = dict(np.load(dst))
    results = []
    for net_spec, (net, _) in zip(spec["networks"], nets):
        key = net_spec["keys"]
        results.append(({k: out[f"{key[k]}.s"] for k in net.populations},
                        {k: out[f"{key[k]}.v"] for k in net.populations}))
    return results, float(out["seconds"])
