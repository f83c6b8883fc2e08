"""Transposed convolution: ``ConvTranspose2d``, the adjoint of ``Conv2d``'s input map.

Its forward pass is ``Conv2d``'s input-gradient map (:func:`~nnx.layers.conv.conv_input_grad`)
and its backward pass is ``Conv2d``'s forward map for the input gradient and weight-gradient map
for ``dW``: the same code as :mod:`nnx.layers.conv` with forward and backward exchanged.
"""

from __future__ import annotations

import math
from typing import Any

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
from ._spatial import (
    int_tuple,
    pad,
)
from .conv import _init_parameters, conv_forward, conv_input_grad, conv_weight_grad


@lazy_input("in_channels", axis=1, multiple_of="groups")
class ConvTranspose2d(Module):
    """Transposed 2-d convolution (the input-gradient map of a ``Conv2d``), as PyTorch's.

    Each input pixel ``x[n, c, i, j]`` adds ``x * W[c, :, :, :]`` into the output at
    ``(i*sh - ph + p*dh, j*sw - pw + q*dw)``. Weight ``(in, out // groups, kh, kw)``.

    Shapes: ``(N, C_in, H, W)`` -> ``(N, C_out, H_out, W_out)`` with
    ``H_out = (H - 1)*sh - 2*ph + dh*(kh - 1) + output_padding_h + 1``.

    Backward: ``dx = W @ im2col(pad(g))`` (a strided ``Conv2d`` of ``g``), ``dW = sum_n x_n
    cols_n^T``, ``db = sum g``.

    >>> import numpy as np, nnx
    >>> up = nnx.ConvTranspose2d(8, 4, 2, stride=2, rng=0)
    >>> up(np.ones((1, 8, 7, 7), np.float32)).shape
    (1, 4, 14, 14)
    """

    _x = None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        output_padding: int | tuple[int, int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | tuple[int, int] = 1,
        padding_mode: str = "zeros",
        *,
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        who = "ConvTranspose2d"
        self.in_channels = positive_int(in_channels, "in_channels", who)
        self.out_channels = positive_int(out_channels, "out_channels", who)
        self.kernel_size = int_tuple(kernel_size, 2, "kernel_size", who)
        self.stride = int_tuple(stride, 2, "stride", who)
        self.padding = int_tuple(padding, 2, "padding", who, minimum=0)
        self.output_padding = int_tuple(output_padding, 2, "output_padding", who, minimum=0)
        self.dilation = int_tuple(dilation, 2, "dilation", who)
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
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.output_padding != (0, 0):
            text += f", output_padding={self.output_padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.bias is None:
            text += ", bias=False"
        return text

    def _who(self) -> str:
        return f"ConvTranspose2d({self.extra_repr()})"

    def _out_size(self, h: int, w: int) -> tuple[int, int]:
        return tuple(
            (n - 1) * s - 2 * p + d * (k - 1) + op + 1
            for n, s, p, d, k, op in zip(
                (h, w),
                self.stride,
                self.padding,
                self.dilation,
                self.kernel_size,
                self.output_padding,
                strict=True,
            )
        )

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        w = self.weight.value
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self._who()}: expected input of shape (N, C, H, W) with C={self.in_channels}, "
                f"got shape {tuple(x.shape)}"
            )
        check_floating(xp, x, self._who())
        check_same_dtype(x, w, self._who())
        check_same_device(x, w, self._who())
        n, c, h, wd = x.shape
        ho, wo = self._out_size(h, wd)
        if ho <= 0 or wo <= 0:
            raise ValueError(
                f"{self._who()}: input of shape {tuple(x.shape)} gives an empty output ({ho}, {wo})"
            )
        ph, pw = self.padding
        # the input gradient of a convolution from out_channels to in_channels whose weight is
        # this layer's (in, out/G, kh, kw): x spread by the kernel, then cropped by the padding
        y_cn = conv_input_grad(
            xp.permute_dims(x, (1, 0, 2, 3)),
            w,
            xp,
            self.groups,
            (ho + 2 * ph, wo + 2 * pw),
            self.stride,
            self.dilation,
            ((ph, ph), (pw, pw)),
        )
        y = xp.permute_dims(y_cn, (1, 0, 2, 3))
        if self.bias is not None:
            y = y + xp.reshape(self.bias.value, (1, -1, 1, 1))
        self._x = x
        return y

    def backward(self, grad_out: Any, need_input_grad: bool = True) -> Any:
        """Parameter gradients into ``.grad``; returns ``dL/dx`` (None when ``need_input_grad``
        is False)."""
        x = require_forward(self._x, self._who())
        xp = namespace(x)
        n, c, h, wd = x.shape
        ho, wo = self._out_size(h, wd)
        check_grad(grad_out, (n, self.out_channels, ho, wo), self._who())
        ph, pw = self.padding
        if self.bias is not None:
            self.bias.accumulate(xp.sum(grad_out, axis=(0, 2, 3)))
        # the adjoint of "col2im then crop" is "pad then im2col" at the input's positions: that
        # convolution's weight gradient and forward map
        gpad = pad(xp.permute_dims(grad_out, (1, 0, 2, 3)), xp, ((ph, ph), (pw, pw)))
        x_cn = xp.permute_dims(x, (1, 0, 2, 3))
        dw = conv_weight_grad(
            gpad, x_cn, xp, self.groups, self.kernel_size, self.stride, self.dilation
        )
        self.weight.accumulate(dw)
        if not need_input_grad:
            return None
        w = self.weight.value
        dx = conv_forward(gpad, w, xp, self.groups, self.stride, self.dilation, (h, wd))
        return xp.permute_dims(dx, (1, 0, 2, 3))
