"""``neuro bench``: run a benchmark workload with neuro and every installed peer side by side.

``neuro bench w1|w2|w3|switch [--json] [--reps N] [--warmup N] [--peers a,b,...] [--quick]``

Prints a table of medians and ratios (peer median / neuro median, > 1 when neuro is faster), or one
JSON object with ``--json``. Exit code 0, or 1 when a correctness check failed (forward spikes that
differ between libraries on W1, the fast W2 engine disagreeing with the float64 reference engine,
neuro's exact W3 integration disagreeing with Brian2). Peers that are not installed are listed as
skipped. Kept free of heavy imports: the parser is built for every ``neuro`` command.
"""
from __future__ import annotations

import argparse
import importlib
import json

from .common import WORKLOADS, BenchUsageError, Options

HELP = "benchmark neuro against peer libraries (W1 dense, W2 sparse recurrent, W3 accuracy, switch)"

# workload -> (module, function(Options) -> Report); imported only when that workload runs
MODULES = {"w1": ("neuro.bench.w1", "run"), "w2": ("neuro.bench.w2", "run"), "w3": ("neuro.bench.w3", "run"),
           "switch": ("neuro.bench.w1", "run_switch")}


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _non_negative_int(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workload", choices=list(MODULES),
                        help="; ".join(f"{k}: {v}" for k, v in WORKLOADS.items()))
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--reps", type=_positive_int, help="timed runs per implementation (default: per workload)")
    parser.add_argument("--warmup", type=_non_negative_int, help="untimed runs before timing (default: per workload)")
    parser.add_argument("--peers", help="comma-separated peers to run (default: every installed default peer; "
                                        "'' for none); unknown names are an error")
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer repetitions and steps")
    parser.add_argument("--threads", type=_positive_int, default=2, help="torch threads (default 2)")
    parser.add_argument("--steps", type=_positive_int,
                        help="time steps (W1: T, W2: simulated steps); default per workload")
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="always show progress bars (default: only on a terminal)")
    bar.add_argument("--no-progress", dest="progress", action="store_false")


def options_from_args(args: argparse.Namespace) -> Options:
    peers = None
    if args.peers is not None:
        peers = tuple(p.strip() for p in args.peers.split(",") if p.strip())
    return Options(reps=args.reps, warmup=args.warmup, peers=peers, quick=args.quick, threads=args.threads,
                   steps=args.steps, progress=args.progress)


def run(args: argparse.Namespace) -> int:
    opts = options_from_args(args)
    if args.workload == "switch" and opts.peers is not None:
        raise BenchUsageError("neuro bench switch compares neuro's own two paths; it takes no --peers")
    if args.workload in ("w3", "switch") and opts.steps is not None:
        raise BenchUsageError(f"--steps does not apply to {args.workload}")
    module, function = MODULES[args.workload]
    report = getattr(importlib.import_module(module), function)(opts)
    if args.json:
        print(json.dumps(report.data, indent=1))
    else:
        print(report.text)
    return 0 if report.ok else 1
