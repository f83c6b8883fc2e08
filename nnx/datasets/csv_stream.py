"""A ``.csv`` data file too large to read whole: converted once, a chunk of rows at a time, into
arrays in the cache that are then memory-mapped.

:func:`map_csv` reads the file with the rules of :func:`nnx.datasets.files.load_file` (a header,
``label_column``, numeric features, integer labels as classes, names as classes in sorted
order, other numbers as regression targets) and the same one-line errors, but holds only one
chunk of rows in memory. The features go to ``x.f32`` (float32) and the targets to ``y.npy``-like
raw files under ``<cache>/csv/<key>/``, the key naming the file's path, size, modification time
and label column: an unchanged file is converted once, a changed one again. The folder appears
atomically (written under a temporary name, then renamed).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..io.npz import open_regular
from .errors import DataFileError
from .file_checks import (
    MAX_CLASSES,
    check_mapped,
    csv_numbers,
    held_out,
    label_index,
    max_label,
)
from .splits import DatasetSplits

CHUNK_ROWS = 65536


def _key(p: Path, label_column: Any) -> str:
    stat = p.stat()
    text = f"{p.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\0{label_column!r}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _rows(p: Path) -> Any:
    """``(line number, row)`` of every non-blank row."""
    try:
        with io.TextIOWrapper(
            open_regular(p, "data file", DataFileError), encoding="utf-8-sig", newline=""
        ) as f:
            reader = csv.reader(f)
            for row in reader:
                if row and any(cell.strip() for cell in row):
                    yield reader.line_num, row
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataFileError(f"cannot read {p}: {err}") from None


class _Labels:
    """The label column as it streams by: numbers (NaN for a name) and, while there are at most
    ``MAX_CLASSES`` distinct ones, first-seen ids of the names."""

    def __init__(self, limit: int):
        self.limit = limit
        self.numeric = True
        self.integers = True
        self.names: dict[str, int] | None = {}

    def add(self, values: list[str]) -> tuple[np.ndarray, np.ndarray]:
        numbers, ids = np.empty(len(values)), np.zeros(len(values), dtype=np.int64)
        for i, v in enumerate(values):
            try:
                numbers[i] = float(v)
            except ValueError:
                numbers[i] = np.nan
                self.numeric = False
            self.integers = self.integers and v.lstrip("+-").isdigit()
            if self.names is not None:
                ids[i] = self.names.setdefault(v, len(self.names))
                if len(self.names) > self.limit:
                    self.names = None
        return numbers, ids


def _convert(p: Path, label_column: Any, folder: Path) -> dict[str, Any]:
    rows = _rows(p)
    first = next(rows, None)
    if first is None:
        raise DataFileError(f"{p}: needs a header row and at least one data row")
    header = [cell.strip() for cell in first[1]]
    column = label_index(p, header, label_column)
    features = [i for i in range(len(header)) if i != column]
    if not features:
        raise DataFileError(f"{p}: no feature columns besides the label column")
    labels, n = _Labels(MAX_CLASSES), 0
    with (
        open(folder / "x.f32", "wb") as fx,
        open(folder / "numbers.f64", "wb") as fn,
        open(folder / "ids.i64", "wb") as fi,
    ):
        while True:
            chunk = [r for _, r in zip(range(CHUNK_ROWS), rows, strict=False)]
            if not chunk:
                break
            values = []
            for line, row in chunk:
                if len(row) != len(header):
                    raise DataFileError(
                        f"{p}: line {line} has {len(row)} columns, the header {len(header)}"
                    )
            lines = [line for line, _ in chunk]
            x = csv_numbers(p, header, [row for _, row in chunk], features, lines)
            for line, row in chunk:
                value = row[column].strip()
                if not value:
                    raise DataFileError(
                        f"{p}: line {line} has no label in column {header[column]!r}"
                    )
                values.append(value)
            numbers, ids = labels.add(values)
            fx.write(x.tobytes())
            fn.write(numbers.tobytes())
            fi.write(ids.tobytes())
            n += len(chunk)
    if n == 0:
        raise DataFileError(f"{p}: needs a header row and at least one data row")
    meta: dict[str, Any] = {"rows": n, "features": len(features), "classes": None}
    meta.update(feature_names=[header[i] for i in features], label_name=header[column])
    numbers = np.memmap(folder / "numbers.f64", np.float64, "r", shape=(n,))
    if not labels.numeric:
        if labels.names is None:
            raise DataFileError(f"{p}: column {header[column]!r} has over {MAX_CLASSES} labels")
        names = list(labels.names)
        rank = np.argsort(np.argsort(np.array(names, dtype=object)))  # first-seen id -> sorted
        ids = np.memmap(folder / "ids.i64", np.int64, "r+", shape=(n,))
        for start in range(0, n, CHUNK_ROWS):
            ids[start : start + CHUNK_ROWS] = rank[ids[start : start + CHUNK_ROWS]]
        ids.flush()
        meta.update(classes=sorted(names), targets="ids.i64", dtype="int64")
    else:
        for start in range(0, n, CHUNK_ROWS):
            if not np.isfinite(numbers[start : start + CHUNK_ROWS]).all():
                raise DataFileError(f"{p}: column {header[column]!r} has NaN or infinite labels")
        kind = "int64" if labels.integers else "float32"
        y = np.memmap(folder / f"y.{kind}", kind, "w+", shape=(n,))
        for start in range(0, n, CHUNK_ROWS):
            y[start : start + CHUNK_ROWS] = numbers[start : start + CHUNK_ROWS]
        y.flush()
        meta.update(targets=f"y.{kind}", dtype=kind)
    del numbers
    return meta


def map_csv(
    path: str | os.PathLike, label_column: Any, seed: int, cache: str | os.PathLike
) -> DatasetSplits:
    """The ``.csv`` at ``path`` as memory maps converted into ``cache`` (see the module
    docstring), checked as :func:`~nnx.datasets.files.load_file` checks it, with a seeded 20%
    of the rows held out as the test set (``DatasetSplits.rows``)."""
    p = Path(path)
    if label_column is None:
        raise DataFileError(
            f"{p}: a .csv needs label_column: a column name from its header or a 0-based index"
        )
    open_regular(p, "data file", DataFileError).close()
    folder = Path(cache) / "csv" / _key(p, label_column)
    if not (folder / "meta.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        temporary = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        try:
            meta = _convert(p, label_column, temporary)
            (temporary / "meta.json").write_text(json.dumps(meta))
            if not folder.exists():  # else another run converted it meanwhile
                os.replace(temporary, folder)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    meta = json.loads((folder / "meta.json").read_text())
    n = meta["rows"]
    x = np.memmap(folder / "x.f32", np.float32, "r", shape=(n, meta["features"]))
    y = np.memmap(folder / meta["targets"], meta["dtype"], "r", shape=(n,))
    if meta["dtype"] == "float32":
        y = y.reshape(n, 1)
    check_mapped(p, "train", x, y)
    if n < 2:
        raise DataFileError(f"{p}: needs at least 2 samples to hold out a test set, got {n}")
    rows = held_out(n, seed)
    names: dict[str, Any] = {  # for nnx-predict, as a whole read records them
        "feature_names": tuple(meta["feature_names"]),
        "label_name": meta["label_name"],
        "rows": rows,
    }
    if meta["dtype"] == "float32":
        return DatasetSplits(p.name, "regression", (x, y), (x, y), **names)
    classes = meta["classes"]
    if classes is not None:
        names["class_names"] = tuple(classes)
    count = len(classes) if classes is not None else max_label(y) + 1  # y: checked >= 0
    if count < 2:
        raise DataFileError(f"{p}: classification needs at least 2 classes, the labels are all 0")
    return DatasetSplits(p.name, "classification", (x, y), (x, y), count, **names)
