"""Power-average pooling: ``LPPool1d/2d/3d``, as in PyTorch.

PyTorch computes ``LPPool`` through average pooling, and so does this module:
``y = (K * avg_pool(x ** p)) ** (1/p)`` with ``K`` the kernel volume, so a window cut by
``ceil_mode`` is scaled as PyTorch scales it, a zero window sum gets a zero gradient, and
``p = inf`` (``-inf``) is the max pooling of ``|x|`` (minus that of ``-|x|``).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..backend import device, namespace, overflow_allowed
from ..core.checks import require_forward
from .pool import _AvgPool, _MaxPool


class _LPPool(_AvgPool):
    """Average pooling of ``x ** p`` (its inherited forward and backward), or for an infinite
    ``p`` the max pooling code of :class:`~nnx.layers.pool._MaxPool` run on this module (the
    two share every attribute through ``_Pool``)."""

    return_indices = False
    _x = None

    def __init__(
        self,
        norm_type: float,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] | None = None,
        ceil_mode: bool = False,
    ):
        who = type(self).__name__
        if (
            isinstance(norm_type, bool)
            or not isinstance(norm_type, numbers.Real)
            or math.isnan(norm_type)
            or norm_type == 0
        ):
            raise ValueError(f"{who}: norm_type must be a non-zero number, got {norm_type!r}")
        super().__init__(kernel_size, stride, 0, ceil_mode)
        self.norm_type = float(norm_type)

    def extra_repr(self) -> str:
        return f"norm_type={self.norm_type}, " + super().extra_repr()

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        p = self.norm_type
        self._x = x
        if math.isinf(p):
            sign = 1.0 if p > 0 else -1.0
            y = _MaxPool.forward(self, sign * xp.abs(x))
            return sign * y
        with overflow_allowed():  # a negative x ** p or window sum is NaN, as in PyTorch
            self._avg = super().forward(x**p)
            return (self._avg * float(self._k())) ** (1.0 / p)

    def _k(self) -> int:
        return math.prod(self.kernel_size)

    def backward(self, grad_out: Any) -> Any:
        x = require_forward(self._x, self._who())
        xp = namespace(grad_out)
        p = self.norm_type
        if math.isinf(p):
            return xp.sign(x) * _MaxPool.backward(self, grad_out)
        self._check_grad(grad_out)
        avg, k = self._avg, float(self._k())
        zero = xp.zeros((), dtype=grad_out.dtype, device=device(grad_out))
        empty = avg == 0  # a zero window sum: zero gradient (PyTorch's relu there)
        with overflow_allowed():
            s = xp.where(empty, xp.ones_like(avg), avg * k)
            g = xp.where(empty, zero, grad_out * (k / p) * s ** (1.0 / p - 1.0))
            return super().backward(g) * (p * x ** (p - 1.0))


class LPPool1d(_LPPool):
    """Power-average pooling of ``(N, C, L)`` inputs, as ``torch.nn.LPPool1d``:
    ``y[n, c, i] = (sum_{q < k} x[n, c, i*s + q] ** p) ** (1/p)`` (no padding; ``stride``
    defaults to ``kernel_size``; ``ceil_mode`` as in ``AvgPool1d``, a cut window's sum scaled by
    ``k / count`` as PyTorch). ``p = inf`` is the max of ``|x|``. Backward:
    ``dx = dy * y ** (1 - p) * x ** (p - 1)`` over each window, zero where a window's sum is 0.

    >>> import numpy as np, nnx
    >>> nnx.LPPool1d(2, 2)(np.array([[[3.0, 4.0, 6.0, 8.0]]])).tolist()
    [[[5.0, 10.0]]]
    """

    nd = 1


class LPPool2d(_LPPool):
    """Power-average pooling of ``(N, C, H, W)`` inputs, as ``torch.nn.LPPool2d``:
    ``y = (sum over the kh x kw window of x ** p) ** (1/p)``; ``p = 1`` is sum pooling,
    ``p = inf`` max pooling of ``|x|``; computed as ``(kh*kw * avg_pool(x ** p)) ** (1/p)``.

    >>> import numpy as np, nnx
    >>> nnx.LPPool2d(2, 2)(np.ones((1, 1, 4, 4))).tolist()
    [[[[2.0, 2.0], [2.0, 2.0]]]]
    """

    nd = 2


class LPPool3d(_LPPool):
    """Power-average pooling of ``(N, C, D, H, W)`` inputs, as ``torch.nn.LPPool3d``: the 2-d
    rule over ``kd x kh x kw`` windows.

    >>> import numpy as np, nnx
    >>> nnx.LPPool3d(1, 2)(np.ones((1, 1, 2, 2, 2))).ravel().tolist()
    [8.0]
    """

    nd = 3
