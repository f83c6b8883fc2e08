"""Element-wise activations (and softmax), each with its derivative beside it.

Where the derivative is cheapest from the forward *output* (ReLU, sigmoid, tanh, softmax) the
layer caches the output; otherwise it caches the input.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from .. import _native
from ..backend import is_writeable, mask_in_place, namespace
from ..core.checks import check_floating, check_grad, require_forward, widened
from ..core.module import Module
from ..core.special import erfc


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
    overwrites_grad = True  # see backward's overwrite_grad (core.calls.backward_declares)

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._y = xp.maximum(x, 0)
        return self._y

    def backward(self, grad_out: Any, overwrite_grad: bool = False) -> Any:
        """``grad_out`` where the output is positive, else 0. ``overwrite_grad=True`` (a
        container's promise that nothing else holds ``grad_out``) lets NumPy compute it in
        ``grad_out``'s memory and return that array."""
        y = self._y
        if y is None or getattr(grad_out, "shape", None) != y.shape:  # the errors, as they were
            xp = self._end_backward(y, grad_out)
        else:
            xp = namespace(y)
        lib = _native.relu_library(y, grad_out)  # PyTorch: the same mask, made in one kernel
        if lib is not None and grad_out.dtype == y.dtype:
            return _native.relu_backward(lib, y, grad_out)
        if overwrite_grad and grad_out.dtype == y.dtype:
            masked = mask_in_place(grad_out, y > 0)
            if masked is not None:
                return masked
        # y > 0 exactly where x > 0. A multiply by the 0/1 mask is ~6x faster than xp.where on
        # NumPy; the standard has no bool*float promotion, hence the astype.
        mask = xp.astype(y > 0, grad_out.dtype)
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
        x32 = widened(xp, x)
        e = xp.exp(x32 - xp.max(x32, axis=self.axis, keepdims=True))
        y = e / xp.sum(e, axis=self.axis, keepdims=True)
        self._y = y if y.dtype == x.dtype else xp.astype(y, x.dtype)
        return self._y

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._y, grad_out)
        y, g = widened(xp, self._y), widened(xp, grad_out)
        dx = y * (g - xp.sum(g * y, axis=self.axis, keepdims=True))
        return dx if dx.dtype == grad_out.dtype else xp.astype(dx, grad_out.dtype)


_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715
_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class GELU(_Activation):
    """Gaussian error linear unit ``y = x Phi(x)``, ``Phi`` the standard normal CDF.

    ``approximate="none"`` (default, as in PyTorch): ``Phi(x) = (1 + erf(x / sqrt 2)) / 2`` with
    :func:`nnx.special.erf` (the standard has no ``erf``); ``dy/dx = Phi(x) + x phi(x)``,
    ``phi(x) = exp(-x^2/2) / sqrt(2 pi)``.

    ``approximate="tanh"``: ``y = 0.5 x (1 + tanh(u))``, ``u = sqrt(2/pi) (x + 0.044715 x^3)``;
    ``dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)``, ``t = tanh(u)``.
    Both match PyTorch's ``GELU(approximate=...)``.
    """

    _x = None

    def __init__(self, approximate: str = "none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._x = x
        if self.approximate == "tanh":
            self._t = xp.tanh(_GELU_C * (x + _GELU_A * x * x * x))
            return 0.5 * x * (1.0 + self._t)
        # Phi(x) = erfc(-x / sqrt 2) / 2: keeps its relative accuracy in the far negative tail
        self._t = 0.5 * erfc(-_SQRT_HALF * x)
        return x * self._t

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._x, grad_out)
        x, t = self._x, self._t
        if self.approximate == "tanh":
            du_dx = _GELU_C * (1.0 + (3.0 * _GELU_A) * x * x)
            return grad_out * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)
        return grad_out * (t + x * (_INV_SQRT_2PI * xp.exp(-0.5 * x * x)))


def _check_real(value: Any, name: str, who: str, positive: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or (positive and value <= 0)
    ):
        kind = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"{who}: {name} must be {kind}, got {value!r}")
    return float(value)


class ELU(_Activation):
    """``y = x`` for ``x > 0`` else ``alpha (exp(x) - 1)``; ``dy/dx = 1`` or ``alpha exp(x)``."""

    _x = None

    def __init__(self, alpha: float = 1.0):
        self.alpha = _check_real(alpha, "alpha", "ELU")

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._x = x
        self._e = self.alpha * xp.exp(xp.minimum(x, 0.0))  # alpha exp(x) where x <= 0
        return xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0.0)))

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._x, grad_out)
        return xp.where(self._x > 0, grad_out, grad_out * self._e)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


class SELU(_Activation):
    """``y = scale * (x if x > 0 else alpha (exp(x) - 1))`` with PyTorch's constants
    ``alpha = 1.6732632...``, ``scale = 1.0507009...``; ``dy/dx = scale`` or
    ``scale alpha exp(x)``."""

    _x = None

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._x = x
        neg = xp.minimum(x, 0.0)
        self._e = (_SELU_SCALE * _SELU_ALPHA) * xp.exp(neg)
        return xp.where(x > 0, _SELU_SCALE * x, (_SELU_SCALE * _SELU_ALPHA) * xp.expm1(neg))

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._x, grad_out)
        return xp.where(self._x > 0, _SELU_SCALE * grad_out, grad_out * self._e)


class SiLU(_Activation):
    """``y = x sigmoid(x)`` (swish); ``dy/dx = s (1 + x (1 - s))``, ``s = sigmoid(x)``."""

    _x = None

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._x = x
        self._s = 0.5 + 0.5 * xp.tanh(0.5 * x)
        return x * self._s

    def backward(self, grad_out: Any) -> Any:
        self._end_backward(self._x, grad_out)
        s = self._s
        return grad_out * (s * (1.0 + self._x * (1.0 - s)))


def _softplus(xp: Any, z: Any) -> Any:
    """``log(1 + exp(z))`` without overflow: ``max(z, 0) + log1p(exp(-|z|))``."""
    return xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))


class Softplus(_Activation):
    """``y = log(1 + exp(beta x)) / beta``, and ``y = x`` where ``beta x > threshold`` (as in
    PyTorch); ``dy/dx = sigmoid(beta x)``, or 1 above the threshold."""

    _x = None

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        self.beta = _check_real(beta, "beta", "Softplus", positive=True)
        self.threshold = _check_real(threshold, "threshold", "Softplus")

    def extra_repr(self) -> str:
        return f"beta={self.beta}, threshold={self.threshold}"

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._x = x
        z = self.beta * x
        self._linear = z > self.threshold
        return xp.where(self._linear, x, _softplus(xp, z) * (1.0 / self.beta))

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._x, grad_out)
        s = 0.5 + 0.5 * xp.tanh((0.5 * self.beta) * self._x)
        return xp.where(self._linear, grad_out, grad_out * s)


class Mish(_Activation):
    """``y = x tanh(softplus(x))``;
    ``dy/dx = t + x (1 - t^2) sigmoid(x)``, ``t = tanh(softplus(x))``."""

    _x = None

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._x = x
        self._t = xp.tanh(_softplus(xp, x))
        return x * self._t

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._x, grad_out)
        x, t = self._x, self._t
        s = 0.5 + 0.5 * xp.tanh(0.5 * x)
        return grad_out * (t + x * (1.0 - t * t) * s)


class Hardtanh(_Activation):
    """``y = clip(x, min_val, max_val)``; ``dy/dx = 1`` strictly inside, else 0 (as PyTorch)."""

    _x = None

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0):
        self.min_val = _check_real(min_val, "min_val", "Hardtanh")
        self.max_val = _check_real(max_val, "max_val", "Hardtanh")
        if self.max_val <= self.min_val:
            raise ValueError(
                f"Hardtanh: max_val ({max_val!r}) must be greater than min_val ({min_val!r})"
            )

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}"

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        self._x = x
        return xp.minimum(xp.maximum(x, self.min_val), self.max_val)

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._x, grad_out)
        inside = (self._x > self.min_val) & (self._x < self.max_val)
        return xp.where(inside, grad_out, xp.zeros_like(grad_out))


class LogSoftmax(_Activation):
    """``y = x - max x - log sum exp(x - max x)`` along ``dim``;
    ``dx = g - softmax(x) * sum(g)`` (the sum along ``dim``).

    ``dim=None`` means the last axis (PyTorch guesses an axis with a deprecation warning).
    """

    _y = None

    def __init__(self, dim: int | None = None):
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, numbers.Integral)):
            raise ValueError(f"LogSoftmax: dim must be an integer or None, got {dim!r}")
        self.dim = -1 if dim is None else int(dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    def forward(self, x: Any) -> Any:
        xp = self._begin(x)
        if not -x.ndim <= self.dim < max(x.ndim, 1):
            raise ValueError(
                f"LogSoftmax: dim {self.dim} is out of range for input of shape {tuple(x.shape)}"
            )
        shifted = x - xp.max(x, axis=self.dim, keepdims=True)
        self._y = shifted - xp.log(xp.sum(xp.exp(shifted), axis=self.dim, keepdims=True))
        return self._y

    def backward(self, grad_out: Any) -> Any:
        xp = self._end_backward(self._y, grad_out)
        return grad_out - xp.exp(self._y) * xp.sum(grad_out, axis=self.dim, keepdims=True)
