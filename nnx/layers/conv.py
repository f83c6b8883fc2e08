"""Convolutions: ``Conv1d`` and ``Conv2d`` as im2col + matmul, and the three maps they share with
``ConvTranspose2d`` (:mod:`nnx.layers.conv_transpose`).

``Conv2d`` computes, for output channel ``o`` of group ``g``,

    y[n, o, i, j] = b[o] + sum_{c in g, p, q} W[o, c, p, q] * xpad[n, c, i*sh + p*dh, j*sw + q*dw]

by gathering the input under every kernel offset (:func:`~nnx.layers._spatial.im2col`, built from
slices and ``stack``) and multiplying with the weight reshaped to ``(G, O/G, C/G*kh*kw)``.
Backward: ``db = sum g``, ``dW = g @ cols^T`` summed over the batch, and
``dcols = W^T @ g`` added back to the input positions it was gathered from (col2im), then through
the padding's adjoint; for stride 1 the input gradient is instead a convolution of the padded
``g`` with the flipped kernel. ``ConvTranspose2d`` is the same maps with forward and backward
exchanged. The 1-d layers run the 2-d code with an ``H`` axis of size 1. On NumPy arrays the
products take the fast path of :mod:`nnx._fastconv`; on PyTorch tensors and JAX arrays the
convolutions (forward and both gradients) run the library's own kernels (:mod:`nnx._native`);
both are tested equal to this portable code.
"""

from __future__ import annotations

import math
from typing import Any

from .. import _fastconv, _native
from ..backend import Backend, get_backend, is_writeable, namespace
from ..core.checks import (
    check_floating,
    check_grad,
    check_same_device,
    check_same_dtype,
    positive_int,
    require_forward,
)
from ..core.init import Seed, as_rng, reserve
from ..core.lazy import lazy_input
from ..core.module import Module, Parameter
from ._spatial import (
    PADDING_MODES,
    col2im,
    conv_out_size,
    int_tuple,
    pad,
    pad_backward,
    window_slices,
)


def _uniform(rng, shape, fan_in):
    """PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a=sqrt(5))."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    reserve(shape)
    return rng.uniform(-bound, bound, size=shape)


def _init_parameters(
    layer: Module,
    wshape: tuple[int, ...],
    fan_in: int,
    bias: bool,
    rng: Any,
    dtype: Any,
    device: Any,
) -> None:
    """``layer.weight`` of shape ``wshape`` and (with ``bias``) ``layer.bias`` of
    ``layer.out_channels``, both drawn as PyTorch does from ``fan_in``, in that order."""
    backend = get_backend(device)
    host_rng = as_rng(rng)
    layer.weight = Parameter(
        backend.asarray(_uniform(host_rng, wshape, fan_in), dtype=dtype), "weight"
    )
    if bias:
        b = _uniform(host_rng, (layer.out_channels,), fan_in)
        layer.bias = Parameter(backend.asarray(b, dtype=dtype), "bias")
    else:
        layer.bias = None


# The products run in a "channels, then batch" layout: the input is viewed as (C, N, H, W), so
# the gathered columns are (G, C/G*kh*kw, N*Ho*Wo) and each of the three products (forward,
# weight gradient, input gradient) is ONE matrix product per group over the whole batch, rather
# than N small ones. The output is a (N, O, Ho, Wo) view of (O, N, Ho, Wo) memory, which the next
# convolution's (C, N, H, W) view reads without a copy.
#
# The three maps below are all that Conv2d and ConvTranspose2d compute (the transposed
# convolution's forward is the convolution's input gradient, its backward the convolution's
# forward and weight gradient). Each takes NumPy's fast path (nnx._fastconv: the same
# products on cache-sized batch chunks) when its arrays are NumPy arrays.


def _columns(x_cn, xp, groups, kernel, stride, dilation, out):
    """``x_cn`` ``(C, N, *padded)`` -> columns ``(G, C/G*prod(kernel), N*prod(out))``: one
    strided slice per kernel offset, stacked (portable im2col)."""
    c, n = x_cn.shape[:2]
    cols = xp.stack(
        [
            x_cn[(slice(None), slice(None), *s)]
            for s in window_slices(kernel, stride, dilation, out)
        ],
        axis=1,
    )
    return xp.reshape(cols, (groups, c // groups * math.prod(kernel), n * math.prod(out)))


def _rows(a_cn, xp, groups):
    """``(O, N, *out)`` as ``(G, O/G, N*prod(out))``."""
    o, n, *out = a_cn.shape
    return xp.reshape(a_cn, (groups, o // groups, n * math.prod(out)))


def conv_forward(x_cn, w, xp, groups, stride, dilation, out):
    """``y`` ``(O, N, *out)`` of the padded input ``x_cn`` ``(C, N, *padded)`` and the weight
    ``w`` ``(O, C/G, *kernel)``: ``y = W @ cols`` per group."""
    if _fastconv.applies(x_cn, w):
        return _fastconv.conv_forward(x_cn, w, groups, stride, dilation, out)
    n = x_cn.shape[1]
    o, cg, *kernel = w.shape
    cols = _columns(x_cn, xp, groups, tuple(kernel), stride, dilation, out)
    wm = xp.reshape(w, (groups, o // groups, cg * math.prod(kernel)))
    return xp.reshape(wm @ cols, (o, n, *out))


def conv_weight_grad(x_cn, g_cn, xp, groups, kernel, stride, dilation):
    """``dW`` ``(O, C/G, *kernel)`` from the padded input ``x_cn`` and the output gradient
    ``g_cn`` ``(O, N, *out)``: ``g @ cols^T`` per group (the columns gathered again)."""
    if _fastconv.applies(x_cn, g_cn):
        return _fastconv.conv_weight_grad(x_cn, g_cn, groups, kernel, stride, dilation)
    o = g_cn.shape[0]
    cols = _columns(x_cn, xp, groups, kernel, stride, dilation, tuple(g_cn.shape[2:]))
    dw = _rows(g_cn, xp, groups) @ xp.matrix_transpose(cols)
    return xp.reshape(dw, (o, x_cn.shape[0] // groups, *kernel))


def conv_input_grad(g_cn, w, xp, groups, size, stride, dilation, crop=None):
    """``dx`` ``(C, N, *(size - crop))``: the gradient of the padded input (spatial ``size``)
    from ``g_cn`` ``(O, N, *out)``, with ``crop = ((lo, hi), ...)`` (one pair per spatial axis,
    none by default) cut off its borders (a zero padding's adjoint; the convolution route never
    computes them).

    Stride 1, where ``O * prod(size) <= 1.5 * C * prod(out)`` (the padded input at most 1.5x the
    output and no more output than input channels, as with "same" 3x3 layers):
    :func:`_input_grad_by_convolution`; otherwise :func:`_input_grad_by_col2im`, then cropped.
    Both give the same result (tested); the first needs no scatter and measured 1.3-1.7x faster
    on ResNet layers, but 2x slower where it has few output rows (1 -> 6 channels at 28x28, 5x5
    kernel). On NumPy a strided 2-d layer with a kernel wider than its stride takes the col2im
    by residue classes (:func:`nnx._fastconv.conv_input_grad_by_residues`, the same numbers).
    """
    o, n, *out = g_cn.shape
    c = w.shape[1] * groups
    size = tuple(size)
    crop = tuple(crop) if crop is not None else ((0, 0),) * len(size)
    if all(s == 1 for s in stride) and o * math.prod(size) <= 1.5 * c * math.prod(out):
        return _input_grad_by_convolution(g_cn, w, xp, groups, size, dilation, crop)
    if _fastconv.applies(g_cn, w) and _fastconv.residues_pay(size, w.shape[2:], stride, dilation):
        return _fastconv.conv_input_grad_by_residues(g_cn, w, groups, size, stride, crop)
    dx = _input_grad_by_col2im(g_cn, w, xp, groups, size, stride, dilation)
    key = tuple(slice(lo, s - hi) for s, (lo, hi) in zip(size, crop, strict=True))
    return dx[(slice(None), slice(None), *key)]


def _input_grad_by_col2im(g_cn, w, xp, groups, size, stride, dilation):
    """The columns' gradient ``W^T @ g`` added back where each entry was read from."""
    o, n, *out = g_cn.shape
    _, cg, *kernel = w.shape
    if _fastconv.applies(g_cn, w) and _fastconv.batch_inner_pays(size, kernel, stride, out):
        return _fastconv.conv_input_grad_batch_inner(g_cn, w, groups, tuple(size), stride, dilation)
    taps = math.prod(kernel)
    wm = xp.reshape(w, (groups, o // groups, cg * taps))
    dcols = xp.reshape(
        xp.matrix_transpose(wm) @ _rows(g_cn, xp, groups), (groups * cg, taps, n, *out)
    )
    pieces = [dcols[:, k, ...] for k in range(taps)]
    return col2im(pieces, xp, size, tuple(kernel), stride, dilation)


def _input_grad_by_convolution(g_cn, w, xp, groups, size, dilation, crop):
    """Stride 1 only: ``dx[c, p] = sum_{o, i} W[o, c, i] g[o, p - i*dilation]`` (``i`` the
    kernel offset) is a convolution of ``g`` with the kernel flipped and its two channel axes
    exchanged within each group. ``g`` is zero-padded by ``d*(k-1)`` less the entries ``crop``
    cuts from ``dx`` (at the high end also less whatever ``size`` has beyond the last window; a
    negative padding slices ``g``), so only the kept part of ``dx`` is computed."""
    o, n, *gout = g_cn.shape
    _, cg, *kernel = w.shape
    d = len(kernel)
    out = tuple(s - lo - hi for s, (lo, hi) in zip(size, crop, strict=True))
    pads = tuple(
        (dl * (k - 1) - lo, m + lo - go)  # high end: out + (k-1)d - low - gout
        for dl, k, (lo, _), m, go in zip(dilation, kernel, crop, out, gout, strict=True)
    )
    g_cn = g_cn[
        (slice(None), slice(None))
        + tuple(
            slice(max(0, -lo), go - max(0, -hi)) for (lo, hi), go in zip(pads, gout, strict=True)
        )
    ]
    gpad = pad(g_cn, xp, tuple((max(0, lo), max(0, hi)) for lo, hi in pads))
    wf = xp.reshape(w, (groups, o // groups, cg, *kernel))
    wf = xp.permute_dims(wf, (0, 2, 1, *range(3, 3 + d)))
    wf = xp.reshape(wf, (groups * cg, o // groups, *kernel))
    wf = xp.flip(wf, axis=tuple(range(2, 2 + d)))
    return conv_forward(gpad, wf, xp, groups, (1,) * d, dilation, out)


@lazy_input("in_channels", axis=1, multiple_of="groups")
class _ConvNd(Module):
    """Shared constructor, checks and computation of Conv1d, Conv2d and Conv3d (the 1-d layer
    runs the 2-d code with an ``H`` axis of size 1)."""

    nd = 2
    _x_shape = None
    _native = None
    # backward's dL/dx is a new array (the input-gradient product's result, a crop or layout
    # view of one, or the padding adjoint's) that nothing else holds: inside Sequential the layer
    # below (ReLU) may compute its own dL/dx in it (core.calls.backward_declares)
    fresh_input_grad = True
    _native_saved = None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] | str = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool = True,
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
        self.dilation = int_tuple(dilation, nd, "dilation", who)
        self.groups = positive_int(groups, "groups", who)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"{who}: in_channels ({self.in_channels}) and out_channels ({self.out_channels}) "
                f"must both be divisible by groups ({self.groups})"
            )
        if padding_mode not in PADDING_MODES:
            raise ValueError(
                f"{who}: padding_mode must be one of {', '.join(map(repr, PADDING_MODES))}, "
                f"got {padding_mode!r}"
            )
        self.padding_mode = padding_mode
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"{who}: padding must be an int, a tuple, 'same' or 'valid', got {padding!r}"
                )
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(f"{who}: padding='same' needs stride 1, got stride {stride!r}")
            self.padding = padding
            if padding == "valid":
                pads = [(0, 0)] * nd
            else:  # PyTorch: total d*(k-1), the smaller half on the left
                pads = []
                for k, d in zip(self.kernel_size, self.dilation, strict=True):
                    total = d * (k - 1)
                    pads.append((total // 2, total - total // 2))
        else:
            self.padding = int_tuple(padding, nd, "padding", who, minimum=0)
            pads = [(p, p) for p in self.padding]
        self._pads = ((0, 0), *pads) if nd == 1 else tuple(pads)
        cg = self.in_channels // self.groups
        fan_in = cg * math.prod(self.kernel_size)
        wshape = (self.out_channels, cg, *self.kernel_size)
        _init_parameters(self, wshape, fan_in, bias, rng, dtype, device)
        self._xpad = None

    def extra_repr(self) -> str:
        one = (lambda t: t[0]) if self.nd == 1 else (lambda t: t)
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={one(self.kernel_size)}, "
            f"stride={one(self.stride)}"
        )
        pad_text = self.padding if isinstance(self.padding, str) else one(self.padding)
        if isinstance(pad_text, str) or any(self.padding):
            text += f", padding={pad_text!r}"
        if any(d != 1 for d in self.dilation):
            text += f", dilation={one(self.dilation)}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode!r}"
        return text

    def _who(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def _as_2d(self, a: Any, xp: Any) -> Any:
        """The 1-d layers' arrays with an ``H`` axis of size 1 (the 2-d and 3-d ones as given)."""
        return xp.expand_dims(a, axis=2) if self.nd == 1 else a

    def _weight_2d(self, xp: Any) -> Any:
        return self._as_2d(self.weight.value, xp)

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        nd = self.nd
        w = self.weight.value
        if x.ndim != nd + 2 or x.shape[1] != self.in_channels:
            layout = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}[nd]
            raise ValueError(
                f"{self._who()}: expected input of shape {layout} with C={self.in_channels}, "
                f"got shape {tuple(x.shape)}"
            )
        check_floating(xp, x, self._who)
        check_same_dtype(x, w, self._who)
        check_same_device(x, w, self._who)
        x2 = self._as_2d(x, xp)
        kernel = self._weight_2d(xp).shape[2:]
        stride = (1, *self.stride) if nd == 1 else self.stride
        dilation = (1, *self.dilation) if nd == 1 else self.dilation
        sizes = x2.shape[2:]
        for size, (lo, hi), k, d in zip(sizes, self._pads, kernel, dilation, strict=True):
            if size + lo + hi < d * (k - 1) + 1:
                raise ValueError(
                    f"{self._who()}: input of shape {tuple(x.shape)} (padded to "
                    f"{size + lo + hi}) is smaller than the dilated kernel ({d * (k - 1) + 1})"
                )
            if self.padding_mode == "reflect" and max(lo, hi) >= size:
                raise ValueError(
                    f"{self._who()}: reflect padding {max(lo, hi)} must be smaller than the "
                    f"input size {size} (input shape {tuple(x.shape)})"
                )
            if self.padding_mode == "circular" and max(lo, hi) > size:
                raise ValueError(
                    f"{self._who()}: circular padding {max(lo, hi)} must not exceed the "
                    f"input size {size} (input shape {tuple(x.shape)})"
                )
        out = tuple(
            conv_out_size(s, k, st, lo + hi, d)
            for s, k, st, (lo, hi), d in zip(
                sizes, kernel, stride, self._pads, dilation, strict=True
            )
        )
        lib = _native.conv_library(x, w)
        self._native = None
        if lib is not None:
            return self._native_forward(lib, x, xp)
        # padded straight into (C, N, H, W) memory, so the gathered slices stack contiguously
        d = x2.ndim - 2
        swap = (1, 0, *range(2, 2 + d))  # (N, C, ...) <-> (C, N, ...)
        x_cn = xp.permute_dims(x2, swap)
        xpad = pad(x_cn, xp, self._pads, self.padding_mode)
        # Only the padded input is kept for backward, not the kh*kw times larger columns: they are
        # gathered again there (one more gather per step, for a fraction of the memory).
        y_cn = conv_forward(xpad, self._weight_2d(xp), xp, self.groups, stride, dilation, out)
        y = xp.permute_dims(y_cn, swap)
        self._xpad = xpad
        if self.bias is not None:  # y is a fresh array: in place where it may be written
            b = xp.reshape(self.bias.value, (1, -1) + (1,) * d)
            if is_writeable(y):
                y += b
            else:
                y = y + b
        self._x_shape = tuple(x.shape)
        self._geometry = (tuple(xpad.shape[2:]), stride, dilation, tuple(x_cn.shape))
        y = y[:, :, 0, :] if nd == 1 else y
        self._out_shape = tuple(y.shape)
        return y

    def _native_forward(self, lib: Any, x: Any, xp: Any) -> Any:
        """The forward by the library's kernel (:mod:`nnx._native`); zero padding is the
        kernel's own, the other modes pad first (and their adjoint runs after its backward)."""
        pads, self._x_shape = self._pads[-self.nd :], tuple(x.shape)
        if self.padding_mode != "zeros":
            x, pads = pad(x, xp, pads, self.padding_mode), ((0, 0),) * self.nd
        b = None if self.bias is None else self.bias.value
        args = (self.stride, pads, self.dilation, self.groups)
        y, saved = _native.conv_forward(lib, x, self.weight.value, b, *args)
        # flat attributes: nnx.compile drops the traced input after its trace
        self._native, self._native_saved, self._xpad = lib, saved, None
        self._out_shape = tuple(y.shape)
        return y

    def _native_backward(self, grad_out: Any, need_input_grad: bool) -> Any:
        saved = require_forward(self._native_saved, self._who)
        dx, dw, db = _native.conv_backward(
            self._native, saved, self.weight.value, grad_out, self.stride, self.dilation, self.groups,
            need_input_grad, self.bias is not None,
        )  # fmt: skip
        self.weight.accumulate(dw)
        if db is not None:
            self.bias.accumulate(db)
        if dx is None or self.padding_mode == "zeros":
            return dx
        return pad_backward(
            dx, namespace(dx), self._x_shape, self._pads[-self.nd :], self.padding_mode
        )

    def backward(self, grad_out: Any, need_input_grad: bool = True) -> Any:
        """Parameter gradients into ``.grad``; returns ``dL/dx`` (None when ``need_input_grad``
        is False: the first layer of a network skips the col2im)."""
        require_forward(self._x_shape, self._who)
        if self._native is not None:
            check_grad(grad_out, self._out_shape, self._who)
            return self._native_backward(grad_out, need_input_grad)
        padded, stride, dilation, shape2 = self._geometry
        xp = namespace(grad_out)
        check_grad(grad_out, self._out_shape, self._who)
        g = self._as_2d(grad_out, xp)
        d = g.ndim - 2
        swap = (1, 0, *range(2, 2 + d))
        if self.bias is not None:
            self.bias.accumulate(xp.sum(g, axis=(0, *range(2, 2 + d))))
        g_cn = xp.permute_dims(g, swap)
        w2 = self._weight_2d(xp)
        dw = conv_weight_grad(self._xpad, g_cn, xp, self.groups, w2.shape[2:], stride, dilation)
        self.weight.accumulate(xp.reshape(dw, tuple(self.weight.value.shape)))
        if not need_input_grad:
            return None
        if self.padding_mode == "zeros":  # the padding's adjoint is a crop: never computed
            dx = conv_input_grad(g_cn, w2, xp, self.groups, padded, stride, dilation, self._pads)
        else:
            dxpad = conv_input_grad(g_cn, w2, xp, self.groups, padded, stride, dilation)
            dx = pad_backward(dxpad, xp, shape2, self._pads, self.padding_mode)
        dx = xp.permute_dims(dx, swap)
        return dx[:, :, 0, :] if self.nd == 1 else dx


class Conv1d(_ConvNd):
    """1-d convolution over ``(N, C, L)`` inputs (cross-correlation, as in PyTorch).

    Args as ``torch.nn.Conv1d``: ``in_channels, out_channels, kernel_size, stride=1, padding=0,
    dilation=1, groups=1, bias=True, padding_mode="zeros"``, plus keyword-only ``rng``,
    ``dtype`` and ``device``. Weight ``(out, in // groups, k)``, bias ``(out,)``, both
    initialized as PyTorch does: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    Shapes: ``(N, C_in, L)`` -> ``(N, C_out, L_out)`` with
    ``L_out = (L + pad_left + pad_right - dilation*(k-1) - 1) // stride + 1``.

    >>> import numpy as np, nnx
    >>> nnx.Conv1d(2, 4, 3, padding="same", rng=0)(np.ones((5, 2, 7), np.float32)).shape
    (5, 4, 7)
    """

    nd = 1


class Conv2d(_ConvNd):
    """2-d convolution over ``(N, C, H, W)`` inputs (cross-correlation, as in PyTorch).

    ``y[n, o] = b[o] + sum_{c in group(o)} W[o, c] (*) xpad[n, c]`` with stride, dilation and
    padding (``int``, ``(ph, pw)``, ``"same"`` or ``"valid"``; ``padding_mode`` ``"zeros"``,
    ``"reflect"``, ``"replicate"`` or ``"circular"``). ``groups=in_channels`` is a depthwise
    convolution.

    Args as ``torch.nn.Conv2d``, plus keyword-only ``rng``, ``dtype`` and ``device``.
    Weight ``(out, in // groups, kh, kw)``, bias ``(out,)``.

    Shapes: ``(N, C_in, H, W)`` -> ``(N, C_out, H_out, W_out)`` with
    ``H_out = (H + 2*ph - dh*(kh-1) - 1) // sh + 1`` (likewise ``W_out``).

    Backward: ``db = sum g`` over ``(N, H_out, W_out)``; ``dW = sum_n g_n cols_n^T``;
    ``dx = col2im(W^T g)`` through the padding's adjoint.

    >>> import numpy as np, nnx
    >>> conv = nnx.Conv2d(1, 8, 3, stride=2, padding=1, rng=0)
    >>> conv(np.ones((4, 1, 28, 28), np.float32)).shape
    (4, 8, 14, 14)
    """

    nd = 2


class Conv3d(_ConvNd):
    """3-d convolution over ``(N, C, D, H, W)`` inputs (cross-correlation, as in PyTorch).

    ``y[n, o] = b[o] + sum_{c in group(o)} W[o, c] (*) xpad[n, c]`` over the three spatial axes,
    with stride, dilation and padding (``int``, ``(pd, ph, pw)``, ``"same"`` or ``"valid"``;
    ``padding_mode`` ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``).

    Args as ``torch.nn.Conv3d``, plus keyword-only ``rng``, ``dtype`` and ``device``.
    Weight ``(out, in // groups, kd, kh, kw)``, bias ``(out,)``.

    Shapes: ``(N, C_in, D, H, W)`` -> ``(N, C_out, D_out, H_out, W_out)`` with
    ``D_out = (D + 2*pd - dd*(kd-1) - 1) // sd + 1`` (likewise ``H_out``, ``W_out``).

    Backward as ``Conv2d``'s, over three spatial axes.

    >>> import numpy as np, nnx
    >>> conv = nnx.Conv3d(1, 4, 3, stride=2, padding=1, rng=0)
    >>> conv(np.ones((2, 1, 8, 8, 8), np.float32)).shape
    (2, 4, 4, 4, 4)
    """

    nd = 3
