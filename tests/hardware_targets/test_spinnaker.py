"""SpiNNaker mapping: machine models, partitioning, placement, multicast routing, compression, delays."""
import itertools
import json

import numpy as np
import pytest

from neuro.core.errors import FormatError, HardwareLimitError, ParameterError, UnsupportedLayerError
from neuro.hardware_targets.spinnaker import bundled_machines, load_machine, map_graph, parse_machine
from neuro.hardware_targets.spinnaker.delays import plan_delays, split_delay
from neuro.hardware_targets.spinnaker.machine import MACHINES_DIR
from neuro.hardware_targets.spinnaker.partition import decode_words, encode_words, weight_exponent
from neuro.hardware_targets.spinnaker.routing import (Entry, bfs_parents, compress_table, decode_route, encode_route,
                                                      lookup, walk)
from neuro.ir import EGRULayer, Graph, IFPopulation, LIFPopulation, Projection, SpikeSource


def _rand(rng, n_post, n_pre, p, scale=1.0):
    return rng.normal(size=(n_post, n_pre)) * scale * (rng.random((n_post, n_pre)) < p)


def _net(seed=0, n_in=40, n_a=60, n_b=30, rec_delay=20):
    """input -> A (0), A -> B (0), A -> A (rec_delay), B -> A (3): offsets 0, 1, 2."""
    rng = np.random.default_rng(seed)
    return Graph({"in": SpikeSource(n_in), "A": LIFPopulation(n_a, 0.9), "B": IFPopulation(n_b)},
                 [Projection.from_dense("in", "A", _rand(rng, n_a, n_in, 0.2)),
                  Projection.from_dense("A", "B", _rand(rng, n_b, n_a, 0.3)),
                  Projection.from_dense("A", "A", _rand(rng, n_a, n_a, 0.1), delay_steps=rec_delay),
                  Projection.from_dense("B", "A", _rand(rng, n_a, n_b, 0.1), delay_steps=3)])


# small multi-chip machines: 3 application cores per chip, 8 neurons per core
SMALL = dict(width=4, height=3, cores_per_chip=4, neurons_per_core=8)


# ----------------------------------------------------------------------------- machine models
def test_bundled_machines_hold_reference_figures():
    assert bundled_machines() == ["spinnaker1", "spinnaker2"]
    s1, s2 = load_machine("spinnaker1"), load_machine("spinnaker2")
    assert (s1.cores_per_chip, len(s1.app_cores), s1.core_memory_bytes, s1.sdram_bytes_per_chip) == (18, 17, 65536, 128 << 20)
    assert (s1.router_entries, s1.links, s1.topology, s1.packet_bits, s1.payload_packet_bits) == (1024, 6, "triangular_torus", 40, 72)
    assert (s1.neurons_per_core, s1.weight_bits, s1.delay_bits, s1.delay_min, s1.delay_max) == (256, 16, 4, 1, 16)
    assert (s2.cores_per_chip, s2.core_memory_bytes, s2.weight_max, s2.delay_min, s2.delay_max) == (152, 131072, 15, 1, 8)
    assert s1.synapse_store == "sdram" and s2.synapse_store == "core"
    for m in (s1, s2):
        assert set(m.sources) >= {"topology", "synapse_store", "router_entries"} and all(v.strip() for v in m.sources.values())


def _doc():
    return json.loads((MACHINES_DIR / "spinnaker1.json").read_text())


@pytest.mark.parametrize("edit, node, field", [
    (lambda d: d.update(format="other"), None, "format"),
    (lambda d: d.update(extra=1), "extra", None),
    (lambda d: d["constants"]["router_entries"].pop("source"), "constants.router_entries", "source"),
    (lambda d: d["constants"].pop("links"), "constants.links", None),
    (lambda d: d["constants"]["neurons_per_core"].update(value=2.5), "constants.neurons_per_core", "value"),
    (lambda d: d["constants"]["core_memory_bytes"].update(value=-4), "constants.core_memory_bytes", "value"),
    (lambda d: d["constants"].update(bogus={"value": 1, "source": "x"}), "constants.bogus", None),
    (lambda d: d["topology"].update(value="ring"), "topology", "value"),
    (lambda d: d["constants"]["links"].update(value=4), "constants.links", "value"),
    (lambda d: d["constants"]["delay_slots"].update(value=17), "constants.delay_slots", "value"),
    (lambda d: d["constants"]["index_bits"].update(value=7), "constants.neurons_per_core", "value"),
])
def test_machine_file_errors_name_file_node_and_field(edit, node, field):
    doc = _doc()
    edit(doc)
    with pytest.raises(FormatError) as e:
        parse_machine(doc, "m.json")
    assert (e.value.file, e.value.node, e.value.field) == ("m.json", node, field)


def test_machine_loader_bad_json_name_and_override(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(FormatError, match="broken.json"):
        load_machine(bad)
    good = tmp_path / "mine.json"
    good.write_text(json.dumps(_doc()))
    assert load_machine(good).router_entries == 1024
    with pytest.raises(ParameterError, match="spinnaker3"):
        load_machine("spinnaker3")
    with pytest.raises(ParameterError, match="router_entries"):
        load_machine("spinnaker1", router_entries=0)
    with pytest.raises(ParameterError, match="topology"):
        load_machine("spinnaker1", topology="ring")
    assert load_machine("spinnaker1", topology="mesh").links == 4
    with pytest.raises(ParameterError, match="neurons_per_core") as e:
        load_machine("spinnaker1", neurons_per_core=300)        # an 8-bit index holds 256
    assert e.value.value == 300


def _hex_torus_distance(a, b, w, h):
    best = None
    for dx, dy in itertools.product([b[0] - a[0] + k * w for k in (-1, 0, 1)], [b[1] - a[1] + k * h for k in (-1, 0, 1)]):
        d = max(abs(dx), abs(dy)) if dx * dy >= 0 else abs(dx) + abs(dy)
        best = d if best is None else min(best, d)
    return best


def test_triangular_torus_links_and_shortest_paths():
    m = load_machine("spinnaker1", width=5, height=4)
    assert m.neighbour((0, 0), 4) == (4, 3) and m.neighbour((4, 3), 1) == (0, 0)   # SW wraps, NE wraps back
    assert all(m.neighbour(m.neighbour((2, 1), l), m.opposite(l)) == (2, 1) for l in range(6))
    parents = bfs_parents(m, (1, 2))
    assert len(parents) == 20
    for chip in m.chips():
        depth, c = 0, chip
        while parents[c][0] is not None:
            c, depth = parents[c][0], depth + 1
        assert depth == _hex_torus_distance((1, 2), chip, 5, 4)
    mesh = load_machine("spinnaker1", width=3, height=3, topology="mesh")
    assert mesh.neighbour((0, 0), 2) is None and mesh.neighbour((2, 2), 0) is None
    parents = bfs_parents(mesh, (0, 0))
    for chip in mesh.chips():
        depth, c = 0, chip
        while parents[c][0] is not None:
            c, depth = parents[c][0], depth + 1
        assert depth == chip[0] + chip[1]      # Manhattan distance, no wrap


# ----------------------------------------------------------------------------- partitioning and placement
def test_slices_cover_every_neuron_within_budgets():
    g = _net()
    m = map_graph(g, "spinnaker2", **SMALL)
    mach = m.machine
    for name, node in g.nodes.items():
        own = sorted((s.lo, s.hi) for s in m.slices if s.node == name and s.kind != "delay")
        assert own[0][0] == 0 and own[-1][1] == node.n and all(a[1] == b[0] for a, b in zip(own, own[1:]))
    for s in m.slices:
        assert s.n <= mach.neurons_per_core and s.memory_bytes <= mach.core_budget_bytes
    # the memory of a neuron slice, recomputed from the formula
    s = next(s for s in m.slices if s.node == "A" and s.kind == "neurons")
    into = [p for p in g.projections if p.post == "A"]
    syn = sum(int(((p.indices >= s.lo) & (p.indices < s.hi)).sum()) for p in into)
    rows = sum(int(np.count_nonzero(np.diff(p.indptr))) for p in into)
    expect = s.n * (mach.neuron_bytes + 2 * mach.delay_slots * mach.ring_buffer_bytes) + syn * mach.synapse_word_bytes \
        + rows * mach.row_header_bytes
    assert (s.memory_bytes, s.synapses) == (expect, syn)
    # placement: distinct (chip, core) pairs on application cores, chips filled in order
    places = [(s.chip, s.core) for s in m.slices]
    assert len(set(places)) == len(places) and all(c in mach.app_cores for _, c in places)
    assert mach.app_cores == (0, 1, 2, 3)    # SpiNNaker 2: no monitor PE
    assert places[:5] == [((0, 0), 0), ((0, 0), 1), ((0, 0), 2), ((0, 0), 3), ((1, 0), 0)]


def test_memory_bound_slices_are_greedy_and_sdram_counted():
    rng = np.random.default_rng(1)
    g = Graph({"in": SpikeSource(500), "P": LIFPopulation(40, 0.9)}, [Projection.from_dense("in", "P", _rand(rng, 40, 500, 0.5))])
    m = map_graph(g, "spinnaker2", width=2, height=2, core_memory_bytes=20000, core_reserved_bytes=0)
    mach, budget = m.machine, 20000
    pops = [s for s in m.slices if s.node == "P"]
    assert len(pops) > 1
    p = g.projections[0]
    per = mach.neuron_bytes + 2 * mach.delay_slots * mach.ring_buffer_bytes + np.bincount(p.indices, minlength=40) * mach.synapse_word_bytes
    fixed = mach.row_header_bytes * 500
    for s in pops[:-1]:   # every slice but the last could not take its next neuron
        assert fixed + per[s.lo:s.hi].sum() <= budget < fixed + per[s.lo:s.hi + 1].sum()
    m1 = map_graph(g, "spinnaker1", width=1, height=1)
    s1 = [s for s in m1.slices if s.node == "P"][0]
    assert s1.sdram_bytes == p.nnz * 4 + 12 * 500 and m1.chip_usage()[0]["sdram_bytes"] == s1.sdram_bytes


def test_hardware_limit_errors_name_population_core_and_chip():
    rng = np.random.default_rng(2)
    huge = Graph({"in": SpikeSource(70000), "P": LIFPopulation(2, 0.9)},
                 [Projection.from_dense("in", "P", np.ones((2, 70000)))])
    with pytest.raises(HardwareLimitError) as e:
        map_graph(huge, "spinnaker2", width=1, height=1)
    row = e.value.usage[0]
    assert row["population"] == "P" and row["core_bytes_needed"] > row["core_bytes_available"] == 131072 - 16384
    with pytest.raises(HardwareLimitError) as e:
        map_graph(_net(), "spinnaker1", width=1, height=1, cores_per_chip=4, neurons_per_core=8)
    last = e.value.usage[-1]
    assert last["cores_available"] == 3 and last["cores_needed"] > 3
    assert {r["node"] for r in e.value.usage[:-1]} == {"in", "A", "B"}
    g = Graph({"in": SpikeSource(100), "P": LIFPopulation(100, 0.9)}, [Projection.from_dense("in", "P", _rand(rng, 100, 100, 0.5))])
    with pytest.raises(HardwareLimitError) as e:
        map_graph(g, "spinnaker1", width=1, height=1, sdram_bytes_per_chip=1000)
    assert e.value.usage[0]["chip"] == [0, 0] and e.value.usage[0]["sdram_bytes"] > 1000


def test_egru_layers_are_refused_by_name():
    g = Graph({"in": SpikeSource(2), "egru": EGRULayer("in", 2, 3, np.zeros((9, 2)), np.zeros((9, 3)), np.zeros(9),
                                                         np.zeros(3), np.ones(3))})
    with pytest.raises(UnsupportedLayerError, match="egru"):
        map_graph(g)
    with pytest.raises(ParameterError):
        map_graph("not a graph")


# ----------------------------------------------------------------------------- synaptic words
def test_synaptic_words_round_trip_fields_and_weights():
    rng = np.random.default_rng(3)
    for name in ("spinnaker1", "spinnaker2"):
        mach = load_machine(name)
        w = rng.normal(size=500) * 0.3
        e = weight_exponent(float(np.abs(w).max()), mach)
        assert np.abs(w).max() * 2.0 ** e <= mach.weight_max < np.abs(w).max() * 2.0 ** (e + 1)
        field = rng.integers(0, mach.delay_slots, 500)
        index = rng.integers(0, mach.neurons_per_core, 500)
        words = encode_words(w, field, index, e, mach)
        assert int(words.max()) < 2 ** (8 * mach.synapse_word_bytes)
        back, f2, i2 = decode_words(words, e, mach)
        np.testing.assert_array_equal(f2, field)
        np.testing.assert_array_equal(i2, index)
        assert np.abs(back - w).max() <= 2.0 ** -(e + 1) + 1e-15
        assert np.all(np.sign(back[back != 0]) == np.sign(w[back != 0]))
    with pytest.raises(HardwareLimitError):
        encode_words(np.array([1.0]), np.array([0]), np.array([0]), 10, load_machine("spinnaker2"))


def test_mapping_words_decode_to_graph_weights_and_local_indices():
    g = _net(seed=4)
    m = map_graph(g, "spinnaker1", **SMALL)
    for p, words, d in zip(g.projections, m.words, m.delays.projections):
        w, field, idx = decode_words(words, m.exponents[p.post], m.machine)
        starts = np.array([s.lo for s in m.slices if s.node == p.post and s.kind == "neurons"])
        np.testing.assert_array_equal(idx, p.indices - starts[np.searchsorted(starts, p.indices, side="right") - 1])
        np.testing.assert_array_equal(field, d.native - m.machine.delay_min)
        assert np.abs(w - p.weights).max() <= 2.0 ** -(m.exponents[p.post] + 1) + 1e-15


# ----------------------------------------------------------------------------- delays
def test_split_delay_analytic_values():
    s1, s2 = load_machine("spinnaker1"), load_machine("spinnaker2")
    k, r = split_delay(np.array([1, 16, 17, 32, 33, 100]), s1)
    assert k.tolist() == [0, 0, 1, 1, 2, 6] and r.tolist() == [1, 16, 1, 16, 1, 4]
    k, r = split_delay(np.array([1, 8, 9, 16, 17]), s2)
    assert k.tolist() == [0, 0, 1, 1, 2] and r.tolist() == [1, 8, 1, 8, 1]


@pytest.mark.parametrize("machine", ["spinnaker1", "spinnaker2"])
def test_total_delay_of_every_synapse_equals_ir_delay_plus_offsets(machine):
    g = _net(rec_delay=37)
    m = map_graph(g, machine, **SMALL)
    mach, off = m.machine, m.delays.offsets
    assert off == {"in": 0, "A": 1, "B": 2}
    for k, p in enumerate(g.projections):
        d = m.delays.projections[k]
        assert d.stage.shape == d.native.shape == (p.nnz,)
        assert ((d.native >= mach.delay_min) & (d.native <= mach.delay_max)).all()
        assert ((d.field >= 0) & (d.field < 2 ** mach.delay_bits)).all()
        np.testing.assert_array_equal(m.delays.total_ticks(k), p.delay_steps + off[p.post] - off[p.pre])
    ext = [s for s in m.slices if s.kind == "delay"]
    assert {s.node for s in ext} == {"A"} and all(s.stages == (37 - 1) // mach.delay_slots for s in ext)


def test_delay_errors_name_the_projection():
    with pytest.raises(HardwareLimitError) as e:
        map_graph(_net(rec_delay=500), "spinnaker1", **SMALL)
    row = e.value.usage[0]
    assert row["projection"] == "projections[2] A->A" and row["stages_needed"] > row["max_delay_stages"] == 8
    loop = Graph({"A": LIFPopulation(4, 0.9), "B": LIFPopulation(4, 0.9)},
                 [Projection.from_dense("A", "B", np.eye(4)), Projection.from_dense("B", "A", np.eye(4), delay_steps=1)])
    with pytest.raises(HardwareLimitError, match="minimum delay") as e:
        plan_delays(loop, load_machine("spinnaker1"))
    assert e.value.usage and all("projection" in r for r in e.value.usage)


# ----------------------------------------------------------------------------- routing
def _expected_targets(m, slice_index, neuron, stage):
    """(chip, core) of every slice that holds a synapse of this neuron with this extension stage,
    plus the neuron's delay-extension core for stage 0 if it has delayed synapses."""
    s = m.slices[slice_index]
    g, out = m.graph, set()
    for k, p in enumerate(g.projections):
        if p.pre != s.node:
            continue
        a, b = p.indptr[s.lo + neuron], p.indptr[s.lo + neuron + 1]
        st = m.delays.projections[k].stage[a:b]
        for post, kk in zip(p.indices[a:b], st):
            tgt = next(t for t in m.slices if t.node == p.post and t.kind == "neurons" and t.lo <= post < t.hi)
            if kk == stage:
                out.add((tgt.chip, tgt.core))
            elif stage == 0:
                ext = next(t for t in m.slices if t.kind == "delay" and t.of == slice_index)
                out.add((ext.chip, ext.core))
    return out


def _check_all_packets(m):
    """Every neuron of every sending slice: its packet reaches exactly its target cores, once each."""
    n_checked = 0
    for b in m.routing.blocks:
        src = b.slice if b.stage == 0 else m.slices[b.slice].of
        sender = m.slices[b.slice]
        assert (sender.chip, sender.core) == (b.chip, b.core)
        for neuron in range(b.n):
            delivered, hops, links = m.packet(src, neuron, b.stage)
            want = _expected_targets(m, src, neuron, b.stage)
            # a key block is shared by the slice's neurons: cores may receive packets of neurons
            # without synapses there (sPyNNaker does the same); every wanted core gets exactly one
            assert want <= set(delivered) and set(delivered) == set(b.targets)
            assert all(c == 1 for c in delivered.values())
            assert hops == sum(links.values()) == sum(len(l) for l, _ in m.routing.trees[b.index].values())
            n_checked += 1
    return n_checked


@pytest.mark.parametrize("topology", ["triangular_torus", "mesh"])
def test_every_packet_reaches_exactly_its_target_cores(topology):
    m = map_graph(_net(rec_delay=20), "spinnaker1", topology=topology, **SMALL)
    assert m.chips_used > 3 and m.delays.max_stage() == 1
    assert _check_all_packets(m) > 100
    # block targets = the union over the slice's neurons of their wanted targets
    for b in m.routing.blocks:
        src = b.slice if b.stage == 0 else m.slices[b.slice].of
        union = set().union(*(_expected_targets(m, src, i, b.stage) for i in range(b.n)))
        assert union == set(b.targets)


def test_default_routing_leaves_straight_through_chips_without_entries():
    # a 6 x 1 mesh with one application core per chip: the source on chip 0, its target on chip 5
    fill = {f"f{i}": LIFPopulation(1, 0.9) for i in range(4)}
    g = Graph({"in": SpikeSource(1), **fill, "out": LIFPopulation(1, 0.9)}, [Projection.from_dense("in", "out", np.ones((1, 1)))])
    m = map_graph(g, "spinnaker1", width=6, height=1, cores_per_chip=2, topology="mesh")
    assert [s.chip for s in m.slices] == [(i, 0) for i in range(6)]
    assert sorted(m.routing.tables) == [(0, 0), (5, 0)]     # chips 1..4 go straight on
    delivered, hops, links = m.packet(0, 0)
    assert delivered == {((5, 0), 1): 1} and hops == 5 and set(links) == {((i, 0), 0) for i in range(5)}
    key = m.routing.blocks[0].key
    assert lookup(m.routing.tables[(0, 0)], key) == encode_route([0], [], m.machine)
    assert decode_route(lookup(m.routing.tables[(5, 0)], key), m.machine) == ([], [1])
    with pytest.raises(ParameterError, match="neuron"):
        m.packet(0, 1)                                   # the source has one neuron
    with pytest.raises(ParameterError, match="slice_index"):
        m.packet(5, 0)                                   # 'out' sends nothing
    with pytest.raises(ParameterError, match="source chip"):
        walk(m.routing, m.machine, (0, 0), 1 << 20)   # a key no entry of the source chip matches


def _fan_graph(n_sources=12):
    """Many one-neuron sources onto the same far population: one entry each on shared chips."""
    nodes = {f"s{i}": SpikeSource(1) for i in range(n_sources)}
    nodes["out"] = LIFPopulation(2, 0.9)
    return Graph(nodes, [Projection.from_dense(f"s{i}", "out", np.ones((2, 1))) for i in range(n_sources)])


def test_compression_fits_the_limit_and_keeps_every_route():
    g = _fan_graph()
    kw = dict(width=5, height=4, cores_per_chip=4)
    full = map_graph(g, "spinnaker1", **kw)
    big = max(full.routing.uncompressed.values())
    assert big > 4 and full.routing.entries_max() == big
    m = map_graph(g, "spinnaker1", router_entries=4, **kw)
    assert m.routing.entries_max() <= 4 < max(m.routing.uncompressed.values())
    assert _check_all_packets(m) == 12
    with pytest.raises(HardwareLimitError) as e:
        map_graph(g, "spinnaker1", router_entries=1, **kw)
    assert all(r["entries"] > r["router_entries"] == 1 and len(r["chip"]) == 2 for r in e.value.usage)


def test_key_space_overflow_is_a_hardware_limit():
    with pytest.raises(HardwareLimitError) as e:
        map_graph(_fan_graph(12), "spinnaker1", width=5, height=4, cores_per_chip=4, key_bits=3)
    assert e.value.usage[0]["key_blocks"] == 12 and e.value.usage[0]["key_bits"] == 3


def test_compress_table_respects_other_routes_and_default_routed_keys():
    # keys 0..3 route A, key 4 routes B, key 5 passes by default: 0..3 merge to one entry, never over 4 or 5
    A, B = 0b1, 0b10
    mask = 0xFFFFFFFF
    entries = [Entry(k, mask, A) for k in range(4)] + [Entry(4, mask, B)]
    care = [(k, mask, A) for k in range(4)] + [(4, mask, B), (5, mask, -1)]
    out = compress_table(entries, care, 2)
    assert len(out) == 2 and all(lookup(out, k) == A for k in range(4)) and lookup(out, 4) == B and lookup(out, 5) is None
    # keys 0 and 3 differ in two bits; their cover (mask ~3) holds key 1 of route B: only the ordered
    # phase merges them, behind B's more specific entry
    entries = [Entry(0, mask, A), Entry(3, mask, A), Entry(1, mask, B)]
    out = compress_table(entries, [(0, mask, A), (3, mask, A), (1, mask, B)], 2)
    assert out == [Entry(1, mask, B), Entry(0, mask & ~3, A)]
    assert [lookup(out, k) for k in (0, 1, 3)] == [A, B, A]
    # ... but not over key 2 when it passes by default routing (no entry may catch it)
    out = compress_table(entries, [(0, mask, A), (3, mask, A), (1, mask, B), (2, mask, -1)], 2)
    assert len(out) == 3 and lookup(out, 2) is None


def test_mapping_to_dict_is_json_and_matches_usage():
    g = _net()
    m = map_graph(g, "spinnaker2", **SMALL)
    d = json.loads(json.dumps(m.to_dict()))
    assert d["usage"]["cores_used"] == len(d["slices"]) == m.cores_used
    assert d["usage"]["routing_entries_max"] == max(len(t["entries"]) for t in d["tables"])
    assert [p["hw_delay_ticks"] for p in d["projections"]] == [1, 1, 20, 2]
    assert sum(r["cores"] for r in d["usage"]["chips"]) == m.cores_used
    keys = [(k["key"], k["mask"]) for k in d["keys"]]
    assert len(set(keys)) == len(keys) and all(k & ~mask & 0xFFFFFFFF == 0 for k, mask in keys)
