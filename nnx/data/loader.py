"""Mini-batches cut on the device, with a per-epoch shuffle drawn from a seed."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ..backend import backend_of, namespace
from ..checks import positive_int
from ..structure import first_leaf, map_structure
from .dataset import ArrayDataset


class DataLoader:
    """Iterate over ``(x_batch, y_batch)`` pairs of an :class:`ArrayDataset`.

    The order of epoch ``e`` is a permutation drawn from ``(seed, e)``: it differs across epochs
    and repeats across runs with the same seed, and resuming at epoch ``e`` reproduces it. The
    permutation is copied to the device once per epoch and batches are gathered there with
    ``xp.take``: no host<->device copy per batch. The last batch is smaller unless ``drop_last``.

    >>> import numpy as np
    >>> loader = DataLoader(ArrayDataset(np.arange(5.0), np.arange(5)), batch_size=2, shuffle=False)
    >>> [b[1].tolist() for b in loader]
    [[0, 1], [2, 3], [4]]
    """

    def __init__(
        self,
        dataset: ArrayDataset,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
    ):
        if not isinstance(dataset, ArrayDataset):
            raise TypeError(
                f"DataLoader: expected an nnx.data.ArrayDataset, got {type(dataset).__name__}"
            )
        self.dataset = dataset
        self.batch_size = positive_int(batch_size, "batch_size", "DataLoader")
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.epoch = 0
        if self.drop_last and len(dataset) < self.batch_size:
            raise ValueError(
                f"DataLoader: drop_last with batch_size {self.batch_size} and only "
                f"{len(dataset)} samples leaves no batch at all"
            )

    def __len__(self) -> int:
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def set_epoch(self, epoch: int) -> None:
        """Use the order of epoch ``epoch`` for the next iteration."""
        self.epoch = int(epoch)

    def permutation(self, epoch: int) -> np.ndarray:
        """The sample order of ``epoch`` (host int64 indices)."""
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        x, y = self.dataset.x, self.dataset.y
        n, b = len(self.dataset), self.batch_size
        stop = n - n % b if self.drop_last else n
        plain = not any(isinstance(v, (tuple, list, Mapping)) for v in (x, y))
        if self.shuffle:
            xp = namespace(first_leaf(x))
            order = backend_of(first_leaf(x)).asarray(self.permutation(self.epoch))  # one copy
            for start in range(0, stop, b):
                idx = order[start : min(start + b, n)]  # the standard wants in-bounds slices
                if plain:  # one array each: the common case, without the structure walk
                    yield xp.take(x, idx, axis=0), (None if y is None else xp.take(y, idx, axis=0))
                    continue
                yield (
                    map_structure(lambda a, idx=idx: xp.take(a, idx, axis=0), x),
                    None
                    if y is None
                    else map_structure(lambda a, idx=idx: xp.take(a, idx, axis=0), y),
                )
        else:
            for start in range(0, stop, b):
                end = min(start + b, n)
                if plain:
                    yield x[start:end, ...], (None if y is None else y[start:end, ...])
                    continue
                yield (
                    map_structure(lambda a, s=start, e=end: a[s:e, ...], x),
                    None if y is None else map_structure(lambda a, s=start, e=end: a[s:e, ...], y),
                )
