"""Layers: one family per module."""

from .activations import (
    ELU,
    GELU,
    SELU,
    Hardtanh,
    LeakyReLU,
    LogSoftmax,
    Mish,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from .dropout import Dropout
from .linear import Linear
from .shape import Flatten, Identity

__all__ = [
    "ELU",
    "GELU",
    "SELU",
    "Hardtanh",
    "LogSoftmax",
    "Mish",
    "SiLU",
    "Softplus",
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
