"""The ``neuro`` command.

Each subcommand lives in its own module exposing ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int`` (the exit code). Exit codes: 0 success, 1 a check failed (e.g. a benchmark
target or an agreement test), 2 bad usage or input (argparse's convention).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# subcommand -> module implementing it
COMMANDS = {
    "demo": "neuro.commands.demo",
    "simulate": "neuro.commands.simulate",
    "bench": "neuro.bench.cli",
    "train": "neuro.commands.train",
    "energy": "neuro.commands.energy",
    "convert": "neuro.commands.convert",
    "generate": "neuro.commands.generate",
    "deploy": "neuro.commands.deploy",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neuro", description="Spiking and neuromorphic computing: simulate, benchmark, convert, deploy.")
    parser.add_argument("--version", action="version", version=f"neuro {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        mod = importlib.import_module(modname)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from .core.errors import NeuroError

    try:
        return int(args._run(args) or 0)
    except NeuroError as e:
        print(f"neuro {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
