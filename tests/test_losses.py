import numpy as np
import pytest

import nnx
from tests.conftest import host_normal

N, C = 6, 4


def _labels(seed=0):
    return np.random.default_rng(seed).integers(0, C, size=N)


def _soft_targets(seed=0, row_sum=1.0):
    t = np.random.default_rng(seed).random((N, C))
    return row_sum * t / t.sum(axis=1, keepdims=True)


CASES = {
    "mse": (nnx.MSELoss, lambda: host_normal((N, 3), seed=5)),
    "l1": (nnx.L1Loss, lambda: host_normal((N, 3), seed=5)),
    "bce": (nnx.BCEWithLogitsLoss, lambda: np.random.default_rng(5).random((N, 3))),
    "ce-labels": (nnx.CrossEntropyLoss, _labels),
    "ce-onehot": (nnx.CrossEntropyLoss, lambda: np.eye(C)[_labels()]),
    "ce-soft": (nnx.CrossEntropyLoss, _soft_targets),
    "ce-unnormalised": (nnx.CrossEntropyLoss, lambda: _soft_targets(row_sum=0.7)),
}


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", CASES)
def test_loss_gradients_match_finite_differences(backend, name, reduction):
    make, target = CASES[name]
    t = target()
    pred = host_normal(t.shape if t.ndim == 2 else (N, C), seed=1, away_from_zero=0.05)
    if name == "l1":  # keep pred - target away from the kink at 0
        pred = t + np.sign(pred) * (np.abs(pred) + 0.05)
    result = nnx.gradcheck(make(reduction=reduction), backend.asarray(pred), backend.asarray(t))
    assert result.ok, str(result)


def test_hand_computed_values():
    pred, target = np.array([[1.0, -2.0]]), np.array([[0.0, 0.0]])
    assert float(nnx.MSELoss()(pred, target)) == pytest.approx(2.5)
    assert float(nnx.MSELoss(reduction="sum")(pred, target)) == pytest.approx(5.0)
    assert float(nnx.L1Loss()(pred, target)) == pytest.approx(1.5)
    bce = nnx.BCEWithLogitsLoss()
    assert float(bce(np.array([0.0]), np.array([1.0]))) == pytest.approx(np.log(2))
    ce = nnx.CrossEntropyLoss()
    logits = np.array([[np.log(1.0), np.log(3.0)]])  # softmax = [0.25, 0.75]
    assert float(ce(logits, np.array([1]))) == pytest.approx(-np.log(0.75))
    np.testing.assert_allclose(ce.backward(), [[0.25, -0.25]])


def test_losses_return_0d_arrays_of_the_input_dtype(backend):
    pred = backend.asarray(host_normal((N, C)), dtype="float32")
    for loss, target in [
        (nnx.MSELoss(), pred),
        (nnx.L1Loss(), pred),
        (nnx.BCEWithLogitsLoss(), backend.asarray(np.ones((N, C)), dtype="float32")),
        (nnx.CrossEntropyLoss(), backend.asarray(_labels())),
    ]:
        value = loss(pred, target)
        assert value.ndim == 0 and value.dtype == backend.xp.float32
        assert loss.backward().dtype == backend.xp.float32


@pytest.mark.parametrize("loss", [nnx.CrossEntropyLoss(), nnx.BCEWithLogitsLoss()])
def test_huge_logits_stay_finite_in_float32(backend, loss):
    logits = backend.asarray(np.array([[1e4, -1e4, 0.0, 5e3]] * 2), dtype="float32")
    if isinstance(loss, nnx.CrossEntropyLoss):
        target = backend.asarray(np.array([1, 1]))  # the worst possible label: loss 2e4
        expected = [2e4, 2e4]
    else:
        target = backend.asarray(np.array([[0.0, 1.0, 1.0, 0.0]] * 2), dtype="float32")
        expected = None
    value = float(nnx.to_numpy(loss(logits, target)))
    grad = nnx.to_numpy(loss.backward())
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    if expected:
        assert value == pytest.approx(np.mean(expected))
    else:
        assert value == pytest.approx((1e4 + 1e4 + np.log(2) + 5e3) / 4, rel=1e-6)


def test_grad_out_scales_backward():
    loss = nnx.MSELoss()
    loss(np.array([1.0, 2.0]), np.array([0.0, 0.0]))
    np.testing.assert_allclose(loss.backward(3.0), 3.0 * loss.backward())


def test_bad_targets_are_clear_errors(backend):
    pred = backend.asarray(host_normal((N, C)), dtype="float32")
    ints = backend.asarray(np.ones((N, C), dtype=np.int64))
    with pytest.raises(
        ValueError, match=r"target shape \(6,\) does not match prediction shape \(6, 4\)"
    ):
        nnx.MSELoss()(pred, backend.asarray(np.ones(N), dtype="float32"))
    with pytest.raises(TypeError, match="target must be a floating-point array, got dtype int64"):
        nnx.L1Loss()(pred, ints)
    with pytest.raises(
        TypeError, match="target dtype float64 does not match the prediction' dtype float32"
    ):
        nnx.BCEWithLogitsLoss()(pred, backend.asarray(np.ones((N, C)), dtype="float64"))
    ce = nnx.CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"integer class labels must have shape \(6,\)"):
        ce(pred, backend.asarray(np.zeros((N, 1), dtype=np.int64)))
    with pytest.raises(
        ValueError, match=r"probability targets must have the logits' shape \(6, 4\)"
    ):
        ce(pred, backend.asarray(np.zeros(N), dtype="float32"))
    with pytest.raises(
        ValueError,
        match=r"class labels must lie in \[0, 3\] for 4 classes .*, got labels from 0 to 4",
    ):
        ce(pred, backend.asarray(np.array([0, 1, 2, 3, 4, 0])))
    with pytest.raises(ValueError, match=r"integer class labels must have shape \(6, 1\)"):
        ce(backend.asarray(np.ones((N, C, 1)), dtype="float32"), backend.asarray(_labels()))
    with pytest.raises(TypeError, match="prediction must be a floating-point array"):
        ce(ints, backend.asarray(_labels()))
    with pytest.raises(ValueError, match="is empty"):
        nnx.MSELoss()(
            backend.asarray(np.ones((0, 3)), dtype="float32"),
            backend.asarray(np.ones((0, 3)), dtype="float32"),
        )
    with pytest.raises(nnx.BackwardBeforeForwardError):
        nnx.CrossEntropyLoss().backward()


def test_targets_on_another_device_are_rejected():
    pred = nnx.get_backend("strict:device1").asarray(np.ones((2, 3)), dtype="float32")
    other = nnx.get_backend("strict")
    with pytest.raises(ValueError, match="target is on device .* but the prediction are on"):
        nnx.MSELoss()(pred, other.asarray(np.ones((2, 3)), dtype="float32"))
    with pytest.raises(ValueError, match="target is on device .* but the logits are on"):
        nnx.CrossEntropyLoss()(pred, other.asarray(np.array([0, 1])))


def test_bad_reduction():
    with pytest.raises(
        ValueError, match="reduction must be one of 'mean', 'sum', 'none', got 'avg'"
    ):
        nnx.CrossEntropyLoss(reduction="avg")


@pytest.mark.torch
@pytest.mark.parametrize("name", ["mse", "l1", "bce", "ce-labels", "ce-soft"])
def test_matches_pytorch(name):
    torch = pytest.importorskip("torch")
    fn = torch.nn.functional
    make, target = CASES[name]
    t = target()
    pred = host_normal(t.shape if t.ndim == 2 else (N, C), seed=1, away_from_zero=0.05)
    loss = make()
    value = float(loss(pred, t))
    grad = loss.backward()
    tp = torch.tensor(pred, requires_grad=True)
    tt = torch.tensor(t)
    reference = {
        "mse": fn.mse_loss,
        "l1": fn.l1_loss,
        "bce": fn.binary_cross_entropy_with_logits,
        "ce-labels": fn.cross_entropy,
        "ce-soft": fn.cross_entropy,
    }[name](tp, tt)
    reference.backward()
    assert value == pytest.approx(reference.item(), rel=1e-12)
    np.testing.assert_allclose(grad, tp.grad.numpy(), rtol=1e-10, atol=1e-14)


MASKED = np.array([[0.5, -np.inf, 2.0, -1.0], [-np.inf, 1.0, -np.inf, 0.25]])
HUGE32 = np.array([[3e38, -3e38, 0.0, 1e38], [-3.4e38, 3.4e38, 3.4e38, -1.0]])


@pytest.mark.torch
@pytest.mark.parametrize(
    "logits, labels, dtype",
    [(MASKED, [0, 3], "float64"), (MASKED, [2, 1], "float32"), (HUGE32, [3, 1], "float32")],
    ids=["masked-f64", "masked-f32", "near-max-f32"],
)
def test_cross_entropy_masked_and_extreme_logits_match_pytorch(backend, logits, labels, dtype):
    """-inf logits (masked classes) and float32 logits near the largest float give PyTorch's
    finite loss and gradient, not NaN; the same for one-hot targets."""
    torch = pytest.importorskip("torch")
    tp = torch.tensor(logits, dtype=getattr(torch, dtype), requires_grad=True)
    reference = torch.nn.functional.cross_entropy(tp, torch.tensor(labels))
    reference.backward()
    assert np.isfinite(reference.item())
    one_hot = np.eye(4)[labels]
    for target in (backend.asarray(np.array(labels)), backend.asarray(one_hot, dtype=dtype)):
        loss = nnx.CrossEntropyLoss()
        value = float(nnx.to_numpy(loss(backend.asarray(logits, dtype=dtype), target)))
        grad = nnx.to_numpy(loss.backward())
        assert value == pytest.approx(reference.item(), rel=1e-6)
        np.testing.assert_allclose(grad, tp.grad.numpy(), rtol=1e-6, atol=1e-7)


def test_cross_entropy_soft_targets_ignore_masked_classes():
    """A soft target of 0 on a masked class adds nothing (the limit of t log p as t -> 0)."""
    logits = np.array([[0.5, -np.inf, 2.0]])
    soft = np.array([[0.25, 0.0, 0.75]])
    loss = nnx.CrossEntropyLoss()
    value = float(loss(logits, soft))
    log_p = logits[0, [0, 2]] - np.log(np.exp(logits[0, [0, 2]]).sum())
    assert value == pytest.approx(-(0.25 * log_p[0] + 0.75 * log_p[1]), rel=1e-12)
    assert np.all(np.isfinite(loss.backward()))
    # a masked target class has probability 0: the loss is infinite, as in PyTorch
    assert float(loss(logits, np.array([1]))) == np.inf


@pytest.mark.torch
@pytest.mark.parametrize("backend_spec", ["numpy", "strict:device1", "jax"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_and_class_losses_match_torch_on_every_backend(backend_spec, reduction):
    torch = pytest.importorskip("torch")
    from tests.layers.torch_oracle import compare_loss

    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    labels = np.array([0, 2, 1, 1])
    for name in ("MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss"):
        compare_loss(
            getattr(nnx, name)(reduction=reduction),
            getattr(torch.nn, name)(reduction=reduction),
            [pred, target],
            backend=backend_spec,
        )
    compare_loss(
        nnx.CrossEntropyLoss(reduction=reduction, label_smoothing=0.1),
        torch.nn.CrossEntropyLoss(reduction=reduction, label_smoothing=0.1),
        [pred, labels],
        backend=backend_spec,
    )
