"""Adaptive optimizers, in order of increasing complexity: Adagrad, RMSprop, Adam, AdamW.

Each scales its step per parameter entry by a running statistic of the squared gradients, and
follows the update rule PyTorch documents for ``torch.optim`` (with the same defaults), so
hyperparameters carry over.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ..backend import is_writeable
from ..core.checks import real_in_range
from ..core.module import Parameter
from .base import Optimizer, _subtract


class Adagrad(Optimizer):
    """Adagrad: per-element learning rates shrinking with the accumulated squared gradients.

    With ``g = grad + weight_decay * p`` and step ``t``::

        lr_t = lr / (1 + (t - 1) * lr_decay)
        s = s + g^2
        p = p - lr_t * g / (sqrt(s) + eps)
    """

    hyperparameters = ("lr_decay", "weight_decay", "initial_accumulator_value", "eps")
    state_keys = ("sum",)
    elementwise = True

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ):
        super().__init__(params, lr)
        self.lr_decay = real_in_range(lr_decay, "lr_decay", "Adagrad")
        self.weight_decay = real_in_range(weight_decay, "weight_decay", "Adagrad")
        self.initial_accumulator_value = real_in_range(
            initial_accumulator_value, "initial_accumulator_value", "Adagrad"
        )
        self.eps = real_in_range(eps, "eps", "Adagrad")

    def _update(self, p: Parameter, g: Any, state: dict[str, Any], xp: Any) -> None:
        g = self._with_weight_decay(p, g, self.weight_decay)
        s = state.get("sum")
        if s is None:
            s = xp.full_like(p.value, self.initial_accumulator_value)
        s += g * g
        state["sum"] = s
        lr_t = self.lr / (1.0 + (state["step"] - 1) * self.lr_decay)
        _subtract(p, lr_t * g / (xp.sqrt(s) + self.eps))


class RMSprop(Optimizer):
    """RMSprop: divide by a running root-mean-square of the gradients.

    With ``g = grad + weight_decay * p``::

        v = alpha * v + (1 - alpha) * g^2
        a = mean of g, same recurrence   (centered only; then v - a^2 replaces v)
        d = g / (sqrt(v) + eps)
        b = momentum * b + d, p = p - lr * b   if momentum > 0   else   p = p - lr * d
    """

    hyperparameters = ("alpha", "eps", "weight_decay", "momentum", "centered")
    state_keys = ("square_avg", "momentum_buffer", "grad_avg")
    elementwise = True

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ):
        super().__init__(params, lr)
        self.alpha = real_in_range(alpha, "alpha", "RMSprop", high=1.0)
        self.eps = real_in_range(eps, "eps", "RMSprop")
        self.weight_decay = real_in_range(weight_decay, "weight_decay", "RMSprop")
        self.momentum = real_in_range(momentum, "momentum", "RMSprop")
        self.centered = bool(centered)

    def _update(self, p: Parameter, g: Any, state: dict[str, Any], xp: Any) -> None:
        g = self._with_weight_decay(p, g, self.weight_decay)
        v = state.get("square_avg")
        if v is None:
            v = xp.zeros_like(p.value)
        v *= self.alpha  # v = alpha * v + (1 - alpha) * g^2
        v += (1.0 - self.alpha) * (g * g)
        state["square_avg"] = v
        if self.centered:
            a = state.get("grad_avg")
            if a is None:
                a = xp.zeros_like(p.value)
            a += (1.0 - self.alpha) * (g - a)  # a = a + (1 - alpha) * (g - a)
            state["grad_avg"] = a
            denom = xp.sqrt(v - a * a) + self.eps
        else:
            denom = xp.sqrt(v) + self.eps
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = xp.zeros_like(p.value)
            buf *= self.momentum  # b = momentum * b + g / denom
            buf += g / denom
            state["momentum_buffer"] = buf
            _subtract(p, self.lr * buf)
        else:
            _subtract(p, self.lr * (g / denom))


class Adam(Optimizer):
    """Adam (Kingma & Ba), optionally AMSGrad; ``weight_decay`` is an L2 term added to the gradient.

    With ``g = grad + weight_decay * p`` and step ``t``::

        m = m + (1 - beta1) * (g - m)
        v = beta2 * v + (1 - beta2) * g^2
        v_hat = max(v_hat, v)   (amsgrad; then v_hat replaces v below)
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    hyperparameters = ("betas", "eps", "weight_decay", "amsgrad")
    state_keys = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    elementwise = True
    _decoupled = False

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ):
        super().__init__(params, lr)
        who = type(self).__name__
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{who}: betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (
            real_in_range(betas[0], "beta1", who, high=1.0, high_open=True),
            real_in_range(betas[1], "beta2", who, high=1.0, high_open=True),
        )
        self.eps = real_in_range(eps, "eps", who)
        self.weight_decay = real_in_range(weight_decay, "weight_decay", who)
        self.amsgrad = bool(amsgrad)

    def _update(self, p: Parameter, g: Any, state: dict[str, Any], xp: Any) -> None:
        beta1, beta2 = self.betas
        if self._decoupled:
            if self.weight_decay:  # AdamW: p = p * (1 - lr * weight_decay), before the Adam step
                if is_writeable(p.value):
                    p.value *= 1.0 - self.lr * self.weight_decay
                else:
                    p.value = p.value * (1.0 - self.lr * self.weight_decay)
        else:
            g = self._with_weight_decay(p, g, self.weight_decay)
        m, v = state.get("exp_avg"), state.get("exp_avg_sq")
        if m is None:
            m, v = xp.zeros_like(p.value), xp.zeros_like(p.value)
        m += (1.0 - beta1) * (g - m)  # m = m + (1 - beta1) * (g - m)
        v *= beta2  # v = beta2 * v + (1 - beta2) * g^2
        v += (1.0 - beta2) * (g * g)
        state["exp_avg"], state["exp_avg_sq"] = m, v
        if self.amsgrad:
            v_max = state.get("max_exp_avg_sq")
            v = xp.maximum(
                xp.zeros_like(v) if v_max is None else v_max, v
            )  # a new array, never v itself
            state["max_exp_avg_sq"] = v
        t = state["step"]  # a Python int, or a traced 0-d array inside nnx.compile
        step_size = self.lr / (1.0 - beta1**t)
        bias2 = 1.0 - beta2**t
        denom = (
            xp.sqrt(v) / (math.sqrt(bias2) if isinstance(bias2, float) else bias2**0.5) + self.eps
        )
        _subtract(p, step_size * (m / denom))


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``p = p * (1 - lr * weight_decay)``
    before each Adam step, instead of an L2 term in the gradient. Default ``weight_decay=0.01``."""

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad)
