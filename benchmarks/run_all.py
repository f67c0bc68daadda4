"""Run the benchmarks W1, W2, W3 (and the switch-density measurement) and write one JSON file.

    python benchmarks/run_all.py [--out bench_results.json] [--only w1,w2,w3,switch] [--quick]
                                 [--threads 2] [--peers-w2 brian2_cpp,brian2_cython,torch]

Each workload runs as ``python -m neuro.cli bench <workload> --json`` in its own fresh process (so
that one library's global state, e.g. Brian2's code generation target, cannot touch the next), one
after the other. The file holds each workload's JSON object, its exit code and wall time.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKLOADS = ["w1", "w2", "w3", "switch"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_results.json", help="JSON file to write")
    ap.add_argument("--only", default=",".join(WORKLOADS), help="comma-separated subset of " + ",".join(WORKLOADS))
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer repetitions and steps")
    ap.add_argument("--threads", default="2", help="torch threads (and Brian2 OpenMP threads)")
    ap.add_argument("--peers-w2", default=None, help="peers for W2 (default: the W2 defaults)")
    a = ap.parse_args(argv)
    only = [w.strip() for w in a.only.split(",") if w.strip()]
    unknown = sorted(set(only) - set(WORKLOADS))
    if unknown:
        ap.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    results = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "workloads": {}}
    worst = 0
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    for w in only:
        cmd = [sys.executable, "-m", "neuro.cli", "bench", w, "--json", "--threads", a.threads]
        if a.quick:
            cmd.append("--quick")
        if w == "w2" and a.peers_w2 is not None:
            cmd += ["--peers", a.peers_w2]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)  # stderr: progress bars
        wall = time.perf_counter() - t0
        try:
            data = json.loads(proc.stdout)
        except json.JSONDecodeError:
            data = {"error": "no JSON on stdout", "stdout_tail": proc.stdout[-2000:]}
        results["workloads"][w] = {"exit_code": proc.returncode, "wall_s": wall, "result": data}
        worst = max(worst, proc.returncode)
        print(f"{w:7s} exit {proc.returncode}  {wall:6.1f} s", flush=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {a.out}")
    return worst


if __name__ == "__main__":
    sys.exit(main())
