"""Regression losses: squared, absolute and Huber errors between predictions and float targets
of the same shape."""

from __future__ import annotations

from typing import Any

from ..core.checks import non_negative
from .base import Loss


class MSELoss(Loss):
    """Mean squared error ``L = mean((pred - target)^2)``; ``dL/dpred = 2 (pred - target) / N``."""

    def forward(self, pred: Any, target: Any) -> Any:
        self.check_same_shape_target(pred, target)
        pred, target = self.widen(pred, target)
        diff = pred - target
        self.save_grad((2.0 * self.reduction_scale(pred)) * diff)
        return self.reduce(diff * diff)


class L1Loss(Loss):
    """Mean absolute error ``L = mean(|pred - target|)``; ``dL/dpred = sign(pred - target) / N``
    (0 where ``pred == target``)."""

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self.check_same_shape_target(pred, target)
        pred, target = self.widen(pred, target)
        diff = pred - target
        self.save_grad(self.reduction_scale(pred) * xp.sign(diff))
        return self.reduce(xp.abs(diff))


class HuberLoss(Loss):
    """``loss = 0.5 d^2`` where ``|d| <= delta``, else ``delta (|d| - 0.5 delta)``, with
    ``d = pred - target``; ``dloss/dpred = clip(d, -delta, delta)``.

    Args: ``reduction`` (``"mean"``, ``"sum"``, ``"none"``) and ``delta > 0``.
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction)
        self.delta = non_negative(delta, "delta", "HuberLoss")
        if self.delta == 0:
            raise ValueError(f"HuberLoss: delta must be > 0, got {delta!r}")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, delta={self.delta}"

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self.check_same_shape_target(pred, target)
        pred, target = self.widen(pred, target)
        d, delta = pred - target, self.delta
        a = xp.abs(d)
        values = xp.where(a <= delta, 0.5 * d * d, delta * (a - 0.5 * delta))
        grad = xp.clip(d, -delta, delta)
        self.save_grad(self.reduction_scale(pred) * grad)
        return self.reduce(values)


class SmoothL1Loss(Loss):
    """``loss = 0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - 0.5 beta``, with
    ``d = pred - target`` (``beta = 0`` is the L1 loss); ``dloss/dpred = clip(d / beta, -1, 1)``
    (``sign(d)`` when ``beta = 0``).

    Args: ``reduction`` (``"mean"``, ``"sum"``, ``"none"``) and ``beta >= 0``.
    """

    def __init__(self, reduction: str = "mean", beta: float = 1.0):
        super().__init__(reduction)
        self.beta = non_negative(beta, "beta", "SmoothL1Loss")

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, beta={self.beta}"

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self.check_same_shape_target(pred, target)
        pred, target = self.widen(pred, target)
        d, beta = pred - target, self.beta
        a = xp.abs(d)
        if beta == 0.0:
            values, grad = a, xp.sign(d)
        else:
            values = xp.where(a < beta, (0.5 / beta) * d * d, a - 0.5 * beta)
            grad = xp.clip(d * (1.0 / beta), -1.0, 1.0)
        self.save_grad(self.reduction_scale(pred) * grad)
        return self.reduce(values)
