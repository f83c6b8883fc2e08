"""Data sets: the scikit-learn digits (the default), the book's synthetic sets, MNIST,
Fashion-MNIST and CIFAR-10. :func:`load_dataset` returns any of them by name as host NumPy arrays.

>>> data = load_dataset("spiral", seed=0)
>>> data.task, data.num_classes, data.train[0].shape, data.test[0].shape
('classification', 3, (240, 2), (60, 2))
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np

from .cifar import cifar10
from .digits import digits
from .errors import DataFileError, DatasetError
from .files import is_data_file, load_file
from .idx import cache_dir, fashion_mnist, mnist
from .sequences import parity, sorted_sequences
from .synthetic import sine, spiral, vertical

DATASETS = ("digits", "spiral", "vertical", "sine", "mnist", "fashion-mnist", "cifar10")


@dataclass(frozen=True)
class DatasetSplits:
    """A data set ready for training: host arrays ``train = (x, y)`` and ``test = (x, y)``.

    ``task`` is ``"classification"`` (int64 labels, ``num_classes`` classes) or ``"regression"``
    (float32 targets of shape ``(n, num_outputs)``).
    """

    name: str
    task: str
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    num_classes: int | None = None
    image_shape: tuple[int, ...] | None = None

    def images(self) -> DatasetSplits:
        """The same data with each sample as an image ``image_shape`` (``(C, H, W)``) instead of
        a flat feature vector, for convolutional models; the split itself when it has no image
        shape or already has it.

        >>> data = load_dataset("digits")
        >>> data.train[0].shape, data.images().train[0].shape
        ((1438, 64), (1438, 1, 8, 8))
        """
        shape = self.image_shape
        if shape is None or tuple(self.train[0].shape[1:]) == shape:
            return self

        def reshaped(split: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            return split[0].reshape(len(split[0]), *shape), split[1]

        return replace(self, train=reshaped(self.train), test=reshaped(self.test))

    @property
    def num_features(self) -> int:
        return int(self.train[0].shape[1])

    @property
    def num_outputs(self) -> int:
        """Units of the model's last layer: the class count, or the regression target width."""
        return self.num_classes if self.num_classes is not None else int(self.train[1].shape[1])


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    download: bool = True,
) -> DatasetSplits:
    """Load a data set by name (one of :data:`DATASETS`).

    The synthetic sets are generated from ``seed`` with a test set drawn from ``seed + 1``;
    ``data_dir`` (MNIST, Fashion-MNIST only) names a local folder with the files.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if data_dir is not None and name not in ("mnist", "fashion-mnist", "cifar10"):
        raise ValueError(f"data_dir applies to mnist, fashion-mnist and cifar10, not to {name!r}")
    if name == "digits":
        train, test = digits()
        return DatasetSplits(
            name, "classification", train, test, num_classes=10, image_shape=(1, 8, 8)
        )
    if name in ("spiral", "vertical"):
        make = spiral if name == "spiral" else vertical
        train, test = make(80, 3, seed=seed), make(20, 3, seed=seed + 1)
        return DatasetSplits(name, "classification", train, test, num_classes=3)
    if name == "sine":
        x, y = sine(1000)
        rng = np.random.default_rng(seed)
        test = np.zeros(len(x), dtype=bool)
        test[rng.permutation(len(x))[: len(x) // 5]] = True
        return DatasetSplits(name, "regression", (x[~test], y[~test]), (x[test], y[test]))
    if name == "cifar10":
        train, test = cifar10(data_dir, download=download)
        return DatasetSplits(
            name, "classification", train, test, num_classes=10, image_shape=(3, 32, 32)
        )
    train, test = (mnist if name == "mnist" else fashion_mnist)(data_dir, download=download)
    return DatasetSplits(
        name, "classification", train, test, num_classes=10, image_shape=(1, 28, 28)
    )


__all__ = [
    "DATASETS",
    "DataFileError",
    "DatasetError",
    "DatasetSplits",
    "cache_dir",
    "cifar10",
    "digits",
    "fashion_mnist",
    "is_data_file",
    "load_file",
    "load_dataset",
    "mnist",
    "parity",
    "sine",
    "sorted_sequences",
    "spiral",
    "vertical",
]
