"""The user's own data: an ``.npz``, ``.csv`` or ``.npy`` file, checked the way the built-in sets
are.

* ``.npz``: arrays ``x_train`` and ``y_train``, and optionally ``x_test`` and ``y_test`` (both or
  neither). ``x`` holds one sample per row of any shape (``(n, features)``, ``(n, 1, 28, 28)``).
  Integer ``y`` of shape ``(n,)`` makes a classification task with classes ``0..K-1``; floating
  ``y`` of shape ``(n,)`` or ``(n, k)`` a regression task.
* ``.csv``: a header row naming the columns, then one sample per row; ``label_column`` (a name
  from the header, or a 0-based index) holds the target and every other column a numeric
  feature. Integer labels are class indices; labels that are not numbers (``cat``, ``dog``)
  become classes in sorted order; other numbers make a regression task.
* ``.npy``: one 2-D numeric array, one sample per row; ``label_column`` (a 0-based index,
  negative from the end: ``-1`` is the last column) holds the target and every other column a
  feature. Labels that are all whole numbers (any integer dtype, or floats such as ``3.0``) are
  class indices, as a ``.csv``'s integer labels; other numbers make a regression task.

Without a test split (every ``.csv`` and ``.npy``, an ``.npz`` without ``x_test``) a seeded 20% of the rows is
held out as the test set. Every problem raises :class:`DataFileError` (both a
:class:`DatasetError` and an :class:`~nnx.NnxFileError`) with a one-line message naming the file
and what is wrong: shapes, dtypes, NaN or infinite values, labels out of range. The ``.npz`` is
read by :class:`~nnx.io.npz.NpzReader` (no pickle, headers checked before allocating).

>>> import os, tempfile, numpy as np
>>> path = os.path.join(tempfile.mkdtemp(), "mine.npz")
>>> np.savez(path, x_train=np.random.default_rng(0).normal(size=(50, 3)),
...          y_train=np.arange(50) % 2)
>>> data = load_file(path)
>>> data.task, data.num_classes, data.train[0].shape, data.test[0].shape
('classification', 2, (40, 3), (10, 3))
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..data.gather import gather_rows
from ..io.npz import NpzReader, open_regular
from . import file_checks
from .errors import DataFileError
from .file_checks import (
    check_mapped,
    check_pair,
    csv_numbers,
    held_out,
    label_index,
    max_label,
)
from .splits import DatasetSplits

FILE_SUFFIXES = (".npz", ".csv", ".npy")
# a file larger than this is streamed, not read whole (the command's --dataset)
STREAM_BYTES = 1 << 30


def is_data_file(name: str) -> bool:
    """Whether ``--dataset name`` names a file (by its suffix) rather than a built-in set."""
    return isinstance(name, str) and name.lower().endswith(FILE_SUFFIXES)


def load_file(
    path: str | os.PathLike,
    label_column: str | int | None = None,
    seed: int = 0,
    stream_bytes: int | None = None,
) -> DatasetSplits:
    """Load and check the user's ``.npz``, ``.csv`` or ``.npy`` file; returns a
    ``DatasetSplits``.

    A file larger than ``stream_bytes`` (None: never) is memory-mapped instead: an ``.npz``
    or ``.npy`` in place (:func:`map_npz`, :func:`map_npy`), a ``.csv`` after a conversion in chunks into the cache
    (:func:`nnx.datasets.csv_stream.map_csv`); nothing is loaded whole, and the checks read it
    in chunks."""
    p = Path(path)
    suffix = p.suffix.lower()
    classes = None
    if stream_bytes is not None and suffix in FILE_SUFFIXES and _size(p) > stream_bytes:
        if suffix == ".csv":  # converted once into the cache, in chunks, then mapped
            from .csv_stream import map_csv
            from .download import cache_dir

            return map_csv(p, label_column, seed, cache_dir())
        if suffix == ".npy":
            return map_npy(p, label_column, seed)
        return map_npz(p, seed)
    names: dict[str, Any] = {}
    if suffix == ".npz":
        if label_column is not None:
            raise DataFileError(f"{p}: label_column applies to .csv files, not .npz")
        x_train, y_train, test = _read_npz(p)
    elif suffix == ".csv":
        x_train, y_train, classes, features, label = _read_csv(p, label_column)
        names = {"feature_names": features, "label_name": label}
        if classes is not None:
            names["class_names"] = tuple(classes)
        test = None
    elif suffix == ".npy":
        x_train, y_train, column = _read_npy(p, label_column)
        names = {"label_column": column}
        test = None
    else:
        open_regular(p, "data file", DataFileError).close()  # a missing file says so first
        raise DataFileError(
            f"data file {p} must end in .npz, .csv or .npy, not {p.suffix or 'nothing'}"
        )
    x_train, y_train = check_pair(p, "train", x_train, y_train)
    if test is not None:
        x_test, y_test = check_pair(p, "test", *test)
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DataFileError(
                f"{p}: x_test samples have shape {x_test.shape[1:]}, x_train samples "
                f"{x_train.shape[1:]}"
            )
        if y_test.dtype.kind != y_train.dtype.kind or y_test.shape[1:] != y_train.shape[1:]:
            raise DataFileError(
                f"{p}: y_test ({y_test.dtype}, shape {y_test.shape}) does not match y_train "
                f"({y_train.dtype}, shape {y_train.shape})"
            )
    else:
        if len(x_train) < 2:
            raise DataFileError(
                f"{p}: needs at least 2 samples to hold out a test set, got {len(x_train)}"
            )
        train_rows, test_rows = held_out(len(x_train), seed)
        x_test, y_test = x_train[test_rows], y_train[test_rows]
        x_train, y_train = x_train[train_rows], y_train[train_rows]
    name = p.name
    if y_train.dtype.kind == "i":
        num_classes = int(max(y_train.max(), y_test.max())) + 1
        if classes is not None:  # named classes: every name counts, in sorted order
            num_classes = len(classes)
        if num_classes < 2:
            raise DataFileError(
                f"{p}: classification needs at least 2 classes, the labels are all 0"
            )
        return DatasetSplits(
            name, "classification", (x_train, y_train), (x_test, y_test), num_classes, **names
        )
    return DatasetSplits(name, "regression", (x_train, y_train), (x_test, y_test), **names)


def _size(p: Path) -> int:
    open_regular(p, "data file", DataFileError).close()  # missing, a folder, ...: says so
    return p.stat().st_size


def map_npz(path: str | os.PathLike, seed: int = 0) -> DatasetSplits:
    """The ``.npz`` data file at ``path`` as memory maps (stored uncompressed, ``np.savez``),
    checked in chunks as :func:`load_file` checks arrays; without ``x_test`` the held-out rows
    are ``DatasetSplits.rows`` (the same rows and order as :func:`load_file`)."""
    p = Path(path)
    huge = 1 << 62  # mapping allocates nothing: no cap on the declared sizes
    with NpzReader(p, "data file", DataFileError, huge, huge) as reader:
        names = set(reader.keys())
        if not {"x_train", "y_train"} <= names or ("x_test" in names) != ("y_test" in names):
            raise DataFileError(
                f"{p}: expected arrays x_train, y_train and optionally x_test, y_test; found "
                f"{sorted(names) or 'none'}"
            )
        arrays = {key: reader.memmap(key, kinds="biuf") for key in sorted(names)}
    kinds = {}
    for split in ("train", "test"):
        if f"x_{split}" in arrays:
            check_mapped(p, split, arrays[f"x_{split}"], arrays[f"y_{split}"])
            kinds[split] = arrays[f"y_{split}"].dtype.kind
    x, y = arrays["x_train"], arrays["y_train"]
    if "x_test" in arrays:
        test, rows = (arrays["x_test"], arrays["y_test"]), None
        if kinds["test"] != kinds["train"] or test[0].shape[1:] != x.shape[1:]:
            raise DataFileError(f"{p}: x_test/y_test do not match x_train/y_train")
    else:
        if len(x) < 2:
            raise DataFileError(f"{p}: needs at least 2 samples to hold out a test set")
        test, rows = (x, y), held_out(len(x), seed)
    if kinds["train"] == "f":  # targets (n,) as (n, 1), still mapped
        y, test = (
            (y.reshape(-1, 1) if y.ndim == 1 else y),
            (test[0], test[1].reshape(len(test[1]), -1)),
        )
        return DatasetSplits(p.name, "regression", (x, y), test, rows=rows)
    top = max(max_label(y), max_label(test[1]))
    if top < 1:
        raise DataFileError(f"{p}: classification needs at least 2 classes, the labels are all 0")
    return DatasetSplits(p.name, "classification", (x, y), test, top + 1, rows=rows)


def _open_npy(p: Path, label_column: str | int | None) -> tuple[np.ndarray, int]:
    """The ``.npy`` at ``p`` memory-mapped, its header checked first (no pickle: a 2-D array of
    numbers), and its label column as an index ``0..columns-1``."""
    if label_column is None:
        raise DataFileError(
            f"{p}: a .npy needs label_column: a 0-based column index (-1: the last column)"
        )
    try:
        column = int(label_column)
    except (TypeError, ValueError):
        raise DataFileError(
            f"{p}: a .npy has no column names: label_column must be a 0-based index "
            f"(-1: the last column), not {label_column!r}"
        ) from None
    with open_regular(p, "data file", DataFileError) as f:
        try:
            version = np.lib.format.read_magic(f)
            read = {(1, 0): np.lib.format.read_array_header_1_0}
            read[(2, 0)] = read[(3, 0)] = np.lib.format.read_array_header_2_0
            if version not in read:
                raise ValueError(f"format version {version} is not supported")
            shape, _, dtype = read[version](f)
        except (ValueError, OSError, SyntaxError) as err:
            raise DataFileError(f"{p}: not a readable .npy array ({err})") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise DataFileError(f"{p}: a .npy data file must hold numbers, got dtype {dtype}")
    if len(shape) != 2 or 0 in shape:
        raise DataFileError(
            f"{p}: a .npy data file must be a 2-D array (samples, columns) with no empty axis, "
            f"got shape {shape}"
        )
    if shape[1] < 2:
        raise DataFileError(f"{p}: no feature columns besides the label column")
    if not -shape[1] <= column < shape[1]:
        raise DataFileError(f"{p}: column index {column} is out of range for {shape[1]} columns")
    try:
        array = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataFileError(f"{p}: not a readable .npy array ({err})") from None
    return array, column % shape[1]


def _npy_labels(p: Path, array: np.ndarray, column: int) -> np.ndarray:
    """The label column, read once a chunk of rows at a time: int64 class indices when every
    label is a whole number (below 2**53 in size), else float32 regression targets (NaN and
    inf refused). Rows are read with ``pread`` (:func:`~nnx.data.gather.gather_rows`), not
    through the mapping, so the pass leaves nothing of the file resident."""
    step = max(1, file_checks.CHUNK_BYTES // max(1, array[:1].nbytes))
    y = np.empty(len(array), dtype=array.dtype)
    for start in range(0, len(array), step):
        rows = np.arange(start, min(start + step, len(array)))
        y[start : start + step] = gather_rows(array, rows)[:, column]
    if y.dtype.kind in "biu":
        return y.astype(np.int64)
    whole = True
    for start in range(0, len(y), step):
        chunk = y[start : start + step]
        if not np.isfinite(chunk).all():
            raise DataFileError(f"{p}: column {column} has NaN or infinite labels")
        whole = whole and bool(((chunk == np.round(chunk)) & (np.abs(chunk) < 2**53)).all())
    return y.astype(np.int64 if whole else np.float32)


def _read_npy(p: Path, label_column: str | int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """``(x, y, label column)`` of a ``.npy`` read whole (a small file: x is a copy)."""
    array, column = _open_npy(p, label_column)
    y = _npy_labels(p, array, column)
    return np.delete(np.asarray(array), column, axis=1), y, column


def map_npy(
    path: str | os.PathLike, label_column: str | int | None, seed: int = 0
) -> DatasetSplits:
    """The ``.npy`` data file at ``path`` memory-mapped (see :func:`load_file`): the features a
    view of the file (the columns before or after the label column, which must be the first
    or the last), the labels read once in chunks into memory, the checks made in chunks; the
    held-out rows are ``DatasetSplits.rows`` (the same rows and order as :func:`load_file`)."""
    p = Path(path)
    array, column = _open_npy(p, label_column)
    columns = array.shape[1]
    if column not in (0, columns - 1):
        raise DataFileError(
            f"{p}: is memory-mapped (over {STREAM_BYTES} bytes), so its label column must be "
            f"the first or the last, not column {column} of {columns}"
        )
    x = array[:, 1:] if column == 0 else array[:, :-1]  # a view: nothing is copied
    y = _npy_labels(p, array, column)
    if y.dtype.kind == "f":
        y = y.reshape(-1, 1)
    check_mapped(p, "train", x, y)
    if len(x) < 2:
        raise DataFileError(f"{p}: needs at least 2 samples to hold out a test set, got {len(x)}")
    rows = held_out(len(x), seed)
    if y.dtype.kind == "f":
        return DatasetSplits(p.name, "regression", (x, y), (x, y), rows=rows, label_column=column)
    top = max_label(y)
    if top < 1:
        raise DataFileError(f"{p}: classification needs at least 2 classes, the labels are all 0")
    return DatasetSplits(
        p.name, "classification", (x, y), (x, y), top + 1, rows=rows, label_column=column
    )


def _read_npz(p: Path):
    expected = {"x_train", "y_train", "x_test", "y_test"}
    with NpzReader(p, "data file", DataFileError) as reader:
        names = set(reader.keys())
        unknown = sorted(names - expected)
        if unknown:
            raise DataFileError(
                f"{p}: unexpected arrays {unknown}; expected x_train, y_train and optionally "
                "x_test, y_test"
            )
        missing = [k for k in ("x_train", "y_train") if k not in names]
        if missing:
            raise DataFileError(
                f"{p}: missing {' and '.join(missing)} (found {sorted(names) or 'no arrays'})"
            )
        if ("x_test" in names) != ("y_test" in names):
            raise DataFileError(f"{p}: x_test and y_test come together; found only one of them")
        arrays = reader.read_all(kinds="biufcSUmM")  # any plain dtype: checked below, by name
    test = (arrays["x_test"], arrays["y_test"]) if "x_test" in arrays else None
    return arrays["x_train"], arrays["y_train"], test


def _read_csv(p: Path, label_column: str | int | None):
    """``(x, y, class names or None, feature column names, label column name)``."""
    if label_column is None:
        raise DataFileError(
            f"{p}: a .csv needs label_column: a column name from its header or a 0-based index"
        )
    header, body = _csv_rows(p)
    column = label_index(p, header, label_column)
    features = [i for i in range(len(header)) if i != column]
    if not features:
        raise DataFileError(f"{p}: no feature columns besides the label column")
    x = csv_numbers(p, header, body, features)
    names = tuple(header[i] for i in features)
    labels = [row[column].strip() for row in body]
    if any(not v for v in labels):
        line = next(r + 2 for r, v in enumerate(labels) if not v)
        raise DataFileError(f"{p}: line {line} has no label in column {header[column]!r}")
    try:
        values = np.array([float(v) for v in labels])
    except ValueError:  # names: classes in sorted order
        classes = sorted(set(labels))
        index = {name: i for i, name in enumerate(classes)}
        y = np.array([index[v] for v in labels], dtype=np.int64)
        return x, y, classes, names, header[column]
    if not np.isfinite(values).all():
        raise DataFileError(f"{p}: column {header[column]!r} has NaN or infinite labels")
    if all(v.lstrip("+-").isdigit() for v in labels):
        return x, values.astype(np.int64), None, names, header[column]
    return x, values.astype(np.float32), None, names, header[column]


def _csv_rows(p: Path) -> tuple[list[str], list[list[str]]]:
    """The header (stripped) and the data rows of a .csv, every row as long as the header."""
    try:
        with io.TextIOWrapper(
            open_regular(p, "data file", DataFileError), encoding="utf-8-sig", newline=""
        ) as f:
            rows = [row for row in csv.reader(f) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataFileError(f"cannot read {p}: {err}") from None
    if len(rows) < 2:
        raise DataFileError(f"{p}: needs a header row and at least one data row")
    header = [cell.strip() for cell in rows[0]]
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:  # columns are picked by name: which one would be meant?
        raise DataFileError(f"{p}: the header names column {twice[0]!r} more than once")
    body = rows[1:]
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DataFileError(
                f"{p}: line {number} has {len(row)} columns, the header {len(header)}"
            )
    return header, body


def read_csv_features(
    path: str | os.PathLike,
    feature_names: tuple[str, ...] | list[str] | None = None,
    label_name: str | None = None,
) -> np.ndarray:
    """The feature matrix of a .csv to predict on, read like a training .csv (a header row,
    one sample per row).

    With ``feature_names`` (the training file's feature columns) the columns are picked by
    name, in the training order, and the label column ``label_name`` is ignored when present;
    a missing feature column or any other extra column is a :class:`DataFileError`. Without
    them every column is a feature.
    """
    p = Path(path)
    header, body = _csv_rows(p)
    if feature_names is None:
        return csv_numbers(p, header, body, list(range(len(header))))
    missing = [name for name in feature_names if name not in header]
    if missing:
        raise DataFileError(
            f"{p}: no column {', '.join(map(repr, missing[:3]))}"
            + (", ..." if len(missing) > 3 else "")
            + f"; the model was trained on the columns {', '.join(feature_names)}"
        )
    extra = [h for h in header if h not in feature_names and h != label_name]
    if extra:
        raise DataFileError(
            f"{p}: column {extra[0]!r} was not a feature of the training data; the model "
            f"reads {', '.join(feature_names)}"
            + (f" (and ignores the label column {label_name!r})" if label_name else "")
        )
    return csv_numbers(p, header, body, [header.index(name) for name in feature_names])
