"""``neuro train TASK``: train one of the package's reference tasks and report its numbers.

Tasks live in :data:`TASKS`, a registry of names to ``"module:attribute"`` strings naming a
:class:`TrainTask` (its one-line help, ``add_arguments(parser)`` and ``run(args) -> exit code``),
imported only when the command line is built. A later task adds one line here, e.g.
``"egru-lm": "neuro.commands.train_egru:TASK"``.

Common options every task gets: ``--epochs N`` (task default when omitted), ``--json`` (print a JSON
summary on stdout; progress bars go to stderr), ``--out DIR`` (where the task writes its files; the
summary lands in ``DIR/train_<task>.json``), ``--seed``, ``--no-progress``, ``--threads``.

``neuro train delays [--task motif|digits|compare|all] [--compare-on motif|digits] [--seeds N]``
(default ``all``: the motif detector on moving bars with its learned-delay map plot, then the
none/random/learned comparison over 5 seeds on moving bars).
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

HELP = "train a reference task (delays, gpt, llama, rwkv, spikegpt, egru-lm, nalsm) and report its figures"

# task name -> "module:attribute" of its TrainTask
TASKS = {
    "delays": "neuro.commands.train:DELAYS",
    "gpt": "neuro.commands.train_lm:GPT", "llama": "neuro.commands.train_lm:LLAMA",
    "egru-lm": "neuro.commands.train_egru:TASK",
    "nalsm": "neuro.commands.train_nalsm:TASK",
    "rwkv": "neuro.commands.train_rwkv:TASK",
    "spikegpt": "neuro.commands.train_spikegpt:TASK",
}


@dataclass(frozen=True)
class TrainTask:
    help: str
    add_arguments: Callable
    run: Callable
    uses_epochs: bool = True   # False: the task trains to a budget of its own (--minutes), --epochs is refused


def task(name: str) -> TrainTask:
    mod, attr = TASKS[name].split(":")
    return getattr(importlib.import_module(mod), attr)


def add_common(p) -> None:
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the task's)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--out", type=Path, default=Path("out"), help="folder for plots, models and the summary (default out)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_arguments(p):
    sub = p.add_subparsers(dest="task", metavar="TASK")
    for name in TASKS:
        t = task(name)
        tp = sub.add_parser(name, help=t.help, description=t.help)
        add_common(tp)
        t.add_arguments(tp)
        tp.set_defaults(_task=t)


def run(args) -> int:
    from ..core.errors import ParameterError

    t = getattr(args, "_task", None)
    if t is None:
        raise ParameterError("neuro train", "TASK", None, "one of " + ", ".join(TASKS))
    if args.epochs is not None and not t.uses_epochs:
        raise ParameterError(f"neuro train {args.task}", "--epochs", args.epochs,
                             "left out: this task trains to its own budget (see its --help)")
    if args.epochs is not None and args.epochs < 1:
        raise ParameterError("neuro train", "--epochs", args.epochs, "an integer >= 1")
    import torch

    torch.set_num_threads(max(1, args.threads))
    args.out.mkdir(parents=True, exist_ok=True)
    summary, ok = t.run(args)
    path = args.out / f"train_{args.task}.json"
    path.write_text(json.dumps(summary, indent=1))
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"summary: {path}")
    return 0 if ok else 1


# ------------------------------------------------------------------------------------ delays
def _delays_arguments(p):
    p.add_argument("--task", dest="delay_task", choices=("motif", "digits", "compare", "all"), default="all",
                   help="motif: moving-bar motif detector; digits: learned delays on digit spike trains; "
                        "compare: none vs random vs learned delays; all (default): motif and compare")
    p.add_argument("--compare-on", choices=("motif", "digits"), default="motif",
                   help="task of the none/random/learned comparison (default motif: the class lives in spike timing)")
    p.add_argument("--seeds", type=int, default=5, help="comparison: seeds per mode (default 5)")
    p.add_argument("--plot", type=Path, default=None,
                   help="where to write the learned delay map of the motif detector (default OUT/delay_map.png)")
    p.add_argument("--hidden", type=int, default=128, help="digits: hidden neurons of the learned-delay net (default 128)")
    p.add_argument("--max-delay", type=int, default=28, help="digits: largest delay, steps (default 28)")
    p.add_argument("--n-train", type=int, default=1024, help="motif: training streams (default 1024; test: half)")
    p.add_argument("--save", action="store_true", help="save the trained motif detector layer to OUT/motif_delays/")


def _print_comparison(res) -> None:
    print(f"none vs random vs learned delays on {res['data']} ({len(res['seeds'])} seeds, "
          f"{res['n_train']} train / {res['n_test']} test):")
    for m, accs in res["per_seed"].items():
        print(f"  {m:7s} mean test accuracy {res['accuracy'][m]:.3f} +- {res['accuracy_std'][m]:.3f} "
              f"(per seed {', '.join(f'{a:.3f}' for a in accs)}), {res['parameters'][m]} parameters")
    if "ordered" in res:
        print("  none < random < learned (means): " + ("yes" if res["ordered"] else "no"))


def _delays_run(args):
    from ..core.errors import ParameterError
    from ..io import save_model
    from ..models import delays as D

    progress = not args.no_progress
    out = {"task": "delays", "which": args.delay_task}
    ok = True
    for name, v in (("--n-train", args.n_train), ("--seeds", args.seeds), ("--hidden", args.hidden)):
        if v < 1:
            raise ParameterError("neuro train delays", name, v, "an integer >= 1")
    if args.max_delay < 0:
        raise ParameterError("neuro train delays", "--max-delay", args.max_delay, "an integer >= 0")
    if args.delay_task in ("motif", "all"):
        model, res = D.run_motif(epochs=args.epochs or 80, n_train=args.n_train, n_test=max(1, args.n_train // 2),
                                 seed=args.seed, progress=progress)
        plot = args.plot or args.out / "delay_map.png"
        D.plot_delay_map(model, plot)
        res["plot"] = str(plot)
        res["delays"] = model.delay.delays().tolist()
        if args.save:
            res["model"] = str(save_model(model.delay, args.out / "motif_delays", overwrite=True))
        out["motif"] = res
        if not args.json:
            print(f"motif detector (moving bars, {res['pixels']} pixels, max delay {res['max_delay']}): "
                  f"test accuracy {res['test_accuracy']:.3f} (train {res['train_accuracy']:.3f}); "
                  f"delay map: {plot}")
    if args.delay_task == "digits":
        res = D.compare_delays("digits", seeds=[args.seed], modes=("learned",), progress=progress,
                               epochs=args.epochs, hidden=args.hidden, max_delay=args.max_delay)
        out["digits"] = res
        if not args.json:
            r = res["runs"]["learned"][0]
            print(f"digits, learned delays: test accuracy {r['test_accuracy']:.3f} (train {r['train_accuracy']:.3f}), "
                  f"hidden {r['units']}, {res['parameters']['learned']} parameters")
    if args.delay_task in ("compare", "all"):
        opts = {"epochs": args.epochs}
        if args.compare_on == "digits":
            opts.update(hidden=args.hidden, max_delay=args.max_delay)
        else:
            opts.update(n_train=args.n_train, n_test=max(1, args.n_train // 2))
        res = D.compare_delays(args.compare_on, seeds=range(args.seed, args.seed + args.seeds), progress=progress, **opts)
        out["compare"] = res
        if not args.json:
            _print_comparison(res)
    return out, ok


DELAYS = TrainTask("learnable per-synapse delays: motif detector on moving bars; none vs random vs learned delays",
                   _delays_arguments, _delays_run)
