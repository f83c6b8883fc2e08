"""The ranks of a distributed run agree before they train: the same settings and the same data.

Ranks launched with different data of the same shape, or a different learning rate, would train
to silently different results; ranks with different sample counts would die in a collective
with the MPI library's stack. At the start of ``Trainer.fit`` and ``Trainer.evaluate`` every rank
states a fingerprint of the settings (optimizer and its hyperparameters, loss, model parameter
names, shapes and dtypes, seed, batch size, epochs, accumulation, precision) and of its data
(sample count, sample shape and dtype of inputs and targets), then a SHA-256 of the data, which
every rank holds whole before sharding (a memory-mapped array is hashed in chunks of rows; a
map-style dataset, whose samples may be computed, is compared by count and first sample only); :meth:`nnx.distributed.World.agree` raises
:class:`~nnx.distributed.RankMismatchError` on every rank, in one line, at the first that differs.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from ..backend import to_numpy
from ..core.structure import leaves


def _layout(arrays: Any) -> list[str]:
    """``"shape dtype"`` of each sample of every array in a structure (the sample axis left out)."""
    return [f"{key} {tuple(a.shape[1:])} {a.dtype}".strip() for key, a in leaves(arrays)]


def _digest(dataset: Any) -> str:
    """SHA-256 of an ArrayDataset's arrays (a memory map is read in chunks of rows); a
    map-style dataset's samples are not read whole: its digest is ``"not computed"``."""
    if not hasattr(dataset, "x"):
        return "not computed"
    sha = hashlib.sha256()
    for _, a in [*leaves(dataset.x), *leaves(dataset.y)]:
        if isinstance(a, np.memmap):
            sha.update(f"{a.shape}{a.dtype}".encode())
            step = max(1, (64 << 20) // max(1, a[:1].nbytes))  # about 64 MB at a time
            for start in range(0, a.shape[0], step):
                sha.update(memoryview(np.ascontiguousarray(a[start : start + step])).cast("B"))
            continue
        host = np.ascontiguousarray(to_numpy(a))
        sha.update(f"{host.shape}{host.dtype}".encode())
        sha.update(memoryview(host).cast("B"))
    return sha.hexdigest()[:16]


def _sample_layout(dataset: Any) -> tuple[list[str], list[str]]:
    """Inputs' and targets' per-sample layout of an ArrayDataset, or of a map-style dataset's
    first sample."""
    if hasattr(dataset, "x"):
        return _layout(dataset.x), _layout(dataset.y)
    sample = dataset[0] if len(dataset) else None
    x, y = sample if isinstance(sample, (tuple, list)) and len(sample) == 2 else (sample, None)

    def one(value: Any) -> list[str]:
        return [
            f"{key} {tuple(np.shape(a))} {getattr(a, 'dtype', type(a).__name__)}".strip()
            for key, a in leaves(value)
        ]

    return one(x), one(y)


def settings(trainer: Any) -> dict[str, Any]:
    """The Trainer's settings that every rank must share."""
    opt = trainer.optimizer
    model = [
        f"{name} {tuple(p.value.shape)} {p.value.dtype}"
        for name, p in trainer.model.named_parameters()
    ]
    facts: dict[str, Any] = {
        "the optimizer": type(opt).__name__,
        "lr": opt.lr,
        "the loss": repr(trainer.loss),
        "the model's parameters": hashlib.sha256("\n".join(model).encode()).hexdigest()[:16],
        "seed": trainer.seed,
        "accumulate": trainer.accumulate,
        "precision": trainer.precision,
        "clip_norm": trainer.clip_norm,
        "the schedule": type(trainer.schedule).__name__,
    }
    for name in opt.hyperparameters:
        value = getattr(opt, name)
        facts[name] = list(value) if isinstance(value, tuple) else value
    return facts


def agree_on_start(trainer: Any, what: str, data: dict[str, Any], **options: Any) -> None:
    """Every rank of ``trainer``'s world checks that it holds the same settings, ``options``
    (epochs, batch size; ``loader=`` a DataLoader gives its batch size, shuffle and drop_last)
    and ``data`` (name -> ArrayDataset or None); a no-op without a
    world. Two rounds: counts and shapes first (the clearer message), then the data's hashes."""
    world = trainer.world
    if world is None:
        return
    loader = options.pop("loader", None)
    if loader is not None:
        options.update(
            batch_size=loader.batch_size, shuffle=loader.shuffle, drop_last=loader.drop_last
        )
    facts = {**settings(trainer), **options}
    present = {name: d for name, d in data.items() if d is not None}
    for name, d in present.items():
        facts[f"the {name} sample count"] = len(d)
        inputs, targets = _sample_layout(d)
        facts[f"the {name} inputs' sample shape and dtype"] = inputs
        facts[f"the {name} targets' sample shape and dtype"] = targets
    world.agree(facts, what)
    world.agree({f"the {name} data (SHA-256)": _digest(d) for name, d in present.items()}, what)
