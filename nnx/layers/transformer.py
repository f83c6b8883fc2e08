"""Transformer encoder layer and positional embeddings (learned and sinusoidal)."""

from __future__ import annotations

import math
from typing import Any

from ..backend import Backend, device, get_backend, is_writeable, namespace
from ..core.checks import check_floating, check_grad, positive_int, require_forward
from ..core.init import Seed, as_rng
from ..core.module import Buffer, Module, Parameter
from .activations import GELU, ReLU
from .attention import MultiheadAttention
from .dropout import Dropout
from .linear import Linear
from .norm.layer import LayerNorm


def make_activation(activation: str | Module, who: str) -> Module:
    """The feed-forward activation module: ``"relu"``, ``"gelu"`` (exact erf form) or a given
    nnx module (a plain function has no backward pass, so it is refused)."""
    if isinstance(activation, Module):
        return activation
    if activation == "relu":
        return ReLU()
    if activation == "gelu":
        return GELU()
    raise ValueError(
        f"{who}: activation must be 'relu', 'gelu' or an nnx Module, got {activation!r}"
    )


def batch_major(xp: Any, x: Any, batch_first: bool, d_model: int, who: str, what: str) -> Any:
    """A sequence input as ``(N, L, E)``: batched ``(N, L, E)`` (or ``(L, N, E)`` when not
    ``batch_first``) or unbatched ``(L, E)`` (a batch of one), after the dtype and shape
    checks."""
    if x.ndim not in (2, 3) or x.shape[-1] != d_model:
        layout = "(N, L, E)" if batch_first else "(L, N, E)"
        raise ValueError(
            f"{who}: {what} must have shape {layout} or (L, E) with E = d_model = {d_model}, "
            f"got {tuple(x.shape)}"
        )
    check_floating(xp, x, who, what)
    if x.ndim == 2:
        return xp.expand_dims(x, axis=0)
    return x if batch_first else xp.permute_dims(x, (1, 0, 2))


def to_batch_major(xp: Any, g: Any, batch_first: bool) -> Any:
    """An upstream gradient in the layout :func:`batch_major` gives its input."""
    if g.ndim == 2:
        return xp.expand_dims(g, axis=0)
    return g if batch_first else xp.permute_dims(g, (1, 0, 2))


def from_batch_major(xp: Any, y: Any, ndim: int, batch_first: bool) -> Any:
    """``(N, L, E)`` back to the caller's layout (``ndim`` 2: unbatched)."""
    if ndim == 2:
        return y[0, ...]
    return y if batch_first else xp.permute_dims(y, (1, 0, 2))


def add_into(fresh: Any, other: Any) -> Any:
    """``fresh + other``, added into ``fresh`` where it may be: ``fresh`` is a temporary of the
    caller's own (a residual branch's output or gradient), writeable and of the sum's shape and
    dtype. Saves a full-size allocation per residual connection."""
    if is_writeable(fresh) and fresh.shape == other.shape and fresh.dtype == other.dtype:
        fresh += other
        return fresh
    return fresh + other


def batch_padding(xp: Any, mask: Any, ndim: int) -> Any:
    """A key padding mask ``(S,)`` of an unbatched input as ``(1, S)``; others unchanged."""
    if mask is None or ndim != 2 or mask.ndim != 1:
        return mask
    return xp.expand_dims(mask, axis=0)


class TransformerEncoderLayer(Module):
    """Self-attention and a feed-forward block, each with a residual connection and LayerNorm,
    as ``torch.nn.TransformerEncoderLayer`` (same sub-module names).

    Post-norm (``norm_first=False``, the default)::

        h = norm1(x + dropout1(self_attn(x, x, x)))
        y = norm2(h + dropout2(linear2(dropout(act(linear1(h))))))

    Pre-norm (``norm_first=True``)::

        h = x + dropout1(self_attn(n1, n1, n1)),  n1 = norm1(x)
        y = h + dropout2(linear2(dropout(act(linear1(norm2(h))))))

    Backward runs the same graph in reverse; at each residual the gradient splits: the skip
    path passes it unchanged and the branch's backward adds its own part, and the three
    attention input gradients (query, key, value are the same array) are summed.

    Args:
        d_model, nhead, dim_feedforward, dropout: as in PyTorch (``dropout=0.1`` by default).
        activation: ``"relu"`` or ``"gelu"`` (exact erf form), or an nnx activation module.
        layer_norm_eps, batch_first, norm_first, bias: as in PyTorch.
        rng, dtype, device: initialization seed and parameter placement.

    ``forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False)``; shapes
    ``(L, N, d_model)`` (``(N, L, d_model)`` with ``batch_first=True``) or unbatched
    ``(L, d_model)``; masks as :class:`MultiheadAttention` takes them (``(S,)`` key padding for
    an unbatched input). ``batch_first`` defaults to False, as in PyTorch.
    """

    _shape = None

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
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        d_model = positive_int(d_model, "d_model", "TransformerEncoderLayer")
        dim_feedforward = positive_int(
            dim_feedforward, "dim_feedforward", "TransformerEncoderLayer"
        )
        act = make_activation(activation, "TransformerEncoderLayer")
        host = as_rng(rng)
        kw = {"dtype": dtype, "device": device}
        self.self_attn = MultiheadAttention(
            d_model, nhead, dropout=dropout, bias=bias, batch_first=True, rng=host, **kw
        )
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, rng=host, **kw)
        self.dropout = Dropout(dropout, rng=host)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, rng=host, **kw)
        self.norm_first = bool(norm_first)
        self.batch_first = bool(batch_first)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **kw)
        self.dropout1 = Dropout(dropout, rng=host)
        self.dropout2 = Dropout(dropout, rng=host)
        self.activation = act
        self.d_model = d_model

    def _sa(self, x: Any, mask: Any, padding: Any, is_causal: bool) -> Any:
        y = self.self_attn(x, x, x, attn_mask=mask, key_padding_mask=padding, is_causal=is_causal)
        return self.dropout1(y)

    def _sa_backward(self, g: Any, need_input_grad: bool = True) -> Any:
        d = self.self_attn.backward_distinct(self.dropout1.backward(g), need_input_grad)
        return None if d is None else d[0]  # dquery + dkey + dvalue: the input was all three

    def _ff(self, x: Any) -> Any:
        h = self.dropout(self.activation(self.linear1(x)))
        return self.dropout2(self.linear2(h))

    def _ff_backward(self, g: Any) -> Any:
        g = self.linear2.backward(self.dropout2.backward(g))
        return self.linear1.backward(self.activation.backward(self.dropout.backward(g)))

    def forward(
        self,
        src: Any,
        src_mask: Any = None,
        src_key_padding_mask: Any = None,
        is_causal: bool = False,
    ) -> Any:
        xp = namespace(src)
        who = "TransformerEncoderLayer"
        x = batch_major(xp, src, self.batch_first, self.d_model, who, "src")
        src_key_padding_mask = batch_padding(xp, src_key_padding_mask, src.ndim)
        if self.norm_first:
            h = add_into(self._sa(self.norm1(x), src_mask, src_key_padding_mask, is_causal), x)
            y = add_into(self._ff(self.norm2(h)), h)
        else:
            h = self.norm1(add_into(self._sa(x, src_mask, src_key_padding_mask, is_causal), x))
            y = self.norm2(add_into(self._ff(h), h))
        self._shape = tuple(src.shape)
        return from_batch_major(xp, y, src.ndim, self.batch_first)

    def backward(self, grad_out: Any, need_input_grad: bool = True) -> Any:
        """Parameter gradients into ``.grad``; returns ``dL/dsrc``, or None when
        ``need_input_grad`` is False (the first trainable layer of a model: the post-norm layer
        then skips the input projections' input-gradient product)."""
        shape = require_forward(self._shape, "TransformerEncoderLayer")
        check_grad(grad_out, shape, "TransformerEncoderLayer")
        xp = namespace(grad_out)
        g = to_batch_major(xp, grad_out, self.batch_first)
        if self.norm_first:
            g_h = add_into(self.norm2.backward(self._ff_backward(g)), g)
            g_x = add_into(self.norm1.backward(self._sa_backward(g_h)), g_h)
        else:
            g_r2 = self.norm2.backward(g)  # gradient of h + ff(h)
            g_h = add_into(self._ff_backward(g_r2), g_r2)
            g_r1 = self.norm1.backward(g_h)  # gradient of x + sa(x)
            if not need_input_grad:
                self._sa_backward(g_r1, need_input_grad=False)
                return None
            g_x = add_into(self._sa_backward(g_r1), g_r1)
        if not need_input_grad:
            return None
        return from_batch_major(xp, g_x, len(shape), self.batch_first)


def _check_sequence(x: Any, max_len: int, dim: int, who: str) -> Any:
    xp = namespace(x)
    if x.ndim < 2 or x.shape[-1] != dim or x.shape[-2] > max_len:
        raise ValueError(
            f"{who}: expected input of shape (..., L, {dim}) with L <= {max_len}, got "
            f"{tuple(x.shape)}"
        )
    check_floating(xp, x, who)
    return xp


class PositionalEmbedding(Module):
    """Learned positions: ``y[..., t, :] = x[..., t, :] + weight[t, :]`` for inputs
    ``(..., L, D)`` with ``L <= max_len``; ``dweight[t] = sum of g[..., t, :]``, ``dx = g``.
    The weight starts as ``N(0, init_std^2)``.
    """

    _shape = None

    def __init__(
        self,
        max_len: int,
        embedding_dim: int,
        init_std: float = 0.02,
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        self.max_len = positive_int(max_len, "max_len", "PositionalEmbedding")
        self.embedding_dim = positive_int(embedding_dim, "embedding_dim", "PositionalEmbedding")
        host = as_rng(rng).standard_normal((self.max_len, self.embedding_dim)) * float(init_std)
        self.weight = Parameter(get_backend(device).asarray(host, dtype=dtype), "weight")

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, embedding_dim={self.embedding_dim}"

    def forward(self, x: Any) -> Any:
        _check_sequence(x, self.max_len, self.embedding_dim, "PositionalEmbedding")
        self._shape = tuple(x.shape)
        return x + self.weight.value[: x.shape[-2], :]

    def backward(self, grad_out: Any) -> Any:
        shape = require_forward(self._shape, "PositionalEmbedding")
        check_grad(grad_out, shape, "PositionalEmbedding")
        xp = namespace(grad_out)
        length = shape[-2]
        g = (
            xp.sum(grad_out, axis=tuple(range(grad_out.ndim - 2)))
            if grad_out.ndim > 2
            else grad_out
        )
        if length < self.max_len:  # positions beyond L got no gradient
            rest = xp.zeros(
                (self.max_len - length, self.embedding_dim), dtype=g.dtype, device=device(g)
            )
            g = xp.concat([g, rest], axis=0)
        self.weight.accumulate(g)
        return grad_out


def sinusoidal_table(max_len: int, dim: int) -> Any:
    """Host table ``P[t, 2i] = sin(t / 10000^(2i/D))``, ``P[t, 2i+1] = cos(...)`` (Vaswani et
    al. 2017), as a nested list of floats."""
    rows = []
    for t in range(max_len):
        row = []
        for j in range(dim):
            angle = t / (10000.0 ** ((j - j % 2) / dim))
            row.append(math.sin(angle) if j % 2 == 0 else math.cos(angle))
        rows.append(row)
    return rows


class SinusoidalPositionalEncoding(Module):
    """Fixed positions: ``y[..., t, :] = x[..., t, :] + P[t, :]`` with the sinusoidal table
    ``P`` of :func:`sinusoidal_table` (a :class:`~nnx.Buffer`, never trained); ``dx = g``."""

    _shape = None

    def __init__(
        self,
        embedding_dim: int,
        max_len: int = 5000,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        self.max_len = positive_int(max_len, "max_len", "SinusoidalPositionalEncoding")
        self.embedding_dim = positive_int(
            embedding_dim, "embedding_dim", "SinusoidalPositionalEncoding"
        )
        table = sinusoidal_table(self.max_len, self.embedding_dim)
        self.table = Buffer(get_backend(device).asarray(table, dtype=dtype), "table")

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, max_len={self.max_len}"

    def forward(self, x: Any) -> Any:
        _check_sequence(x, self.max_len, self.embedding_dim, "SinusoidalPositionalEncoding")
        self._shape = tuple(x.shape)
        table = self.table.value
        if table.dtype != x.dtype:
            table = namespace(x).astype(table, x.dtype)
        return x + table[: x.shape[-2], :]

    def backward(self, grad_out: Any) -> Any:
        check_grad(
            grad_out,
            require_forward(self._shape, "SinusoidalPositionalEncoding"),
            "SinusoidalPositionalEncoding",
        )
        return grad_out
