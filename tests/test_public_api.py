"""The public API: what nnx exported before its modules moved into packages still imports."""

import importlib

import pytest

import nnx

# nnx.__all__ before the layered layout (core, io, training, cli); frozen here on purpose.
BEFORE_THE_LAYOUT = [
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
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
    "NonFiniteLossError",
    "Parallel",
    "Parameter",
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


@pytest.mark.parametrize("name", BEFORE_THE_LAYOUT)
def test_every_name_exported_before_still_imports(name):
    assert name in nnx.__all__
    assert getattr(nnx, name) is not None


def test_all_is_sorted_and_real():
    assert nnx.__all__ == sorted(nnx.__all__)
    assert [n for n in nnx.__all__ if not hasattr(nnx, n)] == []


@pytest.mark.parametrize("old", ["callbacks", "augment", "special"])
def test_public_submodules_keep_their_import_paths(old):
    module = importlib.import_module(f"nnx.{old}")
    assert module is getattr(nnx, old)
