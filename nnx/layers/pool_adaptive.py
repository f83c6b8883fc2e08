"""Adaptive max pooling: ``AdaptiveMaxPool1d/2d/3d``, as in PyTorch.

The windows of an axis of length ``L`` pooled to ``O`` are ``[floor(i*L/O), ceil((i+1)*L/O))``;
they are computed on the host once per shape and the maxima taken one axis at a time with
gathers (:mod:`nnx.layers._window_max`).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from ..backend import device, namespace
from ..core.checks import check_floating, check_grad, require_forward
from ..core.module import Module
from ._window_max import (
    adaptive_table,
    add_batch,
    spatial_layout,
    window_max,
    window_max_backward,
)


def adaptive_output_size(output_size: Any, nd: int, who: str) -> tuple[int | None, ...]:
    """``output_size`` (a positive int, None, or a sequence of ``nd`` of them) as an ``nd``-tuple;
    None keeps that axis's size."""
    many = isinstance(output_size, Sequence) and not isinstance(output_size, str)
    items = tuple(output_size) if many else (output_size,) * nd
    ok = len(items) == nd and all(
        v is None or (isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0)
        for v in items
    )
    if not ok:
        raise ValueError(
            f"{who}: output_size must be a positive integer (or None to keep the size) or a "
            f"tuple of {nd} of them, got {output_size!r}"
        )
    return tuple(None if v is None else int(v) for v in items)


class _AdaptiveMaxPool(Module):
    nd = 2
    _cache = None

    def __init__(
        self, output_size: int | None | tuple[int | None, ...], return_indices: bool = False
    ):
        self._out = adaptive_output_size(output_size, self.nd, type(self).__name__)
        self.output_size = output_size
        self.return_indices = bool(return_indices)

    def extra_repr(self) -> str:
        text = f"output_size={self.output_size}"
        return text + (", return_indices=True" if self.return_indices else "")

    def _who(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        who = self._who()
        x, unbatched = add_batch(x, self.nd, who, spatial_layout(self.nd))
        if any(s == 0 for s in x.shape[1:]):
            raise ValueError(f"{who}: expected non-empty axes, got shape {tuple(x.shape)}")
        check_floating(xp, x, who)
        sizes = tuple(x.shape[2:])
        out = tuple(s if o is None else o for s, o in zip(sizes, self._out, strict=True))
        dev = device(x)
        tables = [
            [xp.asarray(row, device=dev) for row in adaptive_table(s, o)]
            for s, o in zip(sizes, out, strict=True)
        ]
        y, idx, offsets = window_max(x, xp, tables)
        self._cache = (tables, offsets, sizes, tuple(y.shape), unbatched)
        if unbatched:
            y, idx = y[0, ...], idx[0, ...]
        return (y, idx) if self.return_indices else y

    def backward(self, grad_out: Any) -> Any:
        tables, offsets, sizes, out_shape, unbatched = require_forward(self._cache, self._who())
        xp = namespace(grad_out)
        g = grad_out[None, ...] if unbatched else grad_out
        check_grad(g, out_shape, self._who())
        dx = window_max_backward(g, xp, tables, offsets, sizes)
        return dx[0, ...] if unbatched else dx


class AdaptiveMaxPool1d(_AdaptiveMaxPool):
    """Maximum over ``output_size`` adaptive windows of ``(N, C, L)`` (or ``(C, L)``) inputs, as
    ``torch.nn.AdaptiveMaxPool1d``.

    ``y[n, c, i] = max x[n, c, floor(i*L/O) : ceil((i+1)*L/O)]``; the first maximum of a window
    (a NaN if there is one) is the one kept. With ``return_indices=True`` the forward returns
    ``(y, indices)``, the positions of the maxima in ``L`` (what ``MaxUnpool1d`` takes), and
    backward takes the gradient of ``y``. Backward: each ``dy`` goes to its window's maximum;
    overlapping windows add up.

    >>> import numpy as np, nnx
    >>> nnx.AdaptiveMaxPool1d(2)(np.array([[[1.0, 5.0, 2.0, 4.0, 3.0]]])).tolist()
    [[[5.0, 4.0]]]
    """

    nd = 1


class AdaptiveMaxPool2d(_AdaptiveMaxPool):
    """Maximum over adaptive windows of ``(N, C, H, W)`` (or ``(C, H, W)``) inputs, as
    ``torch.nn.AdaptiveMaxPool2d``; ``output_size`` is an int, a pair, or None in a pair to keep
    that size. ``y[n, c, i, j] = max`` over rows ``[floor(i*H/Ho), ceil((i+1)*H/Ho))`` and
    columns ``[floor(j*W/Wo), ceil((j+1)*W/Wo))``; the first maximum in row-major order is kept.
    ``return_indices=True`` adds the flat positions ``h * W + w`` of the maxima (int64; int32 on
    JAX without 64-bit mode).

    >>> import numpy as np, nnx
    >>> nnx.AdaptiveMaxPool2d((1, 1))(np.ones((2, 3, 5, 5), np.float32)).shape
    (2, 3, 1, 1)
    """

    nd = 2


class AdaptiveMaxPool3d(_AdaptiveMaxPool):
    """Maximum over adaptive windows of ``(N, C, D, H, W)`` (or ``(C, D, H, W)``) inputs, as
    ``torch.nn.AdaptiveMaxPool3d``: the 2-d rule along three axes; indices are flat positions
    ``(d * H + h) * W + w``.

    >>> import numpy as np, nnx
    >>> y, i = nnx.AdaptiveMaxPool3d(1, return_indices=True)(np.arange(8.0).reshape(1, 1, 2, 2, 2))
    >>> y.ravel().tolist(), i.ravel().tolist()
    ([7.0], [7])
    """

    nd = 3
