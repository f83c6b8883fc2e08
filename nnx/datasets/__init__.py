"""Data sets: the scikit-learn digits (the default), the book's synthetic sets, MNIST,
Fashion-MNIST and CIFAR-10, generated sequence tasks, and character-level text for language
models (:class:`CharacterText`). :func:`load_dataset` returns the first five by name as host
NumPy arrays.

>>> data = load_dataset("spiral", seed=0)
>>> data.task, data.num_classes, data.train[0].shape, data.test[0].shape
('classification', 3, (240, 2), (60, 2))
"""

from __future__ import annotations

import os

import numpy as np

from .cifar import cifar10
from .digits import digits
from .errors import DataFileError, DatasetError
from .files import is_data_file, load_file
from .idx import cache_dir, fashion_mnist, mnist
from .sequences import parity, sorted_sequences
from .splits import DatasetSplits
from .synthetic import sine, spiral, vertical
from .text import CharacterText

DATASETS = ("digits", "spiral", "vertical", "sine", "mnist", "fashion-mnist", "cifar10")


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
    "CharacterText",
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
