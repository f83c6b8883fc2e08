"""Precision, recall, F1, AUROC and the confusion matrix against scikit-learn's functions."""

import numpy as np
import pytest

from nnx.metrics import (
    AUROC,
    F1,
    ConfusionMatrix,
    Precision,
    PrecisionRecallF1,
    Recall,
    binary_auroc,
    get_metric,
)
from nnx.training.totals import to_host

metrics = pytest.importorskip("sklearn.metrics")

PORTABLE = ["numpy", "strict"]


def _multiclass(seed=0, n=97, c=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    z = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y]  # better than chance, not perfect
    z[5:9] = z[0]  # repeated rows: tied scores
    y[5:7] = 1 - np.minimum(y[5:7], 1)
    return z, y


def _feed(metric, backend, z, y, batch=30):
    for i in range(0, len(y), batch):
        metric.update(backend.asarray(z[i : i + batch]), backend.asarray(y[i : i + batch]))
    return metric


@pytest.fixture(params=PORTABLE)
def portable(request):
    import nnx

    return nnx.get_backend(request.param)


def test_confusion_matrix(portable):
    z, y = _multiclass()
    cm = _feed(ConfusionMatrix(), portable, z, y)
    assert portable.owns(cm.total) and cm.total.shape == (4, 4)  # summed on the device
    expected = metrics.confusion_matrix(y, z.argmax(1), labels=range(4))
    np.testing.assert_array_equal(cm.compute(), expected)
    one_hot = _feed(ConfusionMatrix(), portable, z, np.eye(4)[y])
    np.testing.assert_array_equal(one_hot.compute(), expected)


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_precision_recall_f1_multiclass(portable, average):
    z, y = _multiclass()
    y[y == 3] = 0  # class 3 never true, only predicted: counted, as scikit-learn does
    z[:, 2] -= 9.0  # class 2 never predicted: precision 0 (zero_division=0)
    predicted = z.argmax(1)
    p, r, f, _ = metrics.precision_recall_fscore_support(
        y, predicted, average=average, zero_division=0
    )
    for cls, want in ((Precision, p), (Recall, r), (F1, f)):
        got = _feed(cls(average), portable, z, y).compute()
        assert got == pytest.approx(want, abs=1e-12), (cls.__name__, average)
    named = _feed(get_metric(f"f1_{average}"), portable, z, y)
    assert named.name == f"f1_{average}" and named.compute() == pytest.approx(f, abs=1e-12)


def test_plain_names_are_macro_for_logits_and_positive_class_for_one_logit(portable):
    z, y = _multiclass(seed=1)
    f1 = _feed(get_metric("f1"), portable, z, y)
    assert f1.name == "f1"
    assert f1.compute() == pytest.approx(metrics.f1_score(y, z.argmax(1), average="macro"))
    rng = np.random.default_rng(2)
    logit = rng.normal(size=(50, 1))
    target = (logit[:, 0] + rng.normal(size=50) > 0).astype(float)[:, None]
    for name, fn in (
        ("precision", metrics.precision_score),
        ("recall", metrics.recall_score),
        ("f1", metrics.f1_score),
    ):
        got = _feed(get_metric(name), portable, logit, target).compute()
        assert got == pytest.approx(fn(target[:, 0], logit[:, 0] > 0)), name
        macro = _feed(get_metric(f"{name}_macro"), portable, logit, target).compute()
        assert macro == pytest.approx(fn(target[:, 0], logit[:, 0] > 0, average="macro")), name
        integer = _feed(get_metric(name), portable, logit, target[:, 0].astype(np.int64))
        assert integer.compute() == got, name  # 0/1 integer targets, (N,) against (N, 1)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_auroc_binary_with_ties(portable):
    rng = np.random.default_rng(3)
    logit = np.round(rng.normal(size=200), 1)  # rounded: many ties, across the two classes
    y = (logit + rng.normal(size=200) > 0).astype(np.int64)
    m = _feed(AUROC(), portable, logit[:, None], y[:, None].astype(float), batch=64)
    assert m.compute() == pytest.approx(metrics.roc_auc_score(y, logit), abs=1e-12)
    assert _feed(AUROC(), portable, logit, y).compute() == m.compute()  # integer targets (N,)
    assert len(m.parts) == 1 and portable.owns(m.parts[0])  # concatenated once, on the device


def test_auroc_one_vs_rest_macro(portable):
    z, y = _multiclass(seed=4, n=150, c=3)
    z = np.round(z, 1)
    m = _feed(get_metric("auroc"), portable, z, y)
    want = metrics.roc_auc_score(y, _softmax(z), multi_class="ovr", average="macro")
    assert m.compute() == pytest.approx(want, abs=1e-12)


def test_auroc_leaves_out_a_class_without_positives():
    z, y = _multiclass(seed=5, n=60, c=3)
    y[y == 2] = 0
    import nnx

    m = _feed(AUROC(), nnx.get_backend("numpy"), z, y)
    p = _softmax(z)
    want = np.mean([metrics.roc_auc_score(y == k, p[:, k]) for k in (0, 1)])
    assert m.compute() == pytest.approx(want, abs=1e-12)
    assert np.isnan(binary_auroc(np.ones(3), np.ones(3, dtype=bool)))


def test_one_transfer_returns_array_states_and_scalars():
    import nnx

    backend = nnx.get_backend("strict")
    z, y = _multiclass(seed=6)
    ms = [get_metric("accuracy"), get_metric("f1_weighted"), AUROC()]
    for m in ms:
        _feed(m, backend, z, y)
    losses, states = to_host([backend.asarray(1.5), backend.asarray(2.5)], ms)
    assert losses.tolist() == [1.5, 2.5]
    assert isinstance(states[0], float) and states[1].shape == (17,) and states[2].shape == (97, 5)
    assert [m.value(s) for m, s in zip(ms, states, strict=True)] == [m.compute() for m in ms]


def test_bad_input_is_one_line():
    with pytest.raises(ValueError, match="average must be one of macro, micro, weighted"):
        PrecisionRecallF1("f1", "binary")
    with pytest.raises(ValueError, match="one logit per sample"):
        F1().update(np.zeros((4, 1)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"logits \(N, C\)"):
        AUROC().update(np.zeros((4, 2, 2)), np.zeros(4))


class _Recorder:
    """A one-rank world that records what it was asked to sum or gather."""

    size, rank = 1, 0

    def __init__(self, other=None):
        self.sent, self.other = {}, other

    def allreduce_counts(self, counts, what):
        self.sent["counts"] = list(counts)
        return [
            a + b
            for a, b in zip(
                counts, (self.other or {}).get("counts", [0] * len(counts)), strict=True
            )
        ]

    def allreduce_sum(self, array, what, scratch=False):
        host = np.asarray(array, dtype=np.float64)
        self.sent["sum"] = host.copy()
        return host + (self.other["sum"] if self.other else 0.0)

    def allgather(self, array, what):
        self.sent["rows"] = array
        return [self.other["rows"], array] if self.other else [array]


def test_a_rank_without_samples_sends_zeros_of_the_right_size():
    import nnx
    from nnx.training.totals import sum_over_ranks

    backend = nnx.get_backend("numpy")
    rng = np.random.default_rng(7)
    logit, y = rng.normal(size=(40, 1)), rng.integers(0, 2, (40, 1)).astype(float)
    names = ("f1", "precision_macro", "auroc", "accuracy")
    full = [_feed(get_metric(n), backend, logit, y) for n in names]
    alone = [m.compute() for m in full]
    busy = _Recorder()
    sum_over_ranks(busy, backend, np.float64, [np.asarray(3.0)], [40], full, "test")
    idle = _Recorder(other=busy.sent)  # rank 1: no batch at all, every state None
    empty = [get_metric(n) for n in names]
    _, counts, host = sum_over_ranks(idle, backend, np.float64, [np.asarray(0.0)], [0], empty, "t")
    assert counts == [40] and idle.sent["sum"].shape == busy.sent["sum"].shape
    # the empty rank computes what the busy one does: binary F1, not macro, and the AUROC
    assert [m.value(h) for m, h in zip(empty, host, strict=True)] == pytest.approx(alone)
    assert alone[0] == pytest.approx(metrics.f1_score(y[:, 0], logit[:, 0] > 0))
