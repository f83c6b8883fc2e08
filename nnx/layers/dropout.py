"""Inverted dropout (element-wise and of whole channels) and alpha dropout for SELU networks."""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..backend import Generator, backend_of, namespace
from ..core.checks import check_floating, check_grad, require_forward
from ..core.init import Seed, as_rng
from ..core.module import Module


class Dropout(Module):
    """Inverted dropout: in training mode ``y = x * m / (1 - p)`` with ``m ~ Bernoulli(1 - p)``;
    in evaluation mode ``y = x``. Backward multiplies by the same scaled mask.

    The mask comes from the backend's own seeded generator where it has one (CuPy, PyTorch) and
    from a seeded host generator otherwise, so no host round trip is needed on a GPU.

    In data-parallel training each rank sets :attr:`rows` (:meth:`set_rows`) to ``(start, stop, total)`` before a
    forward pass: the mask is then drawn for the whole global batch of ``total`` rows and rows
    ``[start, stop)`` of it are used, so every sample gets the mask one process would give it.

    Args:
        p: probability of zeroing an element, ``0 <= p < 1``.
        inplace: accepted for PyTorch's signature; nnx always returns a new array (arrays of
            JAX and array-api-strict cannot be written in place).
        rng: seed (or ``numpy.random.Generator`` to draw a seed from) for the masks.
    """

    _scaled_mask = None
    _shape = None
    rows: tuple[int, int, int] | None = None

    def __init__(self, p: float = 0.5, inplace: bool = False, rng: Seed = None):
        if (
            isinstance(p, bool)
            or not isinstance(p, numbers.Real)
            or not (0.0 <= p < 1.0)
            or math.isnan(p)
        ):
            raise ValueError(f"{type(self).__name__}: p must be a probability in [0, 1), got {p!r}")
        self.p = float(p)
        self.inplace = bool(inplace)
        self.seed = int(as_rng(rng).integers(2**63))
        self._generator: Generator | None = None

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def reseed(self, seed: int) -> None:
        """Restart the mask sequence from ``seed`` (masks then repeat exactly). The Trainer
        calls it on every module that has it before each batch."""
        self.seed = int(seed)
        self._generator = None

    def set_rows(self, rows: tuple[int, int, int] | None) -> None:
        """Set :attr:`rows` (None: the whole batch is this process's). Data-parallel training
        (:mod:`nnx.training.data_parallel`) calls it on every module that has it."""
        self.rows = rows

    def _masks_for(self, x: Any) -> Generator:
        backend = backend_of(x)
        if self._generator is None or self._generator.backend != backend:
            self._generator = backend.generator(self.seed)
        return self._generator

    def _uniform(self, x: Any, shape: tuple[int, ...]) -> Any:
        """Uniform numbers of ``shape`` (whose first axis is ``x``'s batch) for the mask; with
        :attr:`rows` set, this rank's rows of the numbers drawn for the whole global batch."""
        if self.rows is None:
            return self._masks_for(x).uniform(shape, x.dtype)
        start, stop, total = self.rows
        if x.ndim < 1 or x.shape[0] != stop - start:
            raise ValueError(
                f"{type(self).__name__}: rows {start}:{stop} of a global batch of {total} were set "
                f"for this rank, but the input has shape {tuple(x.shape)}"
            )
        return self._masks_for(x).uniform((total, *shape[1:]), x.dtype)[start:stop, ...]

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        check_floating(xp, x, type(self).__name__)
        self._shape = tuple(x.shape)
        if not self.training or self.p == 0.0:
            self._scaled_mask = None
            return x
        u = self._uniform(x, tuple(x.shape))
        # keep with probability 1 - p, and scale the kept values by 1 / (1 - p)
        self._scaled_mask = xp.astype(u >= self.p, x.dtype) * (1.0 / (1.0 - self.p))
        return x * self._scaled_mask

    def backward(self, grad_out: Any) -> Any:
        name = type(self).__name__
        check_grad(grad_out, require_forward(self._shape, name), name)
        if self._scaled_mask is None:
            return grad_out
        return grad_out * self._scaled_mask


class _ChannelDropout(Dropout):
    """Dropout of whole channels ``x[n, c]`` of ``(N, C, *spatial)`` inputs with ``spatial``
    axes (or unbatched ``(C, *spatial)``): one mask value per channel, broadcast over the rest."""

    spatial = 0
    ranks: tuple[int, ...] = ()  # the accepted input ranks; default batched or unbatched
    layout = ""

    def _mask_shape(self, x: Any) -> tuple[int, ...]:
        name = type(self).__name__
        if x.ndim not in (self.ranks or (self.spatial + 1, self.spatial + 2)):
            raise ValueError(
                f"{name}: expected input of shape {self.layout}, got shape {tuple(x.shape)}"
            )
        keep = 1 if x.ndim == self.spatial + 1 else 2  # unbatched: one value per channel
        return (*x.shape[:keep], *(1,) * (x.ndim - keep))

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        name = type(self).__name__
        shape = self._mask_shape(x)
        check_floating(xp, x, name)
        self._shape = tuple(x.shape)
        if not self.training or self.p == 0.0:
            self._scaled_mask = None
            return x
        u = self._uniform(x, shape)
        self._scaled_mask = xp.astype(u >= self.p, x.dtype) * (1.0 / (1.0 - self.p))
        return x * self._scaled_mask


class Dropout2d(_ChannelDropout):
    """Channel dropout for ``(N, C, H, W)`` inputs, as ``torch.nn.Dropout2d``: in training mode
    each whole channel ``x[n, c]`` is zeroed with probability ``p`` and the kept ones are scaled by
    ``1 / (1 - p)``; in evaluation mode ``y = x``. Backward multiplies by the same mask.

    A subclass of :class:`Dropout`, so it draws its masks the same way and the Trainer reseeds it
    each batch like every dropout layer. (PyTorch reads a 3-D input as ``(N, C, L)`` with a
    warning; nnx asks for 4-D input and offers :class:`Dropout1d` for that case.)

    >>> import numpy as np, nnx
    >>> y = nnx.Dropout2d(0.5, rng=0)(np.ones((2, 3, 4, 4), np.float32))
    >>> sorted({float(v) for v in y.reshape(2, 3, -1).std(axis=2).ravel()})  # whole channels
    [0.0]
    """

    spatial = 2
    ranks = (4,)
    layout = "(N, C, H, W)"


class Dropout1d(_ChannelDropout):
    """Channel dropout for ``(N, C, L)`` (or unbatched ``(C, L)``) inputs, as
    ``torch.nn.Dropout1d``: in training each whole channel is zeroed with probability ``p`` and
    the kept ones are scaled by ``1 / (1 - p)``; identity in evaluation. Seeded like
    :class:`Dropout` (``rng=``).

    >>> import numpy as np, nnx
    >>> y = nnx.Dropout1d(0.5, rng=0)(np.ones((2, 3, 4), np.float32))
    >>> sorted({float(v) for v in y.std(axis=2).ravel()})  # whole channels
    [0.0]
    """

    spatial = 1
    layout = "(N, C, L) or (C, L)"


class Dropout3d(_ChannelDropout):
    """Channel dropout for ``(N, C, D, H, W)`` (or unbatched ``(C, D, H, W)``) inputs, as
    ``torch.nn.Dropout3d`` (see :class:`Dropout1d`).

    >>> import numpy as np, nnx
    >>> nnx.Dropout3d(0.5, rng=0)(np.ones((2, 3, 2, 2, 2), np.float32)).shape
    (2, 3, 2, 2, 2)
    """

    spatial = 3
    layout = "(N, C, D, H, W) or (C, D, H, W)"


# SELU's negative saturation -lambda * alpha, the value AlphaDropout gives dropped units
_SELU_SATURATION = 1.7580993408473766


class AlphaDropout(Dropout):
    """Alpha dropout for SELU networks, as ``torch.nn.AlphaDropout``: in training each element
    is kept with probability ``1 - p`` or set to SELU's saturation value ``-a' = -1.7581``, and
    the result is mapped by ``a * v + b`` so the mean and variance of a standard-normal input are
    kept:

        a = ((1 - p) * (1 + p * a'^2))^(-1/2),   b = a * a' * p
        y = mask * (a * x + b) + (1 - mask) * (b - a * a')

    Backward multiplies by ``a * mask``. Identity in evaluation. Seeded like :class:`Dropout`.

    >>> import numpy as np, nnx
    >>> x = np.random.default_rng(0).standard_normal((200, 100)).astype(np.float32)
    >>> y = nnx.AlphaDropout(0.2, rng=0)(x)
    >>> abs(round(float(y.mean()), 1)), round(float(y.std()), 1)
    (0.0, 1.0)
    """

    def _mask_shape(self, x: Any) -> tuple[int, ...]:
        return tuple(x.shape)

    def forward(self, x: Any) -> Any:
        xp = namespace(x)
        name = type(self).__name__
        shape = self._mask_shape(x)
        check_floating(xp, x, name)
        self._shape = tuple(x.shape)
        if not self.training or self.p == 0.0:
            self._scaled_mask = None
            return x
        p, alpha = self.p, _SELU_SATURATION
        a = 1.0 / math.sqrt((alpha * alpha * p + 1.0) * (1.0 - p))
        keep = xp.astype(self._uniform(x, shape) >= p, x.dtype)
        self._scaled_mask = keep * a
        # PyTorch's form: x * (a * mask) + ((mask - 1) * alpha * a + alpha * a * p)
        return x * self._scaled_mask + ((keep - 1.0) * (alpha * a) + alpha * a * p)


class FeatureAlphaDropout(AlphaDropout):
    """Alpha dropout of whole channels, as ``torch.nn.FeatureAlphaDropout``: the mask of
    :class:`AlphaDropout` is drawn once per channel ``x[n, c]`` of an ``(N, C, *)`` input and
    broadcast over the remaining axes.

    >>> import numpy as np, nnx
    >>> y = nnx.FeatureAlphaDropout(0.5, rng=0)(np.ones((2, 3, 4), np.float32))
    >>> sorted({float(v) for v in np.round(y.std(axis=2), 6).ravel()})  # whole channels
    [0.0]
    """

    def _mask_shape(self, x: Any) -> tuple[int, ...]:
        if x.ndim < 2:
            raise ValueError(
                f"FeatureAlphaDropout: expected input of shape (N, C, *), got shape "
                f"{tuple(x.shape)}"
            )
        return (x.shape[0], x.shape[1], *(1,) * (x.ndim - 2))
