"""Margin losses of a prediction and its labels: the multi-class hinge (SVM) loss, the multi-label
hinge and logistic losses, the two-class logistic (soft margin) loss and the hinge embedding loss.

Every hinge ``max(0, z)`` here has PyTorch's subgradient at ``z = 0``: :class:`MultiMarginLoss`
and :class:`MultiLabelMarginLoss` count a term only where ``z > 0`` (their gradient at the corner
is 0), :class:`HingeEmbeddingLoss` clamps with ``clamp_min`` (gradient -1 at ``x = margin``).
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import device, namespace, to_numpy
from ..core.checks import check_floating, dtype_name, equals_int, indexable_labels
from .base import Loss


def softplus(xp: Any, z: Any) -> Any:
    """``log(1 + exp(z))`` as ``max(z, 0) + log1p(exp(-|z|))``: finite for every finite ``z``."""
    return xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))


def sigmoid(xp: Any, z: Any) -> Any:
    """``1 / (1 + exp(-z))`` as ``(1 + tanh(z / 2)) / 2``: no overflow for large ``|z|``."""
    return 0.5 + 0.5 * xp.tanh(0.5 * z)


def check_weight(weight: Any, who: str) -> Any:
    """A per-class weight: None or a 1-D floating array (any backend)."""
    if weight is None:
        return None
    if getattr(weight, "ndim", None) != 1:
        raise ValueError(
            f"{who}: weight must be a 1-D array with one entry per class, got "
            f"{type(weight).__name__} of shape {tuple(getattr(weight, 'shape', ()))}"
        )
    check_floating(namespace(weight), weight, who, "weight")
    return weight


def _finite(value: Any, name: str, who: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{who}: {name} must be a finite number, got {value!r}")
    return float(value)


class _LabelLoss(Loss):
    """Integer class labels: the dtype check and the optional range check (a host read)."""

    def _check_labels(self, xp: Any, pred: Any, target: Any, low: int, c: int) -> None:
        who = type(self).__name__
        if namespace(target) is not xp:
            raise TypeError(
                f"{who}: target is a {type(target).__name__}, input a {type(pred).__name__}"
            )
        if not xp.isdtype(target.dtype, "integral"):
            raise TypeError(
                f"{who}: target must hold integer class labels, got dtype "
                f"{dtype_name(target.dtype)}"
            )
        if self.check_labels and math.prod(target.shape) > 0:
            lo, hi = int(to_numpy(xp.min(target))), int(to_numpy(xp.max(target)))
            if lo < low or hi >= c:
                raise ValueError(
                    f"{who}: class labels must lie in [{low}, {c - 1}] for {c} classes, got "
                    f"labels from {lo} to {hi}"
                )


class MultiMarginLoss(_LabelLoss):
    """The multi-class hinge loss of a linear SVM (CS231n's SVM loss, divided by ``C``).

    For scores ``x`` of shape ``(N, C)`` (or ``(C,)``) and integer labels ``y`` of shape ``(N,)``
    (or ``()``/``(1,)``), with ``z_i = margin - x_y + x_i``::

        loss_n = sum_{i != y} w_y max(0, z_i)^p / C
        dloss_n/dx_i = w_y p max(0, z_i)^(p-1) / C  (i != y),   dloss_n/dx_y = -sum_{i != y} of those

    A term with ``z_i = 0`` exactly contributes no gradient (PyTorch's choice). The mean divides
    by ``N``.

    Args:
        p: 1 (hinge) or 2 (squared hinge).
        margin: the margin (default 1).
        weight: optional per-class weights ``w``, a 1-D array of ``C`` entries (any backend).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (shape of ``y``); keyword only, since
            PyTorch's deprecated ``size_average``/``reduce`` come first there.
        check_labels: check that labels lie in ``[0, C)`` (a host read; the Trainer switches it
            off inside a compiled step).

    >>> import numpy as np, nnx
    >>> loss = nnx.MultiMarginLoss()
    >>> round(float(loss(np.array([[0.1, 0.2, 0.4, 0.8]]), np.array([3]))), 6)
    0.325
    """

    def __init__(
        self,
        p: int = 1,
        margin: float = 1.0,
        weight: Any = None,
        *,
        reduction: str = "mean",
        check_labels: bool = True,
    ):
        super().__init__(reduction)
        if p not in (1, 2) or isinstance(p, bool):
            raise ValueError(f"MultiMarginLoss: p must be 1 or 2, got {p!r}")
        self.p = int(p)
        self.margin = _finite(margin, "margin", "MultiMarginLoss")
        self.weight = check_weight(weight, "MultiMarginLoss")
        self.check_labels = bool(check_labels)
        self._pred_ndim = 2

    def extra_repr(self) -> str:
        text = f"p={self.p}, margin={self.margin}, {super().extra_repr()}"
        return text + (f", weight=<{tuple(self.weight.shape)}>" if self.weight is not None else "")

    def _expand(self, grad_out: Any) -> Any:
        xp = namespace(grad_out)
        return xp.expand_dims(grad_out, axis=1) if self._pred_ndim == 2 else grad_out

    def forward(self, pred: Any, target: Any) -> Any:
        who = "MultiMarginLoss"
        xp = self.check_pred(pred)
        if pred.ndim not in (1, 2):
            raise ValueError(
                f"{who}: input must have shape (N, C) or (C,), got {tuple(pred.shape)}"
            )
        c = pred.shape[-1]
        n = pred.shape[0] if pred.ndim == 2 else 1
        expected = [(n,)] if pred.ndim == 2 else [(), (1,)]
        if tuple(getattr(target, "shape", ())) not in expected:
            raise ValueError(
                f"{who}: target must have shape {' or '.join(map(str, expected))} for input of "
                f"shape {tuple(pred.shape)}, got {tuple(getattr(target, 'shape', ()))}"
            )
        self._check_labels(xp, pred, target, 0, c)
        self._pred_ndim = pred.ndim
        (x,) = self.widen(xp.reshape(pred, (n, c)))
        y = indexable_labels(xp, xp.reshape(target, (n, 1)), c)
        onehot = xp.astype(y == xp.arange(c, dtype=y.dtype, device=device(x)), x.dtype)
        z = self.margin - xp.sum(onehot * x, axis=1, keepdims=True) + x
        # z > 0, never at the target: PyTorch's subgradient at the corner is 0
        active = xp.astype((z > 0.0) & (onehot == 0.0), x.dtype)
        wy = 1.0
        if self.weight is not None:
            if self.weight.shape[0] != c:
                raise ValueError(
                    f"{who}: weight has {self.weight.shape[0]} entries but the input has {c} "
                    f"classes"
                )
            w = xp.reshape(self.constant("weight", self.weight, x), (1, c))
            wy = xp.sum(onehot * w, axis=1, keepdims=True)
        zp = active * z
        values = xp.reshape(xp.sum(zp if self.p == 1 else zp * zp, axis=1) * (1.0 / c), (n,))
        if self.weight is not None:
            values = values * xp.reshape(wy, (n,))
        dz = (active if self.p == 1 else 2.0 * zp) * (wy * (self.reduction_scale(values) / c))
        grad = dz - onehot * xp.sum(dz, axis=1, keepdims=True)
        self.save_grad(xp.reshape(grad, tuple(pred.shape)))
        return self.reduce(xp.reshape(values, tuple(target.shape)))


class MultiLabelMarginLoss(_LabelLoss):
    """Multi-label hinge loss: every target class should score a margin of 1 above every
    non-target class.

    ``x`` has shape ``(N, C)``, ``(C,)`` or ``()``; ``y`` is an integer array of the same shape
    listing the target classes of each sample, ended by the first ``-1`` (the rest is ignored;
    a class listed twice counts twice, as in PyTorch). With ``T`` the listed targets and
    ``z_ji = 1 - x_j + x_i``::

        loss_n = sum_{j in T} sum_{i not in T} max(0, z_ji) / C

    A pair with ``z_ji = 0`` exactly contributes no gradient (PyTorch's choice). The mean divides
    by ``N``. Memory is ``O(N C^2)``.

    Args: ``reduction`` (keyword only) and ``check_labels`` (labels in ``[-1, C)``) as for
    :class:`MultiMarginLoss`.

    >>> import numpy as np, nnx
    >>> loss = nnx.MultiLabelMarginLoss()
    >>> round(float(loss(np.array([[0.1, 0.2, 0.4, 0.8]]), np.array([[3, 0, -1, 1]]))), 6)
    0.85
    """

    def __init__(self, *, reduction: str = "mean", check_labels: bool = True):
        super().__init__(reduction)
        self.check_labels = bool(check_labels)
        self._pred_ndim = 2

    def _expand(self, grad_out: Any) -> Any:
        xp = namespace(grad_out)
        return xp.expand_dims(grad_out, axis=1) if self._pred_ndim == 2 else grad_out

    def forward(self, pred: Any, target: Any) -> Any:
        who = "MultiLabelMarginLoss"
        xp = self.check_pred(pred)
        if pred.ndim > 2:
            raise ValueError(
                f"{who}: input must have shape (N, C), (C,) or (), got {tuple(pred.shape)}"
            )
        if tuple(getattr(target, "shape", ())) != tuple(pred.shape):
            raise ValueError(
                f"{who}: target must have the input's shape {tuple(pred.shape)} (class labels "
                f"ended by -1), got {tuple(getattr(target, 'shape', ()))}"
            )
        c = pred.shape[-1] if pred.ndim else 1
        n = pred.shape[0] if pred.ndim == 2 else 1
        self._check_labels(xp, pred, target, -1, c)
        self._pred_ndim = pred.ndim
        (x,) = self.widen(xp.reshape(pred, (n, c)))
        y = indexable_labels(xp, xp.reshape(target, (n, c)), c)
        # the listed targets: the labels before the first -1
        ended = xp.cumulative_sum(xp.astype(equals_int(xp, y, -1), xp.int32), axis=1)
        listed = xp.expand_dims(ended == 0, axis=2)  # (N, J, 1)
        classes = xp.reshape(xp.arange(c, dtype=y.dtype, device=device(x)), (1, 1, c))
        onehot = xp.astype((xp.expand_dims(y, axis=2) == classes) & listed, x.dtype)
        count = xp.sum(onehot, axis=1)  # (N, C): how often class c is listed
        other = xp.astype(count == 0.0, x.dtype)  # the non-target classes
        # z[n, j, i] = 1 - x_j + x_i for target class j and non-target class i
        z = 1.0 - xp.expand_dims(x, axis=2) + xp.expand_dims(x, axis=1)
        pairs = (
            xp.astype(z > 0.0, x.dtype)
            * xp.expand_dims(count, axis=2)
            * xp.expand_dims(other, axis=1)
        )
        values = xp.sum(xp.sum(pairs * z, axis=2), axis=1) * (1.0 / c)
        scale = self.reduction_scale(values) / c
        grad = (xp.sum(pairs, axis=1) - xp.sum(pairs, axis=2)) * scale
        self.save_grad(xp.reshape(grad, tuple(pred.shape)))
        return self.reduce(values if pred.ndim == 2 else xp.reshape(values, ()))


class MultiLabelSoftMarginLoss(Loss):
    """Multi-label one-versus-all logistic loss on logits ``x`` of shape ``(..., C)`` with
    targets ``t`` in [0, 1] of the same shape (classes on the last axis, as in PyTorch)::

        loss = -sum_c w_c (t_c log sigmoid(x_c) + (1 - t_c) log sigmoid(-x_c)) / C
             = sum_c w_c (softplus(x_c) - t_c x_c) / C
        dloss/dx_c = w_c (sigmoid(x_c) - t_c) / C

    computed without overflow for any finite ``x``. The output of ``reduction="none"`` has the
    shape ``x.shape[:-1]``; the mean divides by its size.

    Args:
        weight: optional per-class weights ``w``, a 1-D array of ``C`` entries (any backend).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (keyword only).
    """

    def __init__(self, weight: Any = None, *, reduction: str = "mean"):
        super().__init__(reduction)
        self.weight = check_weight(weight, "MultiLabelSoftMarginLoss")

    def _expand(self, grad_out: Any) -> Any:
        return namespace(grad_out).expand_dims(grad_out, axis=-1)

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self.check_pred(pred)
        if pred.ndim == 0:
            raise ValueError("MultiLabelSoftMarginLoss: input must have a class axis, got shape ()")
        self.check_input_like(target, pred, "target", integer=True)
        x, t = self.widen(pred, target)
        t = self.as_float(t, x)
        c = x.shape[-1]
        values, grad = softplus(xp, x) - t * x, sigmoid(xp, x) - t
        if self.weight is not None:
            if self.weight.shape[0] != c:
                raise ValueError(
                    f"MultiLabelSoftMarginLoss: weight has {self.weight.shape[0]} entries but "
                    f"the input has {c} classes"
                )
            w = self.constant("weight", self.weight, x)
            values, grad = values * w, grad * w
        values = xp.sum(values, axis=-1) * (1.0 / c)
        self.save_grad(grad * (self.reduction_scale(values) / c))
        return self.reduce(values)


class SoftMarginLoss(Loss):
    """Two-class logistic loss on scores ``x`` with labels ``y`` (+1 or -1, integer or floating)
    of the same shape::

        loss = log(1 + exp(-y x)) = softplus(-y x),    dloss/dx = -y sigmoid(-y x)

    computed without overflow for any finite ``x`` (PyTorch's ``log1p(exp(-y x))`` overflows to
    ``inf`` in float32 beyond ``-y x = 88``). The mean is over every element.

    Args: ``reduction`` (``"mean"``, ``"sum"``, ``"none"``; keyword only).
    """

    def __init__(self, *, reduction: str = "mean"):
        super().__init__(reduction)

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self.check_pred(pred)
        self.check_input_like(target, pred, "target", integer=True)
        x, y = self.widen(pred, target)
        y = self.as_float(y, x)
        m = -y * x
        self.save_grad((-self.reduction_scale(x)) * y * sigmoid(xp, m))
        return self.reduce(softplus(xp, m))


class HingeEmbeddingLoss(Loss):
    """Hinge embedding loss on distances ``x`` with labels ``y`` (+1 similar, -1 dissimilar;
    integer or floating) of the same shape::

        loss = x                     where y = 1
               max(0, margin - x)    where y = -1

    (any other label value adds both terms, as PyTorch's formula does);
    ``dloss/dx = [y != -1] - [y != 1][x <= margin]``: at ``x = margin`` exactly the hinge passes
    gradient -1 (PyTorch's ``clamp_min`` subgradient).

    Args: ``margin`` (default 1) and ``reduction`` (keyword only).
    """

    def __init__(self, margin: float = 1.0, *, reduction: str = "mean"):
        super().__init__(reduction)
        self.margin = _finite(margin, "margin", "HingeEmbeddingLoss")

    def extra_repr(self) -> str:
        return f"margin={self.margin}, {super().extra_repr()}"

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self.check_pred(pred)
        self.check_input_like(target, pred, "target", integer=True)
        x, y = self.widen(pred, target)
        y = self.as_float(y, x)
        zero = xp.zeros_like(x)
        not_similar, not_dissimilar = y != 1.0, y != -1.0
        gap = self.margin - x
        values = xp.where(not_similar, xp.maximum(gap, 0.0), zero) + xp.where(
            not_dissimilar, x, zero
        )
        grad = xp.astype(not_dissimilar, x.dtype) - xp.astype(not_similar & (gap >= 0.0), x.dtype)
        self.save_grad(self.reduction_scale(x) * grad)
        return self.reduce(values)
