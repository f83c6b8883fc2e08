"""``--find-lr``: the learning-rate range test (:func:`nnx.lr_find`) on the training split,
instead of training. It writes ``lr_find.png`` (the curve, the suggestion marked) and
``lr_find.json`` (the curve's numbers and the suggestion) to the output folder and prints the
suggested ``--lr``, which the user then sets, as with Lightning's tuner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import nnx

from .runfolder import write_json

RULE = (
    "steepest descent: the learning rate at the minimum of numpy.gradient of the smoothed loss "
    "(EMA beta 0.98, bias-corrected), leaving out the first 10 and last 1 points and those "
    "past the minimum"
)


def run_lr_find(
    settings: dict[str, Any],
    model: Any,
    loss: Any,
    optimizer: Any,
    train: Any,
    out: Path,
    say: Callable[[str], None],
) -> int:
    """Run the range test on ``train`` with the run's optimizer and batch size; write the
    results into ``out``; print the suggestion (even with ``--quiet``, so ``say`` is not used
    for it); return the exit status 0."""
    found = nnx.lr_find(
        model, loss, optimizer, train, batch_size=settings["batch_size"], seed=settings["seed"]
    )
    picture = found.plot(out / "lr_find.png")
    write_json(
        out / "lr_find.json",
        {
            "suggestion": found.suggestion,
            "rule": RULE,
            "note": found.note,
            "optimizer": settings["optimizer"],
            "batch_size": settings["batch_size"],
            "diverged": found.diverged,
            "lrs": found.lrs,
            "losses": found.losses,
            "smoothed": found.smoothed,
        },
    )

    # the result is the command's output: printed with --quiet too (which drops the table)
    def tell(line: str) -> None:
        print(line, flush=True)

    wrote = "lr_find.json" + (", lr_find.png" if picture is not None else "")
    if found.suggestion is None:
        tell(f"nnx: no learning rate suggested: {found.note} (wrote {wrote} in {out})")
    else:
        tell(
            f"nnx: suggested learning rate {found.suggestion:.3g} for {settings['optimizer']} "
            f"(steepest descent of the loss; wrote {wrote} in {out}); train with "
            f"--lr {found.suggestion:.3g}"
        )
    return 0
