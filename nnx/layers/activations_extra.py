"""More element-wise activations (and softmin, softmax over channels, GLU), as in ``torch.nn``.

Each derivative sits beside its forward. At the points where a function has a corner (the
shrink thresholds, the limits of ``ReLU6``, ``Hardsigmoid`` and ``Hardswish``, ``Threshold``'s
threshold) backward uses PyTorch's choice of subgradient; the docstrings say which. The
``inplace`` arguments of PyTorch's constructors are accepted and ignored: nnx never overwrites
its input.
"""

from __future__ import annotations

import numbers
from typing import Any

from ..core.checks import widened
from .activations import _Activation, _check_real


class ReLU6(_Activation):
    """``y = min(max(x, 0), 6)``; ``dy/dx = 1`` strictly inside ``(0, 6)``, else 0 (also at
    ``x = 0`` and ``x = 6``, as PyTorch)."""

    _x = None

    def __init__(self, inplace: bool = False):
        self.inplace = bool(inplace)

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._x = x
        return xp.clip(x, 0.0, 6.0)

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._x, grad_out)
        inside = (self._x > 0.0) & (self._x < 6.0)
        return xp.where(inside, grad_out, xp.zeros_like(grad_out))


class CELU(_Activation):
    """``y = max(0, x) + min(0, alpha (exp(x / alpha) - 1))``; ``dy/dx = 1`` for ``x > 0``,
    else ``exp(x / alpha)`` (1 at ``x = 0``)."""

    _x = None

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        self.alpha = _check_real(alpha, "alpha", "CELU")
        if self.alpha == 0.0:
            raise ValueError("CELU: alpha must not be 0, got 0")
        self.inplace = bool(inplace)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._x = x
        neg = xp.minimum(x, 0.0) * (1.0 / self.alpha)
        self._e = xp.exp(neg)  # exp(x / alpha) where x <= 0
        return xp.where(x > 0, x, self.alpha * xp.expm1(neg))

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._x, grad_out)
        return xp.where(self._x > 0, grad_out, grad_out * self._e)


class Hardshrink(_Activation):
    """``y = x`` where ``|x| > lambd``, else 0; ``dy/dx = 1`` there, else 0 (0 at exactly
    ``x = +-lambd``, as PyTorch)."""

    _x = None

    def __init__(self, lambd: float = 0.5):
        self.lambd = _check_real(lambd, "lambd", "Hardshrink")

    def extra_repr(self) -> str:
        return f"lambd={self.lambd}"

    def _kept(self, x: Any) -> Any:
        return (x < -self.lambd) | (x > self.lambd)

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._x = x
        return xp.where(self._kept(x), x, xp.zeros_like(x))

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._x, grad_out)
        return xp.where(self._kept(self._x), grad_out, xp.zeros_like(grad_out))


class Softshrink(Hardshrink):
    """``y = x - lambd`` for ``x > lambd``, ``x + lambd`` for ``x < -lambd``, else 0;
    ``dy/dx = 1`` outside ``[-lambd, lambd]``, else 0 (0 at exactly ``+-lambd``). ``lambd >= 0``."""

    def __init__(self, lambd: float = 0.5):
        self.lambd = _check_real(lambd, "lambd", "Softshrink")
        if self.lambd < 0:
            raise ValueError(f"Softshrink: lambd must be >= 0, got {lambd!r}")

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._x = x
        shrunk = x - xp.clip(x, -self.lambd, self.lambd)
        return xp.where(self._kept(x), shrunk, xp.zeros_like(x))


class Hardsigmoid(_Activation):
    """``y = clip(x / 6 + 1 / 2, 0, 1)``; ``dy/dx = 1 / 6`` strictly inside ``(-3, 3)``, else 0
    (0 at ``x = +-3``, as PyTorch)."""

    _x = None

    def __init__(self, inplace: bool = False):
        self.inplace = bool(inplace)

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._x = x
        return xp.clip(x * (1.0 / 6.0) + 0.5, 0.0, 1.0)

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._x, grad_out)
        inside = (self._x > -3.0) & (self._x < 3.0)
        return xp.where(inside, grad_out * (1.0 / 6.0), xp.zeros_like(grad_out))


class Hardswish(_Activation):
    """``y = x * clip(x + 3, 0, 6) / 6``; ``dy/dx = x / 3 + 1 / 2`` strictly inside ``(-3, 3)``,
    0 for ``x <= -3`` and 1 for ``x >= 3`` (PyTorch's values at ``x = +-3``)."""

    _x = None

    def __init__(self, inplace: bool = False):
        self.inplace = bool(inplace)

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._x = x
        return x * xp.clip(x + 3.0, 0.0, 6.0) * (1.0 / 6.0)

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._x, grad_out)
        x = self._x
        inner = grad_out * (x * (1.0 / 3.0) + 0.5)
        return xp.where(x <= -3.0, xp.zeros_like(grad_out), xp.where(x >= 3.0, grad_out, inner))


class LogSigmoid(_Activation):
    """``y = log(1 / (1 + exp(-x))) = min(x, 0) - log1p(exp(-|x|))`` (finite for any ``x``);
    ``dy/dx = 1 - sigmoid(x) = sigmoid(-x)``."""

    _x = None

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._x = x
        return xp.minimum(x, 0.0) - xp.log1p(xp.exp(-xp.abs(x)))

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._x, grad_out)
        return grad_out * (0.5 - 0.5 * xp.tanh(0.5 * self._x))


class Softsign(_Activation):
    """``y = x / (1 + |x|)``; ``dy/dx = 1 / (1 + |x|)^2``."""

    _x = None

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._x = x
        self._d = 1.0 + xp.abs(x)
        return x / self._d

    def backward(self, grad_out: Any) -> Any:
        self._end_backward(self._x, grad_out)
        return grad_out / (self._d * self._d)


class Tanhshrink(_Activation):
    """``y = x - tanh(x)``; ``dy/dx = tanh(x)^2``."""

    _x = None

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._x = x
        self._t = xp.tanh(x)
        return x - self._t

    def backward(self, grad_out: Any) -> Any:
        self._end_backward(self._x, grad_out)
        return grad_out * (self._t * self._t)


def _not_nan(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != value:
        raise ValueError(f"Threshold: {name} must be a number (not NaN), got {value!r}")
    return float(value)


class Threshold(_Activation):
    """``y = x`` where ``x > threshold``, else ``value``; ``dy/dx = 1`` there, else 0 (0 at
    exactly ``x = threshold``, as PyTorch)."""

    _x = None

    def __init__(self, threshold: float, value: float, inplace: bool = False):
        self.threshold = _not_nan(threshold, "threshold")
        self.value = _not_nan(value, "value")  # +-inf allowed, as PyTorch
        self.inplace = bool(inplace)

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, value={self.value}"

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._x = x
        return xp.where(x > self.threshold, x, xp.full_like(x, self.value))

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._x, grad_out)
        return xp.where(self._x > self.threshold, grad_out, xp.zeros_like(grad_out))


def _axis_in_range(x: Any, axis: int, who: str, name: str = "dim") -> int:
    if not -x.ndim <= axis < max(x.ndim, 1):
        raise ValueError(
            f"{who}: {name} {axis} is out of range for input of shape {tuple(x.shape)}"
        )
    return axis


def _softmax(xp: Any, x: Any, axis: int) -> Any:
    """Softmax along ``axis``, computed in float32 for 16-bit input and cast back."""
    x32 = widened(xp, x)
    e = xp.exp(x32 - xp.max(x32, axis=axis, keepdims=True))
    y = e / xp.sum(e, axis=axis, keepdims=True)
    return y if y.dtype == x.dtype else xp.astype(y, x.dtype)


def _softmax_backward(xp: Any, y: Any, grad_out: Any, axis: int) -> Any:
    """``y * (g - sum(g * y))`` along ``axis``, accumulated in at least float32."""
    y32, g = widened(xp, y), widened(xp, grad_out)
    dx = y32 * (g - xp.sum(g * y32, axis=axis, keepdims=True))
    return dx if dx.dtype == grad_out.dtype else xp.astype(dx, grad_out.dtype)


class Softmin(_Activation):
    """``y = softmax(-x)`` along ``dim``; ``dx = -y (g - sum(g y))``.

    ``dim=None`` means the last axis, as for :class:`LogSoftmax` (PyTorch guesses an axis with
    a deprecation warning). 16-bit input is computed in float32 and cast back.
    """

    _y = None

    def __init__(self, dim: int | None = None):
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, numbers.Integral)):
            raise ValueError(f"Softmin: dim must be an integer or None, got {dim!r}")
        self.dim = -1 if dim is None else int(dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._y = _softmax(xp, -x, _axis_in_range(x, self.dim, "Softmin"))
        return self._y

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._y, grad_out)
        return -_softmax_backward(xp, self._y, grad_out, self.dim)


class Softmax2d(_Activation):
    """Softmax over the channels of every pixel: input ``(N, C, H, W)`` or ``(C, H, W)``, softmax
    along axis ``-3``; ``dx = y (g - sum_c(g y))``."""

    _y = None

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        if x.ndim not in (3, 4):
            raise ValueError(
                f"Softmax2d: expected input of shape (N, C, H, W) or (C, H, W), got shape "
                f"{tuple(x.shape)}"
            )
        self._y = _softmax(xp, x, -3)
        return self._y

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._y, grad_out)
        return _softmax_backward(xp, self._y, grad_out, -3)


class GLU(_Activation):
    """Gated linear unit: ``x`` split in halves ``a, b`` along ``dim`` (its size must be even),
    ``y = a * sigmoid(b)``, so the output has half the input's size along ``dim``.

    Backward: ``da = g s``, ``db = g a s (1 - s)`` with ``s = sigmoid(b)``, concatenated.
    """

    _a = None

    def __init__(self, dim: int = -1):
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
            raise ValueError(f"GLU: dim must be an integer, got {dim!r}")
        self.dim = int(dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        axis = _axis_in_range(x, self.dim, "GLU") % max(x.ndim, 1)
        if x.ndim == 0 or x.shape[axis] % 2:
            raise ValueError(
                f"GLU: the size along dim {self.dim} must be even, got input of shape "
                f"{tuple(x.shape)}"
            )
        half = x.shape[axis] // 2
        lead = (slice(None),) * axis
        self._a, b = x[(*lead, slice(0, half), ...)], x[(*lead, slice(half, None), ...)]
        self._s = 0.5 + 0.5 * xp.tanh(0.5 * b)
        self._axis = axis
        return self._a * self._s

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._a, grad_out)
        a, s = self._a, self._s
        return xp.concat([grad_out * s, grad_out * a * s * (1.0 - s)], axis=self._axis)


__all__ = [
    "CELU",
    "GLU",
    "Hardshrink",
    "Hardsigmoid",
    "Hardswish",
    "LogSigmoid",
    "ReLU6",
    "Softmax2d",
    "Softmin",
    "Softshrink",
    "Softsign",
    "Tanhshrink",
    "Threshold",
]
