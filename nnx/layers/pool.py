"""Pooling: ``MaxPool1d/2d``, ``AvgPool1d/2d`` and ``AdaptiveAvgPool1d/2d``, as in PyTorch.

Windows are read as strided slices of the (padded) input, one slice per kernel offset (see
:mod:`nnx.layers._spatial`), so no window array of ``kernel`` times the output is ever stacked:
max pooling keeps a running maximum and the offset where it was first reached (PyTorch's
tie-break), average pooling a running sum. Backward sends the gradient back through the same
slices (col2im). The 1-d layers run the 2-d code with an ``H`` axis of size 1.
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import device, namespace
from ..core.checks import check_floating, check_grad, require_forward
from ..core.module import Module
from ._spatial import col2im, int_tuple, pad, pad_backward, pool_out_size, window_slices


class _Pool(Module):
    """Shared arguments, checks and geometry of the max and average pooling layers."""

    nd = 2
    _x_shape = None

    def _setup(self, kernel_size, stride, padding, dilation, ceil_mode):
        who = type(self).__name__
        nd = self.nd
        self.kernel_size = int_tuple(kernel_size, nd, "kernel_size", who)
        self.stride = self.kernel_size if stride is None else int_tuple(stride, nd, "stride", who)
        self.padding = int_tuple(padding, nd, "padding", who, minimum=0)
        self.dilation = int_tuple(dilation, nd, "dilation", who)
        self.ceil_mode = bool(ceil_mode)
        for p, k in zip(self.padding, self.kernel_size, strict=True):
            if p > k // 2:
                raise ValueError(
                    f"{who}: padding {self._one(self.padding)} must be at most half the kernel "
                    f"size {self._one(self.kernel_size)}"
                )

    def _one(self, t: tuple[int, ...]) -> Any:
        return t[0] if self.nd == 1 else t

    def extra_repr(self) -> str:
        one = self._one
        text = f"kernel_size={one(self.kernel_size)}, stride={one(self.stride)}"
        if any(self.padding):
            text += f", padding={one(self.padding)}"
        if any(d != 1 for d in self.dilation):
            text += f", dilation={one(self.dilation)}"
        if self.ceil_mode:
            text += ", ceil_mode=True"
        return text

    def _who(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def _geometry(self, x: Any, xp: Any):
        """Check ``x``; return it as ``(N, C, H, W)`` with the 2-d kernel, stride, dilation,
        output size and the ``((top, bottom), (left, right))`` padding that covers every window
        (``ceil_mode`` windows may need more on the right/bottom than ``padding``)."""
        nd = self.nd
        if x.ndim != nd + 2:
            layout = "(N, C, L)" if nd == 1 else "(N, C, H, W)"
            raise ValueError(
                f"{self._who()}: expected input of shape {layout}, got shape {tuple(x.shape)}"
            )
        check_floating(xp, x, self._who())
        lift = (lambda t, v: (v, *t)) if nd == 1 else (lambda t, v: t)
        x2 = x if nd == 2 else xp.expand_dims(x, axis=2)
        kernel = lift(self.kernel_size, 1)
        stride = lift(self.stride, 1)
        padding = lift(self.padding, 0)
        dilation = lift(self.dilation, 1)
        out, pads = [], []
        for size, k, s, p, d in zip(x2.shape[2:], kernel, stride, padding, dilation, strict=True):
            o = pool_out_size(size, k, s, p, d, self.ceil_mode)
            if o <= 0:
                raise ValueError(
                    f"{self._who()}: input of shape {tuple(x.shape)} is too small for the "
                    f"kernel (output size {o})"
                )
            out.append(o)
            pads.append((p, max(p, (o - 1) * s + d * (k - 1) + 1 - size - p)))
        return x2, kernel, stride, dilation, tuple(out), tuple(pads)

    def _finish(self, y: Any) -> Any:
        y = y if self.nd == 2 else y[:, :, 0, :]
        self._out_shape = tuple(y.shape)
        return y

    def _grad_2d(self, grad_out: Any, xp: Any) -> Any:
        check_grad(grad_out, self._out_shape, self._who())
        return grad_out if self.nd == 2 else xp.expand_dims(grad_out, axis=2)


class _MaxPool(_Pool):
    def __init__(
        self,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] | None = None,
        padding: int | tuple[int, ...] = 0,
        dilation: int | tuple[int, ...] = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ):
        self._setup(kernel_size, stride, padding, dilation, ceil_mode)
        self.return_indices = bool(return_indices)
        self._argmax = None

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text + (", return_indices=True" if self.return_indices else "")

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        x2, kernel, stride, dilation, out, pads = self._geometry(x, xp)
        xpad = pad(x2, xp, pads, "constant", value=-math.inf)
        best = arg = None
        for k, (sh, sw) in enumerate(window_slices(kernel, stride, dilation, out)):
            window = xpad[:, :, sh, sw]
            if best is None:
                best = window
                arg = xp.zeros(window.shape, dtype=xp.int32, device=device(x))
            else:
                # strictly greater: the first offset reaching the maximum keeps it (PyTorch)
                better = window > best
                best = xp.where(better, window, best)
                arg = xp.where(better, k, arg)
        self._argmax = arg
        self._x_shape = tuple(x.shape)
        self._padded = (tuple(x2.shape), tuple(xpad.shape[2:]), kernel, stride, dilation, pads)
        y = self._finish(best)
        if not self.return_indices:
            return y
        flat = flat_indices(arg, xp, kernel, stride, dilation, pads, tuple(x2.shape[2:]))
        return y, self._finish(flat)

    def backward(self, grad_out: Any) -> Any:
        require_forward(self._x_shape, self._who())
        xp = namespace(grad_out)
        g = self._grad_2d(grad_out, xp)
        shape2, padded, kernel, stride, dilation, pads = self._padded
        arg = self._argmax
        zero = xp.zeros((), dtype=g.dtype, device=device(g))
        pieces = [xp.where(arg == k, g, zero) for k in range(kernel[0] * kernel[1])]
        dx = pad_backward(col2im(pieces, xp, padded, kernel, stride, dilation), xp, shape2, pads)
        return dx if self.nd == 2 else dx[:, :, 0, :]


def flat_indices(arg, xp, kernel, stride, dilation, pads, sizes) -> Any:
    """PyTorch's max pooling indices: the flat position in each input plane of the window
    entry ``arg`` (the row-major kernel offset) that won, for windows at ``o * stride - pad``."""
    d = len(kernel)
    flat, rem, step = None, arg, 1
    for a in reversed(range(d)):
        off = rem % kernel[a]
        rem = rem // kernel[a]
        base = xp.arange(arg.shape[2 + a], device=device(arg)) * stride[a] - pads[a][0]
        base = xp.reshape(base, (arg.shape[2 + a], *(1,) * (d - a - 1)))
        pos = (base + off * dilation[a]) * step
        flat = pos if flat is None else flat + pos
        step *= sizes[a]
    return flat


class MaxPool1d(_MaxPool):
    """Maximum over windows of ``(N, C, L)`` inputs, as ``torch.nn.MaxPool1d``.

    ``y[n, c, i] = max_{p < k} xpad[n, c, i*s + p*d]`` with ``-inf`` padding; ``stride``
    defaults to ``kernel_size``; ``padding <= kernel_size // 2``; with ``ceil_mode`` the output
    length rounds up. Backward sends each output gradient to the first position of its window's
    maximum. ``L_out = floor((L + 2p - d*(k-1) - 1) / s) + 1`` (ceil with ``ceil_mode``).

    >>> import numpy as np, nnx
    >>> nnx.MaxPool1d(2)(np.arange(6, dtype=np.float32).reshape(1, 1, 6)).tolist()
    [[[1.0, 3.0, 5.0]]]
    """

    nd = 1


class MaxPool2d(_MaxPool):
    """Maximum over windows of ``(N, C, H, W)`` inputs, as ``torch.nn.MaxPool2d``.

    ``y[n, c, i, j] = max_{p, q} xpad[n, c, i*sh + p*dh, j*sw + q*dw]`` (``-inf`` padding).
    Backward: the gradient goes to the (first) arg-max of each window; overlapping windows add.
    Shapes: ``H_out = floor((H + 2ph - dh*(kh-1) - 1) / sh) + 1`` (ceil with ``ceil_mode``).

    >>> import numpy as np, nnx
    >>> nnx.MaxPool2d(2)(np.ones((3, 4, 28, 28), np.float32)).shape
    (3, 4, 14, 14)
    """

    nd = 2


class _AvgPool(_Pool):
    def __init__(
        self,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] | None = None,
        padding: int | tuple[int, ...] = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ):
        self._setup(kernel_size, stride, padding, 1, ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = (
            None
            if divisor_override is None
            else int_tuple(divisor_override, 1, "divisor_override", type(self).__name__)[0]
        )

    def extra_repr(self) -> str:
        text = super().extra_repr()
        if not self.count_include_pad:
            text += ", count_include_pad=False"
        if self.divisor_override is not None:
            text += f", divisor_override={self.divisor_override}"
        return text

    def _divisor(self, xp, x2, kernel, stride, pads, out):
        """Per-output divisor ``(Ho, Wo)``: the window's size clipped to the padded input (or to
        the input itself without ``count_include_pad``), PyTorch's rule."""
        if self.divisor_override is not None:
            return float(self.divisor_override)
        counts = []
        for size, k, s, (p, _), o in zip(x2.shape[2:], kernel, stride, pads, out, strict=True):
            row = []
            for i in range(o):
                start = i * s - p
                end = min(start + k, size + p)
                if not self.count_include_pad:
                    start, end = max(start, 0), min(end, size)
                row.append(end - start)
            counts.append(xp.asarray(row, dtype=x2.dtype, device=device(x2)))
        return counts[0][:, None] * counts[1][None, :]

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        x2, kernel, stride, dilation, out, pads = self._geometry(x, xp)
        xpad = pad(x2, xp, pads)
        total = None
        for sh, sw in window_slices(kernel, stride, dilation, out):
            window = xpad[:, :, sh, sw]
            total = window if total is None else total + window
        self._div = self._divisor(xp, x2, kernel, stride, pads, out)
        self._x_shape = tuple(x.shape)
        self._padded = (tuple(x2.shape), tuple(xpad.shape[2:]), kernel, stride, dilation, pads)
        return self._finish(total / self._div)

    def backward(self, grad_out: Any) -> Any:
        require_forward(self._x_shape, self._who())
        xp = namespace(grad_out)
        g = self._grad_2d(grad_out, xp) / self._div
        shape2, padded, kernel, stride, dilation, pads = self._padded
        pieces = [g] * (kernel[0] * kernel[1])
        dx = pad_backward(col2im(pieces, xp, padded, kernel, stride, dilation), xp, shape2, pads)
        return dx if self.nd == 2 else dx[:, :, 0, :]


class AvgPool1d(_AvgPool):
    """Mean over windows of ``(N, C, L)`` inputs, as ``torch.nn.AvgPool1d``.

    ``y[n, c, i] = sum_{p < k} xpad[n, c, i*s + p] / count``, zero padding; ``count`` is ``k``
    clipped to the padded input (``count_include_pad=True``) or to the input itself.
    Backward: ``dx`` gets ``g / count`` at every position of the window.

    >>> import numpy as np, nnx
    >>> nnx.AvgPool1d(2)(np.arange(6, dtype=np.float32).reshape(1, 1, 6)).tolist()
    [[[0.5, 2.5, 4.5]]]
    """

    nd = 1

    def __init__(
        self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True
    ):
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad)


class AvgPool2d(_AvgPool):
    """Mean over windows of ``(N, C, H, W)`` inputs, as ``torch.nn.AvgPool2d``.

    ``y[n, c, i, j] = sum_{p, q} xpad[n, c, i*sh + p, j*sw + q] / count[i, j]`` with zero
    padding, ``count`` the window's area clipped to the padded input (``count_include_pad=True``)
    or to the input, or ``divisor_override``. Backward spreads ``g / count`` over each window.

    >>> import numpy as np, nnx
    >>> nnx.AvgPool2d(2)(np.ones((3, 4, 28, 28), np.float32)).shape
    (3, 4, 14, 14)
    """

    nd = 2


def _adaptive_matrix(xp, size: int, out: int, dtype: Any, dev: Any) -> Any:
    """``A (out, size)``: row ``i`` averages ``[floor(i*size/out), ceil((i+1)*size/out))``."""
    rows = []
    for i in range(out):
        start, end = (i * size) // out, -(-((i + 1) * size) // out)
        rows.append([1.0 / (end - start) if start <= j < end else 0.0 for j in range(size)])
    return xp.asarray(rows, dtype=dtype, device=dev)


class _AdaptiveAvgPool(Module):
    nd = 2
    _shape = None

    def __init__(self, output_size: int | None | tuple[int | None, ...]):
        who = type(self).__name__
        items = output_size if isinstance(output_size, tuple) else (output_size,) * self.nd
        if len(items) != self.nd or not all(
            v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 0) for v in items
        ):
            raise ValueError(
                f"{who}: output_size must be a positive integer (or None to keep the size) or a "
                f"tuple of {self.nd} of them, got {output_size!r}"
            )
        self.output_size = output_size

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        nd = self.nd
        if x.ndim != nd + 2 or any(s == 0 for s in x.shape[2:]):
            layout = "(N, C, L)" if nd == 1 else "(N, C, H, W)"
            raise ValueError(
                f"{type(self).__name__}({self.output_size}): expected input of shape {layout} "
                f"with non-empty spatial axes, got shape {tuple(x.shape)}"
            )
        check_floating(xp, x, type(self).__name__)
        items = (
            self.output_size if isinstance(self.output_size, tuple) else (self.output_size,) * nd
        )
        dev = device(x)
        sizes = tuple(x.shape[2:])
        out = tuple(s if o is None else o for s, o in zip(sizes, items, strict=True))
        # y = A_h @ x @ A_w^T, one averaging matrix per spatial axis
        mats = [_adaptive_matrix(xp, s, o, x.dtype, dev) for s, o in zip(sizes, out, strict=True)]
        y = x @ xp.matrix_transpose(mats[-1])
        if nd == 2:
            y = mats[0] @ y
        self._mats = mats
        self._shape = (tuple(x.shape), tuple(y.shape))
        return y

    def backward(self, grad_out: Any) -> Any:
        in_shape, out_shape = require_forward(self._shape, type(self).__name__)
        check_grad(grad_out, out_shape, type(self).__name__)
        xp = namespace(grad_out)
        mats = self._mats
        g = grad_out @ mats[-1]
        if self.nd == 2:
            g = xp.matrix_transpose(mats[0]) @ g
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
