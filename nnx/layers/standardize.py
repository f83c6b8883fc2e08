"""Preprocessing that travels with the model: per-feature standardization as a layer.

A model trained on standardized features predicts garbage on raw ones. Putting the statistics in
a layer in front of the model saves them with it (they are buffers: checkpoints and model files
carry them), so ``nnx.load_model(path)(raw_x)`` sees exactly what training saw.
"""

from __future__ import annotations

import numbers
from typing import Any

from ..backend import Backend, backend_of, get_backend, namespace
from ..core.checks import check_grad, require_forward
from ..core.module import Buffer, Module


def _feature_shape(shape: Any) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, numbers.Integral) else tuple(shape)
    if not dims or any(
        isinstance(d, bool) or not isinstance(d, numbers.Integral) or d <= 0 for d in dims
    ):
        raise ValueError(
            f"Standardize: shape must be a positive integer or a tuple of them (the shape of "
            f"one sample), got {shape!r}"
        )
    return tuple(int(d) for d in dims)


def _has_float64(x: Any) -> bool:
    try:
        backend_of(x).dtype("float64")
    except ValueError:
        return False
    return True


def feature_statistics(x: Any, where: str = "feature_statistics") -> tuple[Any, Any]:
    """``(mean, std)`` of the samples ``x`` (shape ``(N, ...)``, any backend) over axis 0:
    population std (``ddof=0``), 1 where a feature has zero spread, computed in ``x``'s
    namespace in float64 where it has it (float32 on JAX without x64). The one home of the
    statistics of :class:`Standardize` and :class:`nnx.data.Standardizer`."""
    if x.shape[0] == 0:
        raise ValueError(f"{where}: x has 0 rows")
    xp = namespace(x)
    wide = backend_of(x).dtype("float64") if _has_float64(x) else xp.float32
    x = xp.astype(x, wide)
    if not bool(xp.all(xp.isfinite(x))):
        raise ValueError(f"{where}: x holds NaN or infinite values")
    std = xp.std(x, axis=0)
    return xp.mean(x, axis=0), xp.where(std > 0, std, 1.0)


class Standardize(Module):
    """``y = (x - mean) / std`` for every feature of a sample; ``dx = g / std``.

    ``mean`` and ``std`` are buffers of the sample's shape (saved in checkpoints and model
    files, not trained). They start as 0 and 1 (the identity); :meth:`fit` sets them from the
    training data, with features of zero spread centred but not scaled.

    Args:
        shape: the shape of one sample (an int for feature vectors, e.g. ``(1, 8, 8)`` for
            images: then every pixel has its own statistics).

    Input: ``(N, *shape)``. Output: the same shape and dtype.

    >>> import numpy as np, nnx
    >>> s = nnx.Standardize(2).fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
    >>> s(np.array([[2.0, 6.0]])).tolist()
    [[0.0, 1.0]]
    """

    _cache = None

    def __init__(
        self, shape: int | tuple[int, ...], *, dtype: Any = "float32", device: str | Backend = "cpu"
    ):
        self.shape = _feature_shape(shape)
        backend = get_backend(device)
        xp, dt = backend.xp, backend.dtype(dtype)
        self.mean = Buffer(xp.zeros(self.shape, dtype=dt, device=backend.device), "mean")
        self.std = Buffer(xp.ones(self.shape, dtype=dt, device=backend.device), "std")

    def extra_repr(self) -> str:
        return f"{self.shape[0] if len(self.shape) == 1 else self.shape}"

    def fit(self, x: Any) -> Standardize:
        """Set ``mean`` and ``std`` (population, ``ddof=0``) from the samples ``x`` (any
        backend, shape ``(N, *shape)``), computed in ``x``'s namespace in float64 where it has
        it (float32 on JAX without x64). Returns ``self``."""
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"Standardize{self.shape}.fit: samples of shape {tuple(x.shape[1:])}, "
                f"expected {self.shape}"
            )
        mean, std = feature_statistics(x, "Standardize.fit")
        return self.set_statistics(mean, std)

    def set_statistics(self, mean: Any, std: Any) -> Standardize:
        """Set the statistics directly (host or backend arrays of the sample's shape; ``std``
        finite and > 0). Returns ``self``."""
        for name, value in (("mean", mean), ("std", std)):
            if tuple(getattr(value, "shape", ())) != self.shape:
                raise ValueError(
                    f"Standardize{self.shape}: {name} has shape "
                    f"{tuple(getattr(value, 'shape', ()))}, expected {self.shape}"
                )
        backend = backend_of(self.mean.value)
        dtype = self.mean.value.dtype
        mean, std = backend.asarray(mean, dtype=dtype), backend.asarray(std, dtype=dtype)
        xp = backend.xp
        ok = xp.all(xp.isfinite(mean)) & xp.all(xp.isfinite(std)) & xp.all(std > 0)
        if not bool(ok):
            raise ValueError("Standardize: mean must be finite and std finite and > 0 everywhere")
        self.mean.value, self.std.value = mean, std
        return self

    def forward(self, x: Any) -> Any:
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"Standardize{self.shape}: input of shape {tuple(x.shape)}, expected "
                f"(N, {', '.join(map(str, self.shape))})"
            )
        xp = namespace(x)
        std = xp.astype(self.std.value, x.dtype)  # 16-bit inputs under mixed precision
        self._cache = (std, tuple(x.shape))
        return (x - xp.astype(self.mean.value, x.dtype)) / std

    def backward(self, grad_out: Any) -> Any:
        std, shape = require_forward(self._cache, "Standardize")
        check_grad(grad_out, shape, "Standardize")
        return grad_out / std
