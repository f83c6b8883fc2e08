"""The history written to a file after every epoch: CSV or JSON lines, atomically."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from ...io.atomic import atomic_write
from .base import Callback, TrainerLike


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

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, Any]) -> None:
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

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, Any]) -> None:
        text = "".join(json.dumps(r) + "\n" for r in trainer.history)
        _atomic_text(self.path, text)
