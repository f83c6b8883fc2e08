"""ONNX converters of the linear, shape, dropout, embedding and normalization layers."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..layers import dropout as drop
from ..layers.embedding import Embedding, TiedLinear
from ..layers.linear import Linear
from ..layers.norm.batch import BatchNorm1d, BatchNorm2d, BatchNorm3d
from ..layers.norm.group import GroupNorm
from ..layers.norm.instance import InstanceNorm1d, InstanceNorm2d, InstanceNorm3d
from ..layers.norm.layer import LayerNorm, RMSNorm
from ..layers.norm.local_response import LocalResponseNorm
from ..layers.norm.sync import SyncBatchNorm
from ..layers.shape import (
    ChannelShuffle,
    Flatten,
    Identity,
    PixelShuffle,
    PixelUnshuffle,
    Unflatten,
)
from ..layers.standardize import Standardize
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


@register_converter(PixelShuffle, PixelUnshuffle, ChannelShuffle)
def _permutation(ctx, m, inputs, path):
    """nnx's own plan: reshape, transpose, reshape (the leading batch axis kept free)."""
    x = inputs[0]
    split, order, out = (list(v) for v in m._plan(x.shape))
    if split[0] == out[0] == x.shape[0] and order[0] == 0:
        split[0] = out[0] = 0  # 0: copy the input's axis 0
    y = ctx.op("Transpose", [ctx.op("Reshape", [x, ctx.ints(split)])], perm=list(order))
    return ctx.op("Reshape", [y, ctx.ints(out)])


@register_converter(Embedding)
def _embedding(ctx, m, inputs, path):  # y[..., :] = weight[ids[...], :]
    return ctx.op("Gather", [ctx.param(m.weight, f"{path}.weight"), inputs[0]], axis=0)


@register_converter(TiedLinear)
def _tied_linear(ctx, m, inputs, path):
    """``y = x @ E^T + b`` with the embedding's ``E`` stored once (``Transpose`` of it)."""
    w = ctx.op("Transpose", [ctx.param(m.weight, f"{path}.weight")], perm=[1, 0])
    y = ctx.op("MatMul", [inputs[0], w])
    return y if m.bias is None else ctx.op("Add", [y, ctx.param(m.bias, f"{path}.bias")])


@register_converter(Standardize)
def _standardize(ctx, m, inputs, path):  # y = (x - mean) / std, the statistics in x's dtype
    x = inputs[0]
    mean = ctx.param(m.mean, f"{path}.mean", lambda v: v.astype(dtype_of(x)), tag="cast")
    std = ctx.param(m.std, f"{path}.std", lambda v: v.astype(dtype_of(x)), tag="cast")
    return ctx.op("Div", [ctx.op("Sub", [x, mean]), std])


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
def standardize(ctx: Exporter, x: Any, axes: list[int], eps: float, like: Tensor) -> str:
    """``(x - mean) / sqrt(var + eps)`` over ``axes`` (biased variance), as nnx's norms."""
    centred = ctx.op("Sub", [x, ctx.reduce_mean(x, axes)])
    var = ctx.reduce_mean(ctx.op("Mul", [centred, centred]), axes)
    invstd = ctx.op("Reciprocal", [ctx.op("Sqrt", [ctx.op("Add", [var, const(ctx, like, eps)])])])
    return ctx.op("Mul", [centred, invstd])


def channel_affine(ctx: Exporter, y: str, m: Any, ndim: int, path: str) -> str:
    """``y * weight + bias`` with the ``(C,)`` parameters over axis 1 of ``ndim`` axes."""
    shape = (-1,) + (1,) * (ndim - 2)
    if getattr(m, "weight", None) is not None:
        w = ctx.param(m.weight, f"{path}.weight", lambda v: v.reshape(shape), tag=str(shape))
        y = ctx.op("Mul", [y, w])
    if getattr(m, "bias", None) is not None:
        b = ctx.param(m.bias, f"{path}.bias", lambda v: v.reshape(shape), tag=str(shape))
        y = ctx.op("Add", [y, b])
    return y


def _running_norm(ctx: Exporter, m: Any, x: Any, like: Tensor, path: str) -> str:
    """``(x - running_mean) / sqrt(running_var + eps) * weight + bias`` (ONNX
    ``BatchNormalization`` in inference mode)."""
    c, dtype = m.num_features, dtype_of(like)
    if m.weight is not None:
        scale = ctx.param(m.weight, f"{path}.weight")
    else:
        scale = ctx.const(np.ones(c, dtype), f"{path}.ones")
    if m.bias is not None:
        bias = ctx.param(m.bias, f"{path}.bias")
    else:
        bias = ctx.const(np.zeros(c, dtype), f"{path}.zeros")
    mean = ctx.param(m.running_mean, f"{path}.running_mean")
    var = ctx.param(m.running_var, f"{path}.running_var")
    return ctx.op("BatchNormalization", [x, scale, bias, mean, var], epsilon=m.eps, hint=path)


@register_converter(BatchNorm1d, BatchNorm2d, BatchNorm3d, SyncBatchNorm)
def _batch_norm(ctx, m, inputs, path):
    """Evaluation: the running statistics; without them the batch's own, as nnx does."""
    x = inputs[0]
    if m.track_running_stats:
        return _running_norm(ctx, m, x, x, path)
    y = standardize(ctx, x, [0, *range(2, x.ndim)], m.eps, x)
    return channel_affine(ctx, y, m, x.ndim, path)


@register_converter(InstanceNorm1d, InstanceNorm2d, InstanceNorm3d)
def _instance_norm(ctx, m, inputs, path):
    """Each sample's channels over their own positions; the running statistics instead when
    the layer tracks them (evaluation)."""
    x = inputs[0]
    unbatched = x.ndim == m.spatial + 1
    xb = ctx.op("Unsqueeze", [x, ctx.ints([0], "axes")]) if unbatched else x.name
    rank = m.spatial + 2
    if m.track_running_stats:
        y = _running_norm(ctx, m, xb, x, path)
    else:
        y = standardize(ctx, xb, list(range(2, rank)), m.eps, x)
        y = channel_affine(ctx, y, m if m.affine else None, rank, path)
    return ctx.op("Squeeze", [y, ctx.ints([0], "axes")]) if unbatched else y


@register_converter(GroupNorm)
def _group_norm(ctx, m, inputs, path):
    """``(N, C, *) -> (N, G, C/G * prod(*))``, standardized along the last axis, back, affine."""
    x = inputs[0]
    grouped = ctx.op("Reshape", [x, ctx.ints([0, m.num_groups, -1])])
    y = standardize(ctx, grouped, [2], m.eps, x)
    y = ctx.op("Reshape", [y, ctx.ints([0, *x.shape[1:]])])
    return channel_affine(ctx, y, m if m.affine else None, x.ndim, path)


@register_converter(LocalResponseNorm)
def _local_response_norm(ctx, m, inputs, path):
    """``y_c = x_c / (k + alpha/size * sum of x_j^2 over c's window)^beta``: the window sums as a
    ``(C, C)`` 0/1 matrix product (nnx's windows; ONNX's ``LRN`` centres even sizes the other
    way)."""
    x = inputs[0]
    c = x.shape[1]
    j = np.arange(c)
    window = (j[None, :] >= j[:, None] - m.size // 2) & (
        j[None, :] <= j[:, None] + (m.size - 1) // 2
    )
    x3 = ctx.op("Reshape", [x, ctx.ints([0, c, -1])])
    sums = ctx.op("MatMul", [ctx.const(window.astype(dtype_of(x)), f"{path}.window"),
                             ctx.op("Mul", [x3, x3])])  # fmt: skip
    d = ctx.op("Add", [ctx.op("Mul", [sums, const(ctx, x, m.alpha / m.size)]), const(ctx, x, m.k)])
    y = ctx.op("Mul", [x3, ctx.op("Pow", [d, const(ctx, x, -m.beta)])])
    return ctx.op("Reshape", [y, ctx.ints([0, *x.shape[1:]])])


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
