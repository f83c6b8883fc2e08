"""Upsampling (resizing) of the spatial axes, as ``torch.nn.Upsample`` in every mode.

Every mode is separable: output position ``i`` along one spatial axis is a fixed combination of
at most four input positions along that axis (the taps), ``y = A x`` with a sparse ``(out, in)``
matrix ``A`` given by PyTorch's source-index rule. Forward is one ``take`` per tap, weighted and
summed; backward applies the transpose, ``dx = A^T g``, adding every output gradient back into
its sources: by the library's scatter-add where it has one (NumPy, PyTorch, CuPy), else as a
product with ``A`` built on the device from the taps (JAX, array-api-strict).

Source coordinate of output ``i`` (``scale = 1 / scale_factor`` when a scale factor is given,
else ``in / out``; with ``align_corners`` it is ``(in - 1) / (out - 1)``):

- ``nearest``: ``min(floor(i * scale), in - 1)``; ``nearest-exact``: ``min(floor((i + 0.5) *
  scale), in - 1)``.
- ``linear``/``bilinear``/``trilinear``: ``s = (i + 0.5) * scale - 0.5`` clamped at 0 (or
  ``i * scale`` with ``align_corners``), weights ``1 - t`` and ``t`` on ``floor(s)`` and the
  next position (``t = s - floor(s)``, the last position repeated at the edge).
- ``bicubic``: ``s`` as for linear but not clamped, Keys' cubic convolution with ``a = -0.75``
  on the four positions ``floor(s) - 1 .. floor(s) + 2``, clamped to the edge.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..backend import device, namespace, scatter_add_rows
from ..core.checks import check_floating, check_grad, require_forward
from ..core.module import Module
from ._spatial import int_tuple

# mode -> the spatial ranks it accepts (None: any of 1, 2, 3)
MODES = {
    "nearest": None,
    "nearest-exact": None,
    "linear": 1,
    "bilinear": 2,
    "bicubic": 2,
    "trilinear": 3,
}
_CUBIC_A = -0.75


def _scale(size: int, out: int, factor: float | None, align_corners: bool) -> float:
    """PyTorch's ``area_pixel_compute_scale``."""
    if align_corners:
        return (size - 1) / (out - 1) if out > 1 else 0.0
    return 1.0 / factor if factor is not None else size / out


def _cubic(t: float) -> list[float]:
    """Keys' cubic convolution weights of the positions ``-1, 0, 1, 2`` for offset ``t``."""
    a = _CUBIC_A

    def near(x: float) -> float:  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x: float) -> float:  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def axis_taps(
    mode: str, size: int, out: int, factor: float | None, align_corners: bool
) -> list[tuple[list[int], list[float]]]:
    """The taps of one axis: for each tap ``k`` (1 for the nearest modes, 2 linear, 4 bicubic)
    the source index and the weight of every output position, as host lists of length ``out``.
    The ``(out, size)`` matrix is ``sum_k one_hot(index_k) * weight_k``."""
    scale = _scale(size, out, factor, align_corners)
    ntaps = 1 if mode in ("nearest", "nearest-exact") else 4 if mode == "bicubic" else 2
    taps: list[tuple[list[int], list[float]]] = [([0] * out, [0.0] * out) for _ in range(ntaps)]
    for i in range(out):
        if ntaps == 1:
            offset = 0.5 if mode == "nearest-exact" else 0.0
            taps[0][0][i] = min(int(math.floor((i + offset) * scale)), size - 1)
            taps[0][1][i] = 1.0
            continue
        s = i * scale if align_corners else (i + 0.5) * scale - 0.5
        if ntaps == 4:
            base = math.floor(s)
            for k, w in enumerate(_cubic(s - base)):
                taps[k][0][i] = min(max(base - 1 + k, 0), size - 1)
                taps[k][1][i] = w
            continue
        s = max(s, 0.0)
        lo = min(int(math.floor(s)), size - 1)
        t = s - lo
        taps[0][0][i], taps[0][1][i] = lo, 1.0 - t
        taps[1][0][i], taps[1][1][i] = min(lo + 1, size - 1), t
    return taps


def _positive_factors(value: Any) -> bool:
    factors = value if isinstance(value, tuple) else (value,)
    return all(
        isinstance(f, numbers.Real) and not isinstance(f, bool) and math.isfinite(f) and f > 0
        for f in factors
    )


class Upsample(Module):
    """Upsampling of the spatial axes of ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``,
    as ``torch.nn.Upsample(size=None, scale_factor=None, mode="nearest", align_corners=None,
    recompute_scale_factor=None)``.

    Give either ``size`` (the output's spatial size) or ``scale_factor`` (a number or one per
    axis; the output is ``floor(in * scale_factor)``). ``mode`` is ``"nearest"``,
    ``"nearest-exact"`` (any rank), ``"linear"`` (3-D input), ``"bilinear"``/``"bicubic"``
    (4-D) or ``"trilinear"`` (5-D); ``align_corners`` (interpolating modes only) maps the corner
    pixels of input and output onto each other. ``recompute_scale_factor=True`` computes the
    source positions from the output size instead of the given factor, as PyTorch.

    >>> import numpy as np, nnx
    >>> nnx.Upsample(scale_factor=2)(np.arange(2, dtype=np.float32).reshape(1, 1, 2)).tolist()
    [[[0.0, 0.0, 1.0, 1.0]]]
    >>> up = nnx.Upsample(scale_factor=2, mode="linear", align_corners=True)
    >>> [round(float(v), 4) for v in up(np.arange(2, dtype=np.float32).reshape(1, 1, 2))[0, 0]]
    [0.0, 0.3333, 0.6667, 1.0]
    """

    _saved = None

    def __init__(
        self,
        size: int | tuple[int, ...] | None = None,
        scale_factor: float | tuple[float, ...] | None = None,
        mode: str = "nearest",
        align_corners: bool | None = None,
        recompute_scale_factor: bool | None = None,
    ):
        who = type(self).__name__
        if mode not in MODES:
            names = ", ".join(repr(m) for m in MODES)
            raise ValueError(f"{who}: mode must be one of {names}, got {mode!r}")
        if (size is None) == (scale_factor is None):
            raise ValueError(f"{who}: give exactly one of size and scale_factor")
        if align_corners is not None and mode in ("nearest", "nearest-exact"):
            raise ValueError(
                f"{who}: align_corners only applies to the interpolating modes (linear, "
                f"bilinear, bicubic, trilinear), not mode={mode!r}"
            )
        if scale_factor is not None and not _positive_factors(scale_factor):
            raise ValueError(
                f"{who}: scale_factor must be a positive number or a tuple of them, "
                f"got {scale_factor!r}"
            )
        self.mode = mode
        self.size = size
        self.scale_factor = scale_factor
        self.align_corners = align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def extra_repr(self) -> str:
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        corners = "" if self.align_corners is None else f", align_corners={self.align_corners}"
        return f"{what}, mode={self.mode!r}{corners}"

    def _plan(self, x: Any) -> list[tuple[int, int, float | None]]:
        """``(in, out, scale_factor or None)`` for each spatial axis."""
        who = type(self).__name__
        nsp = x.ndim - 2
        rank = MODES[self.mode]
        if nsp not in (1, 2, 3) or (rank is not None and nsp != rank):
            want = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}
            expected = " or ".join(want.values()) if rank is None else want[rank]
            raise ValueError(
                f"{who}: mode={self.mode!r} expects input of shape {expected}, "
                f"got shape {tuple(x.shape)}"
            )
        sizes = tuple(x.shape[2:])
        if self.size is not None:
            out = int_tuple(self.size, nsp, "size", who)
            return [(s, o, None) for s, o in zip(sizes, out, strict=True)]
        f = self.scale_factor
        factors = f if isinstance(f, tuple) else (f,) * nsp
        if len(factors) != nsp:
            raise ValueError(
                f"{who}: scale_factor {f!r} has {len(factors)} entries for {nsp} spatial axes "
                f"(input shape {tuple(x.shape)})"
            )
        plan = []
        for s, k in zip(sizes, factors, strict=True):
            o = int(math.floor(s * float(k)))
            if o <= 0:
                raise ValueError(f"{who}: output size {o} for input size {s} is empty")
            plan.append((s, o, None if self.recompute_scale_factor else float(k)))
        return plan

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        check_floating(xp, x, type(self).__name__)
        plan = self._plan(x)
        corners, dev = bool(self.align_corners), device(x)
        y, axes = x, []
        for axis, (s, o, k) in enumerate(plan, start=2):
            taps = [
                (
                    xp.asarray(index, device=dev),
                    xp.asarray(weight, dtype=x.dtype, device=dev),
                )
                for index, weight in axis_taps(self.mode, s, o, k, corners)
            ]
            axes.append((axis, s, o, taps))
            shape = [1] * y.ndim
            shape[axis] = o
            out = None
            for index, weight in taps:  # y = sum_k take(y, index_k) * weight_k along the axis
                term = xp.take(y, index, axis=axis)
                if len(taps) > 1:
                    term = term * xp.reshape(weight, tuple(shape))
                out = term if out is None else out + term
            y = out
        self._saved = (tuple(x.shape), tuple(y.shape), axes)
        return y

    def backward(self, grad_out: Any) -> Any:
        in_shape, out_shape, axes = require_forward(self._saved, type(self).__name__)
        check_grad(grad_out, out_shape, type(self).__name__)
        xp = namespace(grad_out)
        g = grad_out
        for axis, size, out, taps in reversed(axes):
            g = _adjoint(xp, g, axis, size, out, taps)
        return g


def _adjoint(xp: Any, g: Any, axis: int, size: int, out: int, taps: list) -> Any:
    """The transpose of one axis' interpolation: every output gradient added back into its
    sources with its weight. By the library's scatter-add where it has one (linear in the
    output's size), else as a product with the ``(out, size)`` matrix built from the taps."""
    order = (axis, *[i for i in range(g.ndim) if i != axis])
    moved = xp.permute_dims(g, order)
    rest = tuple(moved.shape[1:])
    rows = xp.reshape(moved, (out, -1))
    total = None
    for index, weight in taps:
        part = scatter_add_rows(index, rows * xp.reshape(weight, (out, 1)), size)
        if part is None:
            total = None
            break
        total = part if total is None else total + part
    if total is None:
        columns = xp.reshape(xp.arange(size, device=device(g)), (1, size))
        a = None
        for index, weight in taps:
            term = xp.astype(xp.reshape(index, (out, 1)) == columns, g.dtype)
            term = term * xp.reshape(weight, (out, 1))
            a = term if a is None else a + term
        total = xp.matrix_transpose(a) @ rows
    back = xp.reshape(total, (size, *rest))
    inverse = tuple(sorted(range(g.ndim), key=lambda i: order[i]))
    return xp.permute_dims(back, inverse)


class UpsamplingNearest2d(Upsample):
    """``Upsample(size, scale_factor, mode="nearest")`` of ``(N, C, H, W)`` inputs, as
    ``torch.nn.UpsamplingNearest2d``.

    >>> import numpy as np, nnx
    >>> nnx.UpsamplingNearest2d(scale_factor=2)(np.zeros((1, 1, 2, 3), np.float32)).shape
    (1, 1, 4, 6)
    """

    def __init__(self, size: Any = None, scale_factor: Any = None):
        super().__init__(size, scale_factor, mode="nearest")

    def _plan(self, x: Any) -> list[tuple[int, int, float | None]]:
        if x.ndim != 4:
            raise ValueError(
                f"UpsamplingNearest2d: expected input of shape (N, C, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        return super()._plan(x)


class UpsamplingBilinear2d(Upsample):
    """``Upsample(size, scale_factor, mode="bilinear", align_corners=True)``, as
    ``torch.nn.UpsamplingBilinear2d``.

    >>> import numpy as np, nnx
    >>> nnx.UpsamplingBilinear2d(size=(3, 3))(np.zeros((1, 1, 2, 2), np.float32)).shape
    (1, 1, 3, 3)
    """

    def __init__(self, size: Any = None, scale_factor: Any = None):
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)
