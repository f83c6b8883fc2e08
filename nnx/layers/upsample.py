"""Nearest-neighbour upsampling, as ``torch.nn.Upsample(mode="nearest")``."""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..backend import device, namespace
from ..core.checks import check_floating, check_grad, require_forward
from ..core.module import Module
from ._spatial import int_tuple


def _nearest_index(size: int, out: int, scale: float) -> list[int]:
    """PyTorch's "nearest" source index ``min(floor(i * scale), size - 1)`` for each output."""
    return [min(int(math.floor(i * scale)), size - 1) for i in range(out)]


class Upsample(Module):
    """Nearest-neighbour upsampling of the spatial axes of ``(N, C, L)`` or ``(N, C, H, W)``.

    Give either ``size`` (the output's spatial size) or ``scale_factor`` (a number or one per
    axis; the output is ``floor(in * scale_factor)``). Output position ``i`` copies input
    ``min(floor(i * r), in - 1)`` with ``r = 1 / scale_factor`` (or ``in / size``), as PyTorch.
    Forward gathers with ``take`` along each axis; backward adds every output gradient into its
    source, ``dx = S_h^T @ g @ S_w`` with the one-hot selection matrices ``S``.

    >>> import numpy as np, nnx
    >>> nnx.Upsample(scale_factor=2)(np.arange(2, dtype=np.float32).reshape(1, 1, 2)).tolist()
    [[[0.0, 0.0, 1.0, 1.0]]]
    """

    _shape = None

    def __init__(
        self,
        size: int | tuple[int, ...] | None = None,
        scale_factor: float | tuple[float, ...] | None = None,
        mode: str = "nearest",
    ):
        if mode != "nearest":
            raise ValueError(f"Upsample: only mode='nearest' is supported, got {mode!r}")
        if (size is None) == (scale_factor is None):
            raise ValueError("Upsample: give exactly one of size and scale_factor")
        self.mode = mode
        self.size = size
        if scale_factor is not None:
            factors = scale_factor if isinstance(scale_factor, tuple) else (scale_factor,)
            if not all(
                isinstance(f, numbers.Real)
                and not isinstance(f, bool)
                and math.isfinite(f)
                and f > 0
                for f in factors
            ):
                raise ValueError(
                    f"Upsample: scale_factor must be a positive number or a tuple of them, "
                    f"got {scale_factor!r}"
                )
        self.scale_factor = scale_factor

    def extra_repr(self) -> str:
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}"

    def _plan(self, x: Any) -> list[tuple[int, int, float]]:
        """``(in, out, r)`` for each spatial axis."""
        nsp = x.ndim - 2
        if x.ndim not in (3, 4):
            raise ValueError(
                f"Upsample: expected input of shape (N, C, L) or (N, C, H, W), "
                f"got shape {tuple(x.shape)}"
            )
        sizes = tuple(x.shape[2:])
        if self.size is not None:
            out = int_tuple(self.size, nsp, "size", "Upsample")
            return [(s, o, s / o) for s, o in zip(sizes, out, strict=True)]
        f = self.scale_factor
        factors = f if isinstance(f, tuple) else (f,) * nsp
        if len(factors) != nsp:
            raise ValueError(
                f"Upsample: scale_factor {f!r} has {len(factors)} entries for {nsp} spatial axes "
                f"(input shape {tuple(x.shape)})"
            )
        plan = []
        for s, k in zip(sizes, factors, strict=True):
            o = int(math.floor(s * float(k)))
            if o <= 0:
                raise ValueError(f"Upsample: output size {o} for input size {s} is empty")
            plan.append((s, o, 1.0 / float(k)))
        return plan

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        check_floating(xp, x, "Upsample")
        plan = self._plan(x)
        dev = device(x)
        self._index = []
        y = x
        for axis, (s, o, r) in enumerate(plan, start=2):
            index = _nearest_index(s, o, r)
            self._index.append(index)
            y = xp.take(y, xp.asarray(index, device=dev), axis=axis)
        self._shape = (tuple(x.shape), tuple(y.shape))
        return y

    def backward(self, grad_out: Any) -> Any:
        in_shape, out_shape = require_forward(self._shape, "Upsample")
        check_grad(grad_out, out_shape, "Upsample")
        xp = namespace(grad_out)
        dev = device(grad_out)

        def selection(index: list[int], size: int) -> Any:
            idx = xp.asarray(index, device=dev)
            return xp.astype(idx[:, None] == xp.arange(size, device=dev)[None, :], grad_out.dtype)

        g = grad_out @ selection(self._index[-1], in_shape[-1])
        if len(in_shape) == 4:
            g = xp.matrix_transpose(selection(self._index[0], in_shape[2])) @ g
        return g
