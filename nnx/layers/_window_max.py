"""Shared machinery of the pooling layers with irregular windows (adaptive and fractional max
pooling) and of the ``return_indices`` / unpooling convention, for any number ``d`` of spatial
axes, written against the Array API standard only.

A window here is a box: along each spatial axis, output position ``o`` reads the input positions
``table[p][o]`` for the window offsets ``p < K`` (a shorter window repeats its last position;
the repeat never wins the maximum). The maximum over a box is taken one axis at a time, last
axis first (:func:`window_max`): along each axis a running maximum over the ``K`` gathered
slices keeps the first offset reaching it (or the last NaN), which is exactly PyTorch's rule of
scanning the box in row-major order and keeping the first strictly greater value (or a NaN).
Indices are PyTorch's: the position in the flattened spatial plane of each ``(n, c)``.

Backward (:func:`window_max_backward`) sends the gradient back one axis at a time, with no
scatter; overlapping windows add up. Per-plane tables use one-hot matrix products; shared tables
whose windows have distinct starts compare the winning positions with every position (few
windows) or gather each offset's winners back through a host-built inverse map (many windows).

A table is either shared by every ``(n, c)`` plane (shape ``(O,)``: adaptive pooling) or drawn
per plane (shape ``(N, C, O)``: fractional pooling); both are integer arrays on the device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ..backend import device


def _split(shape: tuple[int, ...], axis: int) -> tuple[int, int, int, int]:
    """``shape = (N, C, *spatial)`` viewed as ``(N, C, P, L, Q)`` around spatial ``axis``."""
    spatial = shape[2:]
    return (
        math.prod(spatial[:axis]),
        spatial[axis],
        math.prod(spatial[axis + 1 :]),
        len(spatial),
    )


def _gather(xp: Any, a: Any, idx: Any, axis: int) -> Any:
    """Entries ``idx`` (``(O,)`` shared or ``(N, C, O)`` per plane) along spatial ``axis`` of
    ``a`` (``(N, C, *spatial)``)."""
    if idx.ndim == 1:
        return xp.take(a, idx, axis=axis + 2)
    n, c = a.shape[0], a.shape[1]
    p, _, q, _ = _split(tuple(a.shape), axis)
    a5 = xp.reshape(a, (n, c, p, a.shape[axis + 2], q))
    i5 = xp.broadcast_to(xp.reshape(idx, (n, c, 1, idx.shape[-1], 1)), (n, c, p, idx.shape[-1], q))
    out = xp.take_along_axis(a5, i5, axis=3)
    shape = list(a.shape)
    shape[axis + 2] = idx.shape[-1]
    return xp.reshape(out, tuple(shape))


def _positions(idx: Any, axis: int, d: int, xp: Any) -> Any:
    """``idx`` reshaped to broadcast against ``(N, C, *spatial)`` arrays at spatial ``axis``."""
    trail = (1,) * (d - axis - 1)
    if idx.ndim == 1:
        return xp.reshape(idx, (idx.shape[0], *trail))
    return xp.reshape(idx, (idx.shape[0], idx.shape[1], *(1,) * axis, idx.shape[2], *trail))


def window_max(x: Any, xp: Any, tables: Sequence[Sequence[Any]]) -> tuple[Any, Any, list[Any]]:
    """Box maxima of ``x`` (``(N, C, *spatial)``): ``tables[a][p]`` are the input positions along
    spatial axis ``a`` at window offset ``p``. Returns ``(y, indices, offsets)``: the maxima,
    their flat per-plane input positions, and per axis the winning offsets (for backward)."""
    d = x.ndim - 2
    sizes = tuple(x.shape[2:])
    cur, flat = x, None
    offsets: list[Any] = [None] * d
    for axis in reversed(range(d)):
        step = math.prod(sizes[axis + 1 :])
        best = best_flat = off = None
        for p, idx in enumerate(tables[axis]):
            v = _gather(xp, cur, idx, axis)
            f = _positions(idx, axis, d, xp) * step
            if flat is not None:
                f = f + _gather(xp, flat, idx, axis)
            if best is None:
                best, off = v, xp.zeros(v.shape, dtype=xp.int32, device=device(x))
                best_flat = f if flat is not None else xp.broadcast_to(f, v.shape)
                continue
            # the first strictly greater value wins, a NaN always (PyTorch's scan)
            better = (v > best) | xp.isnan(v)
            best = xp.where(better, v, best)
            off = xp.where(better, p, off)
            best_flat = xp.where(better, f, best_flat)
        cur, flat, offsets[axis] = best, best_flat, off
    return cur, flat, offsets


def _scatter(xp: Any, g: Any, idx: Any, axis: int, size: int) -> Any:
    """Adjoint of :func:`_gather`: ``g`` (``(N, C, ..., O, ...)``) added back at positions
    ``idx`` into a zero axis of length ``size``, as a one-hot matrix product."""
    shape = tuple(g.shape)
    n, c = shape[0], shape[1]
    p, o, q, _ = _split(shape, axis)
    dev = device(g)
    onehot = xp.astype(idx[..., None] == xp.arange(size, device=dev), g.dtype)  # (.., O, L)
    if idx.ndim == 3:
        onehot = xp.reshape(onehot, (n, c, 1, o, size))
    out = xp.matrix_transpose(onehot) @ xp.reshape(g, (n, c, p, o, q))
    new = list(shape)
    new[axis + 2] = size
    return xp.reshape(out, tuple(new))


def _place_shared(xp: Any, g: Any, off: Any, rows: list[list[int]], axis: int, size: int) -> Any:
    """:func:`_scatter` summed over the offsets for windows shared by every plane (host
    ``rows``: per offset the positions, each window ``[rows[0][o], rows[-1][o]]``), without
    matrix products: few windows compare the winning position with every position at once;
    many windows gather each offset's winners back with a host-built inverse map."""
    shape = tuple(g.shape)
    n, c = shape[0], shape[1]
    p, o, q, _ = _split(shape, axis)
    dev = device(g)
    starts, lasts = rows[0], rows[-1]
    g5, off5 = xp.reshape(g, (n, c, p, o, q)), xp.reshape(off, (n, c, p, o, q))
    # a NaN may win at a repeated (clamped) offset: it stands for the window's last position
    span = xp.reshape(
        xp.asarray([b - a for a, b in zip(starts, lasts, strict=True)], device=dev), (o, 1)
    )
    off5 = xp.minimum(off5, xp.astype(span, off5.dtype))
    zero = xp.zeros((), dtype=g.dtype, device=dev)
    if o <= len(rows):
        pos = off5 + xp.astype(xp.reshape(xp.asarray(starts, device=dev), (o, 1)), off5.dtype)
        hit = pos[:, :, :, :, None, :] == xp.reshape(xp.arange(size, device=dev), (size, 1))
        out = xp.sum(xp.where(hit, g5[:, :, :, :, None, :], zero), axis=3)
    else:
        gz = xp.concat([g5, xp.zeros((n, c, p, 1, q), dtype=g.dtype, device=dev)], axis=3)
        offz = xp.concat([off5, xp.full((n, c, p, 1, q), -1, dtype=off5.dtype, device=dev)], axis=3)
        out = None
        for k in range(len(rows)):
            inverse = [o] * size  # position -> the window whose offset k lands there, or zero
            for i, (a, b) in enumerate(zip(starts, lasts, strict=True)):
                if a + k <= b:
                    inverse[a + k] = i
            part = xp.take(xp.where(offz == k, gz, zero), xp.asarray(inverse, device=dev), axis=3)
            out = part if out is None else out + part
    new = list(shape)
    new[axis + 2] = size
    return xp.reshape(out, tuple(new))


def window_max_backward(
    g: Any, xp: Any, tables: Sequence[Sequence[Any]], offsets: Sequence[Any], sizes, host=None
) -> Any:
    """The gradient of :func:`window_max` with respect to ``x`` (spatial ``sizes``). ``host``
    (optional) holds the host rows of shared tables (:func:`adaptive_table`), which allow a
    faster placement than one-hot products when windows never share a start."""
    d = len(sizes)
    zero = xp.zeros((), dtype=g.dtype, device=device(g))
    for axis in range(d):
        off = offsets[axis]
        rows = None if host is None else host[axis]
        if rows is not None and len(set(rows[0])) == len(rows[0]):
            g = _place_shared(xp, g, off, rows, axis, sizes[axis])
            continue
        total = None
        for p, idx in enumerate(tables[axis]):
            part = g if len(tables[axis]) == 1 else xp.where(off == p, g, zero)
            part = _scatter(xp, part, idx, axis, sizes[axis])
            total = part if total is None else total + part
        g = total
    return g


def adaptive_table(size: int, out: int) -> list[list[int]]:
    """Per window offset ``p``, the input position of each of ``out`` adaptive windows of an
    axis of length ``size`` (PyTorch's ``[floor(i*size/out), ceil((i+1)*size/out))``)."""
    starts = [(i * size) // out for i in range(out)]
    ends = [-(-((i + 1) * size) // out) for i in range(out)]
    k = max(e - s for s, e in zip(starts, ends, strict=True))
    return [[min(s + p, e - 1) for s, e in zip(starts, ends, strict=True)] for p in range(k)]


def check_batched(x: Any, nd: int, who: str) -> None:
    """One error naming the module unless ``x`` is ``(N, C, *spatial)`` with ``nd`` axes."""
    if x.ndim != nd + 2:
        raise ValueError(
            f"{who}: expected input of shape {spatial_layout(nd)}, got shape {tuple(x.shape)}"
        )


def spatial_layout(nd: int) -> str:
    """``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``."""
    return {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}[nd]
