"""EmbeddingBag: sums, means or maxima of bags of embeddings without materializing each bag's
rows as a separate sequence, as ``torch.nn.EmbeddingBag``."""

from __future__ import annotations

import math
import numbers
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
    check_grad,
    check_same_device,
    check_same_dtype,
    dtype_name,
    positive_int,
    require_forward,
    widened,
)
from ..core.init import Seed, as_rng, reserve
from ..core.module import Module, Parameter
from .embedding import one_hot_scatter

MODES = ("sum", "mean", "max")


class EmbeddingBag(Module):
    """Reduce bags of embedding rows: ``y[b] = reduce_{i in bag b} w_i weight[ids[i]]``.

    Bags come as a 2-D ``input (B, L)`` (each row a bag of ``L`` ids; ``offsets`` must be None)
    or as a 1-D ``input (M,)`` with ``offsets (B,)``: bag ``b`` holds ``input[offsets[b]:
    offsets[b+1]]`` and the last bag runs to the end (with ``include_last_offset``, ``offsets``
    has ``B + 1`` entries, the last one the input length, as in CSR). ``offsets[0]`` must be 0. Output
    ``(B, embedding_dim)``; an empty bag gives zeros.

    - ``mode="sum"``: ``y[b] = sum_i w_i weight[ids[i]]``, with ``w_i = per_sample_weights[i]``
      (same shape as ``input``, ``mode="sum"`` only) or 1;
    - ``mode="mean"`` (default, as PyTorch): the sum divided by the bag's size;
    - ``mode="max"``: the element-wise maximum over the bag's rows.

    Ids equal to ``padding_idx`` are left out of their bag (not counted by the mean); that row
    starts at zero and gets no gradient.

    Backward: ``dweight[v] += g[b] w_i`` (divided by the size for the mean) for each ``i`` of bag
    ``b`` with ``ids[i] == v`` (the scatter-add of :class:`Embedding`); for the max, ``g[b, d]``
    goes to the row that gave the maximum of column ``d`` (the first one on ties).
    ``scale_grad_by_freq`` divides each row's gradient by the number of times its id occurs in
    the input (the documented semantics; PyTorch 2.13's CPU kernel divides some rows by another
    id's count, pytorch/pytorch#190063). ``max_norm`` rescales, during the forward pass, every
    row the input refers to whose ``norm_type``-norm exceeds it to norm ``max_norm`` (as
    PyTorch: ``row *= max_norm / (norm + 1e-7)``, not differentiated). The ids have no gradient:
    ``backward`` returns None, or ``(None, None, d per_sample_weights)`` when per-sample
    weights were given.

    Args:
        num_embeddings, embedding_dim: the weight is ``(num_embeddings, embedding_dim)``, drawn
            ``N(0, 1)`` on the host (or ``_weight``, an array of that shape).
        max_norm, norm_type, scale_grad_by_freq, mode, include_last_offset, padding_idx: as
            PyTorch. ``sparse=True`` is refused: nnx gradients are dense.
        rng, dtype, device, check_indices, scatter: as for :class:`Embedding`.

    The 1-D form reads ``offsets`` back to the host (they are small) to lay the bags out as a
    padded ``(B, max bag size)`` block; everything else stays on the device.

    >>> import numpy as np, nnx
    >>> bag = nnx.EmbeddingBag(10, 3, mode="sum", rng=0)
    >>> bag(np.array([1, 2, 4, 5, 4]), np.array([0, 2])).shape
    (2, 3)
    """

    _ids = None

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        mode: str = "mean",
        sparse: bool = False,
        _weight: Any = None,
        include_last_offset: bool = False,
        padding_idx: int | None = None,
        *,
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
        check_indices: bool = True,
        scatter: str = "auto",
    ):
        who = "EmbeddingBag"
        self.num_embeddings = positive_int(num_embeddings, "num_embeddings", who)
        self.embedding_dim = positive_int(embedding_dim, "embedding_dim", who)
        if max_norm is not None and not (
            isinstance(max_norm, numbers.Real) and not isinstance(max_norm, bool) and max_norm > 0
        ):
            raise ValueError(f"{who}: max_norm must be a number > 0 or None, got {max_norm!r}")
        self.max_norm = None if max_norm is None else float(max_norm)
        if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real):
            raise ValueError(f"{who}: norm_type must be a number, got {norm_type!r}")
        self.norm_type = float(norm_type)
        if mode not in MODES:
            raise ValueError(f"{who}: mode must be one of 'sum', 'mean', 'max', got {mode!r}")
        if mode == "max" and scale_grad_by_freq:
            raise ValueError(f"{who}: mode='max' does not support scale_grad_by_freq=True")
        if sparse:
            raise ValueError(f"{who}: sparse=True is not supported; nnx gradients are dense")
        self.mode, self.sparse = mode, False
        self.scale_grad_by_freq = bool(scale_grad_by_freq)
        self.include_last_offset = bool(include_last_offset)
        if padding_idx is not None:
            v = self.num_embeddings
            if isinstance(padding_idx, bool) or not isinstance(padding_idx, numbers.Integral):
                raise ValueError(f"{who}: padding_idx must be an integer, got {padding_idx!r}")
            if not -v <= padding_idx < v:
                raise ValueError(
                    f"{who}: padding_idx must be within [-{v}, {v - 1}], got {padding_idx!r}"
                )
            padding_idx = int(padding_idx) % v
        self.padding_idx = padding_idx
        if scatter not in ("auto", "portable"):
            raise ValueError(f"{who}: scatter must be 'auto' or 'portable', got {scatter!r}")
        self.check_indices, self.scatter = bool(check_indices), scatter
        shape = (self.num_embeddings, self.embedding_dim)
        if _weight is not None:
            host = to_numpy(_weight)
            if tuple(host.shape) != shape:
                raise ValueError(f"{who}: _weight must have shape {shape}, got {host.shape}")
        else:
            reserve(shape)
            host = as_rng(rng).standard_normal(shape)
            if padding_idx is not None:
                host[padding_idx] = 0.0
        self.weight = Parameter(get_backend(device).asarray(host, dtype=dtype), "weight")

    def extra_repr(self) -> str:
        text = f"{self.num_embeddings}, {self.embedding_dim}, mode={self.mode!r}"
        if self.padding_idx is not None:
            text += f", padding_idx={self.padding_idx}"
        return text

    # ------------------------------------------------------------------ layout
    def _bags(self, xp: Any, ids: Any, offsets: Any) -> tuple[Any, Any, Any, Any]:
        """``(ids2 (B, L), in_bag (B, L) bool, where, source)``: the bags as a padded block; for
        the 1-D form also the flat cell of that block of every input element (``B * L``: in no
        bag) and the input element of every cell (``M``: none)."""
        if ids.ndim == 2:
            if offsets is not None:
                raise ValueError(
                    f"EmbeddingBag: offsets must be None for 2-D input (each row is a bag), got "
                    f"input of shape {tuple(ids.shape)} and offsets"
                )
            full = xp.ones(ids.shape, dtype=xp.bool, device=device(ids))
            return ids, full, None, None
        if ids.ndim != 1:
            raise ValueError(
                f"EmbeddingBag: input must be 1-D (with offsets) or 2-D (B, L), got shape "
                f"{tuple(ids.shape)}"
            )
        if offsets is None or offsets.ndim != 1 or not xp.isdtype(offsets.dtype, "integral"):
            got = "None" if offsets is None else f"shape {tuple(offsets.shape)}"
            raise ValueError(f"EmbeddingBag: 1-D input needs 1-D integer offsets, got {got}")
        m = ids.shape[0]
        starts = [int(v) for v in to_numpy(offsets).tolist()]  # B numbers, read to the host
        if starts and starts[0] != 0:
            raise ValueError(f"EmbeddingBag: offsets[0] must be 0, got {starts[0]}")
        if any(starts[k + 1] < starts[k] for k in range(len(starts) - 1)) or (
            starts and starts[-1] > m
        ):
            raise ValueError(
                f"EmbeddingBag: offsets must be non-decreasing and at most the input length "
                f"{m}, got offsets from {min(starts)} to {max(starts)}"
            )
        if self.include_last_offset:
            if not starts or starts[-1] != m:
                got = starts[-1] if starts else "no offsets"
                raise ValueError(
                    f"EmbeddingBag: with include_last_offset the last offset must be the input "
                    f"length {m}, got {got}"
                )
            starts, ends = starts[:-1], starts[1:]
        else:
            ends = [*starts[1:], m] if starts else []
        bags = len(starts)
        width = max([1] + [e - s for s, e in zip(starts, ends, strict=True)])
        dev, itype = device(ids), offsets.dtype
        first = xp.asarray(starts, dtype=itype, device=dev)
        count = xp.asarray(ends, dtype=itype, device=dev) - first
        cols = xp.arange(width, dtype=itype, device=dev)
        in_bag = cols[None, :] < count[:, None]
        pos = xp.where(in_bag, first[:, None] + cols[None, :], xp.zeros_like(in_bag, dtype=itype))
        # the input element of every cell of the (B, L) block (m: none) ...
        source = xp.reshape(xp.where(in_bag, pos, xp.full_like(pos, m)), (-1,))
        # ... and the cell of every input element (B * L: in no bag): element i is in the last
        # bag starting at or before it, at position i - start, if that is inside the bag
        elements = xp.arange(m, dtype=itype, device=dev)
        if bags == 0:  # no bag: no element is in one
            where = xp.zeros_like(elements)
            return xp.zeros((0, width), dtype=ids.dtype, device=dev), in_bag, where, source
        seg = xp.searchsorted(first, elements, side="right") - 1
        seg_ok = xp.clip(seg, 0, bags - 1)
        at = elements - xp.take(first, seg_ok, axis=0)
        inside = (seg >= 0) & (at < xp.take(count, seg_ok, axis=0))
        where = xp.where(inside, seg_ok * width + at, xp.full_like(at, bags * width))
        if m == 0:
            ids2 = xp.zeros((bags, width), dtype=ids.dtype, device=dev)
        else:
            ids2 = xp.reshape(xp.take(ids, xp.reshape(pos, (-1,)), axis=0), (bags, width))
        return ids2, in_bag, where, source

    def _counts(self, flat: Any, w: Any) -> Any:
        """How often each row id occurs in ``flat``, as a ``(num_embeddings,)`` float array."""
        xp = namespace(w)
        ones = xp.ones((flat.shape[0], 1), dtype=w.dtype, device=device(w))
        counts = None if self.scatter == "portable" else scatter_add_rows(flat, ones, w.shape[0])
        if counts is None:
            counts = one_hot_scatter(flat, ones, w.shape[0])
        return counts[:, 0]

    def _renorm(self, xp: Any, flat: Any) -> None:
        """PyTorch's ``embedding_renorm_``: rows referenced by ``flat`` with a norm above
        ``max_norm`` are scaled to ``max_norm`` (a plain update, not differentiated)."""
        w = self.weight.value
        p = self.norm_type
        a = xp.abs(w)
        if p == math.inf:
            norm = xp.max(a, axis=1)
        elif p == 2:
            norm = xp.sqrt(xp.sum(w * w, axis=1))
        else:
            norm = xp.sum(a**p, axis=1) ** (1.0 / p)
        used = self._counts(flat, w) > 0
        scale = xp.where(
            used & (norm > self.max_norm), self.max_norm / (norm + 1e-7), xp.ones_like(norm)
        )
        self.weight.value = w * scale[:, None]

    # ------------------------------------------------------------------ forward and backward
    def forward(self, input: Any, offsets: Any = None, per_sample_weights: Any = None) -> Any:
        xp = namespace(input)
        w = self.weight.value
        if not xp.isdtype(input.dtype, "integral"):
            raise TypeError(
                f"EmbeddingBag: input must be an integer array of ids, got dtype "
                f"{dtype_name(input.dtype)}"
            )
        check_same_device(input, w, "EmbeddingBag", "input")
        if per_sample_weights is not None:
            if self.mode != "sum":
                raise ValueError(
                    f"EmbeddingBag: per_sample_weights is only supported for mode='sum', got "
                    f"mode={self.mode!r}"
                )
            if tuple(per_sample_weights.shape) != tuple(input.shape):
                raise ValueError(
                    f"EmbeddingBag: per_sample_weights must have the input's shape "
                    f"{tuple(input.shape)}, got {tuple(per_sample_weights.shape)}"
                )
            check_same_dtype(per_sample_weights, w, "EmbeddingBag", "per_sample_weights")
            check_same_device(per_sample_weights, w, "EmbeddingBag", "per_sample_weights")
        ids2, valid, where, source = self._bags(xp, input, offsets)
        flat_all = xp.reshape(input, (-1,))
        # (inside jax.jit the ids are placeholders with no values to read: unchecked there)
        if self.check_indices and flat_all.shape[0] > 0 and not is_tracer(flat_all):
            lo, hi = int(to_numpy(xp.min(flat_all))), int(to_numpy(xp.max(flat_all)))
            if lo < 0 or hi >= self.num_embeddings:
                raise ValueError(
                    f"EmbeddingBag: ids must lie in [0, {self.num_embeddings - 1}], got ids from "
                    f"{lo} to {hi}"
                )
        if self.max_norm is not None and flat_all.shape[0] > 0:
            self._renorm(xp, flat_all)
            w = self.weight.value
        if self.padding_idx is not None:
            valid = valid & (ids2 != self.padding_idx)
        bags, width = ids2.shape
        flat = xp.reshape(ids2, (-1,))
        rows = xp.reshape(xp.take(w, flat, axis=0), (bags, width, self.embedding_dim))
        weights = xp.astype(valid, w.dtype)
        if per_sample_weights is not None:
            psw = per_sample_weights
            if source is not None:  # 1-D: each cell of the block takes its element's weight
                zero = xp.zeros((1,), dtype=w.dtype, device=device(w))
                psw = xp.take(xp.concat([psw, zero]), source, axis=0)
                psw = xp.reshape(psw, (bags, width))
            weights = weights * psw
        size = xp.sum(xp.astype(valid, xp.float32 if w.dtype != xp.float64 else w.dtype), axis=1)
        self._ids, self._flat, self._rows, self._weights = input, flat, rows, weights
        self._where, self._size, self._valid = where, size, valid
        self._psw = per_sample_weights is not None
        if self.scale_grad_by_freq:
            self._freq = self._counts(flat_all, w)
        if self.mode == "max":
            neg = xp.full_like(rows, -math.inf)
            best = xp.max(xp.where(valid[:, :, None], rows, neg), axis=1)
            hit = valid[:, :, None] & (rows == best[:, None, :])
            self._argmax = xp.argmax(xp.astype(hit, w.dtype), axis=1)  # the first hit
            nonempty = (size > 0)[:, None]
            return xp.where(nonempty, best, xp.zeros_like(best))
        total = xp.sum(widened(xp, rows) * widened(xp, weights)[:, :, None], axis=1)
        if self.mode == "mean":
            total = total / xp.astype(xp.maximum(size, 1.0), total.dtype)[:, None]
        return total if total.dtype == w.dtype else xp.astype(total, w.dtype)

    def backward(self, grad_out: Any) -> Any:
        require_forward(self._ids, "EmbeddingBag")
        rows, weights, flat = self._rows, self._weights, self._flat
        bags, width, dim = rows.shape
        check_grad(grad_out, (bags, dim), "EmbeddingBag")
        xp = namespace(rows)
        g = grad_out[:, None, :]
        if self.mode == "max":
            cols = xp.arange(width, dtype=self._argmax.dtype, device=device(rows))
            chosen = (cols[None, :, None] == self._argmax[:, None, :]) & (self._size > 0)[
                :, None, None
            ]
            d_rows = xp.where(chosen, g, xp.zeros_like(rows))
        else:
            scale = weights
            if self.mode == "mean":
                scale = scale / xp.astype(xp.maximum(self._size, 1.0), rows.dtype)[:, None]
            d_rows = g * scale[:, :, None]
        values = xp.reshape(d_rows, (-1, dim))
        if self.scale_grad_by_freq:
            freq = xp.take(self._freq, flat, axis=0)
            values = values / xp.maximum(freq, 1.0)[:, None]
        grad = (
            None
            if self.scatter == "portable"
            else scatter_add_rows(flat, values, self.num_embeddings)
        )
        if grad is None:
            grad = one_hot_scatter(flat, values, self.num_embeddings)
        if self.padding_idx is not None:
            index = xp.arange(self.num_embeddings, device=device(grad))
            grad = xp.where((index != self.padding_idx)[:, None], grad, xp.zeros_like(grad))
        self.weight.accumulate(grad)
        if not self._psw:
            return None
        # d w_i = g[b] . weight[ids[i]] for element i of bag b; 0 for padding ids
        d_psw = xp.sum(rows * g, axis=2) * xp.astype(self._valid, rows.dtype)
        if self._where is None:
            return None, None, d_psw
        zero = xp.zeros((1,), dtype=rows.dtype, device=device(rows))
        return None, None, xp.take(xp.concat([xp.reshape(d_psw, (-1,)), zero]), self._where, axis=0)
