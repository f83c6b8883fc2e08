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

    def state_dict(self) -> dict[str, Any]:
        """``{"records": [...]}``: the per-epoch records (a checkpoint component)."""
        return {"records": [dict(r) for r in self.records]}

    def check_state_dict(self, state: Any) -> None:
        """Raise ValueError or TypeError unless ``state`` is a :meth:`state_dict`: a list of
        records, each an object whose ``epoch`` (when present) is an integer >= 1, with
        ``seconds`` (every record the Trainer writes has it), every value a real number."""
        if not isinstance(state, dict) or not isinstance(state.get("records"), list):
            raise TypeError("its history is not a list of records")
        for i, record in enumerate(state["records"]):
            if not isinstance(record, dict):
                raise TypeError(f"history record {i + 1} is not an object: {record!r}")
            epoch = record.get("epoch", 1)
            if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
                raise ValueError(f"history record {i + 1} has epoch {epoch!r}, not an integer >= 1")
        for i, record in enumerate(state["records"]):  # then what every record must hold
            if "seconds" not in record:
                raise ValueError(f"history record {i + 1} has no 'seconds'")
            for key, value in record.items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise TypeError(f"history record {i + 1} has {key} {value!r}, not a number")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_state_dict(state)
        self.records = [dict(r) for r in state["records"]]

    def __repr__(self) -> str:
        return f"History({len(self)} epochs, keys={self.keys()})"
