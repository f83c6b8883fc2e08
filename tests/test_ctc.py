"""CTCLoss: PyTorch parity (value and log_probs gradient) on three backends over padded and
concatenated targets, varying and zero lengths, repeated labels, a blank other than 0,
impossible alignments (inf, NaN gradient) and zero_infinity; gradcheck through a log-softmax on
every backend; float16; the errors."""

import math

import numpy as np
import pytest

import nnx
from nnx.core.checks import dtype_name
from tests.conftest import BACKENDS
from tests.layers.torch_oracle import ORACLE_BACKENDS, compare_loss

# Every backend of tests/conftest.py, JAX under the slow marker: eager JAX compiles each small
# operation per shape on first use, and finite differences call the loss ~50 times.
SLOW_JAX_BACKENDS = [
    pytest.param(
        *p.values, id=p.id, marks=[*p.marks, *([pytest.mark.slow] if p.id == "jax" else [])]
    )
    for p in BACKENDS
]


REDUCTIONS = ("mean", "sum", "none")
T, N, C = 6, 3, 5


def _log_softmax(z, axis=-1):
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def _case(blank=0, seed=0, impossible=False):
    """log_probs (T, N, C), padded targets (N, 4) with a repeated label, lengths."""
    rng = np.random.default_rng(seed)
    lp = _log_softmax(rng.standard_normal((T, N, C)))
    labels = [c for c in range(C) if c != blank]
    pick = [[0, 0, 1, 2], [1, 2, 2, 3], [3, 0, 0, 0]]  # positions in labels, shuffled per seed
    order = rng.permutation(len(labels))
    targets = np.array([[labels[order[i]] for i in row] for row in pick])
    # row 0 repeats a label (a blank must sit between, no skip); row 1 has 4 labels with one
    # repeat: exactly 5 frames, as many as it has
    input_lengths = np.array([6, 5, 4])
    target_lengths = np.array([3, 4, 2])
    if impossible:  # 4 frames are one too few: loss inf
        input_lengths = np.array([6, 4, 4])
    targets[2, 2:] = -1  # padding past the length is never read
    return lp, targets, input_lengths, target_lengths


def _small():
    """(4, 2, 3) log_probs, blank 1: a repeated label that fits, and one too long for 2 frames
    of input (inf; NaN gradient rows, or 0 with zero_infinity)."""
    lp = _log_softmax(np.random.default_rng(5).standard_normal((4, 2, 3)))
    return lp, np.array([[2, 2], [0, 0]]), np.array([4, 2]), np.array([2, 2])


def _concatenated(targets, target_lengths):
    return np.concatenate([targets[i, :k] for i, k in enumerate(target_lengths)])


def _check(backend, reduction, blank=0, zero_infinity=False, impossible=False, seed=0):
    import torch

    lp, targets, il, tl = _case(blank, seed, impossible)
    make = lambda: nnx.CTCLoss(blank, reduction, zero_infinity)  # noqa: E731
    ref = lambda: torch.nn.CTCLoss(blank, reduction, zero_infinity)  # noqa: E731
    out = compare_loss(make(), ref(), [lp, targets, il, tl], backend=backend)
    compare_loss(make(), ref(), [lp, _concatenated(targets, tl), il, tl], backend=backend)
    return out


@pytest.mark.torch
@pytest.mark.parametrize("backend", ORACLE_BACKENDS)
def test_ctc_matches_pytorch(backend):
    if backend == "jax":  # JAX compiles every operation per new shape: the gradcheck's shapes
        import torch

        lp, targets, il, tl = _small()
        for zero_infinity in (False, True):
            compare_loss(
                nnx.CTCLoss(1, "none", zero_infinity),
                torch.nn.CTCLoss(1, "none", zero_infinity),
                [lp, targets, il, tl],
                backend=backend,
            )
        return
    for reduction in REDUCTIONS:
        _check(backend, reduction)
    _check(backend, "none", blank=2, seed=1)
    out = _check(backend, "none", impossible=True)  # inf, and NaN gradient rows as PyTorch
    assert out[1] == math.inf and np.isfinite(out[[0, 2]]).all()
    out = _check(backend, "mean", impossible=True, zero_infinity=True)
    assert np.isfinite(out)


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("backend", ORACLE_BACKENDS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("blank", (0, 4))
def test_ctc_matches_pytorch_sweep(backend, reduction, blank):
    for seed in range(3):
        for impossible in (False, True):
            for zero_infinity in (False, True):
                _check(backend, reduction, blank, zero_infinity, impossible, seed)


@pytest.mark.torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ctc_one_sequence_and_empty_lengths_match_pytorch(reduction):
    """Unbatched (T, C) input; target length 0 (only blanks); input length 0 (loss 0 for an
    empty target, inf otherwise)."""
    import torch

    lp, targets, _, _ = _case()
    for backend in ("numpy", "strict:device1"):
        compare_loss(
            nnx.CTCLoss(reduction=reduction),
            torch.nn.CTCLoss(reduction=reduction),
            [lp[:, 0], targets[0, :3], np.array(6), np.array(3)],
            backend=backend,
        )
        compare_loss(
            nnx.CTCLoss(reduction=reduction, zero_infinity=True),
            torch.nn.CTCLoss(reduction=reduction, zero_infinity=True),
            [lp, targets, np.array([6, 0, 0]), np.array([0, 0, 2])],
            backend=backend,
        )


def test_impossible_alignment_is_inf_or_zero_with_zero_gradient():
    lp, targets, il, tl = _case(impossible=True)
    loss = nnx.CTCLoss(reduction="none")
    assert loss(lp, targets, il, tl)[1] == math.inf
    grad = loss.backward()
    assert np.isnan(grad[:4, 1]).all() and (grad[4:, 1] == 0).all()  # PyTorch's NaN rows
    assert np.isfinite(grad[:, [0, 2]]).all()
    loss = nnx.CTCLoss(reduction="none", zero_infinity=True)
    np.testing.assert_array_equal(loss(lp, targets, il, tl)[1], 0.0)
    grad = loss.backward()
    assert (grad[:, 1] == 0).all() and np.isfinite(grad).all()


class _CTCOfLogits(nnx.Module):
    """log_softmax then CTCLoss (reduction="none"): PyTorch's CTC gradient is the gradient
    through a log-softmax, so finite differences check it on the logits."""

    def __init__(self, targets, il, tl, **kw):
        self.loss, self.args = nnx.CTCLoss(reduction="none", **kw), (targets, il, tl)

    def forward(self, z):
        xp = nnx.backend.namespace(z)
        z = z - xp.max(z, axis=-1, keepdims=True)
        self.lp = z - xp.log(xp.sum(xp.exp(z), axis=-1, keepdims=True))
        return self.loss(self.lp, *self.args)

    def backward(self, g):
        xp = nnx.backend.namespace(g)
        d = self.loss.backward(g)
        return d - xp.exp(self.lp) * xp.sum(d, axis=-1, keepdims=True)


@pytest.mark.parametrize("spec", SLOW_JAX_BACKENDS)
def test_ctc_gradcheck_through_log_softmax(spec):
    """A small case (finite differences run the recursion twice per input element): a repeated
    label, blank 1, an impossible sequence zeroed by zero_infinity."""
    backend = nnx.get_backend(spec)
    lp, targets, il, tl = _small()
    args = (backend.asarray(targets), backend.asarray(il), backend.asarray(tl))
    result = nnx.gradcheck(_CTCOfLogits(*args, blank=1, zero_infinity=True), backend.asarray(lp))
    assert result.ok, str(result)


@pytest.mark.slow
@pytest.mark.parametrize("blank", (0, 3))
def test_ctc_gradcheck_through_log_softmax_wider(backend, blank):
    lp, targets, il, tl = _case(blank=blank)
    args = (backend.asarray(targets), backend.asarray(il), backend.asarray(tl))
    result = nnx.gradcheck(_CTCOfLogits(*args, blank=blank), backend.asarray(lp))
    assert result.ok, str(result)


def test_float16_log_probs():
    lp, targets, il, tl = _case()
    be = nnx.get_backend("numpy")
    ref = nnx.CTCLoss()
    expected = float(ref(be.asarray(lp, dtype="float32"), targets, il, tl))
    expected_grad = ref.backward()
    loss = nnx.CTCLoss()
    value = loss(be.asarray(lp, dtype="float16"), targets, il, tl)
    grad = loss.backward()
    assert dtype_name(value.dtype) == "float16" and dtype_name(grad.dtype) == "float16"
    assert abs(float(value) - expected) <= 2e-3 * expected
    np.testing.assert_allclose(grad.astype(np.float32), expected_grad, atol=2e-3)


def test_lengths_as_python_sequences():
    lp, targets, il, tl = _case()
    loss = nnx.CTCLoss(reduction="sum")
    np.testing.assert_allclose(loss(lp, targets, list(il), tuple(tl)), loss(lp, targets, il, tl))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"blank": 5}, r"CTCLoss: blank 5 is out of the label range \[0, 4\]"),
        ({"il": [7, 5, 4]}, r"CTCLoss: input_lengths must be at most T = 6 .*got 7"),
        ({"il": [6, 5]}, r"CTCLoss: input_lengths has 2 entries for a batch of 3"),
        ({"tl": [3, 5, 2]}, r"CTCLoss: a target length of 5 is longer than the padded .* 4 col"),
        ({"tl": [3, -1, 2]}, r"CTCLoss: target_lengths must be >= 0, got -1"),
        ({"label": 7}, r"CTCLoss: target labels must be in \[0, 4\] .* got values in \[0, 7\]"),
        ({"concat": 1}, r"CTCLoss: concatenated targets have length 10 but target_lengths sum"),
        ({"float_targets": 1}, r"CTCLoss: targets must be integers"),
    ],
)
def test_errors_name_the_loss_and_the_value(change, message):
    lp, targets, il, tl = _case()
    targets[0, 0] = change.get("label", targets[0, 0])
    if "concat" in change:
        targets = np.concatenate([_concatenated(targets, tl), [1]])
    if "float_targets" in change:
        targets = targets.astype(np.float64)
    il, tl = change.get("il", il), change.get("tl", tl)
    with pytest.raises((ValueError, TypeError), match=message):
        nnx.CTCLoss(blank=change.get("blank", 0))(lp, targets, np.array(il), np.array(tl))


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"CTCLoss: blank must be an integer >= 0, got -1"):
        nnx.CTCLoss(blank=-1)
    with pytest.raises(ValueError, match=r"CTCLoss: reduction must be one of"):
        nnx.CTCLoss(reduction="batchmean")
