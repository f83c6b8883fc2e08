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
from .activations_extra import (
    CELU,
    GLU,
    Hardshrink,
    Hardsigmoid,
    Hardswish,
    LogSigmoid,
    ReLU6,
    Softmax2d,
    Softmin,
    Softshrink,
    Softsign,
    Tanhshrink,
    Threshold,
)
from .activations_learned import PReLU, RReLU
from .attention import MultiheadAttention
from .conv import Conv1d, Conv2d
from .conv_transpose import ConvTranspose2d
from .dropout import Dropout, Dropout2d
from .embedding import Embedding, TiedLinear
from .embedding_bag import EmbeddingBag
from .linear import Linear
from .norm import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm, RMSNorm, SyncBatchNorm
from .pool import AdaptiveAvgPool1d, AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d
from .recurrent import GRU, LSTM
from .shape import Flatten, Identity
from .similarity import Bilinear, CosineSimilarity, PairwiseDistance
from .standardize import Standardize
from .transformer import PositionalEmbedding, SinusoidalPositionalEncoding, TransformerEncoderLayer
from .upsample import Upsample

__all__ = [
    "EmbeddingBag",
    "CELU",
    "GLU",
    "Hardshrink",
    "Hardsigmoid",
    "Hardswish",
    "LogSigmoid",
    "ReLU6",
    "Softmax2d",
    "Softmin",
    "Softshrink",
    "Softsign",
    "Tanhshrink",
    "Threshold",
    "PReLU",
    "RReLU",
    "Bilinear",
    "CosineSimilarity",
    "PairwiseDistance",
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
