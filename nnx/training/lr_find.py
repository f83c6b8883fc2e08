"""The learning-rate range test (Smith 2015; fastai's and Lightning's ``lr_find``).

:func:`lr_find` trains for up to ``num_iter`` batches while the learning rate grows
exponentially from ``start_lr`` to ``end_lr``, records each batch's loss, smooths it, and stops
early once the smoothed loss diverges. It suggests the learning rate where the smoothed loss
falls fastest (the steepest descent, Lightning's rule). The model (parameters, buffers such as
BatchNorm's running statistics, gradients, train/eval mode, random-number streams) and the
optimizer (its learning rate, hyperparameters and state) are restored exactly afterwards: the
test leaves no trace, and the user sets the learning rate it suggests.

>>> import numpy as np, nnx
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(256, 4)).astype(np.float32)
>>> y = (x[:, 0] > 0).astype(np.int64)
>>> model = nnx.Sequential(nnx.Linear(4, 16, rng=0), nnx.ReLU(), nnx.Linear(16, 2, rng=1))
>>> opt = nnx.optim.SGD(model.parameters(), lr=0.1)
>>> found = nnx.lr_find(model, nnx.CrossEntropyLoss(), opt, (x, y), num_iter=60)
>>> len(found.lrs) == len(found.smoothed) <= 60, 1e-7 <= found.suggestion <= 10, opt.lr
(True, True, 0.1)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import backend_of, to_numpy
from ..core.checks import positive_int, real_in_range
from ..core.module import Module, Parameter
from ..data.stream import BatchStream
from ..io.atomic import atomic_write
from .sources import make_loader


@dataclass
class LRFindResult:
    """What :func:`lr_find` measured: per batch the learning rate, the loss and the smoothed
    loss; the suggested learning rate (None when too few batches ran to suggest one, with the
    reason in :attr:`note`) and whether the test stopped because the loss diverged."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None
    diverged: bool
    note: str = ""
    skip_start: int = field(default=10, repr=False)

    def plot(self, path: str | os.PathLike) -> Path | None:
        """Draw the smoothed loss against the learning rate (log scale) with the suggestion
        marked, at ``path`` (written atomically; PNG, PDF or SVG by its suffix). Returns the path, or None when
        matplotlib is not installed (``pip install 'nnx-trainer[plot]'``)."""
        target = Path(path)
        kind = target.suffix.lower().lstrip(".")
        if kind not in ("png", "pdf", "svg"):
            raise ValueError(
                f"lr_find plot: {target.name} must end in .png, .pdf or .svg "
                f"(not {target.suffix or 'nothing'})"
            )
        try:
            from matplotlib.figure import Figure
        except ImportError:
            import logging

            logging.getLogger("nnx").warning(
                "nnx: matplotlib is not installed, so %s was not written "
                "(pip install 'nnx-trainer[plot]')",
                path,
            )
            return None
        fig = Figure(figsize=(6, 4), layout="constrained")
        ax = fig.subplots()
        ax.plot(self.lrs, self.losses, color="0.75", linewidth=0.8, label="loss")
        ax.plot(self.lrs, self.smoothed, label="smoothed loss")
        if self.suggestion is not None:
            i = self.lrs.index(self.suggestion)
            ax.plot([self.suggestion], [self.smoothed[i]], "o", color="red",
                    label=f"suggestion {self.suggestion:.3g}")  # fmt: skip
        finite = [v for v in self.smoothed if math.isfinite(v)]
        if finite:  # the divergence at the end would squash the curve: clip the view
            low = min(finite)
            top = max(finite[: finite.index(low) + 1])  # the whole descent stays in view
            ax.set_ylim(low - 0.05 * abs(low), top + 0.25 * (abs(top - low) + 1e-12))
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title("learning-rate range test")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
        with atomic_write(target) as f:
            fig.savefig(f, dpi=100, format=kind)
        return target


def lr_find(
    model: Module,
    loss: Any,
    optimizer: Any,
    data: Any,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    num_iter: int = 100,
    batch_size: int = 32,
    beta: float = 0.98,
    diverge: float = 4.0,
    skip_start: int = 10,
    skip_end: int = 1,
    seed: int = 0,
    device: Any = None,
) -> LRFindResult:
    """Run the learning-rate range test and restore ``model`` and ``optimizer`` exactly.

    Batch ``i`` of ``num_iter`` trains at ``start_lr * (end_lr / start_lr) ** (i / (num_iter -
    1))``; the data (anything :meth:`Trainer.fit` takes) is shuffled with ``seed`` and repeated
    when it has fewer batches. The loss is smoothed as fastai and Lightning do, an exponential
    moving average with bias correction: ``avg = beta * avg + (1 - beta) * loss``,
    ``smoothed = avg / (1 - beta ** (i + 1))``. The test stops early when a loss is not finite
    or the smoothed loss exceeds ``diverge`` times its minimum so far.

    The suggestion is the learning rate at the steepest descent of the smoothed loss: the
    minimum of its gradient (``numpy.gradient`` over the batches, evenly spaced in
    ``log(lr)``), leaving out the first ``skip_start`` and last ``skip_end`` points (Lightning's
    rule) and every point after the smoothed loss's minimum (where it falls again only as the
    average forgets a divergence). It is None, with a :attr:`~LRFindResult.note`, when fewer than two points remain.
    The model runs on its parameters' backend (or ``device``).
    """
    from .trainer import Trainer  # the Trainer imports this package's modules

    who = "lr_find"
    if not isinstance(model, Module):
        raise TypeError(f"{who}: model must be an nnx.Module, got {type(model).__name__}")
    start_lr = real_in_range(start_lr, "start_lr", who)
    end_lr = real_in_range(end_lr, "end_lr", who)
    if not 0 < start_lr < end_lr:
        raise ValueError(f"{who}: need 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
    num_iter = positive_int(num_iter, "num_iter", who)
    if num_iter < 2:
        raise ValueError(f"{who}: num_iter must be at least 2, got {num_iter}")
    beta = real_in_range(beta, "beta", who, high=1.0, high_open=True)
    diverge = real_in_range(diverge, "diverge", who, low=1.0, high=math.inf)
    for name, value in (("skip_start", skip_start), ("skip_end", skip_end)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{who}: {name} must be an integer >= 0, got {value!r}")
    first = next(iter(model.parameters()), None)
    if first is None:
        raise ValueError(f"{who}: the model has no parameters to train")
    saved = _snapshot(model, optimizer)
    try:
        trainer = Trainer(
            model,
            loss,
            optimizer,
            device=backend_of(first.value) if device is None else device,
            metrics=(),
            seed=seed,
            progress=False,
        )
        loader, _ = make_loader(trainer, data, who, "training", batch_size, True)
        model.train()
        lrs, losses, smoothed, diverged = _ramp(
            trainer, loader, start_lr, end_lr, num_iter, beta, diverge
        )
    finally:
        _restore(model, optimizer, saved)
    suggestion, note = _suggest(lrs, smoothed, skip_start, skip_end)
    return LRFindResult(lrs, losses, smoothed, suggestion, diverged, note, skip_start)


def _ramp(
    trainer: Any,
    loader: Any,
    start_lr: float,
    end_lr: float,
    num_iter: int,
    beta: float,
    diverge: float,
) -> tuple[list[float], list[float], list[float], bool]:
    """The test's batches, epoch after epoch of ``loader`` until ``num_iter`` or divergence."""
    step, optimizer = trainer.train_step, trainer.optimizer
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    avg, best, i, epoch = 0.0, math.inf, 0, 0
    while True:
        loader.set_epoch(epoch)
        known = not isinstance(loader, BatchStream)
        step.begin_epoch([loader.batch_rows(b)[2] for b in range(len(loader))] if known else [])
        batches = iter(loader)
        done = False
        count = 0
        for batch, (xb, yb) in enumerate(batches):
            count += 1
            lr = start_lr * (end_lr / start_lr) ** (i / (num_iter - 1))
            optimizer.lr = lr
            step.begin_batch(loader.batch_rows(batch))
            value = float(to_numpy(step(xb, yb)[0]))
            if not math.isfinite(value):
                if i == 0:  # at the smallest rate: not a divergence but the data or the model
                    raise ValueError(
                        f"lr_find: the loss of the first batch is {value} at the starting rate "
                        f"{start_lr:g}; check the data (NaN or infinite values) and the model"
                    )
                done = diverged = True
                break
            avg = beta * avg + (1.0 - beta) * value
            current = avg / (1.0 - beta ** (i + 1))
            lrs.append(lr)
            losses.append(value)
            smoothed.append(current)
            best = min(best, current)
            i += 1
            diverged = best > 0 and current > diverge * best
            if diverged or i >= num_iter:
                done = True
                break
        close = getattr(batches, "close", None)
        if close is not None:
            close()
        step.end_epoch()
        if count == 0:
            raise ValueError("lr_find: the training data gave no batches")
        if done:
            return lrs, losses, smoothed, diverged
        epoch += 1


def _suggest(
    lrs: list[float], smoothed: list[float], skip_start: int, skip_end: int
) -> tuple[float | None, str]:
    stop = len(smoothed) - skip_end
    if stop - skip_start < 2:
        return None, (
            f"only {len(smoothed)} batches ran before the loss diverged or the test ended, too "
            f"few to suggest a learning rate past the first {skip_start} and last {skip_end}; "
            f"lower start_lr or raise num_iter"
        )
    # only the descent up to the smoothed loss's minimum: after a spike (Adam past its
    # limit) the moving average falls again as it forgets the spike, a steep "descent"
    # at a rate that diverges
    window = np.asarray(smoothed[skip_start:stop])
    window = window[: int(np.argmin(window)) + 1]
    if len(window) < 2:
        return None, (
            f"the smoothed loss did not fall after the first {skip_start} batches; "
            f"lower start_lr or check the data and the model"
        )
    return lrs[skip_start + int(np.argmin(np.gradient(window)))], ""


def _snapshot(model: Module, optimizer: Any) -> dict[str, Any]:
    """Host copies of everything the test changes (see :func:`_restore`)."""
    params = list(model.parameters())
    random = [m for m in model.modules() if callable(getattr(m, "reseed", None))]
    state = {
        "model": model.state_dict(),
        "grads": [
            None if p.grad is None else np.array(to_numpy(p.grad), copy=True) for p in params
        ],
        "training": [(m, m.training) for m in model.modules()],
        # a module with random numbers draws from its generator object; the test gets fresh
        # ones from the same seed and the originals, never drawn from, are put back
        "random": [(m, m.__dict__.get("seed"), m.__dict__.get("_generator")) for m in random],
        "optimizer": optimizer.state_dict() if hasattr(optimizer, "state_dict") else None,
    }
    for m in random:
        if "_generator" in m.__dict__:
            m._generator = None
    return state


def _restore(model: Module, optimizer: Any, saved: dict[str, Any]) -> None:
    model.load_state_dict(saved["model"])
    for p, grad in zip(model.parameters(), saved["grads"], strict=True):
        if grad is not None and isinstance(p, Parameter):
            p.grad = backend_of(p.value).asarray(grad, dtype=p.value.dtype, copy=True)
    for m, mode in saved["training"]:
        m.training = mode
    for m, seed, generator in saved["random"]:
        if seed is not None:
            m.seed = seed
        if "_generator" in m.__dict__:
            m._generator = generator
    if saved["optimizer"] is not None:
        optimizer.load_state_dict(saved["optimizer"])
