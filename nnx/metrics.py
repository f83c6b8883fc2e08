"""Metrics accumulated on the device: a running sum there and a sample count on the host, so a
whole epoch needs a single host synchronisation (done by the Trainer) instead of one per batch.

>>> import numpy as np
>>> acc = get_metric("accuracy")
>>> acc.update(np.array([[2.0, 1.0], [0.0, 3.0]]), np.array([0, 0]))
>>> acc.compute()
0.5
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from .backend import device, namespace, to_numpy
from .core.checks import indexable_labels, is_dtype, widened


class Metric:
    """Base class: ``update(pred, target)`` per batch, ``compute()`` at the end.

    A subclass sets ``name`` (the key in the logs) and implements
    ``batch_stats(xp, pred, target) -> (device_sum, count)``: the sum of the metric's terms over
    one batch as a 0-d array on the device, and how many terms it summed. The metric is
    ``total / count`` over the epoch; override :meth:`value` for anything else. ``total`` is the
    running sum as a 0-d device array, ``count`` the number of terms summed. See "Custom metrics"
    in ``docs/custom-layer.md``.

    Non-scalar state: ``batch_stats`` may return an array of any fixed shape (a confusion
    matrix); the running total is then that array, summed element-wise (over batches, and over
    MPI ranks), and :meth:`value` receives it on the host as a float64 NumPy array. A metric
    that needs every sample (``gather = True``, e.g. :class:`AUROC`) returns rows ``(n, k)``
    instead: they stay on the device, one array per batch, are concatenated at the end (and
    gathered from every rank) and reach :meth:`value` as one ``(N, k)`` NumPy array.

    16-bit floating predictions and targets (float16, bfloat16) reach ``batch_stats`` in float32,
    so sums and the running total accumulate in at least float32.
    """

    name = "metric"
    gather = False  # True: keep batch_stats' rows and concatenate them instead of summing

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total: Any = None
        self.count = 0
        self.parts: list[Any] = []  # the rows of each batch, when ``gather``

    def update(self, pred: Any, target: Any) -> None:
        xp = namespace(pred)
        pred = widened(xp, pred)
        if is_dtype(xp, target.dtype, "real floating"):  # remembered per dtype: every batch asks
            target = widened(xp, target)
        batch_sum, count = self.batch_stats(xp, pred, target)
        batch_sum = xp.astype(batch_sum, pred.dtype)
        if self.gather:
            self.parts.append(batch_sum)
        else:
            self.total = batch_sum if self.total is None else self.total + batch_sum
        self.count += count

    def state(self) -> Any:
        """What is reduced over ranks and copied to the host: :attr:`total` (summed), or, when
        ``gather``, every batch's rows concatenated on the device (None before any update)."""
        if not self.gather:
            return self.total
        if not self.parts:
            return None
        if len(self.parts) > 1:  # concatenated once, and kept so
            self.parts = [namespace(self.parts[0]).concat(self.parts, axis=0)]
        return self.parts[0]

    def value(self, total: Any) -> Any:
        """The metric from the host value of :meth:`state`: a float for a 0-d total, a float64
        NumPy array otherwise."""
        return float(total) / self.count if self.count else float("nan")

    def compute(self) -> Any:
        """The metric now (one host synchronisation; the Trainer batches these)."""
        return self.value(host_state(self.state()))

    def batch_stats(self, xp: Any, pred: Any, target: Any) -> tuple[Any, int]:
        """``(sum of this batch's terms as a 0-d device array, number of terms)``."""
        return self._batch(xp, pred, target)

    def _batch(self, xp: Any, pred: Any, target: Any) -> tuple[Any, int]:
        # the name of batch_stats before it was public; subclasses override either
        raise NotImplementedError(f"{type(self).__name__} does not implement batch_stats")


def host_state(state: Any) -> Any:
    """A metric's :meth:`~Metric.state` on the host: a float for a 0-d array (0.0 for None), a
    float64 NumPy array otherwise."""
    if state is None:
        return 0.0
    host = np.asarray(to_numpy(state), dtype=np.float64)
    return float(host) if host.ndim == 0 else host


def _positive(xp: Any, target: Any, n: int, dtype: Any) -> Any:
    """The ``(n,)`` booleans ``target > 0.5`` of 0/1 targets, floating or integer."""
    return xp.astype(xp.reshape(target, (n,)), dtype) > 0.5


def _class_labels(xp: Any, pred: Any, target: Any) -> Any:
    """Integer labels from integer targets or one-hot / probability rows."""
    if is_dtype(xp, target.dtype, "integral"):
        return target
    return xp.argmax(target, axis=1)


class Accuracy(Metric):
    """Fraction of correct predictions.

    Multi-class: logits ``(N, C)`` with ``C > 1`` against integer labels or one-hot rows.
    Binary: logits ``(N,)`` or ``(N, 1)`` thresholded at 0 (``sigmoid(z) > 0.5``) against 0/1
    targets.
    """

    name = "accuracy"

    def batch_stats(self, xp: Any, pred: Any, target: Any) -> tuple[Any, int]:
        n = int(pred.shape[0])
        if pred.ndim == 2 and pred.shape[1] > 1:
            predicted = xp.argmax(pred, axis=1)
            labels = _class_labels(xp, pred, target)
            correct = predicted == xp.astype(labels, predicted.dtype, copy=False)
        else:
            predicted = xp.reshape(pred, (n,)) > 0
            correct = predicted == _positive(xp, target, n, pred.dtype)
        return xp.sum(xp.astype(correct, pred.dtype)), n


class TopKAccuracy(Metric):
    """Fraction of samples whose true class is among the ``k`` highest logits."""

    def __init__(self, k: int = 5):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"TopKAccuracy: k must be a positive integer, got {k!r}")
        self.k = k
        self.name = f"top{k}_accuracy"
        super().__init__()

    def batch_stats(self, xp: Any, pred: Any, target: Any) -> tuple[Any, int]:
        n, c = pred.shape
        labels = indexable_labels(xp, _class_labels(xp, pred, target), c)
        classes = xp.arange(c, dtype=labels.dtype, device=device(pred))
        one_hot = xp.astype(labels[:, None] == classes, pred.dtype)
        true_logit = xp.sum(pred * one_hot, axis=1, keepdims=True)
        rank = xp.sum(xp.astype(pred > true_logit, pred.dtype), axis=1)  # classes ranked above
        return xp.sum(xp.astype(rank < self.k, pred.dtype)), int(n)


class MeanAbsoluteError(Metric):
    """Mean of ``|pred - target|`` over every element."""

    name = "mae"

    def batch_stats(self, xp: Any, pred: Any, target: Any) -> tuple[Any, int]:
        return xp.sum(xp.abs(pred - target)), math.prod(pred.shape)


class MeanSquaredError(Metric):
    """Mean of ``(pred - target)^2`` over every element."""

    name = "mse"

    def batch_stats(self, xp: Any, pred: Any, target: Any) -> tuple[Any, int]:
        diff = pred - target
        return xp.sum(diff * diff), math.prod(pred.shape)


class BitsPerCharacter(Metric):
    """Cross-entropy in bits (``-log2 p(target)``), averaged over every predicted position: the
    bits per character of a character-level language model.

    Logits ``(N, C)`` or ``(N, C, T...)`` (classes on axis 1, as ``CrossEntropyLoss`` takes
    them) against integer labels ``(N)`` or ``(N, T...)``. Equals the mean cross-entropy of
    ``CrossEntropyLoss`` divided by ``ln 2``.

    >>> import numpy as np
    >>> bpc = BitsPerCharacter()
    >>> bpc.update(np.zeros((1, 4, 3)), np.array([[0, 1, 2]]))  # uniform over 4 symbols
    >>> round(bpc.compute(), 6)
    2.0
    """

    name = "bits_per_char"

    def batch_stats(self, xp: Any, pred: Any, target: Any) -> tuple[Any, int]:
        if pred.ndim < 2 or target.shape != (pred.shape[0], *pred.shape[2:]):
            raise ValueError(
                f"BitsPerCharacter: expected logits (N, C, ...) and labels (N, ...), got "
                f"{tuple(pred.shape)} and {tuple(target.shape)}"
            )
        c = pred.shape[1]
        target = indexable_labels(xp, target, c)
        shape = (1, c) + (1,) * (pred.ndim - 2)
        classes = xp.reshape(xp.arange(c, dtype=target.dtype, device=device(pred)), shape)
        one_hot = xp.astype(xp.expand_dims(target, axis=1) == classes, pred.dtype)
        top = xp.max(pred, axis=1, keepdims=True)
        log_total = xp.log(xp.sum(xp.exp(pred - top), axis=1)) + top[:, 0, ...]
        nats = xp.sum(log_total - xp.sum(pred * one_hot, axis=1))
        return nats / math.log(2.0), math.prod(target.shape)


def _predictions_and_labels(xp: Any, pred: Any, target: Any) -> tuple[Any, Any, int]:
    """``(predicted class, true class, number of classes)`` per sample: the arg-max of logits
    ``(N, C)`` (``C > 1``) against integer labels or one-hot rows, or, for one logit per sample
    (``(N,)`` or ``(N, 1)``), class 1 where the logit is > 0 against 0/1 targets (> 0.5)."""
    n = int(pred.shape[0])
    if pred.ndim == 2 and pred.shape[1] > 1:
        c = int(pred.shape[1])
        labels = indexable_labels(xp, _class_labels(xp, pred, target), c)
        return xp.argmax(pred, axis=1), labels, c
    if pred.ndim > 2 or (pred.ndim == 2 and pred.shape[1] != 1):
        raise ValueError(
            f"classification metrics take logits (N, C) or one logit per sample (N,) / (N, 1), "
            f"got predictions of shape {tuple(pred.shape)}"
        )
    if math.prod(target.shape) != n:
        raise ValueError(
            f"classification metrics: one logit per sample needs one 0/1 target per sample, got "
            f"predictions {tuple(pred.shape)} and targets {tuple(target.shape)}"
        )
    predicted = xp.astype(xp.reshape(pred, (n,)) > 0, xp.int32)
    labels = xp.astype(_positive(xp, target, n, pred.dtype), xp.int32)
    return predicted, labels, 2


class ConfusionMatrix(Metric):
    """Counts of (true class, predicted class) pairs: ``compute()`` returns the ``(C, C)``
    matrix as a float64 NumPy array, rows the true classes and columns the predicted ones (as
    ``sklearn.metrics.confusion_matrix``).

    Predictions as :class:`Accuracy` takes them: logits ``(N, C)`` (arg-max) against integer
    labels or one-hot rows, or one logit per sample thresholded at 0 (``C = 2``). The matrix
    is accumulated on the device as a product of one-hot matrices and summed over MPI ranks;
    its counts are exact up to 2**24 per cell in float32.

    >>> import numpy as np
    >>> cm = ConfusionMatrix()
    >>> cm.update(np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]), np.array([0, 0, 1]))
    >>> cm.compute().tolist()
    [[1.0, 1.0], [1.0, 0.0]]
    """

    name = "confusion_matrix"

    def batch_stats(self, xp: Any, pred: Any, target: Any) -> tuple[Any, int]:
        predicted, labels, c = _predictions_and_labels(xp, pred, target)
        classes = xp.arange(c, dtype=labels.dtype, device=device(pred))
        true_one_hot = xp.astype(labels[:, None] == classes, pred.dtype)
        predicted_one_hot = xp.astype(
            predicted[:, None] == xp.astype(classes, predicted.dtype), pred.dtype
        )
        return xp.matmul(xp.matrix_transpose(true_one_hot), predicted_one_hot), int(pred.shape[0])

    def value(self, total: Any) -> Any:
        return self.matrix(total)

    @staticmethod
    def matrix(total: Any) -> np.ndarray:
        """The ``(C, C)`` matrix from a host total (flat or square; 0.0 before any update)."""
        flat = np.asarray(total, dtype=np.float64).reshape(-1)
        if flat.size <= 1:
            return np.zeros((0, 0))
        c = math.isqrt(flat.size)
        return flat.reshape(c, c)


AVERAGES = ("macro", "micro", "weighted")


class PrecisionRecallF1(ConfusionMatrix):
    """Precision, recall or F1 score from the confusion matrix accumulated on the device (and
    summed over MPI ranks); averaged over the classes on the host at the end of the epoch.

    ``kind``: ``"precision"``, ``"recall"`` or ``"f1"``. ``average``:

    - ``"macro"``: the unweighted mean over the classes present in the targets or the
      predictions (as scikit-learn, which infers the labels from both);
    - ``"micro"``: from the counts pooled over classes (for single-label multi-class data all
      three equal the accuracy);
    - ``"weighted"``: the mean weighted by each class's number of true samples;
    - ``None`` (the default): ``"macro"`` for logits ``(N, C)``, and for one logit per sample the
      score of the positive class 1 (scikit-learn's ``average="binary"``).

    A class never predicted has precision 0, one never present recall 0, as scikit-learn's
    ``zero_division=0``. Names: ``f1``, ``f1_macro``, ``f1_micro``, ``f1_weighted``, likewise
    ``precision_*`` and ``recall_*``.
    """

    def __init__(self, kind: str = "f1", average: str | None = None):
        if kind not in ("precision", "recall", "f1"):
            raise ValueError(
                f"PrecisionRecallF1: kind must be precision, recall or f1, got {kind!r}"
            )
        if average is not None and average not in AVERAGES:
            raise ValueError(
                f"PrecisionRecallF1: average must be one of {', '.join(AVERAGES)} or None, "
                f"got {average!r}"
            )
        self.kind, self.average = kind, average
        self.name = kind if average is None else f"{kind}_{average}"
        super().__init__()

    def batch_stats(self, xp: Any, pred: Any, target: Any) -> tuple[Any, int]:
        # the state: the flattened matrix and a count of one-logit batches, so that every
        # rank, one without samples too, knows after the sum whether the output was binary
        matrix, n = super().batch_stats(xp, pred, target)
        binary = 0.0 if pred.ndim == 2 and pred.shape[1] > 1 else 1.0
        flag = xp.full((1,), binary, dtype=pred.dtype, device=device(pred))
        return xp.concat([xp.reshape(matrix, (-1,)), flag]), n

    def value(self, total: Any) -> float:
        flat = np.asarray(total, dtype=np.float64).reshape(-1)
        if flat.size <= 1:
            return float("nan")
        cm, binary = self.matrix(flat[:-1]), flat[-1] > 0
        tp = np.diag(cm)
        predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
        if self.average == "micro":  # counts pooled over the classes
            tp, predicted, actual = (a.sum(keepdims=True) for a in (tp, predicted, actual))
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(predicted > 0, tp / predicted, 0.0)
            recall = np.where(actual > 0, tp / actual, 0.0)
            both = predicted + actual
            f1 = np.where(both > 0, 2 * tp / both, 0.0)
        score = {"precision": precision, "recall": recall, "f1": f1}[self.kind]
        if self.average == "micro":
            return float(score[0])
        if self.average is None and binary:
            return float(score[1])
        if self.average == "weighted":
            return float(np.dot(score, actual) / actual.sum()) if actual.sum() else 0.0
        present = (predicted + actual) > 0  # macro over the classes seen, as scikit-learn
        return float(score[present].mean()) if present.any() else 0.0


class Precision(PrecisionRecallF1):
    """Precision (``tp / (tp + fp)``); see :class:`PrecisionRecallF1` for ``average``."""

    def __init__(self, average: str | None = None):
        super().__init__("precision", average)


class Recall(PrecisionRecallF1):
    """Recall (``tp / (tp + fn)``); see :class:`PrecisionRecallF1` for ``average``."""

    def __init__(self, average: str | None = None):
        super().__init__("recall", average)


class F1(PrecisionRecallF1):
    """F1 score (``2 tp / (2 tp + fp + fn)``); see :class:`PrecisionRecallF1` for ``average``."""

    def __init__(self, average: str | None = None):
        super().__init__("f1", average)


def _mid_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks of ``scores``, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2.0)[inverse.reshape(-1)]


def binary_auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """The exact area under the ROC curve of ``scores`` for the boolean ``positive``: the
    Mann-Whitney statistic from mid-ranks, so a tie between a positive and a negative counts
    one half (scikit-learn's trapezoidal ``roc_auc_score``). NaN without both classes."""
    positive = np.asarray(positive, dtype=bool)
    p = int(positive.sum())
    n = positive.size - p
    if p == 0 or n == 0:
        return float("nan")
    ranks = _mid_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[positive].sum() - p * (p + 1) / 2.0) / (p * n))


class AUROC(Metric):
    """Exact area under the ROC curve: binary for one logit per sample (``(N,)`` or
    ``(N, 1)`` against 0/1 targets), else one-vs-rest macro over the classes of logits
    ``(N, C)`` (scikit-learn's ``roc_auc_score(..., multi_class="ovr", average="macro")`` on the
    softmax probabilities).

    Every sample's scores (the logit, or the softmax probabilities) and label are kept on the
    device, one array per batch: ``N * (C + 1)`` numbers per epoch. At the end they are
    concatenated, copied to the host once (gathered from every MPI rank) and ranked there, ties
    counting one half, so the result is exact rather than a histogram's approximation. A class
    with no positive or no negative sample is left out of the macro mean (scikit-learn refuses
    such data); NaN when no class has both.
    """

    name = "auroc"
    gather = True

    def batch_stats(self, xp: Any, pred: Any, target: Any) -> tuple[Any, int]:
        n = int(pred.shape[0])
        if pred.ndim == 2 and pred.shape[1] > 1:
            c = int(pred.shape[1])
            labels = indexable_labels(xp, _class_labels(xp, pred, target), c)
            top = xp.max(pred, axis=1, keepdims=True)
            e = xp.exp(pred - top)
            scores = e / xp.sum(e, axis=1, keepdims=True)
        else:
            _predictions_and_labels(xp, pred, target)  # the shape checks
            labels = _positive(xp, target, n, pred.dtype)
            scores = xp.reshape(pred, (n, 1))
        return xp.concat([scores, xp.astype(labels, pred.dtype)[:, None]], axis=1), n

    def value(self, total: Any) -> float:
        rows = np.asarray(total, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[0] == 0:
            return float("nan")
        scores, labels = rows[:, :-1], rows[:, -1]
        if scores.shape[1] == 1:
            return binary_auroc(scores[:, 0], labels > 0.5)
        classes = labels.astype(np.int64)
        areas = [binary_auroc(scores[:, k], classes == k) for k in range(scores.shape[1])]
        defined = [a for a in areas if not math.isnan(a)]
        return float(np.mean(defined)) if defined else float("nan")


METRICS = (
    "accuracy",
    "topK_accuracy (e.g. top5_accuracy)",
    "mae",
    "mse",
    "bits_per_char",
    "precision",
    "recall",
    "f1 (also precision_/recall_/f1_ + macro, micro, weighted)",
    "auroc",
)

# the metrics of regression outputs (the rest take class logits)
REGRESSION_METRICS = ("mae", "mse")


def metric_names(value: Any) -> list[str]:
    """Metric names from ``"accuracy,f1"`` or a list of strings (lower-cased), each one that
    :func:`get_metric` knows, none twice; ValueError with a one-line reason otherwise."""
    if isinstance(value, str):
        names = [p.strip().lower() for p in value.split(",")]
        if len(names) > 1 and not all(names):
            raise ValueError(f"has an empty metric name (a stray comma?): {value!r}")
        names = [n for n in names if n]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        names = [v.strip().lower() for v in value]
    else:
        raise ValueError(
            f"expected comma-separated metric names such as accuracy,f1, got {value!r}"
        )
    if not names:
        raise ValueError("needs at least one metric name, such as accuracy")
    for name in names:
        get_metric(name)
    if len(set(names)) < len(names):
        raise ValueError(f"names a metric twice: {value!r}")
    return names


def get_metric(spec: str | Metric) -> Metric:
    """A fresh metric from a name in :data:`METRICS` (or a :class:`Metric`, returned as is)."""
    if isinstance(spec, Metric):
        return spec
    if spec == "accuracy":
        return Accuracy()
    if spec == "mae":
        return MeanAbsoluteError()
    if spec == "mse":
        return MeanSquaredError()
    if spec == "bits_per_char":
        return BitsPerCharacter()
    if not isinstance(spec, str):
        raise TypeError(
            f"a metric must be a name or an nnx.metrics.Metric, got {type(spec).__name__} "
            f"{getattr(spec, '__name__', spec)!r}; wrap a function in a Metric subclass that "
            f"implements batch_stats(xp, pred, target) (see 'Custom metrics' in "
            f"docs/custom-layer.md)"
        )
    if spec == "auroc":
        return AUROC()
    match = re.fullmatch(r"(precision|recall|f1)(?:_(macro|micro|weighted))?", spec)
    if match:
        return PrecisionRecallF1(match.group(1), match.group(2))
    match = re.fullmatch(r"top(\d+)_accuracy", spec)
    if match:
        return TopKAccuracy(int(match.group(1)))
    raise ValueError(f"unknown metric {spec!r}; choose from {', '.join(METRICS)}")
