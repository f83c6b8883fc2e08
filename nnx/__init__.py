"""nnx: neural networks with explicit backpropagation on any Array API backend.

Every layer and loss has a ``forward`` and a ``backward`` written once against the Python Array
API standard, so the same code runs on NumPy, CuPy, PyTorch tensors, JAX and array-api-strict.
"""

from . import callbacks, data, datasets, metrics, optim
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
    Dropout,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from .losses import BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, Loss, MSELoss
from .module import Buffer, Module, Parameter, Sequential
from .plots import save_curves
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
    "save_checkpoint",
    "save_curves",
    "GELU",
    "BCEWithLogitsLoss",
    "Backend",
    "BackendUnavailableError",
    "BackwardBeforeForwardError",
    "CrossEntropyLoss",
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
