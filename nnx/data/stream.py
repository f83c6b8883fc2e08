"""Streams: any iterable of ``(x, y)`` batches, or an iterable-style dataset of samples, as a
loader the Trainer's epoch loop consumes.

:class:`BatchStream` wraps

- an iterable of batches: a list of ``(x, y)`` pairs, a generator, a PyTorch ``DataLoader``
  (NumPy arrays or CPU tensors; converted through the backend, nnx never imports PyTorch for
  it), or any object whose ``__iter__`` yields batches;
- an iterable-style dataset of samples (``batch_size`` given): its samples are grouped into
  batches of ``batch_size`` and joined with ``collate``.

Each epoch calls ``iter(source)`` once. A re-iterable source (a list, a DataLoader, a class
whose ``__iter__`` starts over) serves any number of epochs; a one-shot iterator (a generator)
serves one: an epoch that finds it already exhausted raises ValueError, rather than training
on nothing. ``set_epoch`` is passed on to a source that has it (PyTorch's samplers).

The batch sizes of an epoch are known only as they arrive: :meth:`batch_rows` answers for the
batches already yielded, and ``len()`` is the source's ``len()`` where it has one.

>>> import numpy as np
>>> stream = BatchStream([(np.zeros((2, 3)), np.zeros(2)), (np.ones((1, 3)), np.ones(1))])
>>> [int(x.shape[0]) for x, _ in stream], len(stream)
([2, 1], 2)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..backend import Backend, get_backend
from ..core.checks import positive_int
from ..core.structure import first_leaf
from .gather import collate as default_collate
from .gather import to_backend
from .prefetch import prefetched


def is_sample_stream(data: Any) -> bool:
    """True for an iterable-style dataset of samples: PyTorch's ``IterableDataset`` (or any
    class with that name among its bases); other iterables are taken as batches."""
    return any(k.__name__ == "IterableDataset" for k in type(data).__mro__)


def _batches(samples: Iterable[Any], size: int, collate: Callable[..., Any]) -> Iterator[Any]:
    group: list[Any] = []
    for sample in samples:
        group.append(sample)
        if len(group) == size:
            yield collate(group)
            group = []
    if group:
        yield collate(group)


KINDS = (
    "an nnx.data.ArrayDataset or an (x, y) pair of arrays, a DataLoader, a dataset (__len__ "
    "and __getitem__, or __iter__) or an iterable of (x, y) batches"
)


def _pair(batch: Any, who: str, targets: bool) -> tuple[Any, Any]:
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    if targets or not hasattr(batch, "shape"):
        raise TypeError(
            f"{who}: a batch is a {type(batch).__name__}, not an (x, y) pair of arrays; data "
            f"must be {KINDS}"
        )
    return batch, None  # inputs alone (predict)


class BatchStream:
    """A loader over ``source`` (see the module docstring); batches converted to ``backend``
    and ``dtype`` when given, ``check(x, y)`` called on each host batch first, ``prefetch``
    batches produced ahead on a background thread. Each batch is an ``(x, y)`` pair, or (with
    ``targets=False``) an array of inputs alone."""

    def __init__(
        self,
        source: Iterable[Any],
        batch_size: int | None = None,
        *,
        collate: Callable[[list[Any]], tuple[Any, Any]] | None = None,
        backend: str | Backend | None = None,
        dtype: Any = None,
        check: Callable[[Any, Any], None] | None = None,
        prefetch: int = 0,
        who: str = "BatchStream",
        targets: bool = True,
    ):
        if not hasattr(source, "__iter__"):
            raise TypeError(f"{who}: the data is not iterable: {type(source).__name__}")
        self.source = source
        self.batch_size = (
            None if batch_size is None else positive_int(batch_size, "batch_size", who)
        )
        self.collate = default_collate if collate is None else collate
        self.backend = None if backend is None else get_backend(backend)
        self.dtype = dtype
        self.check = check
        self.prefetch = int(prefetch)
        self.who = who
        self.targets = targets
        self.epoch = 0
        self.one_shot = iter(source) is source  # a generator or other iterator
        self._iterations = 0
        self._sizes: list[int] = []

    def __len__(self) -> int:
        """The source's ``len()`` (batches, or samples over ``batch_size``); TypeError without."""
        n = len(self.source)  # type: ignore[arg-type]
        return n if self.batch_size is None else -(-n // self.batch_size)

    def known_length(self) -> int | None:
        try:
            return len(self)
        except TypeError:
            return None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        set_epoch = getattr(self.source, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)

    def batch_rows(self, batch: int) -> tuple[int, int, int]:
        """``(0, n, n)`` for batch ``batch`` of ``n`` samples, once it has been yielded."""
        n = self._sizes[batch]
        return 0, n, n

    def _raw(self) -> Iterator[tuple[Any, Any]]:
        self._iterations += 1
        first = True
        items: Iterable[Any] = self.source
        if self.batch_size is not None:
            items = _batches(self.source, self.batch_size, self.collate)
        for item in items:
            first = False
            yield _pair(item, self.who, self.targets)
        if first:
            if self.one_shot and self._iterations > 1:
                raise ValueError(
                    f"{self.who}: the data is a one-shot iterator (a generator), exhausted by "
                    f"an earlier epoch; it serves one epoch. Pass a re-iterable for more: a "
                    f"list of batches, a DataLoader, or an object whose __iter__ starts over"
                )
            raise ValueError(f"{self.who}: the data yielded no batches")

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        self._sizes = []
        batches = (to_backend(x, y, self.backend, self.dtype, self.check) for x, y in self._raw())
        if self.prefetch:
            batches = prefetched(batches, self.prefetch)
        for x, y in batches:
            self._sizes.append(int(first_leaf(x).shape[0]))
            yield x, y
