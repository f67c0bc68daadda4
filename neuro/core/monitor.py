"""Recording outputs and state of the stateful modules of a network, step by step.

    with Monitor(net) as mon:
        net(x_seq)
    spikes = mon.output("1")        # [T, B, N] of the module named "1"
    v = mon.state("1", "v")         # [T, B, N]

While a Monitor is attached, multi-step calls run the generic loop (a fused kernel would not expose
per-step states); the numbers are the same.
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import ParameterError
from .loop import StatefulModule


class Monitor:
    """Context manager recording every :class:`StatefulModule` in ``net`` (or those named in ``names``)."""

    def __init__(self, net: nn.Module, names=None):
        mods = {n or type(net).__name__: m for n, m in net.named_modules() if isinstance(m, StatefulModule)}
        if names is not None:
            unknown = [n for n in names if n not in mods]
            if unknown:
                raise ParameterError("Monitor", "names", unknown, "names of stateful modules: " + ", ".join(mods))
            mods = {n: mods[n] for n in names}
        self.modules = mods
        self.records: dict[str, dict[str, list]] = {n: {"out": []} for n in mods}

    def _recorder(self, name):
        rec = self.records[name]

        def record(out, state):
            rec["out"].append(out.detach().clone())
            for field, value in state._asdict().items():
                rec.setdefault(field, []).append(value.detach().clone())

        return record

    def __enter__(self) -> "Monitor":
        for name, m in self.modules.items():
            m._recorder = self._recorder(name)
        return self

    def __exit__(self, *exc) -> None:
        for m in self.modules.values():
            m._recorder = None

    def _get(self, name, field):
        if name not in self.records:
            raise ParameterError("Monitor", "name", name, "one of " + ", ".join(self.records))
        seq = self.records[name].get(field)
        if seq is None:
            raise ParameterError("Monitor", "field", field, "one of " + ", ".join(self.records[name]))
        return torch.stack(seq) if seq else torch.empty(0)

    def output(self, name: str) -> torch.Tensor:
        """Outputs (spikes) of module ``name`` stacked over steps. Shape: [T, ...]."""
        return self._get(name, "out")

    def state(self, name: str, field: str = "v") -> torch.Tensor:
        """State field of module ``name`` after each step. Shape: [T, ...]."""
        return self._get(name, field)
