"""``neuro train nalsm``: liquid state machines on scikit-learn's 8x8 digits (Poisson spike trains).

Runs three liquids built from the same seed: a plain LSM (no plasticity), an LSM whose synapses
learned with unmodulated STDP, and the NALSM (STDP whose depression an astrocyte sets), and reports
each one's test accuracy (logistic regression on spike counts, 80/20 split) and branching factor.
See :mod:`neuro.models.nalsm`.

Example: ``neuro train nalsm --json`` (about 2-4 minutes on one core).
"""
from __future__ import annotations

from .train import TrainTask


def _arguments(p) -> None:
    p.add_argument("--grid", type=int, default=10, help="neurons per side of the 3-D liquid (default 10: 1000 neurons)")
    p.add_argument("--steps", type=int, default=100, help="time steps (ms) per digit (default 100)")
    p.add_argument("--max-rate", type=float, default=0.2, help="spike probability per ms of a white pixel (default 0.2)")
    p.add_argument("--n-plastic", type=int, default=50, help="training digits presented while STDP learns (default 50)")
    p.add_argument("--samples", type=int, default=None, help="use only the first N digits (default all 1797)")
    p.add_argument("--which", nargs="+", choices=("none", "stdp", "nalsm"), default=["none", "stdp", "nalsm"],
                   help="liquids to run (default all three)")


def _run(args):
    from ..core.errors import ParameterError
    from ..models.nalsm import NALSMParams, run_digits

    if args.n_plastic < 1 or args.steps < 5:
        raise ParameterError("neuro train nalsm", "--n-plastic/--steps", (args.n_plastic, args.steps),
                             "n-plastic >= 1 and steps >= 5")
    params = NALSMParams(grid=args.grid)
    out = {"task": "nalsm", "neurons": params.n, "steps": args.steps, "n_plastic": args.n_plastic, "runs": {}}
    names = {"none": "plain LSM", "stdp": "LSM + STDP", "nalsm": "NALSM"}
    for kind in args.which:
        r = run_digits(kind, params, steps=args.steps, max_rate=args.max_rate, n_samples=args.samples,
                       n_plastic=args.n_plastic, seed=args.seed, progress=not args.no_progress)
        out["runs"][kind] = r.as_dict()
        if not args.json:
            print(f"{names[kind]:11s}: test accuracy {r.accuracy:.3f}, branching factor {r.branching_factor:.3f}, "
                  f"mean rate {r.rate_hz:.1f} Hz ({r.seconds} s)")
    return out, True


TASK = TrainTask("neuron-astrocyte liquid state machine on 8x8 digits: plain LSM vs STDP vs NALSM (accuracy, "
                 "branching factor)", _arguments, _run, uses_epochs=False)
