"""Synthetic data sets of the "Neural Networks from Scratch" book, generated from a seed."""

from __future__ import annotations

import numpy as np

from ..checks import positive_int


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
