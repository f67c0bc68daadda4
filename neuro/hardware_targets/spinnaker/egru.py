r"""The EGRU language model on SpiNNaker 2: pruning, int8 quantization, PE mapping, per-token cost.

The SpiNNaker 2 EGRU LM (Nazeer et al., AICAS 2024; REFERENCE §4) stores pruned int8 weights in CSR
in the PEs' SRAM and sends a multicast packet per graded event. This module does the same with a
neuro :class:`~neuro.models.egru_lm.EGRULM`:

1. **Prune** each recurrent-layer matrix (``w_ih`` [3H, I], ``w_hh`` [3H, H]) by magnitude to
   ``density``: the :math:`\lfloor d\,N + 1/2 \rfloor` largest :math:`|w|` are kept (ties: lower flat index).
   **Quantize** each row :math:`r` (one gate of one unit) to int8,
   :math:`q = \mathrm{clip}(\mathrm{round}(w / s_r), -127, 127)` with :math:`s_r = \max|w_r| / 127`
   (``scale='float'``) or the smallest power of two :math:`2^k \ge \max|w_r| / 127` (``scale='pow2'``,
   a shift). The compressed model is an ordinary EGRULM holding :math:`q\,s_r` (dequantized weights).
   Embedding, biases, thresholds and the read-out stay float (the read-out runs on the host).
2. **Map** each layer's units onto PEs in contiguous slices. A PE with units ``lo:hi`` holds, for each
   presynaptic input and recurrent unit, a CSR row with the nonzero weights of its 3 x n gate rows
   (a word = int8 weight + 8-bit local index, ``synapse_word_bytes``; a header of ``row_header_bytes``
   per row), plus :data:`UNIT_BYTES` per unit (row scales, biases, threshold, states, accumulators).
   A slice grows while it stays within ``neurons_per_core`` and ``core_budget_bytes``;
   :class:`~neuro.core.errors.HardwareLimitError` with per-PE usage when one unit alone does not fit or
   the PEs exceed the machine.
3. **Run and count** (batch 1, event-driven path): at token :math:`t` a PE of layer :math:`l` receives one
   packet per nonzero input of the layer (embedding entries for layer 0, events of layer
   :math:`l-1` at :math:`t`) and per event of its own layer at :math:`t-1`; each packet walks its CSR
   row (one synaptic op per stored weight). It evaluates 3 gate nonlinearities and one state update
   per unit and sends one multicast packet per event of its units. Cycles per PE:

   .. math:: C = P_{in}\,c_{packet} + S\,c_{syn} + n\,c_{update} + 3n\,c_{nl}

   from the machine's cycle costs (:data:`CYCLES_PER_NONLINEAR` assumed); per-token latency
   :math:`\sum_l \max_{PE \in l} C / f_{clock}`. Energy: the ``spinnaker2`` energy model with its
   routers priced per packet (:func:`~neuro.hardware_targets.spinnaker.energy.router_priced`) for
   the dynamic part, plus the chip static power :math:`N_{chips} P_{chip}` times the latency.
   The A100 figure prices the dense products of the same model on the ``gpu`` model.

The same network run packet by packet through the routers, with fixed-point payloads and events
checked against a dense run: :mod:`.egru_emulator`.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ...core.errors import HardwareLimitError, ParameterError
from .machine import Machine, load_machine

# bytes per unit in a PE besides its CSR rows: 6 row scales (3 gates x {input, recurrent}, float32),
# 3 + 1 biases, the threshold, states c and y, 6 gate accumulators (input and recurrent parts kept
# apart: the z gate needs r * (R_z y + b_rz)); all 32-bit words
UNIT_BYTES = {"row_scales": 24, "biases": 16, "threshold": 4, "states": 8, "accumulators": 24}
UNIT_BYTES_TOTAL = sum(UNIT_BYTES.values())
# assumption (not a published figure): a sigmoid or tanh from expf on the Cortex-M4F FPU
CYCLES_PER_NONLINEAR = 40
SCALES = ("float", "pow2")
BUNDLED_MODEL = Path(__file__).resolve().parents[2] / "data" / "models" / "egru-char"
PAPER = {"spinnaker2_j": 0.0653, "spinnaker2_s": 0.17025, "spinnaker2_w": 0.39, "a100_j": 1.1935,
         "a100_s": 0.0199, "perplexity_wt2": 81.4,
         "source": "Nazeer et al., AICAS 2024, Table II (REFERENCE §4): batch-1 inference, WikiText-2 word-level"}


# -- pruning and quantization ---------------------------------------------------------------------------
def _check_density(owner: str, density) -> float:
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0 < density <= 1:
        raise ParameterError(owner, "density", density, "in (0, 1]")
    return float(density)


def prune_magnitude(w: torch.Tensor, density: float) -> torch.Tensor:
    """``w`` with all but its ``round(density * numel)`` largest-magnitude entries set to 0 (ties: lower
    flat index kept first). Shape: any -> same."""
    d = _check_density("prune_magnitude", density)
    n = w.numel()
    k = int(math.floor(d * n + 0.5))
    flat = w.detach().reshape(-1)
    order = np.argsort(-flat.abs().numpy(), kind="stable")[:k]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.from_numpy(order.copy())] = True
    return torch.where(mask, flat, torch.zeros_like(flat)).reshape(w.shape)


def quantize_rows(w: torch.Tensor, scale: str = "float") -> tuple:
    """int8 weights and per-row scales (module docstring). Shape: w [R, C] -> (q int8 [R, C], s float32 [R])."""
    if scale not in SCALES:
        raise ParameterError("quantize_rows", "scale", scale, "one of " + ", ".join(SCALES))
    w = w.detach().to(torch.float32)
    m = w.abs().amax(1) / 127.0                                    # [R]
    if scale == "pow2":
        s = torch.where(m > 0, torch.exp2(torch.ceil(torch.log2(m.clamp_min(1e-30)))), torch.ones_like(m))
    else:
        s = torch.where(m > 0, m, torch.ones_like(m))
    q = torch.clamp(torch.round(w / s[:, None]), -127, 127).to(torch.int8)
    return q, s


def compress_lm(model, density: float = 1.0, quantize: bool = True, scale: str = "float"):
    """A copy of the EGRULM ``model`` with every recurrent layer's ``w_ih`` and ``w_hh`` pruned to
    ``density`` and (``quantize``) replaced by their int8 x row-scale values. Returns (model, report)
    with per-matrix shape, nonzeros and the largest quantization error."""
    from ...models.egru_lm import EGRULM

    if not isinstance(model, EGRULM):
        raise ParameterError("compress_lm", "model", type(model).__name__, "an EGRULM")
    d = _check_density("compress_lm", density)
    out = copy.deepcopy(model)
    report = []
    with torch.no_grad():
        for li, layer in enumerate(out.rnn.layers):
            for name in ("w_ih", "w_hh"):
                p = getattr(layer, name)
                w = prune_magnitude(p, d)
                err = 0.0
                if quantize:
                    q, s = quantize_rows(w, scale)
                    wq = q.to(torch.float32) * s[:, None]
                    err = float((wq - w).abs().max())
                    w = wq
                p.copy_(w)
                report.append({"layer": li, "matrix": name, "shape": list(p.shape), "nonzeros": int((w != 0).sum()),
                               "density": int((w != 0).sum()) / w.numel(), "max_abs_error": err})
    return out, report


# -- mapping ----------------------------------------------------------------------------------------------
def _row_counts(layer) -> tuple:
    """Nonzeros per (presynaptic column, unit) over the 3 gates. Shape: ([I, H], [H, H]) int64."""
    H = layer.hidden_size
    out = []
    for w in (layer.w_ih, layer.w_hh):
        nz = (w.detach() != 0).reshape(3, H, -1).sum(0)            # [H, K]
        out.append(nz.t().numpy().astype(np.int64))                # [K, H]
    return tuple(out)


def slice_memory(n_in: int, n_rec: int, units: int, nonzeros: int, machine: Machine) -> int:
    """SRAM bytes of a PE slice: CSR row headers for every input and recurrent row, one synapse word per
    stored weight, :data:`UNIT_BYTES_TOTAL` per unit."""
    return (n_in + n_rec) * machine.row_header_bytes + nonzeros * machine.synapse_word_bytes + units * UNIT_BYTES_TOTAL


def map_egru(model, machine="spinnaker2", **machine_overrides) -> list:
    """PE slices of the EGRULM ``model``'s layers (module docstring): one dict per PE with layer, lo,
    hi, units, nonzeros (input, recurrent), memory_bytes, budget, chip and pe."""
    return slice_layers([_row_counts(layer) for layer in model.rnn.layers],
                        load_machine(machine, **machine_overrides))


def slice_layers(counts: list, m: Machine) -> list:
    """PE slices (as :func:`map_egru`) of layers given by their nonzero counts per (presynaptic
    column, unit): ``counts`` = [(c_in [I, H], c_rec [H, H]), ...]. HardwareLimitError with per-PE
    usage when one unit does not fit a PE or the PEs exceed the machine."""
    budget, cap = m.core_budget_bytes, m.neurons_per_core
    pes = []
    for li, (c_in, c_rec) in enumerate(counts):
        per_unit = c_in.sum(0) + c_rec.sum(0)                          # [H] stored weights of each unit
        I, H = c_in.shape
        lo = 0
        while lo < H:
            hi, nnz = lo, 0
            while hi < H and hi - lo < cap and \
                    slice_memory(I, H, hi + 1 - lo, nnz + int(per_unit[hi]), m) <= budget:
                nnz += int(per_unit[hi])
                hi += 1
            if hi == lo:
                need = slice_memory(I, H, 1, int(per_unit[lo]), m)
                raise HardwareLimitError(m.name, [{"layer": li, "unit": lo, "pe": len(pes), "memory_bytes": need,
                                                   "memory_budget_bytes": budget}] + [_usage(p) for p in pes])
            pes.append({"layer": li, "lo": lo, "hi": hi, "units": hi - lo,
                        "nonzeros_in": int(c_in[:, lo:hi].sum()), "nonzeros_rec": int(c_rec[:, lo:hi].sum()),
                        "memory_bytes": slice_memory(I, H, hi - lo, nnz, m), "memory_budget_bytes": budget})
            lo = hi
    total = m.width * m.height * len(m.app_cores)
    if len(pes) > total:
        raise HardwareLimitError(m.name, [{"pes_needed": len(pes), "pes_available": total}] + [_usage(p) for p in pes])
    per_chip = len(m.app_cores)
    for i, p in enumerate(pes):
        chip = i // per_chip
        p["chip"] = [chip % m.width, chip // m.width]
        p["pe"] = m.app_cores[i % per_chip]
    return pes


def _usage(p: dict) -> dict:
    return {k: p[k] for k in ("layer", "lo", "hi", "units", "memory_bytes", "memory_budget_bytes")}


# -- the event-driven run and its counts ------------------------------------------------------------------
@torch.no_grad()
def run_events(model, ids: torch.Tensor) -> dict:
    """Stream ``ids`` [L] through ``model`` (batch 1, event-driven path, state from zero).

    Returns {"logits": [L, V], "inputs": per layer [L, I], "events": per layer [L, H] (graded y),
    "stats_events": per layer the cell's own event count}."""
    was, prop = model.training, model.rnn.propagation
    model.eval()
    model.rnn.propagation = "event"
    model.reset()
    model.reset_stats()
    x = model.embedding(ids[:, None])                                # [L, 1, E]
    inputs, events = [], []
    for layer in model.rnn.layers:
        out = layer(x)
        y = out[0] if isinstance(out, tuple) else out                # [L, 1, H]
        inputs.append(x[:, 0])
        events.append(y[:, 0])
        x = out[1] if isinstance(out, tuple) else out
    logits = model.head(x)[:, 0]                                     # [L, V]
    stats = [layer.stats.events for layer in model.rnn.layers]
    model.reset()
    model.rnn.propagation = prop
    model.train(was)
    return {"logits": logits, "inputs": inputs, "events": events, "stats_events": stats}


def pe_counts(model, pes: list, run: dict) -> list:
    """Per PE, per token counts (module docstring): packets_in, synops, packets_out (= events of its
    units), nonlinear, updates. Each value int64 [L]."""
    out = []
    for li, layer in enumerate(model.rnn.layers):
        c_in, c_rec = _row_counts(layer)
        a_in = (run["inputs"][li] != 0).numpy().astype(np.int64)      # [L, I]
        ev = (run["events"][li] != 0).numpy().astype(np.int64)        # [L, H]
        a_rec = np.vstack([np.zeros((1, ev.shape[1]), np.int64), ev[:-1]])  # events of t-1  [L, H]
        for p in (q for q in pes if q["layer"] == li):
            lo, hi = p["lo"], p["hi"]
            L = a_in.shape[0]
            out.append({"packets_in": a_in.sum(1) + a_rec.sum(1),
                        "synops": a_in @ c_in[:, lo:hi].sum(1) + a_rec @ c_rec[:, lo:hi].sum(1),
                        "packets_out": ev[:, lo:hi].sum(1),
                        "nonlinear": np.full(L, 3 * p["units"], np.int64),
                        "updates": np.full(L, p["units"], np.int64)})
    return out


def pe_cycles(c: dict, m: Machine) -> np.ndarray:
    """Cycles of one PE per token. Shape: [L]."""
    return (c["packets_in"] * m.cycles_per_packet + c["synops"] * m.cycles_per_synaptic_event
            + c["updates"] * m.cycles_per_neuron_update + c["nonlinear"] * CYCLES_PER_NONLINEAR)


def _counts(pes, counts, model):
    from ...energy.counter import Counts, LayerCounts

    layers = {}
    for p, c in zip(pes, counts):
        name = f"layer {p['layer']} units {p['lo']}:{p['hi']} @ chip {p['chip'][0]},{p['chip'][1]} pe {p['pe']}"
        lay = model.rnn.layers[p["layer"]]
        L = len(c["synops"])
        dense = np.full(L, 3 * p["units"] * (lay.input_size + lay.hidden_size), np.int64)
        layers[name] = LayerCounts(name, "EGRUSlice", "neuron", {
            "mac": c["synops"], "mac_dense": dense, "nonlinear": c["nonlinear"],
            "neuron_update_active": c["packets_out"], "neuron_update_inactive": c["updates"] - c["packets_out"],
            "spike": c["packets_out"], "packet": c["packets_out"]}, p["units"])
    return Counts(layers, "EGRU LM on SpiNNaker 2 (PE slices)")


def _bpc(logits: torch.Tensor, ids: torch.Tensor) -> float:
    ce = torch.nn.functional.cross_entropy(logits[:-1], ids[1:], reduction="mean")
    return float(ce) / math.log(2)


def model_and_text(owner: str, model, model_dir, density, ids, valid_chars: int):
    """The EGRU LM to deploy (``model``, else the folder ``model_dir``, else the bundled one) and the token
    ids to run (``ids``, else the first ``valid_chars`` characters of the Tiny Shakespeare valid split,
    encoded with the model's own vocabulary), after checking ``density``. Shape: ids -> [N] int64."""
    from ...io import load_model
    from ...models.egru_lm import EGRULM

    if model is None:
        model = load_model(Path(model_dir) if model_dir is not None else BUNDLED_MODEL)
    if not isinstance(model, EGRULM):
        raise ParameterError(owner, "model", type(model).__name__, "an EGRULM")
    _check_density(owner, density)
    if ids is None:
        if isinstance(valid_chars, bool) or not isinstance(valid_chars, int) or valid_chars < 2:
            raise ParameterError(owner, "valid_chars", valid_chars, "an integer >= 2")
        from ...data.text import tinyshakespeare

        splits = tinyshakespeare()
        ids = model.tokenizer.encode(splits.tokenizer.decode(splits.valid[:valid_chars]))
    return model, torch.as_tensor(ids, dtype=torch.int64)


def egru_on_spinnaker2(model_dir=None, density: float = 0.5, valid_chars: int = 2000, scale: str = "float",
                       machine="spinnaker2", model=None, ids: Optional[torch.Tensor] = None,
                       **machine_overrides) -> dict:
    """Prune, quantize, map and run the EGRU LM (module docstring); a JSON-ready report.

    ``model_dir``: an EGRULM folder (default: the bundled ``egru-char``), or pass ``model`` directly;
    ``ids``: the token ids [L] to score (default: the first ``valid_chars`` of the Tiny Shakespeare
    valid split). BPC is the mean over ``L - 1`` next-character predictions, perplexity :math:`2^{BPC}`
    (per character)."""
    from ...energy.report import total_energy
    from ...energy.targets import builtin_models
    from .energy import router_priced

    model, ids = model_and_text("egru_on_spinnaker2", model, model_dir, density, ids, valid_chars)
    m = load_machine(machine, **machine_overrides)
    pruned, _ = compress_lm(model, density, quantize=False)
    quant, qreport = compress_lm(model, density, quantize=True, scale=scale)
    quality, runs = {}, {}
    for name, net in (("float", model), ("pruned", pruned), ("pruned_quantized", quant)):
        runs[name] = run_events(net, ids)
        b = _bpc(runs[name]["logits"], ids)
        quality[name] = {"bpc": b, "perplexity": 2.0 ** b}
    run = runs["pruned_quantized"]
    pes = map_egru(quant, m)
    counts = pe_counts(quant, pes, run)
    L = len(ids)
    cyc = [pe_cycles(c, m) for c in counts]
    n_layers = len(quant.rnn.layers)
    layer_cycles = np.zeros((n_layers, L), np.int64)
    for p, c in zip(pes, cyc):
        layer_cycles[p["layer"]] = np.maximum(layer_cycles[p["layer"]], c)
    latency = layer_cycles.sum(0) / m.clock_hz                         # [L] seconds per token
    chips = len({tuple(p["chip"]) for p in pes})
    models = builtin_models()
    cnt = _counts(pes, counts, quant)
    s2 = router_priced(models["spinnaker2"], m)
    dyn = total_energy(cnt, s2)["dynamic_j"] / L
    static_w = chips * s2.static.power_w_per_chip
    gpu = total_energy(cnt, models["gpu"])["dynamic_j"] / L
    lat = float(latency.mean())
    events = [int(e.ne(0).sum()) for e in run["events"]]
    return {
        "machine": m.name, "density": density, "scale": scale, "tokens": L,
        "layers": [{"input": lay.input_size, "hidden": lay.hidden_size} for lay in quant.rnn.layers],
        "quality": quality, "compression": qreport,
        "pes_used": len(pes), "chips_used": chips,
        "memory_per_pe_bytes": {"max": max(p["memory_bytes"] for p in pes),
                                "min": min(p["memory_bytes"] for p in pes), "budget": m.core_budget_bytes},
        "pes": pes,
        "events": events, "events_per_token": sum(events) / L,
        "activity_sparsity": [1 - e / (L * lay.hidden_size) for e, lay in zip(events, quant.rnn.layers)],
        "packets": int(sum(c["packets_out"].sum() for c in counts)),
        "packets_in": int(sum(c["packets_in"].sum() for c in counts)),
        "synops": int(sum(c["synops"].sum() for c in counts)),
        "nonlinear": int(sum(c["nonlinear"].sum() for c in counts)),
        "per_token": {"latency_s": lat, "latency_s_max": float(latency.max()),
                      "cycles_per_layer": layer_cycles.mean(1).tolist(),
                      "dynamic_j": dyn, "static_j": static_w * lat, "energy_j": dyn + static_w * lat,
                      "a100_dense_j": gpu},
        "paper": PAPER,
        "differences": ("ours: a char-level EGRU LM (Tiny Shakespeare, layers "
                        + ", ".join(str(lay.hidden_size) for lay in quant.rnn.layers)
                        + "), figures per character token from counted events and assumed cycle costs; "
                        "the paper: a word-level WikiText-2 EGRU LM (3 layers 1350/1350/750), measured power "
                        "and time per batch-1 inference; the A100 figure here is a datasheet-peak dense bound "
                        "of our model, theirs a measured run"),
    }
