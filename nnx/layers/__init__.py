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
from .conv import Conv1d, Conv2d
from .conv_transpose import ConvTranspose2d
from .dropout import Dropout, Dropout2d
from .embedding import Embedding, TiedLinear
from .linear import Linear
from .norm import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm, RMSNorm, SyncBatchNorm
from .pool import AvgPool1d, AvgPool2d, AvgPool3d, MaxPool1d, MaxPool2d, MaxPool3d
from .pool_adaptive import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveAvgPool3d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AdaptiveMaxPool3d,
)
from .pool_fractional import FractionalMaxPool2d, FractionalMaxPool3d
from .pool_lp import LPPool1d, LPPool2d, LPPool3d
from .pool_unpool import MaxUnpool1d, MaxUnpool2d, MaxUnpool3d
from .recurrent import GRU, LSTM
from .shape import Flatten, Identity
from .standardize import Standardize
from .transformer import PositionalEmbedding, SinusoidalPositionalEncoding, TransformerEncoderLayer
from .upsample import Upsample

__all__ = [
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
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
    "FractionalMaxPool2d",
    "FractionalMaxPool3d",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "MaxUnpool3d",
    "MaxPool3d",
    "AvgPool3d",
    "AdaptiveAvgPool3d",
    "LPPool1d",
    "LPPool2d",
    "LPPool3d",
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
