"""Losses of several differentiable inputs for ranking and metric learning: margin ranking,
cosine embedding and the triplet losses. ``backward`` returns one gradient per differentiable
input, as a tuple in argument order (``(d_x1, d_x2)``, ``(d_anchor, d_positive, d_negative)``).

Their hinges use PyTorch's ``clamp_min`` subgradient: at ``margin + ... = 0`` exactly the
gradient passes (as if the hinge were active).
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import namespace
from ..core.calls import call_backward, capture_call_state, restore_call_state, restore_final_state
from ..core.module import Module
from .base import Loss
from .margin import _finite


def _check_triplet(loss: Loss, anchor: Any, positive: Any, negative: Any, shape: bool) -> Any:
    xp = loss.check_pred(anchor)
    if anchor.ndim == 0:
        raise ValueError(f"{type(loss).__name__}: inputs need a feature axis, got shape ()")
    for x, what in ((positive, "positive"), (negative, "negative")):
        loss.check_input_like(x, anchor, what, "anchor", shape=shape)
        if x.ndim != anchor.ndim:
            raise ValueError(
                f"{type(loss).__name__}: anchor, positive and negative must have the same number "
                f"of dimensions, got {anchor.ndim}, {positive.ndim} and {negative.ndim}"
            )
    return xp


def pairwise_distance(xp: Any, v: Any, p: float) -> tuple[Any, Any]:
    """``||v||_p`` over the last axis and its gradient with respect to ``v`` (PyTorch's: 0 where
    the norm is 0; for ``p = inf`` shared equally between the entries that tie for the maximum)."""
    a = xp.abs(v)
    if p == 1.0:
        return xp.sum(a, axis=-1), xp.sign(v)
    if p == math.inf:
        d = xp.max(a, axis=-1)
        top = xp.astype(a == xp.expand_dims(d, axis=-1), v.dtype)
        return d, xp.sign(v) * top / xp.sum(top, axis=-1, keepdims=True)
    if p == 2.0:
        d = xp.sqrt(xp.sum(v * v, axis=-1))
    else:
        d = xp.sum(a**p, axis=-1) ** (1.0 / p)
    zero = xp.expand_dims(d == 0.0, axis=-1)
    safe_d = xp.where(zero, xp.ones_like(v), xp.expand_dims(d, axis=-1))
    if p == 2.0:
        return d, xp.where(zero, xp.zeros_like(v), v / safe_d)
    safe_a = xp.where(a == 0.0, xp.ones_like(a), a)  # 0^(p-1) is 0 (p > 1) or masked (p < 1)
    grad = xp.where(a == 0.0, xp.zeros_like(v), xp.sign(v) * safe_a ** (p - 1.0))
    return d, xp.where(zero, xp.zeros_like(v), grad / safe_d ** (p - 1.0))


def _hinge(xp: Any, z: Any) -> tuple[Any, Any]:
    """``max(z, 0)`` and its ``clamp_min`` subgradient ``[z >= 0]``."""
    return xp.maximum(z, 0.0), xp.astype(z >= 0.0, z.dtype)


def _minimum_weights(xp: Any, a: Any, b: Any) -> tuple[Any, Any]:
    """The share of ``minimum(a, b)``'s gradient that goes to ``a`` and to ``b`` (half each
    at a tie, as PyTorch's ``minimum``)."""
    to_a = xp.where(
        a < b, xp.ones_like(a), xp.where(a == b, 0.5 * xp.ones_like(a), xp.zeros_like(a))
    )
    return to_a, 1.0 - to_a


class MarginRankingLoss(Loss):
    """Margin ranking loss of two score arrays ``x1``, ``x2`` and labels ``y`` (+1: ``x1``
    should rank higher, -1: ``x2`` should; integer or floating), all of one shape::

        loss = max(0, -y (x1 - x2) + margin)
        dloss/dx1 = -y [z >= 0],   dloss/dx2 = y [z >= 0],   z = -y (x1 - x2) + margin

    ``loss(x1, x2, y)``; ``backward()`` returns ``(d_x1, d_x2)``.

    Args: ``margin`` (default 0) and ``reduction`` (keyword only).

    >>> import numpy as np, nnx
    >>> loss = nnx.MarginRankingLoss(margin=0.5)
    >>> float(loss(np.array([1.0, 0.2]), np.array([0.8, 0.0]), np.array([1, -1])))
    0.5
    >>> loss.backward()
    (array([-0.5,  0.5]), array([ 0.5, -0.5]))
    """

    def __init__(self, margin: float = 0.0, *, reduction: str = "mean"):
        super().__init__(reduction)
        self.margin = _finite(margin, "margin", "MarginRankingLoss")

    def extra_repr(self) -> str:
        return f"margin={self.margin}, {super().extra_repr()}"

    def forward(self, x1: Any, x2: Any, y: Any) -> Any:
        xp = self.check_pred(x1)
        self.check_input_like(x2, x1, "x2", "x1")
        self.check_input_like(y, x1, "target", "x1", integer=True)
        x1, x2, y = self.widen(x1, x2, y)
        y = self.as_float(y, x1)
        values, active = _hinge(xp, self.margin - y * (x1 - x2))
        d1 = (-self.reduction_scale(x1)) * y * active
        self.save_grad(d1, -d1)
        return self.reduce(values)


class CosineEmbeddingLoss(Loss):
    """Cosine embedding loss of two embedding arrays ``x1``, ``x2`` of shape ``(N, D)`` (or
    ``(D,)``) with labels ``y`` of shape ``(N,)`` (or ``()``): +1 for pairs that should point the
    same way, -1 for pairs that should not (integer or floating)::

        cos = x1 . x2 / sqrt((|x1|^2 + 1e-12) (|x2|^2 + 1e-12))
        loss = 1 - cos               where y = 1
               max(0, cos - margin)  where y = -1      (0 for any other label)

    ``loss(x1, x2, y)``; ``backward()`` returns ``(d_x1, d_x2)``, with
    ``dcos/dx1 = x2 / sqrt(m1 m2) - cos x1 / m1`` (``m = |x|^2 + 1e-12``, PyTorch's epsilon).

    Args: ``margin`` (default 0; -1 to 1 is meaningful) and ``reduction`` (keyword only).
    """

    _EPS = 1e-12

    def __init__(self, margin: float = 0.0, *, reduction: str = "mean"):
        super().__init__(reduction)
        self.margin = _finite(margin, "margin", "CosineEmbeddingLoss")

    def extra_repr(self) -> str:
        return f"margin={self.margin}, {super().extra_repr()}"

    def _expand(self, grad_out: Any) -> Any:
        return namespace(grad_out).expand_dims(grad_out, axis=-1)

    def forward(self, x1: Any, x2: Any, y: Any) -> Any:
        who = "CosineEmbeddingLoss"
        xp = self.check_pred(x1)
        if x1.ndim not in (1, 2):
            raise ValueError(f"{who}: inputs must have shape (N, D) or (D,), got {tuple(x1.shape)}")
        self.check_input_like(x2, x1, "x2", "x1")
        if tuple(getattr(y, "shape", ())) != tuple(x1.shape[:-1]):
            raise ValueError(
                f"{who}: target must have shape {tuple(x1.shape[:-1])} for inputs of shape "
                f"{tuple(x1.shape)}, got {tuple(getattr(y, 'shape', ()))}"
            )
        self.check_input_like(y, x1, "target", "x1", integer=True, shape=False)
        x1, x2, y = self.widen(x1, x2, y)
        y = self.as_float(y, x1)
        m1 = xp.sum(x1 * x1, axis=-1) + self._EPS
        m2 = xp.sum(x2 * x2, axis=-1) + self._EPS
        denom = xp.sqrt(m1 * m2)
        cos = xp.sum(x1 * x2, axis=-1) / denom
        zero = xp.zeros_like(cos)
        similar, dissimilar = y == 1.0, y == -1.0
        hinge, active = _hinge(xp, cos - self.margin)
        values = xp.where(similar, 1.0 - cos, zero) + xp.where(dissimilar, hinge, zero)
        dcos = xp.where(dissimilar, active, zero) - xp.astype(similar, cos.dtype)
        dcos = xp.expand_dims(dcos * self.reduction_scale(values), axis=-1)
        cos_, denom_ = xp.expand_dims(cos, axis=-1), xp.expand_dims(denom, axis=-1)
        d1 = dcos * (x2 / denom_ - cos_ * x1 / xp.expand_dims(m1, axis=-1))
        d2 = dcos * (x1 / denom_ - cos_ * x2 / xp.expand_dims(m2, axis=-1))
        self.save_grad(d1, d2)
        return self.reduce(values)


def _triplet(
    loss: Loss, a: Any, p: Any, n: Any, margin: float, norm: float, eps: float, swap: bool
) -> Any:
    """The triplet loss with the pairwise distance ``||x - y + eps||_norm`` over the last axis:
    saves ``(d_anchor, d_positive, d_negative)`` and returns the reduced loss."""
    xp = namespace(a)
    a, p, n = loss.widen(a, p, n)
    d_pos, g_pos = pairwise_distance(xp, a - p + eps, norm)
    d_neg, g_neg = pairwise_distance(xp, a - n + eps, norm)
    if swap:
        d_swap, g_swap = pairwise_distance(xp, p - n + eps, norm)
        to_neg, to_swap = _minimum_weights(xp, d_neg, d_swap)
        d_neg = xp.minimum(d_neg, d_swap)
    values, active = _hinge(xp, margin + d_pos - d_neg)
    active = xp.expand_dims(active * loss.reduction_scale(values), axis=-1)
    if swap:
        neg = active * xp.expand_dims(to_neg, axis=-1) * g_neg
        other = active * xp.expand_dims(to_swap, axis=-1) * g_swap
        loss.save_grad(active * g_pos - neg, -active * g_pos - other, neg + other)
    else:
        loss.save_grad(active * (g_pos - g_neg), -active * g_pos, active * g_neg)
    return loss.reduce(values)


class TripletMarginLoss(Loss):
    """Triplet loss of anchors ``a``, positives ``p`` and negatives ``n``, all of one shape
    ``(N, D)`` (or ``(D,)``; any leading axes, distances over the last)::

        d(x, y) = ||x - y + eps||_p
        loss = max(0, margin + d(a, p) - d(a, n))

    With ``swap=True`` the negative distance is ``min(d(a, n), d(p, n))`` (Balntas et al.; at a
    tie each receives half the gradient, as in PyTorch). ``loss(a, p, n)``; ``backward()``
    returns ``(d_a, d_p, d_n)``. The norm's gradient is 0 where the distance is 0.

    Args: ``margin`` (default 1), ``p`` (the norm's order: any number > 0 or ``math.inf``;
    default 2), ``eps`` (default 1e-6), ``swap`` and ``reduction`` (keyword only).
    """

    def __init__(
        self,
        margin: float = 1.0,
        p: float = 2.0,
        eps: float = 1e-6,
        swap: bool = False,
        *,
        reduction: str = "mean",
    ):
        super().__init__(reduction)
        who = "TripletMarginLoss"
        self.margin = _finite(margin, "margin", who)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not p > 0 or math.isnan(p):
            raise ValueError(f"{who}: p must be a number > 0 (or math.inf), got {p!r}")
        self.p = float(p)
        self.eps = _finite(eps, "eps", who)
        self.swap = bool(swap)

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, p={self.p}, eps={self.eps}, swap={self.swap}, "
            f"{super().extra_repr()}"
        )

    def _expand(self, grad_out: Any) -> Any:
        return namespace(grad_out).expand_dims(grad_out, axis=-1)

    def forward(self, anchor: Any, positive: Any, negative: Any) -> Any:
        _check_triplet(self, anchor, positive, negative, shape=True)
        return _triplet(self, anchor, positive, negative, self.margin, self.p, self.eps, self.swap)


class TripletMarginWithDistanceLoss(Loss):
    """Triplet loss with any distance: ``loss = max(0, margin + d(a, p) - d(a, n))``, with
    ``d(a, n)`` replaced by ``min(d(a, n), d(p, n))`` when ``swap=True``.

    ``distance_function`` is None (the Euclidean pairwise distance ``||x - y + 1e-6||_2`` over
    the last axis, as ``TripletMarginLoss(p=2)``) or an nnx module of two inputs that returns
    one distance per triplet and whose ``backward`` returns ``(d_x, d_y)``; it is called two
    (three with ``swap``) times per forward, each call differentiated at its own inputs, and its
    parameters (if any) receive the sum of the calls' gradients. ``loss(a, p, n)``;
    ``backward()`` returns ``(d_a, d_p, d_n)``.

    Args (keyword only, as in PyTorch): ``distance_function``, ``margin`` (> 0, default 1),
    ``swap`` and ``reduction``.
    """

    def __init__(
        self,
        *,
        distance_function: Any = None,
        margin: float = 1.0,
        swap: bool = False,
        reduction: str = "mean",
    ):
        super().__init__(reduction)
        who = "TripletMarginWithDistanceLoss"
        if distance_function is not None and not isinstance(distance_function, Module):
            name = getattr(distance_function, "__name__", type(distance_function).__name__)
            raise TypeError(
                f"{who}: distance_function must be None or an nnx Module of two inputs whose "
                f"backward returns (d_x, d_y), got {name!r} (a plain function has no backward)"
            )
        self.distance_function = distance_function
        self.margin = _finite(margin, "margin", who)
        if self.margin <= 0:
            raise ValueError(f"{who}: margin must be > 0, got {margin!r}")
        self.swap = bool(swap)
        self._calls: list[Any] = []

    def extra_repr(self) -> str:
        return f"margin={self.margin}, swap={self.swap}, {super().extra_repr()}"

    def _expand(self, grad_out: Any) -> Any:
        if self.distance_function is not None:  # the saved gradients are per triplet
            return grad_out
        return namespace(grad_out).expand_dims(grad_out, axis=-1)

    def forward(self, anchor: Any, positive: Any, negative: Any) -> Any:
        fn = self.distance_function
        _check_triplet(self, anchor, positive, negative, shape=fn is None)
        if fn is None:
            return _triplet(self, anchor, positive, negative, self.margin, 2.0, 1e-6, self.swap)
        xp = namespace(anchor)
        pairs = [(anchor, positive), (anchor, negative)] + (
            [(positive, negative)] if self.swap else []
        )
        distances, self._calls = [], []
        for x, y in pairs:
            d = fn(x, y)
            if getattr(d, "shape", None) != tuple(anchor.shape[:-1]):
                raise ValueError(
                    f"TripletMarginWithDistanceLoss: distance_function must return one distance "
                    f"per triplet, shape {tuple(anchor.shape[:-1])}, got "
                    f"{tuple(getattr(d, 'shape', ()))}"
                )
            distances.append(d)
            self._calls.append(capture_call_state(fn))
        distances = self.widen(*distances)
        d_pos, d_neg = distances[0], distances[1]
        if self.swap:
            to_neg, to_swap = _minimum_weights(xp, d_neg, distances[2])
            d_neg = xp.minimum(d_neg, distances[2])
        values, active = _hinge(xp, self.margin + d_pos - d_neg)
        active = active * self.reduction_scale(values)
        if self.swap:
            self.save_grad(active, -active * to_neg, -active * to_swap)
        else:
            self.save_grad(active, -active)
        return self.reduce(values)

    def backward(self, grad_out: Any = None) -> Any:
        grads = super().backward(grad_out)
        if self.distance_function is None:
            return grads
        # each call's backward at its own inputs; an input used by two calls sums both
        total: dict[str, Any] = {"a": None, "p": None, "n": None}
        pairs = [("a", "p"), ("a", "n"), ("p", "n")][: len(self._calls)]
        for (left, right), state, g in zip(pairs, self._calls, grads, strict=True):
            restore_call_state(state)
            gx, gy = call_backward(self.distance_function, g, True)
            for key, value in ((left, gx), (right, gy)):
                total[key] = value if total[key] is None else total[key] + value
        restore_final_state(self._calls)
        return total["a"], total["p"], total["n"]
