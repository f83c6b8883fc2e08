"""The Loss base class: reductions, target checks and the saved gradient every loss shares.

A loss computes its value and ``dL/dpred`` in ``forward`` and saves the gradient with
:meth:`Loss.save_grad`; ``backward(grad_out)`` returns it scaled by ``grad_out``.
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import namespace
from ..core.checks import (
    check_floating,
    check_grad,
    check_same_device,
    check_same_dtype,
    require_forward,
    widened,
)
from ..core.module import Module

REDUCTIONS = ("mean", "sum", "none")


class Loss(Module):
    """Base class of losses: validates ``reduction`` and scales the backward pass by ``grad_out``.

    A subclass implements ``forward(pred, target)``: it checks its inputs (with
    :meth:`check_pred` or :meth:`check_same_shape_target`), records ``dL/dpred`` with
    :meth:`save_grad` and returns :meth:`reduce` of its per-element (or per-sample) values; the
    base :meth:`backward` returns the saved gradient. :meth:`reduction_scale` gives the ``1/N``
    that the mean puts into the gradient. Every helper is public: see "Custom losses" in
    ``docs/custom-layer.md``.

    ``reduction="none"`` returns the unreduced per-element (or per-sample) values; its
    ``backward(grad_out)`` then takes ``grad_out`` of that shape (None means all ones, the
    gradient of their sum).
    """

    _reductions: tuple[str, ...] = REDUCTIONS

    def __init__(self, reduction: str = "mean"):
        if reduction not in self._reductions:
            names = ", ".join(repr(r) for r in self._reductions)
            raise ValueError(
                f"{type(self).__name__}: reduction must be one of {names}, got {reduction!r}"
            )
        self.reduction = reduction
        self._grad = None
        self._out_shape: tuple[int, ...] = ()
        self._narrow: Any = None  # the 16-bit dtype that widen() computes above, or None

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"

    def __call__(self, *inputs: Any) -> Any:
        return self.forward(*inputs)

    def forward(self, pred: Any, target: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_out: Any = None) -> Any:
        """``dL/dpred``; ``grad_out`` (a number or 0-d array) scales it, for use inside a larger
        graph. With ``reduction="none"`` it may also be an array of the loss's output shape."""
        grad = require_forward(self._grad, type(self).__name__)
        if grad_out is None:
            return grad
        if self.reduction == "none" and getattr(grad_out, "ndim", 0) > 0:
            check_grad(grad_out, self._out_shape, type(self).__name__)
            return self._expand(grad_out) * grad
        return grad_out * grad

    def _expand(self, grad_out: Any) -> Any:
        """``grad_out`` of the unreduced loss's shape, broadcastable to the prediction's shape."""
        return grad_out

    # ------------------------------------------------------------------ helpers for subclasses
    def widen(self, pred: Any, *others: Any) -> tuple[Any, ...]:
        """``(pred, *others)`` with every 16-bit float (float16, bfloat16) in float32, so the
        loss computes, sums and counts in at least float32; :meth:`save_grad`, :meth:`reduce`
        and :meth:`narrow` then cast the gradient and the loss back to ``pred``'s dtype.
        Integer arrays pass unchanged. Call it first in ``forward``, after the checks."""
        xp = namespace(pred)
        wide = widened(xp, pred)
        self._narrow = None if wide is pred else pred.dtype
        return (wide, *(widened(xp, a) for a in others))

    def narrow(self, x: Any) -> Any:
        """``x`` in the prediction's dtype when :meth:`widen` computed above it, else ``x``."""
        if self._narrow is None or x.dtype == self._narrow:
            return x
        return namespace(x).astype(x, self._narrow)

    def save_grad(self, grad: Any) -> None:
        """Record ``dL/dpred`` in ``forward``; :meth:`backward` returns it."""
        self._grad = self.narrow(grad)

    def reduce(self, values: Any) -> Any:
        """``mean(values)`` or ``sum(values)`` as the ``reduction`` option says, as a 0-d array,
        accumulated in at least float32; ``values`` themselves for ``reduction="none"``."""
        xp = namespace(values)
        if self.reduction == "none":
            self._out_shape = tuple(values.shape)
            return self.narrow(values)
        wide = widened(xp, values)
        total = xp.mean(wide) if self.reduction == "mean" else xp.sum(wide)
        # NumPy reductions return scalars; the API promises a 0-d array
        total = xp.asarray(total)
        return self.narrow(total if wide is values else xp.astype(total, values.dtype))

    def reduction_scale(self, pred: Any) -> float:
        """The factor the reduction puts into the gradient: ``1/N`` for the mean over the ``N``
        elements of ``pred``, 1 for the sum and for ``"none"``."""
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
