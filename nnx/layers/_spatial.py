"""Shared machinery of the convolution, pooling and padding layers: argument parsing, padding,
im2col and its adjoint col2im, written against the Array API standard only, for any number ``d``
of spatial axes (the trailing ``d`` axes of the array).

The layers work on ``(N, C, *spatial)`` arrays (``d = 1, 2, 3``); the 1-d convolutions and
pools insert an ``H`` axis of size 1 and run the 2-d code.

- :func:`pad` pads the trailing ``len(pads)`` axes with zeros (or any constant), or by
  ``reflect``, ``replicate`` or ``circular`` indexing (``take`` along each axis with
  host-computed indices); a negative padding crops. :func:`pad_backward` is its adjoint (a slice
  and a zero padding for constant padding, a one-hot matrix product for the indexing modes,
  which adds each copied border value back to its source).
- :func:`im2col` gathers, for each kernel offset ``(i, j, ...)``, the strided slice
  ``x[:, :, i*d0 : ... : s0, j*d1 : ... : s1, ...]``, and stacks them:
  ``(N, C, prod(kernel), *out)``.
- :func:`col2im` is its adjoint: each kernel offset's slice is added back at its strided
  position. On writeable arrays that is an in-place ``+=`` into one zero array; on immutable
  arrays (JAX) it is a sum of zero-interleaved, zero-padded copies, with no scatter at all.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Sequence
from typing import Any

from ..backend import device, is_writeable

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

Pads = Sequence[tuple[int, int]]


# --------------------------------------------------------------------------- arguments


def int_tuple(value: Any, n: int, name: str, who: str, minimum: int = 1) -> tuple[int, ...]:
    """``value`` (an int or a sequence of ``n`` ints, each ``>= minimum``) as an ``n``-tuple."""
    items = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
    if items is None:
        items = (value,) * n
    ok = len(items) == n and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum for v in items
    )
    if not ok:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{who}: {name} must be {kind} or a tuple of {n} of them, got {value!r}")
    return tuple(int(v) for v in items)


def conv_out_size(size: int, kernel: int, stride: int, pad_total: int, dilation: int) -> int:
    """Output length of a convolution (floor mode): ``(L + pads - d*(k-1) - 1) // s + 1``."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def pool_out_size(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil: bool) -> int:
    """Output length of a pooling layer, PyTorch's rule (with ``ceil_mode`` the last window may
    run past the end, but must start inside the input or its left padding)."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    if not ceil:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


# --------------------------------------------------------------------------- padding


def pad_indices(size: int, left: int, right: int, mode: str) -> list[int]:
    """Source index of each position of an axis of length ``size`` padded by ``left``/``right``
    in ``mode`` (``reflect``: mirror without repeating the edge, ``replicate``: repeat the edge,
    ``circular``: wrap around). A negative ``left``/``right`` drops that many entries."""
    out = []
    for i in range(-left, size + right):
        if mode == "reflect":
            period = 2 * (size - 1)
            j = i % period if period else 0
            out.append(period - j if j >= size else j)
        elif mode == "replicate":
            out.append(min(max(i, 0), size - 1))
        else:  # circular
            out.append(i % size)
    return out


def _index(ndim: int, axis: int, sl: slice) -> tuple[slice, ...]:
    """An index tuple of ``ndim`` entries: ``sl`` at ``axis``, full slices elsewhere."""
    key = [slice(None)] * ndim
    key[axis] = sl
    return tuple(key)


def _crop(x: Any, pads: Pads) -> Any:
    """``x`` with the negative entries of ``pads`` (trailing axes) cut off."""
    d = len(pads)
    key = [slice(None)] * (x.ndim - d)
    for size, (lo, hi) in zip(x.shape[x.ndim - d :], pads, strict=True):
        key.append(slice(max(0, -lo), size - max(0, -hi)))
    return x[tuple(key)]


def pad(
    x: Any,
    xp: Any,
    pads: Pads,
    mode: str = "zeros",
    value: float = 0.0,
    functional: bool = False,
) -> Any:
    """Pad the trailing ``len(pads)`` axes of ``x`` by ``pads = ((lo, hi), ...)`` (first pair:
    axis ``-len(pads)``; for ``(N, C, H, W)`` and two pairs: ``((top, bottom), (left, right))``).

    ``mode`` is ``"zeros"`` (or ``"constant"`` with ``value``), ``"reflect"``, ``"replicate"``
    or ``"circular"``; a negative padding removes entries. ``functional=True`` forces the
    concatenation path of immutable arrays.
    """
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    if all(lo == hi == 0 for lo, hi in pads):
        return x
    d = len(pads)
    lead = x.ndim - d
    dev = device(x)
    if mode not in ("zeros", "constant"):
        for axis, (lo, hi) in enumerate(pads, start=lead):
            if lo or hi:
                index = pad_indices(x.shape[axis], lo, hi, mode)
                x = xp.take(x, xp.asarray(index, device=dev), axis=axis)
        return x
    if any(lo < 0 or hi < 0 for lo, hi in pads):
        x = _crop(x, pads)
        pads = tuple((max(0, lo), max(0, hi)) for lo, hi in pads)
        if all(lo == hi == 0 for lo, hi in pads):
            return x
    shape = tuple(x.shape)
    full_shape = shape[:lead] + tuple(
        s + lo + hi for s, (lo, hi) in zip(shape[lead:], pads, strict=True)
    )
    full = xp.full(full_shape, value, dtype=x.dtype, device=dev)
    if not functional and is_writeable(full):
        key = tuple(slice(lo, lo + s) for s, (lo, _) in zip(shape[lead:], pads, strict=True))
        full[(slice(None),) * lead + key] = x
        return full
    # immutable arrays: concatenate constant blocks around x, one axis at a time (each block a
    # slice of ``full``, whose shape covers every block's)
    for axis, (lo, hi) in enumerate(pads, start=lead):
        if not (lo or hi):
            continue
        key = [slice(0, n) for n in x.shape]
        parts = [x]
        if lo:
            key[axis] = slice(0, lo)
            parts.insert(0, full[tuple(key)])
        if hi:
            key[axis] = slice(0, hi)
            parts.append(full[tuple(key)])
        x = xp.concat(parts, axis=axis)
    return x


def _selection(xp: Any, index: list[int], size: int, dtype: Any, dev: Any) -> Any:
    """One-hot matrix ``S`` of shape ``(len(index), size)`` with ``S[i, index[i]] = 1``."""
    idx = xp.asarray(index, device=dev)
    return xp.astype(idx[:, None] == xp.arange(size, device=dev)[None, :], dtype)


def pad_backward(
    g: Any,
    xp: Any,
    shape: tuple[int, ...],
    pads: Pads,
    mode: str = "zeros",
) -> Any:
    """Adjoint of :func:`pad`: the gradient with respect to the unpadded input of ``shape``."""
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    if all(lo == hi == 0 for lo, hi in pads):
        return g
    d = len(pads)
    lead = g.ndim - d
    sizes = tuple(shape[len(shape) - d :])
    if mode in ("zeros", "constant"):
        key = tuple(
            slice(max(0, lo), max(0, lo) + s + min(0, lo) + min(0, hi))
            for s, (lo, hi) in zip(sizes, pads, strict=True)
        )
        g = g[(slice(None),) * lead + key]
        # a negative padding cropped the input: zeros flow back to the cropped entries
        back = tuple((max(0, -lo), max(0, -hi)) for lo, hi in pads)
        return pad(g, xp, back)
    dev = device(g)
    for axis, size, (lo, hi) in zip(range(lead, g.ndim), sizes, pads, strict=True):
        if not (lo or hi):
            continue
        sel = _selection(xp, pad_indices(size, lo, hi, mode), size, g.dtype, dev)
        if axis == g.ndim - 1:
            g = g @ sel
        elif axis == g.ndim - 2:  # dx[.., k, :] = sum of g[.., i, :] over the rows i from row k
            g = xp.matrix_transpose(sel) @ g
        else:  # move the axis last, multiply, move it back
            order = [a for a in range(g.ndim) if a != axis] + [axis]
            back_order = sorted(range(g.ndim), key=order.__getitem__)
            g = xp.permute_dims(xp.permute_dims(g, tuple(order)) @ sel, tuple(back_order))
    return g


# --------------------------------------------------------------------------- im2col / col2im


def window_slices(kernel, stride, dilation, out):
    """For each kernel offset ``(i, j, ...)`` (row-major), the tuple of slices of the ``d``
    spatial axes it reads (``d = len(kernel)``)."""
    per_axis = [
        [slice(i * dl, i * dl + s * (o - 1) + 1, s) for i in range(k)]
        for k, s, dl, o in zip(kernel, stride, dilation, out, strict=True)
    ]
    return list(itertools.product(*per_axis))


def im2col(x: Any, xp: Any, kernel, stride, dilation, out) -> Any:
    """``(N, C, *size)`` -> ``(N, C, prod(kernel), *out)``: the input under each kernel offset."""
    slices = window_slices(kernel, stride, dilation, out)
    return xp.stack([x[(slice(None), slice(None), *s)] for s in slices], axis=2)


def _interleave_zeros(a: Any, xp: Any, axis: int, stride: int) -> Any:
    """Insert ``stride - 1`` zeros between consecutive entries along ``axis`` (length n ->
    ``(n - 1) * stride + 1``)."""
    if stride == 1:
        return a
    a = xp.expand_dims(a, axis=axis + 1)
    zshape = list(a.shape)
    zshape[axis + 1] = stride - 1
    z = xp.zeros(tuple(zshape), dtype=a.dtype, device=device(a))
    a = xp.concat([a, z], axis=axis + 1)
    shape = list(a.shape)
    n = shape.pop(axis)
    shape[axis] = n * stride
    a = xp.reshape(a, tuple(shape))
    return a[_index(a.ndim, axis, slice(0, (n - 1) * stride + 1))]


def col2im(
    pieces: Sequence[Any], xp: Any, size, kernel, stride, dilation, functional: bool | None = None
) -> Any:
    """Adjoint of :func:`im2col`: ``pieces[k]`` (``(N, C, *out)``, one per kernel offset, in
    :func:`window_slices` order) added back into a zero array of spatial ``size``.

    ``functional=True`` forces the scatter-free sum of padded copies (what immutable arrays use);
    by default it is used only when the output array cannot be written in place.
    """
    first = pieces[0]
    n, c, *out = first.shape
    size = tuple(size)
    dev = device(first)
    slices = window_slices(kernel, stride, dilation, tuple(out))
    if not functional:
        total = xp.zeros((n, c, *size), dtype=first.dtype, device=dev)
        if is_writeable(total):
            for piece, sl in zip(pieces, slices, strict=True):
                total[(slice(None), slice(None), *sl)] += piece
            return total
    # scatter-free: interleave zeros for the stride, then pad each piece to its offset and sum
    total = None
    for piece, sl in zip(pieces, slices, strict=True):
        spread = piece
        for axis, s in enumerate(stride, start=2):
            spread = _interleave_zeros(spread, xp, axis, s)
        pads = tuple(
            (a.start, full - a.start - m)
            for a, full, m in zip(sl, size, spread.shape[2:], strict=True)
        )
        placed = pad(spread, xp, pads, functional=True)
        total = placed if total is None else total + placed
    return total
