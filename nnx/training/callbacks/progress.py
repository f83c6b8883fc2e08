"""A progress bar over the batches of a fit."""

from __future__ import annotations

import sys
from typing import Any

from .base import Callback, TrainerLike


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

    def on_fit_begin(self, trainer: TrainerLike) -> None:
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

    def on_epoch_begin(self, trainer: TrainerLike, epoch: int) -> None:
        if self._bar is not None:
            self._bar.set_description(f"epoch {epoch + 1}/{trainer.target_epochs}")

    def on_batch_end(self, trainer: TrainerLike, batch: int) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, Any]) -> None:
        if self._bar is not None:
            shown = {
                k: f"{v:.4g}"
                for k, v in logs.items()
                if k.endswith(("loss", "accuracy", "mae", "mse")) and isinstance(v, float)
            }
            self._bar.set_postfix(shown, refresh=True)

    def on_fit_end(self, trainer: TrainerLike) -> None:
        self.close()

    def on_interrupt(self, trainer: TrainerLike) -> None:
        self.close()

    def on_error(self, trainer: TrainerLike, error: BaseException) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
