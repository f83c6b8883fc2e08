"""Layers that pass values through unchanged or only move them: Identity, Flatten, Unflatten,
PixelShuffle, PixelUnshuffle and ChannelShuffle (each backward is the inverse reshape or
permutation)."""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..backend import namespace
from ..core.checks import check_grad, require_forward
from ..core.module import Module


class Identity(Module):
    """``y = x``; ``dx = g``."""

    _shape = None

    def forward(self, x: Any) -> Any:
        self._shape = tuple(x.shape)
        return x

    def backward(self, grad_out: Any) -> Any:
        check_grad(grad_out, require_forward(self._shape, "Identity"), "Identity")
        return grad_out


def _axis(value: Any, ndim: int, name: str, who: str) -> int:
    """``value`` (an axis, negative counting from the end) as an index into ``ndim`` axes."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{who}: {name} must be an integer, got {value!r}")
    axis = int(value) + ndim if value < 0 else int(value)
    if not 0 <= axis < ndim:
        raise ValueError(f"{who}: {name}={value} is out of range for an input of {ndim} axes")
    return axis


class Flatten(Module):
    """Flatten axes ``start_dim..end_dim`` into one, as ``torch.nn.Flatten(start_dim=1,
    end_dim=-1)``: ``(N, d1, d2, ...) -> (N, d1*d2*...)`` by default. ``start_axis`` is the
    older name of ``start_dim`` (still accepted).

    >>> import numpy as np, nnx
    >>> nnx.Flatten()(np.zeros((2, 8, 8), dtype=np.float32)).shape
    (2, 64)
    >>> nnx.Flatten(0, 1)(np.zeros((2, 3, 4), dtype=np.float32)).shape
    (6, 4)
    """

    _shape = None

    def __init__(self, start_dim: int = 1, end_dim: int = -1, *, start_axis: int | None = None):
        start = start_dim if start_axis is None else start_axis
        for name, value in (("start_dim", start), ("end_dim", end_dim)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ValueError(f"Flatten: {name} must be an integer, got {value!r}")
        self.start_dim = self.start_axis = int(start)
        self.end_dim = int(end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def _span(self, shape: tuple[int, ...]) -> tuple[int, int]:
        who = f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim})"
        ndim = max(len(shape), 1)  # a 0-d input flattens to one value, as PyTorch
        start = _axis(self.start_dim, ndim, "start_dim", who)
        end = _axis(self.end_dim, ndim, "end_dim", who)
        if start > end:
            raise ValueError(f"{who}: start_dim comes after end_dim for input shape {shape}")
        return start, end

    def _flat_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if not shape:
            return (1,)
        start, end = self._span(shape)
        return (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])

    def forward(self, x: Any) -> Any:
        self._shape = tuple(x.shape)
        return namespace(x).reshape(x, self._flat_shape(self._shape))

    def backward(self, grad_out: Any) -> Any:
        shape = require_forward(self._shape, "Flatten")
        check_grad(grad_out, self._flat_shape(shape), "Flatten")
        return namespace(grad_out).reshape(grad_out, shape)


class Unflatten(Module):
    """Split axis ``dim`` into ``unflattened_size``, as ``torch.nn.Unflatten(dim,
    unflattened_size)`` (one entry may be -1); the inverse of :class:`Flatten`.

    >>> import numpy as np, nnx
    >>> nnx.Unflatten(1, (2, -1))(np.zeros((3, 8), dtype=np.float32)).shape
    (3, 2, 4)
    """

    _shape = None

    def __init__(self, dim: int, unflattened_size: tuple[int, ...]):
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
            raise ValueError(f"Unflatten: dim must be an integer, got {dim!r}")
        sizes = tuple(unflattened_size) if isinstance(unflattened_size, (tuple, list)) else None
        if (
            not sizes
            or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in sizes)
            or any(v < -1 or v == 0 for v in sizes)
            or sum(v == -1 for v in sizes) > 1
        ):
            raise ValueError(
                f"Unflatten: unflattened_size must be a tuple of positive sizes (one may be -1), "
                f"got {unflattened_size!r}"
            )
        self.dim = int(dim)
        self.unflattened_size = tuple(int(v) for v in sizes)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"

    def forward(self, x: Any) -> Any:
        who = f"Unflatten({self.dim}, {self.unflattened_size})"
        shape = tuple(x.shape)
        axis = _axis(self.dim, len(shape), "dim", who)
        sizes = list(self.unflattened_size)
        known = math.prod(v for v in sizes if v != -1)
        if -1 in sizes and known and shape[axis] % known == 0:
            sizes[sizes.index(-1)] = shape[axis] // known
        if math.prod(sizes) != shape[axis]:
            raise ValueError(
                f"{who}: axis {axis} of input shape {shape} has size {shape[axis]}, which "
                f"unflattened_size does not multiply to"
            )
        self._shape = shape
        return namespace(x).reshape(x, (*shape[:axis], *sizes, *shape[axis + 1 :]))

    def backward(self, grad_out: Any) -> Any:
        shape = require_forward(self._shape, "Unflatten")
        if math.prod(grad_out.shape) != math.prod(shape):
            check_grad(grad_out, shape, "Unflatten")
        return namespace(grad_out).reshape(grad_out, shape)


class _Permutation(Module):
    """A layer whose forward is ``reshape -> permute_dims -> reshape``; backward runs the
    inverse permutation. Subclasses give :meth:`_plan` for an input shape."""

    _saved = None

    def _plan(self, shape: tuple[int, ...]) -> tuple[tuple, tuple, tuple]:
        raise NotImplementedError

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        split, order, out = self._plan(tuple(x.shape))
        self._saved = (tuple(x.shape), split, order, out)
        return xp.reshape(xp.permute_dims(xp.reshape(x, split), order), out)

    def backward(self, grad_out: Any) -> Any:
        name = type(self).__name__
        shape, split, order, out = require_forward(self._saved, name)
        check_grad(grad_out, out, name)
        xp = namespace(grad_out)
        permuted = tuple(split[i] for i in order)
        inverse = tuple(sorted(range(len(order)), key=lambda i: order[i]))
        return xp.reshape(xp.permute_dims(xp.reshape(grad_out, permuted), inverse), shape)


def _factor(value: Any, name: str, who: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{who}: {name} must be a positive integer, got {value!r}")
    return int(value)


class PixelShuffle(_Permutation):
    """Rearrange ``(*, C r^2, H, W)`` into ``(*, C, H r, W r)``, as
    ``torch.nn.PixelShuffle(upscale_factor)`` (sub-pixel convolution's upsampling):
    ``y[..., c, h r + i, w r + j] = x[..., c r^2 + i r + j, h, w]``.

    >>> import numpy as np, nnx
    >>> nnx.PixelShuffle(2)(np.zeros((1, 8, 3, 3), dtype=np.float32)).shape
    (1, 2, 6, 6)
    """

    def __init__(self, upscale_factor: int):
        self.upscale_factor = _factor(upscale_factor, "upscale_factor", "PixelShuffle")

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"

    def _plan(self, shape: tuple[int, ...]) -> tuple[tuple, tuple, tuple]:
        r = self.upscale_factor
        if len(shape) < 3 or shape[-3] % (r * r):
            raise ValueError(
                f"PixelShuffle({r}): expected input (*, C * {r * r}, H, W) with channels "
                f"divisible by {r * r}, got shape {shape}"
            )
        *lead, c, h, w = shape
        b = len(lead)
        split = (*lead, c // (r * r), r, r, h, w)
        order = (*range(b), b, b + 3, b + 1, b + 4, b + 2)
        return split, order, (*lead, c // (r * r), h * r, w * r)


class PixelUnshuffle(_Permutation):
    """The inverse of :class:`PixelShuffle`, as ``torch.nn.PixelUnshuffle(downscale_factor)``:
    ``(*, C, H r, W r) -> (*, C r^2, H, W)``.

    >>> import numpy as np, nnx
    >>> nnx.PixelUnshuffle(2)(np.zeros((1, 2, 6, 6), dtype=np.float32)).shape
    (1, 8, 3, 3)
    """

    def __init__(self, downscale_factor: int):
        self.downscale_factor = _factor(downscale_factor, "downscale_factor", "PixelUnshuffle")

    def extra_repr(self) -> str:
        return f"downscale_factor={self.downscale_factor}"

    def _plan(self, shape: tuple[int, ...]) -> tuple[tuple, tuple, tuple]:
        r = self.downscale_factor
        if len(shape) < 3 or shape[-1] % r or shape[-2] % r:
            raise ValueError(
                f"PixelUnshuffle({r}): expected input (*, C, H, W) with H and W divisible by "
                f"{r}, got shape {shape}"
            )
        *lead, c, h, w = shape
        b = len(lead)
        split = (*lead, c, h // r, r, w // r, r)
        order = (*range(b), b, b + 2, b + 4, b + 1, b + 3)
        return split, order, (*lead, c * r * r, h // r, w // r)


class ChannelShuffle(_Permutation):
    """Interleave the channels of ``groups`` groups, as ``torch.nn.ChannelShuffle(groups)``
    (ShuffleNet): ``(N, C, *)`` viewed as ``(N, g, C/g, *)``, the two group axes swapped.

    >>> import numpy as np, nnx
    >>> nnx.ChannelShuffle(2)(np.arange(4.0).reshape(1, 4, 1))[0, :, 0].tolist()
    [0.0, 2.0, 1.0, 3.0]
    """

    def __init__(self, groups: int):
        self.groups = _factor(groups, "groups", "ChannelShuffle")

    def extra_repr(self) -> str:
        return f"groups={self.groups}"

    def _plan(self, shape: tuple[int, ...]) -> tuple[tuple, tuple, tuple]:
        g = self.groups
        if len(shape) < 3 or shape[1] % g:
            raise ValueError(
                f"ChannelShuffle({g}): expected input (N, C, *) with at least 3 axes and C "
                f"divisible by {g}, got shape {shape}"
            )
        n, c, *rest = shape
        split = (n, g, c // g, *rest)
        order = (0, 2, 1, *range(3, len(split)))
        return split, order, shape
