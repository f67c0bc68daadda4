"""Shared machinery of the benchmarks: options, peer records, timing, reports.

Timing is in-process with :func:`time.perf_counter`: ``warmup`` untimed calls, then ``reps`` timed
calls, summarised by their median (also min, max and every time). When several implementations run
in one process they are *interleaved*: rep 1 of every implementation, then rep 2 of every one, and
so on, so that a slow drift of the machine (thermal, another process) spreads over all of them
instead of penalising whichever ran last.

A peer is a small frozen record (:class:`Peer`): the modules it needs, a builder, and whether it runs
by default. A peer whose modules cannot be imported is reported as skipped with the reason; one that
fails while running is reported as failed; neither is an error of the benchmark.
"""
from __future__ import annotations

import importlib
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional

from ..core.errors import NeuroError

# one-line descriptions, shared by the CLI and the README
WORKLOADS = {
    "w1": "dense feed-forward LIF network, T=100, B=64, 784-1000-10 (forward; forward+backward)",
    "w2": "sparse recurrent LIF network, 10,000 neurons, p=0.01, 1000 steps (event-driven)",
    "w3": "single LIF neuron against Brian2 (spike counts and times; exact and Euler integration)",
    "switch": "event-driven vs dense path of neuro.synapses.Linear across input densities",
}


class BenchUsageError(NeuroError, ValueError):
    """A benchmark was asked for something it does not have (an unknown peer, a bad option)."""


@dataclass(frozen=True)
class Options:
    """What the user asked for. ``None`` means: the workload's default."""

    reps: Optional[int] = None
    warmup: Optional[int] = None
    peers: Optional[tuple[str, ...]] = None  # None: the default peers; () none at all
    quick: bool = False
    threads: int = 2
    steps: Optional[int] = None
    progress: Optional[bool] = None  # None: a bar when stderr is a terminal

    def reps_or(self, default: int) -> int:
        return self.reps if self.reps is not None else default

    def warmup_or(self, default: int) -> int:
        return self.warmup if self.warmup is not None else default


@dataclass(frozen=True)
class Peer:
    """Another library's (or a hand-written baseline's) implementation of a workload.

    ``build`` is called with the workload's context and returns what the workload expects.
    ``requires``: modules that must import; ``default``: runs without ``--peers`` naming it;
    ``ceiling``: a reference line (e.g. the bare matmuls), never counted as the best peer.
    """

    name: str
    requires: tuple[str, ...]
    build: Callable[..., Any]
    description: str
    default: bool = True
    ceiling: bool = False


def select_peers(workload: str, registry: Mapping[str, Peer], names: Optional[Iterable[str]]) -> list[Peer]:
    """The peers to run: ``names`` (checked against ``registry``), or every default one."""
    if names is None:
        return [p for p in registry.values() if p.default]
    names = list(names)
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise BenchUsageError(
            f"unknown peer{'s' if len(unknown) > 1 else ''} {', '.join(repr(n) for n in unknown)} for {workload}; "
            f"choose from: {', '.join(registry)}")
    return [registry[n] for n in dict.fromkeys(names)]


def unavailable_reason(peer: Peer) -> Optional[str]:
    """None when every module ``peer`` needs imports, else why not (any exception counts:
    a package can be installed and still fail to import, e.g. against a newer numpy)."""
    for mod in peer.requires:
        try:
            importlib.import_module(mod)
        except Exception as e:  # noqa: BLE001 - reported to the user, never raised
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            return f"cannot import {mod} ({type(e).__name__}: {first})"[:300]
    return None


def split_available(peers) -> tuple[dict, list]:
    """(results with a 'skipped' entry for each peer that cannot import, the peers that can run)."""
    skipped, runnable = {}, []
    for peer in peers:
        why = unavailable_reason(peer)
        if why:
            skipped[peer.name] = {"status": "skipped", "reason": why}
        else:
            runnable.append(peer)
    return skipped, runnable


def set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


def quiet_known_warnings() -> None:
    """Warnings every run would print and that say nothing about the results."""
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")


# --------------------------------------------------------------------------------- timing
@dataclass
class Timing:
    times_s: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    def to_dict(self) -> dict:
        return {"median_s": self.median_s, "min_s": min(self.times_s), "max_s": max(self.times_s),
                "reps": len(self.times_s), "all_s": [round(t, 6) for t in self.times_s]}


def progress_bar(total: int, desc: str, enabled: Optional[bool]):
    """A tqdm bar on stderr; ``enabled=None`` shows it only when stderr is a terminal."""
    from tqdm.auto import tqdm

    disable = (not sys.stderr.isatty()) if enabled is None else not enabled
    return tqdm(total=total, desc=desc, unit="run", disable=disable, leave=False, file=sys.stderr)


def time_call(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def interleaved(fns: Mapping[str, Callable[[], Any]], reps: int, warmup: int, bar=None):
    """Time each of ``fns``, interleaved rep by rep.

    Returns (timings {name: Timing}, last outputs {name: value}, failures {name: message}).
    An implementation that raises is dropped from the rest of the run and listed in failures.
    """
    timings = {k: Timing() for k in fns}
    outs: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for r in range(warmup + reps):
        for name, fn in fns.items():
            if name in failed:
                continue
            try:
                dt, outs[name] = time_call(fn)
            except Exception as e:  # noqa: BLE001 - a failing peer must not stop the others
                failed[name] = f"{type(e).__name__}: {e}"[:300]
                continue
            finally:
                if bar is not None:
                    bar.update(1)
            if r >= warmup:
                timings[name].times_s.append(dt)
    return {k: t for k, t in timings.items() if k not in failed}, outs, failed


def repeat(fn: Callable[[], Any], reps: int, warmup: int, bar=None) -> tuple[Timing, Any]:
    """Time one implementation alone: ``warmup`` untimed calls, then ``reps`` timed ones."""
    timing = Timing()
    out = None
    for r in range(warmup + reps):
        dt, out = time_call(fn)
        if r >= warmup:
            timing.times_s.append(dt)
        if bar is not None:
            bar.update(1)
    return timing, out


# --------------------------------------------------------------------------------- reports
def best_peer(medians: Mapping[str, float]) -> tuple[Optional[str], Optional[float]]:
    """The fastest of ``medians`` (name, median) or (None, None) when there is none."""
    if not medians:
        return None, None
    name = min(medians, key=medians.get)
    return name, medians[name]


def ratio(peer_s: Optional[float], neuro_s: Optional[float]) -> Optional[float]:
    """peer median / neuro median: > 1 means neuro is faster."""
    if peer_s is None or not neuro_s:
        return None
    return peer_s / neuro_s


def versions() -> dict:
    """Versions of the interpreter and of every library a benchmark may use (without importing them)."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    out = {"neuro": __version__, "python": platform.python_version()}
    for dist in ("torch", "numpy", "spikingjelly", "snntorch", "norse", "brian2"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def machine(threads: int) -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": threads}


def fmt_s(t: Optional[float]) -> str:
    if t is None:
        return "-"
    if t < 1.0:
        return f"{t * 1e3:.1f} ms"
    return f"{t:.3f} s"


def fmt_ratio(r: Optional[float]) -> str:
    return "-" if r is None else f"{r:.2f}x"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Plain-text table, first column left-aligned, the others right-aligned."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    def line(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


@dataclass
class Report:
    """What a workload hands back to the CLI: the JSON object, the text to print, and whether
    every correctness check passed."""

    data: dict
    text: str
    ok: bool = True


def peer_fields(result_peers: Mapping[str, dict], checks: dict, ok: bool, threads: int) -> dict:
    """The fields every workload's JSON shares: peers with their status lists, checks, versions, machine."""
    return {
        "peers": dict(result_peers),
        "skipped": sorted(k for k, v in result_peers.items() if v["status"] == "skipped"),
        "failed": sorted(k for k, v in result_peers.items() if v["status"] == "failed"),
        "checks": checks,
        "ok": ok,
        "versions": versions(),
        "machine": machine(threads),
    }
