"""Synthetic data sets of the "Neural Networks from Scratch" book, generated from a seed.

Each function returns host NumPy arrays ``(x, y)``: float32 features and int64 class labels
(or float32 regression targets for :func:`sine`).
"""

from __future__ import annotations

import numpy as np

from ..core.checks import positive_int


def spiral(
    samples_per_class: int = 100, classes: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved spiral arms, one per class: ``x`` of shape ``(n, 2)`` float32, ``y`` int64 labels.

    Class ``k`` has radius ``r`` evenly spaced in [0, 1] and angle ``2.5 * t`` with ``t`` evenly
    spaced in ``[4k, 4(k + 1)]`` plus Gaussian noise of std 0.2.

    >>> x, y = spiral(50, 3, seed=0)
    >>> x.shape, x.dtype, sorted(set(y.tolist()))
    ((150, 2), dtype('float32'), [0, 1, 2])
    """
    n = positive_int(samples_per_class, "samples_per_class", "spiral")
    k = positive_int(classes, "classes", "spiral")
    rng = np.random.default_rng(seed)
    x = np.zeros((n * k, 2))
    y = np.zeros(n * k, dtype=np.int64)
    for label in range(k):
        rows = slice(n * label, n * (label + 1))
        radius = np.linspace(0.0, 1.0, n)
        angle = np.linspace(label * 4.0, (label + 1) * 4.0, n) + rng.standard_normal(n) * 0.2
        x[rows] = np.column_stack([radius * np.sin(angle * 2.5), radius * np.cos(angle * 2.5)])
        y[rows] = label
    return x.astype(np.float32), y


def vertical(
    samples_per_class: int = 100, classes: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Vertical clusters: class ``k`` is centred at ``(k / 3, 0.5)`` with Gaussian noise of std 0.1.

    >>> x, y = vertical(20, 3, seed=0)
    >>> x.shape, y.shape, int(y.max())
    ((60, 2), (60,), 2)
    """
    n = positive_int(samples_per_class, "samples_per_class", "vertical")
    k = positive_int(classes, "classes", "vertical")
    rng = np.random.default_rng(seed)
    x = np.zeros((n * k, 2))
    y = np.repeat(np.arange(k, dtype=np.int64), n)
    for label in range(k):
        rows = slice(n * label, n * (label + 1))
        x[rows, 0] = rng.standard_normal(n) * 0.1 + label / 3.0
        x[rows, 1] = rng.standard_normal(n) * 0.1 + 0.5
    return x.astype(np.float32), y


def sine(samples: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Regression data ``y = sin(2 pi x)`` for ``x`` evenly spaced in [0, 1): both ``(n, 1)`` float32.

    ``seed`` is accepted for a uniform signature; the data set is deterministic.

    >>> x, y = sine(4)
    >>> x.ravel().tolist(), [round(v, 3) for v in y.ravel().tolist()]
    ([0.0, 0.25, 0.5, 0.75], [0.0, 1.0, 0.0, -1.0])
    """
    n = positive_int(samples, "samples", "sine")
    x = (np.arange(n, dtype=np.float64) / n).reshape(-1, 1)
    return x.astype(np.float32), np.sin(2.0 * np.pi * x).astype(np.float32)
