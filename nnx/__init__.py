"""nnx: neural networks with explicit backpropagation on any Array API backend.

Every layer and loss has a ``forward`` and a ``backward`` written once against the Python Array
API standard, so the same code runs on NumPy, CuPy, PyTorch tensors, JAX and array-api-strict.
"""

import sys as _sys

from . import data, datasets, metrics, models, optim
from ._version import __version__ as __version__
from .backend import Backend, BackendUnavailableError, backend_of, get_backend, namespace, to_numpy
from .core import special
from .core.checks import BackwardBeforeForwardError
from .core.containers import Add, Concat, Parallel, Residual
from .core.gradcheck import GradcheckResult, gradcheck
from .core.graph import Graph, Input
from .core.module import Buffer, Module, Parameter, Sequential, register_module
from .core.summary import summary
from .data import augment
from .io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .io.errors import NnxFileError
from .io.model_file import load_model, module_config, save_model
from .io.registry import ModelFileError, registered_modules
from .layers import (
    ELU,
    GELU,
    GRU,
    LSTM,
    SELU,
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AvgPool1d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv1d,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Dropout2d,
    Embedding,
    Flatten,
    GroupNorm,
    Hardtanh,
    Identity,
    LayerNorm,
    LeakyReLU,
    Linear,
    LogSoftmax,
    MaxPool1d,
    MaxPool2d,
    Mish,
    MultiheadAttention,
    PositionalEmbedding,
    ReLU,
    RMSNorm,
    Sigmoid,
    SiLU,
    SinusoidalPositionalEncoding,
    Softmax,
    Softplus,
    Standardize,
    SyncBatchNorm,
    Tanh,
    TiedLinear,
    TransformerEncoderLayer,
    Upsample,
)
from .losses import (
    AdaptiveLogSoftmaxWithLoss,
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    CTCLoss,
    GaussianNLLLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    Loss,
    MSELoss,
    NLLLoss,
    PoissonNLLLoss,
    SmoothL1Loss,
)
from .training import callbacks
from .training.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    JSONLinesLogger,
    LRScheduler,
    ModelCheckpoint,
    ProgressBar,
)
from .training.compile import CompiledStep, compile
from .training.history import History
from .training.plots import save_curves
from .training.trainer import NonFiniteLossError, Trainer

__all__ = [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveLogSoftmaxWithLoss",
    "Add",
    "AvgPool1d",
    "AvgPool2d",
    "BCELoss",
    "BCEWithLogitsLoss",
    "Backend",
    "BackendUnavailableError",
    "BackwardBeforeForwardError",
    "BatchNorm1d",
    "BatchNorm2d",
    "Buffer",
    "CSVLogger",
    "CTCLoss",
    "Callback",
    "CheckpointError",
    "CompiledStep",
    "Concat",
    "Conv1d",
    "Conv2d",
    "ConvTranspose2d",
    "CrossEntropyLoss",
    "Dropout",
    "Dropout2d",
    "ELU",
    "EarlyStopping",
    "Embedding",
    "Flatten",
    "GELU",
    "GRU",
    "GaussianNLLLoss",
    "GradcheckResult",
    "Graph",
    "GroupNorm",
    "Hardtanh",
    "History",
    "HuberLoss",
    "Identity",
    "Input",
    "JSONLinesLogger",
    "KLDivLoss",
    "L1Loss",
    "LRScheduler",
    "LSTM",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "Loss",
    "MSELoss",
    "MaxPool1d",
    "MaxPool2d",
    "Mish",
    "ModelCheckpoint",
    "ModelFileError",
    "Module",
    "MultiheadAttention",
    "NLLLoss",
    "NnxFileError",
    "NonFiniteLossError",
    "Parallel",
    "Parameter",
    "PoissonNLLLoss",
    "PositionalEmbedding",
    "ProgressBar",
    "RMSNorm",
    "ReLU",
    "Residual",
    "SELU",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "SinusoidalPositionalEncoding",
    "SmoothL1Loss",
    "Softmax",
    "Softplus",
    "Standardize",
    "SyncBatchNorm",
    "Tanh",
    "TiedLinear",
    "Trainer",
    "TransformerEncoderLayer",
    "Upsample",
    "augment",
    "backend_of",
    "callbacks",
    "compile",
    "data",
    "datasets",
    "get_backend",
    "gradcheck",
    "load_checkpoint",
    "load_model",
    "metrics",
    "models",
    "module_config",
    "namespace",
    "optim",
    "register_module",
    "registered_modules",
    "save_checkpoint",
    "save_curves",
    "save_model",
    "special",
    "summary",
    "to_numpy",
]

# The public submodules that moved into packages keep their import paths: ``import
# nnx.callbacks`` and ``from nnx.augment import RandomCrop`` still work.
for _name, _module in (("callbacks", callbacks), ("augment", augment), ("special", special)):
    _sys.modules.setdefault(f"{__name__}.{_name}", _module)
