"""Multi-head scaled dot-product attention with its explicit backward pass."""

from __future__ import annotations

import math
from typing import Any

from .. import _fastseq, _native
from ..backend import Backend, device, is_writeable, namespace, one_blas_thread
from ..core.checks import check_floating, check_grad, dtype_name, positive_int, require_forward
from ..core.init import Seed, as_rng
from ..core.module import Module
from .dropout import Dropout
from .linear import Linear


def _additive_mask(xp: Any, mask: Any, dtype: Any, what: str) -> Any:
    """A boolean mask (True = masked out) as ``-inf``/0, or a floating mask as it is."""
    if mask.dtype == xp.bool:
        zero = xp.zeros(mask.shape, dtype=dtype, device=device(mask))
        return xp.where(mask, -math.inf, zero)
    if not xp.isdtype(mask.dtype, "real floating"):
        raise TypeError(
            f"MultiheadAttention: {what} must be boolean (True = masked) or floating (added to "
            f"the scores), got dtype {dtype_name(mask.dtype)}"
        )
    return xp.astype(mask, dtype) if mask.dtype != dtype else mask


def causal_mask(xp: Any, length: int, source_length: int, dtype: Any, dev: Any) -> Any:
    """``(L, S)`` additive mask: ``-inf`` above the diagonal (position i sees keys j <= i)."""
    i = xp.arange(length, device=dev)[:, None]
    j = xp.arange(source_length, device=dev)[None, :]
    zero = xp.zeros((length, source_length), dtype=dtype, device=dev)
    return xp.where(j > i, -math.inf, zero)


def masked_softmax(xp: Any, scores: Any, overwrite: bool = False) -> Any:
    """Softmax over the last axis where entries of ``-inf`` get weight 0 and a row that is
    entirely ``-inf`` gets all-zero weights (instead of NaN). With ``overwrite=True`` the
    caller gives up ``scores``: where it is writeable it is reused as scratch (two fewer
    full-size temporaries)."""
    m = xp.max(scores, axis=-1, keepdims=True)
    m = xp.where(m == -math.inf, xp.zeros_like(m), m)
    if overwrite and is_writeable(scores):
        scores -= m
        e = xp.exp(scores)
    else:
        e = xp.exp(scores - m)
    total = xp.sum(e, axis=-1, keepdims=True)
    total = xp.where(total == 0, xp.ones_like(total), total)
    if is_writeable(e):  # e is our own temporary
        e /= total
        return e
    return e / total


class MultiheadAttention(Module):
    """Multi-head attention as in ``torch.nn.MultiheadAttention``, with four :class:`Linear`
    sub-modules ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` (weights ``(in, out)``).

    Forward, per head ``h`` (``d = embed_dim / num_heads``), with ``Q = q_proj(query)``,
    ``K = k_proj(key)``, ``V = v_proj(value)`` split into heads:

        S = Q_h K_h^T / sqrt(d) + M        (M: attn_mask, key_padding_mask, causal; -inf = masked)
        A = softmax(S)                     (rows that are fully masked give A = 0, not NaN)
        O_h = dropout(A) V_h,              out = out_proj(concat_h O_h)

    Backward, with ``dO_h`` from ``out_proj.backward`` and ``Ad = dropout(A)``:

        dV_h = Ad^T dO_h,   dAd = dO_h V_h^T,   dA = dropout.backward(dAd)
        dS = A * (dA - rowsum(dA * A)),   dQ_h = dS K_h / sqrt(d),   dK_h = dS^T Q_h / sqrt(d)

    (Q is scaled before the product, not the ``L x S`` scores; the per-head products run on
    one BLAS thread on NumPy, see :func:`nnx.backend.one_blas_thread`.)

    On PyTorch CPU tensors, where no mask but the causal one is given, dropout is off
    (``p = 0`` or eval mode) and ``need_weights`` is False, the heads run PyTorch's fused CPU
    attention kernel and its backward kernel instead (:func:`nnx._native.attention_forward`;
    the weights are never stored). On NumPy arrays without active dropout the projections of
    each distinct input run as one packed product and the core a few samples at a time in the
    CPU cache (:mod:`nnx._fastseq`, the same results). Everything else, and everything inside
    :func:`nnx._fastconv.portable_only`, runs the code above.

    The gradients then go back through ``q_proj``, ``k_proj``, ``v_proj``.
    ``backward(grad_out)`` returns the tuple
    ``(dquery, dkey, dvalue)``; for self-attention (the same array passed three times) the
    input gradient is their sum.

    Args:
        embed_dim, num_heads: ``embed_dim`` must be divisible by ``num_heads``.
        dropout: dropout probability on the attention weights (training mode only).
        bias: biases in the four projections.
        batch_first: inputs ``(L, N, E)`` (default, as PyTorch) or ``(N, L, E)`` (True).
        rng, dtype, device: initialization seed and parameter placement.

    Shapes: ``query (L, N, E)``, ``key``/``value`` ``(S, N, E)`` (``(N, L, E)``, ``(N, S, E)``
    with ``batch_first=True``); ``attn_mask`` ``(L, S)`` or
    ``(N * num_heads, L, S)``; ``key_padding_mask`` ``(N, S)``; both boolean (True = masked out)
    or floating (added to the scores). ``is_causal=True`` adds the causal mask (also without an
    ``attn_mask``, unlike PyTorch where it is only a hint about the given mask).
    ``forward(..., need_weights=True)`` returns ``(out, weights)`` with weights
    ``(N, L, S)`` averaged over heads (or ``(N, num_heads, L, S)`` with
    ``average_attn_weights=False``), as in PyTorch.
    """

    _cache = None
    _native_cache = None

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = False,
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        self.embed_dim = positive_int(embed_dim, "embed_dim", "MultiheadAttention")
        self.num_heads = positive_int(num_heads, "num_heads", "MultiheadAttention")
        if embed_dim % num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by num_heads "
                f"({num_heads})"
            )
        self.head_dim = embed_dim // num_heads
        self.batch_first = bool(batch_first)
        host = as_rng(rng)
        kw = {"bias": bias, "dtype": dtype, "device": device}
        self.q_proj = Linear(embed_dim, embed_dim, rng=host, **kw)
        self.k_proj = Linear(embed_dim, embed_dim, rng=host, **kw)
        self.v_proj = Linear(embed_dim, embed_dim, rng=host, **kw)
        self.out_proj = Linear(embed_dim, embed_dim, rng=host, **kw)
        self.dropout = Dropout(dropout, rng=host)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"

    def _heads(self, xp: Any, x: Any) -> Any:
        """``(N, L, E) -> (N, H, L, d)``."""
        n, length = x.shape[0], x.shape[1]
        return xp.permute_dims(
            xp.reshape(x, (n, length, self.num_heads, self.head_dim)), (0, 2, 1, 3)
        )

    def _merge(self, xp: Any, x: Any) -> Any:
        """``(N, H, L, d) -> (N, L, E)``."""
        n, length = x.shape[0], x.shape[2]
        return xp.reshape(xp.permute_dims(x, (0, 2, 1, 3)), (n, length, self.embed_dim))

    def _mask(self, xp, n, length, src, dtype, dev, attn_mask, key_padding_mask, is_causal):
        """The additive mask broadcastable to ``(N, H, L, S)``, or None."""
        total = None
        if attn_mask is not None:
            shape = tuple(attn_mask.shape)
            if shape == (length, src):
                m = _additive_mask(xp, attn_mask, dtype, "attn_mask")
            elif shape == (n * self.num_heads, length, src):
                m = xp.reshape(
                    _additive_mask(xp, attn_mask, dtype, "attn_mask"),
                    (n, self.num_heads, length, src),
                )
            else:
                raise ValueError(
                    f"MultiheadAttention: attn_mask must have shape ({length}, {src}) or "
                    f"({n * self.num_heads}, {length}, {src}), got {shape}"
                )
            total = m
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (n, src):
                raise ValueError(
                    f"MultiheadAttention: key_padding_mask must have shape ({n}, {src}), got "
                    f"{tuple(key_padding_mask.shape)}"
                )
            m = _additive_mask(xp, key_padding_mask, dtype, "key_padding_mask")
            m = xp.reshape(m, (n, 1, 1, src))
            total = m if total is None else total + m
        if is_causal:
            m = causal_mask(xp, length, src, dtype, dev)
            total = m if total is None else total + m
        return total

    def forward(
        self,
        query: Any,
        key: Any,
        value: Any,
        attn_mask: Any = None,
        key_padding_mask: Any = None,
        is_causal: bool = False,
        need_weights: bool = False,
        average_attn_weights: bool = True,
    ) -> Any:
        xp = namespace(query)
        for name, x in (("query", query), ("key", key), ("value", value)):
            if x.ndim != 3 or x.shape[-1] != self.embed_dim:
                layout = "(N, L, E)" if self.batch_first else "(L, N, E)"
                raise ValueError(
                    f"MultiheadAttention: {name} must have shape {layout} with E = "
                    f"{self.embed_dim}, got {tuple(x.shape)}"
                )
            check_floating(xp, x, "MultiheadAttention", name)
        # the projections reading the same array (self-attention: all three)
        if key is query:
            groups = [[0, 1, 2]] if value is query else [[0, 1], [2]]
        else:
            groups = [[0], [1, 2]] if value is key else [[0], [1], [2]]
        # a new forward: the previous one's caches go (a forward that fails below leaves none,
        # so a backward then asks for a forward instead of mixing two calls' state)
        self._cache = self._native_cache = None
        self._groups = groups
        if not self.batch_first:
            query, key, value = (xp.permute_dims(t, (1, 0, 2)) for t in (query, key, value))
        n, length, src = query.shape[0], query.shape[1], key.shape[1]
        if key.shape[0] != n or value.shape[0] != n or value.shape[1] != src:
            raise ValueError(
                f"MultiheadAttention: query, key and value disagree in batch or length: "
                f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
            )
        if length == 0 or src == 0:
            raise ValueError(
                f"MultiheadAttention: sequences need at least one position, got query length "
                f"{length} and key/value length {src}"
            )
        scale = 1.0 / math.sqrt(self.head_dim)
        projs = (self.q_proj, self.k_proj, self.v_proj)
        mask = None
        if _fastseq.core_applies(query, key, value):  # NumPy arrays: the mask is needed
            mask = self._mask(
                xp,
                n,
                length,
                src,
                query.dtype,
                device(query),
                attn_mask,
                key_padding_mask,
                is_causal,
            )
            if self._fast_applies(query, key, value, mask):
                # NumPy: one product per distinct input, the core a few samples at a time in
                # cache, heads merged in place (nnx/_fastseq.py)
                return self._fast_forward(
                    xp, (query, key, value), mask, scale, need_weights, average_attn_weights
                )
        q, k, v = (self._heads(xp, p(t)) for p, t in zip(projs, (query, key, value), strict=True))
        lib = _native.library(q, k, v)
        plain = attn_mask is None and key_padding_mask is None and not need_weights
        if (
            lib is not None
            and _native.attention_applies(lib, q)
            and plain
            and (not self.dropout.training or self.dropout.p == 0.0)
        ):
            # PyTorch's fused kernel: no mask but the causal one, no dropout, no weights returned
            heads_out, lse = _native.attention_forward(lib, q, k, v, is_causal, scale)
            self._native_cache = (lib, q, k, v, heads_out, lse, is_causal, scale)
            return self._finish(xp, heads_out)
        if mask is None:
            mask = self._mask(
                xp, n, length, src, q.dtype, device(query), attn_mask, key_padding_mask, is_causal
            )
        # the per-head products are many small matmuls: one BLAS thread (see one_blas_thread)
        with one_blas_thread(q):
            qs = q * scale  # scaling Q (L x d) is cheaper than scaling the scores (L x S)
            scores = qs @ xp.permute_dims(k, (0, 1, 3, 2))
            if mask is not None:
                if is_writeable(scores):
                    scores += mask
                else:
                    scores = scores + mask
            a = masked_softmax(xp, scores, overwrite=True)
            ad = self.dropout(a)
            heads_out = ad @ v
        self._cache = (qs, k, v, a, ad, scale)
        out = self._finish(xp, heads_out)
        if need_weights:
            weights = xp.mean(a, axis=1) if average_attn_weights else a
            return out, weights
        return out

    def _fast_forward(
        self, xp: Any, inputs: tuple, mask: Any, scale: float, need_weights: bool, average: bool
    ) -> Any:
        """nnx/_fastseq.py's forward: the projections of each distinct input as one product,
        then the attention core block by block into the merged ``(N, L, E)`` layout."""
        projs = (self.q_proj, self.k_proj, self.v_proj)
        xs = [inputs[grp[0]] for grp in self._groups]
        # a power-of-two scale (head_dim 4, 16, 64, 256, ...) goes into q_proj's weight and
        # bias instead of a pass over Q: x (W s) + b s = (x W + b) s exactly
        fold = math.frexp(scale)[0] == 0.5
        weights = [p.weight.value for p in projs]
        biases = None if projs[0].bias is None else [p.bias.value for p in projs]
        if fold:
            weights[0] = weights[0] * scale
            if biases is not None:
                biases[0] = biases[0] * scale
        views: list[Any] = [None, None, None]
        for grp, x in zip(self._groups, xs, strict=True):
            packed = _fastseq.packed_projection(
                x, [weights[j] for j in grp], None if biases is None else [biases[j] for j in grp]
            )
            for i, j in enumerate(grp):
                views[j] = packed[:, :, i]
        with one_blas_thread(inputs[0]):
            merged, a, qs = _fastseq.attention_forward(
                views[0], views[1], views[2], self.num_heads, scale, mask, q_scaled=fold
            )
        self._cache = ("fast", (qs, views[1], views[2], a, scale), xs, None, None, None)
        out = self._layout(xp, self.out_proj(merged))
        if need_weights:
            weights = xp.mean(a, axis=1) if average else a
            return out, weights
        return out

    def _finish(self, xp: Any, heads_out: Any) -> Any:
        """``out_proj`` of the merged heads, in the caller's layout."""
        return self._layout(xp, self.out_proj(self._merge(xp, heads_out)))

    def _layout(self, xp: Any, out: Any) -> Any:
        """The output ``(N, L, E)`` in the caller's layout (its shape kept for the backward)."""
        if not self.batch_first:
            out = xp.permute_dims(out, (1, 0, 2))
        self._out_shape = tuple(out.shape)
        return out

    def backward(self, grad_out: Any) -> tuple[Any, Any, Any]:
        """Parameter gradients into ``.grad``; returns ``(dquery, dkey, dvalue)``."""
        return self._backward(grad_out, True)

    def _backward(self, grad_out: Any, need_input_grad: bool) -> tuple[Any, Any, Any]:
        native = self._native_cache
        if native is None:
            qs, k, v, a, ad, scale = require_forward(self._cache, "MultiheadAttention")
        check_grad(grad_out, self._out_shape, "MultiheadAttention")
        xp = namespace(grad_out)
        if not self.batch_first:
            grad_out = xp.permute_dims(grad_out, (1, 0, 2))
        if native is None and isinstance(qs, str):  # "fast": the forward took _fastseq's path
            summed = False if need_input_grad else None
            per_group = self._fast_backward(grad_out, k, v, summed=summed)
            if not need_input_grad:
                return (None, None, None)
            grads: list[Any] = [None, None, None]
            for grp, dx in zip(self._groups, per_group, strict=True):
                for i, j in enumerate(grp):
                    grads[j] = dx[i]
            return self._caller_layout(xp, tuple(grads))
        d_o = self._heads(xp, self.out_proj.backward(grad_out))  # (N, H, L, d)
        if native is not None:
            d_q, d_k, d_v = _native.attention_backward(native[0], d_o, *native[1:])
            return self._input_grads(xp, d_q, d_k, d_v, need_input_grad)
        with one_blas_thread(d_o):
            d_v = xp.permute_dims(ad, (0, 1, 3, 2)) @ d_o
            d_a = self.dropout.backward(d_o @ xp.permute_dims(v, (0, 1, 3, 2)))
            # the scores were (Q scale) K^T: dS = A * (dA - rowsum(dA * A)), then
            # dQ = dS K scale and dK = dS^T (Q scale)
            row = xp.sum(d_a * a, axis=-1, keepdims=True)
            if is_writeable(d_a):  # a fresh product (or dropout's fresh product): reuse it
                d_a -= row
                d_a *= a
                d_s = d_a
            else:
                d_s = a * (d_a - row)
            d_q = d_s @ k
            if is_writeable(d_q):
                d_q *= scale
            else:
                d_q = d_q * scale
            d_k = xp.permute_dims(d_s, (0, 1, 3, 2)) @ qs
        return self._input_grads(xp, d_q, d_k, d_v, need_input_grad)

    def _input_grads(
        self, xp: Any, d_q: Any, d_k: Any, d_v: Any, need: bool = True
    ) -> tuple[Any, Any, Any]:
        """The heads' gradients through the three input projections, in the caller's layout
        (``need`` False: only the projections' parameter gradients; three Nones)."""
        grads = (
            self.q_proj.backward(self._merge(xp, d_q), need_input_grad=need),
            self.k_proj.backward(self._merge(xp, d_k), need_input_grad=need),
            self.v_proj.backward(self._merge(xp, d_v), need_input_grad=need),
        )
        return self._caller_layout(xp, grads) if need else grads

    def backward_distinct(self, grad_out: Any, need_input_grad: bool = True) -> Any:
        """As :meth:`backward`, but one gradient per distinct input array (in the order query,
        key, value): for self-attention (one array passed three times) the single gradient
        ``dquery + dkey + dvalue``, for ``key is value`` ``(dquery, dkey + dvalue)``. On NumPy
        the fast path computes each such sum as one product. ``need_input_grad=False``: only
        the parameter gradients, returns None."""
        cache = self._cache
        if self._native_cache is None:
            require_forward(cache, "MultiheadAttention")
        if cache is not None and isinstance(cache[0], str):
            check_grad(grad_out, self._out_shape, "MultiheadAttention")
            xp = namespace(grad_out)
            if not self.batch_first:
                grad_out = xp.permute_dims(grad_out, (1, 0, 2))
            summed = True if need_input_grad else None
            grads = self._fast_backward(grad_out, cache[1], cache[2], summed=summed)
            return self._caller_layout(xp, tuple(grads)) if need_input_grad else None
        grads = self._backward(grad_out, need_input_grad)
        if not need_input_grad:
            return None
        out = []
        for grp in self._groups:
            total = grads[grp[0]]
            for j in grp[1:]:
                total = total + grads[j]
            out.append(total)
        return tuple(out)

    def _fast_applies(self, query: Any, key: Any, value: Any, mask: Any) -> bool:
        """Whether the forward takes nnx/_fastseq.py's path: NumPy arrays of one dtype, no
        active attention dropout, plain :class:`Linear` projections without penalties."""
        drop = self.dropout
        if drop.training and drop.p != 0.0:
            return False
        projs = (self.q_proj, self.k_proj, self.v_proj)
        for p in projs:
            if type(p) is not Linear or p.weight_l1 or p.weight_l2 or p.bias_l1 or p.bias_l2:
                return False
        if len({p.bias is None for p in projs}) != 1:
            return False
        params = [p.weight.value for p in projs]
        params += [p.bias.value for p in projs if p.bias is not None]
        return _fastseq.core_applies(query, key, value, mask, *params)

    def _fast_backward(self, grad_out: Any, core: tuple, xs: list, summed: bool | None) -> list:
        """The fast path's backward (batch-major ``grad_out``): parameter gradients into
        ``.grad``; per distinct input its gradient (``summed``), the list of its projections'
        gradients (False) or None (None: no input gradient wanted)."""
        projs = (self.q_proj, self.k_proj, self.v_proj)
        d_merged = self.out_proj.backward(grad_out)
        # the core's small products on one BLAS thread there, the projections' on all
        per_group = _fastseq.attention_packed_backward(
            d_merged,
            core,
            self._groups,
            xs,
            [p.weight.value for p in projs],
            projs[0].bias is not None,
            summed,
        )
        out = []
        for grp, (dx, d_ws, d_bs) in zip(self._groups, per_group, strict=True):
            for i, j in enumerate(grp):
                projs[j].weight.accumulate(d_ws[i])
                if d_bs is not None:
                    projs[j].bias.accumulate(d_bs[i])
            out.append(dx)
        return out

    def _caller_layout(self, xp: Any, grads: tuple) -> tuple:
        if not self.batch_first:
            grads = tuple(xp.permute_dims(g, (1, 0, 2)) for g in grads)
        return grads
