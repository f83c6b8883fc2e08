"""The Trainer's checkpoint components: its counters, and the check across components.

A Trainer checkpoint is a mapping of named components (see :mod:`nnx.io.checkpoint`): the model,
optimizer, schedule and loss scaler, each callback under ``"<ClassName>.<n>"``, ``"history"``
(:class:`~nnx.training.history.History`) and ``"counters"`` (:class:`Counters`: epoch, step and
seed). :func:`check_components` holds the one rule that spans two of them.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("nnx")

COUNTERS = ("epoch", "step", "seed")


def _count(state: dict[str, Any], name: str) -> int:
    value = state.get(name, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


class Counters:
    """A Trainer's ``epoch`` (completed epochs), ``step`` (optimizer steps) and ``seed``, as a
    checkpoint component. Loading a different seed logs a warning: the resumed run continues
    the checkpoint's random streams, not the ones the Trainer was created with."""

    def __init__(self, trainer: Any):
        self.trainer = trainer

    def state_dict(self) -> dict[str, int]:
        return {name: int(getattr(self.trainer, name)) for name in COUNTERS}

    def check_state_dict(self, state: Any) -> None:
        """Raise ValueError or TypeError unless ``state`` holds integers >= 0 (absent: 0)."""
        if not isinstance(state, dict):
            raise TypeError(f"counters must be an object, got {state!r}")
        unknown = sorted(set(state) - set(COUNTERS))
        if unknown:
            raise ValueError(f"unknown counters {unknown}")
        for name in COUNTERS:
            _count(state, name)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_state_dict(state)
        self.trainer.epoch = _count(state, "epoch")
        self.trainer.step = _count(state, "step")
        seed = int(state.get("seed", self.trainer.seed))
        if seed != self.trainer.seed:
            logger.warning(
                "nnx: resuming with the checkpoint's seed %d (not %d)", seed, self.trainer.seed
            )
            self.trainer.seed = seed


def check_components(states: dict[str, Any]) -> None:
    """Checks across components: the history holds one record per completed epoch, and a
    mid-epoch position is inside the epoch after the completed ones."""
    epoch = states.get("counters", {}).get("epoch", 0)
    position = states.get("position")
    if position is not None and position.get("epoch") != epoch:
        raise ValueError(f"its position is in epoch {position.get('epoch')} but it claims {epoch}")
    if "history" in states:
        records = states["history"].get("records", [])
        if len(records) != epoch:
            raise ValueError(f"its history has {len(records)} epochs but it claims epoch {epoch}")


def keyed_callbacks(callbacks: list[Any]) -> list[tuple[str, Any]]:
    """Each callback under its checkpoint key: its class name and its rank among the callbacks
    of that class (``ModelCheckpoint.1``), so two of a kind keep separate states."""
    counts: dict[str, int] = {}
    keyed = []
    for cb in callbacks:
        name = type(cb).__name__
        counts[name] = counts.get(name, 0) + 1
        keyed.append((f"{name}.{counts[name]}", cb))
    return keyed
