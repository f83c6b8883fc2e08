"""Step a learning-rate schedule from the training loop."""

from __future__ import annotations

from typing import Any

from .base import Callback, TrainerLike


class LRScheduler(Callback):
    """Step a learning-rate schedule once per epoch (``interval="epoch"``) or per batch.

    A schedule that follows a logged metric (:class:`~nnx.optim.ReduceLROnPlateau`, which has a
    ``monitor``) is stepped per epoch with ``logs[monitor]``; a monitor never logged is an error
    naming the metrics that are."""

    order = -10

    def __init__(self, schedule: Any, interval: str = "epoch"):
        if interval not in ("epoch", "batch"):
            raise ValueError(f"LRScheduler: interval must be 'epoch' or 'batch', got {interval!r}")
        self.monitor = getattr(schedule, "monitor", None)
        if self.monitor is not None and interval != "epoch":
            raise ValueError(
                f"LRScheduler: {type(schedule).__name__} follows {self.monitor!r}, logged once "
                f"per epoch; use interval='epoch'"
            )
        self.schedule = schedule
        self.interval = interval

    def on_batch_end(self, trainer: TrainerLike, batch: int) -> None:
        # with gradient accumulation, once per optimizer step rather than per mini-batch
        if self.interval == "batch" and getattr(trainer, "stepped", True):
            self.schedule.step()

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, Any]) -> None:
        if self.interval != "epoch":
            return
        if self.monitor is None:
            self.schedule.step()
            return
        if self.monitor not in logs:
            raise ValueError(
                f"{type(self.schedule).__name__}: monitor {self.monitor!r} is not logged; the "
                f"logs hold {', '.join(sorted(logs))}"
            )
        self.schedule.step(logs[self.monitor])

    def state_dict(self) -> dict[str, Any]:
        return self.schedule.state_dict()

    def check_state_dict(self, state: Any) -> None:
        self.schedule.check_state_dict(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state)
