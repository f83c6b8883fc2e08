"""Small generated sequence-classification tasks, seeded: token ids ``(n, length)`` int64 and
int64 labels, for recurrent and attention models (``Embedding -> LSTM/GRU -> ... -> Linear``).

- :func:`sorted_sequences`: is the sequence non-decreasing? Half the samples are sorted; half
  of the others are sorted ones with two neighbours swapped (one wrong step, so a model has to
  look at every step, not at the overall trend).
- :func:`parity`: is the number of ones in a bit sequence odd?

The labels are computed from the finished sequences, so they are always right.
"""

from __future__ import annotations

import numpy as np

from ..core.checks import positive_int


def _check(samples: int, length: int, who: str) -> tuple[int, int]:
    n = positive_int(samples, "samples", who)
    t = positive_int(length, "length", who)
    if t < 2:
        raise ValueError(f"{who}: length must be >= 2, got {length}")
    return n, t


def sorted_sequences(
    samples: int = 1000, length: int = 8, vocab_size: int = 10, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``x`` of shape ``(samples, length)``: ids in ``[0, vocab_size)``; ``y = 1`` where
    ``x[i]`` is non-decreasing, else 0.

    Half the sequences are drawn sorted (sorted uniform draws), a quarter are sorted ones with
    one pair of unequal neighbours swapped, and a quarter are uniform draws (almost never
    sorted); about half the labels are 1.

    >>> x, y = sorted_sequences(6, length=5, seed=0)
    >>> x.shape, x.dtype, y.dtype
    ((6, 5), dtype('int64'), dtype('int64'))
    >>> bool(((x[:, 1:] >= x[:, :-1]).all(axis=1) == (y == 1)).all())
    True
    """
    n, t = _check(samples, length, "sorted_sequences")
    v = positive_int(vocab_size, "vocab_size", "sorted_sequences")
    if v < 2:
        raise ValueError(f"sorted_sequences: vocab_size must be >= 2, got {vocab_size}")
    rng = np.random.default_rng(seed)
    x = np.sort(rng.integers(0, v, size=(n, t)), axis=1)
    kind = rng.integers(0, 4, size=n)  # 0, 1: sorted; 2: one swap; 3: uniform
    for i in np.flatnonzero(kind == 2):
        steps = np.flatnonzero(x[i, 1:] != x[i, :-1])  # swapping equal neighbours changes nothing
        if steps.size:
            j = steps[rng.integers(0, steps.size)]
            x[i, j], x[i, j + 1] = x[i, j + 1], x[i, j]
    uniform = kind == 3
    x[uniform] = rng.integers(0, v, size=(int(uniform.sum()), t))
    y = np.all(x[:, 1:] >= x[:, :-1], axis=1).astype(np.int64)
    return x.astype(np.int64), y


def parity(samples: int = 1000, length: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``x`` of shape ``(samples, length)``: uniform random bits (ids 0 and 1); ``y`` is their
    sum modulo 2 (1 for an odd number of ones).

    >>> x, y = parity(4, length=6, seed=0)
    >>> x.shape, bool((x.sum(axis=1) % 2 == y).all())
    ((4, 6), True)
    """
    n, t = _check(samples, length, "parity")
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, size=(n, t)).astype(np.int64)
    return x, (x.sum(axis=1) % 2).astype(np.int64)
