"""Callbacks: hooks the Trainer calls around epochs and batches.

Override any of ``on_fit_begin``, ``on_epoch_begin``, ``on_batch_end``, ``on_epoch_end``,
``on_fit_end`` and ``on_interrupt``. A callback that must survive a resume implements
``state_dict``/``load_state_dict`` (saved in the Trainer's checkpoints).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.checks import non_negative, positive_int
from ..io.atomic import atomic_write

if TYPE_CHECKING:
    from .trainer import Trainer


class Callback:
    """Base class: every hook does nothing.

    ``order`` sorts the Trainer's callbacks (lower first, stable): schedules step first and
    checkpoints are written last, after every other callback has updated its state.
    ``rank_zero_only``: in distributed training the callback runs on rank 0 only (those that
    write files or show progress); the others run on every rank, so they must decide the same.
    """

    order = 0
    rank_zero_only = False

    def on_fit_begin(self, trainer: Trainer) -> None: ...

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None: ...

    def on_batch_end(self, trainer: Trainer, batch: int) -> None: ...

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None: ...

    def on_fit_end(self, trainer: Trainer) -> None: ...

    def on_interrupt(self, trainer: Trainer) -> None:
        """Called when Ctrl-C stops ``fit``, before the KeyboardInterrupt propagates."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def check_state_dict(self, state: Any) -> None:
        """Raise ValueError or TypeError unless ``state`` fits ``load_state_dict`` (called on
        every callback before a checkpoint changes anything)."""
        if not isinstance(state, dict):
            raise TypeError(f"{type(self).__name__}: state must be a dict, got {state!r}")

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _optional_number(state: dict[str, Any], key: str) -> None:
    value = state.get(key)
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    ):
        raise ValueError(f"{key} must be a finite number or null, got {value!r}")


def _count(state: dict[str, Any], key: str, optional: bool = False) -> None:
    value = state.get(key)
    if optional and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key} must be an integer >= 0, got {value!r}")


def _better(mode: str, value: float, best: float | None, min_delta: float) -> bool:
    if value is None or math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def _resolve_mode(mode: str, monitor: str, who: str) -> str:
    if mode == "auto":
        return "max" if "accuracy" in monitor else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"{who}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    return mode


class ProgressBar(Callback):
    """A tqdm bar over the batches of all epochs, showing the last epoch's loss and metrics.

    Quiet when ``quiet=True`` or when the stream is not a terminal (logs and CI stay clean).
    """

    order = 5
    rank_zero_only = True

    def __init__(self, quiet: bool = False, stream: Any = None):
        self.quiet = bool(quiet)
        self.stream = stream
        self._bar: Any = None

    def on_fit_begin(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        stream = self.stream or sys.stderr
        total_epochs = trainer.target_epochs
        done = trainer.epoch
        per_epoch = trainer.batches_per_epoch
        self._bar = tqdm(
            total=(total_epochs - done) * per_epoch,
            unit="batch",
            file=stream,
            disable=True if self.quiet else None,  # None: off when not a TTY
            dynamic_ncols=True,
            leave=True,
        )

    def on_epoch_begin(self, trainer: Trainer, epoch: int) -> None:
        if self._bar is not None:
            self._bar.set_description(f"epoch {epoch + 1}/{trainer.target_epochs}")

    def on_batch_end(self, trainer: Trainer, batch: int) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if self._bar is not None:
            shown = {
                k: f"{v:.4g}"
                for k, v in logs.items()
                if k.endswith(("loss", "accuracy", "mae", "mse")) and isinstance(v, float)
            }
            self._bar.set_postfix(shown, refresh=True)

    def on_fit_end(self, trainer: Trainer) -> None:
        self.close()

    def on_interrupt(self, trainer: Trainer) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


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
        self.mode = _resolve_mode(mode, monitor, "EarlyStopping")
        self.restore_best = bool(restore_best)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None
        self._best_state: dict[str, Any] | None = None

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if self.monitor not in logs:
            raise KeyError(
                f"EarlyStopping: monitored value {self.monitor!r} is not logged; "
                f"logged: {sorted(logs)} (give fit() validation data to monitor val_*)"
            )
        value = logs[self.monitor]
        if _better(self.mode, value, self.best, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            if self.restore_best:
                self._best_state = trainer.model.state_dict()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch + 1
                trainer.stop_training = True

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.restore_best and self.stopped_epoch is not None and self._best_state is not None:
            trainer.model.load_state_dict(self._best_state)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}

    def check_state_dict(self, state: Any) -> None:
        super().check_state_dict(state)
        _optional_number(state, "best")
        _count(state, "best_epoch", optional=True)
        _count(state, "wait")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]


class ModelCheckpoint(Callback):
    """Write ``last.npz`` after every epoch and ``best.npz`` whenever ``monitor`` improves.

    Both are full Trainer checkpoints (resume from either). On Ctrl-C, ``last.npz`` is written
    with the state at the end of the last completed epoch, so resuming from it is exact.
    """

    order = 10
    rank_zero_only = True

    def __init__(
        self,
        folder: str | os.PathLike,
        monitor: str = "val_loss",
        mode: str = "auto",
        save_last: bool = True,
        save_best: bool = True,
    ):
        self.folder = Path(folder)
        self.monitor = monitor
        self.mode = _resolve_mode(mode, monitor, "ModelCheckpoint")
        self.save_last = bool(save_last)
        self.save_best = bool(save_best)
        self.best: float | None = None
        self._boundary: dict[str, Any] | None = None
        # (path, epoch) of the newest checkpoint this fit wrote; every one holds finite state
        self.last_good: tuple[Path, int] | None = None

    @property
    def last_path(self) -> Path:
        return self.folder / "last.npz"

    @property
    def best_path(self) -> Path:
        return self.folder / "best.npz"

    def on_fit_begin(self, trainer: Trainer) -> None:
        self.last_good = None
        self._boundary = trainer.checkpoint_arrays()

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        from ..io.checkpoint import write_checkpoint

        value = logs.get(self.monitor)
        improved = self.save_best and _better(self.mode, value, self.best, 0.0)
        if improved:
            self.best = value
        # after updating self.best: it is saved too. Raises NonFiniteStateError (and writes
        # nothing) when a weight or optimizer buffer is NaN or infinite.
        self._boundary = trainer.checkpoint_arrays()
        if improved:
            write_checkpoint(self.best_path, self._boundary)
            self.last_good = (self.best_path, epoch + 1)
        if self.save_last:
            write_checkpoint(self.last_path, self._boundary)
            self.last_good = (self.last_path, epoch + 1)

    def on_interrupt(self, trainer: Trainer) -> None:
        from ..io.checkpoint import write_checkpoint

        if self._boundary is not None:
            write_checkpoint(self.last_path, self._boundary)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def check_state_dict(self, state: Any) -> None:
        super().check_state_dict(state)
        _optional_number(state, "best")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]


def _atomic_text(path: Path, text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


class CSVLogger(Callback):
    """Keep ``path`` a CSV of the whole history, one row per epoch (rewritten atomically each
    epoch, so after a resume it still holds every epoch once)."""

    # After ModelCheckpoint (order 10): a Ctrl-C between the two then leaves a checkpoint at least
    # as new as the log, never a log ahead of last.npz (which a resume would rightly refuse).
    order = 20
    rank_zero_only = True

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        history = trainer.history
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=history.keys(), lineterminator="\n")
        writer.writeheader()
        for record in history:
            writer.writerow({k: "" if v is None else v for k, v in record.items()})
        _atomic_text(self.path, out.getvalue())


class JSONLinesLogger(Callback):
    """Keep ``path`` a JSON-lines file of the history, one object per epoch."""

    order = 20  # after ModelCheckpoint, as CSVLogger
    rank_zero_only = True

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        text = "".join(json.dumps(r) + "\n" for r in trainer.history)
        _atomic_text(self.path, text)


class LRScheduler(Callback):
    """Step a learning-rate schedule once per epoch (``interval="epoch"``) or per batch."""

    order = -10

    def __init__(self, schedule: Any, interval: str = "epoch"):
        if interval not in ("epoch", "batch"):
            raise ValueError(f"LRScheduler: interval must be 'epoch' or 'batch', got {interval!r}")
        self.schedule = schedule
        self.interval = interval

    def on_batch_end(self, trainer: Trainer, batch: int) -> None:
        # with gradient accumulation, once per optimizer step rather than per mini-batch
        if self.interval == "batch" and getattr(trainer, "stepped", True):
            self.schedule.step()

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if self.interval == "epoch":
            self.schedule.step()

    def state_dict(self) -> dict[str, Any]:
        return self.schedule.state_dict()

    def check_state_dict(self, state: Any) -> None:
        self.schedule.check_state_dict(state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state)
