"""Benchmarks: neuro side by side with peer libraries, on the workloads of the design guide.

* W1 (:mod:`neuro.bench.w1`): dense feed-forward LIF network, forward and forward + backward;
  peers plain PyTorch, SpikingJelly, snnTorch, Norse, and the bare matmuls as a ceiling.
* W2 (:mod:`neuro.bench.w2`): sparse recurrent network of 10,000 LIF neurons, event-driven;
  peers Brian2 (C++ standalone, Cython), a PyTorch ``index_add_`` loop, SpikingJelly dense.
* W3 (:mod:`neuro.bench.w3`): one LIF neuron, spike counts and times against a live Brian2 run.
* switch (:mod:`neuro.bench.switch`): where :class:`neuro.synapses.Linear`'s event path stops
  paying off (:func:`neuro.synapses.switch.measure_switch_density`).

Run them with ``neuro bench w1|w2|w3|switch`` (``--json`` for one JSON object). Each workload module
has ``run(Options) -> Report``. Importing this package imports no peer library.
"""
from .common import WORKLOADS, BenchUsageError, Options, Peer, Report

__all__ = ["WORKLOADS", "BenchUsageError", "Options", "Peer", "Report"]
