"""Classification losses: cross-entropy on logits or log-probabilities (class indices or soft
targets), binary cross-entropy on logits or probabilities, and KL divergence between
distributions."""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..backend import backend_of, device, is_tracer, is_writeable, namespace, to_numpy
from ..core.checks import (
    check_floating,
    check_same_device,
    check_same_dtype,
    dtype_name,
    equals_int,
    indexable_labels,
    is_dtype,
    is_narrow,
    known_label_range,
    real_in_range,
)
from .base import REDUCTIONS, Loss


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits ``z`` with targets ``t`` in [0, 1]:
    ``L = mean(max(z, 0) - z t + log(1 + exp(-|z|)))`` (never overflows);
    ``dL/dz = (sigmoid(z) - t) / N``."""

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self.check_same_shape_target(pred, target)
        z, t = self.widen(pred, target)
        sigmoid = 0.5 + 0.5 * xp.tanh(0.5 * z)
        self.save_grad(self.reduction_scale(z) * (sigmoid - t))
        return self.reduce(xp.maximum(z, 0) - z * t + xp.log1p(xp.exp(-xp.abs(z))))


def _class_axis_shape(ndim: int, size: int) -> tuple[int, ...]:
    """``(1, size, 1, ...)``: a per-class vector broadcast along the class axis (axis 1)."""
    return (1, size) + (1,) * (ndim - 2)


class _ClassLoss(Loss):
    """Shared by :class:`CrossEntropyLoss` and :class:`NLLLoss`: class weights, ignored labels,
    and inputs of shape ``(N, C)`` or ``(N, C, d1, ...)`` with labels ``(N,)`` or
    ``(N, d1, ...)`` (the class axis is axis 1, as in PyTorch)."""

    def __init__(
        self,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        check_labels: bool = True,
    ):
        super().__init__(reduction)
        who = type(self).__name__
        if weight is not None:
            if getattr(weight, "ndim", None) != 1:
                raise ValueError(
                    f"{who}: weight must be a 1-D array with one entry per class, got "
                    f"{type(weight).__name__} of shape {tuple(getattr(weight, 'shape', ()))}"
                )
            check_floating(namespace(weight), weight, who, "weight")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
            raise ValueError(f"{who}: ignore_index must be an integer, got {ignore_index!r}")
        self.weight = weight
        self.ignore_index = int(ignore_index)
        self.check_labels = bool(check_labels)
        self._weight_cache: tuple[Any, Any] = (None, None)

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if self.weight is not None:
            text += f", weight=<{tuple(self.weight.shape)}>"
        if self.ignore_index != -100:
            text += f", ignore_index={self.ignore_index}"
        return text

    def _expand(self, grad_out: Any) -> Any:
        return namespace(grad_out).expand_dims(grad_out, axis=1)

    def _check_input(self, pred: Any) -> Any:
        xp = self.check_pred(pred)
        if pred.ndim < 2:
            raise ValueError(
                f"{type(self).__name__}: input must have shape (N, C) or (N, C, d1, ...), got "
                f"{tuple(pred.shape)}"
            )
        return xp

    def _class_weight(self, xp: Any, pred: Any) -> Any:
        """The class weights on ``pred``'s backend and dtype, shaped ``(1, C, 1, ...)``."""
        c = pred.shape[1]
        if self.weight.shape[0] != c:
            raise ValueError(
                f"{type(self).__name__}: weight has {self.weight.shape[0]} entries but the "
                f"input has {c} classes"
            )
        key, cached = self._weight_cache
        here = backend_of(pred)
        if key != (here, pred.dtype):  # converted once per backend and dtype, then reused
            cached = here.asarray(to_numpy(self.weight), dtype=dtype_name(pred.dtype))
            self._weight_cache = ((here, pred.dtype), cached)
        return xp.reshape(cached, _class_axis_shape(pred.ndim, c))

    def _label_masks(self, xp: Any, pred: Any, target: Any) -> tuple[Any, Any]:
        """``(onehot, keep)`` for integer labels: ``onehot`` of ``pred``'s shape and dtype
        (zero rows for ignored labels), ``keep`` of shape ``(N, 1, d1, ...)`` (1 unless ignored)."""
        c = pred.shape[1]
        self._check_label_shape(pred, target)
        known = known_label_range(target) if self.check_labels else None
        target = indexable_labels(xp, target, c)
        ignored = equals_int(xp, target, self.ignore_index)
        if self.check_labels and (known is None or known[0] < 0 or known[1] >= c):
            self._check_label_range(xp, target, ignored, c)  # a read unless the range is known
        classes = xp.arange(c, dtype=target.dtype, device=device(pred))
        labels = xp.expand_dims(target, axis=1)
        keep = xp.astype(xp.logical_not(xp.expand_dims(ignored, axis=1)), pred.dtype)
        onehot = xp.astype(
            labels == xp.reshape(classes, _class_axis_shape(pred.ndim, c)), pred.dtype
        )
        return onehot * keep, keep

    def _check_label_range(self, xp: Any, target: Any, ignored: Any, c: int) -> None:
        """Raise ValueError unless every label not equal to ``ignore_index`` lies in ``[0, c)``."""
        valid = xp.where(ignored, xp.zeros_like(target), target)
        lo, hi = int(to_numpy(xp.min(valid))), int(to_numpy(xp.max(valid)))
        if lo < 0 or hi >= c:
            raise ValueError(
                f"{type(self).__name__}: class labels must lie in [0, {c - 1}] for {c} classes "
                f"(or equal ignore_index={self.ignore_index}), got labels from {lo} to {hi}"
            )

    def _check_label_shape(self, pred: Any, target: Any) -> None:
        n, rest = pred.shape[0], tuple(pred.shape[2:])
        if tuple(target.shape) != (n, *rest):
            raise ValueError(
                f"{type(self).__name__}: integer class labels must have shape {(n, *rest)} for "
                f"input of shape {tuple(pred.shape)}, got {tuple(target.shape)}"
            )

    def _classes(self, xp: Any, pred: Any, dtype: Any, dev: Any) -> Any:
        """``arange(C)`` in the labels' ``dtype`` on ``pred``'s device ``dev``, shaped
        ``(1, C, 1, ...)`` to compare with labels of shape ``(N, 1, d1, ...)``; made once per
        placement."""
        c = pred.shape[1]
        key = (type(pred), dtype, dev, c, pred.ndim)
        cached = self.__dict__.get("_classes_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        classes = xp.reshape(xp.arange(c, dtype=dtype, device=dev), _class_axis_shape(pred.ndim, c))
        if not is_tracer(pred):  # an array made while jax.jit traces must not outlive the trace
            self._classes_cache = (key, classes)
        return classes

    def _count_array(self, xp: Any, pred: Any, count: float, dev: Any) -> Any:
        """``count`` as a 0-d array of ``pred``'s dtype on its device ``dev``, made once per
        count and placement (the mean's denominator: the batch size, the same every step)."""
        key = (type(pred), pred.dtype, dev, count)
        cached = self.__dict__.get("_count_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        value = xp.asarray(count, dtype=pred.dtype, device=dev)
        if not is_tracer(pred):  # an array made while jax.jit traces must not outlive the trace
            self._count_cache = (key, value)
        return value

    def _check_target_array(self, xp: Any, pred: Any, target: Any) -> None:
        who = type(self).__name__
        if namespace(target) is not xp:
            raise TypeError(
                f"{who}: target is a {type(target).__name__}, logits a {type(pred).__name__}"
            )
        check_same_device(target, pred, who, "target", "logits")


def _safe_denominator(xp: Any, total: Any) -> Any:
    """``total`` with zeros replaced by one: a batch whose labels are all ignored has loss 0
    and gradient 0 (PyTorch returns NaN there)."""
    return xp.where(total == 0, xp.ones_like(total), total)


class CrossEntropyLoss(_ClassLoss):
    """Softmax cross-entropy on logits ``z`` of shape ``(N, C)`` or ``(N, C, d1, ...)``.

    Targets are integer class labels of shape ``(N,)`` / ``(N, d1, ...)``, or probabilities
    (one-hot or soft) of the logits' shape and dtype. Every case is written as a target matrix
    ``T`` (one row per sample, along the class axis), so with ``p = softmax(z)`` and
    ``log p = z - logsumexp(z)``:

        loss_n = -sum_c T_nc log p_nc,    dloss_n/dz_n = p_n * sum_c T_nc - T_n

    * labels ``y``: ``T_nc = keep_n ((1 - eps) w_c [c = y_n] + eps w_c / C)``, with
      ``keep_n = 0`` where ``y_n == ignore_index``; the mean divides by ``sum_n keep_n w_{y_n}``
      (PyTorch's weighted mean, which it also uses for the smoothing term);
    * probabilities ``t``: ``T_nc = w_c ((1 - eps) t_nc + eps / C)``; the mean divides by the
      number of samples (``N * d1 * ...``).

    The log-softmax subtracts the row maximum first, so finite logits of any magnitude (float32
    up to its largest value) give finite values, and ``-inf`` logits mask classes: a class whose
    target is 0 adds nothing, as in PyTorch. The loss is ``inf`` only when a target class itself
    is masked, and NaN when a whole row is ``-inf`` or a logit is ``+inf`` or NaN (PyTorch gives
    the same).

    Args:
        weight: optional per-class weights ``w``, a 1-D array of length ``C`` (any backend;
            converted to the logits' backend and dtype once and cached).
        ignore_index: label value that contributes nothing (default -100, as PyTorch).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (losses of shape
            ``(N, d1, ...)``).
        label_smoothing: ``eps`` in ``[0, 1]``.
        check_labels: check that integer labels lie in ``[0, C)``. This reads two numbers back
            to the host (a device synchronisation on a GPU), except for batches a
            :class:`~nnx.data.DataLoader` cut from an in-memory data set, whose labels' range
            it reads once per data set; turn it off in tight GPU loops over other data once the
            data is known to be valid.

    Differences from PyTorch: a mean over a batch whose labels are all ignored is 0 with a zero
    gradient, not NaN.
    """

    def __init__(
        self,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        check_labels: bool = True,
    ):
        super().__init__(weight, ignore_index, reduction, check_labels)
        self.label_smoothing = real_in_range(
            label_smoothing, "label_smoothing", "CrossEntropyLoss", 0.0, 1.0
        )

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text + (f", label_smoothing={self.label_smoothing}" if self.label_smoothing else "")

    def _targets(self, xp: Any, logits: Any, target: Any) -> tuple[Any, Any]:
        """The target matrix ``T`` (the logits' shape and dtype) and the mean's denominator."""
        eps, c = self.label_smoothing, logits.shape[1]
        w = None if self.weight is None else self._class_weight(xp, logits)
        if xp.isdtype(target.dtype, "integral"):
            onehot, keep = self._label_masks(xp, logits, target)
            hit = onehot if w is None else onehot * w  # keep_n w_{y_n} [c = y_n]
            t = (
                hit
                if eps == 0.0
                else (1.0 - eps) * hit + (eps / c) * (keep if w is None else keep * w)
            )
            return t, xp.sum(hit)
        if xp.isdtype(target.dtype, "real floating"):  # shape and dtype checked in forward
            t = target if eps == 0.0 else (1.0 - eps) * target + eps / c
            if w is not None:
                t = t * w
            return t, float(math.prod(logits.shape) // c)
        raise TypeError(
            f"CrossEntropyLoss: target must hold integer class labels or floating "
            f"probabilities, got dtype {dtype_name(target.dtype)}"
        )

    def _check_probabilities(self, logits: Any, target: Any) -> None:
        """Probability targets: exactly the logits' shape and dtype."""
        who = "CrossEntropyLoss"
        if tuple(target.shape) != tuple(logits.shape):
            rest = tuple(logits.shape[2:])
            raise ValueError(
                f"{who}: probability targets must have the logits' shape "
                f"{tuple(logits.shape)}, got {tuple(target.shape)}; integer class labels "
                f"of shape {(logits.shape[0], *rest)} also work"
            )
        check_same_dtype(target, logits, who, "target", "logits")

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self._check_input(pred)
        self._check_target_array(xp, pred, target)
        if is_dtype(xp, target.dtype, "real floating"):
            self._check_probabilities(pred, target)
        elif (
            self.weight is None
            and self.label_smoothing == 0.0
            and is_dtype(xp, target.dtype, "integral")
            and not is_narrow(pred.dtype)
            and not 0 <= self.ignore_index < pred.shape[1]
        ):
            return self._forward_labels(xp, pred, target)
        pred, target = self.widen(pred, target)
        t, count = self._targets(xp, pred, target)
        shifted, e, total = _shifted_exp(xp, pred)
        t_sum = xp.sum(t, axis=1, keepdims=True)
        # -sum_c T log p = sum_c T * (log(total) - shifted); without the T == 0 terms, so a
        # logit of -inf where the target is 0 gives 0, not 0 * inf = NaN
        log_p = shifted - xp.log(total)
        per_sample = -xp.sum(t * xp.where(t == 0, xp.zeros_like(t), log_p), axis=1)
        grad = (e / total) * t_sum - t
        if self.reduction == "mean":
            denominator = _safe_denominator(
                xp, xp.asarray(count, dtype=pred.dtype, device=device(pred))
            )
            self.save_grad(grad / denominator)
            self._out_shape = ()
            return self.narrow(xp.sum(per_sample) / denominator)
        self.save_grad(grad)
        return self.reduce(per_sample)

    def _forward_labels(self, xp: Any, pred: Any, target: Any) -> Any:
        """The common case, integer labels without class weights or label smoothing, in a
        float32/64 prediction with ``ignore_index`` outside ``[0, C)``: the same values as the
        general path, bit for bit, in fewer operations. The one-hot matrix then has a zero row
        exactly where a label is ignored, so no separate mask is needed; and when the range
        check found every label in ``[0, C)`` (the usual case), every row sums to one."""
        self._narrow = None
        c = pred.shape[1]
        self._check_label_shape(pred, target)
        target = indexable_labels(xp, target, c)
        every_row = False  # whether every label is known to lie in [0, C)
        if self.check_labels:
            known = known_label_range(target)  # cut by a DataLoader from checked labels
            if known is not None:
                lo, hi = known
            else:
                lo, hi = int(to_numpy(xp.min(target))), int(to_numpy(xp.max(target)))
            every_row = lo >= 0 and hi < c
            if not every_row:  # ignored labels, or a bad one: the full check says which
                self._check_label_range(xp, target, equals_int(xp, target, self.ignore_index), c)
        labels = xp.reshape(target, (target.shape[0], 1, *target.shape[1:]))
        dev = device(pred)  # read once: two uses below
        hit = labels == self._classes(xp, pred, target.dtype, dev)
        t = xp.astype(hit, pred.dtype)
        shifted, e, total = _shifted_exp(xp, pred)
        # -sum_c T log p with T one-hot: the target class's log p (0 in ignored rows)
        log_p = shifted - xp.log(total)
        per_sample = -xp.sum(xp.where(hit, log_p, 0.0), axis=1)
        if every_row:
            grad = e / total - t
            count = float(math.prod(pred.shape) // c)
        else:
            # sum_c T, 1 where the label is a class and 0 where not (ignored, or unchecked and
            # out of range): a one-hot row's maximum is its sum, and NumPy takes the maxima of
            # many short rows ten times faster than their sums (backend.numpy_namespace)
            rows = xp.max(t, axis=1, keepdims=True)
            grad = (e / total) * rows - t
            count = xp.sum(rows)
        if self.reduction == "mean":
            if every_row:  # the batch's size: one 0-d array per size and placement
                denominator = self._count_array(xp, pred, count, dev)
            else:  # every label ignored: loss 0, gradient 0
                denominator = _safe_denominator(xp, xp.asarray(count, dtype=pred.dtype, device=dev))
            if is_writeable(grad):  # our own temporary: divide in place
                grad /= denominator
            else:
                grad = grad / denominator
            self.save_grad(grad)
            self._out_shape = ()
            return xp.sum(per_sample) / denominator
        self.save_grad(grad)
        return self.reduce(per_sample)


def _shifted_exp(xp: Any, pred: Any) -> tuple[Any, Any, Any]:
    """``(z - max_c z, exp(z - max_c z), sum_c exp(z - max_c z))`` along the class axis (1).

    ``pred - row_max`` overflows (with a NumPy warning) where a logit lies more than the largest
    float below its row's maximum: such logits are clamped to that floor, then made ``-inf``."""
    row_max = xp.max(pred, axis=1, keepdims=True)
    # max(row_max, 0): a NaN row max gives a NaN floor, and then NaN values, as it should
    floor = xp.maximum(row_max, 0.0) - _largest(xp, pred.dtype)
    shifted = xp.where(pred < floor, -math.inf, xp.maximum(pred, floor) - row_max)
    e = xp.exp(shifted)
    return shifted, e, xp.sum(e, axis=1, keepdims=True)


_LARGEST: dict[Any, float] = {}


def _largest(xp: Any, dtype: Any) -> float:
    """``xp.finfo(dtype).max``, remembered per dtype."""
    key = (type(dtype), dtype)
    try:
        return _LARGEST[key]
    except KeyError:
        result = _LARGEST[key] = xp.finfo(dtype).max
        return result
    except TypeError:
        return xp.finfo(dtype).max


class NLLLoss(_ClassLoss):
    """Negative log-likelihood on log-probabilities ``x`` of shape ``(N, C)`` or
    ``(N, C, d1, ...)`` with integer labels ``y`` of shape ``(N,)`` or ``(N, d1, ...)``:
    ``loss_n = -w_{y_n} x_{n, y_n}`` (0 where ``y_n == ignore_index``);
    ``dloss_n/dx_n = -w_{y_n} onehot(y_n)``. The mean divides by ``sum_n w_{y_n}`` over the
    labels not ignored (0 when all are ignored; PyTorch gives NaN).

    Args: ``weight``, ``ignore_index``, ``reduction``, ``check_labels`` as for
    :class:`CrossEntropyLoss`.
    """

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self._check_input(pred)
        self._check_target_array(xp, pred, target)
        if not xp.isdtype(target.dtype, "integral"):
            raise TypeError(
                f"NLLLoss: target must hold integer class labels, got dtype {dtype_name(target.dtype)}"
            )
        (pred,) = self.widen(pred)
        onehot, _ = self._label_masks(xp, pred, target)
        hit = onehot if self.weight is None else onehot * self._class_weight(xp, pred)
        # -w_y x_y, picked with where so that -inf log-probabilities of other classes stay out
        per_sample = -xp.sum(hit * xp.where(onehot > 0, pred, xp.zeros_like(pred)), axis=1)
        if self.reduction == "mean":
            denominator = _safe_denominator(xp, xp.sum(hit))
            self.save_grad(-hit / denominator)
            self._out_shape = ()
            return self.narrow(xp.sum(per_sample) / denominator)
        self.save_grad(-hit)
        return self.reduce(per_sample)


class BCELoss(Loss):
    """Binary cross-entropy on probabilities ``p`` in [0, 1] with targets ``t`` in [0, 1]:
    ``loss = -w (t log p + (1 - t) log(1 - p))``, each log clamped at -100 as in PyTorch;
    ``dloss/dp = w (p - t) / max(p (1 - p), 1e-12)`` (PyTorch's clamp too).
    Prefer :class:`BCEWithLogitsLoss` on logits: it is stable without clamps.

    Args:
        weight: optional rescaling weight broadcastable to the input's shape.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    def __init__(self, weight: Any = None, reduction: str = "mean"):
        super().__init__(reduction)
        if weight is not None:
            check_floating(namespace(weight), weight, "BCELoss", "weight")
        self.weight = weight
        self._weight_cache: tuple[Any, Any] = (None, None)

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self.check_same_shape_target(pred, target)
        p, t = self.widen(pred, target)
        log_p = xp.maximum(xp.log(p), -100.0)
        log_1mp = xp.maximum(xp.log1p(-p), -100.0)
        values = -(t * log_p + (1.0 - t) * log_1mp)
        grad = (p - t) / xp.maximum(p * (1.0 - p), 1e-12)
        if self.weight is not None:
            key, w = self._weight_cache
            here = backend_of(pred)
            if key != (here, pred.dtype):
                w = here.asarray(to_numpy(self.weight), dtype=dtype_name(pred.dtype))
                self._weight_cache = ((here, pred.dtype), w)
            values, grad = values * w, grad * w
        self.save_grad(self.reduction_scale(pred) * grad)
        return self.reduce(values)


class KLDivLoss(Loss):
    """Kullback-Leibler divergence with the input ``x`` given as log-probabilities:
    ``loss = t (log t - x)`` (0 where ``t = 0``), or with ``log_target=True`` (``t`` given as
    log-probabilities) ``loss = exp(t) (t - x)``; ``dloss/dx = -t`` (``-exp(t)``).

    Args:
        reduction: ``"mean"`` (over every element, PyTorch's default), ``"batchmean"`` (sum over
            everything divided by the batch size ``x.shape[0]``: the true KL divergence per
            sample), ``"sum"`` or ``"none"``.
        log_target: whether the target is given as log-probabilities.
    """

    _reductions = (*REDUCTIONS, "batchmean")

    def __init__(self, reduction: str = "mean", log_target: bool = False):
        super().__init__(reduction)
        self.log_target = bool(log_target)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, log_target={self.log_target}"

    def forward(self, pred: Any, target: Any) -> Any:
        xp = self.check_same_shape_target(pred, target)
        x, t = self.widen(pred, target)
        if self.log_target:
            prob = xp.exp(t)
            values = prob * (t - x)
        else:
            prob = t
            positive = t > 0
            safe = xp.where(positive, t, xp.ones_like(t))
            values = xp.where(positive, t * xp.log(safe), xp.zeros_like(t)) - t * x
        if self.reduction == "batchmean":
            scale = 1.0 / x.shape[0] if x.ndim > 0 else 1.0
            self.save_grad(-scale * prob)
            return self.narrow(xp.asarray(xp.sum(values) * scale))
        self.save_grad(-self.reduction_scale(x) * prob)
        return self.reduce(values)
