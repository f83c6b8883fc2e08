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
from .conv import Conv1d, Conv2d, Conv3d
from .conv_transpose import ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .dropout import Dropout, Dropout2d
from .embedding import Embedding, TiedLinear
from .fold import Fold, Unfold
from .linear import Linear
from .norm import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm, RMSNorm, SyncBatchNorm
from .padding import (
    CircularPad1d,
    CircularPad2d,
    CircularPad3d,
    ConstantPad1d,
    ConstantPad2d,
    ConstantPad3d,
    ReflectionPad1d,
    ReflectionPad2d,
    ReflectionPad3d,
    ReplicationPad1d,
    ReplicationPad2d,
    ReplicationPad3d,
    ZeroPad1d,
    ZeroPad2d,
    ZeroPad3d,
)
from .pool import AdaptiveAvgPool1d, AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d
from .recurrent import GRU, LSTM
from .shape import Flatten, Identity
from .standardize import Standardize
from .transformer import PositionalEmbedding, SinusoidalPositionalEncoding, TransformerEncoderLayer
from .upsample import Upsample

__all__ = [
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose3d",
    "Fold",
    "Unfold",
    "ZeroPad1d",
    "ZeroPad2d",
    "ZeroPad3d",
    "ConstantPad1d",
    "ConstantPad2d",
    "ConstantPad3d",
    "ReflectionPad1d",
    "ReflectionPad2d",
    "ReflectionPad3d",
    "ReplicationPad1d",
    "ReplicationPad2d",
    "ReplicationPad3d",
    "CircularPad1d",
    "CircularPad2d",
    "CircularPad3d",
    "Standardize",
    "ELU",
    "SELU",
    "Hardtanh",
    "LogSoftmax",
    "Mish",
    "SiLU",
    "Softplus",
    "MultiheadAttention",
    "Embedding",
    "TiedLinear",
    "LayerNorm",
    "RMSNorm",
    "GRU",
    "LSTM",
    "PositionalEmbedding",
    "SinusoidalPositionalEncoding",
    "TransformerEncoderLayer",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Dropout2d",
    "GroupNorm",
    "SyncBatchNorm",
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
