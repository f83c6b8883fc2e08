"""Integer labels of every dtype (uint8: MNIST's and the NNFS spiral data's) on every backend:
comparisons with a negative sentinel such as ``ignore_index=-100`` never overflow, and class
indices past the labels' dtype (300 classes, uint8 labels) still compare."""

import numpy as np
import pytest

import nnx
from nnx.metrics import Accuracy, BitsPerCharacter, TopKAccuracy

INT_DTYPES = ["uint8", "int8", "int16", "int32", "int64"]


@pytest.mark.parametrize("dtype", INT_DTYPES)
@pytest.mark.parametrize("classes", [3, 300])
@pytest.mark.parametrize("make", [nnx.CrossEntropyLoss, nnx.NLLLoss])
def test_class_losses_take_every_integer_label_dtype(backend, dtype, classes, make):
    labels = np.array([0, 2, 1, 2, 0, 1]) + (100 if classes == 300 and dtype != "int8" else 0)
    logits = np.random.default_rng(0).standard_normal((6, classes)).astype(np.float32)
    reference = make()
    want = float(reference(logits, labels.astype(np.int64)))
    loss = make()
    got = loss(backend.asarray(logits), backend.asarray(labels.astype(dtype)))
    assert float(nnx.backend.to_numpy(got)) == pytest.approx(want, rel=1e-5)
    grad = nnx.backend.to_numpy(loss.backward())
    np.testing.assert_allclose(grad, reference.backward(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64"])
def test_a_negative_ignore_index_is_still_ignored_in_signed_labels(backend, dtype):
    logits = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    labels = np.array([0, -100, 2, -100])
    want = float(nnx.CrossEntropyLoss()(logits[[0, 2]], labels[[0, 2]]))
    got = nnx.CrossEntropyLoss()(backend.asarray(logits), backend.asarray(labels.astype(dtype)))
    assert float(nnx.backend.to_numpy(got)) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_metrics_take_every_integer_label_dtype(backend, dtype):
    logits = np.random.default_rng(2).standard_normal((6, 300)).astype(np.float32)
    labels = np.array([5, 100, 7, 120, 0, 99])
    for make in (Accuracy, lambda: TopKAccuracy(5)):
        want, got = make(), make()
        want.update(logits, labels)
        got.update(backend.asarray(logits), backend.asarray(labels.astype(dtype)))
        assert got.compute() == pytest.approx(want.compute())
    seq = np.random.default_rng(3).standard_normal((2, 300, 3)).astype(np.float32)
    want, got = BitsPerCharacter(), BitsPerCharacter()
    want.update(seq, labels.reshape(2, 3))
    got.update(backend.asarray(seq), backend.asarray(labels.reshape(2, 3).astype(dtype)))
    assert got.compute() == pytest.approx(want.compute(), rel=1e-5)
