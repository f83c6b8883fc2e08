"""Train/validation split and feature standardization (fitted on the training split only)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import backend_of, namespace, to_numpy
from ..core.checks import real_in_range
from ..layers.standardize import feature_statistics
from .dataset import ArrayDataset
from .gather import is_lazy
from .subset import Subset


def train_val_split(
    dataset: ArrayDataset | Subset, val_fraction: float, seed: int = 0
) -> tuple[Any, Any]:
    """Split off a random ``val_fraction`` of the samples as a validation set (seeded).

    Returns ``(train, None)`` for ``val_fraction == 0``. Over memory-mapped arrays the two
    parts are :class:`~nnx.data.subset.Subset` views: nothing is read until batches are. A
    Subset of an ArrayDataset splits into Subsets of that dataset (the same samples, in the
    same order, as splitting the Subset's rows copied into arrays).

    >>> import numpy as np
    >>> train, val = train_val_split(ArrayDataset(np.arange(10.0), np.arange(10)), 0.2, seed=0)
    >>> len(train), len(val)
    (8, 2)
    """
    fraction = real_in_range(val_fraction, "val_fraction", "train_val_split", high=1.0)
    n = len(dataset)
    n_val = round(fraction * n)
    if n_val == 0:
        return dataset, None
    if n_val >= n:
        raise ValueError(
            f"train_val_split: val_fraction {fraction} leaves no training samples out of {n}"
        )
    order = np.random.default_rng(seed).permutation(n)
    train_idx, val_idx = np.sort(order[n_val:]), np.sort(order[:n_val])
    if isinstance(dataset, Subset) and isinstance(dataset.dataset, ArrayDataset):
        rows = dataset.indices
        return Subset(dataset.dataset, rows[train_idx]), Subset(dataset.dataset, rows[val_idx])
    if is_lazy(dataset.x) or (dataset.y is not None and is_lazy(dataset.y)):
        return Subset(dataset, train_idx), Subset(dataset, val_idx)  # nothing read
    xp = namespace(dataset.x)
    be = dataset.backend

    def subset(idx: np.ndarray) -> ArrayDataset:
        i = be.asarray(idx)
        y = None if dataset.y is None else xp.take(dataset.y, i, axis=0)
        return ArrayDataset(xp.take(dataset.x, i, axis=0), y)

    return subset(train_idx), subset(val_idx)


class Standardizer:
    """Per-feature ``(x - mean) / std``, with mean and std fitted on the training data only.

    Features with zero spread are centred but not scaled. The statistics are those of
    :class:`nnx.Standardize` (the same code); that layer carries them inside a model, so a saved
    model standardizes its inputs itself, which is what the training command uses.

    >>> import numpy as np
    >>> s = Standardizer().fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
    >>> s.transform(np.array([[2.0, 6.0]])).tolist()
    [[0.0, 1.0]]
    """

    mean: Any = None
    std: Any = None

    def fit(self, x: Any) -> Standardizer:
        self.mean, self.std = feature_statistics(x, "Standardizer.fit")
        return self

    def transform(self, x: Any) -> Any:
        if self.mean is None:
            raise RuntimeError("Standardizer: call fit(train_x) before transform")
        be = backend_of(x)
        mean = be.asarray(self.mean, dtype=x.dtype)  # no copy when already on x's backend
        std = be.asarray(self.std, dtype=x.dtype)
        return (x - mean) / std

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"mean": np.array(to_numpy(self.mean)), "std": np.array(to_numpy(self.std))}
