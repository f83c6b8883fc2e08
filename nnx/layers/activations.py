"""Element-wise activations (and softmax), each with its derivative beside it.

Where the derivative is cheapest from the forward *output* (ReLU, sigmoid, tanh, softmax) the
layer caches the output; otherwise it caches the input.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..backend import is_writeable, namespace
from ..checks import check_floating, check_grad, dtype_name, require_forward
from ..module import Module


class _Activation(Module):
    """Shared plumbing: check the input is floating, remember the output shape for backward."""

    def _begin(self, x: Any) -> Any:
        xp = namespace(x)
        check_floating(xp, x, type(self).__name__)
        return xp

    def _end_backward(self, cached: Any, grad_out: Any) -> Any:
        cached = require_forward(cached, type(self).__name__)
        check_grad(grad_out, cached.shape, type(self).__name__)
        return namespace(cached)


class ReLU(_Activation):
    """``y = max(x, 0)``; ``dy/dx = 1`` where ``x > 0``, else 0 (also at the kink ``x == 0``)."""

    _y = None

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._y = xp.maximum(x, 0)
        return self._y

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._y, grad_out)
        # y > 0 exactly where x > 0. A multiply by the 0/1 mask is ~6x faster than xp.where on
        # NumPy; the standard has no bool*float promotion, hence the astype.
        mask = xp.astype(self._y > 0, grad_out.dtype)
        if is_writeable(mask):  # our own temporary: multiply into it, no second allocation
            mask *= grad_out
            return mask
        return mask * grad_out


class LeakyReLU(_Activation):
    """``y = x`` for ``x > 0`` else ``negative_slope * x``; derivative 1 or ``negative_slope``."""

    _x = None

    def __init__(self, negative_slope: float = 0.01):
        if (
            isinstance(negative_slope, bool)
            or not isinstance(negative_slope, numbers.Real)
            or not math.isfinite(negative_slope)
        ):
            raise ValueError(
                f"LeakyReLU: negative_slope must be a finite number, got {negative_slope!r}"
            )
        self.negative_slope = float(negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._x = x
        return xp.where(x > 0, x, self.negative_slope * x)

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._x, grad_out)
        return xp.where(self._x > 0, grad_out, self.negative_slope * grad_out)


class Sigmoid(_Activation):
    """``y = 1 / (1 + exp(-x))``, computed as ``0.5 + 0.5 * tanh(x / 2)`` (no overflow);
    ``dy/dx = y (1 - y)``."""

    _y = None

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._y = 0.5 + 0.5 * xp.tanh(0.5 * x)
        return self._y

    def backward(self, grad_out: Any) -> Any:
        self._end_backward(self._y, grad_out)
        y = self._y
        return grad_out * y * (1.0 - y)


class Tanh(_Activation):
    """``y = tanh(x)``; ``dy/dx = 1 - y^2``."""

    _y = None

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._y = xp.tanh(x)
        return self._y

    def backward(self, grad_out: Any) -> Any:
        self._end_backward(self._y, grad_out)
        y = self._y
        return grad_out * (1.0 - y * y)


class Softmax(_Activation):
    """``y_i = exp(x_i - max x) / sum_j exp(x_j - max x)`` along ``axis``;
    ``dx = y * (g - sum(g * y))`` (the Jacobian-vector product, never the full Jacobian).

    16-bit input (float16, bfloat16: mixed precision) is computed in float32 and the result
    cast back, so the sums accumulate in float32.
    """

    _y = None

    def __init__(self, axis: int = -1):
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise ValueError(f"Softmax: axis must be an integer, got {axis!r}")
        self.axis = int(axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}"

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        if not -x.ndim <= self.axis < max(x.ndim, 1):
            raise ValueError(
                f"Softmax: axis {self.axis} is out of range for input of shape {tuple(x.shape)}"
            )
        x32 = _widened(xp, x)
        e = xp.exp(x32 - xp.max(x32, axis=self.axis, keepdims=True))
        y = e / xp.sum(e, axis=self.axis, keepdims=True)
        self._y = y if y.dtype == x.dtype else xp.astype(y, x.dtype)
        return self._y

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._y, grad_out)
        y, g = _widened(xp, self._y), _widened(xp, grad_out)
        dx = y * (g - xp.sum(g * y, axis=self.axis, keepdims=True))
        return dx if dx.dtype == grad_out.dtype else xp.astype(dx, grad_out.dtype)


def _widened(xp: Any, x: Any) -> Any:
    """``x`` in float32 when it is a 16-bit float, else ``x`` itself."""
    return xp.astype(x, xp.float32) if dtype_name(x.dtype) in ("float16", "bfloat16") else x


_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


class GELU(_Activation):
    """Gaussian error linear unit, tanh form (the standard has no ``erf``):
    ``y = 0.5 x (1 + tanh(u))`` with ``u = sqrt(2/pi) (x + 0.044715 x^3)``.
    Matches PyTorch's ``GELU(approximate="tanh")``.

    ``dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)``, ``t = tanh(u)``.
    """

    _x = None

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._t = xp.tanh(_GELU_C * (x + _GELU_A * x * x * x))
        self._x = x
        return 0.5 * x * (1.0 + self._t)

    def backward(self, grad_out: Any) -> Any:
        self._end_backward(self._x, grad_out)
        x, t = self._x, self._t
        du_dx = _GELU_C * (1.0 + (3.0 * _GELU_A) * x * x)
        return grad_out * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)
