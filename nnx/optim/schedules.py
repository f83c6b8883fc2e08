"""Learning-rate schedules: each sets ``optimizer.lr`` from a step counter.

Call ``schedule.step()`` after ``optimizer.step()``, once per batch or once per epoch: the
counter counts whichever you choose. Creating a schedule sets the step-0 learning rate at once
(as PyTorch's schedulers do). ``state_dict()`` holds the counter and the base learning rate.

>>> import nnx
>>> from nnx.optim import SGD, StepLR
>>> opt = SGD(nnx.Linear(2, 1, rng=0).parameters(), lr=0.1)
>>> schedule = StepLR(opt, step_size=2, gamma=0.5)
>>> rates = []
>>> for _ in range(5):
...     opt.step()
...     schedule.step()
...     rates.append(opt.lr)
>>> rates
[0.1, 0.05, 0.05, 0.025, 0.025]
"""

from __future__ import annotations

import math
from typing import Any

from ..core.checks import positive_int, real_in_range
from .base import Optimizer


class Schedule:
    """Base class: ``lr_at(t)`` gives the learning rate after ``t`` calls of ``step()``."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"{type(self).__name__}: expected an nnx optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_step = 0
        optimizer.lr = self.lr_at(0)

    def lr_at(self, t: int) -> float:
        raise NotImplementedError

    def step(self) -> None:
        """Advance the counter by one and set the optimizer's learning rate."""
        self.last_step += 1
        self.optimizer.lr = self.lr_at(self.last_step)

    def state_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "base_lr": self.base_lr, "last_step": self.last_step}

    def check_state_dict(self, state: Any) -> None:
        """Raise ValueError or TypeError unless ``state`` is this schedule's :meth:`state_dict`:
        the same type, a positive finite ``base_lr`` and an integer ``last_step >= 0``."""
        who = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, dict):
            raise TypeError(f"{who}: expected a dict, got {type(state).__name__}")
        if state.get("type") != type(self).__name__:
            raise ValueError(f"{who}: the state belongs to a {state.get('type')!r}")
        base_lr = state.get("base_lr")
        if isinstance(base_lr, bool) or not isinstance(base_lr, (int, float)):
            raise TypeError(f"{who}: base_lr must be a number, got {base_lr!r}")
        real_in_range(base_lr, "base_lr", who)
        step = state.get("last_step")
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"{who}: last_step must be an integer >= 0, got {step!r}")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_state_dict(state)
        self.base_lr = float(state["base_lr"])
        self.last_step = int(state["last_step"])
        self.optimizer.lr = self.lr_at(self.last_step)


class StepLR(Schedule):
    """``lr = base_lr * gamma ** (t // step_size)``."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        self.step_size = positive_int(step_size, "step_size", "StepLR")
        self.gamma = real_in_range(gamma, "gamma", "StepLR")
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        return self.base_lr * self.gamma ** (t // self.step_size)


class ExponentialLR(Schedule):
    """``lr = base_lr * gamma ** t``."""

    def __init__(self, optimizer: Optimizer, gamma: float):
        self.gamma = real_in_range(gamma, "gamma", "ExponentialLR")
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        return self.base_lr * self.gamma**t


class CosineAnnealingLR(Schedule):
    """``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / t_max)) / 2``."""

    def __init__(self, optimizer: Optimizer, t_max: int, eta_min: float = 0.0):
        self.t_max = positive_int(t_max, "t_max", "CosineAnnealingLR")
        self.eta_min = real_in_range(eta_min, "eta_min", "CosineAnnealingLR")
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        return (
            self.eta_min
            + (self.base_lr - self.eta_min) * (1.0 + math.cos(math.pi * t / self.t_max)) / 2.0
        )


class LinearWarmup(Schedule):
    """Linear warm-up from ``start_factor * base_lr`` to ``base_lr`` over ``warmup_steps``, then flat:
    ``lr = base_lr * (start_factor + (1 - start_factor) * min(t, warmup_steps) / warmup_steps)``."""

    def __init__(self, optimizer: Optimizer, warmup_steps: int, start_factor: float = 0.1):
        self.warmup_steps = positive_int(warmup_steps, "warmup_steps", "LinearWarmup")
        self.start_factor = real_in_range(start_factor, "start_factor", "LinearWarmup", high=1.0)
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        fraction = min(t, self.warmup_steps) / self.warmup_steps
        return self.base_lr * (self.start_factor + (1.0 - self.start_factor) * fraction)


class InverseTimeDecay(Schedule):
    """``lr = base_lr / (1 + decay * t)``, the decay of "Neural Networks from Scratch"."""

    def __init__(self, optimizer: Optimizer, decay: float):
        self.decay = real_in_range(decay, "decay", "InverseTimeDecay")
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        return self.base_lr / (1.0 + self.decay * t)
