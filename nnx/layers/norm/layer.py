"""Normalization over the trailing feature axes: LayerNorm and RMSNorm (one sample at a time,
no running statistics, the same in training and evaluation)."""

from __future__ import annotations

import numbers
from typing import Any

from ... import _fastseq
from ...backend import Backend, get_backend, namespace
from ...core.checks import (
    check_floating,
    check_grad,
    check_same_device,
    check_same_dtype,
    positive_int,
    require_forward,
)
from ...core.init import zeros
from ...core.module import Module, Parameter


def _normalized_shape(value: Any, who: str) -> tuple[int, ...]:
    shape = (value,) if isinstance(value, numbers.Integral) else tuple(value)
    if not shape:
        raise ValueError(f"{who}: normalized_shape must not be empty")
    return tuple(positive_int(s, "normalized_shape", who) for s in shape)


class _TrailingNorm(Module):
    """Shared plumbing: the shape check, the optional scale (and bias), the reduced axes."""

    _x = None

    def __init__(self, normalized_shape, eps, elementwise_affine, bias, dtype, device, who):
        self.normalized_shape = _normalized_shape(normalized_shape, who)
        if eps is not None and (
            isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0
        ):
            raise ValueError(f"{who}: eps must be a number >= 0 or None, got {eps!r}")
        self.eps = None if eps is None else float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        backend: Backend = get_backend(device)
        self.weight = self.bias = None
        if self.elementwise_affine:
            ones = zeros(self.normalized_shape, None) + 1.0  # host data
            self.weight = Parameter(backend.asarray(ones, dtype=dtype), "weight")
            if bias:
                self.bias = Parameter(backend.asarray(0 * ones, dtype=dtype), "bias")
        self._axes = tuple(range(-len(self.normalized_shape), 0))

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        )

    def _check(self, x: Any) -> Any:
        who = type(self).__name__
        xp = namespace(x)
        k = len(self.normalized_shape)
        if x.ndim < k or tuple(x.shape[-k:]) != self.normalized_shape:
            raise ValueError(
                f"{who}: expected input of shape (..., {', '.join(map(str, self.normalized_shape))}), "
                f"got {tuple(x.shape)}"
            )
        check_floating(xp, x, who)
        if self.weight is not None:
            check_same_dtype(x, self.weight.value, who)
            check_same_device(x, self.weight.value, who)
        return xp

    def _affine(self, xhat: Any) -> Any:
        y = xhat if self.weight is None else xhat * self.weight.value
        return y if self.bias is None else y + self.bias.value

    def _affine_backward(self, xp: Any, grad_out: Any, xhat: Any) -> Any:
        """Accumulate ``dw = sum g xhat`` and ``db = sum g`` over the leading axes; return
        ``g * w``, the gradient with respect to ``xhat``."""
        if self.weight is None:
            return grad_out
        lead = tuple(range(grad_out.ndim - len(self.normalized_shape)))
        self.weight.accumulate(xp.sum(grad_out * xhat, axis=lead))
        if self.bias is not None:
            self.bias.accumulate(xp.sum(grad_out, axis=lead))
        return grad_out * self.weight.value


class LayerNorm(_TrailingNorm):
    """``y = (x - mean) / sqrt(var + eps) * weight + bias`` over the trailing
    ``normalized_shape`` axes (biased variance, as in PyTorch).

    Backward, with ``xhat = (x - mean) * r``, ``r = 1 / sqrt(var + eps)``, ``gh = g * weight``
    and means over the normalized axes:
    ``dx = r (gh - mean(gh) - xhat mean(gh xhat))``, ``dweight = sum g xhat``, ``dbias = sum g``.

    Args:
        normalized_shape: an int or tuple: the trailing shape that is normalized.
        eps: added to the variance (default 1e-5).
        elementwise_affine: learn ``weight`` (ones) and, with ``bias=True``, ``bias`` (zeros).
        dtype, device: of the parameters.

    >>> import numpy as np, nnx
    >>> y = nnx.LayerNorm(4)(np.arange(8.0, dtype=np.float32).reshape(2, 4))
    >>> np.round(y[0], 3)
    array([-1.342, -0.447,  0.447,  1.342], dtype=float32)
    """

    _fast = None  # the cache of nnx/_fastseq.py's forward, when that ran

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        super().__init__(
            normalized_shape, eps, elementwise_affine, bias, dtype, device, "LayerNorm"
        )
        if self.eps is None:
            raise ValueError("LayerNorm: eps must be a number >= 0, got None")

    def forward(self, x: Any) -> Any:
        xp = self._check(x)
        w = None if self.weight is None else self.weight.value
        b = None if self.bias is None else self.bias.value
        if _fastseq.layer_norm_applies(x, w, b, len(self._axes)):
            # NumPy: blocks of rows in cache, no full-size temporaries (nnx/_fastseq.py)
            y, self._fast = _fastseq.layer_norm_forward(x, w, b, self.eps)
            self._x = x
            return y
        self._fast = None
        centred = x - xp.mean(x, axis=self._axes, keepdims=True)
        var = xp.mean(centred * centred, axis=self._axes, keepdims=True)
        self._r = 1.0 / xp.sqrt(var + self.eps)
        self._xhat = centred * self._r
        self._x = x
        return self._affine(self._xhat)

    def backward(self, grad_out: Any) -> Any:
        x = require_forward(self._x, "LayerNorm")
        check_grad(grad_out, x.shape, "LayerNorm")
        xp = namespace(x)
        fast = self._fast
        if (
            fast is not None
            and _fastseq.layer_norm_applies(grad_out, None, None, 1)
            and grad_out.dtype == fast.xhat.dtype  # else the portable path's type promotion
        ):
            w = None if self.weight is None else self.weight.value
            dx, dw, db = _fastseq.layer_norm_backward(
                self._fast, grad_out, w, self.weight is not None and self.bias is not None
            )
            if dw is not None:
                self.weight.accumulate(dw)
            if db is not None:
                self.bias.accumulate(db)
            return dx
        if self._fast is not None:  # a fast forward, a gradient the fast backward does not take
            self._xhat, self._r = _fastseq.layer_norm_state(self._fast, x.shape)
        xhat, axes = self._xhat, self._axes
        gh = self._affine_backward(xp, grad_out, xhat)
        mean_gh = xp.mean(gh, axis=axes, keepdims=True)
        mean_ghx = xp.mean(gh * xhat, axis=axes, keepdims=True)
        return self._r * (gh - mean_gh - xhat * mean_ghx)


class RMSNorm(_TrailingNorm):
    """``y = x / sqrt(mean(x^2) + eps) * weight`` over the trailing ``normalized_shape`` axes;
    ``eps=None`` uses the machine epsilon of the input's dtype (PyTorch's default).

    Backward, with ``r = 1 / sqrt(mean(x^2) + eps)``, ``xhat = x r``, ``gh = g * weight``:
    ``dx = r (gh - xhat mean(gh xhat))``, ``dweight = sum g xhat``.
    """

    def __init__(
        self,
        normalized_shape: int | tuple[int, ...],
        eps: float | None = None,
        elementwise_affine: bool = True,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        super().__init__(normalized_shape, eps, elementwise_affine, False, dtype, device, "RMSNorm")

    def forward(self, x: Any) -> Any:
        xp = self._check(x)
        eps = float(xp.finfo(x.dtype).eps) if self.eps is None else self.eps
        ms = xp.mean(x * x, axis=self._axes, keepdims=True)
        self._r = 1.0 / xp.sqrt(ms + eps)
        self._xhat = x * self._r
        self._x = x
        return self._affine(self._xhat)

    def backward(self, grad_out: Any) -> Any:
        x = require_forward(self._x, "RMSNorm")
        check_grad(grad_out, x.shape, "RMSNorm")
        xp = namespace(x)
        xhat = self._xhat
        gh = self._affine_backward(xp, grad_out, xhat)
        return self._r * (gh - xhat * xp.mean(gh * xhat, axis=self._axes, keepdims=True))
