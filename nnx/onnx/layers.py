"""ONNX converters of the linear, shape, dropout, embedding and normalization layers."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..layers import dropout as drop
from ..layers.embedding import Embedding
from ..layers.linear import Linear
from ..layers.norm.batch import BatchNorm1d, BatchNorm2d, BatchNorm3d
from ..layers.norm.layer import LayerNorm, RMSNorm
from ..layers.shape import Flatten, Identity, Unflatten
from ..layers.transformer import PositionalEmbedding, SinusoidalPositionalEncoding
from .activations import const, dtype_of
from .export import Exporter, Tensor, register_converter


def linear(ctx: Exporter, m: Linear, x: Any, path: str) -> str:
    """``y = x @ W + b`` with nnx's ``(in, out)`` weight as it is (MatMul, then Add)."""
    y = ctx.op("MatMul", [x, ctx.param(m.weight, f"{path}.weight")], hint=f"{path}.matmul")
    if m.bias is not None:
        y = ctx.op("Add", [y, ctx.param(m.bias, f"{path}.bias")], hint=path or "linear")
    return y


@register_converter(Linear)
def _linear(ctx, m, inputs, path):
    return linear(ctx, m, inputs[0], path)


@register_converter(
    Identity,
    drop.Dropout,
    drop.Dropout1d,
    drop.Dropout2d,
    drop.Dropout3d,
    drop.AlphaDropout,
    drop.FeatureAlphaDropout,
)
def _identity(ctx, m, inputs, path):  # dropout in evaluation mode is the identity
    return ctx.op("Identity", inputs)


@register_converter(Flatten)
def _flatten(ctx, m, inputs, path):
    x = inputs[0]
    shape = x.shape
    start, end = m._span(shape)
    if start == 1 and end == len(shape) - 1:
        return ctx.op("Flatten", [x], axis=1)
    # 0 copies an axis (the free batch axis stays free), -1 takes what the span holds
    target = [0] * start + [-1] + list(shape[end + 1 :])
    return ctx.op("Reshape", [x, ctx.ints(target)])


@register_converter(Unflatten)
def _unflatten(ctx, m, inputs, path):
    x = inputs[0]
    axis = m.dim % x.ndim
    sizes = [int(s) for s in m.forward(x.value).shape[axis : axis + len(m.unflattened_size)]]
    target = [0] * axis + sizes + list(x.shape[axis + 1 :])  # 0: the free batch axis stays free
    return ctx.op("Reshape", [x, ctx.ints(target)])


@register_converter(Embedding)
def _embedding(ctx, m, inputs, path):  # y[..., :] = weight[ids[...], :]
    return ctx.op("Gather", [ctx.param(m.weight, f"{path}.weight"), inputs[0]], axis=0)


def _positions(ctx: Exporter, x: Tensor, path: str, key: Any) -> str:
    length = x.shape[-2]
    rows = ctx.param(key, f"{path}.positions", lambda t: t[:length], tag=f"rows{length}")
    return ctx.op("Add", [x, rows])


@register_converter(PositionalEmbedding)
def _pos_embedding(ctx, m, inputs, path):  # y[..., t, :] = x[..., t, :] + weight[t, :]
    return _positions(ctx, inputs[0], path, m.weight)


@register_converter(SinusoidalPositionalEncoding)
def _pos_sinusoid(ctx, m, inputs, path):
    return _positions(ctx, inputs[0], path, m.table)


# ---------------------------------------------------------------------------- normalization
@register_converter(BatchNorm1d, BatchNorm2d, BatchNorm3d)
def _batch_norm(ctx, m, inputs, path):
    """Evaluation: ``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias``
    (ONNX ``BatchNormalization``); without running statistics the batch's own, as nnx does."""
    x = inputs[0]
    c = m.num_features
    dtype = dtype_of(x)
    ones, zeros = np.ones(c, dtype), np.zeros(c, dtype)
    scale = ctx.param(m.weight, f"{path}.weight") if m.weight is not None else ctx.const(ones)
    bias = ctx.param(m.bias, f"{path}.bias") if m.bias is not None else ctx.const(zeros)
    if m.track_running_stats:
        mean = ctx.param(m.running_mean, f"{path}.running_mean")
        var = ctx.param(m.running_var, f"{path}.running_var")
        return ctx.op("BatchNormalization", [x, scale, bias, mean, var], epsilon=m.eps)
    axes = [0, *range(2, x.ndim)]
    shape = ctx.ints([c] + [1] * (x.ndim - 2))
    centred = ctx.op("Sub", [x, ctx.reduce_mean(x, axes)])
    var = ctx.reduce_mean(ctx.op("Mul", [centred, centred]), axes)
    invstd = ctx.op("Reciprocal", [ctx.op("Sqrt", [ctx.op("Add", [var, const(ctx, x, m.eps)])])])
    y = ctx.op("Mul", [centred, invstd])
    y = ctx.op("Mul", [y, ctx.op("Reshape", [scale, shape])])
    return ctx.op("Add", [y, ctx.op("Reshape", [bias, shape])])


@register_converter(LayerNorm)
def _layer_norm(ctx, m, inputs, path):
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over the trailing axes (ONNX
    ``LayerNormalization``)."""
    x = inputs[0]
    k = len(m.normalized_shape)
    ones = np.ones(m.normalized_shape, dtype_of(x))
    scale = ctx.param(m.weight, f"{path}.weight") if m.weight is not None else ctx.const(ones)
    args = [x, scale]
    if m.bias is not None:
        args.append(ctx.param(m.bias, f"{path}.bias"))
    return ctx.op("LayerNormalization", args, axis=-k, epsilon=m.eps, hint=path or "norm")


@register_converter(RMSNorm)
def _rms_norm(ctx, m, inputs, path):  # y = x / sqrt(mean(x^2) + eps) * weight
    x = inputs[0]
    if m.eps is None:
        eps = float(np.finfo(dtype_of(x)).eps)
    else:
        eps = m.eps
    axes = range(-len(m.normalized_shape), 0)
    ms = ctx.reduce_mean(ctx.op("Mul", [x, x]), axes)
    y = ctx.op("Div", [x, ctx.op("Sqrt", [ctx.op("Add", [ms, const(ctx, x, eps)])])])
    if m.weight is not None:
        y = ctx.op("Mul", [y, ctx.param(m.weight, f"{path}.weight")])
    return y
