"""CrossEntropyLoss's shortcut for plain integer labels (no class weights, no smoothing) gives
the general path's values bit for bit, and keeps its label checks."""

import numpy as np
import pytest

import nnx
from nnx.data import ArrayDataset, DataLoader
from tests.conftest import host_normal

N, C = 7, 5


def _run(loss, backend, logits, labels):
    value = loss(backend.asarray(logits, dtype="float32"), backend.asarray(labels))
    return nnx.to_numpy(value), nnx.to_numpy(loss.backward())


# The general path, forced by options that change nothing for these labels: an ignore_index
# inside [0, C) that no label takes, or class weights of one.
def _general(labels, reduction):
    if np.any(labels == -100):
        return nnx.CrossEntropyLoss(weight=np.ones(C, dtype=np.float32), reduction=reduction)
    return nnx.CrossEntropyLoss(ignore_index=C - 1, reduction=reduction)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "labels",
    [
        np.array([0, 1, 2, 3, 0, 1, 2]),  # every label in range: the shortest path
        np.array([0, -100, 2, 3, -100, 1, 2]),  # some labels ignored
        np.array([-100] * N),  # every label ignored: loss 0, gradient 0
    ],
    ids=["plain", "ignored", "all-ignored"],
)
def test_shortcut_equals_the_general_path_bit_for_bit(backend, labels, reduction):
    logits = host_normal((N, C), seed=3) * 4
    logits[0, 1] = -np.inf  # a masked class
    logits[1, 0] = -3e38  # more than the largest float below its row's maximum
    logits[1, 2] = 3e38
    fast = _run(nnx.CrossEntropyLoss(reduction=reduction), backend, logits, labels)
    general = _run(_general(labels, reduction), backend, logits, labels)
    for a, b in zip(fast, general, strict=True):
        np.testing.assert_array_equal(a, b)
    unchecked = nnx.CrossEntropyLoss(reduction=reduction, check_labels=False)
    for a, b in zip(_run(unchecked, backend, logits, labels), general, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("check_labels", [True, False])
def test_shortcut_on_a_large_batch_equals_the_general_path(check_labels):
    """A batch of many rows (NumPy then takes the row maxima down the columns), some labels
    ignored: the same loss and gradient as the general path, bit for bit."""
    backend = nnx.get_backend("cpu")
    logits = host_normal((300, C), seed=5) * 4
    logits[0, 1], logits[1, 0], logits[1, 2] = -np.inf, -3e38, 3e38
    labels = np.random.default_rng(1).integers(0, C, size=300)
    labels[::7] = -100
    fast = _run(nnx.CrossEntropyLoss(check_labels=check_labels), backend, logits, labels)
    general = _run(_general(labels, "mean"), backend, logits, labels)
    for a, b in zip(fast, general, strict=True):
        np.testing.assert_array_equal(a, b)


def test_shortcut_on_spatial_labels_equals_the_general_path():
    backend = nnx.get_backend("cpu")
    logits = host_normal((3, C, 4, 2), seed=4)
    labels = np.random.default_rng(0).integers(0, C - 1, size=(3, 4, 2))  # C - 1 unused
    fast = _run(nnx.CrossEntropyLoss(), backend, logits, labels)
    general = _run(_general(labels, "mean"), backend, logits, labels)
    for a, b in zip(fast, general, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad", [5, -1, -99])
def test_shortcut_still_refuses_a_bad_label(backend, bad):
    labels = np.array([0, 1, 2, bad, 0, 1, 2])
    lo, hi = min(0, bad), max(2, bad)
    message = (
        rf"CrossEntropyLoss: class labels must lie in \[0, 4\] for 5 classes \(or equal "
        rf"ignore_index=-100\), got labels from {lo} to {hi}"
    )
    with pytest.raises(ValueError, match=message):
        _run(nnx.CrossEntropyLoss(), backend, host_normal((N, C)), labels)
    with_ignored = labels.copy()
    with_ignored[0] = -100  # an ignored label beside the bad one: the bad one is still named
    with pytest.raises(ValueError, match=message):
        _run(nnx.CrossEntropyLoss(), backend, host_normal((N, C)), with_ignored)


def test_batches_of_a_loader_are_not_read_back_but_user_batches_are(monkeypatch):
    from nnx.core import checks
    from nnx.losses import classification

    labels = np.arange(12) % C
    loader = DataLoader(ArrayDataset(host_normal((12, C)), labels), batch_size=4)
    reads = {"loss": 0, "data set": 0}
    for module, name in ((classification, "loss"), (checks, "data set")):
        real = module.to_numpy
        counted = lambda a, real=real, name=name: reads.update({name: reads[name] + 1}) or real(a)  # noqa: E731
        monkeypatch.setattr(module, "to_numpy", counted)
    loss = nnx.CrossEntropyLoss()
    for epoch in range(2):
        loader.set_epoch(epoch)
        for xb, yb in loader:
            loss(xb, yb)
    assert reads == {"loss": 0, "data set": 1}  # the labels' range, read once for both epochs
    loss(host_normal((4, C)), labels[:4])  # a batch of the user's own: read and checked
    assert reads == {"loss": 2, "data set": 1}


def test_a_bad_label_in_a_loader_or_a_user_batch_is_still_refused():
    labels = np.array([0, 1, 2, 3, 0, 1, 2, C])  # the last label is out of range
    data = ArrayDataset(host_normal((8, C)), labels)
    loss = nnx.CrossEntropyLoss()
    message = r"class labels must lie in \[0, 4\] for 5 classes .*, got labels from 0 to 5"
    with pytest.raises(ValueError, match=message):
        for xb, yb in DataLoader(data, batch_size=4, shuffle=False):
            loss(xb, yb)
    with pytest.raises(ValueError, match=message):
        loss(host_normal((8, C)), labels)


def test_weighted_and_nll_losses_use_the_loaders_label_range_too(monkeypatch):
    from nnx.losses import classification

    loader = DataLoader(ArrayDataset(host_normal((8, C)), np.arange(8) % C), batch_size=4)
    reads = []  # reads of labels (the class weights are converted once, a float read)
    real = classification.to_numpy

    def counted(a):
        if np.asarray(real(a)).dtype.kind in "iu":
            reads.append(a)
        return real(a)

    monkeypatch.setattr(classification, "to_numpy", counted)
    weighted = nnx.CrossEntropyLoss(weight=np.linspace(0.5, 1.5, C), label_smoothing=0.1)
    for xb, yb in loader:
        weighted(xb, yb)
        nnx.NLLLoss()(xb, yb)
    assert reads == []
    bad = np.array([0, 1, 2, C])
    with pytest.raises(ValueError, match="got labels from 0 to 5"):
        nnx.NLLLoss()(host_normal((4, C)), bad)
