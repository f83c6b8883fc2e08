"""NumPy fast path of the transformer layers' non-product work: LayerNorm's forward and backward
over the last axis, computed a block of rows at a time into arrays made once per call.

Why: at the benchmark size (a ``(32, 128, 256)`` float32 activation, 4 MB) the portable
LayerNorm makes about eight full-size temporaries per call (the centred input, its square, the
normalized input, the affine output; in the backward ``g * w``, ``g * xhat``, ``gh * xhat`` and
the three terms of ``dx``), each a fresh allocation (page faults) and a pass through main memory:
5-6 ms per call each way against torch's ~1 ms fused kernel. Here each block of
:data:`ROWS` rows (256 KB at ``E = 256``) is centred, reduced and scaled in a scratch buffer
that stays in the CPU cache; row sums and means are BLAS matrix-vector products and row dot
products ``einsum``, which write no temporaries. The forward keeps only the row means and
reciprocal standard deviations (``(rows,)``) and the normalized input ``xhat`` (written once,
block by block, as the portable path keeps it: a caller changing its input in place before the
backward changes nothing). Measured 1.7 ms forward and 2.8 ms backward instead of 5.3 and 5.9.

The module also holds the attention core (scores, softmax and ``V`` product a few samples at a
time, heads split and merged through views) and the packed ``q``/``k``/``v`` projections of
:class:`nnx.MultiheadAttention` on NumPy: see :func:`attention_forward`.

Only plain NumPy float32/float64 arrays normalized over their last axis take this path
(:func:`layer_norm_applies`), and not inside :func:`nnx._fastconv.portable_only`; tests check
both paths agree (``tests/layers/test_seq_fastpath.py``). It lives outside ``nnx/layers/``, whose
code imports no array library (``tests/test_portability.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._fastconv import applies
from .backend import one_blas_thread

#: rows per block: ``ROWS x E`` scratch arrays stay in a core's L2 cache at ``E`` up to ~1024
ROWS = 256

_FLOATS = (np.dtype("float32"), np.dtype("float64"))

runs = 0  # how many times the fast LayerNorm forward ran (tests check that it did)


@dataclass
class NormCache:
    """What the fast backward needs: the normalized input ``xhat`` as ``(rows, E)`` and the
    rows' reciprocal standard deviations ``r = 1 / sqrt(var + eps)``."""

    xhat: np.ndarray
    r: np.ndarray


def layer_norm_applies(x: Any, weight: Any, bias: Any, n_axes: int) -> bool:
    """Whether :func:`layer_norm_forward` runs: plain NumPy float arrays, one normalized axis,
    the parameters (if any) of the input's dtype, not switched off, at least one row."""
    if n_axes != 1 or not applies(x) or x.dtype not in _FLOATS or x.ndim < 1 or x.size == 0:
        return False
    return all(p is None or (applies(p) and p.dtype == x.dtype) for p in (weight, bias))


def layer_norm_forward(
    x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float
) -> tuple[np.ndarray, NormCache]:
    """``(x - mean) * r * weight + bias`` over the last axis; returns the output and the cache
    for :func:`layer_norm_backward`."""
    global runs
    runs += 1
    e = x.shape[-1]
    x2 = np.ascontiguousarray(x).reshape(-1, e)
    n, dt = x2.shape[0], x2.dtype
    y = np.empty_like(x2)
    xhat = np.empty_like(x2)
    mean = np.empty(min(ROWS, n), dt)
    r = np.empty(n, dt)
    inv = np.full(e, 1.0 / e, dt)
    for s in range(0, n, ROWS):
        stop = min(n, s + ROWS)
        xs, c, ys = x2[s:stop], xhat[s:stop], y[s:stop]
        m = np.matmul(xs, inv, out=mean[: stop - s])
        np.subtract(xs, m[:, None], out=c)
        rs = np.einsum("ij,ij->i", c, c, out=r[s:stop])  # sum of squares, then 1/sqrt(var+eps)
        rs *= 1.0 / e
        rs += eps
        np.sqrt(rs, out=rs)
        np.divide(1.0, rs, out=rs)
        c *= rs[:, None]  # xhat
        if weight is not None:
            np.multiply(c, weight, out=ys)
        else:
            ys[...] = c
        if bias is not None:
            ys += bias
    return y.reshape(x.shape), NormCache(xhat, r)


def layer_norm_backward(
    cache: NormCache, grad_out: np.ndarray, weight: np.ndarray | None, with_bias: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(dx, dweight, dbias)`` (the last two None without the parameter): with
    ``gh = g * weight``, ``dx = r (gh - mean(gh) - xhat mean(gh xhat))``, ``dweight =
    sum g xhat``, ``dbias = sum g``."""
    xhat, r = cache.xhat, cache.r
    n, e = xhat.shape
    dt = xhat.dtype
    g2 = np.ascontiguousarray(grad_out).reshape(n, e)
    dx = np.empty_like(g2)
    inv = np.full(e, 1.0 / e, dt)
    rows = min(ROWS, n)
    gh_buf = np.empty((rows, e), dt) if weight is not None else None
    dw = np.zeros(e, dt) if weight is not None else None
    db = np.zeros(e, dt) if with_bias else None
    ones = np.ones(rows, dt)
    for s in range(0, n, ROWS):
        stop = min(n, s + ROWS)
        k = stop - s
        gs, xh, out = g2[s:stop], xhat[s:stop], dx[s:stop]
        rs = r[s:stop, None]
        if db is not None:
            db += ones[:k] @ gs
        if dw is not None:
            dw += np.einsum("ij,ij->j", gs, xh)
            gh = np.multiply(gs, weight, out=gh_buf[:k])
        else:
            gh = gs
        m_gh = gh @ inv
        m_ghx = np.einsum("ij,ij->i", gh, xh)
        m_ghx *= 1.0 / e
        np.multiply(xh, m_ghx[:, None], out=out)
        out += m_gh[:, None]
        np.subtract(gh, out, out=out)
        out *= rs
    return dx.reshape(grad_out.shape), dw, db


def layer_norm_state(cache: NormCache, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(xhat, r)`` of the portable LayerNorm (``xhat`` in ``shape``, ``r`` with a trailing
    axis of 1) from a fast forward's cache, for a backward the fast path does not take."""
    return cache.xhat.reshape(shape), cache.r.reshape(*shape[:-1], 1)


# ---------------------------------------------------------------- attention core

#: bytes of one block's attention scores ``(samples, H, L, S)``: the scores are computed,
#: softmaxed and multiplied by ``V`` while in the CPU cache, a few samples at a time
SCORE_BYTES = 1 << 20

attention_runs = 0  # how many times the fast attention forward ran (tests check that it did)


def core_applies(*arrays: Any) -> bool:
    """Whether the fast attention core runs: plain NumPy float arrays of one dtype (the mask, if
    given, floating), not switched off."""
    live = [a for a in arrays if a is not None]
    if not applies(*live) or live[0].dtype not in _FLOATS:
        return False
    return all(a.dtype == live[0].dtype for a in live)


def _split(a: np.ndarray, heads: int) -> np.ndarray:
    """``(n, L, E)`` as a ``(n, H, L, d)`` view."""
    n, length, e = a.shape
    return a.reshape(n, length, heads, e // heads).transpose(0, 2, 1, 3)


def _blocks(n: int, heads: int, length: int, src: int, itemsize: int) -> tuple[range, int]:
    """Block starts over the batch and samples per block (:data:`SCORE_BYTES` of scores)."""
    per = max(1, SCORE_BYTES // max(1, heads * length * src * itemsize))
    return range(0, n, per), per


def attention_forward(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    heads: int,
    scale: float,
    mask: Any,
    q_scaled: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``softmax(Q K^T scale + mask) V`` per head, merged back to ``(N, L, E)``: ``q``, ``k``,
    ``v`` are the projections ``(N, L|S, E)``; ``q`` is scaled in place where writeable (the
    caller gives it up), or is ``Q scale`` already (``q_scaled``). ``mask``: additive,
    broadcastable to ``(N, H, L, S)``, or None.
    Returns ``(out (N, L, E), weights (N, H, L, S), Q scale)`` (the last for the backward);
    rows masked entirely get zero weights, as :func:`nnx.layers.attention.masked_softmax`.

    The scores are computed transposed, ``K Q^T`` ``(S, L)`` per head, and the weights kept
    so (``weights`` is a view of them): the softmax's max and sum over the keys then run down
    a column, element by element across the contiguous rows, which NumPy vectorizes; along
    the last axis (128 keys a row) its max reduction took ~3x as long. The max is exact; the
    sum adds the same terms in another order (results within rounding of the portable path).
    """
    global attention_runs
    attention_runs += 1
    n, length, e = q.shape
    src = k.shape[1]
    if not q_scaled:
        q = np.multiply(q, scale, out=q if q.flags.writeable else None)
    qh, kh, vh = _split(q, heads), _split(k, heads), _split(v, heads)
    at = np.empty((n, heads, src, length), q.dtype)  # the weights, keys on axis -2
    out = np.empty((n, length, e), q.dtype)
    oh = _split(out, heads)
    starts, per = _blocks(n, heads, length, src, q.dtype.itemsize)
    mt = None if mask is None else np.swapaxes(mask, -1, -2)
    per_sample = mask is not None and mask.ndim == 4 and mask.shape[0] != 1
    for s in starts:
        t = min(n, s + per)
        ab = at[s:t]
        np.matmul(kh[s:t], qh[s:t].transpose(0, 1, 3, 2), out=ab)
        if mt is not None:
            ab += mt[s:t] if per_sample else mt
        m = np.max(ab, axis=-2, keepdims=True)
        m[m == -np.inf] = 0.0
        ab -= m
        np.exp(ab, out=ab)
        total = np.sum(ab, axis=-2, keepdims=True)
        total[total == 0] = 1.0
        ab /= total
        np.matmul(ab.transpose(0, 1, 3, 2), vh[s:t], out=oh[s:t])
    return out, at.transpose(0, 1, 3, 2), q


def attention_backward(
    d_out: np.ndarray,
    qs: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    a: np.ndarray,
    scale: float,
    out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(dQ, dK, dV)`` ``(N, L|S, E)`` of the projections, from ``d_out`` ``(N, L,
    E)`` (the gradient of the merged heads), the scaled ``qs``, ``k``, ``v`` and the weights
    ``a`` of :func:`attention_forward`: ``dV = A^T dO``, ``dA = dO V^T``, ``dS = A (dA -
    rowsum(dA A))``, ``dQ = dS K scale``, ``dK = dS^T Qs``. ``out``: three ``(N, L|S, E)``
    arrays (views of a packed buffer, say) to write them into. Runs in the forward's
    transposed layout (``dA^T = V dO^T``, the row sums down its columns); ``a`` is best the
    forward's own (a view of its ``(N, H, S, L)`` array)."""
    at = np.swapaxes(a, -1, -2)  # (N, H, S, L): contiguous for the forward's weights
    n, heads, src, length = at.shape
    e = qs.shape[2]
    dt = qs.dtype
    doh = _split(np.ascontiguousarray(d_out, dtype=dt), heads)
    qh, kh, vh = _split(qs, heads), _split(k, heads), _split(v, heads)
    if out is None:
        out = (np.empty((n, length, e), dt), np.empty((n, src, e), dt), np.empty((n, src, e), dt))
    dq, dk, dv = out
    dqh, dkh, dvh = _split(dq, heads), _split(dk, heads), _split(dv, heads)
    starts, per = _blocks(n, heads, length, src, dt.itemsize)
    scratch = np.empty((min(per, n), heads, src, length), dt)
    for s in starts:
        t = min(n, s + per)
        ab, da = at[s:t], scratch[: t - s]  # A^T and dA^T
        np.matmul(ab, doh[s:t], out=dvh[s:t])
        np.matmul(vh[s:t], doh[s:t].transpose(0, 1, 3, 2), out=da)
        row = np.einsum("...ij,...ij->...j", da, ab)
        da -= row[..., None, :]
        da *= ab  # dS^T
        np.matmul(da.transpose(0, 1, 3, 2), kh[s:t], out=dqh[s:t])
        np.matmul(da, qh[s:t], out=dkh[s:t])
    dq *= scale
    return dq, dk, dv


# ---------------------------------------------------------------- packed projections


def packed_projection(
    x: np.ndarray, weights: list[np.ndarray], biases: list[np.ndarray] | None
) -> np.ndarray:
    """``x @ [W_1 ... W_G] + [b_1 ... b_G]`` as one product: ``(N, L, G, E)`` for ``x`` ``(N,
    L, E_in)`` and ``G`` weights ``(E_in, E)`` (the projections that read the same input, as
    PyTorch's packed ``in_proj_weight``)."""
    n, length, e_in = x.shape
    w = weights[0] if len(weights) == 1 else np.concatenate(weights, axis=1)
    y = np.ascontiguousarray(x).reshape(-1, e_in) @ w
    if biases is not None:
        y += biases[0] if len(biases) == 1 else np.concatenate(biases)
    return y.reshape(n, length, len(weights), weights[0].shape[1])


def packed_projection_backward(
    x: np.ndarray, weights: list[np.ndarray], d: np.ndarray, with_bias: bool, summed: bool | None
) -> tuple[Any, list[np.ndarray], list[np.ndarray] | None]:
    """Backward of :func:`packed_projection` for its gradient ``d`` ``(N, L, G, E)``: ``(dx,
    dWs, dbs)`` with ``dx`` the sum over the ``G`` projections (one product) when ``summed``,
    else a list of the ``G`` input gradients (``summed`` None: ``dx`` None, no product);
    ``dWs``/``dbs`` one contiguous array each."""
    n, length, g, e = d.shape
    e_in = x.shape[-1]
    d2 = d.reshape(-1, g * e)
    x2 = np.ascontiguousarray(x).reshape(-1, e_in)
    dw = x2.T @ d2
    d_ws = [np.ascontiguousarray(dw[:, j * e : (j + 1) * e]) for j in range(g)]
    d_bs = None
    if with_bias:
        db = np.ones(d2.shape[0], d2.dtype) @ d2
        d_bs = [db[j * e : (j + 1) * e].copy() for j in range(g)]
    if summed is None:  # no input gradient wanted
        dx = None
    elif summed:
        w = weights[0] if g == 1 else np.concatenate(weights, axis=1)
        dx = (d2 @ w.T).reshape(x.shape)
    else:
        dx = [(d[:, :, j].reshape(-1, e) @ weights[j].T).reshape(x.shape) for j in range(g)]
    return dx, d_ws, d_bs


def attention_packed_backward(
    d_merged: np.ndarray,
    cache: tuple,
    groups: list[list[int]],
    xs: list[np.ndarray],
    weights: list[np.ndarray],
    with_bias: bool,
    summed: bool | None,
) -> list[tuple[Any, list[np.ndarray], list[np.ndarray] | None]]:
    """The backward of :class:`nnx.MultiheadAttention`'s fast forward (projections packed by
    input, :func:`packed_projection`): the attention core's gradients are written straight
    into one ``(N, L, G, E)`` buffer per input, then each input's projections take one product
    for the weight gradients and one (``summed``) for the input gradient. ``cache``:
    ``(qs, k, v, a, scale)``; ``groups``: the projection indices (0 q, 1 k, 2 v) reading each
    input ``xs``; ``weights``: the three weights. Returns per group
    :func:`packed_projection_backward`'s ``(dx, dWs, dbs)``."""
    qs, k, v, a, scale = cache
    dt = qs.dtype
    bufs = [
        np.empty((*x.shape[:2], len(grp), qs.shape[2]), dt)
        for grp, x in zip(groups, xs, strict=True)
    ]
    out: list[Any] = [None, None, None]
    for grp, buf in zip(groups, bufs, strict=True):
        for i, j in enumerate(grp):
            out[j] = buf[:, :, i]
    # the core's many small products on one BLAS thread (nnx.backend.one_blas_thread), the
    # projections' large products below on all of BLAS's threads
    with one_blas_thread(d_merged):
        attention_backward(d_merged, qs, k, v, a, scale, out=(out[0], out[1], out[2]))
    return [
        packed_projection_backward(x, [weights[j] for j in grp], buf, with_bias, summed)
        for grp, x, buf in zip(groups, xs, bufs, strict=True)
    ]
