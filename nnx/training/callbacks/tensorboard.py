"""TensorBoard event files through tensorboardX (no TensorFlow or PyTorch needed)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ...backend import to_numpy
from .base import ClosingCallback, TrainerLike

_HINT = "pip install 'nnx-trainer[tensorboard]' (or pip install tensorboardX)"


def _summary_writer() -> Any:
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ImportError(f"TensorBoardLogger needs the tensorboardX package: {_HINT}") from None
    return SummaryWriter


def scalar_tag(key: str) -> str:
    """The TensorBoard tag of a history key: ``train_loss`` -> ``loss/train``, ``val_accuracy``
    -> ``accuracy/val`` (so training and validation share one chart), ``lr`` -> ``lr``, other
    keys (``seconds``, ``samples_per_s``) -> ``time/<key>``. ``test_`` keys (written by
    :meth:`TensorBoardLogger.log_test`) join the same charts as ``<name>/test``."""
    for split in ("train", "val", "test"):
        if key.startswith(split + "_"):
            return f"{key[len(split) + 1 :]}/{split}"
    return key if key == "lr" else f"time/{key}"


class TensorBoardLogger(ClosingCallback):
    """Write TensorBoard event files into ``log_dir``: every number of each epoch's history row
    (loss and metrics of training and validation, the learning rate, the epoch's time) as a
    scalar at step = epoch (1, 2, ...), and every ``histogram_freq`` epochs (0: never) a
    histogram of each parameter's values (``weights/<name>``) and, with ``gradients=True``, of
    its gradient from the epoch's last step (``gradients/<name>``).

    Needs ``tensorboardX`` (the ``tensorboard`` extra); view with ``tensorboard --logdir
    log_dir``. A resumed run continues the same steps: events of the epochs after the
    checkpoint that the interrupted run had written are discarded (``purge_step``).
    """

    order = 20  # after ModelCheckpoint, as the other loggers
    rank_zero_only = True

    def __init__(self, log_dir: str | os.PathLike, histogram_freq: int = 0, gradients: bool = True):
        if isinstance(histogram_freq, bool) or not isinstance(histogram_freq, int):
            raise TypeError(
                f"TensorBoardLogger: histogram_freq must be an int (epochs), got {histogram_freq!r}"
            )
        if histogram_freq < 0:
            raise ValueError(
                f"TensorBoardLogger: histogram_freq must be >= 0 (0: no histograms), "
                f"got {histogram_freq}"
            )
        self._writer_class = _summary_writer()  # fail at construction, not after an epoch
        self.log_dir = Path(log_dir)
        self.histogram_freq = histogram_freq
        self.gradients = bool(gradients)
        self.writer: Any = None
        self._fits = 0

    def on_fit_begin(self, trainer: TrainerLike) -> None:
        self.close()
        purge = trainer.epoch + 1 if trainer.epoch > 0 else None
        # tensorboardX names the file by the second and the host: a second fit within the same
        # second would truncate the first one's file without a suffix of its own
        self._fits += 1
        suffix = f".{os.getpid()}.{self._fits}"
        self.writer = self._writer_class(
            str(self.log_dir), purge_step=purge, filename_suffix=suffix
        )

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, Any]) -> None:
        if self.writer is None:
            self.on_fit_begin(trainer)
        step = epoch + 1
        for key, value in logs.items():
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(scalar_tag(key), float(value), step)
        if self.histogram_freq and step % self.histogram_freq == 0:
            for name, p in trainer.model.named_parameters():
                self._histogram(f"weights/{name}", p.value, step)
                if self.gradients and p.grad is not None:
                    self._histogram(f"gradients/{name}", p.grad, step)
        self.writer.flush()

    def log_test(self, trainer: TrainerLike, values: dict[str, Any]) -> None:
        """Write the test set's results (``{"loss": ..., "accuracy": ...}`` as from
        ``Trainer.evaluate``) as ``<name>/test`` scalars at the last epoch's step, beside the
        training and validation curves; non-numbers (a confusion matrix) are skipped."""
        rows = {f"test_{k}": v for k, v in values.items()}
        was_open = self.writer is not None
        if not was_open:  # the end of fit closed it: a new file, nothing purged
            self._fits += 1
            self.writer = self._writer_class(
                str(self.log_dir), filename_suffix=f".{os.getpid()}.{self._fits}"
            )
        step = max(trainer.epoch, 1)
        for key, value in rows.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                self.writer.add_scalar(scalar_tag(key), float(value), step)
        if was_open:
            self.writer.flush()
        else:
            self.close()

    def _histogram(self, tag: str, value: Any, step: int) -> None:
        host = np.asarray(to_numpy(value), dtype=np.float64).reshape(-1)
        host = host[np.isfinite(host)]
        if host.size:
            self.writer.add_histogram(tag, host, step)

    def close(self) -> None:
        """Flush and close the event file (the Trainer's end of fit does it)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
