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
        self._apply(0)

    def lr_at(self, t: int) -> float:
        raise NotImplementedError

    def _apply(self, t: int) -> None:
        """Set the optimizer's learning rate (and whatever else the schedule drives) for step t."""
        self.optimizer.lr = self.lr_at(t)

    def step(self) -> None:
        """Advance the counter by one and set the optimizer's learning rate."""
        self.last_step += 1
        self._apply(self.last_step)

    def rebase(self, lr: float) -> None:
        """Make ``lr`` the base learning rate from the current step on (a resume with a new
        ``--lr``): the schedule goes on from its step, scaled from the new base."""
        self.base_lr = real_in_range(lr, "lr", f"{type(self).__name__}.rebase")
        self._apply(self.last_step)

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
        self._apply(self.last_step)


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


class CosineAnnealingWarmRestarts(Schedule):
    """Cosine annealing from ``base_lr`` to ``eta_min`` over ``t_0`` steps, then a restart at
    ``base_lr`` with a period ``t_mult`` times longer (SGDR, PyTorch's
    ``CosineAnnealingWarmRestarts`` stepped without an epoch argument):
    ``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * t_cur / t_i)) / 2``, where ``t_cur``
    counts the steps since the last restart and ``t_i`` is the current period."""

    def __init__(self, optimizer: Optimizer, t_0: int, t_mult: int = 1, eta_min: float = 0.0):
        who = "CosineAnnealingWarmRestarts"
        self.t_0 = positive_int(t_0, "t_0", who)
        self.t_mult = positive_int(t_mult, "t_mult", who)
        self.eta_min = real_in_range(eta_min, "eta_min", who)
        super().__init__(optimizer)

    def period(self, t: int) -> tuple[int, int]:
        """``(t_cur, t_i)`` after ``t`` steps: the steps since the last restart, the period."""
        if self.t_mult == 1:
            return t % self.t_0, self.t_0
        t_cur, t_i = t, self.t_0
        while t_cur >= t_i:
            t_cur -= t_i
            t_i *= self.t_mult
        return t_cur, t_i

    def lr_at(self, t: int) -> float:
        t_cur, t_i = self.period(t)
        return (
            self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2
        )


class OneCycleLR(Schedule):
    """The 1cycle policy (Smith and Topin), PyTorch's ``OneCycleLR`` step for step: from
    ``max_lr / div_factor`` up to ``max_lr`` over the first ``pct_start`` of ``total_steps``,
    then down to ``max_lr / div_factor / final_div_factor`` (``three_phase``: back down to the
    start over as many steps, then to the minimum), annealed by cosine (``"cos"``) or linearly.

    Step it once per batch (``Trainer(..., schedule_interval="batch")``); ``total_steps`` is
    given, or ``epochs * steps_per_epoch``. ``max_lr`` defaults to the optimizer's learning
    rate and is the schedule's ``base_lr``. With ``cycle_momentum`` the momentum (SGD, RMSprop)
    or Adam's ``beta1`` cycles inversely between ``max_momentum`` and ``base_momentum``. Stepping
    past ``total_steps`` is an error, as in PyTorch.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float | None = None,
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
    ):
        who = "OneCycleLR"
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{who}: expected an nnx optimizer, got {type(optimizer).__name__}")
        if total_steps is not None:
            self.total_steps = positive_int(total_steps, "total_steps", who)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = positive_int(epochs, "epochs", who) * positive_int(
                steps_per_epoch, "steps_per_epoch", who
            )
        else:
            raise ValueError(f"{who}: give total_steps, or epochs and steps_per_epoch")
        self.pct_start = real_in_range(pct_start, "pct_start", who, high=1.0)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"{who}: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}"
            )
        self.anneal_strategy = anneal_strategy
        self.div_factor = real_in_range(div_factor, "div_factor", who)
        self.final_div_factor = real_in_range(final_div_factor, "final_div_factor", who)
        if self.div_factor == 0 or self.final_div_factor == 0:
            raise ValueError(f"{who}: div_factor and final_div_factor must be > 0")
        self.three_phase = bool(three_phase)
        t, p = self.total_steps, self.pct_start
        # (end_step, start, end) of each phase: "initial", "max", "min" learning rates and the
        # momentum at the same points ("max" momentum where the rate is lowest), as in PyTorch
        if self.three_phase:
            self.phases = [
                (float(p * t) - 1, "initial", "max", "max", "base"),
                (float(2 * p * t) - 2, "max", "initial", "base", "max"),
                (t - 1, "initial", "min", "max", "max"),
            ]
        else:
            self.phases = [
                (float(p * t) - 1, "initial", "max", "max", "base"),
                (t - 1, "max", "min", "base", "max"),
            ]
        start = 0.0
        for end, *_ in self.phases:
            if end == start:
                raise ValueError(
                    f"{who}: pct_start={pct_start} of total_steps={t} leaves a phase of no "
                    f"steps; give more steps or another pct_start"
                )
            start = end
        self.cycle_momentum = bool(cycle_momentum)
        self.momentum_name: str | None = None
        if self.cycle_momentum:
            if hasattr(optimizer, "betas"):
                self.momentum_name = "betas"
            elif hasattr(optimizer, "momentum"):
                self.momentum_name = "momentum"
            else:
                raise ValueError(
                    f"{who}: cycle_momentum=True needs an optimizer with momentum (SGD, RMSprop) "
                    f"or betas (Adam, AdamW), not {type(optimizer).__name__}; pass "
                    f"cycle_momentum=False"
                )
            high = 1.0 if self.momentum_name == "momentum" else math.nextafter(1.0, 0.0)
            self.base_momentum = real_in_range(base_momentum, "base_momentum", who, high=high)
            self.max_momentum = real_in_range(max_momentum, "max_momentum", who, high=high)
        if max_lr is not None:
            optimizer.lr = real_in_range(max_lr, "max_lr", who)
        super().__init__(optimizer)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _at(self, t: int, values: dict[str, float], first: int, second: int) -> float:
        if t > self.total_steps:
            raise ValueError(
                f"OneCycleLR: stepped {t} times, past total_steps={self.total_steps}; plan the "
                f"cycle over the whole run (total_steps, or epochs * steps_per_epoch)"
            )
        t = min(t, self.total_steps - 1)  # the step() after the last batch keeps the final rate
        start_step = 0.0
        for i, phase in enumerate(self.phases):
            end_step = phase[0]
            if t <= end_step or i == len(self.phases) - 1:
                pct = (t - start_step) / (end_step - start_step)
                return self._anneal(values[phase[first]], values[phase[second]], pct)
            start_step = end_step
        raise AssertionError("unreachable")

    def lr_at(self, t: int) -> float:
        initial = self.base_lr / self.div_factor
        rates = {"initial": initial, "max": self.base_lr, "min": initial / self.final_div_factor}
        return self._at(t, rates, 1, 2)

    def momentum_at(self, t: int) -> float:
        """The momentum (or ``beta1``) after ``t`` steps (with ``cycle_momentum``)."""
        return self._at(t, {"base": self.base_momentum, "max": self.max_momentum}, 3, 4)

    def _apply(self, t: int) -> None:
        lr = self.lr_at(t)
        if self.momentum_name == "betas":
            self.optimizer.betas = (self.momentum_at(t), self.optimizer.betas[1])
        elif self.momentum_name == "momentum":
            self.optimizer.momentum = self.momentum_at(t)
        self.optimizer.lr = lr

    def step(self) -> None:
        self.lr_at(self.last_step + 1)  # past total_steps: an error, and nothing changes
        super().step()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "total_steps": self.total_steps}

    def check_state_dict(self, state: Any) -> None:
        super().check_state_dict(state)
        who = "OneCycleLR.load_state_dict"
        if state.get("total_steps") != self.total_steps:
            raise ValueError(
                f"{who}: the state is of a cycle of {state.get('total_steps')!r} steps, this "
                f"schedule's has {self.total_steps}"
            )
        if state["last_step"] > self.total_steps:
            raise ValueError(
                f"{who}: last_step {state['last_step']} is past total_steps={self.total_steps}"
            )


class ReduceLROnPlateau(Schedule):
    """Multiply the learning rate by ``factor`` when a logged metric stops improving, as
    PyTorch's ``ReduceLROnPlateau``: ``step(value)`` once per epoch with the metric's value
    (the :class:`~nnx.training.callbacks.LRScheduler` callback passes ``logs[monitor]``).

    A value improves on the best so far when it is below ``best * (1 - threshold)``
    (``mode="min"``, ``threshold_mode="rel"``), below ``best - threshold`` (``"abs"``), or above
    ``best * (1 + threshold)`` / ``best + threshold`` in ``mode="max"``. After more than
    ``patience`` epochs without improvement the rate becomes ``max(lr * factor, min_lr)`` (a
    change smaller than ``eps`` is skipped) and ``cooldown`` epochs pass before bad epochs count
    again. The state (best, bad epochs, cooldown counter, current rate) is checkpointed.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        monitor: str = "val_loss",
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ):
        who = "ReduceLROnPlateau"
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"{who}: monitor must be a metric's name such as 'val_loss'")
        if mode not in ("min", "max"):
            raise ValueError(f"{who}: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(
                f"{who}: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}"
            )
        self.monitor = monitor
        self.mode = mode
        self.factor = real_in_range(factor, "factor", who, high=1.0, high_open=True)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"{who}: patience must be an integer >= 0, got {patience!r}")
        if isinstance(cooldown, bool) or not isinstance(cooldown, int) or cooldown < 0:
            raise ValueError(f"{who}: cooldown must be an integer >= 0, got {cooldown!r}")
        self.patience, self.cooldown = patience, cooldown
        self.threshold = real_in_range(threshold, "threshold", who)
        self.threshold_mode = threshold_mode
        self.min_lr = real_in_range(min_lr, "min_lr", who)
        self.eps = real_in_range(eps, "eps", who)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.lr: float | None = None  # the current rate; None: the optimizer's, at creation
        super().__init__(optimizer)

    def lr_at(self, t: int) -> float:
        """The current rate: it depends on the metric's history, not on ``t``."""
        return self.base_lr if self.lr is None else self.lr

    def _apply(self, t: int) -> None:
        self.lr = self.lr_at(t)
        self.optimizer.lr = self.lr

    def rebase(self, lr: float) -> None:
        """Continue from learning rate ``lr`` (a resume with a new ``--lr``)."""
        self.base_lr = self.lr = real_in_range(lr, "lr", "ReduceLROnPlateau.rebase")
        self._apply(self.last_step)

    def is_better(self, value: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return value < self.best * (1.0 - self.threshold)
        if self.mode == "min":
            return value < self.best - self.threshold
        if self.threshold_mode == "rel":
            return value > self.best * (self.threshold + 1.0)
        return value > self.best + self.threshold

    def step(self, value: Any = None) -> None:  # type: ignore[override]
        """One epoch with the monitored metric at ``value``."""
        if value is None:
            raise TypeError(
                f"ReduceLROnPlateau.step needs the value of the monitored metric "
                f"{self.monitor!r}: step(value)"
            )
        current = float(value)
        if not math.isfinite(current):
            raise ValueError(f"ReduceLROnPlateau: {self.monitor} is {current}, not a finite number")
        self.last_step += 1
        if self.is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            old = float(self.lr_at(self.last_step))
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                self.lr = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._apply(self.last_step)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "mode": self.mode,
            "lr": self.lr_at(self.last_step),
            "best": self.best if math.isfinite(self.best) else None,  # None: nothing seen yet
            "num_bad_epochs": self.num_bad_epochs,
            "cooldown_counter": self.cooldown_counter,
        }

    def check_state_dict(self, state: Any) -> None:
        super().check_state_dict(state)
        who = "ReduceLROnPlateau.load_state_dict"
        if state.get("mode") != self.mode:
            raise ValueError(
                f"{who}: the state is of mode {state.get('mode')!r}, not {self.mode!r}"
            )
        lr = state.get("lr")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)):
            raise TypeError(f"{who}: lr must be a number, got {lr!r}")
        real_in_range(lr, "lr", who)
        best = state.get("best")
        if best is not None and (
            isinstance(best, bool) or not isinstance(best, (int, float)) or not math.isfinite(best)
        ):
            raise ValueError(f"{who}: best must be a finite number or null, got {best!r}")
        for name in ("num_bad_epochs", "cooldown_counter"):
            value = state.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{who}: {name} must be an integer >= 0, got {value!r}")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_state_dict(state)
        best = state["best"]
        self.best = (math.inf if self.mode == "min" else -math.inf) if best is None else float(best)
        self.num_bad_epochs = int(state["num_bad_epochs"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self.lr = float(state["lr"])
        super().load_state_dict(state)
