"""Per-feature mean and standard deviation in one streaming pass, for data too big for memory.

:class:`RunningStatistics` takes batches one at a time and merges each batch's count, mean and
sum of squared deviations into the running ones (Chan, Golub and LeVeque's pairwise update, the
batch form of Welford's algorithm), in float64 on the host: no batch is kept, and the result
equals :func:`nnx.layers.standardize.feature_statistics` of the whole data to float64 rounding
(population std, 1 where a feature has zero spread). :func:`fit_standardize` fits an
:class:`nnx.Standardize` layer from any data the Trainer accepts (a memory map, a map-style
dataset, an iterable of batches), so preprocessing that travels with the model works for
streamed data too.

>>> import numpy as np
>>> x = np.random.default_rng(0).normal(size=(100, 3))
>>> stats = RunningStatistics()
>>> for i in range(0, 100, 7):
...     _ = stats.update(x[i:i + 7])
>>> mean, std = stats.result()
>>> bool(np.allclose(mean, x.mean(axis=0), rtol=1e-12) and np.allclose(std, x.std(axis=0), rtol=1e-12))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import to_numpy
from ..core.structure import first_leaf
from .dataset import ArrayDataset
from .loader import DataLoader, is_map_style
from .stream import BatchStream


class RunningStatistics:
    """Count, mean and sum of squared deviations of the samples seen so far (float64, host)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def update(self, batch: Any) -> RunningStatistics:
        """Merge the samples of ``batch`` (shape ``(n, *sample)``, any backend)."""
        x = np.asarray(to_numpy(batch), dtype=np.float64)
        n = int(x.shape[0])
        if n == 0:
            return self
        if not np.all(np.isfinite(x)):
            raise ValueError("RunningStatistics: a batch holds NaN or infinite values")
        mean = x.mean(axis=0)
        m2 = np.square(x - mean).sum(axis=0)
        if self.mean is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return self
        if mean.shape != self.mean.shape:
            raise ValueError(
                f"RunningStatistics: samples of shape {mean.shape}, earlier ones {self.mean.shape}"
            )
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + np.square(delta) * (self.count * n / total)
        self.count = total
        return self

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)``: population std, 1 where a feature has zero spread."""
        if self.mean is None:
            raise ValueError("RunningStatistics: no samples seen")
        std = np.sqrt(self.m2 / self.count)
        return self.mean, np.where(std > 0, std, 1.0)


def input_batches(data: Any, batch_size: int = 4096) -> Any:
    """The input batches of ``data`` (an array, a memory map, an ArrayDataset, a DataLoader, a
    map-style dataset or an iterable of batches), on the host, in order."""
    if hasattr(data, "shape"):
        data = ArrayDataset(data)
    if isinstance(data, DataLoader):
        return (x for x, _ in data.with_options(shuffle=False, prefetch=0))
    if isinstance(data, ArrayDataset) or is_map_style(data):
        return (x for x, _ in DataLoader(data, batch_size, shuffle=False))
    return (x for x, _ in BatchStream(data, targets=False))


def streaming_statistics(data: Any, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` of the inputs of ``data`` (see :func:`input_batches`) in one pass."""
    stats = RunningStatistics()
    for x in input_batches(data, batch_size):
        stats.update(first_leaf(x))
    return stats.result()


def fit_standardize(layer: Any, data: Any, batch_size: int = 4096) -> Any:
    """Set an :class:`nnx.Standardize` layer's statistics from ``data`` in one streaming pass;
    returns the layer."""
    mean, std = streaming_statistics(data, batch_size)
    return layer.set_statistics(mean, std)
