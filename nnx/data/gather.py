"""Host-side batches: rows read from memory-mapped arrays, samples stacked into batches, and
each batch converted to a backend.

Data that does not live on the device whole (a ``np.load(..., mmap_mode="r")`` array, a
map-style dataset of samples, a stream of batches) is gathered on the host one batch at a time
and copied to the backend per batch; only a few batches are ever in memory.

>>> import numpy as np
>>> a = np.arange(10.0).reshape(5, 2)
>>> gather_rows(a, np.array([3, 0, 4])).tolist()
[[6.0, 7.0], [0.0, 1.0], [8.0, 9.0]]
>>> x, y = collate([(np.zeros(2), 1), (np.ones(2), 0)])
>>> x.shape, y.tolist()
((2, 2), [1, 0])
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..backend import Backend, namespace, to_numpy
from ..core.structure import leaves, map_structure


def is_lazy(value: Any) -> bool:
    """True when an array of ``value`` (an array, tuple or dict) is a NumPy memory map: its rows
    are read from the file per batch, never the whole array at once."""
    return any(isinstance(a, np.memmap) for _, a in leaves(value))


def _file_rows(a: Any) -> tuple[str, int, int] | None:
    """``(file name, position of row 0, bytes per row)`` of a memory map whose rows are
    contiguous in its file, else None."""
    mapping = getattr(a, "_mmap", None)
    name = getattr(a, "filename", None)
    if not isinstance(a, np.memmap) or mapping is None or not name or a.ndim < 1:
        return None
    row = a[:1]
    if not row.flags.c_contiguous or a.shape[0] == 0:
        return None
    base = np.frombuffer(mapping, dtype=np.uint8).ctypes.data  # where the mapping starts
    start = a.offset - a.offset % mmap.ALLOCATIONGRANULARITY  # the mapping's file offset
    return name, start + (a.ctypes.data - base), a.strides[0]


def gather_rows(a: Any, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of host array ``a`` as a fresh in-memory array in the order of ``idx``.

    A memory map is read with ``pread`` in ascending file order (runs of consecutive rows in
    one call), not through the mapping: pages touched through a mapping count in the
    process's resident memory (whole large folios of the file cache on recent kernels), so
    an epoch of random rows would leave the file resident; ``pread`` copies from the file
    cache without mapping it."""
    idx = np.asarray(idx, dtype=np.int64)
    if idx.size == 0:
        return np.array(a[0:0])
    order = np.argsort(idx, kind="stable")
    out = np.empty((idx.size, *a.shape[1:]), dtype=a.dtype)
    where = _file_rows(a) if hasattr(os, "preadv") else None
    size = a[:1].nbytes  # bytes of one row; a column slice's rows are `stride` bytes apart
    if where is None or a.strides[0] < size:
        out[order] = a[idx[order]]  # sorted index reads: sequential in the file
        return out
    name, first, stride = where
    ascending = bool((np.diff(idx) >= 0).all())  # already in file order (a chunk of rows)
    ordered = out if ascending else np.empty_like(out)
    rows = idx[order]
    if rows[0] < 0 or rows[-1] >= a.shape[0]:
        raise IndexError(f"gather_rows: indices out of range for {a.shape[0]} rows")
    flat = ordered.reshape(idx.size, -1).view(np.uint8).reshape(idx.size, -1)
    # rows with gaps (a column slice of a mapped matrix) are read whole, gaps included
    buffer = flat if stride == size else np.empty((idx.size, stride), dtype=np.uint8)
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1  # runs of consecutive rows
    fd = os.open(name, os.O_RDONLY)
    try:
        for lo, hi in zip(
            np.concatenate([[0], breaks]), np.concatenate([breaks, [rows.size]]), strict=True
        ):
            want = int(hi - lo - 1) * stride + size  # not past the last row's own bytes
            view = memoryview(buffer[lo:hi]).cast("B")[:want]
            got = os.preadv(fd, [view], first + int(rows[lo]) * stride)
            if got != want:
                raise OSError(f"gather_rows: short read of {name} ({got} of {want} bytes)")
    finally:
        os.close(fd)
    if buffer is not flat:
        flat[...] = buffer[:, :size]
    if not ascending:
        out[order] = ordered
    return out


def _stack(values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, Mapping):
        return {k: _stack([v[k] for v in values]) for k in first}
    if isinstance(first, (tuple, list)):
        return tuple(_stack(list(parts)) for parts in zip(*values, strict=True))
    return np.stack([np.asarray(to_numpy(v)) for v in values])


def collate(samples: list[Any]) -> tuple[Any, Any]:
    """The default collate: samples ``(x, y)`` (or ``x`` alone) -> one batch ``(x, y)`` of host
    arrays, each field stacked along a new first axis. A field may itself be a tuple or dict of
    arrays (several inputs); PyTorch CPU tensors and Python numbers are accepted."""
    if not samples:
        raise ValueError("collate: an empty list of samples")
    first = samples[0]
    if isinstance(first, (tuple, list)) and len(first) == 2:
        return _stack([s[0] for s in samples]), _stack([s[1] for s in samples])
    return _stack(list(samples)), None


def to_backend(
    xb: Any,
    yb: Any,
    backend: Backend | None,
    dtype: Any = None,
    check: Callable[[Any, Any], None] | None = None,
) -> tuple[Any, Any]:
    """One batch on ``backend``: floating arrays cast to ``dtype``, integer targets kept.
    ``check`` (if given) sees the host arrays first."""
    if check is not None:
        check(xb, yb)
    if backend is None:
        return xb, yb

    def move(a: Any, cast: bool) -> Any:
        floating = namespace(a).isdtype(a.dtype, "real floating") if hasattr(a, "dtype") else True
        return backend.asarray(a, dtype=dtype if (cast or floating) else None)

    x = map_structure(lambda a: move(a, True), xb)
    y = None if yb is None else map_structure(lambda a: move(a, False), yb)
    return x, y
