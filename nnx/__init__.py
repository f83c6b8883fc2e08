"""nnx: neural networks with explicit backpropagation on any Array API backend.

Every layer and loss has a ``forward`` and a ``backward`` written once against the Python Array
API standard, so the same code runs on NumPy, CuPy, PyTorch tensors, JAX and array-api-strict.
"""

import sys as _sys

from . import data, datasets, layers, losses, metrics, models, optim
from ._version import __version__ as __version__
from .backend import Backend, BackendUnavailableError, backend_of, get_backend, namespace, to_numpy
from .core import special
from .core.checks import BackwardBeforeForwardError
from .core.containers import Add, Concat, Parallel, Residual
from .core.gradcheck import GradcheckResult, gradcheck
from .core.graph import Graph, Input
from .core.holders import ModuleDict, ModuleList, ParameterDict, ParameterList
from .core.lazy import UnbuiltModuleError
from .core.module import Buffer, Module, Parameter, Sequential, register_module
from .core.summary import summary
from .data import augment
from .io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .io.errors import NnxFileError
from .io.model_file import load_model, module_config, save_model
from .io.registry import ModelFileError, registered_modules
from .io.torch_weights import load_torch_state_dict, save_torch_weights, torch_state_dict
from .layers import *  # noqa: F403  every name of nnx.layers.__all__ (the layer classes)
from .losses import *  # noqa: F403  every name of nnx.losses.__all__ (the loss classes)
from .onnx import export_onnx
from .training import callbacks
from .training.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    JSONLinesLogger,
    LRScheduler,
    ModelCheckpoint,
    ProgressBar,
    TensorBoardLogger,
)
from .training.compile import CompiledStep, compile
from .training.history import History
from .training.lr_find import LRFindResult, lr_find
from .training.plots import save_curves
from .training.trainer import NonFiniteLossError, Trainer

__all__ = [
    "Add",
    "Backend",
    "BackendUnavailableError",
    "BackwardBeforeForwardError",
    "Buffer",
    "CSVLogger",
    "Callback",
    "CheckpointError",
    "CompiledStep",
    "Concat",
    "EarlyStopping",
    "GradcheckResult",
    "Graph",
    "History",
    "Input",
    "JSONLinesLogger",
    "LRFindResult",
    "LRScheduler",
    "ModelCheckpoint",
    "ModelFileError",
    "Module",
    "ModuleDict",
    "ModuleList",
    "NnxFileError",
    "NonFiniteLossError",
    "Parallel",
    "Parameter",
    "ParameterDict",
    "ParameterList",
    "ProgressBar",
    "Residual",
    "Sequential",
    "TensorBoardLogger",
    "Trainer",
    "UnbuiltModuleError",
    "augment",
    "backend_of",
    "callbacks",
    "compile",
    "data",
    "datasets",
    "export_onnx",
    "get_backend",
    "gradcheck",
    "load_checkpoint",
    "load_model",
    "load_torch_state_dict",
    "lr_find",
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
    "save_torch_weights",
    "special",
    "summary",
    "to_numpy",
    "torch_state_dict",
]
__all__ += layers.__all__  # every layer class
__all__ += losses.__all__  # every loss class
__all__.sort()

# The public submodules that moved into packages keep their import paths: ``import
# nnx.callbacks`` and ``from nnx.augment import RandomCrop`` still work.
for _name, _module in (("callbacks", callbacks), ("augment", augment), ("special", special)):
    _sys.modules.setdefault(f"{__name__}.{_name}", _module)
