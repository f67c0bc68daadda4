r"""Multicast keys, routing trees, per-chip key/mask tables, their compression and a table-walk check.

**Keys.** Every packet source (a slice that emits spikes, and each stage of a delay-extension slice)
gets a block of 32-bit keys: ``key = block << b | neuron``, ``mask = ~(2^b - 1)``, with
:math:`b = \lceil \log_2 n_{max} \rceil` for the largest source slice.

**Trees.** A block's packets leave its core's chip and follow a shortest-path tree of the machine's
links (breadth-first from the source chip, links tried in link-number order, so every chip has one
parent and paths to several targets share their common prefix: a multicast tree). A chip of the tree
sends the packet on along the links to its children and to the cores of the targets it holds.

**Tables.** Each chip's router holds ``(key, mask, route)`` entries; a packet matches an entry when
``packet_key & mask == key``; the first match wins; ``route`` has bit ``l`` for link ``l`` and bit
``links + c`` for core ``c``. A packet that matches nothing goes straight on (out of the link
opposite to the one it came in by: default routing), so a chip where the tree goes straight through
and delivers to no core needs no entry. A packet from a local core must match.

**Compression.** A table longer than ``router_entries`` is compressed in two phases. First, entries
with the same route are merged pairwise into their smallest common key/mask cover as long as the
cover overlaps no key block that reaches this chip with another route (or by default routing);
keys no packet carries to this chip are don't-cares, and the order of the entries does not matter.
If the table is still too long, an ordered-covering phase sorts it by generality (fewest don't-care
bits first) and also accepts covers that overlap blocks of other routes, provided each block the
cover touches still meets an entry of its own route first (and a default-routed block meets none).
Either way every key that reaches the chip keeps its exact route. A table still too long raises
:class:`~neuro.core.errors.HardwareLimitError` naming the chip.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ...core.errors import HardwareLimitError, ParameterError
from ...ir.graph import Graph
from .delays import DelayPlan
from .machine import Machine


@dataclass(frozen=True)
class Block:
    """A packet source: ``n`` keys from ``key`` (mask ``mask``), sent by slice ``slice`` (``stage``:
    0 for a neuron or source slice, k for stage k of a delay extension) from ``chip``/``core`` to the
    ``targets`` (sorted (chip, core) pairs)."""

    index: int
    key: int
    mask: int
    n: int
    slice: int
    stage: int
    chip: tuple
    core: int
    targets: tuple


@dataclass(frozen=True)
class Entry:
    key: int
    mask: int
    route: int


@dataclass
class Routing:
    """Blocks, per-chip tables (chip -> list of :class:`Entry`), per-block trees (block index ->
    {chip: (out links, cores)}), table sizes before compression."""

    index_bits: int
    blocks: list
    tables: dict
    trees: dict = field(default_factory=dict)
    uncompressed: dict = field(default_factory=dict)

    def entries_max(self) -> int:
        return max((len(t) for t in self.tables.values()), default=0)


def encode_route(links, cores, machine: Machine) -> int:
    r = 0
    for l in links:
        r |= 1 << l
    for c in cores:
        r |= 1 << (machine.links + c)
    return r


def decode_route(route: int, machine: Machine) -> tuple:
    """(links, cores) of a route word."""
    links = [l for l in range(machine.links) if route >> l & 1]
    cores = [c for c in range(machine.cores_per_chip) if route >> (machine.links + c) & 1]
    return links, cores


# ----------------------------------------------------------------------------- blocks and targets
def _post_slices(slices: list) -> dict:
    """population -> (starts array, slice indices) of its neuron slices."""
    out = {}
    for s in slices:
        if s.kind == "neurons":
            starts, idx = out.setdefault(s.node, ([], []))
            starts.append(s.lo)
            idx.append(s.index)
    return {k: (np.asarray(a), b) for k, (a, b) in out.items()}


def block_targets(graph: Graph, slices: list, delays: DelayPlan) -> dict:
    """(source slice index, stage) -> set of target slice indices."""
    post = _post_slices(slices)
    rows = {}
    for s in slices:
        if s.kind in ("neurons", "source"):
            rows.setdefault(s.node, []).append(s)
    ext = {s.of: s.index for s in slices if s.kind == "delay"}
    out = {}
    for k, p in enumerate(graph.projections):
        starts, idx = post[p.post]
        st = delays.projections[k].stage
        for s in rows.get(p.pre, []):
            a, b = int(p.indptr[s.lo]), int(p.indptr[s.hi])
            if a == b:
                continue
            tgt = np.searchsorted(starts, p.indices[a:b], side="right") - 1
            stage = st[a:b]
            for g in np.unique(stage):
                out.setdefault((s.index, int(g)), set()).update(idx[t] for t in np.unique(tgt[stage == g]))
            if (stage > 0).any():
                out.setdefault((s.index, 0), set()).add(ext[s.index])
    return out


def allocate_blocks(slices: list, targets: dict, machine: Machine) -> tuple:
    """(index bits, blocks): one key block per (slice, stage) that sends packets; a delay stage is
    sent by the delay-extension slice of its source slice."""
    ext = {s.of: s for s in slices if s.kind == "delay"}
    sources = sorted(targets)
    n_max = max((slices[i].n for i, _ in sources), default=1)
    bits = max(0, math.ceil(math.log2(n_max)))
    if len(sources) > 2 ** (machine.key_bits - bits):
        raise HardwareLimitError(f"{machine.name} (keys)", [{"key_blocks": len(sources), "index_bits": bits,
                                                             "key_bits": machine.key_bits}])
    mask = ((1 << machine.key_bits) - 1) ^ ((1 << bits) - 1)
    blocks = []
    for b, (i, stage) in enumerate(sources):
        sender = slices[i] if stage == 0 else ext[i]
        tg = tuple(sorted((slices[t].chip, slices[t].core) for t in targets[(i, stage)]))
        blocks.append(Block(b, b << bits, mask, slices[i].n, sender.index, stage, sender.chip, sender.core, tg))
    return bits, blocks


# ----------------------------------------------------------------------------- trees
def bfs_parents(machine: Machine, root: tuple) -> dict:
    """chip -> (parent chip, link from the parent) of the breadth-first tree from ``root``."""
    parent = {root: (None, None)}
    queue = deque([root])
    while queue:
        c = queue.popleft()
        for l in range(machine.links):
            nb = machine.neighbour(c, l)
            if nb is not None and nb not in parent:
                parent[nb] = (c, l)
                queue.append(nb)
    return parent


def block_tree(block: Block, parents: dict, machine: Machine) -> dict:
    """chip -> (sorted out links, sorted cores) of ``block``'s multicast tree."""
    out_links, cores = {block.chip: set()}, {}
    for chip, core in block.targets:
        cores.setdefault(chip, set()).add(core)
        if chip not in parents:
            raise HardwareLimitError(f"{machine.name} (routing)", [{"chip": list(chip), "unreachable_from": list(block.chip)}])
        c, path = chip, []
        while c not in out_links:   # climb to the first chip already in the tree
            p, l = parents[c]
            path.append((c, p, l))
            c = p
        for c, p, l in path:
            out_links.setdefault(c, set())
            out_links.setdefault(p, set()).add(l)
    return {c: (tuple(sorted(out_links[c])), tuple(sorted(cores.get(c, ())))) for c in out_links}


def route_all(graph: Graph, slices: list, delays: DelayPlan, machine: Machine, compress: bool = True) -> Routing:
    """Keys, trees and per-chip tables of a placed mapping; tables compressed to ``router_entries``."""
    return route_targets(slices, block_targets(graph, slices, delays), machine, compress)


def route_targets(slices: list, targets: dict, machine: Machine, compress: bool = True) -> Routing:
    """Keys, trees and compressed tables for placed ``slices`` and ``targets`` {(slice index, stage):
    set of target slice indices} (what :func:`route_all` derives from a graph; the EGRU mapping
    gives its own)."""
    bits, blocks = allocate_blocks(slices, targets, machine)
    parents_of, trees, tables, care = {}, {}, {}, {}
    for b in blocks:
        parents = parents_of.get(b.chip)
        if parents is None:
            parents = parents_of[b.chip] = bfs_parents(machine, b.chip)
        tree = trees[b.index] = block_tree(b, parents, machine)
        for chip, (links, cores) in tree.items():
            arrived = parents[chip][1]
            route = encode_route(links, cores, machine)
            straight = chip != b.chip and not cores and links == (arrived,)
            care.setdefault(chip, []).append((b.key, b.mask, -1 if straight else route))
            if not straight:
                tables.setdefault(chip, []).append(Entry(b.key, b.mask, route))
    uncompressed = {c: len(t) for c, t in tables.items()}
    if compress:
        bad = []
        for chip in list(tables):
            if len(tables[chip]) > machine.router_entries:
                tables[chip] = compress_table(tables[chip], care[chip], machine.router_entries)
                if len(tables[chip]) > machine.router_entries:
                    bad.append({"chip": list(chip), "entries": len(tables[chip]), "uncompressed": uncompressed[chip],
                                "router_entries": machine.router_entries})
        if bad:
            raise HardwareLimitError(f"{machine.name} (routing tables after compression)", bad)
    return Routing(bits, blocks, tables, trees, uncompressed)


# ----------------------------------------------------------------------------- compression
def _cover(a: Entry, b: Entry) -> tuple:
    m = a.mask & b.mask & ~(a.key ^ b.key)
    return a.key & m, m


def compress_table(entries: list, care: list, limit: int) -> list:
    """Merge same-route entries into wider key/mask covers until at most ``limit`` remain or no
    merge is allowed (module docstring). ``care``: (key, mask, route) of every block reaching the
    chip, route -1 for default-routed ones."""
    ck = np.array([c[0] for c in care], dtype=np.uint64)
    cm = np.array([c[1] for c in care], dtype=np.uint64)
    cr = [c[2] for c in care]
    groups = {}
    for e in entries:
        groups.setdefault(e.route, []).append(e)
    total = len(entries)

    def allowed(key: int, mask: int, route: int) -> bool:
        hit = ((ck ^ np.uint64(key)) & cm & np.uint64(mask)) == 0
        return all(cr[i] == route for i in np.nonzero(hit)[0])

    for route, items in groups.items():
        merged = True
        while merged and total > limit and len(items) > 1:
            merged = False
            for i in range(len(items)):
                for j in range(i + 1, len(items)):
                    key, mask = _cover(items[i], items[j])
                    if allowed(key, mask, route):
                        keep = [e for e in items if not ((e.key & mask) == key and (e.mask & mask) == mask)]
                        total -= len(items) - len(keep) - 1
                        items[:] = keep + [Entry(key, mask, route)]
                        merged = True
                        break
                if merged:
                    break
    table = [e for items in groups.values() for e in items]
    if len(table) > limit:
        table = _ordered_covering(table, care, limit)
    return table


def _dont_cares(mask: int) -> int:
    return 64 - bin(mask).count("1")


def _first_route(table: list, key: int, mask: int):
    """Route of the first entry holding the whole block (key, mask); None when none does."""
    for e in table:
        if key & e.mask == e.key and mask & e.mask == e.mask:
            return e.route
    return None


def _ordered_covering(table: list, care: list, limit: int, window: int = 8) -> list:
    """Second phase: covers may overlap blocks of other routes whose entries come first. The table
    is kept sorted by generality (fewest don't-care bits first, stable), and a merge is kept only if
    every block it touches still meets its own route first (default-routed blocks: no entry)."""
    table = sorted(table, key=lambda e: _dont_cares(e.mask))
    while len(table) > limit:
        found = False
        groups = {}
        for e in table:
            groups.setdefault(e.route, []).append(e)
        for route, items in groups.items():
            items = sorted(items, key=lambda e: e.key)
            for i, j in ((i, j) for i in range(len(items)) for j in range(i + 1, min(i + 1 + window, len(items)))):
                key, mask = _cover(items[i], items[j])
                cand = [e for e in table if not (e.route == route and e.key & mask == key and e.mask & mask == mask)]
                cand = sorted(cand + [Entry(key, mask, route)], key=lambda e: _dont_cares(e.mask))
                touched = [c for c in care if (c[0] ^ key) & c[1] & mask == 0]
                if all(_first_route(cand, k, m) == (None if r == -1 else r) for k, m, r in touched):
                    table, found = cand, True
                    break
            if found:
                break
        if not found:
            break
    return table


# ----------------------------------------------------------------------------- table walk
def lookup(table: list, key: int):
    """Route of the first entry matching ``key`` (None on a miss)."""
    for e in table:
        if key & e.mask == e.key:
            return e.route
    return None


def walk(routing: Routing, machine: Machine, chip: tuple, key: int) -> tuple:
    """Follow one packet with ``key`` sent by a core of ``chip`` through the tables.

    Returns (delivered {(chip, core): count}, hops, link uses {(chip, link): count}). Raises
    ParameterError when the packet is dropped (a miss at its source chip, or off the edge of a mesh)
    or circulates (more hops than the machine has links)."""
    delivered, links_used, hops = {}, {}, 0
    stack = [(chip, None)]
    cap = machine.width * machine.height * machine.links
    while stack:
        c, arrived = stack.pop()
        route = lookup(routing.tables.get(c, []), key)
        if route is None:
            if arrived is None:
                raise ParameterError("walk", "key", hex(key), f"matched by an entry of its source chip {c}")
            out, cores = [arrived], []
        else:
            out, cores = decode_route(route, machine)
        for core in cores:
            delivered[(c, core)] = delivered.get((c, core), 0) + 1
        for l in out:
            nb = machine.neighbour(c, l)
            if nb is None:
                raise ParameterError("walk", "key", hex(key), f"routed inside the machine (leaves chip {c} by link {l})")
            hops += 1
            if hops > cap:
                raise ParameterError("walk", "key", hex(key), f"delivered within {cap} hops (it circulates)")
            links_used[(c, l)] = links_used.get((c, l), 0) + 1
            stack.append((nb, l))
    return delivered, hops, links_used
