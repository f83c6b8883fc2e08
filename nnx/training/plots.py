"""Training curves and confusion matrices as PNGs, with matplotlib's non-interactive backend
(optional extra ``plot``)."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..io.atomic import atomic_write
from .callbacks.base import resolve_mode
from .history import History

logger = logging.getLogger("nnx")


def _figure_class(path: str | os.PathLike) -> Any:
    """matplotlib's Figure, or None (with the notice) when matplotlib is not installed."""
    try:
        # A bare Figure renders with the non-interactive Agg canvas and never opens a window or
        # touches pyplot's global backend.
        from matplotlib.figure import Figure
    except ImportError:
        logger.warning(
            "nnx: matplotlib is not installed, so %s was not written "
            "(pip install 'nnx-trainer[plot]')",
            path,
        )
        return None
    return Figure


def _save(fig: Any, path: str | os.PathLike) -> Path:
    target = Path(path)
    # atomically, like every other output: a crash leaves the old picture, and a symlink at
    # ``path`` is replaced rather than written through
    with atomic_write(target) as f:
        fig.savefig(f, dpi=100, format="png")
    return target


def _plain_log_ticks(ax: Any, values: list[float]) -> None:
    """Label a log axis with plain numbers (0.3, 2.3135; not 3e-01 or 2.3 x 10^0), with as many
    digits as the data's range needs, at 1, 2, 3 and 5 per decade (more for a narrow range)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    low, high = min(values), max(values)
    spread = (high - low) / high if high > 0 else 1.0
    digits = 2 + max(0, math.ceil(-math.log10(spread))) if spread > 0 else 3
    label = FuncFormatter(lambda v, _: f"{v:.{digits}g}")
    ax.yaxis.set_major_formatter(label)
    ax.yaxis.set_minor_formatter(label)
    if high / low > 3:
        ax.yaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 3.0, 5.0)))


def best_epoch(history: History, monitor: str, mode: str = "auto") -> int | None:
    """The epoch (its ``epoch`` value) with the best ``monitor`` value, the first of equals:
    the highest for accuracy, precision, recall, F1 and AUROC (``mode="auto"``), else the
    lowest. None when no epoch recorded a finite value."""
    mode = resolve_mode(mode, monitor, "best_epoch")
    best = None
    for record in history:
        value = record.get(monitor)
        if value is None or not math.isfinite(value):
            continue
        if best is None or (value > best[1] if mode == "max" else value < best[1]):
            best = (record.get("epoch"), value)
    return None if best is None else best[0]


def save_curves(
    history: History,
    path: str | os.PathLike,
    monitor: str | None = None,
    log_loss: bool = False,
    title: str | None = None,
) -> Path | None:
    """Plot loss and each metric per epoch, train against validation, into ``path``.

    ``monitor`` (e.g. ``"val_accuracy"``): mark its best epoch (:func:`best_epoch`) on every
    panel. ``log_loss``: the loss panel on a logarithmic axis (symmetric-log when a loss is
    <= 0). ``title``: above the panels (the command uses the run folder's name). A panel of the
    learning rate is added when it changed during the run.

    Returns the path, or None (with a notice on the ``nnx`` logger) when matplotlib is not
    installed (``pip install 'nnx-trainer[plot]'``) or the history is empty.
    """
    if len(history) == 0:
        logger.warning("nnx: no epochs recorded, so no curves to plot")
        return None
    Figure = _figure_class(path)
    if Figure is None:
        return None
    from matplotlib.ticker import MaxNLocator

    keys = history.keys()
    names = ["loss"] + list(  # in the history's order: --metrics accuracy,f1,auroc as given
        dict.fromkeys(
            k.partition("_")[2]
            for k in keys
            if k.startswith(("train_", "val_")) and k not in ("train_loss", "val_loss")
        )
    )
    lrs = [v for v in history["lr"] if v is not None] if "lr" in keys else []
    show_lr = len(set(lrs)) > 1
    panels = len(names) + int(show_lr)
    columns = min(panels, 3)
    rows = -(-panels // columns)
    fig = Figure(figsize=(4.6 * columns, 3.4 * rows + 0.4), layout="constrained")
    grid = fig.subplots(rows, columns, squeeze=False)
    axes = list(grid.reshape(-1)[:panels])
    for spare in grid.reshape(-1)[panels:]:
        spare.set_visible(False)
    epochs = history["epoch"]
    best = best_epoch(history, monitor) if monitor and monitor in keys else None
    for ax, name in zip(axes, names, strict=False):
        for split, style in (("train", "-o"), ("val", "-s")):
            key = f"{split}_{name}"
            if key in keys:
                values = [float("nan") if v is None else v for v in history[key]]
                ax.plot(epochs, values, style, markersize=3, label=split)
        if name == "loss" and log_loss:
            losses = [v for k in ("train_loss", "val_loss") if k in keys for v in history[k]]
            positive = all(v is None or v > 0 for v in losses)
            ax.set_yscale("log" if positive else "symlog")
            if positive:
                _plain_log_ticks(ax, [v for v in losses if v is not None])
        ax.set_title(name + (" (log scale)" if name == "loss" and log_loss else ""))
    if show_lr:
        ax = axes[-1]
        ax.plot(epochs, history["lr"], "-o", markersize=3, color="tab:green", label="lr")
        ax.set_title("learning rate")
        if min(lrs) > 0 and max(lrs) / min(lrs) > 50:
            ax.set_yscale("log")
    for i, ax in enumerate(axes):
        if best is not None:
            label = f"best epoch ({monitor})" if i == 0 else None
            ax.axvline(best, color="tab:red", linestyle="--", linewidth=1, label=label)
            name = names[i] if i < len(names) else None
            if name is not None and monitor == f"{monitor.split('_')[0]}_{name}":
                value = history.records[epochs.index(best)][monitor]
                ax.plot([best], [value], "*", color="tab:red", markersize=11)
                last = best == max(e for e in epochs if e is not None)
                ax.annotate(
                    f"{value:.4g}",
                    (best, value),
                    textcoords="offset points",
                    xytext=(-6, -12) if last else (6, -12),
                    ha="right" if last else "left",
                    color="tab:red",
                    fontsize="small",
                )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        heading = title if best is None else f"{title}: best {monitor} at epoch {best}"
        fig.suptitle(heading)
    return _save(fig, path)


def save_confusion(
    matrix: Any,
    path: str | os.PathLike,
    labels: list[str] | None = None,
    title: str | None = None,
) -> Path | None:
    """Draw a confusion matrix (rows the true classes, columns the predicted ones, as
    :class:`~nnx.metrics.ConfusionMatrix` computes it) into ``path``: each cell's count, shaded
    by its share of its true class's samples. Returns the path, or None (with the notice of
    :func:`save_curves`) without matplotlib."""
    counts = np.asarray(matrix, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise ValueError(
            f"save_confusion: the matrix must be square (C, C) with C >= 1, got shape "
            f"{counts.shape}"
        )
    c = counts.shape[0]
    labels = [str(i) for i in range(c)] if labels is None else [str(v) for v in labels]
    if len(labels) != c:
        raise ValueError(f"save_confusion: {len(labels)} labels for a {c} x {c} matrix")
    Figure = _figure_class(path)
    if Figure is None:
        return None
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = min(2.0 + 0.55 * c, 16.0)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of the true class", shrink=0.8)
    if c <= 30:
        for i in range(c):
            for j in range(c):
                ax.text(
                    j,
                    i,
                    f"{counts[i, j]:.0f}",
                    ha="center",
                    va="center",
                    fontsize="small" if c <= 12 else "x-small",
                    color="white" if share[i, j] > 0.5 else "black",
                )
    ticks = range(c) if c <= 30 else range(0, c, max(1, c // 20))
    wide = max(len(labels[i]) for i in ticks) > 3  # names (setosa...) would overlap level
    ax.set_xticks(list(ticks), [labels[i] for i in ticks], rotation=45 if wide else 0,
                  ha="right" if wide else "center", rotation_mode="anchor")  # fmt: skip
    ax.set_yticks(list(ticks), [labels[i] for i in ticks])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total = counts.sum()
    accuracy = np.trace(counts) / total if total else float("nan")
    heading = f"confusion matrix (accuracy {accuracy:.3f})"
    ax.set_title(heading if title is None else f"{title}\n{heading}")
    return _save(fig, path)
