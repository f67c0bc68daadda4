"""Event-driven delayed inference vs the dense temporal convolution DCLS runs at inference.

    python benchmarks/delays.py [--batch 32] [--n-in 512] [--n-out 512] [--steps 100] [--max-delay 31]
                                [--activity 0.05] [--reps 7] [--threads 2] [--json]

One finalized :class:`neuro.synapses.delay.DelayLinear` (integer delay per synapse, sized by default
as a layer of the DCLS SSC/GSC networks: 512 -> 512, max delay 31 steps, REFERENCE §2; the SHD size
is ``--n-in 256 --n-out 256 --max-delay 25``) gets Bernoulli input spikes at ``--activity``
(5 %). Timed, each a median of ``--reps`` runs after a warm-up, the two interleaved in one process
(so that a change of machine load hits both):

* ``dense``: what DCLS does at inference, a ``conv1d`` over time with the full ``[out, in, D + 1]``
  kernel (one nonzero tap per synapse after rounding), :func:`neuro.synapses.delay.delay_conv`;
* ``event``: neuro's ring buffer, :meth:`DelayLinear.events` (work per step ~ active inputs x out).

Both outputs are checked to agree (float32 tolerance). The script sets ``OMP_WAIT_POLICY=PASSIVE``
(unless already set) before torch loads: torch and neuro's compiled event kernels are two OpenMP
users, and on a 2-core machine their idle threads otherwise spin against each other whenever calls
alternate (measured: the event path 10-40x slower, erratically); both sides run under the same setting. Prints the medians and the ratio
dense / event; exit code 1 when the outputs differ or the ratio is below ``--target`` (3).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from neuro.synapses.delay import DelayLinear, delay_conv  # noqa: E402


def timed_interleaved(fns, reps: int, warmup: int = 1) -> list:
    """Per function, the wall times of ``reps`` runs, the functions taking turns."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    for _ in range(reps):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--n-in", type=int, default=512)
    ap.add_argument("--n-out", type=int, default=512)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--max-delay", type=int, default=31)
    ap.add_argument("--activity", type=float, default=0.05, help="fraction of inputs spiking per step")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--target", type=float, default=3.0, help="required ratio dense / event")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    layer = DelayLinear(a.n_in, a.n_out, a.max_delay)
    layer.finalize()
    x = (torch.rand(a.steps, a.batch, a.n_in) < a.activity).float()    # [T, B, in]
    kernel = layer.kernel()                                             # [out, in, D + 1], one tap each

    with torch.no_grad():
        y_dense = delay_conv(x, kernel)
        y_event = layer.events(x)
        agree = bool(torch.allclose(y_dense, y_event, rtol=1e-4, atol=1e-4))
        t_dense, t_event = timed_interleaved([lambda: delay_conv(x, kernel), lambda: layer.events(x)], a.reps)
    md, me = statistics.median(t_dense), statistics.median(t_event)
    ratio = md / me
    report = {"workload": "delayed inference", "batch": a.batch, "n_in": a.n_in, "n_out": a.n_out,
              "steps": a.steps, "max_delay": a.max_delay, "activity": float(x.mean()), "threads": a.threads,
              "dense_conv_median_s": md, "event_ring_buffer_median_s": me, "ratio_dense_over_event": ratio,
              "target": a.target, "outputs_agree": agree, "dense_times_s": t_dense, "event_times_s": t_event,
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "torch": torch.__version__}
    if a.json:
        print(json.dumps(report))
    else:
        print(f"delayed inference {a.n_in} -> {a.n_out}, max delay {a.max_delay}, T={a.steps}, B={a.batch}, "
              f"input activity {100 * report['activity']:.1f}%, {a.threads} threads")
        print(f"  dense conv1d (DCLS inference): median {1e3 * md:8.2f} ms")
        print(f"  event-driven ring buffer:      median {1e3 * me:8.2f} ms")
        print(f"  ratio dense / event: {ratio:.2f}x (target >= {a.target:g}x); outputs agree: {agree}")
    return 0 if agree and ratio >= a.target else 1


if __name__ == "__main__":
    sys.exit(main())
