"""Losses with fused, numerically stable backward passes.

``loss(pred, target)`` returns a 0-d array; ``loss.backward()`` returns ``dL/dpred``. Each loss
checks that the target fits (shape, dtype, device) before computing anything.

>>> import numpy as np, nnx
>>> loss = nnx.MSELoss()
>>> float(loss(np.array([1.0, 3.0]), np.array([0.0, 1.0])))
2.5
>>> loss.backward()
array([1., 2.])
"""

from __future__ import annotations

import math
from typing import Any

from .backend import device, namespace, to_numpy
from .checks import check_floating, check_same_device, check_same_dtype, dtype_name, require_forward
from .module import Module

REDUCTIONS = ("mean", "sum")


class Loss(Module):
    """Base class of losses: validates ``reduction`` and scales the backward pass by ``grad_out``.

    A subclass implements ``forward(pred, target)``: it checks its inputs (with
    :meth:`check_pred` or :meth:`check_same_shape_target`), records ``dL/dpred`` with
    :meth:`save_grad` and returns :meth:`reduce` of its per-element (or per-sample) values; the
    base :meth:`backward` returns the saved gradient. :meth:`reduction_scale` gives the ``1/N``
    that the mean puts into the gradient. Every helper is public: see "Custom losses" in
    ``docs/custom-layer.md``.
    """

    def __init__(self, reduction: str = "mean"):
        if reduction not in REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: reduction must be 'mean' or 'sum', got {reduction!r}"
            )
        self.reduction = reduction
        self._grad = None

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"

    def __call__(self, pred: Any, target: Any) -> Any:
        return self.forward(pred, target)

    def forward(self, pred: Any, target: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_out: Any = None) -> Any:
        """``dL/dpred``; ``grad_out`` (a number or 0-d array) scales it, for use inside a larger graph."""
        grad = require_forward(self._grad, type(self).__name__)
        return grad if grad_out is None else grad_out * grad

    # ------------------------------------------------------------------ helpers for subclasses
    def save_grad(self, grad: Any) -> None:
        """Record ``dL/dpred`` in ``forward``; :meth:`backward` returns it."""
        self._grad = grad

    def reduce(self, values: Any) -> Any:
        """``mean(values)`` or ``sum(values)`` as the ``reduction`` option says, as a 0-d array."""
        xp = namespace(values)
        total = xp.mean(values) if self.reduction == "mean" else xp.sum(values)
        return xp.asarray(total)  # NumPy reductions return scalars; the API promises a 0-d array

    def reduction_scale(self, pred: Any) -> float:
        """The factor the reduction puts into the gradient: ``1/N`` for the mean over the ``N``
        elements of ``pred``, 1 for the sum."""
        return 1.0 / math.prod(pred.shape) if self.reduction == "mean" else 1.0

    def check_pred(self, pred: Any) -> Any:
        """Check that ``pred`` is a non-empty floating array; returns its namespace ``xp``."""
        xp = namespace(pred)
        check_floating(xp, pred, type(self).__name__, "prediction")
        if math.prod(pred.shape) == 0:
            raise ValueError(
                f"{type(self).__name__}: prediction of shape {tuple(pred.shape)} is empty"
            )
        return xp

    def check_same_shape_target(self, pred: Any, target: Any) -> Any:
        """For element-wise losses: check that ``target`` is a floating array of exactly the
        prediction's shape, dtype, library and device (no broadcasting); returns ``xp``."""
        who = type(self).__name__
        xp = self.check_pred(pred)
        if namespace(target) is not xp:
            raise TypeError(
                f"{who}: target is a {type(target).__name__}, prediction a {type(pred).__name__}"
            )
        if tuple(target.shape) != tuple(pred.shape):
            raise ValueError(
                f"{who}: target shape {tuple(target.shape)} does not match prediction shape "
                f"{tuple(pred.shape)} (no broadcasting: reshape the target)"
            )
        check_floating(xp, target, who, "target")
        check_same_dtype(target, pred, who, "target", "prediction")
        check_same_device(target, pred, who, "target", "prediction")
        return xp

    # The names these helpers had before they were public, kept for code written against them.
    _check_pred = check_pred
    _check_same_shape_target = check_same_shape_target
    _scale = reduction_scale

    def _reduce(self, xp: Any, values: Any) -> Any:
        return self.reduce(values)


def not_a_loss_message(who: str, obj: Any) -> str:
    """The error text for a plain function (or other object) passed where a Loss is expected."""
    name = getattr(obj, "__name__", None)
    what = f"the {type(obj).__name__} {name!r}" if name else f"a {type(obj).__name__}"
    text = f"{who}: the loss must be an nnx.Loss, got {what}"
    if callable(obj):
        text += (
            ". A loss needs a backward pass as well as a value: wrap it in a subclass, "
            "class MyLoss(nnx.Loss), whose forward(pred, target) calls self.save_grad(dL/dpred) "
            "and returns self.reduce(values) (see 'Custom losses' in docs/custom-layer.md)"
        )
    return text


class MSELoss(Loss):
    """Mean squared error ``L = mean((pred - target)^2)``; ``dL/dpred = 2 (pred - target) / N``."""

    def forward(self, pred: Any, target: Any) -> Any:
        self.check_same_shape_target(pred, target)
        diff = pred - target
        self.save_grad((2.0 * self.reduction_scale(pred)) * diff)
        return self.reduce(diff * diff)


class L1Loss(Loss):
    """Mean absolute error ``L = mean(|pred - target|)``; ``dL/dpred = sign(pred - target) / N``
    (0 where ``pred == target``)."""

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self.check_same_shape_target(pred, target)
        diff = pred - target
        self.save_grad(self.reduction_scale(pred) * xp.sign(diff))
        return self.reduce(xp.abs(diff))


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits ``z`` with targets ``t`` in [0, 1]:
    ``L = mean(max(z, 0) - z t + log(1 + exp(-|z|)))`` (never overflows);
    ``dL/dz = (sigmoid(z) - t) / N``."""

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self.check_same_shape_target(pred, target)
        z, t = pred, target
        sigmoid = 0.5 + 0.5 * xp.tanh(0.5 * z)
        self.save_grad(self.reduction_scale(z) * (sigmoid - t))
        return self.reduce(xp.maximum(z, 0) - z * t + xp.log1p(xp.exp(-xp.abs(z))))


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits of shape ``(N, C)``.

    Targets are integer class labels of shape ``(N,)`` or probabilities (one-hot or soft) of
    shape ``(N, C)`` and the logits' dtype. With ``p = softmax(z)``:
    ``L = -mean_n sum_c t_nc log p_nc`` and ``dL/dz = (p * sum_c t_nc - t) / N``
    (``= (p - t) / N`` when each target row sums to one). The log-softmax subtracts the row
    maximum first, so finite logits of any magnitude (float32 up to its largest value) give
    finite values, and ``-inf`` logits mask classes: a class whose target is 0 adds nothing, as
    in PyTorch. The loss is ``inf`` only when a target class itself is masked, and NaN when a
    whole row is ``-inf`` or a logit is ``+inf`` or NaN (PyTorch gives the same).

    Args:
        reduction: ``"mean"`` over samples (default) or ``"sum"``.
        check_labels: check that integer labels lie in ``[0, C)``. This reads two numbers back
            to the host (a device synchronisation on a GPU); turn it off in tight GPU loops once
            the data is known to be valid.
    """

    def __init__(self, reduction: str = "mean", check_labels: bool = True):
        super().__init__(reduction)
        self.check_labels = bool(check_labels)

    def _targets(self, xp: Any, logits: Any, target: Any) -> tuple[Any, bool]:
        """The target as an ``(N, C)`` array of the logits' dtype, and whether it is one-hot."""
        who = "CrossEntropyLoss"
        n, c = logits.shape
        if namespace(target) is not xp:
            raise TypeError(
                f"{who}: target is a {type(target).__name__}, logits a {type(logits).__name__}"
            )
        check_same_device(target, logits, who, "target", "logits")
        if xp.isdtype(target.dtype, "integral"):
            if tuple(target.shape) != (n,):
                raise ValueError(
                    f"{who}: integer class labels must have shape ({n},) for logits of shape "
                    f"({n}, {c}), got {tuple(target.shape)}"
                )
            if self.check_labels:
                lo, hi = int(to_numpy(xp.min(target))), int(to_numpy(xp.max(target)))
                if lo < 0 or hi >= c:
                    raise ValueError(
                        f"{who}: class labels must lie in [0, {c - 1}] for {c} classes, "
                        f"got labels from {lo} to {hi}"
                    )
            classes = xp.arange(c, dtype=target.dtype, device=device(logits))
            return xp.astype(target[:, None] == classes, logits.dtype), True
        if xp.isdtype(target.dtype, "real floating"):
            if tuple(target.shape) != (n, c):
                raise ValueError(
                    f"{who}: probability targets must have the logits' shape ({n}, {c}), got "
                    f"{tuple(target.shape)}; integer class labels of shape ({n},) also work"
                )
            check_same_dtype(target, logits, who, "target", "logits")
            return target, False
        raise TypeError(
            f"{who}: target must hold integer class labels or floating probabilities, "
            f"got dtype {dtype_name(target.dtype)}"
        )

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self.check_pred(pred)
        if pred.ndim != 2:
            raise ValueError(
                f"CrossEntropyLoss: logits must have shape (N, C), got {tuple(pred.shape)}"
            )
        t, one_hot = self._targets(xp, pred, target)
        row_max = xp.max(pred, axis=1, keepdims=True)
        # pred - row_max overflows (with a NumPy warning) where a logit lies more than the
        # largest float below its row's maximum: clamp to that floor, then make those -inf.
        floor = xp.where(row_max > 0.0, row_max, xp.zeros_like(row_max)) - xp.finfo(pred.dtype).max
        shifted = xp.maximum(pred, floor) - row_max
        shifted = xp.where(pred < floor, xp.full_like(shifted, -math.inf), shifted)
        e = xp.exp(shifted)
        total = xp.sum(e, axis=1, keepdims=True)
        scale = 1.0 / pred.shape[0] if self.reduction == "mean" else 1.0
        p = e / total
        # A masked (-inf) logit, or a float32 logit far below the row maximum, shifts to -inf;
        # where its target is 0 the term 0 * -inf is NaN, but its limit (and PyTorch's) is 0.
        t_shifted = t * xp.where(t == 0.0, xp.zeros_like(shifted), shifted)
        if one_hot:  # rows of t sum to one: -sum_c t log p = log(total) - sum_c t * shifted
            self.save_grad(scale * (p - t))
            per_sample = xp.log(total[:, 0]) - xp.sum(t_shifted, axis=1)
        else:
            t_sum = xp.sum(t, axis=1, keepdims=True)
            self.save_grad(scale * (p * t_sum - t))
            per_sample = t_sum[:, 0] * xp.log(total[:, 0]) - xp.sum(t_shifted, axis=1)
        return self.reduce(per_sample)
