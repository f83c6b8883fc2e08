"""ONNX export: :func:`export_onnx` writes an nnx model as an ONNX file (``docs/onnx.md``).

``onnx`` is an optional dependency (``pip install 'nnx-trainer[onnx]'``), imported only when a
model is exported. Converters live by layer family: ``activations``, ``layers`` (linear,
shape, dropout, embedding, normalization), ``spatial`` (convolution, pooling, padding) and
``sequence`` (attention, Transformer encoder, RNN/LSTM/GRU, the language-model presets) and
``transformer`` (Transformer decoder, encoder-decoder Transformer).
"""

from . import activations, layers, sequence, spatial, transformer  # noqa: F401 (converters)
from .export import Exporter, OnnxExportError, Tensor, UnsupportedLayerError, register_converter
from .write import export_onnx

__all__ = [
    "Exporter",
    "OnnxExportError",
    "Tensor",
    "UnsupportedLayerError",
    "export_onnx",
    "register_converter",
]
