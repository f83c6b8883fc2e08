"""The ``mlp`` preset: a multi-layer perceptron for inputs of any shape.

``Flatten`` (when a sample has more than one axis), then for each hidden size a ``Linear``, the
activation and (when ``dropout > 0``) a ``Dropout``, then a ``Linear`` to ``num_classes`` outputs.

>>> from nnx.models import get_preset
>>> model = get_preset("mlp")((1, 8, 8), 10, hidden=[32])
>>> [type(m).__name__ for m in model]
['Flatten', 'Linear', 'ReLU', 'Linear']
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..core.module import Module, Sequential
from ..layers import (
    CELU,
    ELU,
    GELU,
    SELU,
    Dropout,
    Flatten,
    Hardshrink,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    LeakyReLU,
    Linear,
    LogSigmoid,
    Mish,
    PReLU,
    ReLU,
    ReLU6,
    RReLU,
    Sigmoid,
    SiLU,
    Softplus,
    Softshrink,
    Softsign,
    Tanh,
    Tanhshrink,
)

# The element-wise activations by their torch.nn.functional names (each built with defaults).
ACTIVATIONS = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "tanh": Tanh,
    "sigmoid": Sigmoid,
    "gelu": GELU,
    "relu6": ReLU6,
    "prelu": PReLU,
    "rrelu": RReLU,
    "elu": ELU,
    "celu": CELU,
    "selu": SELU,
    "silu": SiLU,
    "mish": Mish,
    "softplus": Softplus,
    "hardtanh": Hardtanh,
    "hardsigmoid": Hardsigmoid,
    "hardswish": Hardswish,
    "logsigmoid": LogSigmoid,
    "softsign": Softsign,
    "tanhshrink": Tanhshrink,
    "hardshrink": Hardshrink,
    "softshrink": Softshrink,
}
# He initialization suits the rectifiers, Glorot the saturating activations.
_HE = ("relu", "leaky_relu", "gelu", "relu6", "prelu", "rrelu", "elu", "celu", "silu", "mish")


def build(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    hidden: Sequence[int] = (128, 64),
    activation: str = "relu",
    dropout: float = 0.0,
    seed: int | None = 0,
) -> Module:
    """An MLP from ``input_shape`` (one sample's shape) to ``num_classes`` outputs.

    Args:
        input_shape: shape of one sample, e.g. ``(64,)`` or ``(1, 8, 8)``.
        num_classes: units of the last layer (classes, or regression targets).
        hidden: sizes of the hidden layers (``[]`` gives a linear model).
        activation: a name of :data:`ACTIVATIONS` (``relu``, ``leaky_relu``, ``tanh``, ``gelu``,
            ``prelu``, ``hardswish``, ...).
        dropout: dropout probability after each hidden activation (0 for none).
        seed: seed for the initial weights.
    """
    shape = tuple(input_shape)
    if not shape or any(
        isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d <= 0 for d in shape
    ):
        raise ValueError(f"mlp: input_shape must be positive integers, got {input_shape!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"mlp: unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}"
        )
    init = "he_normal" if activation in _HE else "glorot_uniform"
    rng = np.random.default_rng(seed)
    layers: list[Module] = [Flatten()] if len(shape) > 1 else []
    width = math.prod(shape)
    for size in hidden:
        act = ACTIVATIONS[activation]
        # RReLU draws its slopes from a seed: take it from the model's generator
        act_layer = act(rng=rng) if act is RReLU else act()
        layers += [Linear(width, size, init=init, rng=rng), act_layer]
        if dropout > 0:
            layers.append(Dropout(dropout))
        width = size
    layers.append(Linear(width, num_classes, init="glorot_uniform", rng=rng))
    return Sequential(*layers)
