"""ONNX converters of the element-wise activations (and softmax, softmin, GLU, PReLU).

ONNX operators are used where one computes the same function (``Relu``, ``Elu``, ``Celu``,
``Shrink``...); the rest are written with elementary operators, with the formula of the nnx
layer beside each one. Constants take the input's dtype.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import to_numpy
from ..layers import activations as act
from ..layers import activations_extra as extra
from ..layers.activations_learned import PReLU, RReLU
from .export import Exporter, Tensor, register_converter


def dtype_of(x: Tensor) -> Any:
    """The input's numpy dtype (float32 when the example value is not known)."""
    return np.dtype(np.float32) if x.value is None else to_numpy(x.value).dtype


def const(ctx: Exporter, x: Tensor, value: float) -> str:
    """A scalar constant of ``x``'s dtype."""
    return ctx.scalar(value, dtype_of(x).name)


def sigmoid(ctx: Exporter, x: Any) -> str:
    return ctx.op("Sigmoid", [x])


def softplus(ctx: Exporter, z: Any) -> str:
    return ctx.op("Softplus", [z])


def gelu(ctx: Exporter, x: Tensor, approximate: str) -> str:
    half = const(ctx, x, 0.5)
    if approximate == "tanh":
        # y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        x3 = ctx.op("Mul", [ctx.op("Mul", [x, x]), x])
        inner = ctx.op("Add", [x, ctx.op("Mul", [x3, const(ctx, x, 0.044715)])])
        t = ctx.op("Tanh", [ctx.op("Mul", [inner, const(ctx, x, math.sqrt(2.0 / math.pi))])])
        one_plus = ctx.op("Add", [t, const(ctx, x, 1.0)])
        return ctx.op("Mul", [ctx.op("Mul", [x, half]), one_plus])
    # y = x (1 + erf(x / sqrt 2)) / 2
    e = ctx.op("Erf", [ctx.op("Mul", [x, const(ctx, x, math.sqrt(0.5))])])
    return ctx.op("Mul", [ctx.op("Mul", [x, half]), ctx.op("Add", [e, const(ctx, x, 1.0)])])


@register_converter(act.ReLU)
def _relu(ctx, m, inputs, path):
    return ctx.op("Relu", inputs)


@register_converter(act.LeakyReLU)
def _leaky(ctx, m, inputs, path):
    return ctx.op("LeakyRelu", inputs, alpha=m.negative_slope)


@register_converter(RReLU)
def _rrelu(ctx, m, inputs, path):  # evaluation: the mean slope
    return ctx.op("LeakyRelu", inputs, alpha=0.5 * (m.lower + m.upper))


@register_converter(act.Sigmoid)
def _sigmoid(ctx, m, inputs, path):
    return sigmoid(ctx, inputs[0])


@register_converter(act.Tanh)
def _tanh(ctx, m, inputs, path):
    return ctx.op("Tanh", inputs)


@register_converter(act.Softmax)
def _softmax(ctx, m, inputs, path):
    return ctx.op("Softmax", inputs, axis=m.axis)


@register_converter(act.LogSoftmax)
def _log_softmax(ctx, m, inputs, path):
    return ctx.op("LogSoftmax", inputs, axis=m.dim)


@register_converter(extra.Softmin)
def _softmin(ctx, m, inputs, path):
    return ctx.op("Softmax", [ctx.op("Neg", inputs)], axis=m.dim)


@register_converter(extra.Softmax2d)
def _softmax2d(ctx, m, inputs, path):
    return ctx.op("Softmax", inputs, axis=-3)


@register_converter(act.GELU)
def _gelu(ctx, m, inputs, path):
    return gelu(ctx, inputs[0], m.approximate)


@register_converter(act.ELU)
def _elu(ctx, m, inputs, path):
    return ctx.op("Elu", inputs, alpha=m.alpha)


@register_converter(act.SELU)
def _selu(ctx, m, inputs, path):
    return ctx.op("Selu", inputs, alpha=act._SELU_ALPHA, gamma=act._SELU_SCALE)


@register_converter(extra.CELU)
def _celu(ctx, m, inputs, path):
    return ctx.op("Celu", inputs, alpha=m.alpha)


@register_converter(act.SiLU)
def _silu(ctx, m, inputs, path):  # y = x sigmoid(x)
    return ctx.op("Mul", [inputs[0], sigmoid(ctx, inputs[0])])


@register_converter(act.Softplus)
def _softplus(ctx, m, inputs, path):
    # y = log(1 + exp(beta x)) / beta, and x where beta x > threshold
    x = inputs[0]
    z = ctx.op("Mul", [x, const(ctx, x, m.beta)]) if m.beta != 1.0 else x.name
    y = softplus(ctx, z)
    if m.beta != 1.0:
        y = ctx.op("Div", [y, const(ctx, x, m.beta)])
    linear = ctx.op("Greater", [z, const(ctx, x, m.threshold)])
    return ctx.op("Where", [linear, x, y])


@register_converter(act.Mish)
def _mish(ctx, m, inputs, path):  # y = x tanh(softplus(x))
    x = inputs[0]
    return ctx.op("Mul", [x, ctx.op("Tanh", [softplus(ctx, x)])])


@register_converter(act.Hardtanh)
def _hardtanh(ctx, m, inputs, path):
    x = inputs[0]
    return ctx.op("Clip", [x, const(ctx, x, m.min_val), const(ctx, x, m.max_val)])


@register_converter(extra.ReLU6)
def _relu6(ctx, m, inputs, path):
    x = inputs[0]
    return ctx.op("Clip", [x, const(ctx, x, 0.0), const(ctx, x, 6.0)])


@register_converter(extra.Hardshrink)
def _hardshrink(ctx, m, inputs, path):
    return ctx.op("Shrink", inputs, lambd=m.lambd, bias=0.0)


@register_converter(extra.Softshrink)
def _softshrink(ctx, m, inputs, path):
    return ctx.op("Shrink", inputs, lambd=m.lambd, bias=m.lambd)


@register_converter(extra.Hardsigmoid)
def _hardsigmoid(ctx, m, inputs, path):  # y = clip(x / 6 + 1 / 2, 0, 1)
    return ctx.op("HardSigmoid", inputs, alpha=1.0 / 6.0, beta=0.5)


@register_converter(extra.Hardswish)
def _hardswish(ctx, m, inputs, path):  # y = x clip(x + 3, 0, 6) / 6
    return ctx.op("HardSwish", inputs)


@register_converter(extra.LogSigmoid)
def _log_sigmoid(ctx, m, inputs, path):  # y = -softplus(-x)
    return ctx.op("Neg", [softplus(ctx, ctx.op("Neg", inputs))])


@register_converter(extra.Softsign)
def _softsign(ctx, m, inputs, path):
    return ctx.op("Softsign", inputs)


@register_converter(extra.Tanhshrink)
def _tanhshrink(ctx, m, inputs, path):  # y = x - tanh(x)
    return ctx.op("Sub", [inputs[0], ctx.op("Tanh", inputs)])


@register_converter(extra.Threshold)
def _threshold(ctx, m, inputs, path):  # y = x where x > threshold, else value
    x = inputs[0]
    above = ctx.op("Greater", [x, const(ctx, x, m.threshold)])
    return ctx.op("Where", [above, x, const(ctx, x, m.value)])


@register_converter(extra.GLU)
def _glu(ctx, m, inputs, path):  # halves a, b along dim: y = a sigmoid(b)
    x = inputs[0]
    axis = m.dim % x.ndim
    half = x.shape[axis] // 2
    a, b = ctx.op("Split", [x, ctx.ints([half, half], "split")], outputs=2, axis=axis)
    return ctx.op("Mul", [a, sigmoid(ctx, b)])


@register_converter(PReLU)
def _prelu(ctx, m, inputs, path):
    x = inputs[0]
    n = m.num_parameters
    shape = (1,) if n == 1 or x.ndim < 2 else (n,) + (1,) * (x.ndim - 2)
    slope = ctx.param(m.weight, f"{path}.weight", lambda w: w.reshape(shape), tag=str(shape))
    return ctx.op("PRelu", [x, slope])
