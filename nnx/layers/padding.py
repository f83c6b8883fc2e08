"""Padding layers: ``ZeroPad``, ``ConstantPad``, ``ReflectionPad``, ``ReplicationPad`` and
``CircularPad``, each in 1, 2 and 3 dimensions, as PyTorch's.

All are :func:`~nnx.layers._spatial.pad` on the trailing ``d`` axes (forward) and its adjoint
:func:`~nnx.layers._spatial.pad_backward` (backward): a slice for constant padding, a one-hot
product that adds each copied border value back to its source for the indexing modes. The
padding tuple is PyTorch's: the last axis first, ``(left, right[, top, bottom[, front, back]])``;
a negative entry crops.
"""

from __future__ import annotations

import numbers
from typing import Any

from ..backend import namespace
from ..core.checks import check_grad, require_forward
from ..core.module import Module
from ._spatial import pad, pad_backward

_NAMES = {1: "(left, right)", 2: "(left, right, top, bottom)"}
_NAMES[3] = "(left, right, top, bottom, front, back)"


def _padding_tuple(padding: Any, nd: int, who: str) -> tuple[int, ...]:
    """An int (every side) or a tuple of ``2*nd`` ints, as a ``2*nd``-tuple."""
    if isinstance(padding, numbers.Integral) and not isinstance(padding, bool):
        return (int(padding),) * (2 * nd)
    items = tuple(padding) if isinstance(padding, (tuple, list)) else None
    if (
        items is None
        or len(items) != 2 * nd
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items)
    ):
        raise ValueError(
            f"{who}: padding must be an int or a tuple of {2 * nd} ints {_NAMES[nd]}, "
            f"got {padding!r}"
        )
    return tuple(int(v) for v in items)


class _PadNd(Module):
    """Shared code of the padding layers: ``nd`` spatial axes padded in ``mode``."""

    nd = 1
    mode = "constant"
    _shape = None

    def __init__(self, padding: int | tuple[int, ...]):
        self.padding = _padding_tuple(padding, self.nd, type(self).__name__)
        self.value = 0.0

    def extra_repr(self) -> str:
        return f"{self.padding}"

    def _who(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def _pads(self) -> tuple[tuple[int, int], ...]:
        """The padding as ``(lo, hi)`` pairs for the trailing axes, first axis first."""
        p = self.padding
        return tuple((p[2 * i], p[2 * i + 1]) for i in reversed(range(self.nd)))

    def _check(self, x: Any) -> None:
        nd = self.nd
        ndims = (nd + 1, nd + 2)
        if (self.mode == "constant" and x.ndim < nd) or (
            self.mode != "constant" and x.ndim not in ndims
        ):
            want = f"at least {nd}" if self.mode == "constant" else f"{nd + 1} or {nd + 2}"
            raise ValueError(
                f"{self._who()}: expected an input with {want} axes (the last {nd} padded), "
                f"got shape {tuple(x.shape)}"
            )
        sizes = tuple(x.shape[x.ndim - nd :])
        for size, (lo, hi) in zip(sizes, self._pads(), strict=True):
            kept = size + min(0, lo) + min(0, hi)  # what the negative padding leaves
            if kept < 0:
                raise ValueError(
                    f"{self._who()}: padding ({lo}, {hi}) crops more than the axis of size "
                    f"{size} has (input shape {tuple(x.shape)})"
                )
            if self.mode in ("reflect", "replicate") and size + lo + hi < 1:
                raise ValueError(
                    f"{self._who()}: padding ({lo}, {hi}) leaves nothing of an axis of size "
                    f"{size} (input shape {tuple(x.shape)}); {self.mode} padding needs an output "
                    f"size of at least 1"
                )
            if self.mode == "reflect" and max(lo, hi) >= size:
                raise ValueError(
                    f"{self._who()}: reflect padding ({lo}, {hi}) must be smaller than the input "
                    f"size {size} (input shape {tuple(x.shape)})"
                )
            if self.mode == "circular" and max(lo, hi) > kept:
                raise ValueError(
                    f"{self._who()}: circular padding ({lo}, {hi}) must not exceed the size "
                    f"{kept} it wraps around (input shape {tuple(x.shape)}): it would wrap "
                    f"around more than once"
                )
            if self.mode == "replicate" and size == 0 and (lo > 0 or hi > 0):
                raise ValueError(
                    f"{self._who()}: cannot replicate the edge of an empty axis "
                    f"(input shape {tuple(x.shape)})"
                )

    def forward(self, x: Any) -> Any:
        self._check(x)
        y = pad(x, namespace(x), self._pads(), self.mode, self.value)
        self._shape = tuple(x.shape)
        self._out_shape = tuple(y.shape)
        return y

    def backward(self, grad_out: Any) -> Any:
        shape = require_forward(self._shape, self._who())
        check_grad(grad_out, self._out_shape, self._who())
        return pad_backward(grad_out, namespace(grad_out), shape, self._pads(), self.mode)


class _ConstantPadNd(_PadNd):
    """``value`` everywhere outside the input."""

    def __init__(self, padding: int | tuple[int, ...], value: float):
        super().__init__(padding)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{type(self).__name__}: value must be a real number, got {value!r}")
        self.value = float(value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class ConstantPad1d(_ConstantPadNd):
    """Pad the last axis with ``value``: ``padding = (left, right)`` (or one int for both).

    Shapes: ``(*, W)`` -> ``(*, W + left + right)``; a negative padding crops.
    Backward: ``dx = g[..., left : left + W]``.

    >>> import numpy as np, nnx
    >>> nnx.ConstantPad1d((1, 2), 3.5)(np.zeros((1, 2, 4), np.float32)).shape
    (1, 2, 7)
    """

    nd = 1


class ConstantPad2d(_ConstantPadNd):
    """Pad the last two axes with ``value``: ``padding = (left, right, top, bottom)``.

    Shapes: ``(*, H, W)`` -> ``(*, H + top + bottom, W + left + right)``.
    Backward: the slice of ``g`` at the input's positions.
    """

    nd = 2


class ConstantPad3d(_ConstantPadNd):
    """Pad the last three axes with ``value``: ``padding = (left, right, top, bottom, front,
    back)``.

    Shapes: ``(*, D, H, W)`` -> ``(*, D + front + back, H + top + bottom, W + left + right)``.
    Backward: the slice of ``g`` at the input's positions.
    """

    nd = 3


class ZeroPad1d(_PadNd):
    """``ConstantPad1d`` with ``value=0``: ``(*, W)`` -> ``(*, W + left + right)``."""

    nd = 1


class ZeroPad2d(_PadNd):
    """``ConstantPad2d`` with ``value=0``: ``(*, H, W)`` -> ``(*, H + top + bottom, W + left +
    right)``.

    >>> import numpy as np, nnx
    >>> nnx.ZeroPad2d((1, 1, 2, 0))(np.ones((1, 1, 2, 2), np.float32))[0, 0]
    array([[0., 0., 0., 0.],
           [0., 0., 0., 0.],
           [0., 1., 1., 0.],
           [0., 1., 1., 0.]], dtype=float32)
    """

    nd = 2


class ZeroPad3d(_PadNd):
    """``ConstantPad3d`` with ``value=0``: ``(*, D, H, W)`` -> padded ``(*, D', H', W')``."""

    nd = 3


class ReflectionPad1d(_PadNd):
    """Mirror the last axis at its edges without repeating the edge value
    (``[a b c d]`` padded by 2 on the left: ``[c b a b c d]``); each padding must be smaller
    than the axis.

    Shapes: ``(C, W)`` or ``(N, C, W)`` -> ``W + left + right``.
    Backward: each padded entry's gradient is added to the entry it copies.
    """

    nd = 1
    mode = "reflect"


class ReflectionPad2d(_PadNd):
    """Mirror the last two axes (``(C, H, W)`` or ``(N, C, H, W)``) at their edges, as
    ``ReflectionPad1d`` along each; ``padding = (left, right, top, bottom)``."""

    nd = 2
    mode = "reflect"


class ReflectionPad3d(_PadNd):
    """Mirror the last three axes (``(C, D, H, W)`` or ``(N, C, D, H, W)``) at their edges;
    ``padding = (left, right, top, bottom, front, back)``."""

    nd = 3
    mode = "reflect"


class ReplicationPad1d(_PadNd):
    """Repeat the edge value of the last axis (``[a b c]`` padded by 2 on the left:
    ``[a a a b c]``).

    Shapes: ``(C, W)`` or ``(N, C, W)`` -> ``W + left + right``.
    Backward: the padded entries' gradients are added to the edge entry.
    """

    nd = 1
    mode = "replicate"


class ReplicationPad2d(_PadNd):
    """Repeat the edge values of the last two axes (``(C, H, W)`` or ``(N, C, H, W)``);
    ``padding = (left, right, top, bottom)``."""

    nd = 2
    mode = "replicate"


class ReplicationPad3d(_PadNd):
    """Repeat the edge values of the last three axes (``(C, D, H, W)`` or
    ``(N, C, D, H, W)``); ``padding = (left, right, top, bottom, front, back)``."""

    nd = 3
    mode = "replicate"


class CircularPad1d(_PadNd):
    """Wrap the last axis around (``[a b c]`` padded by 2 on the left: ``[b c a b c]``); each
    padding at most the axis' size.

    Shapes: ``(C, W)`` or ``(N, C, W)`` -> ``W + left + right``.
    Backward: each padded entry's gradient is added to the entry it copies.
    """

    nd = 1
    mode = "circular"


class CircularPad2d(_PadNd):
    """Wrap the last two axes (``(C, H, W)`` or ``(N, C, H, W)``) around;
    ``padding = (left, right, top, bottom)``."""

    nd = 2
    mode = "circular"


class CircularPad3d(_PadNd):
    """Wrap the last three axes (``(C, D, H, W)`` or ``(N, C, D, H, W)``) around;
    ``padding = (left, right, top, bottom, front, back)``."""

    nd = 3
    mode = "circular"
