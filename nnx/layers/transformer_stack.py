"""Stacks of transformer layers: ``TransformerEncoder``, ``TransformerDecoder`` and the whole
encoder-decoder ``Transformer``, as in ``torch.nn``."""

from __future__ import annotations

import copy
import math
import numbers
from typing import Any

from ..backend import Backend, backend_of, get_backend, namespace
from ..core.checks import require_forward
from ..core.init import Seed, as_rng, reserve
from ..core.module import Module, Sequential
from .attention import MultiheadAttention, causal_mask
from .norm.layer import LayerNorm
from .transformer import TransformerEncoderLayer
from .transformer_decoder import TransformerDecoderLayer


def _num_layers(value: Any, who: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{who}: num_layers must be an integer >= 0, got {value!r}")
    return int(value)


def _clones(layer: Any, n: int, who: str) -> Sequential:
    """``n`` deep copies of ``layer`` (as PyTorch's ``_get_clones``: equal initial weights),
    held in a :class:`Sequential` so their names are ``layers.0``, ``layers.1``, ... Each copy's
    dropout layers get their own seed (derived from the original's and the copy's index), so
    the layers draw different masks."""
    if not isinstance(layer, Module):
        raise TypeError(f"{who}: the layer must be an nnx Module, got {type(layer).__name__}")
    size = sum(math.prod(p.shape) for p in layer.parameters())
    copies = []
    for i in range(n):
        reserve((size,), f"{who}: copy {i} of the layer")
        clone = copy.deepcopy(layer)
        for m in clone.modules():
            reseed = getattr(m, "reseed", None)
            if callable(reseed) and isinstance(getattr(m, "seed", None), int):
                reseed(int(as_rng((m.seed + 7919 * (i + 1)) % 2**63).integers(2**63)))
        copies.append(clone)
    return Sequential(*copies)


def _norm(norm: Any, who: str, what: str = "norm") -> Any:
    if norm is not None and not isinstance(norm, Module):
        raise TypeError(f"{who}: {what} must be an nnx Module or None, got {type(norm).__name__}")
    return norm


class TransformerEncoder(Module):
    """``num_layers`` deep copies of ``encoder_layer`` applied in turn, then ``norm`` (if given),
    as ``torch.nn.TransformerEncoder``: ``y = norm(layer_n(... layer_1(src)))``, every layer
    with the same masks. Parameters are named ``layers.0.self_attn...``, ``norm.weight``.
    Backward runs ``norm`` and the layers in reverse and returns ``d_src``.

    ``forward(src, mask=None, src_key_padding_mask=None, is_causal=None)``: shapes and masks as
    :class:`TransformerEncoderLayer` takes them; ``is_causal=True`` adds the causal mask in every
    layer. ``enable_nested_tensor`` and ``mask_check`` are accepted for compatibility and change
    nothing: nnx has no nested tensors, and padded positions are computed (PyTorch's inference
    fast path returns zeros there).
    """

    _shape = None

    def __init__(
        self,
        encoder_layer: Module,
        num_layers: int,
        norm: Module | None = None,
        enable_nested_tensor: bool = True,
        mask_check: bool = True,
    ):
        who = "TransformerEncoder"
        self.num_layers = _num_layers(num_layers, who)
        self.layers = _clones(encoder_layer, self.num_layers, who)
        self.norm = _norm(norm, who)
        self.enable_nested_tensor = bool(enable_nested_tensor)
        self.mask_check = bool(mask_check)

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}"

    def forward(
        self,
        src: Any,
        mask: Any = None,
        src_key_padding_mask: Any = None,
        is_causal: bool | None = None,
    ) -> Any:
        x = src
        for layer in self.layers:
            x = layer(
                x, src_mask=mask, src_key_padding_mask=src_key_padding_mask,
                is_causal=bool(is_causal),
            )  # fmt: skip
        if self.norm is not None:
            x = self.norm(x)
        self._shape = tuple(src.shape)
        return x

    def backward(self, grad_out: Any) -> Any:
        """Parameter gradients into ``.grad``; returns ``d_src``."""
        require_forward(self._shape, "TransformerEncoder")
        g = grad_out if self.norm is None else self.norm.backward(grad_out)
        for layer in reversed(list(self.layers)):
            g = layer.backward(g)
        return g


class TransformerDecoder(Module):
    """``num_layers`` deep copies of ``decoder_layer`` applied in turn to the target, each
    attending to the same ``memory``, then ``norm`` (if given), as
    ``torch.nn.TransformerDecoder``. ``backward(grad_out)`` returns ``(d_tgt, d_memory)``, where
    ``d_memory`` is the sum of every layer's memory gradient.

    ``forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False)``: shapes and
    masks as :class:`TransformerDecoderLayer` takes them.
    """

    _shape = None

    def __init__(self, decoder_layer: Module, num_layers: int, norm: Module | None = None):
        who = "TransformerDecoder"
        self.num_layers = _num_layers(num_layers, who)
        self.layers = _clones(decoder_layer, self.num_layers, who)
        self.norm = _norm(norm, who)

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}"

    def forward(
        self,
        tgt: Any,
        memory: Any,
        tgt_mask: Any = None,
        memory_mask: Any = None,
        tgt_key_padding_mask: Any = None,
        memory_key_padding_mask: Any = None,
        tgt_is_causal: bool | None = None,
        memory_is_causal: bool = False,
    ) -> Any:
        x = tgt
        for layer in self.layers:
            x = layer(
                x,
                memory,
                tgt_mask=tgt_mask,
                memory_mask=memory_mask,
                tgt_key_padding_mask=tgt_key_padding_mask,
                memory_key_padding_mask=memory_key_padding_mask,
                tgt_is_causal=bool(tgt_is_causal),
                memory_is_causal=bool(memory_is_causal),
            )
        if self.norm is not None:
            x = self.norm(x)
        self._shape = (tuple(tgt.shape), tuple(memory.shape), memory)
        return x

    def backward(self, grad_out: Any) -> tuple[Any, Any]:
        """Parameter gradients into ``.grad``; returns ``(d_tgt, d_memory)``."""
        _, _, memory = require_forward(self._shape, "TransformerDecoder")
        g = grad_out if self.norm is None else self.norm.backward(grad_out)
        g_mem = None
        for layer in reversed(list(self.layers)):
            g, g_m = layer.backward(g)
            g_mem = g_m if g_mem is None else g_mem + g_m
        if g_mem is None:  # no layers: memory was not used
            g_mem = namespace(memory).zeros_like(memory)
        return g, g_mem


class Transformer(Module):
    """The encoder-decoder transformer of Vaswani et al. (2017), as ``torch.nn.Transformer``::

        memory = encoder(src),   out = decoder(tgt, memory)

    ``encoder`` is a :class:`TransformerEncoder` of ``num_encoder_layers``
    :class:`TransformerEncoderLayer` with a final :class:`LayerNorm`, ``decoder`` a
    :class:`TransformerDecoder` of ``num_decoder_layers`` :class:`TransformerDecoderLayer` with
    a final LayerNorm (or ``custom_encoder`` / ``custom_decoder``, called with the same
    arguments). As in PyTorch every parameter with two or more dimensions is then redrawn
    from a Xavier-uniform distribution (so the layers differ); the attention's query, key and
    value weights use the fans of PyTorch's stacked ``(3E, E)`` ``in_proj_weight``.

    ``backward(grad_out)`` returns ``(d_src, d_tgt)``: the decoder's backward gives ``d_tgt``
    and ``d_memory``, and the encoder's backward of ``d_memory`` gives ``d_src``.

    ``forward(src, tgt, src_mask=None, tgt_mask=None, memory_mask=None,
    src_key_padding_mask=None, tgt_key_padding_mask=None, memory_key_padding_mask=None,
    src_is_causal=None, tgt_is_causal=None, memory_is_causal=False)``: ``src`` ``(S, N, E)``,
    ``tgt`` ``(T, N, E)`` (``(N, S, E)``, ``(N, T, E)`` with ``batch_first=True``, or unbatched
    ``(S, E)``, ``(T, E)``), output shaped as ``tgt``. ``src_mask`` ``(S, S)``, ``tgt_mask``
    ``(T, T)``, ``memory_mask`` ``(T, S)`` (or per head ``(N * nhead, ., .)``), key padding
    masks ``(N, S)``, ``(N, T)``, ``(N, S)``. :meth:`generate_square_subsequent_mask` makes the
    causal ``tgt_mask``. ``batch_first`` defaults to False, as in PyTorch; it is passed to the
    encoder and decoder layers built here.
    """

    _shape = None

    def __init__(
        self,
        d_model: int = 512,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Module = "relu",
        custom_encoder: Module | None = None,
        custom_decoder: Module | None = None,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        *,
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        host = as_rng(rng)
        opts = {
            "dim_feedforward": dim_feedforward,
            "dropout": dropout,
            "activation": activation,
            "layer_norm_eps": layer_norm_eps,
            "batch_first": batch_first,
            "norm_first": norm_first,
            "bias": bias,
            "dtype": dtype,
            "device": device,
        }
        norm = {"eps": layer_norm_eps, "bias": bias, "dtype": dtype, "device": device}
        if custom_encoder is not None:
            self.encoder = _norm(custom_encoder, "Transformer", "custom_encoder")
        else:
            layer = TransformerEncoderLayer(d_model, nhead, rng=host, **opts)
            self.encoder = TransformerEncoder(layer, num_encoder_layers, LayerNorm(d_model, **norm))
        if custom_decoder is not None:
            self.decoder = _norm(custom_decoder, "Transformer", "custom_decoder")
        else:
            layer = TransformerDecoderLayer(d_model, nhead, rng=host, **opts)
            self.decoder = TransformerDecoder(layer, num_decoder_layers, LayerNorm(d_model, **norm))
        self._reset_parameters(host)
        self.d_model = int(d_model)
        self.nhead = int(nhead)
        self.batch_first = bool(batch_first)

    def _reset_parameters(self, host: Any) -> None:
        """Xavier-uniform for every parameter of two or more dimensions, as PyTorch does."""
        stacked: set[int] = set()  # q, k, v weights: one (3E, E) matrix in PyTorch
        for m in self.modules():
            if isinstance(m, MultiheadAttention):
                stacked.update(id(p.weight) for p in (m.q_proj, m.k_proj, m.v_proj))
        for p in self.parameters():
            if len(p.shape) < 2:
                continue
            fan_in, fan_out = p.shape[0], p.shape[-1]
            if id(p) in stacked:
                fan_out *= 3
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            # no reserve(): these values replace ones already drawn (and counted)
            values = host.uniform(-bound, bound, size=p.shape)
            p.value = backend_of(p.value).asarray(values, dtype=p.value.dtype)

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, nhead={self.nhead}"

    def forward(
        self,
        src: Any,
        tgt: Any,
        src_mask: Any = None,
        tgt_mask: Any = None,
        memory_mask: Any = None,
        src_key_padding_mask: Any = None,
        tgt_key_padding_mask: Any = None,
        memory_key_padding_mask: Any = None,
        src_is_causal: bool | None = None,
        tgt_is_causal: bool | None = None,
        memory_is_causal: bool = False,
    ) -> Any:
        axis = 0 if self.batch_first else 1
        if src.ndim == 3 and (tgt.ndim != 3 or src.shape[axis] != tgt.shape[axis]):
            raise ValueError(
                f"Transformer: src and tgt must have the same batch size, got shapes "
                f"{tuple(src.shape)} and {tuple(tgt.shape)}"
            )
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise ValueError(
                f"Transformer: the feature size of src and tgt must be d_model = {self.d_model}, "
                f"got shapes {tuple(src.shape)} and {tuple(tgt.shape)}"
            )
        memory = self.encoder(
            src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal
        )
        out = self.decoder(
            tgt,
            memory,
            tgt_mask=tgt_mask,
            memory_mask=memory_mask,
            tgt_key_padding_mask=tgt_key_padding_mask,
            memory_key_padding_mask=memory_key_padding_mask,
            tgt_is_causal=tgt_is_causal,
            memory_is_causal=memory_is_causal,
        )
        self._shape = tuple(out.shape)
        return out

    def backward(self, grad_out: Any) -> tuple[Any, Any]:
        """Parameter gradients into ``.grad``; returns ``(d_src, d_tgt)``."""
        require_forward(self._shape, "Transformer")
        d_tgt, d_memory = self.decoder.backward(grad_out)
        return self.encoder.backward(d_memory), d_tgt

    @staticmethod
    def generate_square_subsequent_mask(
        sz: int, device: str | Backend | None = None, dtype: Any = None
    ) -> Any:
        """The ``(sz, sz)`` causal mask: ``-inf`` above the diagonal, 0 elsewhere (position ``i``
        attends to ``j <= i``), as a floating array (float32 by default) on ``device``."""
        sz = int(sz)
        backend = get_backend("cpu" if device is None else device)
        dt = backend.dtype("float32" if dtype is None else dtype)
        return causal_mask(backend.xp, sz, sz, dt, backend.device)
