"""A progress bar over the batches of a fit."""

from __future__ import annotations

import os
import sys
from typing import Any

from .base import ClosingCallback, TrainerLike

# Short names for the bar and the epoch lines, so that both fit an 80-column terminal.
ABBREVIATIONS = {
    "accuracy": "acc",
    "top_k_accuracy": "topk",
    "bits_per_character": "bpc",
    "bits_per_char": "bpc",
    "perplexity": "ppl",
}
MIN_BAR = 20  # columns the bar itself keeps, whatever the metrics


def short_name(key: str) -> str:
    """``val_accuracy`` -> ``val acc``: a log key as the bar and the epoch lines show it."""
    split, _, name = key.partition("_")
    if split not in ("train", "val"):
        split, name = "", key
    name = ABBREVIATIONS.get(name, name.replace("_", " "))
    return f"{split} {name}".strip()


def epoch_line(epoch: int, epochs: int, logs: dict[str, Any], width: int | None = None) -> str:
    """One plain line per epoch: ``epoch 3/30  train loss 0.4123  val loss 0.4410  val acc
    0.9125  0.41s`` (the training loss, the validation loss and metrics, the epoch's time).
    Wider than ``width`` (a terminal's columns), it is broken between its items onto
    continuation lines indented under the first item's values, rather than cut mid-word by
    the terminal."""
    parts = [f"epoch {epoch}/{epochs}"]
    keys = ["train_loss"] + [k for k in logs if k.startswith("val_")]
    if not any(k.startswith("val_") for k in logs):  # no validation: the training metrics
        keys += [k for k in logs if k.startswith("train_") and k != "train_loss"]
    for key in keys:
        value = logs.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{short_name(key)} {value:.4f}")
    if isinstance(logs.get("seconds"), (int, float)):
        parts.append(f"{logs['seconds']:.2f}s")
    line = "  ".join(parts)
    if width is None or len(line) <= width:
        return line
    indent = " " * (len(parts[0]) + 2)
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 2 + len(part) <= width:
            lines[-1] += "  " + part
        else:
            lines.append(indent + part)
    return "\n".join(lines)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def _columns(stream: Any) -> int:
    """The width of the terminal ``stream`` writes to (80 when it cannot be asked)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, OSError, ValueError):
        return 80


class ProgressBar(ClosingCallback):
    """A tqdm bar over the batches of all epochs, and one plain line per epoch.

    The bar shows the last epoch's loss and metrics by short names (``val acc``), cut to what
    fits: the bar itself keeps at least :data:`MIN_BAR` columns, so it stays usable in an
    80-column terminal. It is off when ``quiet=True`` or when the stream is not a terminal
    (logs and CI stay clean).

    ``lines`` prints :func:`epoch_line` after each epoch to ``line_stream`` (default stdout),
    above the bar, so they stay on screen and in a log: True always (even when quiet, which
    then prints only these lines), False never, None (the default) only while the bar is shown.
    ``ncols`` fixes the width (default: the terminal's, followed as it changes). ``epochs`` is
    the run's number of epochs shown (default: the fit's; a caller that fits one epoch at a
    time passes the whole run's).
    """

    order = 5
    rank_zero_only = True

    def __init__(
        self,
        quiet: bool = False,
        stream: Any = None,
        *,
        lines: bool | None = None,
        line_stream: Any = None,
        ncols: int | None = None,
        epochs: int | None = None,
    ):
        self.quiet = bool(quiet)
        self.stream = stream
        self.lines = lines
        self.line_stream = line_stream
        self.ncols = ncols
        self.epochs = epochs
        self._bar: Any = None

    def on_fit_begin(self, trainer: TrainerLike) -> None:
        from tqdm.auto import tqdm

        stream = self.stream or sys.stderr
        total_epochs = trainer.target_epochs
        done = trainer.epoch
        per_epoch = trainer.batches_per_epoch
        self._bar = tqdm(
            total=(total_epochs - done) * per_epoch,
            unit="batch",
            file=stream,
            disable=True if self.quiet else None,  # None: off when not a TTY
            dynamic_ncols=self.ncols is None,
            ncols=self.ncols,
            leave=True,
            # no rate: the epoch lines give the time; the counts keep their own width
            bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
            "[{elapsed}<{remaining}]{postfix}",
        )

    def _epochs(self, trainer: TrainerLike) -> int:
        return self.epochs if self.epochs is not None else trainer.target_epochs

    def _shown(self) -> bool:
        return self._bar is not None and not self._bar.disable

    def on_epoch_begin(self, trainer: TrainerLike, epoch: int) -> None:
        if self._bar is not None:
            self._bar.set_description(f"epoch {epoch + 1}/{self._epochs(trainer)}", refresh=False)

    def on_batch_end(self, trainer: TrainerLike, batch: int) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def on_epoch_end(self, trainer: TrainerLike, epoch: int, logs: dict[str, Any]) -> None:
        if self.lines or (self.lines is None and self._shown()):
            out = self.line_stream or sys.stdout
            width = self.ncols or _columns(out) if _is_terminal(out) else None  # a log: 1 line
            line = epoch_line(epoch + 1, self._epochs(trainer), logs, width)
            if self._shown():
                self._bar.write(line, file=out)  # clears the bar, prints, redraws it below
            else:
                out.write(line + "\n")
            out.flush()
        if self._shown():
            self._bar.set_postfix_str(self._postfix(logs), refresh=True)

    def _postfix(self, logs: dict[str, Any]) -> str:
        """The last epoch's values, most telling first, as many as leave the bar its
        :data:`MIN_BAR` columns (measured on the bar's own rendering at its full count)."""
        order = sorted(
            (
                k
                for k, v in logs.items()
                if isinstance(v, float) and k.startswith(("train_", "val_"))
            ),
            key=lambda k: (not k.startswith("val_"), k.endswith("loss")),
        )
        frame = dict(self._bar.format_dict)
        frame["ncols"] = frame.get("ncols") or 80
        frame["n"] = frame.get("total") or frame["n"]  # the widest count it will show
        chosen = ""
        parts: list[str] = []
        for key in order:
            parts.append(f"{short_name(key)} {logs[key]:.3g}")
            frame["postfix"] = " ".join(parts)
            drawn = self._bar.format_meter(**frame).split("|")
            # 2 columns spare: the times may grow (an hour adds digits)
            if len(drawn) < 3 or len(drawn[1]) < MIN_BAR + 2:
                break
            chosen = frame["postfix"]
        return chosen

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
