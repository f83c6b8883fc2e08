"""Metrics on every backend, against NumPy by hand."""

import numpy as np
import pytest

from nnx.metrics import Accuracy, MeanAbsoluteError, MeanSquaredError, TopKAccuracy, get_metric


def _logits():
    return np.array([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0], [1.0, 2.0, 4.0], [2.0, 3.0, 1.0]])


def test_multiclass_accuracy_over_batches(backend):
    acc = Accuracy()
    z, y = _logits(), np.array([0, 1, 1, 0])
    acc.update(backend.asarray(z[:3]), backend.asarray(y[:3]))
    acc.update(backend.asarray(z[3:]), backend.asarray(y[3:]))
    assert acc.compute() == 0.5 and acc.count == 4
    assert backend.owns(acc.total)  # the running sum stays on the device
    one_hot = Accuracy()
    one_hot.update(backend.asarray(z), backend.asarray(np.eye(3)[y]))
    assert one_hot.compute() == 0.5


def test_binary_accuracy_thresholds_logits_at_zero(backend):
    acc = Accuracy()
    acc.update(
        backend.asarray([[2.0], [-1.0], [0.5], [-3.0]]),
        backend.asarray([[1.0], [1.0], [0.0], [0.0]]),
    )
    assert acc.compute() == 0.5
    integer = Accuracy()  # 0/1 integer targets (array-api-strict refused `int > 0.5`)
    integer.update(backend.asarray([2.0, -1.0, 0.5, -3.0]), backend.asarray([1, 1, 0, 0]))
    assert integer.compute() == 0.5


@pytest.mark.parametrize("k, expected", [(1, 0.5), (2, 0.75), (3, 1.0)])
def test_top_k(backend, k, expected):
    m = TopKAccuracy(k)
    m.update(backend.asarray(_logits()), backend.asarray(np.array([0, 1, 1, 2])))
    # ranks of the true class: 0, 0, 1, 2
    assert m.compute() == expected


def test_regression_metrics(backend):
    pred, target = np.array([[1.0, 2.0], [3.0, 5.0]]), np.array([[0.0, 2.0], [1.0, 5.0]])
    mae, mse = MeanAbsoluteError(), MeanSquaredError()
    for m in (mae, mse):
        m.update(backend.asarray(pred), backend.asarray(target))
    assert mae.compute() == pytest.approx(0.75) and mse.compute() == pytest.approx(1.25)


def test_get_metric():
    assert isinstance(get_metric("accuracy"), Accuracy)
    assert get_metric("top5_accuracy").k == 5
    with pytest.raises(ValueError, match="unknown metric 'f2'; choose from accuracy, .*auroc"):
        get_metric("f2")
    with pytest.raises(ValueError, match="positive integer"):
        TopKAccuracy(0)
