"""Local response normalization across channels: ``LocalResponseNorm``, as in PyTorch.

For an input ``(N, C, *)``, each value is divided by a power of the mean square of its
neighbouring channels:

    s_c = (1 / size) * sum_{j = c - size//2}^{c + (size - 1)//2} x_j^2    (zero outside 0..C-1)
    d_c = k + alpha * s_c,    y_c = x_c * d_c^(-beta)

The window sum is a product with a banded 0/1 matrix ``W`` (``W[c, j] = 1`` when ``j`` is in
``c``'s window), so the backward pass is its transpose:

    dx_c = g_c * d_c^(-beta) - (2 * alpha * beta / size) * x_c * sum_j W[j, c] g_j x_j d_j^(-beta-1)
"""

from __future__ import annotations

import numbers
from typing import Any

from ...backend import device, namespace
from ...core.checks import check_floating, check_grad, positive_int, real_in_range, require_forward
from ...core.module import Module


class LocalResponseNorm(Module):
    """Local response normalization, as ``torch.nn.LocalResponseNorm(size, alpha=1e-4,
    beta=0.75, k=1.0)``: ``y_c = x_c / (k + alpha/size * sum of x_j^2 over the size channels
    around c)^beta``. Input ``(N, C, *)`` with at least 3 axes; no parameters.

    >>> import numpy as np, nnx
    >>> y = nnx.LocalResponseNorm(2, alpha=1.0, beta=1.0, k=1.0)(np.ones((1, 3, 1), np.float32))
    >>> [round(float(v), 4) for v in y.ravel()]  # channel 0 sees only itself (its left neighbour is 0)
    [0.6667, 0.5, 0.5]
    """

    _cache = None

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        who = "LocalResponseNorm"
        self.size = positive_int(size, "size", who)
        for name, value in (("alpha", alpha), ("beta", beta), ("k", k)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{who}: {name} must be a real number, got {value!r}")
        self.alpha = real_in_range(alpha, "alpha", who)
        self.beta = real_in_range(beta, "beta", who)
        self.k = real_in_range(k, "k", who)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"

    def _window(self, xp: Any, c: int, like: Any) -> Any:
        """The ``(C, C)`` 0/1 matrix whose row ``c`` marks the channels of ``c``'s window."""
        j = xp.arange(c, device=device(like))
        rows = xp.reshape(j, (-1, 1))
        cols = xp.reshape(j, (1, -1))
        inside = (cols >= rows - self.size // 2) & (cols <= rows + (self.size - 1) // 2)
        return xp.astype(inside, like.dtype)

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        who = f"LocalResponseNorm({self.size})"
        if x.ndim < 3:
            raise ValueError(
                f"{who}: expected input of shape (N, C, *) with at least 3 axes, got shape "
                f"{tuple(x.shape)}"
            )
        check_floating(xp, x, who)
        n, c = x.shape[0], x.shape[1]
        x3 = xp.reshape(x, (n, c, -1))
        w = self._window(xp, c, x)
        d = self.k + (self.alpha / self.size) * (w @ (x3 * x3))
        scale = d ** (-self.beta)
        self._cache = (x3, d, scale, w, tuple(x.shape))
        return xp.reshape(x3 * scale, tuple(x.shape))

    def backward(self, grad_out: Any) -> Any:
        x3, d, scale, w, shape = require_forward(self._cache, "LocalResponseNorm")
        check_grad(grad_out, shape, "LocalResponseNorm")
        xp = namespace(grad_out)
        g = xp.reshape(grad_out, tuple(x3.shape))
        t = g * x3 * scale / d  # g_j x_j d_j^(-beta-1)
        back = xp.permute_dims(w, (1, 0)) @ t
        dx = g * scale - (2.0 * self.alpha * self.beta / self.size) * x3 * back
        return xp.reshape(dx, shape)
