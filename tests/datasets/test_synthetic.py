"""The book's synthetic data sets, digits, and load_dataset."""

import sys

import numpy as np
import pytest

from nnx.datasets import DatasetError, load_dataset, sine, spiral, vertical


@pytest.mark.parametrize("make", [spiral, vertical])
def test_classification_sets_are_seeded(make):
    x, y = make(30, 4, seed=1)
    assert x.shape == (120, 2) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [30, 30, 30, 30]
    np.testing.assert_array_equal(make(30, 4, seed=1)[0], x)
    assert not np.array_equal(make(30, 4, seed=2)[0], x)


def test_vertical_clusters_sit_at_k_over_3():
    x, y = vertical(2000, 3, seed=0)
    for k in range(3):
        np.testing.assert_allclose(x[y == k].mean(axis=0), [k / 3, 0.5], atol=0.01)


def test_sine():
    x, y = sine(100)
    assert x.shape == y.shape == (100, 1)
    np.testing.assert_allclose(y, np.sin(2 * np.pi * x), atol=1e-6)


@pytest.mark.parametrize("name", ["spiral", "vertical", "sine"])
def test_load_dataset_splits(name):
    data = load_dataset(name, seed=3)
    assert len(data.train[0]) == len(data.train[1]) and len(data.test[0]) == len(data.test[1])
    assert data.num_features == data.train[0].shape[1]
    assert data.task == ("regression" if name == "sine" else "classification")


def test_load_dataset_errors():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; choose one of digits"):
        load_dataset("cifar")
    with pytest.raises(ValueError, match="data_dir applies to mnist"):
        load_dataset("spiral", data_dir="/tmp")


def test_digits():
    pytest.importorskip("sklearn")
    data = load_dataset("digits")
    (x, _), (xt, yt) = data.train, data.test
    assert len(x) + len(xt) == 1797 and x.shape[1] == 64 and data.num_classes == 10
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert abs(len(xt) / 1797 - 0.2) < 0.01 and set(yt.tolist()) == set(range(10))
    np.testing.assert_array_equal(load_dataset("digits", seed=99).test[1], yt)  # fixed split


def test_digits_without_scikit_learn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DatasetError, match=r"pip install 'nnx-trainer\[data\]'"):
        load_dataset("digits")
