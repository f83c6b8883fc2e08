"""The 8x8 handwritten digits that ship with scikit-learn (1797 images, 10 classes)."""

from __future__ import annotations

import numpy as np

from .errors import DatasetError

TEST_FRACTION = 0.2
_SPLIT_SEED = 20240601  # a fixed test split, the same for every run and every --seed


def digits() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((x_train, y_train), (x_test, y_test))``: pixels scaled to [0, 1] as float32 ``(n, 64)``,
    int64 labels 0..9. The test split (20%, stratified by class) is fixed, independent of any seed.

    Needs scikit-learn (``pip install 'nnx-trainer[data]'``), which carries the images in its
    wheel: nothing is downloaded.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetError(
            "the 'digits' data set needs scikit-learn, which is not installed; "
            "install it with: pip install 'nnx-trainer[data]'  (or pip install scikit-learn)"
        ) from None
    x, y = load_digits(return_X_y=True)
    x = (np.asarray(x, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(y, dtype=np.int64)
    rng = np.random.default_rng(_SPLIT_SEED)
    test = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        test[rng.permutation(rows)[: round(TEST_FRACTION * len(rows))]] = True
    return (x[~test], y[~test]), (x[test], y[test])
