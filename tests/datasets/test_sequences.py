"""The generated sequence-classification tasks: seeded, right labels, balanced, bad input."""

import numpy as np
import pytest

from nnx.datasets import parity, sorted_sequences


def test_sorted_sequences_labels_are_the_truth_and_seeded():
    x, y = sorted_sequences(2000, length=7, vocab_size=5, seed=3)
    assert x.shape == (2000, 7) and x.dtype == np.int64 and y.dtype == np.int64
    assert x.min() >= 0 and x.max() <= 4
    np.testing.assert_array_equal(y, np.all(np.diff(x, axis=1) >= 0, axis=1))
    assert 0.4 < y.mean() < 0.65  # about half sorted
    np.testing.assert_array_equal(sorted_sequences(2000, 7, 5, seed=3)[0], x)
    assert not np.array_equal(sorted_sequences(2000, 7, 5, seed=4)[0], x)


def test_sorted_sequences_has_near_misses():
    # unsorted sequences with exactly one descending step: a model must look at every step
    x, y = sorted_sequences(2000, length=8, seed=0)
    descents = np.sum(np.diff(x, axis=1) < 0, axis=1)
    assert np.sum((y == 0) & (descents == 1)) > 300


def test_parity_labels():
    x, y = parity(500, length=9, seed=1)
    assert x.shape == (500, 9) and set(np.unique(x).tolist()) == {0, 1}
    np.testing.assert_array_equal(y, x.sum(axis=1) % 2)
    np.testing.assert_array_equal(parity(500, 9, seed=1)[0], x)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: sorted_sequences(0), "samples"),
        (lambda: sorted_sequences(10, length=1), "length must be >= 2"),
        (lambda: sorted_sequences(10, vocab_size=1), "vocab_size must be >= 2"),
        (lambda: parity(10, length=0), "length"),
    ],
)
def test_bad_arguments_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()
