"""Adaptive pooling: ``AdaptiveAvgPool1d/2d/3d`` and ``AdaptiveMaxPool1d/2d/3d``, as in PyTorch.

The windows of an axis of length ``L`` pooled to ``O`` are ``[floor(i*L/O), ceil((i+1)*L/O))``,
computed on the host for each shape. Average pooling multiplies each spatial axis by its
averaging matrix; max pooling takes the maxima one axis at a time with gathers
(:mod:`nnx.layers._window_max`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from ..backend import device, namespace
from ..core.checks import check_floating, check_grad, require_forward
from ..core.module import Module
from ._window_max import adaptive_table, spatial_layout, window_max, window_max_backward


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


def _adaptive_matrix(xp, size: int, out: int, dtype: Any, dev: Any) -> Any:
    """``A (out, size)``: row ``i`` averages ``[floor(i*size/out), ceil((i+1)*size/out))``."""
    rows = []
    for i in range(out):
        start, end = (i * size) // out, -(-((i + 1) * size) // out)
        rows.append([1.0 / (end - start) if start <= j < end else 0.0 for j in range(size)])
    return xp.asarray(rows, dtype=dtype, device=dev)


def _along(xp: Any, x: Any, m: Any, axis: int) -> Any:
    """``m`` (``(O, L)``) applied along spatial ``axis`` of ``x`` (``(N, C, *spatial)``)."""
    if axis == x.ndim - 3:
        return x @ xp.matrix_transpose(m)
    shape = tuple(x.shape)
    pre, size = math.prod(shape[2 : 2 + axis]), shape[2 + axis]
    y = m @ xp.reshape(x, (shape[0], shape[1], pre, size, -1))
    return xp.reshape(y, (*shape[: 2 + axis], m.shape[0], *shape[3 + axis :]))


class _Adaptive(Module):
    """Output-size argument and input checks shared by the adaptive pools."""

    nd = 2
    _cache = None

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def _who(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def _sizes(self, x: Any, xp: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Check ``x``; return its spatial sizes and the output sizes."""
        nd = self.nd
        if x.ndim != nd + 2 or any(s == 0 for s in x.shape[2:]):
            raise ValueError(
                f"{type(self).__name__}({self.output_size}): expected input of shape "
                f"{spatial_layout(nd)} with non-empty spatial axes, got shape {tuple(x.shape)}"
            )
        check_floating(xp, x, type(self).__name__)
        sizes = tuple(x.shape[2:])
        return sizes, tuple(s if o is None else o for s, o in zip(sizes, self._out, strict=True))


class _AdaptiveAvgPool(_Adaptive):
    def __init__(self, output_size: int | None | tuple[int | None, ...]):
        self._out = adaptive_output_size(output_size, self.nd, type(self).__name__)
        self.output_size = output_size

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        sizes, out = self._sizes(x, xp)
        dev = device(x)
        # one averaging matrix per spatial axis: y = A_1 x_1 A_2 x_2 ... (mode products)
        mats = [_adaptive_matrix(xp, s, o, x.dtype, dev) for s, o in zip(sizes, out, strict=True)]
        y = x
        for axis in reversed(range(self.nd)):
            y = _along(xp, y, mats[axis], axis)
        self._cache = (mats, tuple(y.shape))
        return y

    def backward(self, grad_out: Any) -> Any:
        mats, out_shape = require_forward(self._cache, type(self).__name__)
        check_grad(grad_out, out_shape, type(self).__name__)
        xp = namespace(grad_out)
        g = grad_out
        for axis in range(self.nd):
            g = _along(xp, g, xp.matrix_transpose(mats[axis]), axis)
        return g


class AdaptiveAvgPool1d(_AdaptiveAvgPool):
    """Average over ``output_size`` adaptive windows of ``(N, C, L)`` inputs (PyTorch's
    windows ``[floor(i*L/out), ceil((i+1)*L/out))``); ``y = x @ A^T``, ``dx = g @ A``.

    >>> import numpy as np, nnx
    >>> nnx.AdaptiveAvgPool1d(1)(np.arange(4, dtype=np.float32).reshape(1, 1, 4)).tolist()
    [[[1.5]]]
    """

    nd = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPool):
    """Average over adaptive windows of ``(N, C, H, W)`` inputs, as
    ``torch.nn.AdaptiveAvgPool2d``; ``output_size=1`` (or ``(1, 1)``) is global average pooling.

    ``y = A_h @ x @ A_w^T`` with the row-averaging matrices ``A``; ``dx = A_h^T @ g @ A_w``.

    >>> import numpy as np, nnx
    >>> nnx.AdaptiveAvgPool2d((1, 1))(np.ones((2, 3, 5, 5), np.float32)).shape
    (2, 3, 1, 1)
    """

    nd = 2


class AdaptiveAvgPool3d(_AdaptiveAvgPool):
    """Average over adaptive windows of ``(N, C, D, H, W)`` inputs, as
    ``torch.nn.AdaptiveAvgPool3d``: the averaging matrices ``A_d``, ``A_h``, ``A_w`` applied
    along their axes (``dx``: their transposes); an entry None keeps that size.

    >>> import numpy as np, nnx
    >>> nnx.AdaptiveAvgPool3d((1, None, 2))(np.ones((2, 3, 4, 5, 6), np.float32)).shape
    (2, 3, 1, 5, 2)
    """

    nd = 3


class _AdaptiveMaxPool(_Adaptive):
    def __init__(
        self, output_size: int | None | tuple[int | None, ...], return_indices: bool = False
    ):
        self._out = adaptive_output_size(output_size, self.nd, type(self).__name__)
        self.output_size = output_size
        self.return_indices = bool(return_indices)

    def extra_repr(self) -> str:
        text = f"output_size={self.output_size}"
        return text + (", return_indices=True" if self.return_indices else "")

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        sizes, out = self._sizes(x, xp)
        dev = device(x)
        host = [adaptive_table(s, o) for s, o in zip(sizes, out, strict=True)]
        tables = [[xp.asarray(row, device=dev) for row in rows] for rows in host]
        y, idx, offsets = window_max(x, xp, tables)
        self._cache = (tables, offsets, sizes, tuple(y.shape), host)
        return (y, idx) if self.return_indices else y

    def backward(self, grad_out: Any) -> Any:
        tables, offsets, sizes, out_shape, host = require_forward(self._cache, self._who())
        check_grad(grad_out, out_shape, self._who())
        return window_max_backward(grad_out, namespace(grad_out), tables, offsets, sizes, host)


class AdaptiveMaxPool1d(_AdaptiveMaxPool):
    """Maximum over ``output_size`` adaptive windows of ``(N, C, L)`` inputs, as
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
    """Maximum over adaptive windows of ``(N, C, H, W)`` inputs, as
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
    """Maximum over adaptive windows of ``(N, C, D, H, W)`` inputs, as
    ``torch.nn.AdaptiveMaxPool3d``: the 2-d rule along three axes; indices are flat positions
    ``(d * H + h) * W + w``.

    >>> import numpy as np, nnx
    >>> y, i = nnx.AdaptiveMaxPool3d(1, return_indices=True)(np.arange(8.0).reshape(1, 1, 2, 2, 2))
    >>> y.ravel().tolist(), i.ravel().tolist()
    ([7.0], [7])
    """

    nd = 3
