"""The callback base class, the view of the Trainer that callbacks get, and the
checks shared by the callbacks' ``check_state_dict``."""

from __future__ import annotations

import math
from typing import Any, Protocol


class TrainerLike(Protocol):
    """What a callback may read or set on the :class:`~nnx.Trainer` that calls it (a Protocol,
    so the callbacks do not import the Trainer)."""

    model: Any
    history: Any
    epoch: int
    step: int
    target_epochs: int
    batches_per_epoch: int
    stop_training: bool
    stepped: bool
    rank: int

    def checkpoint_arrays(self) -> dict[str, Any]: ...


class Callback:
    """Base class: every hook does nothing.

    ``order`` sorts the Trainer's callbacks (lower first, stable): schedules step first and
    checkpoints are written last, after every other callback has updated its state.
    ``rank_zero_only``: in distributed training the callback runs on rank 0 only (those that
    write files or show progress); the others run on every rank, so they must decide the same.
    """

    order = 0
    rank_zero_only = False

    def on_fit_begin(self, trainer: TrainerLike) -> None: ...

    def on_epoch_begin(self, trainer: TrainerLike, epoch: int) -> None: ...

    def on_batch_end(self, trainer: TrainerLike, batch: int) -> None: ...

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, Any]) -> None: ...

    def on_fit_end(self, trainer: TrainerLike) -> None: ...

    def on_interrupt(self, trainer: TrainerLike) -> None:
        """Called when Ctrl-C stops ``fit``, before the KeyboardInterrupt propagates."""

    def on_error(self, trainer: TrainerLike, error: BaseException) -> None:
        """Called when ``fit`` fails with any other error (a NaN loss included), before it
        propagates: release what the callback holds (a progress bar, say)."""

    def last_good_checkpoint(self) -> tuple[Any, int] | None:
        """``(path, epoch)`` of the newest checkpoint this callback wrote during the current
        ``fit`` with finite state, or None: a NaN/inf error message names it."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def check_state_dict(self, state: Any) -> None:
        """Raise ValueError or TypeError unless ``state`` fits ``load_state_dict`` (called on
        every callback before a checkpoint changes anything)."""
        if not isinstance(state, dict):
            raise TypeError(f"{type(self).__name__}: state must be a dict, got {state!r}")

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class ClosingCallback(Callback):
    """A callback that holds something to release (a progress bar, an open event file):
    :meth:`close` runs when ``fit`` ends, on Ctrl-C and on an error, and may run twice."""

    def close(self) -> None: ...

    def on_fit_end(self, trainer: TrainerLike) -> None:
        self.close()

    def on_interrupt(self, trainer: TrainerLike) -> None:
        self.close()

    def on_error(self, trainer: TrainerLike, error: BaseException) -> None:
        self.close()


def check_optional_number(state: dict[str, Any], key: str) -> None:
    value = state.get(key)
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    ):
        raise ValueError(f"{key} must be a finite number or null, got {value!r}")


def check_count(state: dict[str, Any], key: str, optional: bool = False) -> None:
    value = state.get(key)
    if optional and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key} must be an integer >= 0, got {value!r}")


def better(mode: str, value: float, best: float | None, min_delta: float) -> bool:
    if value is None or math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def resolve_mode(mode: str, monitor: str, who: str) -> str:
    """``"min"`` or ``"max"``; ``"auto"``: higher is better for accuracy, precision, recall, F1
    and AUROC (by the monitor's name), lower for everything else (losses, errors)."""
    if mode == "auto":
        higher = ("accuracy", "precision", "recall", "f1", "auroc")
        return "max" if any(word in monitor for word in higher) else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"{who}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    return mode
