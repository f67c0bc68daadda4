r"""SpiNNaker machine models as data: chips, cores, memory, router tables, links, packets, delays.

A machine file (JSON, next to this module in ``machines/``)::

    {"format": "neuro-spinnaker-machine", "name": "spinnaker1", "description": "...",
     "topology": {"value": "triangular_torus", "source": "..."},
     "synapse_store": {"value": "sdram", "source": "..."},
     "constants": {"cores_per_chip": {"value": 18, "source": "..."}, ...}}

Every constant of :data:`CONSTANTS` is given, with its source (REFERENCE §6 and §4, or marked as an
assumption); integers where the field counts something. A bad file raises
:class:`~neuro.core.errors.FormatError` naming the file, the key and the field.

Topologies (:data:`TOPOLOGIES`): chips sit at integer coordinates ``(x, y)``, ``0 <= x < width``,
``0 <= y < height``; link ``l`` goes in direction ``LINK_DIRS[topology][l]``. SpiNNaker's triangular
torus has 6 links, numbered 0 E (+1, 0), 1 NE (+1, +1), 2 N (0, +1), 3 W, 4 SW, 5 S, coordinates taken
modulo the machine size; the opposite of link ``l`` is ``(l + L/2) mod L``. ``"torus"`` and ``"mesh"``
(no wrap) have the 4 links E, N, W, S.

Delay slots: a synapse's native delay is ``delay_min .. delay_min + delay_slots - 1`` ticks, stored
in a field of ``delay_bits`` as ``delay - delay_min`` (sPyNNaker 1..16 in 4 bits; SpiNNaker 2 0..7
with the hardware adding 1).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping, Union

from ...core.errors import FormatError, ParameterError

FORMAT = "neuro-spinnaker-machine"
MACHINES_DIR = Path(__file__).resolve().parent / "machines"

# link directions per topology, in link-number order
LINK_DIRS = {
    "triangular_torus": ((1, 0), (1, 1), (0, 1), (-1, 0), (-1, -1), (0, -1)),
    "torus": ((1, 0), (0, 1), (-1, 0), (0, -1)),
    "mesh": ((1, 0), (0, 1), (-1, 0), (0, -1)),
}
WRAPS = {"triangular_torus": True, "torus": True, "mesh": False}
TOPOLOGIES = tuple(LINK_DIRS)
SYNAPSE_STORES = ("sdram", "core")

# name -> (type, lower bound)
CONSTANTS = {
    "width": (int, 1), "height": (int, 1), "cores_per_chip": (int, 1), "monitor_cores_per_chip": (int, 0),
    "neurons_per_core": (int, 1), "core_memory_bytes": (int, 1), "core_reserved_bytes": (int, 0),
    "sdram_bytes_per_chip": (int, 0), "router_entries": (int, 1), "links": (int, 1), "packet_bits": (int, 1),
    "payload_packet_bits": (int, 1), "key_bits": (int, 1), "delay_min": (int, 1), "delay_slots": (int, 1),
    "max_delay_stages": (int, 0), "weight_bits": (int, 1), "weight_max": (int, 1), "delay_bits": (int, 1),
    "synapse_type_bits": (int, 0), "index_bits": (int, 1), "synapse_word_bytes": (int, 1),
    "row_header_bytes": (int, 0), "neuron_bytes": (int, 1), "ring_buffer_bytes": (int, 1),
    "state_frac_bits": (int, 0), "router_energy_j_per_bit": (float, 0), "clock_hz": (int, 1),
    "cycles_per_neuron_update": (int, 0), "cycles_per_synaptic_event": (int, 0), "cycles_per_packet": (int, 0),
}
TOP_KEYS = ("format", "name", "description", "topology", "synapse_store", "constants")


@dataclass(frozen=True)
class Machine:
    """A SpiNNaker-style machine: the constants of :data:`CONSTANTS` as fields, plus ``name``,
    ``topology``, ``synapse_store`` (``'sdram'``: synaptic rows in the chip's SDRAM, ``'core'``: in the
    core's own memory) and ``sources`` (field -> where the figure comes from)."""

    name: str
    topology: str
    synapse_store: str
    width: int
    height: int
    cores_per_chip: int
    monitor_cores_per_chip: int
    neurons_per_core: int
    core_memory_bytes: int
    core_reserved_bytes: int
    sdram_bytes_per_chip: int
    router_entries: int
    links: int
    packet_bits: int
    payload_packet_bits: int
    key_bits: int
    delay_min: int
    delay_slots: int
    max_delay_stages: int
    weight_bits: int
    weight_max: int
    delay_bits: int
    synapse_type_bits: int
    index_bits: int
    synapse_word_bytes: int
    row_header_bytes: int
    neuron_bytes: int
    ring_buffer_bytes: int
    state_frac_bits: int
    router_energy_j_per_bit: float
    clock_hz: int
    cycles_per_neuron_update: int
    cycles_per_synaptic_event: int
    cycles_per_packet: int
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False)

    # ------------------------------------------------------------------ derived figures
    @property
    def delay_max(self) -> int:
        """Largest native delay in ticks."""
        return self.delay_min + self.delay_slots - 1

    @property
    def core_budget_bytes(self) -> int:
        """Core memory left to the mapped data (``core_memory_bytes - core_reserved_bytes``)."""
        return self.core_memory_bytes - self.core_reserved_bytes

    @property
    def app_cores(self) -> tuple:
        """Core numbers that run application code (the monitor cores come first)."""
        return tuple(range(self.monitor_cores_per_chip, self.cores_per_chip))

    def chips(self) -> list:
        """Chip coordinates in placement order (x fastest, then y)."""
        return [(x, y) for y in range(self.height) for x in range(self.width)]

    def link_dirs(self) -> tuple:
        return LINK_DIRS[self.topology]

    def opposite(self, link: int) -> int:
        """The link a packet leaves by when it goes straight on after arriving by ``link`` travel."""
        return (link + self.links // 2) % self.links

    def neighbour(self, chip: tuple, link: int):
        """The chip at the far end of ``link`` of ``chip`` (None off the edge of a mesh)."""
        dx, dy = LINK_DIRS[self.topology][link]
        x, y = chip[0] + dx, chip[1] + dy
        if WRAPS[self.topology]:
            return (x % self.width, y % self.height)
        return (x, y) if 0 <= x < self.width and 0 <= y < self.height else None

    def replace(self, **changes) -> "Machine":
        """A copy with some constants changed (e.g. a smaller ``width`` or ``router_entries``; ``topology``
        sets ``links`` to its link count unless given), validated."""
        o = f"Machine({self.name!r})"
        changes = dict(changes)
        if "topology" in changes:
            topo = changes.pop("topology")
            if topo not in TOPOLOGIES:
                raise ParameterError(o, "topology", topo, "one of " + ", ".join(TOPOLOGIES))
            changes.setdefault("links", len(LINK_DIRS[topo]))
        else:
            topo = self.topology
        for k, v in changes.items():
            if k not in CONSTANTS:
                raise ParameterError(o, k, v, "one of the machine constants: " + ", ".join(CONSTANTS))
            kind, lo = CONSTANTS[k]
            ok = (isinstance(v, int) and not isinstance(v, bool)) if kind is int else (
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
            if not ok or v < lo:
                raise ParameterError(o, k, v, f"{'an integer' if kind is int else 'a finite number'} >= {lo}")
        m = dataclasses.replace(self, topology=topo, **changes)
        try:
            _check_consistent(m, o)
        except FormatError as e:   # an override, not a file, is at fault
            key = e.node.split(".")[-1]
            raise ParameterError(o, key, getattr(m, key), str(e).split(": ", 1)[1]) from None
        return m


def _check_consistent(m: Machine, file: str) -> None:
    if len(LINK_DIRS[m.topology]) != m.links:
        raise FormatError(file, "constants.links", "value",
                          f"{m.links} links, topology {m.topology!r} has {len(LINK_DIRS[m.topology])}")
    if m.monitor_cores_per_chip >= m.cores_per_chip:
        raise FormatError(file, "constants.monitor_cores_per_chip", "value",
                          f"{m.monitor_cores_per_chip} monitor cores leave no application core of {m.cores_per_chip}")
    if m.core_reserved_bytes >= m.core_memory_bytes:
        raise FormatError(file, "constants.core_reserved_bytes", "value",
                          f"{m.core_reserved_bytes} reserved bytes leave nothing of {m.core_memory_bytes}")
    if m.delay_slots > 2 ** m.delay_bits:
        raise FormatError(file, "constants.delay_slots", "value",
                          f"{m.delay_slots} slots do not fit a {m.delay_bits}-bit delay field")
    if m.neurons_per_core > 2 ** m.index_bits:
        raise FormatError(file, "constants.neurons_per_core", "value",
                          f"{m.neurons_per_core} neurons do not fit an {m.index_bits}-bit index")
    if m.weight_max >= 2 ** m.weight_bits:
        raise FormatError(file, "constants.weight_max", "value", f"{m.weight_max} does not fit {m.weight_bits} bits")
    bits = m.weight_bits + m.delay_bits + m.synapse_type_bits + m.index_bits
    if bits > 8 * m.synapse_word_bytes:
        raise FormatError(file, "constants.synapse_word_bytes", "value",
                          f"{m.synapse_word_bytes} bytes hold {8 * m.synapse_word_bytes} bits, the word needs {bits}")


def _sourced(file: str, node: str, entry) -> tuple:
    if not isinstance(entry, dict):
        raise FormatError(file, node, None, "must be an object {value, source}")
    extra = sorted(set(entry) - {"value", "source"})
    if extra:
        raise FormatError(file, node, extra[0], "unknown field (known: value, source)")
    if "value" not in entry:
        raise FormatError(file, node, "value", "missing")
    src = entry.get("source")
    if not isinstance(src, str) or not src.strip():
        raise FormatError(file, node, "source", "missing: every constant names its source")
    return entry["value"], src


def parse_machine(doc, file: str = "<machine>") -> Machine:
    """Validate a parsed machine document (see the module docstring); FormatError on any fault."""
    if not isinstance(doc, dict):
        raise FormatError(file, None, None, f"must hold an object, got {type(doc).__name__}")
    if doc.get("format") != FORMAT:
        raise FormatError(file, None, "format", f"must be {FORMAT!r}, got {doc.get('format')!r}")
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise FormatError(file, unknown[0], None, "is not a known key (" + ", ".join(TOP_KEYS) + ")")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise FormatError(file, None, "name", f"must be a non-empty string, got {name!r}")
    sources = {}
    topology, sources["topology"] = _sourced(file, "topology", doc.get("topology"))
    if topology not in TOPOLOGIES:
        raise FormatError(file, "topology", "value", f"must be one of {', '.join(TOPOLOGIES)}, got {topology!r}")
    store, sources["synapse_store"] = _sourced(file, "synapse_store", doc.get("synapse_store"))
    if store not in SYNAPSE_STORES:
        raise FormatError(file, "synapse_store", "value", f"must be one of {', '.join(SYNAPSE_STORES)}, got {store!r}")
    consts = doc.get("constants")
    if not isinstance(consts, dict):
        raise FormatError(file, None, "constants", "missing: an object of name -> {value, source}")
    extra = sorted(set(consts) - set(CONSTANTS))
    if extra:
        raise FormatError(file, f"constants.{extra[0]}", None, "unknown constant (known: " + ", ".join(CONSTANTS) + ")")
    values = {}
    for key, (kind, lo) in CONSTANTS.items():
        node = f"constants.{key}"
        if key not in consts:
            raise FormatError(file, node, None, "missing")
        v, sources[key] = _sourced(file, node, consts[key])
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)):
            raise FormatError(file, node, "value", f"must be {'an integer' if kind is int else 'a number'}, got {v!r}")
        if not math.isfinite(v) or v < lo:
            raise FormatError(file, node, "value", f"must be finite and >= {lo}, got {v!r}")
        values[key] = kind(v)
    m = Machine(name=name, topology=topology, synapse_store=store, sources=MappingProxyType(sources), **values)
    _check_consistent(m, file)
    return m


def load_machine(machine: Union[str, Path, Machine] = "spinnaker1", **overrides) -> Machine:
    """A bundled machine by name (``'spinnaker1'``, ``'spinnaker2'``), a JSON file path, or a
    :class:`Machine`; ``overrides`` replace constants (``width=2, height=2, router_entries=16``)."""
    if isinstance(machine, Machine):
        return machine.replace(**overrides) if overrides else machine
    if not isinstance(machine, (str, Path)):
        raise ParameterError("load_machine", "machine", type(machine).__name__, "a name, a path or a Machine")
    path = Path(machine)
    if path.suffix != ".json":
        path = MACHINES_DIR / f"{machine}.json"
        if not path.exists():
            names = sorted(p.stem for p in MACHINES_DIR.glob("*.json"))
            raise ParameterError("load_machine", "machine", str(machine), "one of " + ", ".join(names) + " or a .json path")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise FormatError(str(path.name), None, None, f"is not valid JSON: {e}") from None
    m = parse_machine(doc, path.name)
    return m.replace(**overrides) if overrides else m


def bundled_machines() -> list:
    """Names of the machine files shipped with the package."""
    return sorted(p.stem for p in MACHINES_DIR.glob("*.json"))
