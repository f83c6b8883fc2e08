"""Max unpooling: ``MaxUnpool1d/2d/3d``, the partial inverse of max pooling, as in PyTorch.

``y`` is zero except at the positions the max pooling's ``indices`` name (flat positions in each
``(n, c)`` plane of the output), where it takes the pooled values. The standard has no scatter,
so the values are placed by sorting: the flat keys ``plane * size + index`` are sorted once and
every output position finds its value with ``searchsorted`` (the last of duplicated indices
wins, as in PyTorch's CPU loop). Backward gathers: ``dx = dy[indices]`` (``take_along_axis``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..backend import device, is_tracer, namespace
from ..core.checks import check_floating, check_grad, require_forward
from ..core.module import Module
from ._spatial import int_tuple
from ._window_max import check_batched


class _MaxUnpool(Module):
    nd = 2
    _cache = None

    def __init__(
        self,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] | None = None,
        padding: int | tuple[int, ...] = 0,
    ):
        who, nd = type(self).__name__, self.nd
        self.kernel_size = int_tuple(kernel_size, nd, "kernel_size", who)
        self.stride = self.kernel_size if stride is None else int_tuple(stride, nd, "stride", who)
        self.padding = int_tuple(padding, nd, "padding", who, minimum=0)

    def _one(self, t: tuple[int, ...]) -> Any:
        return t[0] if self.nd == 1 else t

    def extra_repr(self) -> str:
        one = self._one
        return (
            f"kernel_size={one(self.kernel_size)}, stride={one(self.stride)}, "
            f"padding={one(self.padding)}"
        )

    def _who(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def _out_size(self, sizes: tuple[int, ...], output_size: Any) -> tuple[int, ...]:
        """PyTorch's ``_unpool_output_size``: the default ``(L - 1)*s - 2p + k`` per axis, or
        ``output_size`` (spatial, or with ``N, C`` in front) within a stride of it."""
        nd, who = self.nd, self._who()
        default = tuple(
            (size - 1) * s + k - 2 * p
            for size, k, s, p in zip(
                sizes, self.kernel_size, self.stride, self.padding, strict=True
            )
        )
        if output_size is None:
            out = default
        else:
            items = tuple(output_size) if isinstance(output_size, Sequence) else (output_size,)
            if len(items) == nd + 2:
                items = items[2:]
            if len(items) != nd:
                raise ValueError(
                    f"{who}: output_size must have {nd} or {nd + 2} entries, got {output_size!r}"
                )
            for a, (o, dflt, s) in enumerate(zip(items, default, self.stride, strict=True)):
                if not (dflt - s < int(o) < dflt + s):
                    raise ValueError(
                        f"{who}: output_size {tuple(output_size)!r} is invalid: axis {a} must be "
                        f"between {dflt - s} and {dflt + s} (exclusive)"
                    )
            out = tuple(int(o) for o in items)
        if any(o <= 0 for o in out):
            raise ValueError(
                f"{who}: input of spatial size {sizes} unpools to the empty size {out}"
            )
        return out

    def forward(self, x: Any, indices: Any, output_size: Any = None) -> Any:
        xp = namespace(x)
        who, nd = self._who(), self.nd
        check_batched(x, nd, who)
        check_floating(xp, x, who)
        if tuple(indices.shape) != tuple(x.shape):
            raise ValueError(
                f"{who}: indices must have the input's shape {tuple(x.shape)}, "
                f"got {tuple(indices.shape)}"
            )
        if not xp.isdtype(indices.dtype, "integral"):
            raise ValueError(f"{who}: indices must be integers, got {indices.dtype}")
        n, c = x.shape[0], x.shape[1]
        out = self._out_size(tuple(x.shape[2:]), output_size)
        size_in, size_out = math.prod(x.shape[2:]), math.prod(out)
        rows = n * c
        idx = xp.reshape(indices, (rows, size_in))
        if not is_tracer(idx) and rows * size_in > 0:
            low, high = int(xp.min(idx)), int(xp.max(idx))
            if low < 0 or high >= size_out:
                raise ValueError(
                    f"{who}: found index {low if low < 0 else high} outside the output plane "
                    f"of {size_out} positions (output size {out})"
                )
        dev = device(x)
        plane = xp.reshape(xp.arange(rows, dtype=idx.dtype, device=dev), (rows, 1))
        keys = xp.reshape(idx + plane * size_out, (-1,))
        order = xp.argsort(keys, stable=True)
        sorted_keys = xp.take(keys, order)
        values = xp.take(xp.reshape(x, (-1,)), order)
        wanted = xp.arange(rows * size_out, dtype=keys.dtype, device=dev)
        # the last entry with key <= wanted: the value placed there (if its key is wanted)
        at = xp.astype(xp.searchsorted(sorted_keys, wanted, side="right"), keys.dtype) - 1
        at = xp.clip(at, 0, None)
        found = xp.take(sorted_keys, at) == wanted
        zero = xp.zeros((), dtype=x.dtype, device=dev)
        y = xp.where(found, xp.take(values, at), zero)
        y = xp.reshape(y, (n, c, *out))
        self._cache = (idx, tuple(x.shape), tuple(y.shape))
        return y

    def backward(self, grad_out: Any) -> Any:
        idx, in_shape, out_shape = require_forward(self._cache, self._who())
        check_grad(grad_out, out_shape, self._who())
        xp = namespace(grad_out)
        g = xp.reshape(grad_out, (idx.shape[0], -1))
        return xp.reshape(xp.take_along_axis(g, idx, axis=1), in_shape)


class MaxUnpool1d(_MaxUnpool):
    """Partial inverse of ``MaxPool1d``, as ``torch.nn.MaxUnpool1d``: ``forward(x, indices,
    output_size=None)`` with ``x`` and ``indices`` the ``(N, C, L)`` outputs of
    ``MaxPool1d(..., return_indices=True)``; ``y[n, c, indices[n, c, i]] = x[n, c, i]``, zero
    elsewhere. ``L_out = (L - 1)*stride - 2*padding + kernel_size`` unless ``output_size`` (within
    one stride of it) is given. Backward (for ``x`` only): ``dx[n, c, i] = dy[n, c,
    indices[n, c, i]]``.

    >>> import numpy as np, nnx
    >>> x, i = np.array([[[5.0, 7.0]]]), np.array([[[1, 2]]])
    >>> nnx.MaxUnpool1d(2)(x, i).tolist()
    [[[0.0, 5.0, 7.0, 0.0]]]
    """

    nd = 1


class MaxUnpool2d(_MaxUnpool):
    """Partial inverse of ``MaxPool2d``, as ``torch.nn.MaxUnpool2d``: ``indices`` are flat
    positions ``h * W_out + w`` in each output plane; ``H_out = (H - 1)*sh - 2*ph + kh`` (and
    so for ``W``) unless ``output_size`` is given. ``y`` is zero except ``y.flat[indices] = x``;
    backward gathers ``dx = dy.flat[indices]``.

    >>> import numpy as np, nnx
    >>> x = np.random.default_rng(0).standard_normal((1, 1, 4, 4))
    >>> y, i = nnx.MaxPool2d(2, return_indices=True)(x)
    >>> nnx.MaxUnpool2d(2)(y, i).shape
    (1, 1, 4, 4)
    """

    nd = 2


class MaxUnpool3d(_MaxUnpool):
    """Partial inverse of ``MaxPool3d``, as ``torch.nn.MaxUnpool3d``: ``(N, C, D, H, W)``
    inputs, flat indices ``(d * H_out + h) * W_out + w``; the 2-d rule along three axes.

    >>> import numpy as np, nnx
    >>> x, i = np.ones((1, 1, 1, 1, 1)), np.array([[[[[7]]]]])
    >>> nnx.MaxUnpool3d(2)(x, i).ravel().tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    """

    nd = 3
