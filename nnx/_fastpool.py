"""NumPy fast paths of max pooling for windows that tile the input (stride equal to the kernel,
no dilation: ``MaxPool2d(2)`` and the like): the forward (:func:`max_pool_forward`) and the
backward (:func:`max_pool_backward`).

Forward: the portable loop keeps a running maximum with ``where(window > best, window, best)``
and the winning offset with a second ``where``, over every offset of the whole kernel. Here the
maximum is taken one axis at a time, last axis first, with ``np.maximum`` (several times faster
than ``where`` in NumPy); ``>`` still picks the offsets, and the last-axis-first order keeps the
row-major first maximum, PyTorch's and the portable tie-break. ``np.maximum`` propagates NaN
where the portable rule lets a NaN win only at the window's first offset, so an output with any
NaN sends the call back to the portable path (one ``isnan`` over the output). Offsets are int8
(kernels of up to 127 entries), chosen by arithmetic rather than ``np.where`` (slow on int8).

Backward: the portable one (:meth:`nnx.layers.pool._MaxPool.backward`) builds one masked copy
of the output gradient per kernel offset and adds each into a zeroed input-sized array at a
strided position (col2im), so every input entry is zeroed, read and written once per offset
that covers it. When the windows tile the input, each input entry belongs to exactly one window
and one offset: here each offset's masked gradient is written once, straight into its strided
place of the result (no zeroing, no additions; only rows and columns beyond the last window,
and the padding, are zeroed), as a product with the mask where the gradient is finite.
Measured (CPU time, one thread, float32, batch 128, 2x2 windows; portable -> fast, ms): forward
6 channels at 28x28 5.2 -> 1.3, 16 channels at 10x10 2.0 -> 0.7; backward 3.6 -> 1.1 and
1.4 -> 0.5 (LeNet's two pools).

Only plain NumPy arrays take it, and not inside :func:`nnx._fastconv.portable_only` (tests
compare the two in ``tests/layers/test_pool_fastpath.py``); it lives outside ``nnx/layers/``,
whose code imports no array library.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ._fastconv import applies


def max_pool_backward(grad_out: Any, arg: Any, kernel, stride, dilation, padded) -> Any:
    """The padded input's gradient ``(N, C, *padded)`` from the output gradient and the winning
    row-major kernel offsets ``arg`` (both ``(N, C, *out)``), or ``None`` where this path does
    not apply (not NumPy, or overlapping / dilated / gapped windows): then the caller runs the
    portable col2im."""
    if not applies(grad_out, arg):
        return None
    if not _tiles(kernel, stride, dilation):
        return None
    n, c, *out = grad_out.shape
    covered = tuple(o * k for o, k in zip(out, kernel, strict=True))
    full = covered == tuple(padded)
    make = np.empty if full else np.zeros
    # dx, g and the offsets in one memory layout, that of the offsets (the input's): reading and
    # writing across layouts measured 1.7-2x slower in LeNet's step. After a convolution that is
    # channel-major, (C, N, ...), or with the batch innermost, (C, ..., N) (the batch-innermost
    # columns' output: there each offset's writes are runs of N values, not every k-th value)
    order = sorted(range(arg.ndim), key=lambda a: -arg.strides[a])  # outermost axis first
    if not np.transpose(arg, order).flags.c_contiguous:
        order = list(range(arg.ndim))
    back = np.argsort(order)
    grad_out = np.transpose(np.ascontiguousarray(np.transpose(grad_out, order)), back)
    full = (n, c, *padded)
    dx = np.transpose(make(tuple(full[a] for a in order), dtype=grad_out.dtype), back)
    # (N, C, o0, k0, o1, k1, ...) view of the covered part: window i, offset p at i*k + p
    s = dx.strides
    tiles = as_strided(
        dx,
        (n, c, *itertools.chain.from_iterable(zip(out, kernel, strict=True))),
        (
            s[0],
            s[1],
            *itertools.chain.from_iterable(
                (k * st, st) for k, st in zip(kernel, s[2:], strict=True)
            ),
        ),
    )
    zero = np.zeros((), dtype=grad_out.dtype)
    # g * (arg == k) is ~3x faster than where(arg == k, g, 0) but makes NaN of an infinite g
    # at the positions that lost (and -0.0 for a negative g there: equal to 0.0)
    finite = bool(np.isfinite(grad_out.sum()))
    for k, offset in enumerate(itertools.product(*(range(k) for k in kernel))):
        key = (
            slice(None),
            slice(None),
            *itertools.chain.from_iterable((slice(None), p) for p in offset),
        )
        if finite:
            np.multiply(grad_out, arg == k, out=tiles[key])
        else:
            tiles[key] = np.where(arg == k, grad_out, zero)
    return dx


def _tiles(kernel, stride, dilation) -> bool:
    return tuple(stride) == tuple(kernel) and all(d == 1 for d in dilation)


def max_pool_forward(xpad: Any, kernel, stride, dilation, out) -> tuple[Any, Any] | None:
    """``(y, arg)`` of the ``-inf``-padded input ``xpad`` ``(N, C, *padded)``: the window
    maxima and their row-major kernel offsets (the first reaching the maximum), both
    ``(N, C, *out)``; ``None`` where this path does not apply (not NumPy, windows that do not
    tile, more than 127 kernel entries, or a NaN in the output)."""
    if not applies(xpad) or not _tiles(kernel, stride, dilation) or math.prod(kernel) > 127:
        return None
    cur, flat, step = xpad, None, 1
    for axis in reversed(range(len(kernel))):
        k, o = kernel[axis], out[axis]

        def part(a, p, axis=axis, k=k, o=o):
            key = [slice(None)] * a.ndim
            key[axis + 2] = slice(p, p + k * (o - 1) + 1, k)
            return a[tuple(key)]

        best = part(cur, 0)
        off = part(flat, 0) if flat is not None else None
        for p in range(1, k):
            v = part(cur, p)
            better = v > best
            best = np.maximum(best, v)
            won = part(flat, p) + np.int8(p * step) if flat is not None else np.int8(p)
            # where(better, won, off) by arithmetic: np.where on int8 is ~10x slower
            off = better * won if off is None else off + (won - off) * better
        if off is None:  # a kernel of size 1 along this axis (and the axes after it)
            off = np.zeros(best.shape, dtype=np.int8)
        cur, flat, step = best, off, step * k
    if np.isnan(cur).any():
        return None
    return cur, flat
