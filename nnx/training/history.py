"""Per-epoch records of a training run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class History:
    """One record (a dict) per epoch: ``epoch``, ``train_loss``, ``val_loss``, metrics as
    ``train_<name>`` / ``val_<name>``, ``lr``, ``seconds`` and ``samples_per_s``.

    >>> h = History([{"epoch": 1, "train_loss": 0.5}, {"epoch": 2, "train_loss": 0.25}])
    >>> h["train_loss"], h.last["epoch"], len(h)
    ([0.5, 0.25], 2, 2)
    """

    def __init__(self, records: list[dict[str, Any]] | None = None):
        self.records: list[dict[str, Any]] = [dict(r) for r in records or []]

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(dict(record))

    def __getitem__(self, key: str) -> list[Any]:
        """The values of ``key`` across epochs (None where an epoch lacks it)."""
        if not any(key in r for r in self.records):
            known = sorted({k for r in self.records for k in r})
            raise KeyError(f"no {key!r} in the history; recorded keys: {known}")
        return [r.get(key) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    @property
    def last(self) -> dict[str, Any]:
        if not self.records:
            raise IndexError("the history is empty")
        return self.records[-1]

    def keys(self) -> list[str]:
        """Every key, in first-seen order."""
        seen: dict[str, None] = {}
        for r in self.records:
            seen.update(dict.fromkeys(r))
        return list(seen)

    def __repr__(self) -> str:
        return f"History({len(self)} epochs, keys={self.keys()})"
