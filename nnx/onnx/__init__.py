"""ONNX export: :func:`export_onnx` writes an nnx model as an ONNX file (``docs/onnx.md``).

``onnx`` is an optional dependency (``pip install 'nnx-trainer[onnx]'``), imported only when a
model is exported. Converters live by layer family: ``activations``, ``layers`` (linear,
shape, dropout, embedding, normalization), ``spatial`` (convolution, pooling, padding) and
``sequence`` (attention, Transformer encoder, RNN/LSTM/GRU).
"""

from . import activations, layers, sequence, spatial  # noqa: F401  (they register converters)
from .export import (
    Exporter,
    OnnxExportError,
    Tensor,
    UnsupportedLayerError,
    export_onnx,
    register_converter,
)

__all__ = [
    "Exporter",
    "OnnxExportError",
    "Tensor",
    "UnsupportedLayerError",
    "export_onnx",
    "register_converter",
]
