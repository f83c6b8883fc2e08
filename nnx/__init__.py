"""nnx: neural networks with explicit backpropagation on any Array API backend.

Every layer and loss has a ``forward`` and a ``backward`` written once against the Python Array
API standard, so the same code runs on NumPy, CuPy, PyTorch tensors and array-api-strict.
"""

from . import optim
from .backend import Backend, BackendUnavailableError, backend_of, get_backend, namespace, to_numpy
from .checks import BackwardBeforeForwardError
from .gradcheck import GradcheckResult, gradcheck
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
from .module import Module, Parameter, Sequential

__version__ = "0.1.0"

__all__ = [
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
