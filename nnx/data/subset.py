"""A view of some samples of a dataset, nothing copied (PyTorch's ``Subset``).

:func:`~nnx.data.train_val_split` returns subsets for memory-mapped data, so splitting a file
larger than memory reads nothing; a :class:`~nnx.data.DataLoader` over a subset of an
:class:`~nnx.data.ArrayDataset` gathers each batch's rows straight from the arrays (sorted
reads of a memory map), like over the dataset itself.

>>> import numpy as np
>>> from nnx.data import ArrayDataset
>>> part = Subset(ArrayDataset(np.arange(10.0), np.arange(10)), [7, 2])
>>> len(part), part[0]
(2, (np.float64(7.0), np.int64(7)))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.structure import map_structure
from .dataset import ArrayDataset


class Subset:
    """Samples ``indices`` (in that order) of ``dataset``: an ArrayDataset or any map-style
    dataset (``__len__`` and ``__getitem__``)."""

    def __init__(self, dataset: Any, indices: Any):
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(dataset)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"Subset: indices must lie in [0, {n - 1}] for {n} samples")
        self.dataset = dataset
        self.indices = idx

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int) -> Any:
        j = int(self.indices[i])
        data = self.dataset
        if isinstance(data, ArrayDataset):
            x = map_structure(lambda a: a[j], data.x)
            return x if data.y is None else (x, map_structure(lambda a: a[j], data.y))
        return data[j]
