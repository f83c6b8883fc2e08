"""Transformer decoder layer: self-attention, cross-attention on an encoder's output, and a
feed-forward block, as ``torch.nn.TransformerDecoderLayer``."""

from __future__ import annotations

from typing import Any

from ..backend import Backend, namespace
from ..core.checks import check_grad, positive_int, require_forward
from ..core.init import Seed, as_rng
from ..core.module import Module
from .attention import MultiheadAttention
from .dropout import Dropout
from .linear import Linear
from .norm.layer import LayerNorm
from .transformer import (
    add_into,
    batch_major,
    batch_padding,
    from_batch_major,
    make_activation,
    to_batch_major,
)


class TransformerDecoderLayer(Module):
    """Self-attention on the target, attention from the target to ``memory`` (the encoder's
    output) and a feed-forward block, each with a residual connection and LayerNorm, as
    ``torch.nn.TransformerDecoderLayer`` (same sub-module and parameter names).

    Post-norm (``norm_first=False``, the default), with ``m = memory``::

        h1 = norm1(x + sa(x)),     sa(u) = dropout1(self_attn(u, u, u))
        h2 = norm2(h1 + ca(h1)),   ca(u) = dropout2(multihead_attn(u, m, m))
        y  = norm3(h2 + ff(h2)),   ff(u) = dropout3(linear2(dropout(act(linear1(u)))))

    Pre-norm (``norm_first=True``; ``memory`` itself is not normalized)::

        h1 = x + sa(norm1(x)),   h2 = h1 + ca(norm2(h1)),   y = h2 + ff(norm3(h2))

    Backward runs the graph in reverse: at each residual ``u + f(u)`` the gradient is
    ``g + f.backward(g)``; the self-attention's three input gradients are summed, and the
    cross-attention's key and value gradients are the gradient of ``memory``.
    ``backward(grad_out)`` returns ``(d_tgt, d_memory)``.

    Args:
        d_model, nhead, dim_feedforward, dropout: as in PyTorch (``dropout=0.1`` by default).
        activation: ``"relu"``, ``"gelu"`` (exact erf form) or an nnx activation module.
        layer_norm_eps, norm_first, bias: as in PyTorch.
        batch_first: ``(L, N, E)`` inputs (False, the default, as in PyTorch) or ``(N, L, E)``
            (True).
        rng, dtype, device: initialization seed and parameter placement.

    ``forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False)``: ``tgt``
    ``(T, N, E)``, ``memory`` ``(S, N, E)`` (``(N, T, E)``, ``(N, S, E)`` with
    ``batch_first=True``; or both unbatched, ``(T, E)`` and ``(S, E)``);
    ``tgt_mask`` ``(T, T)`` or ``(N * nhead, T, T)``, ``memory_mask`` ``(T, S)`` or
    ``(N * nhead, T, S)``, key padding masks ``(N, T)`` and ``(N, S)``; boolean (True = masked
    out) or floating (added to the scores). ``*_is_causal=True`` adds the causal mask (see
    :class:`MultiheadAttention`). Output shaped as ``tgt``.

    >>> import numpy as np, nnx
    >>> layer = nnx.TransformerDecoderLayer(
    ...     8, 2, dim_feedforward=16, dropout=0.0, batch_first=True, rng=0
    ... )
    >>> tgt, memory = np.ones((2, 3, 8), np.float32), np.ones((2, 5, 8), np.float32)
    >>> layer(tgt, memory, tgt_is_causal=True).shape
    (2, 3, 8)
    >>> [g.shape for g in layer.backward(np.ones((2, 3, 8), np.float32))]
    [(2, 3, 8), (2, 5, 8)]
    """

    _shapes = None

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Module = "relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        *,
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        who = "TransformerDecoderLayer"
        d_model = positive_int(d_model, "d_model", who)
        dim_feedforward = positive_int(dim_feedforward, "dim_feedforward", who)
        act = make_activation(activation, who)
        host = as_rng(rng)
        kw = {"dtype": dtype, "device": device}
        attn = {"dropout": dropout, "bias": bias, "batch_first": True, **kw}
        self.self_attn = MultiheadAttention(d_model, nhead, rng=host, **attn)
        self.multihead_attn = MultiheadAttention(d_model, nhead, rng=host, **attn)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, rng=host, **kw)
        self.dropout = Dropout(dropout, rng=host)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, rng=host, **kw)
        self.norm_first = bool(norm_first)
        self.batch_first = bool(batch_first)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.dropout1 = Dropout(dropout, rng=host)
        self.dropout2 = Dropout(dropout, rng=host)
        self.dropout3 = Dropout(dropout, rng=host)
        self.activation = act
        self.d_model = d_model

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, norm_first={self.norm_first}"

    # the three blocks and their backward passes
    def _sa(self, x: Any, mask: Any, padding: Any, causal: bool) -> Any:
        y = self.self_attn(x, x, x, attn_mask=mask, key_padding_mask=padding, is_causal=causal)
        return self.dropout1(y)

    def _sa_backward(self, g: Any) -> Any:
        (d_x,) = self.self_attn.backward_distinct(self.dropout1.backward(g))
        return d_x  # dquery + dkey + dvalue: the block's input was all three

    def _ca(self, x: Any, mem: Any, mask: Any, padding: Any, causal: bool) -> Any:
        y = self.multihead_attn(
            x, mem, mem, attn_mask=mask, key_padding_mask=padding, is_causal=causal
        )
        return self.dropout2(y)

    def _ca_backward(self, g: Any) -> tuple[Any, Any]:
        dq, d_mem = self.multihead_attn.backward_distinct(self.dropout2.backward(g))
        return dq, d_mem  # d_mem = dkey + dvalue: memory was both

    def _ff(self, x: Any) -> Any:
        h = self.dropout(self.activation(self.linear1(x)))
        return self.dropout3(self.linear2(h))

    def _ff_backward(self, g: Any) -> Any:
        g = self.linear2.backward(self.dropout3.backward(g))
        return self.linear1.backward(self.activation.backward(self.dropout.backward(g)))

    def forward(
        self,
        tgt: Any,
        memory: Any,
        tgt_mask: Any = None,
        memory_mask: Any = None,
        tgt_key_padding_mask: Any = None,
        memory_key_padding_mask: Any = None,
        tgt_is_causal: bool = False,
        memory_is_causal: bool = False,
    ) -> Any:
        who = "TransformerDecoderLayer"
        xp = namespace(tgt)
        x = batch_major(xp, tgt, self.batch_first, self.d_model, who, "tgt")
        mem = batch_major(xp, memory, self.batch_first, self.d_model, who, "memory")
        if tgt.ndim != memory.ndim or x.shape[0] != mem.shape[0]:
            raise ValueError(
                f"{who}: tgt and memory must both be batched with the same batch size, or both "
                f"unbatched; got shapes {tuple(tgt.shape)} and {tuple(memory.shape)}"
            )
        t_pad = batch_padding(xp, tgt_key_padding_mask, tgt.ndim)
        m_pad = batch_padding(xp, memory_key_padding_mask, tgt.ndim)
        t_causal, m_causal = bool(tgt_is_causal), bool(memory_is_causal)
        if self.norm_first:
            x = add_into(self._sa(self.norm1(x), tgt_mask, t_pad, t_causal), x)
            x = add_into(self._ca(self.norm2(x), mem, memory_mask, m_pad, m_causal), x)
            y = add_into(self._ff(self.norm3(x)), x)
        else:
            x = self.norm1(add_into(self._sa(x, tgt_mask, t_pad, t_causal), x))
            x = self.norm2(add_into(self._ca(x, mem, memory_mask, m_pad, m_causal), x))
            y = self.norm3(add_into(self._ff(x), x))
        self._shapes = (tuple(tgt.shape), tuple(memory.shape))
        return from_batch_major(xp, y, tgt.ndim, self.batch_first)

    def backward(self, grad_out: Any) -> tuple[Any, Any]:
        """Parameter gradients into ``.grad``; returns ``(d_tgt, d_memory)``."""
        shape, mem_shape = require_forward(self._shapes, "TransformerDecoderLayer")
        check_grad(grad_out, shape, "TransformerDecoderLayer")
        xp = namespace(grad_out)
        g = to_batch_major(xp, grad_out, self.batch_first)
        if self.norm_first:
            g = add_into(self.norm3.backward(self._ff_backward(g)), g)
            g_q, g_mem = self._ca_backward(g)
            g = add_into(self.norm2.backward(g_q), g)
            g = add_into(self.norm1.backward(self._sa_backward(g)), g)
        else:
            g = self.norm3.backward(g)  # the gradient of h2 + ff(h2)
            g = add_into(self._ff_backward(g), g)
            g = self.norm2.backward(g)  # of h1 + ca(h1)
            g_q, g_mem = self._ca_backward(g)
            g = add_into(g_q, g)
            g = self.norm1.backward(g)  # of x + sa(x)
            g = add_into(self._sa_backward(g), g)
        return (
            from_batch_major(xp, g, len(shape), self.batch_first),
            from_batch_major(xp, g_mem, len(mem_shape), self.batch_first),
        )
