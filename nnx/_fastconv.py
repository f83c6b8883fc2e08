"""NumPy fast path of the convolutions: two of the three maps of :mod:`nnx.layers.conv` (the
forward product and the weight gradient), computed batch-chunk by batch-chunk so that the im2col
columns never exist whole (for stride-1 2-d layers whose padded rows are much wider than their
output, output-row chunk by output-row chunk with the batch innermost:
:func:`conv_forward_batch_inner`). (The input gradient is, for "same" stride-1 layers, a forward
product of its own; its col2im route runs whole-batch, with the batch as the innermost axis where
that measured faster: :func:`conv_input_grad_batch_inner`; for strided 2-d layers with kernels
wider than the stride, by residue classes in batch chunks: :func:`conv_input_grad_by_residues`.)

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
import itertools
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .backend import one_blas_thread

# Columns of one chunk: 512 KiB stay in a core's L2 cache with the chunk's product (1 MiB chunks
# ran the 16-channel 3x3 ResNet layer's forward 2x faster than whole-batch columns; 512 KiB took
# LeNet's 1->6 5x5 layer's forward 1.9 -> 1.2 ms and weight gradient 2.4 -> 1.4 ms against 1 MiB,
# the LeNet step 0.87x, the ResNet's 1.00x, the Conv3d net's 0.85-0.92x; see benchmarks.md).
CHUNK_BYTES = 1 << 19

_enabled = True


def applies(*arrays: Any) -> bool:
    """Whether the fast path runs for these arrays: all plain NumPy arrays, and not disabled."""
    return _enabled and all(type(a) is np.ndarray for a in arrays)


@contextlib.contextmanager
def portable_only() -> Iterator[None]:
    """Within the block NumPy arrays take the portable path (tests compare the two), and so do
    PyTorch tensors and JAX arrays, which otherwise take :mod:`nnx._native`'s kernels."""
    global _enabled
    saved, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = saved


def _per_chunk(win: np.ndarray, per: int, d: int) -> int:
    """Images per chunk: their columns (window view ``(C, *kernel, N, ...)`` with ``d`` kernel
    axes, ``per`` positions per image) fill about :data:`CHUNK_BYTES`."""
    k = math.prod(win.shape[: 1 + d])
    return max(1, CHUNK_BYTES // max(k * per * win.itemsize, 1))


def _column_chunks(win: np.ndarray, per: int, d: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(n0, n1, cols)``: the window view ``(C, *kernel, N, ...)`` copied for images
    ``[n0, n1)`` into ``cols``, about :data:`CHUNK_BYTES` at a time. One buffer serves every
    chunk: a fresh one each time would be page-faulted in anew (``per`` positions per image)."""
    lead = win.shape[: 1 + d]
    n = win.shape[1 + d]
    step = _per_chunk(win, per, d)
    buffer = np.empty((*lead, min(step, n) * per), dtype=win.dtype)
    for n0 in range(0, n, step):
        n1 = min(n, n0 + step)
        cols = buffer[..., : (n1 - n0) * per].reshape(*lead, n1 - n0, *win.shape[2 + d :])
        np.copyto(cols, win[(slice(None),) * (1 + d) + (slice(n0, n1),)])
        yield n0, n1, cols


def _windows(x_cn: np.ndarray, kernel, stride, dilation, out) -> np.ndarray:
    """Read-only view ``(C, *kernel, N, *out)`` of ``x_cn`` ``(C, N, *padded)``: the input under
    each kernel offset (the portable columns, not copied)."""
    c, n = x_cn.shape[:2]
    s0, s1, *sp = x_cn.strides
    return as_strided(
        x_cn,
        (c, *kernel, n, *out),
        (
            s0,
            *(dl * st for dl, st in zip(dilation, sp, strict=True)),
            s1,
            *(sd * st for sd, st in zip(stride, sp, strict=True)),
        ),
        writeable=False,
    )


def _flat_rows(x_cn, kernel, stride, dilation, out):
    """Stride 1 on a C-contiguous ``x_cn``: the kernel offsets as flat shifts of each image.

    Each image's padded ``(Hp, Wp)`` plane (``(Dp, Hp, Wp)`` volume) is read as one flat row,
    and the output is computed on the ``(Ho, Wp)`` grid (``(Do, Hp, Wp)``), whose position
    ``(i, j)`` sits at ``i*Wp + j``: the input under kernel offset ``(p, q)`` is then the
    contiguous run starting at ``p*dh*Wp + q*dw``, so the columns are copied in long runs
    (``Ho*Wp`` values) rather than ``Wo``-value pieces (the copy of the short pieces cost as
    much as the product). The ``Wp - Wo`` extra positions per row are wasted work (6% at 32x32,
    12% at 16x16) and are never read back. The run is ``(Ho-1)*Wp + Wo`` long, so it ends
    inside its image. (In the weight gradient the extra positions pair ``g = 0`` with real
    inputs, so an infinite input makes NaN entries of ``dW`` where the portable path has finite
    ones; the step's loss is not finite either way.)

    Returns ``(window, run)``: the view ``(C, *kernel, N, run)`` and its length; ``None`` where
    this does not apply."""
    if any(s != 1 for s in stride) or not x_cn.flags.c_contiguous:
        return None
    c, n, *padded = x_cn.shape
    s = x_cn.itemsize
    steps = [math.prod(padded[a + 1 :]) for a in range(len(padded))]  # flat step of each axis
    run = sum((o - 1) * st for o, st in zip(out, steps, strict=True)) + 1
    window = as_strided(
        x_cn,
        (c, *kernel, n, run),
        (
            x_cn.strides[0],
            *(dl * st * s for dl, st in zip(dilation, steps, strict=True)),
            math.prod(padded) * s,
            s,
        ),
        writeable=False,
    )
    return window, run


def _contiguous_at_stride_1(x_cn, stride):
    """``x_cn`` C-contiguous where the stride is 1, so that :func:`_flat_rows` applies: an
    unpadded input is the layer's input itself, a ``(C, N, ...)`` view of batch-major data or of
    a batch-innermost convolution's output. One copy costs far less than the strided columns
    (CPU ms, one thread, batch 128, float32, forward / weight gradient of 3x3 layers on a
    batch-innermost input, strided columns -> copy and flat grid: 16->16 at 20x20 11.0 -> 4.3 /
    10.5 -> 4.7; 6->16 at 28x28 8.0 -> 3.5 / 8.1 -> 4.2)."""
    if all(s == 1 for s in stride) and not x_cn.flags.c_contiguous:
        return np.ascontiguousarray(x_cn)
    return x_cn


def _from_flat_grid(rows, n, run, padded, out):
    """``(A, N*run)`` values on the flat grid of the ``padded`` spatial shape -> their
    ``(A, N, *out)`` view (a plain, non-overlapping view: writing through it is safe)."""
    s = rows.itemsize
    steps = [math.prod(padded[a + 1 :]) * s for a in range(len(padded))]
    return as_strided(rows, (rows.shape[0], n, *out), (rows.strides[0], run * s, *steps))


def conv_forward(x_cn, w, groups, stride, dilation, out) -> np.ndarray:
    """``y`` ``(O, N, *out)`` of the padded input ``x_cn`` ``(C, N, *padded)`` and the weight
    ``w`` ``(O, C/G, *kernel)``: ``y = W @ cols`` per group, chunk by chunk (stride 1: on the
    flat grid of :func:`_flat_rows`, or batch innermost where :func:`batch_inner_columns_pay`)."""
    if batch_inner_columns_pay(x_cn.shape, stride, out):
        return conv_forward_batch_inner(x_cn, w, groups, dilation, out)
    c, n = x_cn.shape[:2]
    o, cg, *kernel = w.shape
    d = len(kernel)
    k = cg * math.prod(kernel)
    wm = w.reshape(groups, o // groups, k)
    dtype = np.result_type(x_cn, w)
    y = np.empty((o, n, *out), dtype=dtype)
    x_cn = _contiguous_at_stride_1(x_cn, stride)
    flat = _flat_rows(x_cn, kernel, stride, dilation, out) if n else None
    win, per = flat or (_windows(x_cn, kernel, stride, dilation, out), math.prod(out))
    # the flat grid's products go to a chunk-sized buffer (still in cache when its valid
    # positions are copied out), so y is contiguous: later layers read it at full speed
    if flat:
        grid = np.empty((o, min(n, _per_chunk(win, per, d)) * per), dtype=dtype)
        valid = _from_flat_grid(grid, grid.shape[1] // per, per, x_cn.shape[2:], out)
    # many small products: a multi-threaded BLAS would wake and wait for its threads at each
    # (a ResNet step took 18.8 s instead of 0.9 s with two threads on a busy machine)
    with one_blas_thread(x_cn):
        for n0, n1, cols in _column_chunks(win, per, d):
            m = (n1 - n0) * per
            target = grid[:, :m] if flat else y.reshape(o, n * per)[:, n0 * per : n0 * per + m]
            np.matmul(
                wm,
                cols.reshape(groups, k, m),
                out=target.reshape(groups, o // groups, m),
            )
            if flat:
                np.copyto(y[:, n0:n1], valid[:, : n1 - n0])
    return y


def conv_weight_grad(x_cn, g_cn, groups, kernel, stride, dilation) -> np.ndarray:
    """``dW`` ``(O, C/G, *kernel)`` from the padded input ``x_cn`` ``(C, N, *padded)`` and the
    output gradient ``g_cn`` ``(O, N, *out)``: ``sum over chunks g @ cols^T`` per group
    (stride 1: on the flat grid of :func:`_flat_rows`, ``g`` zero at the extra positions; or
    batch innermost where :func:`batch_inner_columns_pay`)."""
    if batch_inner_columns_pay(x_cn.shape, stride, g_cn.shape[2:]):
        return conv_weight_grad_batch_inner(x_cn, g_cn, groups, tuple(kernel), dilation)
    c, n = x_cn.shape[:2]
    o, _, *out = g_cn.shape
    kernel = tuple(kernel)
    d = len(kernel)
    cg = c // groups
    k = cg * math.prod(kernel)
    dtype = np.result_type(x_cn, g_cn)
    dwt = np.zeros((groups, k, o // groups), dtype=dtype)  # dW transposed: see _add_weight_grad
    x_cn = _contiguous_at_stride_1(x_cn, stride)
    flat = _flat_rows(x_cn, kernel, stride, dilation, out) if n else None
    win, per = flat or (_windows(x_cn, kernel, stride, dilation, out), math.prod(out))
    if flat:  # g on the flat grid, chunk by chunk: zero at the extra positions, never written
        grid = np.zeros((o, min(n, _per_chunk(win, per, d)) * per), dtype=g_cn.dtype)
        valid = _from_flat_grid(grid, grid.shape[1] // per, per, x_cn.shape[2:], out)
    else:
        g_rows = np.ascontiguousarray(g_cn).reshape(o, n * per)
    with one_blas_thread(x_cn):
        for n0, n1, cols in _column_chunks(win, per, d):
            m = (n1 - n0) * per
            if flat:
                g_chunk = grid[:, :m]
                np.copyto(valid[:, : n1 - n0], g_cn[:, n0:n1])
            else:
                g_chunk = g_rows[:, n0 * per : n0 * per + m]
            _add_weight_grad(
                dwt, g_chunk.reshape(groups, o // groups, m), cols.reshape(groups, k, m)
            )
    return dwt.transpose(0, 2, 1).reshape(o, cg, *kernel)


def _add_weight_grad(dwt, g_chunk, cols) -> None:
    """``dwt += cols @ g_chunk^T``: the weight gradient ``g @ cols^T`` of one chunk, transposed
    (``dwt`` ``(G, K, O/G)``, ``g_chunk`` ``(G, O/G, m)``, ``cols`` ``(G, K, m)``, both rows of
    ``m`` contiguous values). OpenBLAS computes this orientation of the same product faster
    (measured, CPU ms, one thread, float32, batch 128, a layer's whole weight gradient,
    ``g @ cols^T`` -> ``cols @ g^T``: LeNet's 1->6 5x5 layer 3.31 -> 2.47, its 6->16 layer
    2.34 -> 1.61, the ResNet's 16-channel 3x3 layer at 32x32 22.1 -> 14.2, 32-channel at
    16x16 13.5 -> 10.5, its 3->16 stem 5.8 -> 4.8), and gave the same numbers bit for bit."""
    dwt += cols @ g_chunk.transpose(0, 2, 1)


def batch_inner_pays(size, kernel, stride, out) -> bool:
    """Whether :func:`conv_input_grad_batch_inner` is the faster col2im for this geometry.

    Measured (CPU time, one thread, float32, batch 128; portable col2im / batch innermost, ms):
    every 3-d case (see benchmarks.md's Conv3d section); 2-d stride 1, 5x5 kernels: 6->16
    channels at 14x14 3.98 / 2.53 (LeNet's second layer), at 28x28 25.8 / 19.0; 2-d stride 1,
    3x3: 16->64 at 32x32 42.3 / 43.7, 3->32 at 32x32 6.5 / 7.9; 2-d stride 2, 3x3: 32->16 at
    34x34 10.3 / 18.9. So: 3-d, or stride 1 with many kernel offsets (each a strided add of the
    portable route) or short output rows."""
    if len(size) == 3:
        return True
    return all(s == 1 for s in stride) and (math.prod(kernel) >= 16 or out[-1] <= 12)


def conv_input_grad_batch_inner(g_cn, w, groups, size, stride, dilation) -> np.ndarray:
    """The padded input's gradient ``(C, N, *size)`` from ``g_cn`` ``(O, N, *out)`` (col2im of
    ``W^T @ g``) with the batch as the innermost axis (where :func:`batch_inner_pays`).

    The portable col2im adds each kernel offset's piece at a strided position of a
    ``(C, N, D, H, W)`` array, whose innermost run is only ``Wo`` long (8 at 16x16 with stride
    2: the per-run overhead of 27 strided adds cost more than the product). Here ``g`` is laid
    out ``(O, Do, Ho, Wo, N)``, the product gives every offset's columns as ``(C, Do*Ho*Wo, N)``
    and they are added into a ``(C, Dp, Hp, Wp, N)`` array in runs of ``N`` contiguous values;
    one transposing copy gives the result its ``(C, N, ...)`` layout. (Any number of spatial
    axes.)"""
    o, n, *out = g_cn.shape
    _, cg, *kernel = w.shape
    taps = math.prod(kernel)
    positions = math.prod(out)
    c = cg * groups
    dtype = np.result_type(g_cn, w)
    g_rows = np.ascontiguousarray(np.moveaxis(g_cn, 1, -1)).reshape(
        groups, o // groups, positions * n
    )
    wt = w.reshape(groups, o // groups, cg * taps).transpose(0, 2, 1)
    total = np.zeros((c, *size, n), dtype=dtype)
    with one_blas_thread(g_cn):
        dcols = np.matmul(wt, g_rows).reshape(c, taps, *out, n)
    offsets = itertools.product(*(range(k) for k in kernel))
    for t, offset in enumerate(offsets):
        key = tuple(
            slice(p * dl, p * dl + s * (m - 1) + 1, s)
            for p, dl, s, m in zip(offset, dilation, stride, out, strict=True)
        )
        total[(slice(None), *key)] += dcols[:, t]
    return np.ascontiguousarray(np.moveaxis(total, -1, 1))


# --------------------------------------------------------------------------- batch-innermost columns
# The flat grid of _flat_rows computes Wp - Wo wasted positions per output row; for small images
# with wide kernels that is 40% of the work (LeNet's 6->16 5x5 layer: rows of 14 for 10 outputs).
# With the batch as the innermost axis, (C, Hp, Wp, N), the input under kernel offset (p, q) for
# output row i is the contiguous run x[c, i + p, q : q + Wo, :] of Wo*N values: long runs and no
# wasted positions, for two transposing copies (the input's, and the output's or g's).

# The flat grid's row length over the output's from which the batch-innermost columns pay:
# measured (CPU ms, one thread, float32, batch 128, Conv2d forward / forward + backward, flat
# grid -> batch innermost, interleaved): Wp/Wo 1.4 (LeNet's 5x5 6->16 at 14x14) 1.74 -> 1.31 /
# 6.56 -> 5.59; 1.33 (3x3 16->32 at 8x8 valid) 1.06 -> 0.81 / 3.44 -> 2.92; 1.2 (3x3 16->16 at
# 12x12 valid) 2.46 -> 1.94 / 8.46 -> 7.56; but 1.14 (5x5 1->6 at 28x28, pad 2) 1.91 -> 2.59 /
# 4.99 -> 5.56 and 1.125 (3x3 32->32 at 16x16, pad 1) 10.3 -> 14.3 / 32.4 -> 43.8.
BATCH_INNER_WASTE = 1.2


def batch_inner_columns_pay(x_shape, stride, out) -> bool:
    """Whether :func:`conv_forward_batch_inner` and :func:`conv_weight_grad_batch_inner` are the
    faster route: 2-d, stride 1 (where the flat grid would run), a batch, and the padded rows
    at least :data:`BATCH_INNER_WASTE` times as long as the output's."""
    if len(out) != 2 or x_shape[1] == 0 or any(s != 1 for s in stride):
        return False
    return x_shape[-1] >= BATCH_INNER_WASTE * out[-1]


def _batch_inner_windows(xb: np.ndarray, kernel, dilation, out) -> np.ndarray:
    """Read-only view ``(C, *kernel, *out[:-1], out[-1]*N)`` of ``xb`` ``(C, *padded, N)``
    (C-contiguous): the input under each kernel offset at stride 1, each output row's
    positions and the batch forming one contiguous run."""
    c, *padded, n = xb.shape
    sc, *sp, _ = xb.strides  # (with N = 1 the last stride need not be the item size)
    return as_strided(
        xb,
        (c, *kernel, *out[:-1], out[-1] * n),
        (sc, *(dl * st for dl, st in zip(dilation, sp, strict=True)), *sp[:-1], xb.itemsize),
        writeable=False,
    )


def _row_chunks(win: np.ndarray, d: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(i0, i1, cols)``: the window view ``(C, *kernel, rows, ...)`` copied for output rows
    ``[i0, i1)`` (the first output axis) into one reused buffer of about :data:`CHUNK_BYTES`."""
    lead = win.shape[: 1 + d]
    rows, rest = win.shape[1 + d], win.shape[2 + d :]
    per = math.prod(lead) * math.prod(rest) * win.itemsize
    step = max(1, CHUNK_BYTES // max(per, 1))
    buffer = np.empty((*lead, min(step, rows), *rest), dtype=win.dtype)
    for i0 in range(0, rows, step):
        i1 = min(rows, i0 + step)
        cols = buffer[(slice(None),) * (1 + d) + (slice(0, i1 - i0),)]
        np.copyto(cols, win[(slice(None),) * (1 + d) + (slice(i0, i1),)])
        yield i0, i1, cols


def conv_forward_batch_inner(x_cn, w, groups, dilation, out) -> np.ndarray:
    """:func:`conv_forward` at stride 1 with the batch innermost: the columns of a few output
    rows at a time (``(C*prod(kernel), rows*Wo*N)``) copied from :func:`_batch_inner_windows`,
    the product written into an ``(O, *out, N)`` array, returned as its ``(O, N, *out)`` view.
    No transposing copy: the layers that usually follow keep that layout (ReLU, the max pool's
    fast path, whose 2x2 windows are faster on it), and the backward's ``g`` then arrives in it,
    so the weight gradient and the col2im need not transpose ``g`` either."""
    n = x_cn.shape[1]
    o, cg, *kernel = w.shape
    d = len(kernel)
    k = cg * math.prod(kernel)
    wm = w.reshape(groups, o // groups, k)
    xb = np.ascontiguousarray(np.moveaxis(x_cn, 1, -1))
    win = _batch_inner_windows(xb, kernel, dilation, out)
    per_row = math.prod(out[1:]) * n
    yb = np.empty((o, out[0], per_row), dtype=np.result_type(x_cn, w))
    with one_blas_thread(x_cn):
        for i0, i1, cols in _row_chunks(win, d):
            m = (i1 - i0) * per_row
            np.matmul(
                wm, cols.reshape(groups, k, m), out=yb[:, i0:i1].reshape(groups, o // groups, m)
            )
    return np.moveaxis(yb.reshape(o, *out, n), -1, 1)


def conv_weight_grad_batch_inner(x_cn, g_cn, groups, kernel, dilation) -> np.ndarray:
    """:func:`conv_weight_grad` at stride 1 with the batch innermost: ``g`` laid out
    ``(O, *out, N)`` once, then ``dW += g_rows @ cols^T`` over chunks of output rows."""
    c, n = x_cn.shape[:2]
    o, _, *out = g_cn.shape
    d = len(kernel)
    cg = c // groups
    k = cg * math.prod(kernel)
    xb = np.ascontiguousarray(np.moveaxis(x_cn, 1, -1))
    per_row = math.prod(out[1:]) * n
    g_rows = np.ascontiguousarray(np.moveaxis(g_cn, 1, -1)).reshape(o, out[0], per_row)
    win = _batch_inner_windows(xb, kernel, dilation, out)
    dwt = np.zeros((groups, k, o // groups), dtype=np.result_type(x_cn, g_cn))
    with one_blas_thread(x_cn):
        for i0, i1, cols in _row_chunks(win, d):
            m = (i1 - i0) * per_row
            g_chunk = g_rows[:, i0:i1].reshape(groups, o // groups, m)
            _add_weight_grad(dwt, g_chunk, cols.reshape(groups, k, m))
    return dwt.transpose(0, 2, 1).reshape(o, cg, *kernel)


# --------------------------------------------------------------------------- col2im by residue classes
# A strided layer's col2im adds each kernel offset's piece at a strided position of the input's
# gradient (the ResNet's 16->32 3x3 stride-2 layer: nine adds that each write every other value
# of rows of 34). Grouped by the residue of the padded position modulo the stride, the pieces of
# one class land on one dense sub-grid: they are summed there in unit-stride adds (in the same
# order as the portable col2im, so the same numbers) and the sub-grid is written once, strided,
# straight into the cropped gradient. Batch chunk by batch chunk, so that the product's columns
# and the sub-grids stay in the CPU cache.


def residues_pay(size, kernel, stride, dilation) -> bool:
    """Whether :func:`conv_input_grad_by_residues` is the faster col2im: 2-d, no dilation, a
    stride above 1 and a kernel wider than the stride on every axis (several pieces per class).

    Measured (CPU ms, one thread, float32, batch 128, portable col2im / by residues): the
    ResNet's 16->32 3x3 stride-2 layer 11.4 / 9.5; where a class has one piece at most there is
    nothing to sum and the classes cost more (the 1x1 stride-2 shortcut 1.7 / 2.7; 3x3 stride 3
    4->6 channels 0.25 / 0.41)."""
    return (
        len(size) == 2
        and all(d == 1 for d in dilation)
        and any(s > 1 for s in stride)
        and all(k > s for k, s in zip(kernel, stride, strict=True))
    )


def _residue_axis(r, s, k, lo, hi, size, out):
    """One axis of residue class ``r`` (padded positions ``m = s*u + r``): the class's kept
    positions (``lo <= m < size - hi``) as ``u0 <= u < u0 + count``; returns ``(count, first
    kept position, pieces)``, a piece ``(tap, sub-grid slice, output slice)`` for each tap
    ``p = r + s*j`` (it adds ``g[u - j]`` at ``u``) that reaches a kept position."""
    u0 = -((r - lo) // s)  # ceil((lo - r) / s)
    u1 = -((r - (size - hi)) // s)
    pieces = []
    for j, p in enumerate(range(r, k, s)):
        a, b = max(u0, j), min(u1, j + out)
        if b > a:
            pieces.append((p, slice(a - u0, b - u0), slice(a - j, b - j)))
    return max(0, u1 - u0), s * u0 + r - lo, pieces


def conv_input_grad_by_residues(g_cn, w, groups, size, stride, crop) -> np.ndarray:
    """The padded input's gradient (spatial ``size``) with ``crop = ((lo, hi), ...)`` cut off,
    ``(C, N, *(size - crop))``, from ``g_cn`` ``(O, N, *out)``: col2im of ``W^T @ g`` by
    residue classes (where :func:`residues_pay`; no dilation)."""
    o, n, *out = g_cn.shape
    _, cg, *kernel = w.shape
    c, taps, per = cg * groups, math.prod(kernel), math.prod(out)
    dtype = np.result_type(g_cn, w)
    keep = tuple(sz - lo - hi for sz, (lo, hi) in zip(size, crop, strict=True))
    dx = np.empty((c, n, *keep), dtype=dtype)
    g_rows = np.ascontiguousarray(g_cn).reshape(groups, o // groups, n * per)
    wt = w.reshape(groups, o // groups, cg * taps).transpose(0, 2, 1)
    classes = []  # (sub-grid shape, destination in dx, [(tap index, sub-grid key, g key)])
    for residue in itertools.product(*(range(s) for s in stride)):
        axes = [
            _residue_axis(r, s, k, lo, hi, sz, m)
            for r, s, k, (lo, hi), sz, m in zip(
                residue, stride, kernel, crop, size, out, strict=True
            )
        ]
        shape = tuple(a[0] for a in axes)
        if 0 in shape:
            continue
        dest = tuple(slice(a[1], None, s) for a, s in zip(axes, stride, strict=True))
        pieces = [
            (
                int(np.ravel_multi_index(tuple(p[0] for p in combo), kernel)),
                tuple(p[1] for p in combo),
                tuple(p[2] for p in combo),
            )
            for combo in itertools.product(*(a[2] for a in axes))
        ]
        classes.append((shape, dest, pieces))
    step = max(1, CHUNK_BYTES // max(c * taps * per * dtype.itemsize, 1))
    grids = [np.empty((c, min(step, n), *shape), dtype=dtype) for shape, _, _ in classes]
    everything = (slice(None), slice(None))
    with one_blas_thread(g_cn):
        for n0 in range(0, n, step):
            n1 = min(n, n0 + step)
            chunk = np.matmul(wt, g_rows[:, :, n0 * per : n1 * per])
            dcols = chunk.reshape(c, taps, n1 - n0, *out)
            for (shape, dest, pieces), grid in zip(classes, grids, strict=True):
                sub = grid[:, : n1 - n0]
                # a first piece covering the whole sub-grid is copied in (0 + a == a), else zeros
                whole = pieces and all(
                    sl.start == 0 and sl.stop == m
                    for sl, m in zip(pieces[0][1], shape, strict=True)
                )
                if not whole:
                    sub[...] = 0
                for i, (t, key, gkey) in enumerate(pieces):
                    src = dcols[(slice(None), t, slice(None), *gkey)]
                    if i == 0 and whole:
                        np.copyto(sub, src)
                    else:
                        sub[(*everything, *key)] += src
                dx[(slice(None), slice(n0, n1), *dest)] = sub
    return dx
