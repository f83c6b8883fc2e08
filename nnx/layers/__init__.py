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
from .attention import MultiheadAttention
from .dropout import Dropout
from .embedding import Embedding, TiedLinear
from .layernorm import LayerNorm, RMSNorm
from .linear import Linear
from .recurrent import GRU, LSTM
from .shape import Flatten, Identity
from .transformer import PositionalEmbedding, SinusoidalPositionalEncoding, TransformerEncoderLayer

__all__ = [
    "GRU",
    "LSTM",
    "Embedding",
    "LayerNorm",
    "MultiheadAttention",
    "PositionalEmbedding",
    "RMSNorm",
    "SinusoidalPositionalEncoding",
    "TiedLinear",
    "TransformerEncoderLayer",
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
