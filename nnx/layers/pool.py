"""Pooling over regular windows: ``MaxPool1d/2d/3d`` and ``AvgPool1d/2d/3d``, as in PyTorch.

Windows are read as strided slices of the (padded) input, one slice per kernel offset (see
:mod:`nnx.layers._spatial`), so no window array of ``kernel`` times the output is ever stacked:
max pooling keeps a running maximum and the offset where it was first reached (PyTorch's
tie-break), average pooling a running sum. Backward sends the gradient back through the same
slices (col2im). The code is the same for 1, 2 and 3 spatial axes. On PyTorch tensors both
run PyTorch's pooling kernels and their gradient kernels instead (:mod:`nnx._native`).
"""

from __future__ import annotations

import math
from typing import Any

from .. import _fastpool, _native
from ..backend import device, namespace
from ..core.checks import check_floating, check_grad, require_forward
from ..core.module import Module
from ._spatial import col2im, int_tuple, pad, pad_backward, pool_out_size, window_slices
from ._window_max import spatial_layout


class _Pool(Module):
    """Shared arguments, checks and geometry of the max and average pooling layers."""

    nd = 2
    _x_shape = None
    _native = None

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
        """Check ``x`` (``(N, C, *spatial)``); return the output size and the per-axis
        ``(low, high)`` padding that covers every window (``ceil_mode`` windows may need more at
        the high end than ``padding``)."""
        nd = self.nd
        if x.ndim != nd + 2:
            raise ValueError(
                f"{self._who()}: expected input of shape {spatial_layout(nd)}, got shape "
                f"{tuple(x.shape)}"
            )
        check_floating(xp, x, self._who)
        out, pads = [], []
        for size, k, s, p, d in zip(
            x.shape[2:], self.kernel_size, self.stride, self.padding, self.dilation, strict=True
        ):
            o = pool_out_size(size, k, s, p, d, self.ceil_mode)
            if o <= 0:
                raise ValueError(
                    f"{self._who()}: input of shape {tuple(x.shape)} is too small for the "
                    f"kernel (output size {o})"
                )
            out.append(o)
            pads.append((p, max(p, (o - 1) * s + d * (k - 1) + 1 - size - p)))
        return tuple(out), tuple(pads)

    def _check_grad(self, grad_out: Any) -> None:
        check_grad(grad_out, self._out_shape, self._who)


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
        out, pads = self._geometry(x, xp)
        kernel, stride, dilation = self.kernel_size, self.stride, self.dilation
        self._native = _native.library(x)
        if self._native is not None and _native.is_torch(self._native):
            geometry = (kernel, stride, self.padding, dilation, self.ceil_mode)
            y, self._argmax = _native.max_pool_forward(self._native, x, *geometry)
            self._native_x, self._x_shape, self._out_shape = x, tuple(x.shape), tuple(y.shape)
            return (y, self._argmax) if self.return_indices else y
        self._native = self._native_x = None
        xpad = pad(x, xp, pads, "constant", value=-math.inf)
        fast = _fastpool.max_pool_forward(xpad, kernel, stride, dilation, out)  # NumPy only
        best, arg = fast if fast is not None else (None, None)
        slices = window_slices(kernel, stride, dilation, out) if fast is None else ()
        for k, sl in enumerate(slices):
            window = xpad[(slice(None), slice(None), *sl)]
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
        self._out_shape = tuple(best.shape)
        self._padded = (tuple(xpad.shape[2:]), out, pads)
        if not self.return_indices:
            return best
        return best, flat_indices(arg, xp, kernel, stride, dilation, pads, tuple(x.shape[2:]))

    def backward(self, grad_out: Any) -> Any:
        require_forward(self._x_shape, self._who)
        self._check_grad(grad_out)
        if self._native is not None:
            geometry = (self.kernel_size, self.stride, self.padding, self.dilation)
            return _native.max_pool_backward(
                self._native, grad_out, self._native_x, self._argmax, *geometry, self.ceil_mode
            )
        xp = namespace(grad_out)
        padded, _, pads = self._padded
        kernel, arg = self.kernel_size, self._argmax
        dx = _fastpool.max_pool_backward(grad_out, arg, kernel, self.stride, self.dilation, padded)
        if dx is None:
            zero = xp.zeros((), dtype=grad_out.dtype, device=device(grad_out))
            pieces = [xp.where(arg == k, grad_out, zero) for k in range(math.prod(kernel))]
            dx = col2im(pieces, xp, padded, kernel, self.stride, self.dilation)
        return pad_backward(dx, xp, self._x_shape, pads)


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
    ``return_indices=True`` adds the positions of the maxima in ``L`` (``MaxUnpool1d``'s input).

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
    ``return_indices=True`` makes the forward return ``(y, indices)``, the flat positions
    ``h * W + w`` of the maxima in each input plane (PyTorch's, what ``MaxUnpool2d`` takes);
    backward then takes the gradient of ``y``.

    >>> import numpy as np, nnx
    >>> nnx.MaxPool2d(2)(np.ones((3, 4, 28, 28), np.float32)).shape
    (3, 4, 14, 14)
    """

    nd = 2


class MaxPool3d(_MaxPool):
    """Maximum over windows of ``(N, C, D, H, W)`` inputs, as ``torch.nn.MaxPool3d``.

    ``y[n, c, i, j, l] = max_{p, q, r} xpad[n, c, i*sd + p*dd, j*sh + q*dh, l*sw + r*dw]``
    (``-inf`` padding); the first maximum in row-major window order wins ties, and backward sends
    the gradient there (overlapping windows add). ``return_indices=True`` adds the flat positions
    ``(d * H + h) * W + w``. Shapes as ``MaxPool2d``, per axis.

    >>> import numpy as np, nnx
    >>> nnx.MaxPool3d(2)(np.ones((2, 3, 4, 6, 6), np.float32)).shape
    (2, 3, 2, 3, 3)
    """

    nd = 3


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

    def _torch_args(self) -> tuple:
        geometry = (self.kernel_size, self.stride, self.padding, self.ceil_mode)
        return (*geometry, self.count_include_pad, self.divisor_override)

    def _divisor(self, xp, x, pads, out):
        """Per-output divisor (``out``-shaped): the window's size clipped to the padded input
        (or to the input itself without ``count_include_pad``), PyTorch's rule."""
        if self.divisor_override is not None:
            return float(self.divisor_override)
        nd = self.nd
        total = None
        for a, (size, k, s, (p, _), o) in enumerate(
            zip(x.shape[2:], self.kernel_size, self.stride, pads, out, strict=True)
        ):
            row = []
            for i in range(o):
                start = i * s - p
                end = min(start + k, size + p)
                if not self.count_include_pad:
                    start, end = max(start, 0), min(end, size)
                row.append(end - start)
            count = xp.asarray(row, dtype=x.dtype, device=device(x))
            count = xp.reshape(count, (o, *(1,) * (nd - a - 1)))
            total = count if total is None else total * count
        return total

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        out, pads = self._geometry(x, xp)
        self._native = _native.library(x)
        if self._native is not None and _native.is_torch(self._native):
            y = _native.avg_pool_forward(self._native, x, *self._torch_args())
            self._native_x, self._x_shape, self._out_shape = x, tuple(x.shape), tuple(y.shape)
            return y
        self._native_x = None
        if self._native is not None:  # JAX: lax.reduce_window
            total = _native.jax_window_sum(self._native, x, self.kernel_size, self.stride, pads)
            self._div, self._native_pads = self._divisor(xp, x, pads, out), pads
            self._x_shape, self._out_shape = tuple(x.shape), tuple(total.shape)
            return total / self._div
        xpad = pad(x, xp, pads)
        total = None
        for sl in window_slices(self.kernel_size, self.stride, self.dilation, out):
            window = xpad[(slice(None), slice(None), *sl)]
            total = window if total is None else total + window
        self._div = self._divisor(xp, x, pads, out)
        self._x_shape = tuple(x.shape)
        self._out_shape = tuple(total.shape)
        self._padded = (tuple(xpad.shape[2:]), out, pads)
        return total / self._div

    def backward(self, grad_out: Any) -> Any:
        require_forward(self._x_shape, self._who)
        self._check_grad(grad_out)
        if self._native is not None and _native.is_torch(self._native):
            return _native.avg_pool_backward(
                self._native, grad_out, self._native_x, *self._torch_args()
            )
        g = grad_out / self._div
        if self._native is not None:
            geometry = (self.kernel_size, self.stride, self._native_pads)
            return _native.jax_window_sum_backward(self._native, g, self._x_shape[2:], *geometry)
        xp = namespace(grad_out)
        padded, _, pads = self._padded
        pieces = [g] * math.prod(self.kernel_size)
        dx = col2im(pieces, xp, padded, self.kernel_size, self.stride, self.dilation)
        return pad_backward(dx, xp, self._x_shape, pads)


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


class AvgPool3d(_AvgPool):
    """Mean over windows of ``(N, C, D, H, W)`` inputs, as ``torch.nn.AvgPool3d``.

    ``y[n, c, i, j, l] = sum_{p, q, r} xpad[n, c, i*sd + p, j*sh + q, l*sw + r] / count[i, j, l]``
    with zero padding; ``count`` is the window's volume clipped to the padded input
    (``count_include_pad=True``) or to the input, or ``divisor_override``. Backward spreads
    ``g / count`` over each window.

    >>> import numpy as np, nnx
    >>> nnx.AvgPool3d(2, stride=1)(np.ones((1, 2, 3, 3, 3), np.float32)).shape
    (1, 2, 2, 2, 2)
    """

    nd = 3
