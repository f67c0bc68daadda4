"""Wall-time overhead of operation counting (target: at most +20 %).

W1-like feed-forward network (784-1000-10 LIF, T=100, B=64, 10 % input rate, weights scaled so that
the hidden layer fires): median forward time without and with an OpCounter attached, in one run,
and the ratio. Also W2 (10,000 LIF, p = 0.01, 1000 steps): a whole-run engine counted afterwards
from its RunResult; the ratio is (run + count) / run.

    python benchmarks/energy_overhead.py [--repeats 11] [--small]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None) -> int:
    from neuro.energy import OpCounter, count_recurrent
    from neuro.models import SpikingSequential, w2_network
    from neuro.neurons import LIF
    from neuro.synapses import Linear

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--small", action="store_true", help="smaller sizes (smoke test)")
    a = ap.parse_args(argv)
    T, B, n, n2, steps = (20, 16, 1000, 2000, 200) if a.small else (100, 64, 1000, 10_000, 1000)
    torch.manual_seed(0)
    net = SpikingSequential(Linear(784, n), LIF(tau_ms=2.0, step_mode="m"), Linear(n, 10), LIF(tau_ms=2.0, step_mode="m"))
    with torch.no_grad():
        net[0].weight.mul_(8.0)
        net[2].weight.mul_(4.0)
    x = (torch.rand(T, B, 784) < 0.1).float()
    counter = OpCounter(net)

    def plain():
        net.reset()
        with torch.no_grad():
            net(x)

    def counted():
        net.reset()
        counter.reset()
        with torch.no_grad(), counter:
            net(x)

    plain(), counted()  # warm-up
    tp, tc = [], []
    for _ in range(a.repeats):  # interleaved, so that load on the machine hits both alike
        for fn, ts in ((plain, tp), (counted, tc)):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    t_plain, t_count = statistics.median(tp), statistics.median(tc)
    s = counter.counts().summary()
    print(f"W1-like {T}x{B} 784-{n}-10 LIF: plain {t_plain * 1e3:.1f} ms, counted {t_count * 1e3:.1f} ms, "
          f"ratio {t_count / t_plain:.3f} (spike rate {s['spike_rate']:.3f}, {s['synops_ac']:,} AC, {s['synops_mac']:,} MAC)")

    w2 = w2_network(n=n2)
    t0 = time.perf_counter()
    res = w2.run(steps)
    t_run = time.perf_counter() - t0
    t_cnt = median_time(lambda: count_recurrent(w2, res), a.repeats)
    print(f"W2 {n2} LIF x {steps} steps ({res.engine} engine): run {t_run * 1e3:.1f} ms, counting {t_cnt * 1e3:.1f} ms, "
          f"ratio {(t_run + t_cnt) / t_run:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
