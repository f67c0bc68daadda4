"""The one time loop, and the stateful module base that every neuron uses.

Dynamics live in pure step functions ``step(x, state, params, surrogate) -> (out, state)``.
:func:`run_steps` applies one over a leading time axis. :class:`StatefulModule` wraps a step function
with SpikingJelly's two step modes:

* ``'s'`` (single step, streaming): ``x`` is one time step ``[B, ...]``; the state is kept between
  calls until :meth:`StatefulModule.reset`;
* ``'m'`` (multi-step): ``x`` is a sequence ``[T, B, ...]``; the state after the last step is kept too.

A faster implementation of a step function over a whole sequence (a fused kernel) can be registered
with :func:`register_multistep`; it must give the same outputs, and may decline an input by
returning ``None``, in which case the generic loop runs.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from .errors import DTypeError, StepModeError

StepFn = Callable[..., tuple]
# (step_fn, device type) -> fused(x_seq, state, params, surrogate) -> (out_seq, state) | None
_MULTISTEP: dict[tuple[Callable, str], Callable] = {}

SUPPORTED_DTYPES = (torch.float32, torch.float64)


def register_multistep(step_fn: StepFn, device_type: str, impl: Callable) -> None:
    """Register a fused multi-step implementation of ``step_fn`` for one device type."""
    _MULTISTEP[(step_fn, device_type)] = impl


def multistep_impl(step_fn: StepFn, device_type: str) -> Optional[Callable]:
    return _MULTISTEP.get((step_fn, device_type))


def run_steps(step_fn: StepFn, x_seq: torch.Tensor, state, *args):
    """Apply ``step_fn`` over the leading time axis of ``x_seq``.

    Shape: x_seq [T, ...] -> out [T, ...]; returns (out, final state). Outputs that are tuples
    (e.g. graded events plus a trace) are stacked field by field.
    """
    outs = []
    for x in x_seq.unbind(0):
        out, state = step_fn(x, state, *args)
        outs.append(out)
    if outs and isinstance(outs[0], tuple):
        return tuple(torch.stack(o) for o in zip(*outs)), state
    return torch.stack(outs), state


def check_dtype(owner: str, x: torch.Tensor, allowed=SUPPORTED_DTYPES) -> None:
    if x.dtype not in allowed:
        raise DTypeError(owner, x.dtype, allowed)


class StatefulModule(nn.Module):
    """Base of every module with state across time steps.

    Subclasses set ``step_fn`` (a pure function), hold ``params`` (a record) and ``surrogate``, and
    implement :meth:`init_state`. Args: step_mode ('s' or 'm').
    """

    step_fn: StepFn

    def __init__(self, step_mode: str = "s"):
        super().__init__()
        self.step_mode = step_mode
        self.state = None
        self._recorder: Optional[Callable] = None  # set by a Monitor: f(out, state) per step

    @property
    def step_mode(self) -> str:
        return self._step_mode

    @step_mode.setter
    def step_mode(self, mode: str) -> None:
        if mode not in ("s", "m"):
            raise StepModeError(f"{type(self).__name__}.step_mode must be 's' or 'm', got {mode!r}")
        self._step_mode = mode

    # -- state -------------------------------------------------------------------------------
    def init_state(self, x: torch.Tensor):  # pragma: no cover - abstract
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the state; the next call starts from :meth:`init_state`."""
        self.state = None

    def detach(self) -> None:
        """Cut the autograd graph of the state (truncated BPTT), keeping its values."""
        if self.state is not None:
            self.state = type(self.state)(*(s.detach() for s in self.state))

    def step_args(self) -> tuple:
        """Extra arguments passed to ``step_fn`` after the state."""
        return (self.params, self.surrogate)

    # -- calls -------------------------------------------------------------------------------
    def _state_for(self, x: torch.Tensor):
        check_dtype(type(self).__name__, x)
        if self.state is None:
            return self.init_state(x)
        ref = self.state[0]
        if ref.shape != x.shape:
            raise StepModeError(
                f"{type(self).__name__}: input of shape {tuple(x.shape)} does not match the kept "
                f"state of shape {tuple(ref.shape)}; call reset() between sequences of different shape"
            )
        return self.state

    def single_step(self, x: torch.Tensor):
        """Shape: x [B, ...] -> out [B, ...]."""
        out, self.state = type(self).step_fn(x, self._state_for(x), *self.step_args())
        if self._recorder is not None:
            self._recorder(out, self.state)
        return out

    def multi_step(self, x_seq: torch.Tensor):
        """Shape: x_seq [T, B, ...] -> out [T, B, ...]."""
        if x_seq.dim() < 2:
            raise StepModeError(
                f"{type(self).__name__}: multi-step input needs a leading time axis [T, ...], "
                f"got shape {tuple(x_seq.shape)}"
            )
        state = self._state_for(x_seq[0])
        step = type(self).step_fn
        if self._recorder is not None:  # per-step states wanted: the generic loop, recording each step
            recorder = self._recorder

            def step(x, st, *args, _f=step):
                out, st = _f(x, st, *args)
                recorder(out, st)
                return out, st

            out, self.state = run_steps(step, x_seq, state, *self.step_args())
            return out
        fused = multistep_impl(step, x_seq.device.type)
        result = fused(x_seq, state, *self.step_args()) if fused is not None else None
        if result is None:
            result = run_steps(step, x_seq, state, *self.step_args())
        out, self.state = result
        return out

    def forward(self, x: torch.Tensor):
        return self.single_step(x) if self._step_mode == "s" else self.multi_step(x)

    def extra_repr(self) -> str:
        return f"{self.params}, step_mode={self._step_mode!r}"


class SequenceModule(nn.Module):
    """Wraps a stateless module (a synapse) so that it accepts [T, B, ...] in step mode 'm'.

    The wrapped module sees the time axis folded into the batch: [T*B, ...].
    """

    def __init__(self, module: nn.Module, step_mode: str = "s"):
        super().__init__()
        self.module = module
        self.step_mode = step_mode

    def forward(self, x):
        if self.step_mode == "s":
            return self.module(x)
        T, B = x.shape[:2]
        y = self.module(x.flatten(0, 1))
        return y.unflatten(0, (T, B))


def reset_net(net: nn.Module) -> None:
    """Reset every stateful module in ``net``."""
    for m in net.modules():
        if isinstance(m, StatefulModule):
            m.reset()


def detach_net(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, StatefulModule):
            m.detach()


def set_step_mode(net: nn.Module, mode: str) -> None:
    """Set the step mode of every module in ``net`` that has one."""
    for m in net.modules():
        if hasattr(m, "step_mode"):
            m.step_mode = mode
