r"""Tasks and networks for learnable delays (:class:`~neuro.synapses.delay.DelayLinear`).

* **Moving bars and the motif detector.** :func:`moving_bars` makes event streams of a one-pixel-wide
  bar crossing a line of ``pixels`` sensors, left or right, at 1 or 2 pixels per step (4 classes),
  starting at a random step, with background noise spikes. :class:`MotifDetector` is a single
  :class:`DelayLinear` layer (one output per class) read out by the peak of a leaky integrator,

  .. math:: u_c[t] = \beta u_c[t-1] + y_c[t], \qquad \text{logit}_c = \max_t u_c[t]

  A bar that reaches pixel :math:`i` at step :math:`t_0 + i / v` arrives in coincidence at output
  :math:`c` when :math:`d_{ci} = \text{const} - i / v`: learning the delays turns each output into a
  detector of one spatio-temporal motif (the 'learning heterogeneous delays for motion detection'
  seed; cf. Hammouamri et al., ICLR 2024, REFERENCE §2). Without delays, left and right bars have
  the same spike count at every pixel.
* **Digits as spike trains.** :func:`digit_spike_trains` turns the 8x8 scikit-learn digits into 8
  input channels (rows) over time, one column after the other, each column a window of
  ``steps_per_column`` steps, with a latency code (brighter pixels spike earlier; pixels below
  ``threshold`` stay silent). The class lives in the order of the columns.
* **Does the delay matter?** :func:`compare_delays` trains the same network three ways at (about)
  equal trainable parameter count: ``none`` (all delays 0), ``random`` (fixed random integer delays)
  and ``learned`` (DCLS: Gaussian taps, sigma schedule, positions with their own learning rate, then
  :meth:`~DelayLinear.finalize`), over several seeds (each seed draws new data, new initial weights
  and, for ``random``, new delays), and reports the per-seed and mean test accuracies, measured
  after rounding with the event-driven inference path. ``learned`` has a position per synapse as
  well as a weight, so ``none`` and ``random`` get more units to match its count. The tasks
  (:data:`COMPARISONS`):

  - ``motif`` (default): moving bars with 5 % background noise; the learned net is
    :class:`MotifDetector` (one detector per class), ``none``/``random`` get two detectors per class
    (logit = the larger of the two): 104 trainable parameters against the learned net's 100.
  - ``digits``: :class:`DelayNet` (DelayLinear -> LIF -> Linear, read out by the mean over time) on
    the digit spike trains, ``none``/``random`` with a wider hidden layer (:func:`matched_hidden`).
    Here the class is mostly in which rows spike, not when, and the three stay within about a
    point of each other; ``motif`` is the task where the class lives in spike timing alone.

Shape conventions: event streams x [T, B, channels], labels [B].
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import ParameterError
from ..core.loop import reset_net
from ..neurons.lif import LIF
from ..synapses.delay import DelayLinear, SigmaSchedule
from ..synapses.linear import Linear

MOTIF_CLASSES = ("right, 1 px/step", "right, 2 px/step", "left, 1 px/step", "left, 2 px/step")


# ------------------------------------------------------------------------------------ data
def moving_bars(n: int, pixels: int = 12, steps: int = 30, noise: float = 0.02, seed: int = 0):
    """Synthetic moving-bar event streams, 4 classes (:data:`MOTIF_CLASSES`).

    Returns (x float32 [steps, n, pixels] in {0, 1}, labels int64 [n]).
    """
    for name, v, lo in (("n", n, 1), ("pixels", pixels, 2), ("steps", steps, pixels)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ParameterError("moving_bars", name, v, f"an integer >= {lo}")
    if not (isinstance(noise, (int, float)) and 0 <= noise < 1):
        raise ParameterError("moving_bars", "noise", noise, "in [0, 1)")
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)                      # [n]
    x = (torch.rand(steps, n, pixels, generator=g) < noise).float()       # [T, n, P] background
    speed = torch.where(labels % 2 == 0, 1, 2)                           # [n]
    span = (pixels + speed - 1) // speed                                 # steps to cross
    t0 = (torch.rand(n, generator=g) * (steps - span + 1).float()).long()  # [n]
    p = torch.arange(pixels)                                             # [P]
    t_hit = t0[:, None] + p[None, :] // speed[:, None]                   # [n, P] step pixel p is hit
    left = labels >= 2
    pix = torch.where(left[:, None], pixels - 1 - p[None, :], p[None, :])  # [n, P]
    rows = torch.arange(n)[:, None].expand(n, pixels)
    x[t_hit, rows, pix] = 1.0
    return x, labels


def digit_spike_trains(steps_per_column: int = 4, threshold: float = 4.0):
    """scikit-learn 8x8 digits as spike trains, column by column (latency code within each column).

    Returns (x float32 [8 * steps_per_column, 1797, 8], labels int64 [1797]).
    """
    from sklearn.datasets import load_digits

    if not isinstance(steps_per_column, int) or steps_per_column < 1:
        raise ParameterError("digit_spike_trains", "steps_per_column", steps_per_column, "an integer >= 1")
    d = load_digits()
    img = torch.tensor(d.images, dtype=torch.float32)                     # [N, 8 rows, 8 cols], 0..16
    N = img.shape[0]
    S = steps_per_column
    x = torch.zeros(8 * S, N, 8)                                         # [T, N, rows]
    lat = ((1 - img / 16.0) * (S - 1)).round().long()                     # [N, rows, cols] step within window
    n_i, r_i, c_i = (img >= threshold).nonzero(as_tuple=True)
    x[c_i * S + lat[n_i, r_i, c_i], n_i, r_i] = 1.0
    return x, torch.tensor(d.target, dtype=torch.int64)


def split(x: torch.Tensor, y: torch.Tensor, test_fraction: float = 0.2, seed: int = 0):
    """Shuffled train/test split along the batch axis of x [T, N, C]."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(y.numel(), generator=g)
    k = int(round(y.numel() * (1 - test_fraction)))
    tr, te = perm[:k], perm[k:]
    return (x[:, tr], y[tr]), (x[:, te], y[te])


# ------------------------------------------------------------------------------------ networks
def leaky_peak(y: torch.Tensor, beta: float) -> torch.Tensor:
    """max_t of u[t] = beta u[t-1] + y[t]. Shape: [T, B, C] -> [B, C]."""
    u = torch.zeros_like(y[0])
    peak = None
    for yt in y.unbind(0):
        u = beta * u + yt
        peak = u if peak is None else torch.maximum(peak, u)
    return peak


class MotifDetector(nn.Module):
    """Single delayed layer, ``detectors`` outputs per motif, read out by the peak of a leaky
    integrator (a class's logit is the largest peak of its detectors).

    Shape: x [T, B, pixels] -> logits [B, classes].
    """

    def __init__(self, pixels: int = 12, classes: int = 4, max_delay: Optional[int] = None, beta: float = 0.5,
                 init_delays: str = "uniform", detectors: int = 1):
        super().__init__()
        if not isinstance(detectors, int) or isinstance(detectors, bool) or detectors < 1:
            raise ParameterError("MotifDetector", "detectors", detectors, "an integer >= 1")
        self.classes, self.detectors = classes, detectors
        self.delay = DelayLinear(pixels, classes * detectors, pixels - 1 if max_delay is None else max_delay,
                                 bias=True, init_delays=init_delays)
        self.beta = beta

    def delay_layers(self) -> list:
        return [self.delay]

    def forward(self, x):
        peak = leaky_peak(self.delay(x), self.beta)                          # [B, classes * detectors]
        return peak.view(-1, self.classes, self.detectors).amax(-1)         # [B, classes]


class DelayNet(nn.Module):
    """DelayLinear(in, hidden) -> LIF -> Linear(hidden, out), logits = mean over time.

    Shape: x [T, B, in] -> logits [B, out].
    """

    def __init__(self, n_in: int, hidden: int, n_out: int, max_delay: int, init_delays: str = "uniform",
                 tau_ms: float = 2.0):
        super().__init__()
        self.delay = DelayLinear(n_in, hidden, max_delay, bias=True, init_delays=init_delays)
        with torch.no_grad():
            self.delay.weight.mul_(3.0)   # enough drive for sparse inputs to make hidden spikes
        self.lif = LIF(tau_ms=tau_ms, v_reset=0.0, step_mode="m")
        self.readout = Linear(hidden, n_out)

    def delay_layers(self) -> list:
        return [self.delay]

    def forward(self, x):
        reset_net(self)
        s = self.lif(self.delay(x))                       # [T, B, hidden]
        return self.readout(s).mean(0)                    # [B, out]


def trainable_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ------------------------------------------------------------------------------------ training
@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-2                # weights
    lr_positions: float = 1.0       # positions (DCLS: 100x the weights')
    learn_delays: bool = True
    seed: int = 0
    progress: bool = True
    desc: str = "train"


@dataclass
class TrainResult:
    train_accuracy: float
    test_accuracy: float
    test_accuracy_unrounded: Optional[float] = None   # learned delays: Gaussian taps at the last sigma
    losses: list = field(default_factory=list)
    sigmas: list = field(default_factory=list)
    wall_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Fraction correct; finalized delay layers run event-driven here (no_grad)."""
    model.eval()
    correct = 0
    for k in range(0, y.numel(), batch_size):
        correct += int((model(x[:, k:k + batch_size]).argmax(-1) == y[k:k + batch_size]).sum())
    model.train()
    return correct / max(y.numel(), 1)


def train(model: nn.Module, train_data, test_data, cfg: TrainConfig) -> TrainResult:
    """Adam with two groups (weights; delay positions at their own rate), sigma schedule per epoch,
    positions clamped after each step; delays finalized (rounded) before measuring accuracy."""
    import time

    from tqdm import tqdm

    torch.manual_seed(cfg.seed)
    (xtr, ytr), (xte, yte) = train_data, test_data
    layers = model.delay_layers()
    pos = [p for l in layers for p in l.position_parameters()]
    pos_ids = {id(p) for p in pos}
    if not cfg.learn_delays:
        for l in layers:
            l.finalize()
    weights = [p for p in model.parameters() if id(p) not in pos_ids and p.requires_grad]
    groups = [{"params": weights, "lr": cfg.lr}]
    if cfg.learn_delays:
        groups.append({"params": pos, "lr": cfg.lr_positions})
    opt = torch.optim.Adam(groups)
    schedules = [SigmaSchedule(l.max_delay, cfg.epochs) for l in layers]
    g = torch.Generator().manual_seed(cfg.seed)
    res = TrainResult(0.0, 0.0)
    t0 = time.perf_counter()
    bar = tqdm(range(cfg.epochs), desc=cfg.desc, disable=not cfg.progress, leave=False)
    for epoch in bar:
        if cfg.learn_delays:
            for l, s in zip(layers, schedules):
                l.sigma = s(epoch)
            res.sigmas.append(layers[0].sigma)
        perm = torch.randperm(ytr.numel(), generator=g)
        total, n = 0.0, 0
        for k in range(0, ytr.numel(), cfg.batch_size):
            idx = perm[k:k + cfg.batch_size]
            loss = F.cross_entropy(model(xtr[:, idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if cfg.learn_delays:
                for l in layers:
                    l.clamp_positions()
            total += loss.item() * idx.numel()
            n += idx.numel()
        res.losses.append(total / n)
        bar.set_postfix(loss=f"{total / n:.3f}")
    if cfg.learn_delays:
        res.test_accuracy_unrounded = accuracy(model, xte, yte)
    for l in layers:
        if not l.finalized:
            l.finalize()
    res.train_accuracy = accuracy(model, xtr, ytr)
    res.test_accuracy = accuracy(model, xte, yte)
    res.wall_s = time.perf_counter() - t0
    return res


# ------------------------------------------------------------------------------------ experiments
def run_motif(epochs: int = 80, n_train: int = 1024, n_test: int = 512, pixels: int = 12, steps: int = 30,
              noise: float = 0.02, seed: int = 0, progress: bool = True):
    """Train the motif detector on moving bars; returns (model, result dict)."""
    torch.manual_seed(seed)
    xtr, ytr = moving_bars(n_train, pixels, steps, noise, seed=seed)
    xte, yte = moving_bars(n_test, pixels, steps, noise, seed=seed + 1)
    model = MotifDetector(pixels, 4)
    res = train(model, (xtr, ytr), (xte, yte),
                TrainConfig(epochs=epochs, lr=1e-2, lr_positions=1.0, seed=seed, progress=progress, desc="motif"))
    return model, {"task": "motif", "pixels": pixels, "steps": steps, "noise": noise, "n_train": n_train,
                   "n_test": n_test, "max_delay": model.delay.max_delay, **res.to_dict()}


def plot_delay_map(model: MotifDetector, path, classes=MOTIF_CLASSES):
    """Learned delays (rows: outputs, columns: input pixels) and weights, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = model.delay.delays().numpy()
    w = model.delay.weight.detach().numpy()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    im = axes[0].imshow(d, cmap="viridis", aspect="auto")
    axes[0].set_title("learned delay (steps)")
    fig.colorbar(im, ax=axes[0])
    m = float(abs(w).max()) or 1.0
    im = axes[1].imshow(w, cmap="RdBu_r", vmin=-m, vmax=m, aspect="auto")
    axes[1].set_title("weight")
    fig.colorbar(im, ax=axes[1])
    for ax in axes:
        ax.set_xlabel("input pixel")
        ax.set_yticks(range(len(classes)))
        ax.set_yticklabels(classes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def matched_hidden(hidden: int, n_in: int, n_out: int) -> int:
    """Hidden size of a no-position net with about the trainable parameters of the learned-delay net
    (weight + position per input synapse, weights per readout synapse, biases)."""
    learned = 2 * n_in * hidden + hidden + hidden * n_out + n_out
    return max(1, round((learned - n_out) / (n_in + 1 + n_out)))


MODES = ("none", "random", "learned")
_INIT = {"none": "zero", "random": "random_int", "learned": "uniform"}


@dataclass(frozen=True)
class Comparison:
    """A task on which no, random and learned delays are compared.

    ``data(seed, n_max) -> (train, test)``; ``model(mode) -> nn.Module`` (built after seeding);
    ``train(mode, seed) -> TrainConfig``; ``describe`` is a one-line summary for reports.
    """

    describe: str
    data: Callable
    model: Callable
    train: Callable
    steps: Callable


def _positions_free(model: nn.Module, mode: str) -> int:
    """Trainable parameters, not counting the delay positions of nets whose delays are fixed."""
    n = trainable_count(model)
    if mode != "learned":
        n -= sum(l.positions.numel() for l in model.delay_layers())
    return n


def _motif_comparison(epochs: int = 60, pixels: int = 12, steps: int = 30, noise: float = 0.05,
                      n_train: int = 1024, n_test: int = 512) -> Comparison:
    def data(seed, n_max):
        n_tr, n_te = (n_train, n_test) if n_max is None else (min(n_train, n_max), min(n_test, max(1, n_max // 2)))
        return (moving_bars(n_tr, pixels, steps, noise, seed=seed), moving_bars(n_te, pixels, steps, noise, seed=seed + 1))

    def model(mode):
        return MotifDetector(pixels, 4, 0 if mode == "none" else pixels - 1, init_delays=_INIT[mode],
                             detectors=1 if mode == "learned" else 2)

    def train_cfg(mode, seed):
        return TrainConfig(epochs=epochs, lr=1e-2, lr_positions=1.0, learn_delays=mode == "learned", seed=seed)

    return Comparison(f"moving bars, {pixels} pixels, {steps} steps, background noise {noise}", data, model,
                      train_cfg, lambda: steps)


def _digits_comparison(epochs: int = 30, hidden: int = 128, max_delay: int = 28, steps_per_column: int = 4
                       ) -> Comparison:
    x, y = digit_spike_trains(steps_per_column)

    def data(seed, n_max):
        xs, ys = (x, y) if n_max is None else (x[:, :n_max], y[:n_max])
        return split(xs, ys, 0.2, seed)

    def model(mode):
        if mode == "learned":
            return DelayNet(8, hidden, 10, max_delay, init_delays="uniform")
        return DelayNet(8, matched_hidden(hidden, 8, 10), 10, 0 if mode == "none" else max_delay,
                        init_delays=_INIT[mode])

    def train_cfg(mode, seed):
        return TrainConfig(epochs=epochs, lr=1e-2, lr_positions=0.1, learn_delays=mode == "learned", seed=seed)

    return Comparison("sklearn digits, 8 rows x 8 columns, column by column", data, model, train_cfg,
                      lambda: int(x.shape[0]))


#: comparison task name -> factory taking the task's options (``epochs`` and task-specific sizes)
COMPARISONS = {"motif": _motif_comparison, "digits": _digits_comparison}


def compare_delays(task: str = "motif", seeds=(0, 1, 2, 3, 4), modes=MODES, progress: bool = True,
                   n_max: Optional[int] = None, **options) -> dict:
    """No vs fixed random vs learned delays on ``task`` (:data:`COMPARISONS`), one run per seed and mode.

    ``options`` go to the task's factory (``epochs``, and e.g. ``hidden``/``max_delay`` for digits,
    ``noise``/``pixels`` for motif); ``n_max`` caps the number of training samples (small runs).
    Returns ``runs`` (mode -> one result per seed), ``accuracy`` (mode -> mean test accuracy),
    ``accuracy_std``, ``per_seed`` (mode -> test accuracies), ``parameters`` (mode -> trainable
    parameters) and ``ordered`` (mean none < mean random < mean learned; only with all three modes).
    """
    if task not in COMPARISONS:
        raise ParameterError("compare_delays", "task", task, "one of " + ", ".join(COMPARISONS))
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ParameterError("compare_delays", "modes", bad or modes, "a non-empty subset of " + ", ".join(MODES))
    seeds = list(seeds)
    if not seeds or any(not isinstance(s, int) or isinstance(s, bool) for s in seeds):
        raise ParameterError("compare_delays", "seeds", seeds, "a non-empty list of integers")
    options = {k: v for k, v in options.items() if v is not None}
    cmp = COMPARISONS[task](**options)
    out = {"task": task, "data": cmp.describe, "steps": cmp.steps(), "seeds": seeds, "options": options,
           "runs": {m: [] for m in modes}, "parameters": {}}
    for seed in seeds:
        train_data, test_data = cmp.data(seed, n_max)
        out["n_train"], out["n_test"] = int(train_data[1].numel()), int(test_data[1].numel())
        for mode in modes:
            torch.manual_seed(seed)
            model = cmp.model(mode)
            out["parameters"][mode] = _positions_free(model, mode)
            cfg = cmp.train(mode, seed)
            cfg.progress, cfg.desc = progress, f"{task}/{mode}/seed {seed}"
            res = train(model, train_data, test_data, cfg)
            units = sum(l.out_features for l in model.delay_layers())
            out["runs"][mode].append({"seed": seed, "units": units, **res.to_dict()})
    out["per_seed"] = {m: [r["test_accuracy"] for r in rs] for m, rs in out["runs"].items()}
    out["accuracy"] = {m: float(np.mean(a)) for m, a in out["per_seed"].items()}
    out["accuracy_std"] = {m: float(np.std(a)) for m, a in out["per_seed"].items()}
    if set(modes) == set(MODES):
        a = out["accuracy"]
        out["ordered"] = bool(a["none"] < a["random"] < a["learned"])
    return out


__all__ = ["COMPARISONS", "Comparison", "DelayNet", "MODES", "MOTIF_CLASSES", "MotifDetector", "TrainConfig", "TrainResult", "accuracy",
           "compare_delays", "digit_spike_trains", "leaky_peak", "matched_hidden", "moving_bars",
           "plot_delay_map", "run_motif", "split", "train", "trainable_count"]
