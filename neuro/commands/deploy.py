"""``neuro deploy``: export a saved spiking model to NIR, compile it for Loihi 2, map it onto SpiNNaker or
run it through PyNN.

    neuro deploy MODEL_DIR --target nir --out DIR [--dt-s 1e-3] [--json]
    neuro deploy MODEL_DIR --target loihi [--lava] [--clip] --out DIR [--input spikes.npy] [--json]
    neuro deploy MODEL_DIR --target spinnaker1|spinnaker2 --out DIR [--chips W,H] [--steps N] [--input FILE] [--json]
    neuro deploy MODEL_DIR --target pynn --out DIR [--steps N] [--input FILE] [--json]
    neuro deploy EGRU_LM_DIR --target spinnaker2|spinnaker1 --out DIR [--density D] [--valid-chars N] [--json]

MODEL_DIR holds a SpikingSequential or a RecurrentNetwork (:func:`neuro.io.load_model`); it is
traced to the IR (:func:`neuro.ir.to_ir`; ``--input-shape C,H,W`` for a convolutional input).

* ``nir``: writes ``DIR/model.nir`` (:func:`neuro.hardware_targets.nir.export_nir`).
* ``loihi``: compiles to fixed point (:func:`neuro.hardware_targets.loihi.compile_graph`; ``--clip``
  clips out-of-range values and lists them), writes ``DIR/loihi_usage.json`` and, for a chain,
  ``DIR/model.net`` (lava-dl netx HDF5), then measures ``agreement``: with ``--lava`` the emulator
  against Lava itself (fraction of identical spikes, and of identical voltages), else the emulator
  against the float model (Loihi's lag removed). Inputs: ``--input`` (.npy [T, B, n] spikes) or
  Bernoulli spikes of ``--rate`` for ``--steps`` steps (seed ``--seed``).
* ``spinnaker1`` / ``spinnaker2``: maps the graph onto the machine
  (:func:`neuro.hardware_targets.spinnaker.map_graph`; ``--chips W,H`` sets the machine size), writes
  ``DIR/mapping.json`` (:meth:`Mapping.to_dict`), runs the event-graph emulator on the first input
  row and compares its spikes with :class:`~neuro.ir.build.GraphNetwork` on
  :meth:`Mapping.quantized_graph` (``agreement``: fraction of identical spike entries). The report
  adds ``cores_used``, ``routing_entries_max``, ``packets``, ``hops``, ``late_or_dropped`` (core-ticks
  over their real-time budget; a dropped packet is an error) and ``energy_j`` per energy model
  (built-in ``spinnaker1``, ``spinnaker2`` and the target's model with routers priced per packet and
  hop, :mod:`neuro.hardware_targets.spinnaker.energy`); ``usage`` has per-core and per-chip rows.
  It also writes ``DIR/network_spinnaker2.json`` and ``DIR/model_pynn.py``
  (:mod:`neuro.hardware_targets.spinnaker.export`) where the network has such a description
  (``exports_skipped`` says why not).
* ``pynn``: writes ``DIR/model_pynn.py`` (:func:`~neuro.hardware_targets.spinnaker.export.write_pynn`;
  a network without a PyNN description raises :class:`~neuro.core.errors.UnsupportedLayerError`)
  and, when PyNN and Brian2 are installed, runs it on PyNN's Brian2 backend with the first input row
  and compares its spikes with :class:`~neuro.ir.build.GraphNetwork` (``agreement``; the documented
  convention differences of the export make a difference possible); else ``pynn_run`` says why not.
* An EGRU language model folder (:class:`~neuro.models.egru_lm.EGRULM`, e.g. the bundled
  ``neuro/data/models/egru-char``) with ``spinnaker2`` or ``spinnaker1``: prunes it to ``--density``,
  quantizes it to int8 rows (``--scale``) and fixed-point payloads (``--frac-bits``), places it on PEs
  and runs the first ``--valid-chars`` characters of the Tiny Shakespeare valid split through the
  packet-level emulator (:func:`neuro.hardware_targets.spinnaker.egru_emulator.egru_emulated`):
  ``agreement`` compares its events with the dense fixed-point run, ``quality`` holds the BPC of
  the float, pruned and pruned + quantized model, ``per_token`` the latency (token period
  ``--token-ms``) and energy, ``analytic`` the formula figures and ``paper`` the published ones.
  Writes ``DIR/egru_report.json`` and ``DIR/egru_routing.json`` (keys and tables). Other targets raise
  :class:`~neuro.core.errors.UnsupportedLayerError` (no gated units).

The JSON report has ``target``, ``fits``, ``usage`` (per layer, or per core and chip), ``files`` and
for Loihi, SpiNNaker and PyNN ``agreement`` (the fraction of identical spikes, or events, against the
reference named in ``agreement_detail``, which also holds the steps and per-layer figures).
Exit code 1 when the network does not fit (the report says where), 2 on other errors.
"""
from __future__ import annotations

import json
from pathlib import Path

HELP = ("export a saved spiking model to NIR, compile it for Loihi 2 and check it against Lava, map it (or the "
        "EGRU LM) onto SpiNNaker 1/2 and check the event-graph emulator against neuro, or run it through PyNN")


def add_arguments(p):
    p.add_argument("model", type=Path,
                   help="saved model folder (SpikingSequential, RecurrentNetwork, or an EGRU LM for spinnaker1|2)")
    p.add_argument("--target", required=True, choices=sorted(TARGETS), help=", ".join(sorted(TARGETS)))
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--lava", action="store_true", help="loihi: also run Lava and compare it with the emulator")
    p.add_argument("--clip", action="store_true", help="loihi: clip values out of range instead of failing")
    p.add_argument("--input", type=Path, default=None, help="input spikes [T, B, n] (.npy or .safetensors)")
    p.add_argument("--input-shape", default=None, help="per-sample input shape, e.g. 2,8,8 (convolutional input)")
    p.add_argument("--steps", type=int, default=100, help="steps of random input when --input is not given")
    p.add_argument("--rate", type=float, default=0.1, help="spike probability per step of the random input")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input")
    p.add_argument("--dt-s", type=float, default=None, help="nir: the consumer's step in seconds (default: dt_ms)")
    p.add_argument("--chips", default=None, help="spinnaker: machine size W,H in chips (default: the machine file's)")
    p.add_argument("--density", type=float, default=0.5, help="EGRU LM: weight density kept by pruning, in (0, 1]")
    p.add_argument("--valid-chars", type=int, default=200, help="EGRU LM: valid characters run through the emulator")
    p.add_argument("--scale", default="float", help="EGRU LM: int8 row scale, float or pow2")
    p.add_argument("--frac-bits", type=int, default=16, help="EGRU LM: fraction bits of the 32-bit event payload")
    p.add_argument("--token-ms", type=float, default=1.0, help="EGRU LM: token period (real-time budget) in ms")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def _graph(args, model):
    from ..ir import to_ir

    shape = None if args.input_shape is None else tuple(int(a) for a in args.input_shape.split(","))
    return to_ir(model, input_shape=shape) if shape is not None else to_ir(model)


def _inputs(args, graph):
    import numpy as np

    from ..core.errors import ShapeError

    sources = graph.sources()
    if not sources:
        return {}
    name, src = next(iter(sources.items()))
    if args.input is not None:
        from .energy import load_input

        x = load_input(args.input).numpy()
        x = x.reshape(x.shape[0], x.shape[1], -1)
        if x.shape[-1] != src.n:
            raise ShapeError("neuro deploy", f"input has {x.shape[-1]} channels per step, the model takes {src.n}")
        return {name: (x != 0).astype(np.float64)}
    rng = np.random.default_rng(args.seed)
    return {name: (rng.random((args.steps, 1, src.n)) < args.rate).astype(np.float64)}


def _nir(args, graph) -> dict:
    from ..hardware_targets.nir import export_nir

    path = export_nir(graph, args.out / "model.nir", args.dt_s)
    usage = [{"layer": k, "kind": type(v).__name__, "neurons": v.n} for k, v in graph.populations().items()]
    return {"target": "nir", "fits": True, "usage": usage, "files": [str(path)]}


def _loihi(args, graph) -> tuple:
    import numpy as np

    from ..core.errors import HardwareLimitError, UnsupportedLayerError
    from ..hardware_targets import loihi

    try:
        net = loihi.compile_graph(graph, clip=args.clip)
    except HardwareLimitError as e:
        return {"target": "loihi", "fits": False, "usage": e.usage}, 1
    files = [args.out / "loihi_usage.json"]
    files[0].write_text(json.dumps({"usage": net.usage, "clipped": net.clipped}, indent=1))
    try:
        files.append(loihi.write_netx(net, args.out / "model.net"))
    except UnsupportedLayerError:
        pass  # netx holds feed-forward chains only
    inputs = _inputs(args, graph)
    T = next(iter(inputs.values())).shape[0] if inputs else args.steps
    lag = max(net.latency.values(), default=0)
    if args.lava:
        emu_s, emu_v = loihi.emulate(net, inputs, steps=T + lag)
        row0 = {k: v[:, 0] for k, v in inputs.items()}
        results, seconds = loihi.run_lava([(net, row0)], T + lag)
        lava_s, lava_v = results[0]
        per = {k: {"identical_spikes": float((emu_s[k][:, 0].numpy() == lava_s[k]).mean()),
                   "identical_voltages": float((emu_v[k][:, 0].numpy() == lava_v[k]).mean()),
                   "spikes": int(lava_s[k].sum())} for k in net.populations}
        allsame = [float((emu_s[k][:, 0].numpy() == lava_s[k]).mean()) for k in net.populations]
        agreement = {"compared": "emulator vs Lava (Loihi2SimCfg fixed_pt)", "steps": T + lag, "lava_seconds": seconds,
                     "identical": float(np.mean(allsame)) if allsame else 1.0, "per_layer": per}
    else:
        per = loihi.agreement(net, graph, inputs, steps=T)
        agreement = {"compared": "emulator vs float model (Loihi lag removed)", "steps": T,
                     "identical": float(np.mean([s["identical"] for s in per.values()])) if per else 1.0,
                     "per_layer": per}
    report = {"target": "loihi", "fits": True, "usage": net.usage, "clipped": net.clipped,
              "latency": net.latency, "agreement": agreement, "files": [str(f) for f in files]}
    return report, 0


def _spinnaker(name: str):
    """The deploy function of SpiNNaker machine ``name`` (module docstring)."""

    def deploy(args, graph) -> tuple:
        import torch

        from ..core.errors import HardwareLimitError, UnsupportedLayerError
        from ..energy import EnergyReport, get_models
        from ..hardware_targets.spinnaker import map_graph
        from ..hardware_targets.spinnaker.energy import emulation_counts, router_priced
        from ..hardware_targets.spinnaker.export import write_pynn, write_spinnaker2
        from ..ir.build import GraphNetwork

        size = _chips(args)
        try:
            mapping = map_graph(graph, name, **size)
        except HardwareLimitError as e:
            return {"target": name, "fits": False, "limit": e.target, "usage": e.usage}, 1
        files = [args.out / "mapping.json"]
        files[0].write_text(json.dumps(mapping.to_dict()))
        inputs = {k: v[:, 0] for k, v in _inputs(args, graph).items()}             # [T, n], first row
        steps = next(iter(inputs.values())).shape[0] if inputs else args.steps
        emu = mapping.emulate(inputs, steps)
        ref = GraphNetwork(mapping.quantized_graph())(
            {k: torch.from_numpy(v)[:, None] for k, v in inputs.items()} or None, steps)      # {pop: [T, 1, n]}
        per = {k: float((emu.spikes[k] == ref[k][:, 0].numpy()).mean()) for k in emu.spikes}
        same = sum(int((emu.spikes[k] == ref[k][:, 0].numpy()).sum()) for k in emu.spikes)
        total = sum(emu.spikes[k].size for k in emu.spikes)
        skipped = {}
        for fname, write in (("network_spinnaker2.json", lambda f: write_spinnaker2(graph, f, inputs=inputs)),
                             ("model_pynn.py", lambda f: write_pynn(graph, f, inputs=inputs, steps=steps))):
            try:
                files.append(write(args.out / fname))
            except (UnsupportedLayerError, HardwareLimitError) as e:
                skipped[fname] = str(e)
        counts = emulation_counts(mapping, emu, inputs)
        builtin = get_models("spinnaker1,spinnaker2")
        models = builtin + [router_priced(next(m for m in builtin if m.name == name), mapping.machine)]
        energy = EnergyReport(counts, models).energy
        usage = mapping.usage()
        report = {"target": name, "fits": True, "usage": usage, "cores_used": usage["cores_used"],
                  "chips_used": usage["chips_used"], "routing_entries_max": usage["routing_entries_max"],
                  "steps": steps, "ticks": emu.ticks, "packets": emu.packets, "hops": emu.hops,
                  "late_or_dropped": emu.late, "router_energy_j": emu.router_energy_j,
                  "spikes": {k: int(v.sum()) for k, v in emu.spikes.items()},
                  "agreement": {"compared": "emulator vs GraphNetwork on the quantized graph", "steps": steps,
                                "identical": same / total if total else 1.0, "per_layer": per},
                  "energy_j": {m: e["energy_j"] for m, e in energy.items()},
                  "emulator": emu.to_dict(), "files": [str(f) for f in files], "exports_skipped": skipped}
        return report, 0

    return deploy


def _pynn(args, graph) -> tuple:
    import importlib.util
    import subprocess
    import sys

    import numpy as np
    import torch

    from ..hardware_targets.spinnaker.export import write_pynn
    from ..ir.build import GraphNetwork

    inputs = {k: v[:, 0] for k, v in _inputs(args, graph).items()}                 # [T, n], first row
    steps = next(iter(inputs.values())).shape[0] if inputs else args.steps
    path = write_pynn(graph, args.out / "model_pynn.py", inputs=inputs, steps=steps)
    usage = [{"population": k, "kind": type(v).__name__, "neurons": v.n, "cell": "IF_curr_delta"}
             for k, v in graph.populations().items()]
    report = {"target": "pynn", "fits": True, "usage": usage, "steps": steps, "files": [str(path)]}
    missing = [m for m in ("pyNN", "brian2") if importlib.util.find_spec(m) is None]
    if missing:
        report["pynn_run"] = "skipped: " + ", ".join(missing) + " not installed"
        return report, 0
    out = args.out / "pynn_spikes.npz"
    r = subprocess.run([sys.executable, str(path), "--backend", "brian2", "--out", str(out)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        report["pynn_run"] = "failed: " + r.stderr[-2000:]
        return report, 2
    got = dict(np.load(out))
    ref = GraphNetwork(graph)({k: torch.from_numpy(v)[:, None] for k, v in inputs.items()} or None, steps)
    per = {k: float((got[k] == ref[k][:, 0].numpy()).mean()) for k in got}
    same = sum(int((got[k] == ref[k][:, 0].numpy()).sum()) for k in got)
    total = sum(got[k].size for k in got)
    report.update(pynn_run="PyNN on Brian2", files=[str(path), str(out)],
                  spikes={k: int(v.sum()) for k, v in got.items()},
                  agreement={"compared": "PyNN (Brian2 backend) vs GraphNetwork", "steps": steps,
                             "identical": same / total if total else 1.0, "per_layer": per})
    return report, 0


def _egru(name: str):
    """The deploy function of the EGRU LM on SpiNNaker machine ``name`` (module docstring)."""

    def deploy(args, model) -> tuple:
        from ..core.errors import HardwareLimitError
        from ..hardware_targets.spinnaker.egru_emulator import egru_emulated

        size = _chips(args)
        try:
            rep = egru_emulated(model=model, density=args.density, valid_chars=args.valid_chars, scale=args.scale,
                                machine=name, frac_bits=args.frac_bits, token_ms=args.token_ms, routing=True, **size)
        except HardwareLimitError as e:
            return {"target": name, "model": "EGRULM", "fits": False, "limit": e.target, "usage": e.usage}, 1
        routing = rep.pop("routing")
        files = [args.out / "egru_report.json", args.out / "egru_routing.json"]
        report = {"target": name, "model": "EGRULM", **rep, "files": [str(f) for f in files]}
        files[0].write_text(json.dumps(report, indent=1))
        files[1].write_text(json.dumps(routing))
        return report, 0

    return deploy


TARGETS = {"nir": lambda args, graph: (_nir(args, graph), 0), "loihi": _loihi,
           "spinnaker1": _spinnaker("spinnaker1"), "spinnaker2": _spinnaker("spinnaker2"), "pynn": _pynn}
# targets that take an EGRU language model folder (model -> report, exit code)
EGRU_TARGETS = {"spinnaker1": _egru("spinnaker1"), "spinnaker2": _egru("spinnaker2")}


def _chips(args) -> dict:
    """Machine size overrides from ``--chips W,H``."""
    from ..core.errors import ParameterError

    if args.chips is None:
        return {}
    try:
        w, h = (int(a) for a in args.chips.split(","))
    except ValueError:
        raise ParameterError("neuro deploy", "--chips", args.chips, "two integers W,H") from None
    return {"width": w, "height": h}


def _rows(usage) -> list:
    """Printable rows of a report's usage: a list of rows, or SpiNNaker's per-core and per-chip rows."""
    return usage["cores"] + usage["chips"] if isinstance(usage, dict) else usage


def egru_summary(r: dict) -> str:
    """Text lines of an EGRU LM deployment report (also printed by ``neuro demo``)."""
    q, pt = r["quality"], r["per_token"]
    a, pa = r["analytic"]["per_token"], r["paper"]
    lines = [f"EGRU LM on {r['machine']}: density {r['density']}, {r['tokens']} tokens, "
             f"{r['pes_used']} PEs + 1 I/O core on {r['chips_used']} chip(s), routing entries max {r['routing_entries_max']} "
             f"(uncompressed {r['routing_entries_uncompressed_max']})",
             f"  BPC float {q['float']['bpc']:.4f}, pruned {q['pruned']['bpc']:.4f}, pruned+int8 "
             f"{q['pruned_quantized']['bpc']:.4f}, fixed point on the emulator {r['bpc_fixed_point']:.4f}",
             f"  packets {r['packets']} ({pt['packets']:.1f}/token, {r['packet_bits']}-bit), hops {r['hops']}, "
             f"dropped {r['dropped']}, late tokens {r['late_tokens']} of {r['tokens']} "
             f"(token period {r['token_ms']} ms)",
             f"  events identical to the dense fixed-point run: {r['agreement']['identical']:.4f}",
             f"  per token: latency {pt['latency_s'] * 1e3:.3f} ms (analytic {a['latency_s'] * 1e3:.3f} ms), "
             f"energy {pt['energy_j']:.3e} J (dynamic {pt['dynamic_j']:.3e} J; analytic {a['energy_j']:.3e} J)",
             f"  paper (SpiNNaker 2, word-level WikiText-2 EGRU, per inference): {pa['spinnaker2_j']} J, "
             f"{pa['spinnaker2_s'] * 1e3:.2f} ms; A100 {pa['a100_j']} J"]
    return "\n".join(lines)


def json_report(report: dict) -> dict:
    """The report as ``--json`` prints it: ``agreement`` is the fraction of identical spikes (or events),
    and ``agreement_detail`` says what was compared, over how many steps, and the per-layer figures."""
    a = report.get("agreement")
    if not isinstance(a, dict):
        return report
    return {**report, "agreement": a["identical"], "agreement_detail": a}


def run(args) -> int:
    from ..core.errors import UnsupportedLayerError
    from ..io import load_model
    from ..models.egru_lm import EGRULM

    created = not args.out.exists()
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        model = load_model(args.model)
        if isinstance(model, EGRULM):
            if args.target not in EGRU_TARGETS:
                raise UnsupportedLayerError([("rnn", "EGRULM (gated units)")],
                                            context=f"--target {args.target} (EGRU LMs: {', '.join(sorted(EGRU_TARGETS))})")
            report, code = EGRU_TARGETS[args.target](args, model)
        else:
            report, code = TARGETS[args.target](args, _graph(args, model))
    except BaseException:
        if created and not any(args.out.iterdir()):  # bad input: leave no empty output folder behind
            args.out.rmdir()
        raise
    if args.json:
        print(json.dumps(json_report(report)))
    else:
        print(f"target {report['target']}: {'fits' if report['fits'] else 'does NOT fit'}")
        for row in _rows(report["usage"]):
            print("  " + ", ".join(f"{k}={v}" for k, v in row.items()))
        if "agreement" in report:
            a = report["agreement"]
            print(f"agreement ({a['compared']}): {a['identical']:.4f} identical")
        if report.get("model") == "EGRULM" and report["fits"]:
            print(egru_summary(report))
        for f in report.get("files", []):
            print(f"wrote {f}")
    return code
