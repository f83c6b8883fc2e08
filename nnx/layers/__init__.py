"""Layers: one family per module."""

from .activations import GELU, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from .dropout import Dropout
from .linear import Linear
from .shape import Flatten, Identity

__all__ = [
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
