"""Stop training when a monitored value stops improving."""

from __future__ import annotations

from typing import Any

from ...core.checks import non_negative, positive_int
from .base import Callback, TrainerLike, better, check_count, check_optional_number, resolve_mode


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience`` epochs.

    With ``restore_best`` the model gets the parameters of its best epoch back at the end.
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        patience: int = 5,
        min_delta: float = 0.0,
        mode: str = "auto",
        restore_best: bool = True,
    ):
        self.monitor = monitor
        self.patience = positive_int(patience, "patience", "EarlyStopping")
        self.min_delta = non_negative(min_delta, "min_delta", "EarlyStopping")
        self.mode = resolve_mode(mode, monitor, "EarlyStopping")
        self.restore_best = bool(restore_best)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        self._best_state: dict[str, Any] | None = None

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, Any]) -> None:
        if self.monitor not in logs:
            raise KeyError(
                f"EarlyStopping: monitored value {self.monitor!r} is not logged; "
                f"logged: {sorted(logs)} (give fit() validation data to monitor val_*)"
            )
        value = logs[self.monitor]
        if better(self.mode, value, self.best, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            if self.restore_best:
                self._best_state = trainer.model.state_dict()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch + 1
                trainer.stop_training = True

    def on_fit_end(self, trainer: TrainerLike) -> None:
        if self.restore_best and self.stopped_epoch is not None and self._best_state is not None:
            trainer.model.load_state_dict(self._best_state)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def check_state_dict(self, state: Any) -> None:
        super().check_state_dict(state)
        check_optional_number(state, "best")
        check_count(state, "best_epoch", optional=True)
        check_count(state, "wait")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
