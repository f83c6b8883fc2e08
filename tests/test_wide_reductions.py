"""16-bit losses and metrics: sums, counts and means accumulate in at least float32.

float16's largest value is 65504, so a float16 mean over 70,000 labels used to divide by inf
(loss 0, zero gradients) or take inf / inf (NaN): a float16 language model with more than 65k
tokens per batch silently stopped learning.
"""

import numpy as np
import pytest

import nnx
from nnx import losses as L
from nnx.metrics import (
    Accuracy,
    BitsPerCharacter,
    MeanAbsoluteError,
    MeanSquaredError,
    TopKAccuracy,
)

RNG = np.random.default_rng(3)
N = 70_000  # more labels than float16 can count


def _to(backend, a, dtype=None):
    return backend.asarray(a, dtype=dtype or a.dtype.name)


def _float16(backend):
    if not hasattr(backend.xp, "float16"):
        pytest.skip(f"{backend.name} has no float16")
    return "float16"


def _log_probs(shape, axis=1):
    z = RNG.standard_normal(shape)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _probs(shape, axis=1):
    return np.exp(_log_probs(shape, axis))


@pytest.mark.parametrize("shape", [(N, 2), (32, 4, 4096)], ids=["70000x2", "32x4x4096"])
@pytest.mark.parametrize("make", [nnx.CrossEntropyLoss, nnx.NLLLoss])
def test_float16_class_losses_match_float64_past_65504_labels(backend, shape, make):
    f16 = _float16(backend)
    pred = _log_probs(shape) if make is nnx.NLLLoss else RNG.standard_normal(shape)
    labels = RNG.integers(0, shape[1], (shape[0], *shape[2:]))
    reference = make()
    want = float(reference(pred, labels))
    want_grad = reference.backward()
    loss = make()
    got = loss(_to(backend, pred, f16), _to(backend, labels, "int64"))
    grad = nnx.backend.to_numpy(loss.backward())
    assert "float16" in str(got.dtype) and "float16" in str(grad.dtype)
    assert float(nnx.backend.to_numpy(got)) == pytest.approx(want, rel=2e-3, abs=2e-3)
    scale = np.abs(want_grad).max()
    assert np.abs(grad.astype(np.float64) - want_grad).max() <= 1e-2 * scale


def _loss_cases():
    """Every loss in nnx.losses -> (loss, pred, target) with N*2 elements."""
    shape = (N, 2)
    normal = RNG.standard_normal(shape)
    unit = RNG.uniform(0.05, 0.95, shape)
    labels = RNG.integers(0, 2, N)
    return {
        L.MSELoss: (L.MSELoss(), normal, RNG.standard_normal(shape)),
        L.L1Loss: (L.L1Loss(), normal, RNG.standard_normal(shape)),
        L.HuberLoss: (L.HuberLoss(), normal, RNG.standard_normal(shape)),
        L.SmoothL1Loss: (L.SmoothL1Loss(), normal, RNG.standard_normal(shape)),
        L.BCEWithLogitsLoss: (L.BCEWithLogitsLoss(), normal, unit),
        L.BCELoss: (L.BCELoss(), unit, RNG.uniform(0, 1, shape)),
        L.KLDivLoss: (L.KLDivLoss(reduction="batchmean"), _log_probs(shape), _probs(shape)),
        L.CrossEntropyLoss: (L.CrossEntropyLoss(label_smoothing=0.1), normal, labels),
        L.NLLLoss: (L.NLLLoss(), _log_probs(shape), labels),
        L.MultiMarginLoss: (L.MultiMarginLoss(), normal, labels),
        L.MultiLabelMarginLoss: (
            L.MultiLabelMarginLoss(),
            normal,
            np.stack([labels, np.full(N, -1)], axis=1),
        ),
        L.MultiLabelSoftMarginLoss: (L.MultiLabelSoftMarginLoss(), normal, (unit > 0.5) * 1.0),
        L.SoftMarginLoss: (L.SoftMarginLoss(), normal, np.sign(RNG.standard_normal(shape))),
        L.HingeEmbeddingLoss: (
            L.HingeEmbeddingLoss(),
            np.abs(normal),
            np.sign(RNG.standard_normal(shape)),
        ),
        L.PoissonNLLLoss: (L.PoissonNLLLoss(), normal * 0.5, RNG.poisson(1.0, shape) * 1.0),
    }


# Losses of more than a prediction and a target: their 16-bit sums are tested in their own files
SEVERAL_INPUTS = {
    L.MarginRankingLoss: "tests/test_losses_margin.py::test_float16_accumulates_in_float32",
    L.CosineEmbeddingLoss: "tests/test_losses_margin.py::test_float16_accumulates_in_float32",
    L.TripletMarginLoss: "tests/test_losses_margin.py::test_float16_accumulates_in_float32",
    L.TripletMarginWithDistanceLoss: (
        "tests/test_losses_margin.py::test_float16_accumulates_in_float32"
    ),
    L.GaussianNLLLoss: "tests/test_losses_nll.py::test_float16_inputs_accumulate_in_float32",
    L.CTCLoss: "tests/test_ctc.py::test_float16_log_probs",
    L.AdaptiveLogSoftmaxWithLoss: "tests/test_adaptive_softmax.py::test_float16_parameters",
}


def test_the_sweep_covers_every_loss():
    every = {getattr(L, n) for n in L.__all__ if isinstance(getattr(L, n), type)} - {L.Loss}
    assert every == set(_loss_cases()) | set(SEVERAL_INPUTS)
    assert not set(_loss_cases()) & set(SEVERAL_INPUTS)


@pytest.mark.parametrize("name", sorted(c.__name__ for c in _loss_cases()))
def test_every_loss_in_float16_matches_float64_on_a_large_batch(backend, name):
    f16 = _float16(backend)
    loss, pred, target = next(v for k, v in _loss_cases().items() if k.__name__ == name)
    # the reference sees the float16-rounded inputs: only the accumulation may differ
    pred = pred.astype(np.float16).astype(np.float64)
    if target.dtype.kind == "f":
        target = target.astype(np.float16).astype(np.float64)
    want = float(loss(pred, target))
    want_grad = loss.backward()
    t = _to(backend, target, "int64" if target.dtype.kind == "i" else f16)
    got = loss(_to(backend, pred, f16), t)
    grad = nnx.backend.to_numpy(loss.backward())
    assert "float16" in str(got.dtype) and "float16" in str(grad.dtype)
    assert float(nnx.backend.to_numpy(got)) == pytest.approx(want, rel=5e-3, abs=1e-3)
    assert np.abs(grad.astype(np.float64) - want_grad).max() <= 1e-2 * np.abs(want_grad).max()


def test_float16_probability_targets_of_another_dtype_are_still_refused():
    with pytest.raises(TypeError, match="dtype float32 does not match"):
        nnx.CrossEntropyLoss()(np.zeros((2, 3), np.float16), np.zeros((2, 3), np.float32))


@pytest.mark.parametrize(
    "metric", [Accuracy, lambda: TopKAccuracy(1), MeanAbsoluteError, MeanSquaredError]
)
def test_float16_metrics_count_past_65504(backend, metric):
    f16 = _float16(backend)
    pred = RNG.standard_normal((N, 2))
    labels = RNG.integers(0, 2, N)
    target = labels if metric in (Accuracy,) or not isinstance(metric, type) else pred * 0.5
    exact, m = metric(), metric()
    exact.update(pred, target)
    for _ in range(2):  # two batches: the running total passes 65504 too
        t = _to(backend, target, "int64" if target.dtype.kind == "i" else f16)
        m.update(_to(backend, pred, f16), t)
    assert m.compute() == pytest.approx(exact.compute(), rel=5e-3)


def test_float16_bits_per_character_over_many_positions(backend):
    f16 = _float16(backend)
    logits = RNG.standard_normal((20, 4, 4096))
    labels = RNG.integers(0, 4, (20, 4096))
    exact, m = BitsPerCharacter(), BitsPerCharacter()
    exact.update(logits, labels)
    m.update(_to(backend, logits, f16), _to(backend, labels, "int64"))
    assert m.compute() == pytest.approx(exact.compute(), rel=5e-3)


def test_epoch_totals_of_float16_losses_and_float32_metric_totals_do_not_overflow():
    """The Trainer's one transfer of an epoch's losses and metric totals: 16-bit losses beside
    a float32 metric total past 65504 are stacked in float32, not float16."""
    from nnx.training.totals import to_host

    metric = Accuracy()
    metric.update(np.ones((N, 2), np.float16), np.zeros(N, np.int64))
    losses = [np.asarray(1.5, np.float16), np.asarray(2.0, np.float16)]
    values, totals = to_host(losses, [metric])
    assert list(values) == [1.5, 2.0] and totals == [float(N)]
    assert metric.compute() == 1.0
