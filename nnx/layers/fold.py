"""``Unfold`` (im2col as a layer) and ``Fold`` (its adjoint, col2im), as PyTorch's.

``Unfold`` gathers every sliding ``kh x kw`` block of a zero-padded ``(N, C, H, W)`` input into
a column: ``(N, C*kh*kw, L)`` with ``L`` blocks, channel-major (row ``c*kh*kw + i*kw + j`` holds
``xpad[n, c, i*dh + bi*sh, j*dw + bj*sw]`` for block ``(bi, bj)``). ``Fold`` sums such columns
back into an image of ``output_size`` (overlapping entries add up). Each one's backward is the
other one's forward: both are :func:`~nnx.layers._spatial.im2col` /
:func:`~nnx.layers._spatial.col2im` with the padding's adjoint.
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import namespace
from ..core.checks import check_grad, require_forward
from ..core.module import Module
from ._spatial import col2im, conv_out_size, im2col, int_tuple, pad, pad_backward


class _FoldBase(Module):
    """Arguments shared by Fold and Unfold."""

    _shape = None

    def _parse(self, kernel_size, dilation, padding, stride) -> None:
        who = type(self).__name__
        self.kernel_size, self.dilation = kernel_size, dilation
        self.padding, self.stride = padding, stride
        self._kernel = int_tuple(kernel_size, 2, "kernel_size", who)
        self._dilation = int_tuple(dilation, 2, "dilation", who)
        self._padding = int_tuple(padding, 2, "padding", who, minimum=0)
        self._stride = int_tuple(stride, 2, "stride", who)

    def _who(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def _blocks(self, size: tuple[int, int]) -> tuple[int, int]:
        """Blocks along each axis of a ``size`` image (padded by ``padding``)."""
        return tuple(
            conv_out_size(n, k, s, 2 * p, d)
            for n, k, s, p, d in zip(
                size, self._kernel, self._stride, self._padding, self._dilation, strict=True
            )
        )

    def _pads(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return tuple((p, p) for p in self._padding)


class Unfold(_FoldBase):
    """Extract sliding local blocks: ``(N, C, H, W)`` -> ``(N, C*kh*kw, L)`` (or unbatched
    ``(C, H, W)`` -> ``(C*kh*kw, L)``), ``L = Ho*Wo`` with
    ``Ho = (H + 2*ph - dh*(kh-1) - 1) // sh + 1`` (likewise ``Wo``).

    Args as ``torch.nn.Unfold``: ``kernel_size, dilation=1, padding=0, stride=1``.
    Backward: ``dx = col2im(g)`` cropped by the padding (overlapping blocks add up).

    >>> import numpy as np, nnx
    >>> nnx.Unfold(kernel_size=2)(np.ones((1, 3, 4, 4), np.float32)).shape
    (1, 12, 9)
    """

    def __init__(self, kernel_size, dilation=1, padding=0, stride=1):
        self._parse(kernel_size, dilation, padding, stride)

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, dilation={self.dilation}, "
            f"padding={self.padding}, stride={self.stride}"
        )

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        if x.ndim not in (3, 4):
            raise ValueError(
                f"{self._who()}: expected input of shape (N, C, H, W) or (C, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        x4 = x if x.ndim == 4 else xp.expand_dims(x, axis=0)
        out = self._blocks(tuple(x4.shape[2:]))
        if any(o <= 0 for o in out):
            raise ValueError(
                f"{self._who()}: input of shape {tuple(x.shape)} (padded by {self._padding}) "
                f"is smaller than the dilated kernel: no block fits"
            )
        xpad = pad(x4, xp, self._pads())
        cols = im2col(xpad, xp, self._kernel, self._stride, self._dilation, out)
        n, c = x4.shape[:2]
        y = xp.reshape(cols, (n, c * math.prod(self._kernel), math.prod(out)))
        self._shape = tuple(x.shape)
        self._geometry = (tuple(x4.shape), tuple(xpad.shape[2:]), out)
        return y if x.ndim == 4 else y[0, ...]

    def backward(self, grad_out: Any) -> Any:
        shape = require_forward(self._shape, self._who())
        shape4, padded, out = self._geometry
        n, c = shape4[:2]
        taps = math.prod(self._kernel)
        expected = (n, c * taps, math.prod(out))
        check_grad(grad_out, expected if len(shape) == 4 else expected[1:], self._who())
        xp = namespace(grad_out)
        g = xp.reshape(grad_out, (n, c, taps, *out))
        pieces = [g[:, :, k, ...] for k in range(taps)]
        dx = col2im(pieces, xp, padded, self._kernel, self._stride, self._dilation)
        dx = pad_backward(dx, xp, shape4, self._pads())
        return dx if len(shape) == 4 else dx[0, ...]


class Fold(_FoldBase):
    """Combine sliding local blocks into an image (the adjoint of ``Unfold``):
    ``(N, C*kh*kw, L)`` -> ``(N, C, H, W)`` (or unbatched ``(C*kh*kw, L)`` -> ``(C, H, W)``),
    ``(H, W) = output_size``; ``L`` must equal the number of blocks ``Unfold`` finds in such
    an image. Entries of overlapping blocks are summed.

    Args as ``torch.nn.Fold``: ``output_size, kernel_size, dilation=1, padding=0, stride=1``.
    Backward: ``dx = Unfold(g)`` (the padded ``g``'s blocks).

    >>> import numpy as np, nnx
    >>> nnx.Fold(output_size=(3, 3), kernel_size=2)(np.ones((1, 4, 4), np.float32))[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]], dtype=float32)
    """

    def __init__(self, output_size, kernel_size, dilation=1, padding=0, stride=1):
        self._parse(kernel_size, dilation, padding, stride)
        self.output_size = output_size
        self._size = int_tuple(output_size, 2, "output_size", "Fold")

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, kernel_size={self.kernel_size}, "
            f"dilation={self.dilation}, padding={self.padding}, stride={self.stride}"
        )

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        taps = math.prod(self._kernel)
        out = self._blocks(self._size)
        blocks = math.prod(out)
        if x.ndim not in (2, 3) or x.shape[-2] % taps or x.shape[-1] != blocks or blocks <= 0:
            raise ValueError(
                f"{self._who()}: expected input of shape (N, C*{taps}, {blocks}) or "
                f"(C*{taps}, {blocks}) ({taps} kernel entries, {blocks} blocks fit "
                f"output_size {self._size}), got shape {tuple(x.shape)}"
            )
        x3 = x if x.ndim == 3 else xp.expand_dims(x, axis=0)
        n, c = x3.shape[0], x3.shape[1] // taps
        cols = xp.reshape(x3, (n, c, taps, *out))
        padded = tuple(s + 2 * p for s, p in zip(self._size, self._padding, strict=True))
        pieces = [cols[:, :, k, ...] for k in range(taps)]
        y = col2im(pieces, xp, padded, self._kernel, self._stride, self._dilation)
        y = pad_backward(y, xp, (n, c, *self._size), self._pads())
        self._shape = tuple(x.shape)
        self._geometry = (n, c, out)
        return y if x.ndim == 3 else y[0, ...]

    def backward(self, grad_out: Any) -> Any:
        shape = require_forward(self._shape, self._who())
        n, c, out = self._geometry
        expected = (n, c, *self._size)
        check_grad(grad_out, expected if len(shape) == 3 else expected[1:], self._who())
        xp = namespace(grad_out)
        g4 = grad_out if len(shape) == 3 else xp.expand_dims(grad_out, axis=0)
        gpad = pad(g4, xp, self._pads())
        cols = im2col(gpad, xp, self._kernel, self._stride, self._dilation, out)
        dx = xp.reshape(cols, (n, c * math.prod(self._kernel), math.prod(out)))
        return dx if len(shape) == 3 else dx[0, ...]
