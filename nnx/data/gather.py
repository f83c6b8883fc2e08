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
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..backend import Backend, namespace, to_numpy
from ..core.structure import leaves, map_structure


def is_lazy(value: Any) -> bool:
    """True when an array of ``value`` (an array, tuple or dict) is a NumPy memory map: its rows
    are read from the file per batch, never the whole array at once."""
    return any(isinstance(a, np.memmap) for _, a in leaves(value))


RELEASE_BYTES = 64 << 20  # memory-map bytes read between two releases of the mapped pages


def release_pages(value: Any) -> None:
    """Unmap the pages of every memory map of ``value`` from this process (``MADV_DONTNEED``;
    Linux and macOS): they stay in the operating system's file cache, so reading them again is
    cheap, but they no longer count in this process's resident memory. Without this an epoch
    over a memory map would leave the whole file resident, however little is in use."""
    advice = getattr(mmap, "MADV_DONTNEED", None)
    if advice is None:
        return
    for _, a in leaves(value):
        mapping = getattr(a, "_mmap", None) if isinstance(a, np.memmap) else None
        if mapping is not None and not getattr(mapping, "closed", False):
            mapping.madvise(advice)


def gather_rows(a: Any, idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of host array ``a`` (a memory map reads only those rows, in file order),
    as a fresh in-memory array in the order of ``idx``."""
    idx = np.asarray(idx, dtype=np.int64)
    if idx.size == 0:
        return np.array(a[0:0])
    order = np.argsort(idx, kind="stable")
    out = np.empty((idx.size, *a.shape[1:]), dtype=a.dtype)
    out[order] = a[idx[order]]  # sorted index reads: sequential in the file
    return out


def slice_rows(a: Any, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of a host array, copied into memory (read now, not on first use)."""
    return np.array(a[start:stop])


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
