"""nnx: neural networks with explicit backpropagation on any Array API backend.

Every layer and loss has a ``forward`` and a ``backward`` written once against the Python Array
API standard, so the same code runs on NumPy, CuPy, PyTorch tensors, JAX and array-api-strict.
"""

from . import callbacks, data, datasets, metrics, models, optim
from .backend import Backend, BackendUnavailableError, backend_of, get_backend, namespace, to_numpy
from .callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    JSONLinesLogger,
    LRScheduler,
    ModelCheckpoint,
    ProgressBar,
)
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .checks import BackwardBeforeForwardError
from .compile import CompiledStep, compile
from .gradcheck import GradcheckResult, gradcheck
from .history import History
from .layers import (
    GELU,
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
    Flatten,
    GroupNorm,
    Identity,
    LeakyReLU,
    Linear,
    MaxPool1d,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    Upsample,
)
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, Loss, MSELoss
from .module import Buffer, Module, Parameter, Sequential
from .plots import save_curves
from .registry import ModelFileError, register_module, registered_modules
from .saving import load_model, module_config, save_model
from .summary import summary
from .trainer import NonFiniteLossError, Trainer

__version__ = "0.1.0"

__all__ = [
    "CSVLogger",
    "Callback",
    "CompiledStep",
    "compile",
    "CheckpointError",
    "EarlyStopping",
    "History",
    "JSONLinesLogger",
    "LRScheduler",
    "ModelCheckpoint",
    "NonFiniteLossError",
    "ProgressBar",
    "Trainer",
    "callbacks",
    "data",
    "datasets",
    "load_checkpoint",
    "metrics",
    "models",
    "save_checkpoint",
    "save_curves",
    "ModelFileError",
    "load_model",
    "module_config",
    "register_module",
    "registered_modules",
    "save_model",
    "summary",
    "GELU",
    "BCEWithLogitsLoss",
    "Backend",
    "BackendUnavailableError",
    "BackwardBeforeForwardError",
    "CrossEntropyLoss",
    "Conv1d",
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
    "Conv2d",
    "ConvTranspose2d",
    "Dropout",
    "Flatten",
    "GradcheckResult",
    "Identity",
    "L1Loss",
    "LeakyReLU",
    "Linear",
    "Loss",
    "MSELoss",
    "Module",
    "Parameter",
    "Buffer",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "backend_of",
    "get_backend",
    "gradcheck",
    "namespace",
    "optim",
    "to_numpy",
]
