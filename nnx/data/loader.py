"""Mini-batches cut on the device (or gathered on the host per batch), with a per-epoch shuffle
drawn from a seed, optionally prefetched on a background thread."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from ..backend import Backend, backend_of, get_backend, namespace
from ..core.checks import LabelRange, is_dtype, positive_int, remember_label_range
from ..core.structure import first_leaf, map_structure
from .dataset import ArrayDataset
from .gather import collate as default_collate
from .gather import gather_rows, is_lazy, to_backend
from .prefetch import prefetched
from .subset import Subset


class DataLoader:
    """Iterate over ``(x_batch, y_batch)`` pairs of an :class:`ArrayDataset` or a map-style dataset.

    The order of epoch ``e`` is a permutation drawn from ``(seed, e)``: it differs across epochs
    and repeats across runs with the same seed, and resuming at epoch ``e`` reproduces it. The
    permutation is copied to the device once per epoch and batches are gathered there with
    ``xp.take``: no host<->device copy per batch. The last batch is smaller unless ``drop_last``.

    For data-parallel training give ``rank`` and ``world_size``: every global batch of
    ``batch_size`` samples (the same batches as with one process) is cut into ``world_size``
    contiguous, disjoint shards whose sizes differ by at most one, and this loader yields shard
    ``rank`` of each (see :meth:`batch_rows`). Every rank sees the same number of batches; a shard
    of a short last batch can be empty.

    Host data is gathered per batch and never copied whole:

    - an :class:`ArrayDataset` over memory-mapped arrays (``np.load(path, mmap_mode="r")``):
      each batch reads its rows from the file, in sorted order;
    - a map-style dataset in PyTorch's sense (``__len__`` and ``__getitem__(i)`` returning one
      sample ``(x, y)``, or ``x``): each batch calls ``dataset[i]`` for its indices and joins the
      samples with ``collate`` (default: :func:`~nnx.data.gather.collate`, stacking each field).

    With ``rank``/``world_size`` each process reads only its shard of every batch. ``backend``
    and ``dtype`` convert every batch (floating arrays cast to ``dtype``, integer targets kept);
    the Trainer sets them. ``prefetch=n`` gathers and converts up to ``n`` batches ahead on a
    background thread (:mod:`nnx.data.prefetch`): the batches and their order are those of
    ``prefetch=0``.

    >>> import numpy as np
    >>> loader = DataLoader(ArrayDataset(np.arange(5.0), np.arange(5)), batch_size=2, shuffle=False)
    >>> [b[1].tolist() for b in loader]
    [[0, 1], [2, 3], [4]]
    >>> shard = DataLoader(ArrayDataset(np.arange(5.0), np.arange(5)), 2, False, rank=1, world_size=2)
    >>> [b[1].tolist() for b in shard]
    [[1], [3], []]
    """

    def __init__(
        self,
        dataset: ArrayDataset,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        *,
        collate: Callable[[list[Any]], tuple[Any, Any]] | None = None,
        backend: str | Backend | None = None,
        dtype: Any = None,
        prefetch: int = 0,
        check: Callable[[Any, Any], None] | None = None,
    ):
        if not isinstance(dataset, ArrayDataset) and not is_map_style(dataset):
            raise TypeError(
                f"DataLoader: expected an nnx.data.ArrayDataset or a map-style dataset "
                f"(__len__ and __getitem__), got {type(dataset).__name__}"
            )
        self.dataset = dataset
        self.collate = default_collate if collate is None else collate
        self.backend = None if backend is None else get_backend(backend)
        self.dtype = dtype
        self.check = check
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"DataLoader: prefetch must be an integer >= 0, got {prefetch!r}")
        self.prefetch = prefetch
        self.on_host = (
            not isinstance(dataset, ArrayDataset)
            or is_lazy(dataset.x)
            or (dataset.y is not None and is_lazy(dataset.y))
        )
        self.batch_size = positive_int(batch_size, "batch_size", "DataLoader")
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.epoch = 0
        self.start = 0
        self.world_size = positive_int(world_size, "world_size", "DataLoader")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < self.world_size:
            raise ValueError(
                f"DataLoader: rank must be an integer in [0, {self.world_size - 1}], got {rank!r}"
            )
        self.rank = rank
        self._label_range: LabelRange | None = None  # the labels' range, read on first use
        if self.drop_last and len(dataset) < self.batch_size:
            raise ValueError(
                f"DataLoader: drop_last with batch_size {self.batch_size} and only "
                f"{len(dataset)} samples leaves no batch at all"
            )

    def __len__(self) -> int:
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Use the order of epoch ``epoch`` for the next iterations, beginning at batch ``start``
        (a resume in the middle of an epoch: the batches are those of a whole epoch's
        iteration from ``start`` on)."""
        if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= len(self):
            raise ValueError(
                f"DataLoader: start must be a batch in [0, {len(self)}], got {start!r}"
            )
        self.epoch = int(epoch)
        self.start = start

    def permutation(self, epoch: int) -> np.ndarray:
        """The sample order of ``epoch`` (host int64 indices)."""
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))

    def batch_rows(self, batch: int) -> tuple[int, int, int]:
        """``(start, stop, total)``: this rank's rows ``[start, stop)`` of global batch ``batch``,
        which holds ``total`` samples (``(0, total, total)`` with one rank)."""
        total = min(self.batch_size, len(self.dataset) - batch * self.batch_size)
        return (*shard_bounds(total, self.rank, self.world_size), total)

    def with_options(self, **changes: Any) -> DataLoader:
        """A copy of this loader with some constructor arguments changed (the Trainer sets
        ``rank``, ``world_size``, ``backend``, ``dtype`` and ``check``)."""
        names = ("batch_size", "shuffle", "drop_last", "seed", "rank", "world_size")
        args = {n: getattr(self, n) for n in names}
        args.update(collate=self.collate, backend=self.backend, dtype=self.dtype)
        args.update(prefetch=self.prefetch, check=self.check)
        dataset = changes.pop("dataset", self.dataset)
        args.update(changes)
        return DataLoader(dataset, **args)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        batches = self._host_batches() if self.on_host else self._device_batches()
        if self.on_host or self.backend is not None or self.check is not None:
            batches = (to_backend(x, y, self.backend, self.dtype, self.check) for x, y in batches)
        if self.prefetch:
            return prefetched(batches, self.prefetch)
        return batches

    def _indices(self, batch: int, order: np.ndarray | None) -> tuple[int, int, Any]:
        first, last, _ = self.batch_rows(batch)
        start, end = batch * self.batch_size + first, batch * self.batch_size + last
        return start, end, (None if order is None else order[start:end])

    def _host_batches(self) -> Iterator[tuple[Any, Any]]:
        """Batches read on the host: rows of memory maps, or samples of a map-style dataset."""
        order = self.permutation(self.epoch) if self.shuffle else None
        data = self.dataset
        for batch in range(self.start, len(self)):
            start, end, idx = self._indices(batch, order)
            if isinstance(data, Subset) and isinstance(data.dataset, ArrayDataset):
                rows = data.indices[start:end] if idx is None else data.indices[idx]
                source = data.dataset

                def pick(a: Any, r: Any = rows) -> Any:
                    return gather_rows(a, r)

                yield (
                    map_structure(pick, source.x),
                    (None if source.y is None else map_structure(pick, source.y)),
                )
                continue
            if not isinstance(data, ArrayDataset):
                rows = range(start, end) if idx is None else idx.tolist()
                if end > start:
                    yield self.collate([data[i] for i in rows])
                    continue
                # an empty shard of a short last batch: a 0-row batch shaped like sample 0
                x, y = self.collate([data[0]])
                yield (
                    map_structure(lambda a: a[0:0], x),
                    (None if y is None else map_structure(lambda a: a[0:0], y)),
                )
                continue

            def cut(a: Any, s: int = start, e: int = end, i: Any = idx) -> Any:
                return gather_rows(a, np.arange(s, e) if i is None else i)

            yield (
                map_structure(cut, data.x),
                (None if data.y is None else map_structure(cut, data.y)),
            )

    def _device_batches(self) -> Iterator[tuple[Any, Any]]:
        x, y = self.dataset.x, self.dataset.y
        first_x = first_leaf(x)
        xp = namespace(first_x)
        plain = not any(isinstance(v, (tuple, list, Mapping)) for v in (x, y))
        # Integer labels: every batch cut from them is recorded with their range (read once per
        # data set, when a loss first asks), so the loss need not read each batch back
        labels = plain and y is not None and y.shape[0] > 0 and is_dtype(xp, y.dtype, "integral")
        if labels and getattr(self._label_range, "labels", None) is not y:
            self._label_range = LabelRange(y)
        order = None
        if self.shuffle:
            order = backend_of(first_x).asarray(self.permutation(self.epoch))  # one copy per epoch
        for batch in range(self.start, len(self)):
            first, last, _ = self.batch_rows(batch)
            start, end = batch * self.batch_size + first, batch * self.batch_size + last
            if order is not None:
                idx = order[start:end]  # the standard wants in-bounds slices
                if plain:  # one array each: the common case, without the structure walk
                    yb = None if y is None else xp.take(y, idx, axis=0)
                    if labels:
                        remember_label_range(yb, self._label_range)
                    yield xp.take(x, idx, axis=0), yb
                    continue

                def cut(a: Any, idx: Any = idx) -> Any:
                    return xp.take(a, idx, axis=0)

            else:
                if plain:
                    yb = None if y is None else y[start:end, ...]
                    if labels:
                        remember_label_range(yb, self._label_range)
                    yield x[start:end, ...], yb
                    continue

                def cut(a: Any, s: int = start, e: int = end) -> Any:
                    return a[s:e, ...]

            # tuples and dicts of arrays (several inputs or targets): every array alike
            yield map_structure(cut, x), (None if y is None else map_structure(cut, y))


def is_map_style(data: Any) -> bool:
    """True for a map-style dataset in PyTorch's sense: ``__len__`` and ``__getitem__`` (one
    sample per index), not a list, tuple, array or mapping (lists of batches are streams)."""
    if isinstance(data, (list, tuple, Mapping, str, bytes)) or hasattr(data, "shape"):
        return False
    kind = type(data)
    return hasattr(kind, "__len__") and hasattr(kind, "__getitem__")


def shard_bounds(total: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of ``total`` that rank ``rank`` of ``world_size`` takes: contiguous
    shards in rank order, the first ``total % world_size`` ranks one row longer.

    >>> [shard_bounds(5, r, 3) for r in range(3)], shard_bounds(1, 2, 3)
    ([(0, 2), (2, 4), (4, 5)], (1, 1))
    """
    base, extra = divmod(total, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)
