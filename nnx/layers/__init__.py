"""Layers: one family per module."""

from .activations import GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .conv import Conv1d, Conv2d, ConvTranspose2d
from .dropout import Dropout, Dropout2d
from .linear import Linear
from .norm import BatchNorm1d, BatchNorm2d, GroupNorm
from .pool import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
)
from .shape import Flatten, Identity
from .upsample import Upsample

__all__ = [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Dropout2d",
    "GroupNorm",
    "MaxPool1d",
    "MaxPool2d",
    "Upsample",
    "Conv1d",
    "Conv2d",
    "ConvTranspose2d",
    "GELU",
    "Dropout",
    "Flatten",
    "Identity",
    "LeakyReLU",
    "Linear",
    "ReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
]
