"""Callbacks: hooks the Trainer calls around epochs and batches.

Override any of ``on_fit_begin``, ``on_epoch_begin``, ``on_batch_end``, ``on_epoch_end``,
``on_fit_end``, ``on_interrupt`` and ``on_error``. A callback that must survive a resume
implements ``state_dict``/``load_state_dict`` (saved in the Trainer's checkpoints).

One module per job: :mod:`.base` (``Callback``, ``TrainerLike``), :mod:`.progress`,
:mod:`.checkpoint`, :mod:`.logging` (CSV and JSON lines), :mod:`.tensorboard`,
:mod:`.early_stopping`, :mod:`.lr`.
"""

from __future__ import annotations

from typing import Any

from .base import Callback, TrainerLike
from .checkpoint import ModelCheckpoint
from .early_stopping import EarlyStopping
from .logging import CSVLogger, JSONLinesLogger
from .lr import LRScheduler
from .progress import ProgressBar
from .tensorboard import TensorBoardLogger

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "JSONLinesLogger",
    "LRScheduler",
    "ModelCheckpoint",
    "ProgressBar",
    "TensorBoardLogger",
    "TrainerLike",
    "standard_callbacks",
]


def standard_callbacks(
    schedule: Any = None, schedule_interval: str = "epoch", progress: bool = True
) -> list[Callback]:
    """The callbacks a Trainer adds for its own options: an :class:`LRScheduler` stepping
    ``schedule`` per ``schedule_interval`` (when a schedule is given) and a
    :class:`ProgressBar` (when ``progress``)."""
    made: list[Callback] = []
    if schedule is not None:
        made.append(LRScheduler(schedule, schedule_interval))
    if progress:
        made.append(ProgressBar())
    return made
