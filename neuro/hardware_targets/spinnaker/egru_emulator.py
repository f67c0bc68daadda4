r"""The EGRU language model through the packet-level event-graph emulator on SpiNNaker 2.

:mod:`.egru` counts the EGRU LM's work by formula; this module runs it: the pruned, int8 network is
placed on PEs, every graded event travels as a multicast packet with a fixed-point payload through
the routers (keys, trees and compressed tables of :mod:`.routing`), every PE accumulates its CSR rows
packet by packet and updates its units, and the host reads the last layer's events out.

**The fixed-point network** (:func:`fixed_egru`). Each layer's ``w_ih`` [3H, I] and ``w_hh`` [3H, H] is
pruned and quantized per row as in :mod:`.egru` (:math:`w \approx q\,s_r`, ``q`` int8). Graded
events and embedding entries travel as payloads :math:`a = \mathrm{round}(v\,2^f)` (``frac_bits``
``f``, a signed ``payload_bits`` word; an embedding entry out of range raises
:class:`~neuro.core.errors.HardwareLimitError`). A PE holding units ``lo:hi`` keeps, per gate row,
an integer input accumulator and an integer recurrent accumulator

.. math:: A^{in}_r = \sum_j q^{ih}_{rj}\,a^{in}_j, \qquad A^{rec}_r = \sum_k q^{hh}_{rk}\,a^{y}_k(t-1)

(integers: exact in any order, so packet arrival order does not matter), then per unit, in float64
(:func:`egru_update`, REFERENCE §1, gates u, r, z):

.. math::
    g = A^{in} s^{ih} 2^{-f} + b, \quad h = A^{rec} s^{hh} 2^{-f}, \quad
    u = \sigma(g_u + h_u), \ r = \sigma(g_r + h_r), \ z = \tanh(g_z + r (h_z + b_{rz}))

    c \leftarrow u c + (1 - u) z, \quad o = [c > \theta], \quad a^{y} = \mathrm{round}(o\,c\,2^f), \quad
    c \leftarrow c - o\,\theta

with :math:`\sigma(x) = (1 + \tanh(x/2))/2` and ``tanh`` from the C library one value at a time, so
a unit's result does not depend on how units are grouped into PEs. The recurrent accumulator is
double-buffered (tokens ``t`` and ``t + 1``): a PE may receive its layer's events of token ``t``
before every PE of the layer has updated. The read-out :math:`W_o\,a^{y}_{last} 2^{-f} + b_o` runs on
the host. :func:`reference_run` is the same network run densely, layer by layer (integer matrix
products); the emulator's events and logits equal it bit for bit (test), and it equals neuro's own
:class:`~neuro.neurons.egru.EGRUCell` in float64 on the dequantized weights up to the payload
rounding (test).

**Placement and routing.** PEs as :func:`~neuro.hardware_targets.spinnaker.egru.map_egru`; one more
core (next after the PEs) is the host's I/O core: it sends the token's embedding entries (one packet
per nonzero entry) and receives the last layer's events. A PE's key block targets the PEs of its
own layer that hold a nonzero recurrent weight from its units, the PEs of the next layer that hold a
nonzero input weight from them, and (last layer) the I/O core. Packets are ``packet_bits +
payload_bits`` long; a packet whose delivered cores differ from its block's targets counts as
dropped.

**Per-token time.** Token ``t``: the I/O core sends the embedding; layer by layer, every PE processes
its input packets, updates its units (3 nonlinearities each) and sends its events. A PE's cycles at
token ``t``:

.. math:: C = P\,c_{packet} + S\,c_{syn} + n\,c_{update} + 3n\,c_{nl}

(``P`` packets and ``S`` synaptic operations consumed at ``t``: the input packets of ``t`` and the
recurrent packets of ``t - 1``), so the counts equal :func:`~neuro.hardware_targets.spinnaker.egru.pe_counts`
of the same events (test). Token latency :math:`\sum_l \max_{PE \in l} C / f_{clock}`; a token whose
latency exceeds the token period ``token_ms`` is late, a PE whose cycles exceed it is overloaded.
Energy: the machine's energy model (``spinnaker2`` unless ``spinnaker1``) with routers priced per
packet and hop for ``packet_bits + payload_bits`` bits (:func:`~neuro.hardware_targets.spinnaker.energy.router_priced`), plus the
chips' static power times the latency.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...core.errors import HardwareLimitError, ParameterError, ShapeError
from .egru import (CYCLES_PER_NONLINEAR, PAPER, _check_density, prune_magnitude,
                   quantize_rows, slice_layers)
from .machine import Machine, load_machine
from .partition import Slice
from .routing import route_targets, walk

_TANH = np.frompyfunc(math.tanh, 1, 1)


def _tanh(x: np.ndarray) -> np.ndarray:
    """C-library tanh, one value at a time (the same bits whatever the array's length or alignment)."""
    return _TANH(x).astype(np.float64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 + 0.5 * _tanh(0.5 * x)


@dataclass
class FixedLayer:
    """One layer of the fixed-point network. Shapes: q_ih int64 [3H, I], q_hh int64 [3H, H], s_ih, s_hh,
    bias float64 [3H] (b_u, b_r, b_x), b_rz, theta float64 [H] (theta clamped to [0, 1])."""

    q_ih: np.ndarray
    s_ih: np.ndarray
    q_hh: np.ndarray
    s_hh: np.ndarray
    bias: np.ndarray
    b_rz: np.ndarray
    theta: np.ndarray

    @property
    def input_size(self) -> int:
        return self.q_ih.shape[1]

    @property
    def hidden_size(self) -> int:
        return self.q_hh.shape[1]

    def counts(self) -> tuple:
        """Nonzeros per (presynaptic column, unit) over the 3 gates. Shape: ([I, H], [H, H])."""
        H = self.hidden_size
        return tuple((q != 0).reshape(3, H, -1).sum(0).T.astype(np.int64) for q in (self.q_ih, self.q_hh))

    def rows(self, lo: int, hi: int) -> np.ndarray:
        """Gate rows of units lo:hi, gate-major (u, r, z). Shape: [3 (hi - lo)]."""
        H = self.hidden_size
        return np.concatenate([np.arange(lo, hi) + g * H for g in range(3)])


@dataclass
class FixedEGRU:
    """The pruned, int8, fixed-point EGRU LM (module docstring). ``embedding`` int64 [V, E] payloads;
    ``head_w`` [V, H_last], ``head_b`` [V] float64 (host read-out)."""

    embedding: np.ndarray
    layers: list
    head_w: np.ndarray
    head_b: np.ndarray
    frac_bits: int
    payload_bits: int
    density: float
    scale: str

    def logits(self, a_last: np.ndarray) -> np.ndarray:
        """Host read-out of last-layer payloads. Shape: [L, H] -> [L, V]."""
        return (a_last * 2.0 ** -self.frac_bits) @ self.head_w.T + self.head_b


def fixed_egru(model, density: float = 0.5, scale: str = "float", frac_bits: int = 16,
               payload_bits: int = 32) -> FixedEGRU:
    """Prune, quantize and convert the EGRULM ``model`` (module docstring)."""
    from ...models.egru_lm import EGRULM

    if not isinstance(model, EGRULM):
        raise ParameterError("fixed_egru", "model", type(model).__name__, "an EGRULM")
    d = _check_density("fixed_egru", density)
    for name, v, lo, hi in (("payload_bits", payload_bits, 8, 64), ("frac_bits", frac_bits, 0, payload_bits - 2)):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ParameterError("fixed_egru", name, v, f"an integer in [{lo}, {hi}]")
    layers = []
    with torch.no_grad():
        for layer in model.rnn.layers:
            qs = [quantize_rows(prune_magnitude(w, d), scale) for w in (layer.w_ih, layer.w_hh)]
            f64 = lambda t: t.detach().to(torch.float64).numpy().copy()
            (q_ih, s_ih), (q_hh, s_hh) = qs
            layers.append(FixedLayer(q_ih.numpy().astype(np.int64), f64(s_ih), q_hh.numpy().astype(np.int64), f64(s_hh),
                                     f64(layer.b_ih), f64(layer.b_rz), f64(layer.theta.clamp(0, 1))))
        emb = model.embedding.weight.detach().to(torch.float64).numpy()
        a = np.rint(emb * 2.0 ** frac_bits).astype(np.int64)
        lim = 2 ** (payload_bits - 1) - 1
        if np.abs(a).max() > lim:
            v, e = np.unravel_index(int(np.abs(a).argmax()), a.shape)
            raise HardwareLimitError(f"payload ({payload_bits}-bit, {frac_bits} fraction bits)", [{
                "population": "embedding", "token": int(v), "entry": int(e), "value": float(emb[v, e]),
                "max_abs": lim * 2.0 ** -frac_bits}])
        return FixedEGRU(a, layers, model.head.weight.detach().to(torch.float64).numpy().copy(),
                         model.head.bias.detach().to(torch.float64).numpy().copy(), frac_bits, payload_bits, d, scale)


def egru_update(acc_in: np.ndarray, acc_rec: np.ndarray, c: np.ndarray, s_in: np.ndarray, s_rec: np.ndarray,
                bias: np.ndarray, b_rz: np.ndarray, theta: np.ndarray, frac_bits: int) -> tuple:
    """One update of ``n`` units from their integer accumulators (module docstring). Shapes: acc_in,
    acc_rec, s_in, s_rec, bias [3n] (gate-major), c, b_rz, theta [n] -> (payloads int64 [n], c [n])."""
    n = c.shape[0]
    k = 2.0 ** -frac_bits
    g = acc_in * (s_in * k) + bias                                  # [3n]
    h = acc_rec * (s_rec * k)                                       # [3n]
    u = _sigmoid(g[:n] + h[:n])
    r = _sigmoid(g[n:2 * n] + h[n:2 * n])
    z = _tanh(g[2 * n:] + r * (h[2 * n:] + b_rz))
    c = u * c + (1.0 - u) * z
    o = c > theta
    a = np.rint(np.where(o, c, 0.0) * 2.0 ** frac_bits).astype(np.int64)
    return a, c - np.where(o, theta, 0.0)


def _check_ids(owner: str, net: FixedEGRU, ids) -> np.ndarray:
    ids = np.asarray(ids, dtype=np.int64)
    V = net.embedding.shape[0]
    if ids.ndim != 1 or ids.size < 1:
        raise ShapeError(owner, f"token ids of shape [L], L >= 1, got {ids.shape}")
    if ids.min() < 0 or ids.max() >= V:
        raise ParameterError(owner, "ids", int(ids.max() if ids.max() >= V else ids.min()), f"token ids in [0, {V})")
    return ids


def reference_run(net: FixedEGRU, ids) -> dict:
    """The fixed-point network run densely, layer by layer (batch 1). Returns {"events": per layer int64
    payloads [L, H], "logits": [L, V]}."""
    ids = _check_ids("reference_run", net, ids)
    L = ids.size
    events = [np.zeros((L, lay.hidden_size), np.int64) for lay in net.layers]
    c = [np.zeros(lay.hidden_size) for lay in net.layers]
    for t in range(L):
        x = net.embedding[ids[t]]                                       # [E] payloads
        for li, lay in enumerate(net.layers):
            prev = events[li][t - 1] if t else np.zeros(lay.hidden_size, np.int64)
            a, c[li] = egru_update(lay.q_ih @ x, lay.q_hh @ prev, c[li], lay.s_ih, lay.s_hh, lay.bias, lay.b_rz,
                                   lay.theta, net.frac_bits)
            events[li][t] = a
            x = a
    return {"events": events, "logits": net.logits(events[-1])}


# -- mapping --------------------------------------------------------------------------------------------
@dataclass
class EGRUMapping:
    """PE slices plus the I/O core (``slices``, :class:`~neuro.hardware_targets.spinnaker.partition.Slice`;
    node ``'layer<l>'`` or ``'host'``), the ``pes`` rows of :func:`slice_layers`, the routing and the
    per-PE CSR rows: ``csr[slice index][source slice index]`` = (indptr [n_src + 1], local rows, q)."""

    net: FixedEGRU
    machine: Machine
    pes: list
    slices: list
    routing: object
    csr: dict

    @property
    def io(self) -> Slice:
        return self.slices[-1]

    def usage(self) -> dict:
        r = self.routing
        return {"machine": self.machine.name, "cores_used": len(self.slices), "pes_used": len(self.pes),
                "chips_used": len({s.chip for s in self.slices}), "routing_entries_max": r.entries_max(),
                "routing_entries_uncompressed_max": max(r.uncompressed.values(), default=0),
                "key_blocks": len(r.blocks),
                "cores": [{"chip": list(s.chip), "core": s.core, "slice": s.label, "neurons": s.n,
                           "memory_bytes": s.memory_bytes, "memory_budget_bytes": self.machine.core_budget_bytes,
                           "synapses_in": s.synapses} for s in self.slices],
                "chips": [{"chip": list(c), "routing_entries": len(t),
                           "routing_entries_uncompressed": r.uncompressed[c],
                           "router_entries": self.machine.router_entries} for c, t in sorted(r.tables.items())]}


def _csr(q: np.ndarray, rows: np.ndarray, lo: int, hi: int) -> tuple:
    """CSR of the columns lo:hi of ``q``'s ``rows``: per column its local rows and int8 values."""
    sub = q[rows][:, lo:hi].T                                            # [n_src, 3n]
    nz = sub != 0
    indptr = np.concatenate([[0], np.cumsum(nz.sum(1))])
    cols, local = np.nonzero(nz)
    return indptr, local.astype(np.int64), sub[cols, local]


def map_fixed(net: FixedEGRU, machine="spinnaker2", compress: bool = True, **machine_overrides) -> EGRUMapping:
    """Place ``net`` (module docstring): PE slices within the SRAM budget, the I/O core, keys, trees
    and tables. HardwareLimitError when a unit does not fit a PE, the cores run out or a table stays
    above the router's size after compression."""
    m = load_machine(machine, **machine_overrides)
    if net.payload_bits > m.payload_packet_bits - m.packet_bits:
        raise HardwareLimitError(f"{m.name} (packets)", [{
            "payload_bits": net.payload_bits, "payload_bits_available": m.payload_packet_bits - m.packet_bits}])
    pes = slice_layers([lay.counts() for lay in net.layers], m)
    cores = [(c, k) for c in m.chips() for k in m.app_cores]
    if len(pes) + 1 > len(cores):
        raise HardwareLimitError(m.name, [{"cores_needed": len(pes) + 1, "cores_available": len(cores),
                                           "why": "the PEs plus the host I/O core"}])
    slices = []
    for i, p in enumerate(pes):
        lay = net.layers[p["layer"]]
        syn = int(p["nonzeros_in"] + p["nonzeros_rec"])
        slices.append(Slice(i, f"layer{p['layer']}", "neurons", p["lo"], p["hi"], p["memory_bytes"], 0, syn,
                            chip=tuple(p["chip"]), core=p["pe"]))
    E = net.embedding.shape[1]
    io = Slice(len(pes), "host", "source", 0, E, chip=cores[len(pes)][0], core=cores[len(pes)][1])
    slices.append(io)
    by_layer = {}
    for s in slices[:-1]:
        by_layer.setdefault(int(s.node[5:]), []).append(s)
    csr, targets = {}, {}
    n_layers = len(net.layers)
    for li, lay in enumerate(net.layers):
        for s in by_layer[li]:
            rows = lay.rows(s.lo, s.hi)
            srcs = [(io, lay.q_ih)] if li == 0 else [(p, lay.q_ih) for p in by_layer[li - 1]]
            srcs += [(p, lay.q_hh) for p in by_layer[li]]
            csr[s.index] = {}
            for src, q in srcs:
                ip, loc, val = _csr(q, rows, src.lo, src.hi)
                if ip[-1]:
                    csr[s.index][src.index] = (ip, loc, val)
                    targets.setdefault((src.index, 0), set()).add(s.index)
    for s in by_layer[n_layers - 1]:
        targets.setdefault((s.index, 0), set()).add(io.index)
    routing = route_targets(slices, targets, m, compress)
    return EGRUMapping(net, m, pes, slices, routing, csr)


# -- emulation -------------------------------------------------------------------------------------------
@dataclass
class EGRUEmulation:
    """Events per layer (int64 payloads [L, H]), logits [L, V] and the traffic and work counts: per PE
    (slice index) and token ``packets_in``, ``synops``, ``packets_out``, ``hops``, ``cycles`` [L]; totals;
    ``link_packets`` {(chip, link): packets}; ``latency_s`` per token [L]."""

    events: list
    logits: np.ndarray
    per_pe: dict
    io_packets: np.ndarray
    io_hops: np.ndarray
    packets: int
    hops: int
    dropped: int
    link_packets: dict
    latency_s: np.ndarray
    budget_cycles: float
    late_tokens: int
    overloaded_pe_tokens: int


def emulate_egru(mapping: EGRUMapping, ids, token_ms: float = 1.0) -> EGRUEmulation:
    """Run token ids [L] through ``mapping`` packet by packet (module docstring)."""
    net, m, R = mapping.net, mapping.machine, mapping.routing
    ids = _check_ids("emulate_egru", net, ids)
    if isinstance(token_ms, bool) or not isinstance(token_ms, (int, float)) or not 0 < token_ms < math.inf:
        raise ParameterError("emulate_egru", "token_ms", token_ms, "a finite number > 0")
    L, f = ids.size, net.frac_bits
    pe_slices = mapping.slices[:-1]
    io = mapping.io
    layer_of = {s.index: int(s.node[5:]) for s in pe_slices}
    at = {(s.chip, s.core): s for s in mapping.slices}
    block = {b.slice: b for b in R.blocks}
    targets = {b.index: set(b.targets) for b in R.blocks}
    ops = ("packets_in", "synops", "packets_out", "hops")
    per = {s.index: {k: np.zeros(L, np.int64) for k in ops} for s in pe_slices}
    io_packets, io_hops = np.zeros(L, np.int64), np.zeros(L, np.int64)
    acc_in = {s.index: np.zeros(3 * s.n, np.int64) for s in pe_slices}
    acc_rec = {s.index: np.zeros((2, 3 * s.n), np.int64) for s in pe_slices}        # double buffer
    c = {s.index: np.zeros(s.n) for s in pe_slices}
    params = {}
    for s in pe_slices:
        lay = net.layers[layer_of[s.index]]
        rows = lay.rows(s.lo, s.hi)
        params[s.index] = (lay.s_ih[rows], lay.s_hh[rows], lay.bias[rows], lay.b_rz[s.lo:s.hi], lay.theta[s.lo:s.hi])
    events = [np.zeros((L, lay.hidden_size), np.int64) for lay in net.layers]
    last = np.zeros((L, net.layers[-1].hidden_size), np.int64)
    routes, links = {}, {}
    total = {"packets": 0, "hops": 0, "dropped": 0}

    def send(src, neuron: int, payload: int, t: int):
        b = block[src.index]
        key = b.key | neuron
        if key not in routes:
            routes[key] = walk(R, m, b.chip, key)
        delivered, hops, used = routes[key]
        total["packets"] += 1
        total["hops"] += hops
        total["dropped"] += set(delivered) != targets[b.index]
        for lk, n in used.items():
            links[lk] = links.get(lk, 0) + n
        if src is io:
            io_packets[t] += 1
            io_hops[t] += hops
        else:
            per[src.index]["packets_out"][t] += 1
            per[src.index]["hops"][t] += hops
        for place in delivered:
            tgt = at[place]
            if tgt is io:
                last[t, src.lo + neuron] = payload
                continue
            ip, loc, val = mapping.csr[tgt.index][src.index]
            a, e = ip[neuron], ip[neuron + 1]
            recurrent = src is not io and layer_of[src.index] == layer_of[tgt.index]
            if recurrent:
                np.add.at(acc_rec[tgt.index][(t + 1) % 2], loc[a:e], val[a:e] * payload)
                if t + 1 >= L:
                    continue                                  # consumed after the run
            else:
                np.add.at(acc_in[tgt.index], loc[a:e], val[a:e] * payload)
            k = t + 1 if recurrent else t                     # the token that consumes it
            per[tgt.index]["packets_in"][k] += 1
            per[tgt.index]["synops"][k] += e - a

    by_layer = [[s for s in pe_slices if layer_of[s.index] == li] for li in range(len(net.layers))]
    for t in range(L):
        x = net.embedding[ids[t]]
        for j in np.nonzero(x)[0]:
            send(io, int(j), int(x[j]), t)
        for li, group in enumerate(by_layer):
            out = []
            for s in group:
                i = s.index
                s_in, s_rec, bias, b_rz, theta = params[i]
                a, c[i] = egru_update(acc_in[i], acc_rec[i][t % 2], c[i], s_in, s_rec, bias, b_rz, theta, f)
                acc_in[i][:] = 0
                acc_rec[i][t % 2][:] = 0
                events[li][t, s.lo:s.hi] = a
                out.append((s, a))
            for s, a in out:
                for n in np.nonzero(a)[0]:
                    send(s, int(n), int(a[n]), t)
    budget = m.clock_hz * token_ms * 1e-3
    layer_cycles = np.zeros((len(net.layers), L))
    for s in pe_slices:
        p = per[s.index]
        p["cycles"] = (p["packets_in"] * m.cycles_per_packet + p["synops"] * m.cycles_per_synaptic_event
                       + s.n * m.cycles_per_neuron_update + 3 * s.n * CYCLES_PER_NONLINEAR)
        li = layer_of[s.index]
        layer_cycles[li] = np.maximum(layer_cycles[li], p["cycles"])
    latency = layer_cycles.sum(0) / m.clock_hz
    over = sum(int((per[s.index]["cycles"] > budget).sum()) for s in pe_slices)
    return EGRUEmulation(events, net.logits(last), per, io_packets, io_hops, total["packets"], total["hops"],
                         total["dropped"], links, latency, budget, int((latency * m.clock_hz > budget).sum()), over)


def emulation_energy(mapping: EGRUMapping, emu: EGRUEmulation) -> dict:
    """Per-token energy of an emulated run (module docstring): dynamic, static, total (J) and the
    router part."""
    from ...energy.counter import Counts, LayerCounts
    from ...energy.report import total_energy
    from ...energy.targets import builtin_models
    from .energy import router_priced

    m, net = mapping.machine, mapping.net
    L = emu.latency_s.size
    layers = {}
    for s in mapping.slices[:-1]:
        p = emu.per_pe[s.index]
        name = f"{s.label} @ chip {s.chip[0]},{s.chip[1]} pe {s.core}"
        active = (emu.events[int(s.node[5:])][:, s.lo:s.hi] != 0).sum(1).astype(np.int64)
        layers[name] = LayerCounts(name, "EGRUSlice", "neuron", {
            "mac": p["synops"], "nonlinear": np.full(L, 3 * s.n, np.int64), "neuron_update_active": active,
            "neuron_update_inactive": s.n - active, "packet": p["packets_out"], "hop": p["hops"]}, s.n)
    layers["host I/O"] = LayerCounts("host I/O", "SourceCore", "passive",
                                     {"packet": emu.io_packets, "hop": emu.io_hops}, 0)
    bits = m.packet_bits + net.payload_bits
    models = builtin_models()
    model = router_priced(models.get(m.name, models["spinnaker2"]), m.replace(packet_bits=bits))
    e = total_energy(Counts(layers, f"EGRU LM on {m.name} (emulated)"), model)
    chips = len({s.chip for s in mapping.slices})
    lat = float(emu.latency_s.mean())
    dyn = e["dynamic_j"] / L
    static = chips * model.static.power_w_per_chip * lat
    router = (emu.packets + emu.hops) * bits * m.router_energy_j_per_bit / L
    return {"dynamic_j": dyn, "static_j": static, "energy_j": dyn + static, "router_j": router,
            "packet_bits": bits, "chips": chips}


def _bpc(logits: np.ndarray, ids: np.ndarray) -> float:
    z = logits[:-1]
    mx = z.max(1, keepdims=True)
    lse = (mx[:, 0] + np.log(np.exp(z - mx).sum(1)))
    nll = lse - z[np.arange(z.shape[0]), ids[1:]]
    return float(nll.mean() / math.log(2))


def egru_emulated(model_dir=None, density: float = 0.5, valid_chars: int = 200, scale: str = "float",
                  machine="spinnaker2", model=None, ids=None, frac_bits: int = 16, payload_bits: int = 32,
                  token_ms: float = 1.0, analytic: bool = True, routing: bool = False, **machine_overrides) -> dict:
    """Fixed-point EGRU LM through the packet emulator, checked against :func:`reference_run`; a
    JSON-ready report next to the analytic figures of :func:`~neuro.hardware_targets.spinnaker.egru.egru_on_spinnaker2`
    (``analytic=True``) and the paper's. ``ids``: token ids [L] (default: the first ``valid_chars``
    characters of the Tiny Shakespeare valid split, encoded with the model's vocabulary);
    ``routing=True`` adds the key blocks and tables."""
    from .egru import egru_on_spinnaker2, model_and_text

    model, ids = model_and_text("egru_emulated", model, model_dir, density, ids, valid_chars)
    ids = ids.numpy()
    m = load_machine(machine, **machine_overrides)
    net = fixed_egru(model, density, scale, frac_bits, payload_bits)
    mapping = map_fixed(net, m)
    emu = emulate_egru(mapping, ids, token_ms)
    ref = reference_run(net, ids)
    same = sum(int((a == b).sum()) for a, b in zip(emu.events, ref["events"]))
    size = sum(a.size for a in emu.events)
    L = ids.size
    energy = emulation_energy(mapping, emu)
    usage = mapping.usage()
    cyc = np.stack([emu.per_pe[s.index]["cycles"] for s in mapping.slices[:-1]])         # [PEs, L]
    report = {
        "machine": m.name, "density": density, "scale": scale, "tokens": L, "frac_bits": frac_bits,
        "payload_bits": payload_bits, "packet_bits": energy["packet_bits"], "token_ms": token_ms, "fits": True,
        "cores_used": usage["cores_used"], "pes_used": usage["pes_used"], "chips_used": usage["chips_used"],
        "routing_entries_max": usage["routing_entries_max"],
        "routing_entries_uncompressed_max": usage["routing_entries_uncompressed_max"],
        "packets": emu.packets, "hops": emu.hops, "dropped": emu.dropped,
        "late_tokens": emu.late_tokens, "overloaded_pe_tokens": emu.overloaded_pe_tokens,
        "budget_cycles": emu.budget_cycles, "link_load_max": max(emu.link_packets.values(), default=0),
        "events": [int((e != 0).sum()) for e in emu.events],
        "agreement": {"compared": "packet emulator vs the dense fixed-point run (integer accumulators, "
                                  "float64 gates)", "identical": same / size if size else 1.0,
                      "events_identical": same, "entries": size,
                      "logits_identical": bool(np.array_equal(emu.logits, ref["logits"]))},
        "bpc_fixed_point": _bpc(emu.logits, ids),
        "per_token": {"latency_s": float(emu.latency_s.mean()), "latency_s_max": float(emu.latency_s.max()),
                      "packets": emu.packets / L, "hops": emu.hops / L, **energy},
        "energy_j": energy["energy_j"],
        "per_pe": [{"slice": s.label, "chip": list(s.chip), "pe": s.core, "memory_bytes": s.memory_bytes,
                    "packets_in": int(emu.per_pe[s.index]["packets_in"].sum()),
                    "synops": int(emu.per_pe[s.index]["synops"].sum()),
                    "packets_out": int(emu.per_pe[s.index]["packets_out"].sum()),
                    "cycles_mean": float(cyc[k].mean()), "cycles_max": int(cyc[k].max())}
                   for k, s in enumerate(mapping.slices[:-1])],
        "usage": usage, "paper": PAPER,
    }
    if routing:
        R = mapping.routing
        report["routing"] = {
            "blocks": [{"key": b.key, "mask": b.mask, "n": b.n, "slice": mapping.slices[b.slice].label,
                        "chip": list(b.chip), "core": b.core, "targets": [[list(c), k] for c, k in b.targets]}
                       for b in R.blocks],
            "tables": [{"chip": list(c), "entries": [[e.key, e.mask, e.route] for e in t]}
                       for c, t in sorted(R.tables.items())]}
    if analytic:
        a = egru_on_spinnaker2(model=model, density=density, scale=scale, machine=m, ids=torch.as_tensor(ids))
        report["quality"] = a["quality"]
        report["analytic"] = {"pes_used": a["pes_used"], "packets": a["packets"], "per_token": a["per_token"],
                              "memory_per_pe_bytes": a["memory_per_pe_bytes"]}
    return report
