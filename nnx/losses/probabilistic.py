"""Negative log-likelihood losses of distributions over real targets: Gaussian (with a predicted
variance) and Poisson (with a predicted rate)."""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..backend import device, namespace
from ..core.checks import check_grad, check_same_device, check_same_dtype, require_forward
from .base import Loss

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _sum_to(xp: Any, grad: Any, shape: tuple[int, ...]) -> Any:
    """``grad`` summed over the axes along which an array of ``shape`` was broadcast to it."""
    if tuple(grad.shape) == tuple(shape):
        return grad
    lead = grad.ndim - len(shape)
    if lead:
        grad = xp.sum(grad, axis=tuple(range(lead)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = xp.sum(grad, axis=axes, keepdims=True)
    return grad


def _eps(value: Any, who: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{who}: eps must be a number >= 0, got {value!r}")
    return float(value)


class GaussianNLLLoss(Loss):
    """Gaussian negative log-likelihood with a predicted variance, as ``torch.nn.GaussianNLLLoss``:

    ``loss = 0.5 (log(v) + (input - target)^2 / v)`` (plus ``0.5 log(2 pi)`` when ``full``),
    with ``v = max(var, eps)``.

    ``forward(input, target, var)``: ``input`` of any shape ``(N, *)``; ``target`` of that shape
    or broadcastable to it; ``var`` of the input's shape (heteroscedastic), of the input's shape
    without its last axis (one variance per row: it gets a trailing axis of 1), of the input's
    number of axes with exactly one axis of size 1 where the input's is larger (shared along
    that axis), or a Python float (one variance for everything). Negative variances raise
    ValueError. ``reduction="none"`` returns the broadcast per-element losses.

    ``backward(grad_out)`` returns ``(d_input, d_var)``:
    ``d_input = (input - target) / v`` and ``d_var = 0.5 (1 / v - (input - target)^2 / v^2)``
    (summed over the axes ``var`` was broadcast along; None for a float ``var``). As in PyTorch
    the clamp to ``eps`` changes the value only: where ``var < eps`` the gradient is that
    formula at ``v = eps``, passed on to ``var`` unchanged. The target's gradient is
    ``-d_input`` (summed to its shape); it is not returned, like every nnx loss's target.
    """

    def __init__(self, *, full: bool = False, eps: float = 1e-6, reduction: str = "mean"):
        super().__init__(reduction)
        self.full = bool(full)
        self.eps = _eps(eps, "GaussianNLLLoss")
        self._shapes: tuple[Any, Any] = ((), None)
        self._var_shape: tuple[int, ...] | None = None

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, full={self.full}, eps={self.eps}"

    def _check(self, xp: Any, pred: Any, target: Any, var: Any) -> Any:
        who = "GaussianNLLLoss"
        self.check_pred(pred)
        for what, a in (("target", target), ("var", var)):
            if namespace(a) is not xp:
                raise TypeError(
                    f"{who}: {what} is a {type(a).__name__}, input a {type(pred).__name__}"
                )
            check_same_dtype(a, pred, who, what, "input")
            check_same_device(a, pred, who, what, "input")
        try:
            out = xp.broadcast_shapes(tuple(pred.shape), tuple(target.shape))
        except ValueError:
            out = None
        if out != tuple(pred.shape):
            raise ValueError(
                f"{who}: target shape {tuple(target.shape)} does not broadcast to the input "
                f"shape {tuple(pred.shape)}"
            )
        ps, vs = tuple(pred.shape), tuple(var.shape)
        if vs != ps:
            if ps[:-1] == vs:  # one variance per row
                var = xp.expand_dims(var, axis=-1)
            elif not (
                len(vs) == len(ps) and sum(v for p, v in zip(ps, vs, strict=True) if p != v) == 1
            ):
                raise ValueError(
                    f"{who}: var shape {vs} does not fit input shape {ps}: give the input's "
                    f"shape, the input's shape without its last axis, or the input's shape with "
                    f"one axis of size 1"
                )
        if bool(xp.any(var < 0)):
            raise ValueError(f"{who}: var has negative entries (min {float(xp.min(var))})")
        return var

    def forward(self, input: Any, target: Any, var: Any) -> Any:
        xp = namespace(input)
        var_shape = None
        if isinstance(var, numbers.Real) and not isinstance(var, bool):
            if var < 0:
                raise ValueError(f"GaussianNLLLoss: var must be >= 0, got {var!r}")
            self.check_pred(input)
            var = xp.full(tuple(input.shape), float(var), dtype=input.dtype, device=device(input))
        else:
            var_shape = tuple(getattr(var, "shape", ()))
            var = self._check(xp, input, target, var)
        x, t, v = self.widen(input, target, var)
        v = xp.maximum(v, self.eps)  # the value only: the gradient passes the clamp unchanged
        d = x - t
        inv = 1.0 / v
        z = d * d * inv
        values = 0.5 * (xp.log(v) + z)
        if self.full:
            values = values + _HALF_LOG_2PI
        scale = self.reduction_scale(values)
        d_input = (scale * d) * inv
        d_var = (0.5 * scale) * (inv - z * inv) if var_shape is not None else None
        self._grad = (self.narrow(d_input), None if d_var is None else self.narrow(d_var))
        self._shapes = (tuple(input.shape), tuple(var.shape) if var_shape is not None else None)
        self._var_shape = var_shape
        self._out_shape = tuple(values.shape)
        return self.reduce(values)

    def backward(self, grad_out: Any = None) -> tuple[Any, Any]:
        """``(d_input, d_var)``; ``grad_out`` scales them (an array of the output's shape with
        ``reduction="none"``)."""
        grads = require_forward(self._grad, "GaussianNLLLoss")
        d_input, d_var = grads
        if grad_out is not None:
            if self.reduction == "none" and getattr(grad_out, "ndim", 0) > 0:
                check_grad(grad_out, self._out_shape, "GaussianNLLLoss")
            d_input = grad_out * d_input
            d_var = None if d_var is None else grad_out * d_var
        xp = namespace(d_input)
        in_shape, var_shape = self._shapes
        d_input = _sum_to(xp, d_input, in_shape)
        if d_var is not None:
            d_var = xp.reshape(_sum_to(xp, d_var, var_shape), self._var_shape)
        return d_input, d_var


class PoissonNLLLoss(Loss):
    """Poisson negative log-likelihood, as ``torch.nn.PoissonNLLLoss``:

    ``loss = exp(input) - target * input`` with ``log_input=True`` (the input is the log-rate),
    ``loss = input - target * log(input + eps)`` with ``log_input=False`` (the input is the
    rate); ``full=True`` adds Stirling's approximation of ``log(target!)``,
    ``target log(target) - target + 0.5 log(2 pi target)``, where ``target > 1`` (0 elsewhere).

    ``forward(input, target)``: both of the same shape (any). ``backward`` returns
    ``d_input = exp(input) - target`` (``log_input=True``) or ``1 - target / (input + eps)``;
    the target's gradient (PyTorch computes one) is not returned, like every nnx loss's.
    """

    def __init__(
        self,
        log_input: bool = True,
        full: bool = False,
        eps: float = 1e-8,
        reduction: str = "mean",
    ):
        super().__init__(reduction)
        self.log_input = bool(log_input)
        self.full = bool(full)
        self.eps = _eps(eps, "PoissonNLLLoss")

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, log_input={self.log_input}, full={self.full}, eps={self.eps}"
        )

    def forward(self, input: Any, target: Any) -> Any:
        xp = self.check_same_shape_target(input, target)
        x, t = self.widen(input, target)
        if self.log_input:
            e = xp.exp(x)
            values, grad = e - t * x, e - t
        else:
            values = x - t * xp.log(x + self.eps)
            grad = 1.0 - t / (x + self.eps)
        if self.full:
            big = t > 1
            ts = xp.where(big, t, 2.0)  # log(0) never computed where the term is masked out
            stirling = ts * xp.log(ts) - ts + 0.5 * xp.log((2.0 * math.pi) * ts)
            values = values + xp.where(big, stirling, 0.0)
        self.save_grad(self.reduction_scale(x) * grad)
        return self.reduce(values)
