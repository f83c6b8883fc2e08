"""The ``cnn`` preset: a small convolutional network for image-shaped samples ``(C, H, W)``.

For each entry of ``channels`` a block ``Conv2d(3x3, padding 1) -> BatchNorm2d -> ReLU ->
MaxPool2d(2)`` (the pooling is left out once the image is down to one pixel), then either global
average pooling (``head="avg"``) or ``Flatten`` (``head="flatten"``), an optional ``Dropout``,
and a ``Linear`` to ``num_classes`` outputs.

>>> from nnx.models import get_preset
>>> model = get_preset("cnn")((1, 8, 8), 10, channels=[4, 8])
>>> [type(m).__name__ for m in model]  # doctest: +NORMALIZE_WHITESPACE
['Conv2d', 'BatchNorm2d', 'ReLU', 'MaxPool2d', 'Conv2d', 'BatchNorm2d', 'ReLU', 'MaxPool2d',
 'Flatten', 'Linear']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core.module import Module, Sequential
from ..layers import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
)


def build(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    channels: Sequence[int] = (32, 64),
    head: str = "flatten",
    dropout: float = 0.0,
    seed: int | None = 0,
) -> Module:
    """A CNN from image samples of ``input_shape = (C, H, W)`` to ``num_classes`` outputs.

    Args:
        input_shape: shape of one sample, ``(channels, height, width)``.
        num_classes: units of the last layer.
        channels: output channels of the convolution blocks, one block each.
        head: ``"flatten"`` (keep the spatial layout) or ``"avg"`` (global average pooling).
        dropout: dropout probability before the last layer (0 for none).
        seed: seed for the initial weights.
    """
    shape = tuple(input_shape)
    if len(shape) != 3 or any(
        isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d <= 0 for d in shape
    ):
        raise ValueError(
            f"cnn: input_shape must be an image shape (C, H, W) of positive integers, got "
            f"{input_shape!r}; the cnn preset needs an image data set (digits, mnist, "
            f"fashion-mnist, cifar10)"
        )
    if head not in ("flatten", "avg"):
        raise ValueError(f"cnn: head must be 'flatten' or 'avg', got {head!r}")
    channels = list(channels)
    if not channels or any(
        isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c <= 0 for c in channels
    ):
        raise ValueError(f"cnn: channels must be positive integers, got {channels!r}")
    rng = np.random.default_rng(seed)
    c, h, w = shape
    layers: list[Module] = []
    for out in channels:
        layers += [Conv2d(c, out, 3, padding=1, bias=False, rng=rng), BatchNorm2d(out), ReLU()]
        if min(h, w) >= 2:
            layers.append(MaxPool2d(2))
            h, w = h // 2, w // 2
        c = out
    if head == "avg":
        layers += [AdaptiveAvgPool2d(1), Flatten()]
        width = c
    else:
        layers.append(Flatten())
        width = c * h * w
    if dropout > 0:
        layers.append(Dropout(dropout, rng=rng))
    layers.append(Linear(width, num_classes, init="glorot_uniform", rng=rng))
    return Sequential(*layers)
