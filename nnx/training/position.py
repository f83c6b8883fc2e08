"""Where the Trainer is inside an epoch: the checkpoint component that makes a mid-epoch
checkpoint resume exactly.

A checkpoint written between two batches (``ModelCheckpoint(every_n_steps=N)``, or Ctrl-C after
such a checkpoint) holds, besides the model, optimizer, schedule and counters, a ``"position"``
component (:class:`EpochPosition`): the epoch, the number of batches done, the sampler's
identity (the DataLoader's seed, shuffle, batch size, drop_last, sample count and batch count:
the epoch's permutation is drawn from ``(seed, epoch)``, so these fix it), and the epoch's
running sums (every batch's loss and sample count so far, each metric's running total and
count, the learning rate at the epoch's start). Dropout masks and augmentation are drawn from
``(seed, epoch, batch)`` (:func:`reseed_modules`), so they need no saved generator state.
Resuming continues with the next batch, and "train, stop, resume" gives bitwise the
parameters and history of training straight through.

At an epoch boundary the component's state is empty and is not stored. A loaded position is
refused, with one line naming why, when the resumed ``fit`` cannot continue it exactly: data
that is a stream (an iterable of batches has no sampler state to seek in), another sampler
(other batch size, seed, shuffle, drop_last or data size), distributed training, or a batch
index that is not on a boundary of gradient accumulation.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..backend import to_numpy
from ..data import DataLoader

LOADER_KEYS = ("batches", "batch_size", "shuffle", "drop_last", "seed", "samples")


def reseeders(model: Any) -> list[Any]:
    """The ``reseed`` methods of the model's modules that have one (dropout, fractional pooling),
    in module order: found once per epoch, called before every batch by :func:`reseed_modules`."""
    return [r for r in (getattr(m, "reseed", None) for m in model.modules()) if callable(r)]


def reseed_modules(reseeds: list[Any], seed: int, epoch: int, batch: int) -> None:
    """Give each of ``reseeds`` (:func:`reseeders`) a seed drawn from ``(seed, epoch, batch)``
    (the ``k``-th method the ``k``-th number): the modules' random numbers then depend on the
    batch alone, so a run resumed at any batch draws the same ones."""
    if reseeds:
        seeds = np.random.SeedSequence([seed, epoch, batch]).generate_state(len(reseeds))
        for reseed, value in zip(reseeds, seeds, strict=True):
            reseed(int(value))


def loader_identity(loader: Any) -> dict[str, Any]:
    """What fixes a DataLoader's batches of an epoch (see the module docstring)."""
    return {
        "batches": len(loader),
        "batch_size": loader.batch_size,
        "shuffle": loader.shuffle,
        "drop_last": loader.drop_last,
        "seed": loader.seed,
        "samples": len(loader.dataset),
    }


class EpochProgress:
    """The running state of one epoch of ``Trainer.fit``: batches done, their losses (device
    scalars, or host float64 values for the batches before a resume) and sample counts, the
    metrics (their running totals live on the metric objects) and the epoch's start values."""

    def __init__(self, epoch: int, lr: float, first_step: int, loader: Any):
        self.epoch = epoch
        self.lr = lr
        self.first_step = first_step
        self.loader = loader
        self.done = np.zeros(0)  # host losses of the batches before a resume
        self.losses: list[Any] = []  # device losses of the batches since
        self.sizes: list[int] = []
        self.seconds = 0.0  # before this run's part of the epoch
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds spent in this epoch, over every run that trained part of it."""
        return self.seconds + time.perf_counter() - self.started

    @property
    def batch(self) -> int:
        """Batches completed in this epoch."""
        return len(self.sizes)

    def snapshot(self, metrics: list[Any]) -> dict[str, Any]:
        """The position as a checkpoint state (host values only)."""
        from .totals import to_host

        host, _ = to_host(self.losses, [])
        totals = []
        for m in metrics:
            total = None if m.total is None else np.asarray(to_numpy(m.total))
            rows = m.state() if getattr(m, "gather", False) else None  # AUROC's rows so far
            rows = None if rows is None else np.asarray(to_numpy(rows))
            totals.append({"name": m.name, "count": int(m.count), "total": total, "rows": rows})
        return {
            "epoch": self.epoch,
            "batch": self.batch,
            "lr": self.lr,
            "first_step": self.first_step,
            "seconds": self.elapsed(),
            "loader": loader_identity(self.loader),
            "losses": np.concatenate([self.done, host]).astype(np.float64),
            "sizes": np.asarray(self.sizes, dtype=np.int64),
            "metrics": totals,
        }

    @classmethod
    def restore(cls, state: dict[str, Any], loader: Any, trainer: Any) -> EpochProgress:
        """The progress of a loaded position, the metrics' running totals put back on the
        backend in their saved dtype."""
        progress = cls(state["epoch"], state["lr"], state["first_step"], loader)
        progress.done = np.asarray(state["losses"], dtype=np.float64)
        progress.sizes = [int(n) for n in state["sizes"]]
        progress.seconds = float(state["seconds"])
        for m, saved in zip(trainer.metrics, state["metrics"], strict=True):
            m.count = saved["count"]
            total, rows = saved["total"], saved.get("rows")
            m.total = None if total is None else trainer.backend.asarray(total)
            m.parts = [] if rows is None else [trainer.backend.asarray(rows)]
        return progress


def mid_epoch_refusal(trainer: Any, loader: Any) -> str | None:
    """Why checkpoints of this fit cannot stop mid-epoch (``ModelCheckpoint(every_n_steps)``
    refuses with it), or None when they can."""
    if not isinstance(loader, DataLoader):
        return "an iterable of batches has no sampler state to resume from"
    if trainer.world is not None:
        return "distributed training resumes at epoch ends only"
    return None


def start_epoch(trainer: Any, loader: Any) -> EpochProgress:
    """Begin epoch ``trainer.epoch``, or continue it from the position a checkpoint loaded:
    the metrics, the loader (from the next batch on) and the step (accumulation groups)."""
    from .accumulate import Accumulate

    resume = trainer._resume_at
    if resume is not None:  # kept when refused: a fit with the right data can still continue it
        check_resume_position(trainer, resume, loader)
    trainer._resume_at = None
    if resume is None:
        progress = EpochProgress(trainer.epoch, trainer.optimizer.lr, trainer.step, loader)
        for m in trainer.metrics:
            m.reset()
    else:
        progress = EpochProgress.restore(resume, loader, trainer)
    known = isinstance(loader, DataLoader)  # it knows its batches ahead, a stream does not
    if known:
        loader.set_epoch(progress.epoch, start=progress.batch)
    else:
        loader.set_epoch(progress.epoch)
    step = trainer.train_step
    step.begin_epoch([loader.batch_rows(b)[2] for b in range(len(loader))] if known else [])
    accumulate = step.wrapper(Accumulate)
    if accumulate is not None:
        accumulate.seek(progress.batch)
    return progress


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class EpochPosition:
    """The ``"position"`` checkpoint component of a Trainer (see the module docstring): empty
    at an epoch boundary; ``loaded`` holds the position a checkpoint brought, until ``fit``
    continues from it."""

    def __init__(self, trainer: Any):
        self.trainer = trainer
        self.loaded: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        progress = self.trainer._progress
        if progress is not None:
            return progress.snapshot(self.trainer.metrics)
        pending = self.trainer._resume_at  # loaded and not yet continued: still the state
        return {} if pending is None else dict(pending)

    def check_state_dict(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"position must be an object, got {state!r}")
        for key in ("epoch", "batch", "first_step"):
            if not _is_count(state.get(key)):
                raise ValueError(f"position {key} must be an integer >= 0, got {state.get(key)!r}")
        loader = state.get("loader")
        if not isinstance(loader, dict) or sorted(loader) != sorted(LOADER_KEYS):
            raise ValueError(f"position loader must name {list(LOADER_KEYS)}, got {loader!r}")
        losses, sizes = state.get("losses"), state.get("sizes")
        if not isinstance(losses, np.ndarray) or not isinstance(sizes, np.ndarray):
            raise TypeError("position losses and sizes must be arrays")
        if losses.shape != (state["batch"],) or sizes.shape != (state["batch"],):
            raise ValueError(
                f"position holds {losses.shape} losses and {sizes.shape} sizes for "
                f"{state['batch']} batches"
            )
        if state["batch"] > loader["batches"]:
            raise ValueError(f"position batch {state['batch']} is past the epoch's end")
        metrics = state.get("metrics")
        if not isinstance(metrics, list) or len(metrics) != len(self.trainer.metrics):
            names = [m.name for m in self.trainer.metrics]
            raise ValueError(
                f"the epoch's running totals are for {len(metrics or [])} metrics, this Trainer "
                f"has {len(names)} ({', '.join(names) or 'none'})"
            )
        for saved, m in zip(metrics, self.trainer.metrics, strict=True):
            if (
                not isinstance(saved, dict)
                or not _is_count(saved.get("count"))
                or not (saved.get("total") is None or isinstance(saved["total"], np.ndarray))
                or not (saved.get("rows") is None or isinstance(saved["rows"], np.ndarray))
            ):
                raise ValueError(f"a metric's running total is malformed: {saved!r}")
            if saved.get("name") != m.name:
                raise ValueError(
                    f"the epoch's running totals are for metric {saved.get('name')!r} where this "
                    f"Trainer has {m.name!r}"
                )
        for key in ("lr", "seconds"):
            value = state.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"position {key} must be a number, got {value!r}")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_state_dict(state)
        self.loaded = dict(state)


def check_resume_position(trainer: Any, position: dict[str, Any], loader: Any) -> None:
    """Refuse, in one line, to continue ``position`` in a ``fit`` that cannot do it exactly."""
    where = f"the checkpoint stopped mid-epoch (epoch {position['epoch'] + 1}, after batch " + (
        f"{position['batch']})"
    )
    if trainer.world is not None:
        raise ValueError(
            f"Trainer.fit: {where}; resuming mid-epoch is for one process: resume from an "
            f"epoch-end checkpoint under MPI"
        )
    if not isinstance(loader, DataLoader):
        raise ValueError(
            f"Trainer.fit: {where}, but the training data is an iterable of batches, which "
            f"cannot be resumed mid-epoch: give the same data as arrays, a dataset or a "
            f"DataLoader, or resume from an epoch-end checkpoint"
        )
    now, saved = loader_identity(loader), position["loader"]
    changed = [f"{k} {saved[k]} -> {now[k]}" for k in LOADER_KEYS if saved[k] != now[k]]
    if changed:
        raise ValueError(
            f"Trainer.fit: {where}, but this fit's batches differ ({', '.join(changed)}); "
            f"resume with the same data, batch size and shuffling, or from an epoch-end "
            f"checkpoint"
        )
    if position["batch"] % trainer.accumulate and position["batch"] != saved["batches"]:
        raise ValueError(
            f"Trainer.fit: {where}, which is not on a boundary of accumulate={trainer.accumulate} "
            f"(groups of {trainer.accumulate} batches): resume with the accumulate it was saved "
            f"with"
        )
