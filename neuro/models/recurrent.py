r"""Recurrent spiking networks (one LIF population, CSR recurrent synapses, external drive).

Per step :math:`t` (a spike reaches its targets one step after it is emitted):

.. math::
    x_t = \text{drive}_t + \sum_j W_{j\cdot}\, s_j(t-1), \qquad
    (s_t, v_t) = \text{lif\_step}(x_t, v_{t-1})

The drive is one of :class:`PoissonDrive` (each neuron receives Binomial(n_sources, rate dt) kicks of
``weight``: Brian2's ``PoissonInput``, drawn with the counter-based RNG of :mod:`neuro.core.random`
so every engine sees the same draws), :class:`ConstantDrive` or :class:`GivenDrive` (a [T, N]
array). Engines are chosen by name: ``'torch'`` (the generic step functions and the event-driven
:class:`~neuro.synapses.SparseLinear`) and ``'native'`` (the compiled whole-run loop, when built).
Both give identical spikes in float64.

:func:`w2_network` builds benchmark W2: 10,000 neurons, p = 0.01, 80 % excitatory (+0.05) and 20 %
inhibitory (-0.25), tau 20 ms, dt 1 ms, exact decay, reset to 0, Binomial(100, 12 Hz) x 0.05 drive.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from ..core.errors import ParameterError, ShapeError
from ..core.events import EventTensor
from ..core.params import Params, integer, non_negative, param, record
from ..core.random import binomial, binomial_cdf
from ..core.surrogate import ATan
from ..io import savable
from ..neurons.lif import LIFParams, LIFState, lif_step
from ..synapses.sparse import SparseLinear


@record
class PoissonDrive(Params):
    """Each neuron gets Binomial(n_sources, rate_hz * dt) kicks of ``weight`` per step."""

    n_sources: int = param(100, integer(lo=1), doc="independent Poisson sources per neuron")
    rate_hz: float = param(12.0, non_negative, doc="rate of each source (Hz)")
    weight: float = param(0.05, doc="membrane kick per source spike")
    seed: int = param(0, integer(lo=0), doc="seed of the counter-based RNG")

    def cdf(self, dt_ms: float) -> np.ndarray:
        p = self.rate_hz * dt_ms * 1e-3
        if p > 1:
            self.fail("rate_hz", f"<= 1 / dt ({1e3 / dt_ms} Hz) so that rate * dt is a probability")
        return binomial_cdf(self.n_sources, p)

    def values(self, step: int, n: int, dt_ms: float, cdf: np.ndarray | None = None) -> np.ndarray:
        """float64 [n]: the drive of ``step``."""
        cdf = self.cdf(dt_ms) if cdf is None else cdf
        return binomial(self.seed, step, n, cdf) * self.weight


@dataclass(frozen=True)
class ConstantDrive:
    """The same input ``values`` [N] every step."""

    values: np.ndarray


@dataclass(frozen=True)
class GivenDrive:
    """Input ``values`` [T, N], one row per step."""

    values: np.ndarray


Drive = Union[None, PoissonDrive, ConstantDrive, GivenDrive]


@dataclass
class RunResult:
    """What a run recorded. ``spikes``: EventTensor over (N,); ``counts``: int64 [N];
    ``v``: final membrane [N]; ``v_trace``: [T, N] when asked for."""

    spikes: EventTensor
    counts: np.ndarray
    v: torch.Tensor
    v_trace: Optional[torch.Tensor] = None
    engine: str = ""

    def rates_hz(self, dt_ms: float) -> np.ndarray:
        return self.counts / (self.spikes.steps * dt_ms * 1e-3)


@savable("RecurrentNetwork")
class RecurrentNetwork(nn.Module):
    """A LIF population with recurrent CSR synapses and an external drive.

    Args:
        synapses: SparseLinear [n -> n] (by presynaptic neuron).
        params: LIFParams of the population.
        drive: PoissonDrive, ConstantDrive, GivenDrive or None.
        v0: initial membrane [n] (default: the reset value).
    """

    def __init__(self, synapses: SparseLinear, params: LIFParams, drive: Drive = None, v0=None):
        super().__init__()
        if not isinstance(synapses, SparseLinear):
            raise ParameterError("RecurrentNetwork", "synapses", type(synapses).__name__, "a SparseLinear")
        if synapses.n_in != synapses.n_out:
            raise ShapeError("RecurrentNetwork", f"recurrent synapses must be square, got {synapses.n_in} -> {synapses.n_out}")
        if not isinstance(params, LIFParams):
            raise ParameterError("RecurrentNetwork", "params", type(params).__name__, "a LIFParams")
        self.n = synapses.n_in
        self.synapses = synapses
        self.params = params
        self.drive = drive
        dtype = synapses.values.dtype
        v0 = torch.full((self.n,), params.v_init, dtype=dtype) if v0 is None else torch.as_tensor(v0, dtype=dtype)
        if v0.shape != (self.n,):
            raise ShapeError("RecurrentNetwork", f"v0 has shape {tuple(v0.shape)}, population has {self.n} neurons")
        self.register_buffer("v0", v0.clone())
        if drive is not None and not isinstance(drive, (PoissonDrive, ConstantDrive, GivenDrive)):
            raise ParameterError("RecurrentNetwork", "drive", type(drive).__name__,
                                 "None, a PoissonDrive, a ConstantDrive or a GivenDrive")
        if isinstance(drive, (ConstantDrive, GivenDrive)):
            vals = torch.as_tensor(np.asarray(drive.values), dtype=dtype)
            want = 1 if isinstance(drive, ConstantDrive) else 2
            if vals.dim() != want or vals.shape[-1] != self.n:
                raise ShapeError("RecurrentNetwork", f"{type(drive).__name__} values have shape {tuple(vals.shape)}, "
                                 f"expected {'[N]' if want == 1 else '[T, N]'} with N = {self.n} neurons")
            self.register_buffer("drive_values", vals.clone())  # saved with the model

    def _drive_fn(self, steps: int) -> Callable[[int], torch.Tensor]:
        dtype, n, d = self.v0.dtype, self.n, self.drive
        if d is None:
            zero = torch.zeros(n, dtype=dtype)
            return lambda t: zero
        if isinstance(d, PoissonDrive):
            cdf = d.cdf(self.params.dt_ms)
            return lambda t: torch.from_numpy(d.values(t, n, self.params.dt_ms, cdf)).to(dtype)
        if isinstance(d, ConstantDrive):
            c = self.drive_values
            return lambda t: c
        vals = self.drive_values
        return lambda t: vals[t]

    # -- model folders (neuro.io) ---------------------------------------------------------------
    def get_config(self) -> dict:
        d = self.drive
        if d is None:
            drive = None
        elif isinstance(d, PoissonDrive):
            drive = {"kind": "poisson", **d.to_dict()}
        else:
            drive = {"kind": "constant" if isinstance(d, ConstantDrive) else "given",
                     "shape": list(self.drive_values.shape)}
        return {"synapses": self.synapses.get_config(), "params": self.params.to_dict(), "drive": drive}

    @classmethod
    def from_config(cls, config: dict) -> "RecurrentNetwork":
        from ..synapses.linear import reject_unknown

        c = dict(config)
        syn = SparseLinear.from_config(c.pop("synapses"))
        params = LIFParams.from_dict(c.pop("params"))
        d = c.pop("drive", None)
        reject_unknown("RecurrentNetwork", c)
        if d is not None:
            d = dict(d)
            kind = d.pop("kind", None)
            if kind == "poisson":
                d = PoissonDrive.from_dict(d)
            elif kind in ("constant", "given"):
                d = (ConstantDrive if kind == "constant" else GivenDrive)(np.zeros(d["shape"]))
            else:
                raise ParameterError("RecurrentNetwork", "drive.kind", kind, "'poisson', 'constant' or 'given'")
        return cls(syn, params, d)

    def check_loaded(self) -> None:
        self.synapses.check_loaded()
        if isinstance(self.drive, (ConstantDrive, GivenDrive)):  # keep the record in step with the loaded buffer
            self.drive = type(self.drive)(self.drive_values.numpy())

    @torch.no_grad()
    def run(self, steps: int, engine: str = "auto", record_v: bool = False, progress: bool = False) -> RunResult:
        """Simulate ``steps`` steps from ``v0``. ``engine``: 'torch', 'native' or 'auto' (native when built)."""
        if not isinstance(steps, int) or steps < 1:
            raise ParameterError("RecurrentNetwork.run", "steps", steps, "an integer >= 1")
        if engine == "auto":
            engine = "native" if "native" in ENGINES and self.v0.dtype == torch.float64 else "torch"
        if engine not in ENGINES:
            raise ParameterError("RecurrentNetwork.run", "engine", engine, "one of " + ", ".join(["auto", *ENGINES]))
        if isinstance(self.drive, GivenDrive) and self.drive_values.shape[0] < steps:
            raise ShapeError("RecurrentNetwork", f"GivenDrive has {self.drive_values.shape[0]} steps, run asks for {steps}")
        res = ENGINES[engine](self, steps, record_v, progress)
        res.engine = engine
        return res


def _run_torch(net: RecurrentNetwork, steps: int, record_v: bool, progress: bool) -> RunResult:
    """The reference engine: lif_step and the synapses' event path, one step at a time."""
    from tqdm.auto import tqdm

    drive = net._drive_fn(steps)
    state = LIFState(net.v0.clone())
    s = torch.zeros(1, net.n, dtype=net.v0.dtype)
    surrogate = ATan()
    idx, offsets, trace = [], [0], []
    for t in tqdm(range(steps), disable=not progress, desc="simulate", unit="step"):
        x = drive(t) + net.synapses(s)[0]
        s1, state = lif_step(x, state, net.params, surrogate)
        active = s1.nonzero().squeeze(1)
        idx.append(active)
        offsets.append(offsets[-1] + active.numel())
        s = s1.unsqueeze(0)
        if record_v:
            trace.append(state.v.clone())
    indices = torch.cat(idx) if idx else torch.zeros(0, dtype=torch.int64)
    ev = EventTensor(indices, torch.tensor(offsets, dtype=torch.int64), (net.n,), dtype=net.v0.dtype)
    counts = np.bincount(indices.numpy(), minlength=net.n).astype(np.int64)
    return RunResult(ev, counts, state.v, torch.stack(trace) if record_v else None)


# engine name -> fn(net, steps, record_v, progress) -> RunResult; 'native' is added by neuro._native
ENGINES: dict[str, Callable] = {"torch": _run_torch}


def register_engine(name: str, fn: Callable) -> None:
    ENGINES[name] = fn


W2 = dict(n=10_000, p=0.01, n_exc=8_000, w_exc=0.05, g_inh=5.0, tau_ms=20.0, dt_ms=1.0,
          n_sources=100, rate_hz=12.0, w_ext=0.05, seed=1234)


def w2_network(n: int = W2["n"], p: float = W2["p"], seed: int = W2["seed"],
               dtype: torch.dtype = torch.float64, drive: Drive | str = "poisson") -> RecurrentNetwork:
    """Benchmark W2 (scaled by ``n``): 80 % excitatory, random connectivity without autapses,
    v0 ~ U[0, 1) from ``seed + 1``. ``drive='poisson'`` uses the W2 Poisson drive with ``seed``."""
    n_exc = int(round(n * W2["n_exc"] / W2["n"]))
    w_inh = -W2["g_inh"] * W2["w_exc"]
    syn = SparseLinear.random(n, n, p, weight=lambda pre: np.where(pre < n_exc, W2["w_exc"], w_inh),
                              seed=seed, autapses=False, switch_density=1.0).to(dtype)
    params = LIFParams(tau_ms=W2["tau_ms"], dt_ms=W2["dt_ms"], integration="exact", decay_input=False,
                       v_th=1.0, v_reset=0.0)
    if drive == "poisson":
        drive = PoissonDrive(W2["n_sources"], W2["rate_hz"], W2["w_ext"], seed)
    v0 = np.random.default_rng(seed + 1).random(n)
    return RecurrentNetwork(syn, params, drive, v0)


def _register_native() -> None:
    """Add the compiled whole-run engine when the extension was built (see :mod:`neuro._native`)."""
    try:
        from .. import _native
    except ImportError:  # pragma: no cover - depends on the build
        return
    if _native.available:
        register_engine("native", _native.recurrent_engine)


_register_native()
