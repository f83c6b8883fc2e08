"""Stochastic gradient descent, with momentum, Nesterov momentum and weight decay, following the
update rule PyTorch documents for ``torch.optim.SGD`` (with the same defaults)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import _native
from ..core.checks import real_in_range
from ..core.module import Parameter
from .base import Optimizer, _subtract


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay.

    With ``g = grad + weight_decay * p``::

        b = g                              (first step)
        b = momentum * b + (1 - dampening) * g
        g = g + momentum * b   if nesterov else   g = b
        p = p - lr * g
    """

    hyperparameters = ("momentum", "dampening", "weight_decay", "nesterov")
    state_keys = ("momentum_buffer",)
    elementwise = True

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        super().__init__(params, lr)
        self.momentum = real_in_range(momentum, "momentum", "SGD")
        self.dampening = real_in_range(dampening, "dampening", "SGD")
        self.weight_decay = real_in_range(weight_decay, "weight_decay", "SGD")
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("SGD: nesterov momentum needs momentum > 0 and dampening = 0")

    def step(self) -> None:
        if not self._multi_tensor_step():
            super().step()

    def _multi_tensor_step(self) -> bool:
        """PyTorch: the momentum update of every parameter at once (:func:`nnx._native.sgd_momentum`,
        the same operations, so the same results), where every parameter has a gradient and a
        momentum buffer of its own type, shape, dtype and device; False (nothing done) otherwise."""
        if not self.momentum or self.dampening or self.nesterov or self.weight_decay:
            return False
        if type(self)._update is not SGD._update:  # a subclass's own rule: the loop runs it
            return False
        lib = _native.library(self.params[0].value)
        if lib is None or not _native.is_torch(lib):
            return False
        values, grads, buffers = [], [], []
        kind, where = type(self.params[0].value), self.params[0].value.device
        for p, state in zip(self.params, self.state, strict=True):
            value, grad, buf = p.value, p.grad, state.get("momentum_buffer")
            if not (
                type(value) is kind
                and type(grad) is kind
                and type(buf) is kind
                and grad.shape == value.shape == buf.shape
                and grad.dtype == value.dtype == buf.dtype
                and grad.device == where == value.device == buf.device
            ):
                return False  # the loop: its checks, moves and first steps
            values.append(value)
            grads.append(grad)
            buffers.append(buf)
        _native.sgd_momentum(lib, values, grads, buffers, self.momentum, self._lr)
        for state in self.state:
            state["step"] = state.get("step", 0) + 1
        return True

    def _update(self, p: Parameter, g: Any, state: dict[str, Any], xp: Any) -> None:
        if self.weight_decay:
            g = self._with_weight_decay(p, g, self.weight_decay)
        momentum = self.momentum
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = xp.asarray(g, copy=True)
            else:
                buf *= momentum  # b = momentum * b + (1 - dampening) * g
                buf += (1.0 - self.dampening) * g if self.dampening else g
            state["momentum_buffer"] = buf  # rebound by *= on immutable (JAX) arrays
            g = g + momentum * buf if self.nesterov else buf
        _subtract(p, self._lr * g)
