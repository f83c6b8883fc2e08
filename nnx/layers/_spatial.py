"""Shared machinery of the convolution and pooling layers: argument parsing, padding, im2col and
its adjoint col2im, written against the Array API standard only.

Everything works on ``(N, C, H, W)`` arrays; the 1-d layers insert an ``H`` axis of size 1.

- :func:`pad` pads the two spatial axes with zeros (or any constant), or by ``reflect``,
  ``replicate`` or ``circular`` indexing (``take`` along each axis with host-computed indices);
  :func:`pad_backward` is its adjoint (a slice for constant padding, a one-hot matrix product
  for the indexing modes, which adds each copied border value back to its source).
- :func:`im2col` gathers, for each kernel offset ``(i, j)``, the strided slice
  ``x[:, :, i*dh : ... : sh, j*dw : ... : sw]``, and stacks them: ``(N, C, kh*kw, Ho, Wo)``.
- :func:`col2im` is its adjoint: each kernel offset's slice is added back at its strided
  position. On writeable arrays that is an in-place ``+=`` into one zero array; on immutable
  arrays (JAX) it is a sum of zero-interleaved, zero-padded copies, with no scatter at all.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from ..backend import device, is_writeable

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


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
    ``circular``: wrap around)."""
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


def pad(
    x: Any,
    xp: Any,
    pads: tuple[tuple[int, int], tuple[int, int]],
    mode: str = "zeros",
    value: float = 0.0,
    functional: bool = False,
) -> Any:
    """Pad axes 2 and 3 of ``x`` by ``pads = ((top, bottom), (left, right))``.

    ``mode`` is ``"zeros"`` (or ``"constant"`` with ``value``), ``"reflect"``, ``"replicate"``
    or ``"circular"``. ``functional=True`` forces the concatenation path of immutable arrays.
    """
    (t, b), (left, r) = pads
    if t == b == left == r == 0:
        return x
    n, c, h, w = x.shape
    dev = device(x)
    if mode in ("zeros", "constant"):
        full = xp.full((n, c, h + t + b, w + left + r), value, dtype=x.dtype, device=dev)
        if not functional and is_writeable(full):
            full[:, :, t : t + h, left : left + w] = x
            return full
        # immutable arrays: concatenate constant blocks around x
        rows = xp.concat([full[:, :, :t, :w], x, full[:, :, :b, :w]], axis=2) if t or b else x
        if left or r:
            rows = xp.concat(
                [full[:, :, : rows.shape[2], :left], rows, full[:, :, : rows.shape[2], :r]], axis=3
            )
        return rows
    if t or b:
        x = xp.take(x, xp.asarray(pad_indices(h, t, b, mode), device=dev), axis=2)
    if left or r:
        x = xp.take(x, xp.asarray(pad_indices(w, left, r, mode), device=dev), axis=3)
    return x


def _selection(xp: Any, index: list[int], size: int, dtype: Any, dev: Any) -> Any:
    """One-hot matrix ``S`` of shape ``(len(index), size)`` with ``S[i, index[i]] = 1``."""
    idx = xp.asarray(index, device=dev)
    return xp.astype(idx[:, None] == xp.arange(size, device=dev)[None, :], dtype)


def pad_backward(
    g: Any,
    xp: Any,
    shape: tuple[int, ...],
    pads: tuple[tuple[int, int], tuple[int, int]],
    mode: str = "zeros",
) -> Any:
    """Adjoint of :func:`pad`: the gradient with respect to the unpadded input of ``shape``."""
    (t, b), (left, r) = pads
    if t == b == left == r == 0:
        return g
    h, w = shape[2], shape[3]
    if mode in ("zeros", "constant"):
        return g[:, :, t : t + h, left : left + w]
    dev = device(g)
    if t or b:  # dx[.., k, :] = sum of g[.., i, :] over the padded rows i copied from row k
        g = xp.matrix_transpose(_selection(xp, pad_indices(h, t, b, mode), h, g.dtype, dev)) @ g
    if left or r:
        g = g @ _selection(xp, pad_indices(w, left, r, mode), w, g.dtype, dev)
    return g


# --------------------------------------------------------------------------- im2col / col2im


def window_slices(kernel, stride, dilation, out):
    """For each kernel offset ``(i, j)`` (row-major), the slices of axes 2 and 3 it reads."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = kernel, stride, dilation, out
    return [
        (
            slice(i * dh, i * dh + sh * (ho - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (wo - 1) + 1, sw),
        )
        for i in range(kh)
        for j in range(kw)
    ]


def im2col(x: Any, xp: Any, kernel, stride, dilation, out) -> Any:
    """``(N, C, H, W)`` -> ``(N, C, kh*kw, Ho, Wo)``: the input under each kernel offset."""
    slices = window_slices(kernel, stride, dilation, out)
    return xp.stack([x[:, :, sh, sw] for sh, sw in slices], axis=2)


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
    keep = [slice(None)] * a.ndim
    keep[axis] = slice(0, (n - 1) * stride + 1)
    return a[tuple(keep)]


def col2im(
    pieces: Sequence[Any], xp: Any, size, kernel, stride, dilation, functional: bool | None = None
) -> Any:
    """Adjoint of :func:`im2col`: ``pieces[k]`` (``(N, C, Ho, Wo)``, one per kernel offset, in
    :func:`window_slices` order) added back into a zero array of spatial ``size``.

    ``functional=True`` forces the scatter-free sum of padded copies (what immutable arrays use);
    by default it is used only when the output array cannot be written in place.
    """
    first = pieces[0]
    n, c, ho, wo = first.shape
    hp, wp = size
    dev = device(first)
    slices = window_slices(kernel, stride, dilation, (ho, wo))
    out = None
    if not functional:
        out = xp.zeros((n, c, hp, wp), dtype=first.dtype, device=dev)
        if is_writeable(out):
            for piece, (sh, sw) in zip(pieces, slices, strict=True):
                out[:, :, sh, sw] += piece
            return out
    # scatter-free: interleave zeros for the stride, then pad each piece to its offset and sum
    total = None
    for piece, (sh, sw) in zip(pieces, slices, strict=True):
        spread = _interleave_zeros(_interleave_zeros(piece, xp, 2, stride[0]), xp, 3, stride[1])
        rows, cols = spread.shape[2], spread.shape[3]
        placed = pad(
            spread,
            xp,
            ((sh.start, hp - sh.start - rows), (sw.start, wp - sw.start - cols)),
            functional=True,
        )
        total = placed if total is None else total + placed
    return total
