"""Training curves as a PNG, with matplotlib's non-interactive backend (optional extra ``plot``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..io.atomic import atomic_write
from .history import History

logger = logging.getLogger("nnx")


def save_curves(history: History, path: str | os.PathLike) -> Path | None:
    """Plot loss and each metric per epoch, train against validation, into ``path``.

    Returns the path, or None (with a notice on the ``nnx`` logger) when matplotlib is not
    installed (``pip install 'nnx-trainer[plot]'``) or the history is empty.
    """
    if len(history) == 0:
        logger.warning("nnx: no epochs recorded, so no curves to plot")
        return None
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
    keys = history.keys()
    names = ["loss"] + sorted(
        {k[len("train_") :] for k in keys if k.startswith("train_") and k != "train_loss"}
        | {k[len("val_") :] for k in keys if k.startswith("val_") and k != "val_loss"}
    )
    fig = Figure(figsize=(5 * len(names), 3.6), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    epochs = history["epoch"]
    for ax, name in zip(axes, names, strict=True):
        for split, style in (("train", "-o"), ("val", "-s")):
            key = f"{split}_{name}"
            if key in keys:
                values = [float("nan") if v is None else v for v in history[key]]
                ax.plot(epochs, values, style, markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    target = Path(path)
    # atomically, like every other output: a crash leaves the old picture, and a symlink at
    # ``path`` is replaced rather than written through
    with atomic_write(target) as f:
        fig.savefig(f, dpi=100, format="png")
    return target
