"""Transposed convolutions: ``ConvTranspose1d``, ``ConvTranspose2d`` and ``ConvTranspose3d``, the
adjoints of the convolutions' input maps.

Their forward pass is the convolution's input-gradient map
(:func:`~nnx.layers.conv.conv_input_grad`) and their backward pass is the convolution's forward
map for the input gradient and weight-gradient map for ``dW``: the same code as
:mod:`nnx.layers.conv` with forward and backward exchanged. The 1-d layer runs the 2-d code with
an ``H`` axis of size 1.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from .. import _native
from ..backend import Backend, namespace
from ..core.checks import (
    check_floating,
    check_grad,
    check_same_device,
    check_same_dtype,
    positive_int,
    require_forward,
)
from ..core.init import Seed
from ..core.lazy import lazy_input
from ..core.module import Module
from ._spatial import int_tuple, pad
from .conv import _init_parameters, conv_forward, conv_input_grad, conv_weight_grad

_LAYOUTS = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}


def _is_count(value: Any) -> bool:
    """A non-negative integer (not a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0


@lazy_input("in_channels", axis=1, multiple_of="groups")
class _ConvTransposeNd(Module):
    """Shared constructor, checks and computation of the transposed convolutions."""

    nd = 2
    _x = None
    _native = None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] = 0,
        output_padding: int | tuple[int, ...] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | tuple[int, ...] = 1,
        padding_mode: str = "zeros",
        *,
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        who = type(self).__name__
        nd = self.nd
        self.in_channels = positive_int(in_channels, "in_channels", who)
        self.out_channels = positive_int(out_channels, "out_channels", who)
        self.kernel_size = int_tuple(kernel_size, nd, "kernel_size", who)
        self.stride = int_tuple(stride, nd, "stride", who)
        if isinstance(padding, str):
            raise ValueError(f"{who}: padding must be an int or a tuple, got {padding!r}")
        self.padding = int_tuple(padding, nd, "padding", who, minimum=0)
        self.output_padding = int_tuple(output_padding, nd, "output_padding", who, minimum=0)
        self.dilation = int_tuple(dilation, nd, "dilation", who)
        self.groups = positive_int(groups, "groups", who)
        if padding_mode != "zeros":
            raise ValueError(f"{who}: only padding_mode='zeros' is supported, got {padding_mode!r}")
        self.padding_mode = padding_mode
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"{who}: in_channels ({self.in_channels}) and out_channels ({self.out_channels}) "
                f"must both be divisible by groups ({self.groups})"
            )
        for op, s, d in zip(self.output_padding, self.stride, self.dilation, strict=True):
            if op >= s and op >= d:
                raise ValueError(
                    f"{who}: output_padding {self.output_padding} must be smaller than either "
                    f"stride {self.stride} or dilation {self.dilation}"
                )
        og = self.out_channels // self.groups
        fan_in = og * math.prod(self.kernel_size)  # PyTorch computes it from weight.shape[1]
        wshape = (self.in_channels, og, *self.kernel_size)
        _init_parameters(self, wshape, fan_in, bias, rng, dtype, device)

    def extra_repr(self) -> str:
        one = (lambda t: t[0]) if self.nd == 1 else (lambda t: t)
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={one(self.kernel_size)}, "
            f"stride={one(self.stride)}"
        )
        if any(self.padding):
            text += f", padding={one(self.padding)}"
        if any(self.output_padding):
            text += f", output_padding={one(self.output_padding)}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if any(d != 1 for d in self.dilation):
            text += f", dilation={one(self.dilation)}"
        if self.bias is None:
            text += ", bias=False"
        return text

    def _who(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def _min_size(self, sizes: Sequence[int]) -> tuple[int, ...]:
        """The output size without ``output_padding``: ``(n-1)*s - 2p + d*(k-1) + 1``."""
        return tuple(
            (n - 1) * s - 2 * p + d * (k - 1) + 1
            for n, s, p, d, k in zip(
                sizes, self.stride, self.padding, self.dilation, self.kernel_size, strict=True
            )
        )

    def _output_padding(self, sizes: Sequence[int], output_size: Any) -> tuple[int, ...]:
        """``output_padding``, or the one that gives ``output_size`` (PyTorch's rule: each size
        between the minimum and the minimum + stride - 1)."""
        if output_size is None:
            return self.output_padding
        nd = self.nd
        wanted = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,)
        if len(wanted) == nd + 2:
            wanted = wanted[2:]
        if len(wanted) != nd or not all(_is_count(v) for v in wanted):
            raise ValueError(
                f"{self._who()}: output_size must have {nd} or {nd + 2} non-negative integers, "
                f"got {output_size!r}"
            )
        low = self._min_size(sizes)
        for want, lo, s in zip(wanted, low, self.stride, strict=True):
            if not lo <= want <= lo + s - 1:
                raise ValueError(
                    f"{self._who()}: requested output_size {tuple(wanted)} is not reachable from "
                    f"input size {tuple(sizes)}: each size must lie between "
                    f"{low} and {tuple(lo + s - 1 for lo, s in zip(low, self.stride, strict=True))}"
                )
        return tuple(int(want) - lo for want, lo in zip(wanted, low, strict=True))

    def _as_2d(self, a: Any, xp: Any) -> Any:
        """The 1-d layer's arrays with an ``H`` axis of size 1 (the others as given)."""
        return xp.expand_dims(a, axis=2) if self.nd == 1 else a

    def _geometry(self) -> tuple[tuple[int, ...], ...]:
        """``(stride, padding, dilation)`` of the computation (1-d: with the ``H`` axis)."""
        if self.nd == 1:
            return (1, *self.stride), (0, *self.padding), (1, *self.dilation)
        return self.stride, self.padding, self.dilation

    def forward(self, x: Any, output_size: Any = None) -> Any:
        xp = namespace(x)
        nd = self.nd
        w = self.weight.value
        if x.ndim != nd + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self._who()}: expected input of shape {_LAYOUTS[nd]} with "
                f"C={self.in_channels}, got shape {tuple(x.shape)}"
            )
        check_floating(xp, x, self._who())
        check_same_dtype(x, w, self._who())
        check_same_device(x, w, self._who())
        sizes = tuple(x.shape[2:])
        extra = self._output_padding(sizes, output_size)
        out = tuple(lo + op for lo, op in zip(self._min_size(sizes), extra, strict=True))
        if any(o <= 0 for o in out):
            raise ValueError(
                f"{self._who()}: input of shape {tuple(x.shape)} gives an empty output {out}"
            )
        lib = _native.library(x, w)
        self._native = lib if lib is not None and _native.is_torch(lib) else None
        if self._native is not None:  # PyTorch's kernel (nnx._native)
            self._native_geometry = (self.stride, self.padding, extra, self.dilation)
            b = None if self.bias is None else self.bias.value
            y = _native.conv_transpose_forward(
                lib, x, w, b, self.stride, self.padding, extra, self.dilation, self.groups
            )
            self._x, self._out = x, out
            return y
        stride, padding, dilation = self._geometry()
        out2 = (1, *out) if nd == 1 else out
        x2 = self._as_2d(x, xp)
        d = x2.ndim - 2
        swap = (1, 0, *range(2, 2 + d))
        # the input gradient of a convolution from out_channels to in_channels whose weight is
        # this layer's (in, out/G, *kernel): x spread by the kernel, then cropped by the padding
        y_cn = conv_input_grad(
            xp.permute_dims(x2, swap),
            self._as_2d(w, xp),
            xp,
            self.groups,
            tuple(o + 2 * p for o, p in zip(out2, padding, strict=True)),
            stride,
            dilation,
            tuple((p, p) for p in padding),
        )
        y = xp.permute_dims(y_cn, swap)
        if self.bias is not None:
            y = y + xp.reshape(self.bias.value, (1, -1) + (1,) * d)
        self._x = x
        self._out = out
        return y[:, :, 0, :] if nd == 1 else y

    def backward(self, grad_out: Any, need_input_grad: bool = True) -> Any:
        """Parameter gradients into ``.grad``; returns ``dL/dx`` (None when ``need_input_grad``
        is False)."""
        x = require_forward(self._x, self._who())
        xp = namespace(x)
        check_grad(grad_out, (x.shape[0], self.out_channels, *self._out), self._who())
        if self._native is not None:
            dx, dw, db = _native.conv_transpose_backward(
                self._native, grad_out, x, self.weight.value, self._native_geometry,
                self.groups, need_input_grad, self.bias is not None,
            )  # fmt: skip
            self.weight.accumulate(dw)
            if db is not None:
                self.bias.accumulate(db)
            return dx
        stride, padding, dilation = self._geometry()
        g = self._as_2d(grad_out, xp)
        d = g.ndim - 2
        swap = (1, 0, *range(2, 2 + d))
        if self.bias is not None:
            self.bias.accumulate(xp.sum(g, axis=(0, *range(2, 2 + d))))
        # the adjoint of "col2im then crop" is "pad then im2col" at the input's positions: that
        # convolution's weight gradient and forward map
        gpad = pad(xp.permute_dims(g, swap), xp, tuple((p, p) for p in padding))
        x_cn = xp.permute_dims(self._as_2d(x, xp), swap)
        w = self._as_2d(self.weight.value, xp)
        dw = conv_weight_grad(gpad, x_cn, xp, self.groups, tuple(w.shape[2:]), stride, dilation)
        self.weight.accumulate(xp.reshape(dw, tuple(self.weight.value.shape)))
        if not need_input_grad:
            return None
        dx = conv_forward(gpad, w, xp, self.groups, stride, dilation, tuple(x_cn.shape[2:]))
        dx = xp.permute_dims(dx, swap)
        return dx[:, :, 0, :] if self.nd == 1 else dx


class ConvTranspose1d(_ConvTransposeNd):
    """Transposed 1-d convolution (the input-gradient map of a ``Conv1d``), as PyTorch's.

    Each input entry ``x[n, c, i]`` adds ``x * W[c, :, :]`` into the output at
    ``i*s - p + q*d`` for kernel offset ``q``. Weight ``(in, out // groups, k)``, bias
    ``(out,)``. ``forward(x, output_size=None)``: ``output_size`` (``(L_out,)`` or
    ``(N, C, L_out)``) picks the output padding, as in PyTorch.

    Shapes: ``(N, C_in, L)`` -> ``(N, C_out, L_out)`` with
    ``L_out = (L - 1)*s - 2*p + d*(k - 1) + output_padding + 1``.

    Backward: ``dx = W @ im2col(pad(g))`` (a strided ``Conv1d`` of ``g``), ``dW = sum_n x_n
    cols_n^T``, ``db = sum g``.

    >>> import numpy as np, nnx
    >>> nnx.ConvTranspose1d(4, 2, 3, stride=2, rng=0)(np.ones((1, 4, 5), np.float32)).shape
    (1, 2, 11)
    """

    nd = 1


class ConvTranspose2d(_ConvTransposeNd):
    """Transposed 2-d convolution (the input-gradient map of a ``Conv2d``), as PyTorch's.

    Each input pixel ``x[n, c, i, j]`` adds ``x * W[c, :, :, :]`` into the output at
    ``(i*sh - ph + p*dh, j*sw - pw + q*dw)``. Weight ``(in, out // groups, kh, kw)``.
    ``forward(x, output_size=None)`` as PyTorch's.

    Shapes: ``(N, C_in, H, W)`` -> ``(N, C_out, H_out, W_out)`` with
    ``H_out = (H - 1)*sh - 2*ph + dh*(kh - 1) + output_padding_h + 1``.

    Backward: ``dx = W @ im2col(pad(g))`` (a strided ``Conv2d`` of ``g``), ``dW = sum_n x_n
    cols_n^T``, ``db = sum g``.

    >>> import numpy as np, nnx
    >>> up = nnx.ConvTranspose2d(8, 4, 2, stride=2, rng=0)
    >>> up(np.ones((1, 8, 7, 7), np.float32)).shape
    (1, 4, 14, 14)
    """

    nd = 2


class ConvTranspose3d(_ConvTransposeNd):
    """Transposed 3-d convolution (the input-gradient map of a ``Conv3d``), as PyTorch's.

    Each input voxel ``x[n, c, i, j, l]`` adds ``x * W[c]`` into the output at
    ``(i*sd - pd + p*dd, j*sh - ph + q*dh, l*sw - pw + r*dw)``. Weight
    ``(in, out // groups, kd, kh, kw)``. ``forward(x, output_size=None)`` as PyTorch's.

    Shapes: ``(N, C_in, D, H, W)`` -> ``(N, C_out, D_out, H_out, W_out)`` with
    ``D_out = (D - 1)*sd - 2*pd + dd*(kd - 1) + output_padding_d + 1`` (likewise H, W).

    Backward as ``ConvTranspose2d``'s, over three spatial axes.

    >>> import numpy as np, nnx
    >>> up = nnx.ConvTranspose3d(4, 2, 2, stride=2, rng=0)
    >>> up(np.ones((1, 4, 3, 3, 3), np.float32)).shape
    (1, 2, 6, 6, 6)
    """

    nd = 3
