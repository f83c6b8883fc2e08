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

from .backend import device, namespace, to_numpy
from .core.checks import indexable_labels, widened


class Metric:
    """Base class: ``update(pred, target)`` per batch, ``compute()`` at the end.

    A subclass sets ``name`` (the key in the logs) and implements
    ``batch_stats(xp, pred, target) -> (device_sum, count)``: the sum of the metric's terms over
    one batch as a 0-d array on the device, and how many terms it summed. The metric is
    ``total / count`` over the epoch; override :meth:`value` for anything else. ``total`` is the
    running sum as a 0-d device array, ``count`` the number of terms summed. See "Custom metrics"
    in ``docs/custom-layer.md``.

    16-bit floating predictions and targets (float16, bfloat16) reach ``batch_stats`` in float32,
    so sums and the running total accumulate in at least float32.
    """

    name = "metric"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total: Any = None
        self.count = 0

    def update(self, pred: Any, target: Any) -> None:
        xp = namespace(pred)
        pred = widened(xp, pred)
        if xp.isdtype(target.dtype, "real floating"):
            target = widened(xp, target)
        batch_sum, count = self.batch_stats(xp, pred, target)
        batch_sum = xp.astype(batch_sum, pred.dtype)
        self.total = batch_sum if self.total is None else self.total + batch_sum
        self.count += count

    def value(self, total: float) -> float:
        """The metric from the host value of :attr:`total`."""
        return float(total) / self.count if self.count else float("nan")

    def compute(self) -> float:
        """The metric now (one host synchronisation; the Trainer batches these)."""
        return self.value(float(to_numpy(self.total)) if self.total is not None else 0.0)

    def batch_stats(self, xp: Any, pred: Any, target: Any) -> tuple[Any, int]:
        """``(sum of this batch's terms as a 0-d device array, number of terms)``."""
        return self._batch(xp, pred, target)

    def _batch(self, xp: Any, pred: Any, target: Any) -> tuple[Any, int]:
        # the name of batch_stats before it was public; subclasses override either
        raise NotImplementedError(f"{type(self).__name__} does not implement batch_stats")


def _class_labels(xp: Any, pred: Any, target: Any) -> Any:
    """Integer labels from integer targets or one-hot / probability rows."""
    if xp.isdtype(target.dtype, "integral"):
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
            correct = predicted == xp.astype(labels, predicted.dtype)
        else:
            predicted = xp.reshape(pred, (n,)) > 0
            correct = predicted == (xp.reshape(target, (n,)) > 0.5)
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


METRICS = (
    "accuracy",
    "topK_accuracy (e.g. top5_accuracy)",
    "mae",
    "mse",
    "bits_per_char",
)


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
    match = re.fullmatch(r"top(\d+)_accuracy", spec)
    if match:
        return TopKAccuracy(int(match.group(1)))
    raise ValueError(f"unknown metric {spec!r}; choose from {', '.join(METRICS)}")
