"""The losses added for sequence models, CrossEntropyLoss's new options and reduction="none"."""

import warnings

import numpy as np
import pytest

import nnx
from tests.conftest import host_normal

N, C, D = 3, 4, 2
RNG = np.random.default_rng(7)
LABELS = np.array([1, 3, 0])
LABELS_ND = np.array([[1, 3], [0, -100], [2, 2]])  # (N, D) with one ignored position
WEIGHT = np.array([0.5, 2.0, 1.0, 1.5])


def _probs(shape, seed=0, axis=-1):
    e = np.exp(host_normal(shape, seed=seed))
    return e / e.sum(axis=axis, keepdims=True)


class Unreduced(nnx.Module):
    """A loss with reduction="none" as a layer, so gradcheck weights its per-sample outputs."""

    def __init__(self, loss, target):
        self.loss, self.target = loss, target

    def forward(self, x):
        return self.loss(x, self.target)

    def backward(self, g):
        return self.loss.backward(g)


def _cases():
    """name -> (make(reduction), pred, target, torch reference(F, pred, target, reduction))."""
    logp = np.log(_probs((N, C), seed=2))
    probs = 0.05 + 0.9 * RNG.random((N, C))
    return {
        "nll": (
            lambda r: nnx.NLLLoss(reduction=r),
            logp,
            LABELS,
            lambda F, p, t, r: F.nll_loss(p, t, reduction=r),
        ),
        "nll-weight-ignore": (
            lambda r: nnx.NLLLoss(weight=WEIGHT, ignore_index=3, reduction=r),
            logp,
            LABELS,
            lambda F, p, t, r: F.nll_loss(p, t, weight=_t(F, WEIGHT), ignore_index=3, reduction=r),
        ),
        "nll-nd": (
            lambda r: nnx.NLLLoss(reduction=r),
            np.log(_probs((N, C, D), seed=3, axis=1)),
            LABELS_ND,
            lambda F, p, t, r: F.nll_loss(p, t, reduction=r),
        ),
        "bce": (
            lambda r: nnx.BCELoss(reduction=r),
            probs,
            RNG.random((N, C)),
            lambda F, p, t, r: F.binary_cross_entropy(p, t, reduction=r),
        ),
        "bce-weight": (
            lambda r: nnx.BCELoss(weight=WEIGHT, reduction=r),
            probs,
            RNG.random((N, C)),
            lambda F, p, t, r: F.binary_cross_entropy(p, t, weight=_t(F, WEIGHT), reduction=r),
        ),
        "huber": (
            lambda r: nnx.HuberLoss(reduction=r),
            2 * host_normal((N, C), seed=4),
            host_normal((N, C), seed=5),
            lambda F, p, t, r: F.huber_loss(p, t, reduction=r),
        ),
        "huber-0.3": (
            lambda r: nnx.HuberLoss(reduction=r, delta=0.3),
            2 * host_normal((N, C), seed=4),
            host_normal((N, C), seed=5),
            lambda F, p, t, r: F.huber_loss(p, t, reduction=r, delta=0.3),
        ),
        "smoothl1": (
            lambda r: nnx.SmoothL1Loss(reduction=r),
            2 * host_normal((N, C), seed=4),
            host_normal((N, C), seed=5),
            lambda F, p, t, r: F.smooth_l1_loss(p, t, reduction=r),
        ),
        "smoothl1-0.4": (
            lambda r: nnx.SmoothL1Loss(reduction=r, beta=0.4),
            2 * host_normal((N, C), seed=4),
            host_normal((N, C), seed=5),
            lambda F, p, t, r: F.smooth_l1_loss(p, t, reduction=r, beta=0.4),
        ),
        "smoothl1-0": (
            lambda r: nnx.SmoothL1Loss(reduction=r, beta=0.0),
            2 * host_normal((N, C), seed=4),
            host_normal((N, C), seed=5),
            lambda F, p, t, r: F.smooth_l1_loss(p, t, reduction=r, beta=0.0),
        ),
        "kldiv": (
            lambda r: nnx.KLDivLoss(reduction=r),
            logp,
            _probs((N, C), seed=6),
            lambda F, p, t, r: F.kl_div(p, t, reduction=r),
        ),
        "kldiv-zero-target": (
            lambda r: nnx.KLDivLoss(reduction=r),
            logp,
            np.eye(C)[LABELS],
            lambda F, p, t, r: F.kl_div(p, t, reduction=r),
        ),
        "kldiv-log": (
            lambda r: nnx.KLDivLoss(reduction=r, log_target=True),
            logp,
            np.log(_probs((N, C), seed=6)),
            lambda F, p, t, r: F.kl_div(p, t, reduction=r, log_target=True),
        ),
        "ce-weight": (
            lambda r: nnx.CrossEntropyLoss(weight=WEIGHT, reduction=r),
            host_normal((N, C), seed=8),
            LABELS,
            lambda F, p, t, r: F.cross_entropy(p, t, weight=_t(F, WEIGHT), reduction=r),
        ),
        "ce-ignore": (
            lambda r: nnx.CrossEntropyLoss(ignore_index=1, reduction=r),
            host_normal((N, C), seed=8),
            LABELS,
            lambda F, p, t, r: F.cross_entropy(p, t, ignore_index=1, reduction=r),
        ),
        "ce-smooth-ignore-weight": (
            lambda r: nnx.CrossEntropyLoss(
                weight=WEIGHT, ignore_index=3, label_smoothing=0.2, reduction=r
            ),
            host_normal((N, C), seed=8),
            LABELS,
            lambda F, p, t, r: F.cross_entropy(
                p, t, weight=_t(F, WEIGHT), ignore_index=3, label_smoothing=0.2, reduction=r
            ),
        ),
        "ce-smooth-ignore": (
            lambda r: nnx.CrossEntropyLoss(ignore_index=0, label_smoothing=0.1, reduction=r),
            host_normal((N, C), seed=8),
            LABELS,
            lambda F, p, t, r: F.cross_entropy(
                p, t, ignore_index=0, label_smoothing=0.1, reduction=r
            ),
        ),
        "ce-nd-smooth": (
            lambda r: nnx.CrossEntropyLoss(label_smoothing=0.3, reduction=r),
            host_normal((N, C, D), seed=9),
            LABELS_ND,
            lambda F, p, t, r: F.cross_entropy(p, t, label_smoothing=0.3, reduction=r),
        ),
        "ce-nd-weight": (
            lambda r: nnx.CrossEntropyLoss(weight=WEIGHT, reduction=r),
            host_normal((N, C, D), seed=9),
            LABELS_ND,
            lambda F, p, t, r: F.cross_entropy(p, t, weight=_t(F, WEIGHT), reduction=r),
        ),
        "ce-soft-smooth-weight": (
            lambda r: nnx.CrossEntropyLoss(weight=WEIGHT, label_smoothing=0.25, reduction=r),
            host_normal((N, C), seed=8),
            _probs((N, C), seed=10),
            lambda F, p, t, r: F.cross_entropy(
                p, t, weight=_t(F, WEIGHT), label_smoothing=0.25, reduction=r
            ),
        ),
        "ce-soft-nd": (
            lambda r: nnx.CrossEntropyLoss(reduction=r),
            host_normal((N, C, D), seed=9),
            _probs((N, C, D), seed=11, axis=1),
            lambda F, p, t, r: F.cross_entropy(p, t, reduction=r),
        ),
    }


def _t(F, a):
    import torch

    return torch.tensor(a)


CASES = _cases()


@pytest.mark.torch
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", CASES)
def test_matches_pytorch(name, reduction):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    make, pred, target, reference = CASES[name]
    reductions = ["batchmean", "mean", "sum", "none"] if name.startswith("kldiv") else None
    for r in reductions or [reduction]:
        loss = make(r)
        value = nnx.to_numpy(loss(pred, target))
        g = host_normal(value.shape, seed=12) if r == "none" else None
        grad = loss.backward(g)
        tp = torch.tensor(pred, requires_grad=True)
        with warnings.catch_warnings():  # kl_div's "mean" warns that it is not "batchmean"
            warnings.simplefilter("ignore", UserWarning)
            ref = reference(F, tp, torch.tensor(target), r)
        ref.backward(None if r != "none" else torch.tensor(g))
        np.testing.assert_allclose(value, ref.detach().numpy(), rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(grad, tp.grad.numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize(
    "name",
    [
        "nll-weight-ignore",
        "nll-nd",
        "bce-weight",
        "huber-0.3",
        "smoothl1-0.4",
        "kldiv",
        "kldiv-log",
        "ce-smooth-ignore-weight",
        "ce-nd-smooth",
        "ce-soft-smooth-weight",
    ],
)
def test_gradients_match_finite_differences(backend, name, reduction):
    make, pred, target, _ = CASES[name]
    target = backend.asarray(target)
    x = backend.asarray(pred)
    if reduction == "none":
        result = nnx.gradcheck(Unreduced(make("none"), target), x)
    else:
        result = nnx.gradcheck(make(reduction), x, target)
    assert result.ok, str(result)


def test_kldiv_batchmean_gradient(backend):
    _, pred, target, _ = CASES["kldiv"]
    result = nnx.gradcheck(
        nnx.KLDivLoss("batchmean"), backend.asarray(pred), backend.asarray(target)
    )
    assert result.ok, str(result)


def test_all_ignored_batch_gives_zero_not_nan(backend):
    loss = nnx.CrossEntropyLoss(ignore_index=-1, label_smoothing=0.1)
    logits = backend.asarray(host_normal((2, 3)), dtype="float32")
    value = float(nnx.to_numpy(loss(logits, backend.asarray(np.array([-1, -1])))))
    assert value == 0.0
    assert np.all(nnx.to_numpy(loss.backward()) == 0.0)


def test_minus_inf_logits_where_the_target_is_zero():
    loss = nnx.CrossEntropyLoss()
    logits = np.array([[0.0, -np.inf, 1.0]])
    value = float(loss(logits, np.array([2])))
    assert value == pytest.approx(np.log1p(np.exp(-1.0)))
    assert np.all(np.isfinite(loss.backward()))


def test_weight_moves_to_the_logits_backend_and_dtype(backend):
    loss = nnx.CrossEntropyLoss(weight=WEIGHT)
    logits = backend.asarray(host_normal((N, C)), dtype="float32")
    value = loss(logits, backend.asarray(LABELS))
    assert value.dtype == backend.xp.float32


def test_bad_arguments():
    with pytest.raises(ValueError, match="label_smoothing must be a finite number in"):
        nnx.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match="weight must be a 1-D array with one entry per class"):
        nnx.CrossEntropyLoss(weight=np.ones((2, 2)))
    with pytest.raises(ValueError, match="ignore_index must be an integer, got 0.5"):
        nnx.NLLLoss(ignore_index=0.5)
    with pytest.raises(ValueError, match="weight has 3 entries but the input has 4 classes"):
        nnx.CrossEntropyLoss(weight=np.ones(3))(np.ones((N, C)), LABELS)
    with pytest.raises(ValueError, match=r"integer class labels must have shape \(3, 2\)"):
        nnx.CrossEntropyLoss()(np.ones((N, C, D)), LABELS)
    with pytest.raises(
        ValueError, match=r"class labels must lie in \[0, 3\] .* got labels from 0 to 7"
    ):
        nnx.NLLLoss()(np.ones((N, C)), np.array([0, 7, -100]))
    with pytest.raises(TypeError, match="NLLLoss: target must hold integer class labels"):
        nnx.NLLLoss()(np.ones((N, C)), np.ones((N, C)))
    with pytest.raises(ValueError, match=r"input must have shape \(N, C\)"):
        nnx.NLLLoss()(np.ones(C), np.array(1))
    with pytest.raises(ValueError, match="delta must be > 0, got 0"):
        nnx.HuberLoss(delta=0)
    with pytest.raises(ValueError, match="beta must be a finite number >= 0, got -1"):
        nnx.SmoothL1Loss(beta=-1)
    with pytest.raises(
        ValueError, match="reduction must be one of 'mean', 'sum', 'none', got 'batchmean'"
    ):
        nnx.MSELoss(reduction="batchmean")
    loss = nnx.HuberLoss(reduction="none")
    loss(np.ones((2, 3)), np.zeros((2, 3)))
    with pytest.raises(
        ValueError, match=r"gradient has shape \(3,\) but the forward output had shape \(2, 3\)"
    ):
        loss.backward(np.ones(3))
