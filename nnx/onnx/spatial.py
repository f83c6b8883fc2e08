"""ONNX converters of the convolutions, poolings and padding layers.

The window geometry (padding, including the extra high-end padding of ``ceil_mode`` windows)
comes from the nnx layer itself for the example's spatial sizes, so the file repeats nnx's
windows exactly; the batch axis stays free.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import namespace, to_numpy
from ..layers import padding as padl
from ..layers import pool, pool_adaptive
from ..layers.conv import Conv1d, Conv2d, Conv3d
from ..layers.conv_transpose import ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from ..layers.upsample import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d, axis_taps
from .activations import dtype_of
from .export import Exporter, Tensor, refuse, register_converter

_PAD_MODES = {"constant": "constant", "zeros": "constant", "reflect": "reflect",
              "replicate": "edge"}  # fmt: skip


def pad(ctx: Exporter, x: Any, pads: list[tuple[int, int]], mode: str, lead: int,
        value: float | None = None, like: Tensor | None = None) -> str:  # fmt: skip
    """ONNX ``Pad`` of the trailing axes by ``(lo, hi)`` pairs; ``lead`` axes before them."""
    spec = [0] * lead + [lo for lo, _ in pads] + [0] * lead + [hi for _, hi in pads]
    args = [x, ctx.ints(spec, "pads")]
    if value is not None and value != 0.0 and like is not None:
        args.append(ctx.scalar(value, dtype_of(like).name))
    return ctx.op("Pad", args, mode=_PAD_MODES[mode])


@register_converter(Conv1d, Conv2d, Conv3d)
def _conv(ctx, m, inputs, path):
    """ONNX ``Conv`` (cross-correlation, weight ``(out, in / groups, *kernel)`` as nnx's)."""
    x = inputs[0]
    pads = list(m._pads[1:] if m.nd == 1 else m._pads)
    attrs: dict[str, Any] = {
        "kernel_shape": list(m.kernel_size),
        "strides": list(m.stride),
        "dilations": list(m.dilation),
        "group": m.groups,
    }
    if m.padding_mode == "zeros":
        attrs["pads"] = [lo for lo, _ in pads] + [hi for _, hi in pads]
    elif m.padding_mode in _PAD_MODES:
        x = pad(ctx, x, pads, m.padding_mode, 2)
    else:
        raise refuse(m, path, f"padding_mode={m.padding_mode!r} has no ONNX opset-17 Pad mode")
    args = [x, ctx.param(m.weight, f"{path}.weight")]
    if m.bias is not None:
        args.append(ctx.param(m.bias, f"{path}.bias"))
    return ctx.op("Conv", args, hint=path or "conv", **attrs)


@register_converter(ConvTranspose1d, ConvTranspose2d, ConvTranspose3d)
def _conv_transpose(ctx, m, inputs, path):
    """ONNX ``ConvTranspose`` (weight ``(in, out / groups, *kernel)`` as nnx's and PyTorch's)."""
    if len(inputs) != 1:
        raise refuse(m, path, "output_size is not exported (give output_padding instead)")
    args = [inputs[0], ctx.param(m.weight, f"{path}.weight")]
    if m.bias is not None:
        args.append(ctx.param(m.bias, f"{path}.bias"))
    return ctx.op(
        "ConvTranspose",
        args,
        hint=path or "conv_transpose",
        kernel_shape=list(m.kernel_size),
        strides=list(m.stride),
        dilations=list(m.dilation),
        group=m.groups,
        pads=list(m.padding) * 2,
        output_padding=list(m.output_padding),
    )


def _geometry(m: Any, x: Tensor) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    return m._geometry(x.value, namespace(x.value))


@register_converter(pool.MaxPool1d, pool.MaxPool2d, pool.MaxPool3d)
def _max_pool(ctx, m, inputs, path):
    """ONNX ``MaxPool`` over nnx's windows (its padding, ``-inf``, given explicitly)."""
    if m.return_indices:
        raise refuse(m, path, "return_indices=True (the indices are PyTorch's, not ONNX's)")
    x = inputs[0]
    _, pads = _geometry(m, x)
    return ctx.op(
        "MaxPool",
        [x],
        kernel_shape=list(m.kernel_size),
        strides=list(m.stride),
        dilations=list(m.dilation),
        pads=[lo for lo, _ in pads] + [hi for _, hi in pads],
    )


@register_converter(pool.AvgPool1d, pool.AvgPool2d, pool.AvgPool3d)
def _avg_pool(ctx, m, inputs, path):
    """Zero padding, then ONNX ``AveragePool`` (``sum / prod(kernel)``), then a constant factor
    ``prod(kernel) / divisor`` wherever nnx divides by another count (``count_include_pad``,
    ``ceil_mode`` edges, ``divisor_override``)."""
    x = inputs[0]
    out, pads = _geometry(m, x)
    xp = namespace(x.value)
    divisor = m._divisor(xp, x.value, pads, out)
    kernel = math.prod(m.kernel_size)
    if any(lo or hi for lo, hi in pads):
        x = pad(ctx, x, list(pads), "zeros", 2)
    y = ctx.op("AveragePool", [x], kernel_shape=list(m.kernel_size), strides=list(m.stride))
    factor = kernel / np.asarray(to_numpy(divisor) if not isinstance(divisor, float) else divisor,
                                 dtype=np.float64)  # fmt: skip
    if np.all(factor == 1.0):
        return y
    dtype = dtype_of(inputs[0])
    return ctx.op("Mul", [y, ctx.const(factor.astype(dtype), f"{path}.divisor")])


def _adaptive_matrix(size: int, out: int, dtype: Any) -> np.ndarray:
    """``A (out, size)``: row ``i`` averages ``[floor(i*size/out), ceil((i+1)*size/out))``."""
    a = np.zeros((out, size), dtype=np.float64)
    for i in range(out):
        start, end = (i * size) // out, -(-((i + 1) * size) // out)
        a[i, start:end] = 1.0 / (end - start)
    return a.astype(dtype)


@register_converter(
    pool_adaptive.AdaptiveAvgPool1d, pool_adaptive.AdaptiveAvgPool2d,
    pool_adaptive.AdaptiveAvgPool3d,
)  # fmt: skip
def _adaptive_avg(ctx, m, inputs, path):
    """Each resized spatial axis times its averaging matrix (exact for any sizes, as nnx)."""
    x = inputs[0]
    sizes, out = m._sizes(x.value, namespace(x.value))
    rank = x.ndim
    y: Any = x
    for axis in reversed(range(m.nd)):
        if sizes[axis] == out[axis]:
            continue
        mat = _adaptive_matrix(sizes[axis], out[axis], dtype_of(x)).T
        a = ctx.const(mat, f"{path}.average{axis}")
        at = 2 + axis
        if at == rank - 1:
            y = ctx.op("MatMul", [y, a])
        else:
            perm = list(range(rank))
            perm[at], perm[-1] = perm[-1], perm[at]
            y = ctx.op("Transpose", [y], perm=perm)
            y = ctx.op("Transpose", [ctx.op("MatMul", [y, a])], perm=perm)
    return ctx.op("Identity", [y]) if y is x else y


@register_converter(
    pool_adaptive.AdaptiveMaxPool1d, pool_adaptive.AdaptiveMaxPool2d,
    pool_adaptive.AdaptiveMaxPool3d,
)  # fmt: skip
def _adaptive_max(ctx, m, inputs, path):
    """ONNX ``MaxPool`` when every output size divides its input size (equal windows)."""
    x = inputs[0]
    if getattr(m, "return_indices", False):
        raise refuse(m, path, "return_indices=True")
    sizes, out = m._sizes(x.value, namespace(x.value))
    if any(s % o for s, o in zip(sizes, out, strict=True)):
        raise refuse(
            m, path, f"output sizes {out} do not divide the input sizes {sizes} (unequal windows)"
        )
    kernel = [s // o for s, o in zip(sizes, out, strict=True)]
    return ctx.op("MaxPool", [x], kernel_shape=kernel, strides=kernel)


@register_converter(Upsample, UpsamplingNearest2d, UpsamplingBilinear2d)
def _upsample(ctx, m, inputs, path):
    """nnx's taps along each spatial axis (every mode is separable): ``y = sum_k
    gather(y, index_k) * weight_k``, the indices and weights computed for the example's sizes
    by nnx's own rule (``axis_taps``), so every mode and ``align_corners`` match exactly."""
    x = inputs[0]
    dtype = dtype_of(x)
    y: Any = x
    for axis, (size, out, factor) in enumerate(m._plan(x.value), start=2):
        shape = (out,) + (1,) * (x.ndim - 1 - axis)
        total = None
        taps = axis_taps(m.mode, size, out, factor, bool(m.align_corners))
        for k, (index, weight) in enumerate(taps):
            hint = f"{path}.axis{axis}.tap{k}"
            term = ctx.op("Gather", [y, ctx.const(np.asarray(index, np.int64), hint)], axis=axis)
            if len(taps) > 1:
                w = np.asarray(weight, dtype=np.float64).astype(dtype).reshape(shape)
                term = ctx.op("Mul", [term, ctx.const(w, f"{hint}.weight")])
            total = term if total is None else ctx.op("Add", [total, term])
        y = total
    return y


_PADS = (
    padl.ZeroPad1d, padl.ZeroPad2d, padl.ZeroPad3d,
    padl.ConstantPad1d, padl.ConstantPad2d, padl.ConstantPad3d,
    padl.ReflectionPad1d, padl.ReflectionPad2d, padl.ReflectionPad3d,
    padl.ReplicationPad1d, padl.ReplicationPad2d, padl.ReplicationPad3d,
)  # fmt: skip


@register_converter(*_PADS)
def _pad_layer(ctx, m, inputs, path):
    x = inputs[0]
    pads = m._pads()
    if any(lo < 0 or hi < 0 for lo, hi in pads) and m.mode != "constant":
        raise refuse(m, path, "negative padding (cropping) in reflect or replicate mode")
    return pad(ctx, x, list(pads), m.mode, x.ndim - m.nd, value=m.value, like=x)
