"""Layers that pass values through unchanged or only change their shape."""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..backend import namespace
from ..core.checks import check_grad, require_forward
from ..core.module import Module


class Identity(Module):
    """``y = x``; ``dx = g``."""

    _shape = None

    def forward(self, x: Any) -> Any:
        self._shape = tuple(x.shape)
        return x

    def backward(self, grad_out: Any) -> Any:
        check_grad(grad_out, require_forward(self._shape, "Identity"), "Identity")
        return grad_out


class Flatten(Module):
    """Flatten axes ``start_axis..`` into one: ``(N, d1, d2, ...) -> (N, d1*d2*...)``.

    >>> import numpy as np, nnx
    >>> nnx.Flatten()(np.zeros((2, 8, 8), dtype=np.float32)).shape
    (2, 64)
    """

    _shape = None

    def __init__(self, start_axis: int = 1):
        if (
            isinstance(start_axis, bool)
            or not isinstance(start_axis, numbers.Integral)
            or start_axis < 0
        ):
            raise ValueError(
                f"Flatten: start_axis must be a non-negative integer, got {start_axis!r}"
            )
        self.start_axis = int(start_axis)

    def extra_repr(self) -> str:
        return f"start_axis={self.start_axis}"

    def forward(self, x: Any) -> Any:
        if x.ndim < self.start_axis:
            raise ValueError(
                f"Flatten(start_axis={self.start_axis}): input of shape {tuple(x.shape)} "
                f"has only {x.ndim} axes"
            )
        self._shape = tuple(x.shape)
        kept = self._shape[: self.start_axis]
        return namespace(x).reshape(x, (*kept, math.prod(self._shape[self.start_axis :])))

    def backward(self, grad_out: Any) -> Any:
        shape = require_forward(self._shape, "Flatten")
        kept = shape[: self.start_axis]
        check_grad(grad_out, (*kept, math.prod(shape[self.start_axis :])), "Flatten")
        return namespace(grad_out).reshape(grad_out, shape)
