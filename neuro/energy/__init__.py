"""Energy and operation counting: counters that observe a run, energy models as data, reports.

Flow: a spiking module runs under an :class:`OpCounter` (forward hooks; outputs unchanged), or a
whole-run engine's result is counted (:func:`count_recurrent`); the :class:`Counts` are priced on
:class:`EnergyModel` files (45 nm CMOS, Loihi 1, SpiNNaker 1/2, a GPU baseline; each constant with
its source) into an :class:`EnergyReport` (tables, JSON, plots). :func:`ann_twin` gives the float
ANN of a spiking network, counted by the same counter for a like-for-like ANN/SNN ratio. New module
types plug in with :func:`register_rule`. Definitions: REFERENCE §4 (NeuroBench SynapticOperations).
"""
from ..core.lazy import lazy_exports

_EXPORTS = {
    "OpCounter": "counter", "Counts": "counter", "LayerCounts": "counter", "count_run": "counter",
    "count_recurrent": "counter", "ann_twin": "counter",
    "register_rule": "rules", "register_container": "rules", "spike_like": "rules", "spiking_matmul_ops": "ops",
    "OP_TYPES": "rules", "RULES": "rules",
    "EnergyModel": "targets", "load_energy_model": "targets", "parse_energy_model": "targets",
    "builtin_models": "targets", "get_models": "targets",
    "EnergyReport": "report", "total_energy": "report", "language_model_report": "language",
    "energy_figure": "plots",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
