"""Peer implementations of the benchmark workloads: other libraries and hand-written baselines.

Each peer is written the way that library's documentation sets the model up, with the workload's
parameters mapped onto the library's own (the mapping is stated next to each). Registries:
:data:`W1_PEERS`, :data:`W2_PEERS`, :data:`W3_PEERS` (name -> :class:`~neuro.bench.common.Peer`).

Run as a module (``python -m neuro.bench.peers brian2-standalone PROBLEM.npz OPTIONS.json``) it is the
worker that runs Brian2's C++ standalone build in a fresh process (Brian2's standalone device is
process-global state), printing one JSON line.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from .common import Peer, Timing, repeat


# ================================================================================ W1
@dataclass
class W1Run:
    """A W1 implementation: ``run(x [T, B, 784]) -> (output spikes [T, B, 10], hidden spikes
    [T, B, 1000])`` and the tensors that receive gradients (empty: forward only)."""

    run: Callable
    params: list
    surrogate: str


def _grad_copies(*tensors):
    return [t.detach().clone().requires_grad_(True) for t in tensors]


def w1_torch(x, w1, b1, w2, b2) -> W1Run:
    """Plain PyTorch: each Linear over all T*B rows at once, then a Python loop over T.
    Spike: Heaviside(v - 1) forward, sigmoid(4 u) derivative backward (SpikingJelly's default)."""
    import torch
    import torch.nn.functional as F

    class HeavisideSigmoid(torch.autograd.Function):
        @staticmethod
        def forward(ctx, u):
            ctx.save_for_backward(u)
            return (u >= 0).to(u.dtype)

        @staticmethod
        def backward(ctx, grad):
            (u,) = ctx.saved_tensors
            sig = torch.sigmoid(4.0 * u)
            return grad * (4.0 * sig * (1.0 - sig))

    def lif(current):  # [T, B, n] -> spikes [T, B, n]
        v = torch.zeros_like(current[0])
        spikes = []
        for i_t in current.unbind(0):
            v = 0.5 * v + i_t
            s = HeavisideSigmoid.apply(v - 1.0)
            v = v * (1.0 - s)  # hard reset to 0
            spikes.append(s)
        return torch.stack(spikes)

    p = _grad_copies(w1, b1, w2, b2)

    def run(inp):
        hidden = lif(F.linear(inp, p[0], p[1]))
        return lif(F.linear(hidden, p[2], p[3])), hidden

    return W1Run(run, p, "sigmoid(alpha=4)")


def w1_spikingjelly(x, w1, b1, w2, b2) -> W1Run:
    """SpikingJelly 2.0 multi-step: layer.Linear + neuron.LIFNode(tau=2, decay_input=False),
    i.e. H = v - v/tau + X = 0.5 v + X; hard reset to 0; default surrogate Sigmoid(alpha=4)."""
    import torch
    from spikingjelly.activation_based import functional, layer, neuron

    def node():
        return neuron.LIFNode(tau=2.0, decay_input=False, v_threshold=1.0, v_reset=0.0, step_mode="m")

    fc1 = layer.Linear(w1.shape[1], w1.shape[0], step_mode="m")
    fc2 = layer.Linear(w2.shape[1], w2.shape[0], step_mode="m")
    lif1, lif2 = node(), node()
    with torch.no_grad():
        fc1.weight.copy_(w1), fc1.bias.copy_(b1), fc2.weight.copy_(w2), fc2.bias.copy_(b2)
    net = torch.nn.ModuleList([fc1, lif1, fc2, lif2])

    def run(inp):
        functional.reset_net(net)
        hidden = lif1(fc1(inp))
        return lif2(fc2(hidden)), hidden

    return W1Run(run, list(net.parameters()), "sigmoid(alpha=4) (default)")


def w1_snntorch(x, w1, b1, w2, b2) -> W1Run:
    """snnTorch Leaky(beta=0.5, reset_mechanism='zero', reset_delay=False): v <- 0.5 v + I, reset to
    0 in the step that fires (its defaults subtract the threshold one step later). Structured like the
    others: each nn.Linear over all steps at once, then the neuron loop. Default surrogate ATan."""
    import snntorch as snn
    import torch

    fc1 = torch.nn.Linear(w1.shape[1], w1.shape[0])
    fc2 = torch.nn.Linear(w2.shape[1], w2.shape[0])
    with torch.no_grad():
        fc1.weight.copy_(w1), fc1.bias.copy_(b1), fc2.weight.copy_(w2), fc2.bias.copy_(b2)
    lif1 = snn.Leaky(beta=0.5, threshold=1.0, reset_mechanism="zero", reset_delay=False)
    lif2 = snn.Leaky(beta=0.5, threshold=1.0, reset_mechanism="zero", reset_delay=False)

    def loop(cell, current):
        mem = torch.zeros_like(current[0])
        spikes = []
        for i_t in current.unbind(0):
            spk, mem = cell(i_t, mem)
            spikes.append(spk)
        return torch.stack(spikes)

    def run(inp):
        hidden = loop(lif1, fc1(inp))
        return loop(lif2, fc2(hidden)), hidden

    return W1Run(run, [*fc1.parameters(), *fc2.parameters()], "atan(alpha=2) (default)")


def w1_norse(x, w1, b1, w2, b2) -> W1Run:
    """Norse LIF (multi-step module). Norse integrates v += dt * tau_mem_inv * (v_leak - v + i):
    with dt = 1 ms and tau_mem_inv = 500/s that is v <- 0.5 v + 0.5 i, so the weights are doubled;
    tau_syn_inv = 1000/s empties the synaptic current every step. Default surrogate SuperSpike."""
    import norse.torch as nt
    import torch

    fc1 = torch.nn.Linear(w1.shape[1], w1.shape[0])
    fc2 = torch.nn.Linear(w2.shape[1], w2.shape[0])
    with torch.no_grad():
        fc1.weight.copy_(2 * w1), fc1.bias.copy_(2 * b1), fc2.weight.copy_(2 * w2), fc2.bias.copy_(2 * b2)
    p = nt.LIFParameters(tau_syn_inv=torch.tensor(1000.0), tau_mem_inv=torch.tensor(500.0),
                         v_th=torch.tensor(1.0), v_reset=torch.tensor(0.0))
    lif1, lif2 = nt.LIF(p), nt.LIF(p)

    def run(inp):
        hidden, _ = lif1(fc1(inp))
        out, _ = lif2(fc2(hidden))
        return out, hidden

    return W1Run(run, [*fc1.parameters(), *fc2.parameters()], "superspike(alpha=100) (default)")


def w1_matmul(x, w1, b1, w2, b2) -> W1Run:
    """The two dense matmuls alone ([T*B, 784] x [784, 1000] and [T*B, 1000] x [1000, 10]), on
    inputs of the right shape: what any dense implementation pays at least."""
    import torch

    hidden = (torch.rand(x.shape[0], x.shape[1], w1.shape[0], generator=torch.Generator().manual_seed(1))
              < 0.09).to(x.dtype)
    w1t, w2t = w1.t().contiguous(), w2.t().contiguous()

    def run(inp):
        torch.mm(inp.reshape(-1, inp.shape[-1]), w1t)
        torch.mm(hidden.reshape(-1, hidden.shape[-1]), w2t)
        return None, None

    return W1Run(run, [], "-")


W1_PEERS = {
    "torch": Peer("torch", ("torch",), w1_torch, "plain PyTorch loop (hand-written baseline)"),
    "spikingjelly": Peer("spikingjelly", ("spikingjelly.activation_based.neuron",), w1_spikingjelly,
                         "SpikingJelly multi-step LIFNode + layer.Linear"),
    "snntorch": Peer("snntorch", ("snntorch",), w1_snntorch, "snnTorch Leaky"),
    "norse": Peer("norse", ("norse.torch",), w1_norse, "Norse LIF (weights doubled, see docstring)"),
    "matmul": Peer("matmul", ("torch",), w1_matmul, "matmul ceiling: the two dense matmuls alone",
                   ceiling=True),
}


# ================================================================================ W2
@dataclass
class W2Problem:
    """Everything a W2 implementation needs, as plain arrays (CSR by presynaptic neuron)."""

    indptr: np.ndarray   # int64 [N + 1]
    post: np.ndarray     # int64 [nnz]
    w: np.ndarray        # float64 [nnz]
    v0: np.ndarray       # float64 [N]
    tau_ms: float
    dt_ms: float
    steps: int
    n_sources: int
    rate_hz: float
    w_ext: float
    seed: int
    threads: int

    @property
    def n(self) -> int:
        return len(self.v0)

    @property
    def decay(self) -> float:
        return math.exp(-self.dt_ms / self.tau_ms)

    def save(self, path: str) -> None:
        np.savez(path, **{k: v for k, v in asdict(self).items()})

    @classmethod
    def load(cls, path: str) -> "W2Problem":
        z = np.load(path)
        kw = {k: z[k] for k in z.files}
        for k in ("tau_ms", "dt_ms", "rate_hz", "w_ext"):
            kw[k] = float(kw[k])
        for k in ("steps", "n_sources", "seed", "threads"):
            kw[k] = int(kw[k])
        return cls(**kw)


@dataclass
class W2Measure:
    timing: Timing
    counts: np.ndarray   # int64 [N], spikes per neuron of the last timed run
    extra: dict


def _binomial_cdf_table(n: int, p: float) -> list[float]:
    """P(K <= k) for K ~ Binomial(n, p), up to where it is 1 in float64."""
    out, acc = [], 0.0
    for k in range(n + 1):
        acc += math.comb(n, k) * p ** k * (1 - p) ** (n - k)
        out.append(acc)
        if acc >= 1.0 - 1e-15:
            break
    return out


def _torch_poisson_drive(prob: W2Problem, dtype):
    """(restart(), draw() -> [N]) : Binomial(n_sources, rate*dt) kicks of w_ext per neuron and step,
    drawn online with torch's generator by inverting the CDF (torch.bucketize)."""
    import torch

    cdf = torch.tensor(_binomial_cdf_table(prob.n_sources, prob.rate_hz * prob.dt_ms * 1e-3), dtype=torch.float64)
    u = torch.empty(prob.n, dtype=torch.float64)
    state = {}

    def restart():
        state["gen"] = torch.Generator().manual_seed(prob.seed)

    def draw():
        u.uniform_(generator=state["gen"])
        return torch.bucketize(u, cdf, right=True).to(dtype).mul_(prob.w_ext)

    return restart, draw


def w2_torch(prob: W2Problem, reps: int, warmup: int, bar=None) -> W2Measure:
    """Hand-written event-driven PyTorch loop: the synapses of the neurons that fired are gathered
    from the CSR arrays and scattered with ``index_add_``; float64 like neuro's network."""
    import torch

    dtype = torch.float64
    indptr = torch.from_numpy(prob.indptr)
    post = torch.from_numpy(prob.post)
    w = torch.from_numpy(prob.w).to(dtype)
    v0 = torch.from_numpy(prob.v0).to(dtype)
    decay = prob.decay
    restart, draw = _torch_poisson_drive(prob, dtype)

    def run():
        restart()
        v = v0.clone()
        acc = torch.zeros(prob.n, dtype=dtype)
        fired_idx = torch.zeros(0, dtype=torch.int64)
        counts = torch.zeros(prob.n, dtype=torch.int64)
        with torch.no_grad():
            for _ in range(prob.steps):
                acc.zero_()
                if fired_idx.numel():
                    first = indptr[fired_idx]
                    deg = indptr[fired_idx + 1] - first
                    total = int(deg.sum())
                    # synapse positions of all fired rows, concatenated
                    shift = torch.repeat_interleave(first - (deg.cumsum(0) - deg), deg, output_size=total)
                    syn = shift + torch.arange(total)
                    acc.index_add_(0, post[syn], w[syn])
                v.mul_(decay).add_(draw()).add_(acc)
                fired = v >= 1.0
                v.masked_fill_(fired, 0.0)
                counts += fired
                fired_idx = fired.nonzero().squeeze(1)
        return counts.numpy()

    timing, counts = repeat(run, reps, warmup, bar)
    return W2Measure(timing, counts, {"dtype": "float64"})


def w2_spikingjelly(prob: W2Problem, reps: int, warmup: int, bar=None) -> W2Measure:
    """SpikingJelly single-step LIFNode with a dense nn.Linear(N, N) recurrent layer (float32): what
    a dense library does with this network. decay_input=False and tau = 1 / (1 - d) give
    H = d v + X."""
    import torch
    from spikingjelly.activation_based import functional, neuron

    dtype = torch.float32
    n = prob.n
    lin = torch.nn.Linear(n, n, bias=False)
    with torch.no_grad():
        dense = torch.zeros(n, n, dtype=dtype)  # [post, pre]
        pre = np.repeat(np.arange(n), np.diff(prob.indptr))
        dense[torch.from_numpy(prob.post), torch.from_numpy(pre)] = torch.from_numpy(prob.w).to(dtype)
        lin.weight.copy_(dense)
        del dense
    node = neuron.LIFNode(tau=1.0 / (1.0 - prob.decay), decay_input=False, v_threshold=1.0, v_reset=0.0,
                          step_mode="s")
    v0 = torch.from_numpy(prob.v0).to(dtype)
    restart, draw = _torch_poisson_drive(prob, dtype)

    def run():
        restart()
        functional.reset_net(node)
        node.v = v0.clone()
        s = torch.zeros(n, dtype=dtype)
        counts = torch.zeros(n, dtype=torch.int64)
        with torch.no_grad():
            for _ in range(prob.steps):
                s = node(draw() + lin(s))
                counts += s.to(torch.int64)
        return counts.numpy()

    timing, counts = repeat(run, reps, warmup, bar)
    return W2Measure(timing, counts, {"dtype": "float32", "weights": "dense [N, N]"})


def _brian2_w2_network(b2, prob: W2Problem):
    """The W2 network in Brian2 (float64, method='exact'), its own PoissonInput as the drive.
    Schedule: decay (groups), synaptic and Poisson input (synapses), threshold, reset; with zero
    synaptic delay a spike reaches its targets in the next step, as in neuro."""
    b2.defaultclock.dt = prob.dt_ms * b2.ms
    G = b2.NeuronGroup(prob.n, "dv/dt = -v / tau : 1", threshold="v >= 1.0", reset="v = 0.0",
                       method="exact", namespace={"tau": prob.tau_ms * b2.ms})
    G.v = prob.v0
    S = b2.Synapses(G, G, "w : 1", on_pre="v_post += w")
    S.connect(i=np.repeat(np.arange(prob.n), np.diff(prob.indptr)), j=prob.post)
    S.w = prob.w
    P = b2.PoissonInput(G, "v", N=prob.n_sources, rate=prob.rate_hz * b2.Hz, weight=prob.w_ext)
    M = b2.SpikeMonitor(G, record=False)
    net = b2.Network(G, S, P, M)
    net.schedule = ["start", "groups", "synapses", "thresholds", "resets", "end"]
    return net, M


def w2_brian2_cython(prob: W2Problem, reps: int, warmup: int, bar=None) -> W2Measure:
    """Brian2 runtime mode with the Cython code generation target (single thread). The first run
    generates and compiles code; it is reported apart and never timed (at least one warmup run)."""
    import brian2 as b2

    old_target = b2.prefs.codegen.target
    b2.prefs.codegen.target = "cython"
    try:
        b2.start_scope()
        net, M = _brian2_w2_network(b2, prob)
        net.store("init")
        duration = prob.steps * prob.dt_ms * b2.ms
        first = {}

        def run():
            net.restore("init")
            b2.seed(prob.seed)
            t0 = time.perf_counter()
            net.run(duration, report=None)
            first.setdefault("s", time.perf_counter() - t0)
            return np.array(M.count[:], dtype=np.int64)

        timing, counts = repeat(run, reps, max(warmup, 1), bar)
    finally:
        b2.prefs.codegen.target = old_target
    return W2Measure(timing, counts, {"dtype": "float64", "first_run_incl_codegen_s": first["s"]})


def w2_brian2_cpp(prob: W2Problem, reps: int, warmup: int, bar=None) -> W2Measure:
    """Brian2 C++ standalone with ``prob.threads`` OpenMP threads, in a fresh process (the standalone
    device is process-global). Code generation and compilation are timed and reported apart; a
    timed run is one execution of the compiled binary (its wall time, process start included)."""
    import neuro

    with tempfile.TemporaryDirectory(prefix="neuro-bench-brian2-") as tmp:
        problem = os.path.join(tmp, "problem.npz")
        prob.save(problem)
        opts = {"reps": reps, "warmup": warmup, "build_dir": os.path.join(tmp, "standalone")}
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.abspath(neuro.__file__)))
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        proc = subprocess.run([sys.executable, "-m", "neuro.bench.peers", "brian2-standalone", problem,
                               json.dumps(opts)], capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"Brian2 standalone worker failed (exit {proc.returncode}): {tail}")
    res = json.loads(lines[-1])
    if bar is not None:
        bar.update(reps + warmup)
    extra = {k: res[k] for k in ("dtype", "openmp_threads", "setup_s", "compile_s", "main_loop_median_s")}
    return W2Measure(Timing(res["times_s"]), np.asarray(res["counts"], dtype=np.int64), extra)


def _brian2_standalone_worker(problem_path: str, opts: dict) -> dict:
    import brian2 as b2

    prob = W2Problem.load(problem_path)
    t0 = time.perf_counter()
    b2.set_device("cpp_standalone", build_on_run=False, directory=opts["build_dir"])
    b2.prefs.devices.cpp_standalone.openmp_threads = prob.threads
    net, M = _brian2_w2_network(b2, prob)
    b2.seed(prob.seed)
    net.run(prob.steps * prob.dt_ms * b2.ms, report=None)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    b2.device.build(directory=opts["build_dir"], compile=True, run=False)
    compile_s = time.perf_counter() - t0
    times, loops = [], []
    for r in range(opts["warmup"] + opts["reps"]):
        t0 = time.perf_counter()
        b2.device.run(directory=opts["build_dir"], with_output=False)
        dt = time.perf_counter() - t0
        if r >= opts["warmup"]:
            times.append(dt)
            loops.append(float(b2.device._last_run_time))
    counts = np.array(M.count[:], dtype=np.int64)
    return {"times_s": times, "counts": counts.tolist(), "dtype": "float64", "openmp_threads": prob.threads,
            "setup_s": setup, "compile_s": compile_s, "main_loop_median_s": float(np.median(loops))}


W2_PEERS = {
    "brian2_cpp": Peer("brian2_cpp", ("brian2",), w2_brian2_cpp,
                       "Brian2 C++ standalone, OpenMP threads = --threads (compile time apart)"),
    "brian2_cython": Peer("brian2_cython", ("brian2", "Cython"), w2_brian2_cython,
                          "Brian2 runtime, Cython target (1 thread)"),
    "torch": Peer("torch", ("torch",), w2_torch, "hand-written PyTorch event loop (index_add_)"),
    "spikingjelly": Peer("spikingjelly", ("spikingjelly.activation_based.neuron",), w2_spikingjelly,
                         "SpikingJelly dense nn.Linear(N, N) + LIFNode (about 15 s a run; only when named)",
                         default=False),
}


# ================================================================================ W3
@dataclass
class W3Measure:
    timing: Timing
    spike_steps: list      # per current: int64 array of the steps k whose update crossed threshold
    extra: dict


def w3_brian2(currents, tau_ms: float, dt_ms: float, duration_ms: float, reps: int, warmup: int,
              bar=None) -> W3Measure:
    """A live Brian2 run (runtime, numpy target, float64): dv/dt = (I - v)/tau, method='exact',
    threshold v > 1, reset v = 0, v(0) = 0, one neuron per current. Brian2 stamps a spike with the
    start of the step whose update crossed threshold, t = k dt; we return k."""
    import brian2 as b2

    old_target = b2.prefs.codegen.target
    b2.prefs.codegen.target = "numpy"
    try:
        b2.start_scope()
        b2.defaultclock.dt = dt_ms * b2.ms
        G = b2.NeuronGroup(len(currents), "dv/dt = (I - v) / tau : 1\nI : 1 (constant)", threshold="v > 1.0",
                           reset="v = 0.0", method="exact", namespace={"tau": tau_ms * b2.ms})
        G.I = np.asarray(currents, dtype=np.float64)
        G.v = 0.0
        M = b2.SpikeMonitor(G)
        net = b2.Network(G, M)
        net.store("init")
        first = {}

        def run():
            net.restore("init")
            t0 = time.perf_counter()
            net.run(duration_ms * b2.ms, report=None)
            first.setdefault("s", time.perf_counter() - t0)
            idx = np.array(M.i[:], dtype=np.int64)
            steps = np.rint(np.array(M.t_[:]) / (dt_ms * 1e-3)).astype(np.int64)
            return [steps[idx == k] for k in range(len(currents))]

        timing, steps = repeat(run, reps, max(warmup, 1), bar)
    finally:
        b2.prefs.codegen.target = old_target
    return W3Measure(timing, steps, {"target": "numpy", "method": "exact",
                                     "first_run_incl_codegen_s": first["s"]})


W3_PEERS = {
    "brian2": Peer("brian2", ("brian2",), w3_brian2, "Brian2 runtime (numpy target), method='exact'"),
}


def _main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "brian2-standalone":
        print(json.dumps(_brian2_standalone_worker(argv[1], json.loads(argv[2]))), flush=True)
        return 0
    print("usage: python -m neuro.bench.peers brian2-standalone PROBLEM.npz OPTIONS_JSON", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
