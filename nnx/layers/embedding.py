"""Embedding lookup tables and the tied output projection that reuses their weight."""

from __future__ import annotations

from typing import Any

from ..backend import (
    Backend,
    device,
    get_backend,
    is_tracer,
    namespace,
    scatter_add_rows,
    to_numpy,
)
from ..core.checks import (
    check_floating,
    check_grad,
    check_same_device,
    check_same_dtype,
    dtype_name,
    positive_int,
    require_forward,
)
from ..core.init import Seed, as_rng, reserve
from ..core.module import Module, Parameter

# elements of the one-hot block built at a time by the portable backward (32 MiB in float64)
ONE_HOT_BUDGET = 1 << 22


def one_hot_scatter(ids: Any, values: Any, num_rows: int, budget: int = ONE_HOT_BUDGET) -> Any:
    """``out[v] = sum_{i: ids[i] = v} values[i]`` for ``v < num_rows``, written with the
    standard only: ``out[v0:v1] = onehot(v0:v1)^T @ values`` block by block, where the one-hot
    block ``[ids[i] == v]`` has at most ``budget`` elements, so memory stays bounded for any
    vocabulary and batch size. ``ids`` is 1-D integer, ``values`` is ``(len(ids), D)``."""
    xp = namespace(values)
    m = ids.shape[0]
    rows_m = max(1, min(m, budget))
    rows_v = max(1, budget // rows_m)
    dev = device(values)
    pieces = []
    for v0 in range(0, num_rows, rows_v):
        v1 = min(num_rows, v0 + rows_v)
        cols = xp.arange(v0, v1, dtype=ids.dtype, device=dev)
        block = None
        for i0 in range(0, m, rows_m):
            part = ids[i0 : i0 + rows_m]
            onehot = xp.astype(cols[:, None] == part[None, :], values.dtype)  # (v1 - v0, rows)
            term = onehot @ values[i0 : i0 + rows_m, :]
            block = term if block is None else block + term
        pieces.append(block)
    return pieces[0] if len(pieces) == 1 else xp.concat(pieces, axis=0)


class Embedding(Module):
    """Lookup table: ``y[..., :] = weight[ids[...], :]`` for integer ``ids`` of any shape.

    Backward: ``dweight[v] = sum of g[...] over the positions where ids == v`` (a scatter-add),
    and no gradient for the row ``padding_idx`` (which starts at zero, as in PyTorch). The
    integer input has no gradient: ``backward`` returns None.

    The scatter-add uses the library's own kernel where there is one (NumPy ``add.at``, PyTorch
    ``index_add_``, CuPy ``cupyx.scatter_add``, see :func:`nnx.backend.scatter_add_rows`) and
    otherwise the portable chunked one-hot matmul :func:`one_hot_scatter` (array-api-strict,
    JAX); ``scatter="portable"`` forces the portable path.

    Args:
        num_embeddings, embedding_dim: the weight is ``(num_embeddings, embedding_dim)``.
        padding_idx: a row (negative counts from the end) kept at zero and never updated.
        rng, dtype, device: initial values ``N(0, 1)`` drawn on the host, as in PyTorch.
        check_indices: check that ids lie in ``[0, num_embeddings)`` (two numbers read back to
            the host; turn off in tight GPU loops).
        scatter: ``"auto"`` (library fast path where available) or ``"portable"``.

    >>> import numpy as np, nnx
    >>> emb = nnx.Embedding(10, 3, rng=0)
    >>> emb(np.array([[1, 2, 2]])).shape
    (1, 3, 3)
    """

    _ids = None

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
        check_indices: bool = True,
        scatter: str = "auto",
    ):
        self.num_embeddings = positive_int(num_embeddings, "num_embeddings", "Embedding")
        self.embedding_dim = positive_int(embedding_dim, "embedding_dim", "Embedding")
        if padding_idx is not None:
            if not (-self.num_embeddings <= padding_idx < self.num_embeddings):
                raise ValueError(
                    f"Embedding: padding_idx must be within [-{self.num_embeddings}, "
                    f"{self.num_embeddings - 1}], got {padding_idx!r}"
                )
            padding_idx = int(padding_idx) % self.num_embeddings
        if scatter not in ("auto", "portable"):
            raise ValueError(f"Embedding: scatter must be 'auto' or 'portable', got {scatter!r}")
        self.padding_idx = padding_idx
        self.check_indices = bool(check_indices)
        self.scatter = scatter
        reserve((self.num_embeddings, self.embedding_dim))
        host = as_rng(rng).standard_normal((self.num_embeddings, self.embedding_dim))
        if padding_idx is not None:
            host[padding_idx] = 0.0
        self.weight = Parameter(get_backend(device).asarray(host, dtype=dtype), "weight")

    def extra_repr(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"

    def forward(self, ids: Any) -> Any:
        xp = namespace(ids)
        w = self.weight.value
        if not xp.isdtype(ids.dtype, "integral"):
            raise TypeError(
                f"Embedding: ids must be an integer array, got dtype {dtype_name(ids.dtype)}"
            )
        check_same_device(ids, w, "Embedding", "ids")
        flat = xp.reshape(ids, (-1,))
        # (inside jax.jit the ids are placeholders with no values to read: unchecked there)
        if self.check_indices and flat.shape[0] > 0 and not is_tracer(flat):
            lo, hi = int(to_numpy(xp.min(flat))), int(to_numpy(xp.max(flat)))
            if lo < 0 or hi >= self.num_embeddings:
                raise ValueError(
                    f"Embedding: ids must lie in [0, {self.num_embeddings - 1}], got ids from "
                    f"{lo} to {hi}"
                )
        self._ids = ids
        return xp.reshape(xp.take(w, flat, axis=0), (*ids.shape, self.embedding_dim))

    def backward(self, grad_out: Any) -> None:
        ids = require_forward(self._ids, "Embedding")
        check_grad(grad_out, (*ids.shape, self.embedding_dim), "Embedding")
        xp = namespace(grad_out)
        flat = xp.reshape(ids, (-1,))
        g = xp.reshape(grad_out, (-1, self.embedding_dim))
        grad = (
            None if self.scatter == "portable" else scatter_add_rows(flat, g, self.num_embeddings)
        )
        if grad is None:
            grad = one_hot_scatter(flat, g, self.num_embeddings)
        if self.padding_idx is not None:
            rows = xp.arange(self.num_embeddings, device=device(grad))
            grad = xp.where((rows != self.padding_idx)[:, None], grad, xp.zeros_like(grad))
        self.weight.accumulate(grad)
        return None


class TiedLinear(Module):
    """Output projection sharing an :class:`Embedding`'s weight (weight tying):
    ``y = x @ E^T + b`` with ``E`` the ``(V, D)`` embedding weight, so ``(..., D) -> (..., V)``.

    The weight is the embedding's own :class:`~nnx.Parameter` object, so a model holding both is
    listed once by ``named_parameters()`` and receives the sum of both gradients:
    ``dE += g^T x`` here, plus the embedding's scatter-add.

    Backward: ``dE = g^T x`` (summed over leading axes), ``db = sum g``, ``dx = g @ E``.
    """

    _x = None

    def __init__(self, embedding: Embedding, bias: bool = True):
        if not isinstance(embedding, Embedding):
            raise TypeError(
                f"TiedLinear: expected an nnx.Embedding, got {type(embedding).__name__}"
            )
        self.weight = embedding.weight
        self.bias = None
        if bias:
            w = self.weight.value
            xp = namespace(w)
            self.bias = Parameter(xp.zeros((w.shape[0],), dtype=w.dtype, device=device(w)), "bias")

    def extra_repr(self) -> str:
        v, d = self.weight.shape
        return f"in_features={d}, out_features={v}, bias={self.bias is not None}, tied"

    def forward(self, x: Any) -> Any:
        w = self.weight.value
        xp = namespace(x)
        if x.ndim == 0 or x.shape[-1] != w.shape[1]:
            raise ValueError(
                f"TiedLinear: expected input of shape (..., {w.shape[1]}), got {tuple(x.shape)}"
            )
        check_floating(xp, x, "TiedLinear")
        check_same_dtype(x, w, "TiedLinear")
        check_same_device(x, w, "TiedLinear")
        self._x = x
        y = xp.reshape(xp.reshape(x, (-1, w.shape[1])) @ w.T, (*x.shape[:-1], w.shape[0]))
        return y if self.bias is None else y + self.bias.value

    def backward(self, grad_out: Any) -> Any:
        x = require_forward(self._x, "TiedLinear")
        w = self.weight.value
        check_grad(grad_out, (*x.shape[:-1], w.shape[0]), "TiedLinear")
        xp = namespace(x)
        x2 = xp.reshape(x, (-1, w.shape[1]))
        g2 = xp.reshape(grad_out, (-1, w.shape[0]))
        self.weight.accumulate(g2.T @ x2)
        if self.bias is not None:
            self.bias.accumulate(xp.sum(g2, axis=0))
        return xp.reshape(g2 @ w, x.shape)
