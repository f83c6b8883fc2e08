"""Write resumable checkpoints during training: the last epoch's and the best one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ...core.checks import positive_int
from ...io.checkpoint import write_checkpoint
from .base import Callback, TrainerLike, better, check_optional_number, resolve_mode


class ModelCheckpoint(Callback):
    """Write ``last.npz`` after every epoch and ``best.npz`` whenever ``monitor`` improves.

    Both are full Trainer checkpoints (resume from either). With ``every_n_steps=N``,
    ``last.npz`` is also written after every ``N``-th optimizer step inside an epoch (a
    mid-epoch checkpoint: resuming from it continues with the next batch, see
    :mod:`nnx.training.position`); it needs data with a sampler (arrays, a dataset or a
    DataLoader) and one process, and refuses otherwise when ``fit`` starts. On Ctrl-C,
    ``last.npz`` is written with the state of the last checkpoint this callback took (the last
    completed epoch, or the last mid-epoch one), so resuming from it is exact.
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
        every_n_steps: int | None = None,
    ):
        self.folder = Path(folder)
        self.monitor = monitor
        self.mode = resolve_mode(mode, monitor, "ModelCheckpoint")
        self.save_last = bool(save_last)
        self.save_best = bool(save_best)
        if every_n_steps is not None:
            every_n_steps = positive_int(every_n_steps, "every_n_steps", "ModelCheckpoint")
        self.every_n_steps = every_n_steps
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

    def on_fit_begin(self, trainer: TrainerLike) -> None:
        refusal = getattr(trainer, "mid_epoch_refusal", None)
        if self.every_n_steps is not None and refusal is not None:
            raise ValueError(f"ModelCheckpoint(every_n_steps={self.every_n_steps}): {refusal}")
        self.last_good = None
        self._boundary = trainer.checkpoint_arrays()

    def on_batch_end(self, trainer: TrainerLike, batch: int) -> None:
        n = self.every_n_steps
        if n is None or not trainer.stepped or trainer.step % n:
            return
        if batch + 1 >= trainer.batches_per_epoch:  # the epoch's end writes it anyway
            return
        self._boundary = trainer.checkpoint_arrays()
        if self.save_last:
            write_checkpoint(self.last_path, self._boundary)
            self.last_good = (self.last_path, trainer.epoch)

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, Any]) -> None:
        value = logs.get(self.monitor)
        improved = self.save_best and better(self.mode, value, self.best, 0.0)
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

    def on_interrupt(self, trainer: TrainerLike) -> None:
        if self._boundary is not None:
            write_checkpoint(self.last_path, self._boundary)

    def last_good_checkpoint(self) -> tuple[Path, int] | None:
        return self.last_good

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def check_state_dict(self, state: Any) -> None:
        super().check_state_dict(state)
        check_optional_number(state, "best")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
