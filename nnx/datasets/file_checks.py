"""The checks, splits and CSV number parser shared by the readers of the user's data files (whole, in
:mod:`nnx.datasets.files`, or a chunk at a time, in :mod:`nnx.datasets.csv_stream`): one rule,
one message, whichever way a file is read."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.gather import gather_rows
from .errors import DataFileError

TEST_FRACTION = 0.2
MAX_CLASSES = 100_000  # integer labels beyond this are surely not class indices
CHUNK_BYTES = 64 << 20  # rows checked at a time when a mapped file is checked


def held_out(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train rows, test rows)``: a seeded 20% held out, in the order of a permutation."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(TEST_FRACTION * n)))
    return order[n_test:], order[:n_test]


def check_mapped(p: Path, split: str, x: np.ndarray, y: np.ndarray) -> None:
    """The checks of :func:`_check_pair` on memory maps, a chunk of rows at a time."""
    if y.shape[:1] != x.shape[:1] or x.shape[0] == 0:
        raise DataFileError(
            f"{p}: x_{split} has {x.shape[0]} samples but y_{split} has shape {y.shape}"
        )
    step = max(1, CHUNK_BYTES // max(1, x[:1].nbytes))
    for start in range(0, len(x), step):  # NaN/inf and labels, a chunk at a time, read with
        # pread (gather_rows), not through the mapping: nothing of the file is left resident
        rows = np.arange(start, min(start + step, len(x)))
        check_pair(p, split, gather_rows(x, rows), gather_rows(y, rows), first=start)


def max_label(y: np.ndarray) -> int:
    step = CHUNK_BYTES // max(1, y.itemsize)
    return max(int(y[i : i + step].max()) for i in range(0, len(y), step))


def check_pair(p: Path, split: str, x: np.ndarray, y: np.ndarray, first: int = 0):
    """``(x, y)`` checked and converted (float32 features; int64 labels or float32 targets of
    shape ``(n, k)``); ``first``: the index of ``x[0]`` in the file, for messages."""
    xn, yn = f"x_{split}", f"y_{split}"
    if x.dtype.kind not in "biuf":
        raise DataFileError(f"{p}: {xn} must be numbers, got dtype {x.dtype}")
    if x.ndim < 2 or x.shape[0] == 0 or 0 in x.shape:
        raise DataFileError(
            f"{p}: {xn} must have shape (samples, features...) with no empty axis, got {x.shape}"
        )
    x = x.astype(np.float32) if x.dtype.kind != "f" else x
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        bad[0] += first
        raise DataFileError(
            f"{p}: {xn} has NaN or infinite values (first at index {tuple(int(i) for i in bad)})"
        )
    if y.shape[:1] != x.shape[:1]:
        raise DataFileError(f"{p}: {xn} has {x.shape[0]} samples but {yn} has shape {y.shape}")
    if y.dtype.kind in "iu":
        if y.ndim != 1:
            raise DataFileError(
                f"{p}: integer labels {yn} must have shape (samples,), got {y.shape}"
            )
        if y.min() < 0 or y.max() >= MAX_CLASSES:
            value = int(y.min()) if y.min() < 0 else int(y.max())
            raise DataFileError(
                f"{p}: {yn} holds label {value}; class labels must be integers 0..K-1"
            )
        return x, y.astype(np.int64)
    if y.dtype.kind == "f":
        if y.ndim not in (1, 2):
            raise DataFileError(
                f"{p}: regression targets {yn} must have shape (samples,) or (samples, k), got {y.shape}"
            )
        if not np.isfinite(y).all():
            raise DataFileError(f"{p}: {yn} has NaN or infinite values")
        return x, (y.reshape(-1, 1) if y.ndim == 1 else y).astype(np.float32)
    raise DataFileError(
        f"{p}: {yn} must be integer class labels or floating regression targets, got dtype {y.dtype}"
    )


def label_index(p: Path, header: list[str], label_column: str | int) -> int:
    if label_column in header:
        return header.index(label_column)
    try:
        index = int(label_column)
    except (TypeError, ValueError):
        raise DataFileError(
            f"{p}: no column {label_column!r}; the header has {', '.join(header)}"
        ) from None
    if not -len(header) <= index < len(header):
        raise DataFileError(f"{p}: column index {index} is out of range for {len(header)} columns")
    return index % len(header)


def csv_numbers(
    p: Path,
    header: list[str],
    body: list[list[str]],
    columns: list[int],
    lines: list[int] | None = None,
):
    """The ``columns`` of every row as float32 numbers (an empty or non-numeric cell is named by
    its line: ``lines[r]`` for row ``r``, by default the row after the header). The one parser of
    CSV numbers: whole reads and the chunked conversion of large files both use it."""
    x = np.empty((len(body), len(columns)), dtype=np.float64)
    for r, row in enumerate(body):
        for c, i in enumerate(columns):
            cell = row[i].strip()
            try:
                x[r, c] = float(cell)
            except ValueError:
                what = "is empty" if not cell else f"is {cell!r}, not a number"
                line = r + 2 if lines is None else lines[r]
                raise DataFileError(f"{p}: line {line}, column {header[i]!r} {what}") from None
    return x.astype(np.float32)
