"""NumPy fast path of the convolutions: two of the three maps of :mod:`nnx.layers.conv` (the
forward product and the weight gradient), computed batch-chunk by batch-chunk so that the im2col
columns never exist whole. (The input gradient needs none: for stride 1 it is a forward product
of its own, and the col2im route measured faster whole-batch.)

Why: the portable path stacks ``kh*kw`` strided slices into columns ``kh*kw`` times the size of
the input (75 MB for a 16-channel 3x3 layer on 128 32x32 images), writes them once and reads them
once in the product; at 16-32 channels the convolutions are bound by that memory traffic (and by
the page faults of allocating it afresh every call), not by the arithmetic. Here the columns of a
few images at a time (about :data:`CHUNK_BYTES`) are copied from one ``as_strided`` window view
into a buffer that stays in the CPU cache, and the product writes straight into its slice of the
output (or adds into ``dW``).

Only NumPy arrays take this path (:func:`applies`); everything else, and NumPy inside
:func:`portable_only`, runs the portable code. Tests check both give the same forward and
gradients (``tests/layers/test_conv_fastpath.py``). It lives outside ``nnx/layers/``, whose code
imports no array library (``tests/test_portability.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

# Columns of one chunk: ~1 MiB stays in a core's L2 cache (measured: 1 MiB chunks ran the
# 16-channel 3x3 ResNet layer's forward 2x faster than whole-batch columns; see benchmarks.md).
CHUNK_BYTES = 1 << 20

_enabled = True


def applies(*arrays: Any) -> bool:
    """Whether the fast path runs for these arrays: all plain NumPy arrays, and not disabled."""
    return _enabled and all(type(a) is np.ndarray for a in arrays)


@contextlib.contextmanager
def portable_only() -> Iterator[None]:
    """Within the block NumPy arrays take the portable path (tests compare the two)."""
    global _enabled
    saved, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = saved


def _chunks(n: int, per_image: int) -> Iterator[tuple[int, int]]:
    """Batch ranges ``[n0, n1)`` whose columns (``per_image`` bytes per image) fill a chunk."""
    step = max(1, CHUNK_BYTES // max(per_image, 1))
    for n0 in range(0, n, step):
        yield n0, min(n, n0 + step)


def _windows(x_cn: np.ndarray, kernel, stride, dilation, out) -> np.ndarray:
    """Read-only view ``(C, kh, kw, N, Ho, Wo)`` of ``x_cn`` ``(C, N, Hp, Wp)``: the input under
    each kernel offset (the portable columns, not copied)."""
    c, n = x_cn.shape[:2]
    s0, s1, s2, s3 = x_cn.strides
    return as_strided(
        x_cn,
        (c, kernel[0], kernel[1], n, out[0], out[1]),
        (s0, dilation[0] * s2, dilation[1] * s3, s1, stride[0] * s2, stride[1] * s3),
        writeable=False,
    )


def conv_forward(x_cn, w, groups, stride, dilation, out) -> np.ndarray:
    """``y`` ``(O, N, Ho, Wo)`` of the padded input ``x_cn`` ``(C, N, Hp, Wp)`` and the weight
    ``w`` ``(O, C/G, kh, kw)``: ``y = W @ cols`` per group, chunk by chunk."""
    c, n = x_cn.shape[:2]
    o, cg, kh, kw = w.shape
    ho, wo = out
    k = cg * kh * kw
    wm = w.reshape(groups, o // groups, k)
    y = np.empty((o, n, ho, wo), dtype=np.result_type(x_cn, w))
    y_rows = y.reshape(groups, o // groups, n * ho * wo)
    win = _windows(x_cn, (kh, kw), stride, dilation, out)
    for n0, n1 in _chunks(n, c * kh * kw * ho * wo * x_cn.itemsize):
        cols = np.empty((c, kh, kw, n1 - n0, ho, wo), dtype=x_cn.dtype)
        np.copyto(cols, win[:, :, :, n0:n1])
        np.matmul(
            wm,
            cols.reshape(groups, k, (n1 - n0) * ho * wo),
            out=y_rows[:, :, n0 * ho * wo : n1 * ho * wo],
        )
    return y


def conv_weight_grad(x_cn, g_cn, groups, kernel, stride, dilation) -> np.ndarray:
    """``dW`` ``(O, C/G, kh, kw)`` from the padded input ``x_cn`` ``(C, N, Hp, Wp)`` and the
    output gradient ``g_cn`` ``(O, N, Ho, Wo)``: ``sum over chunks g @ cols^T`` per group."""
    c, n = x_cn.shape[:2]
    o, _, ho, wo = g_cn.shape
    kh, kw = kernel
    cg = c // groups
    k = cg * kh * kw
    dtype = np.result_type(x_cn, g_cn)
    dw = np.zeros((groups, o // groups, k), dtype=dtype)
    g_rows = np.ascontiguousarray(g_cn).reshape(groups, o // groups, n * ho * wo)
    win = _windows(x_cn, kernel, stride, dilation, (ho, wo))
    for n0, n1 in _chunks(n, c * kh * kw * ho * wo * x_cn.itemsize):
        cols = np.empty((c, kh, kw, n1 - n0, ho, wo), dtype=x_cn.dtype)
        np.copyto(cols, win[:, :, :, n0:n1])
        cols = cols.reshape(groups, k, (n1 - n0) * ho * wo)
        dw += g_rows[:, :, n0 * ho * wo : n1 * ho * wo] @ cols.transpose(0, 2, 1)
    return dw.reshape(o, cg, kh, kw)
