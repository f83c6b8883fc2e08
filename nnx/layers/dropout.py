"""Inverted dropout."""

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
        rng: seed (or ``numpy.random.Generator`` to draw a seed from) for the masks.
    """

    _scaled_mask = None
    _shape = None
    rows: tuple[int, int, int] | None = None

    def __init__(self, p: float = 0.5, rng: Seed = None):
        if (
            isinstance(p, bool)
            or not isinstance(p, numbers.Real)
            or not (0.0 <= p < 1.0)
            or math.isnan(p)
        ):
            raise ValueError(f"Dropout: p must be a probability in [0, 1), got {p!r}")
        self.p = float(p)
        self.seed = int(as_rng(rng).integers(2**63))
        self._generator: Generator | None = None

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def reseed(self, seed: int) -> None:
        """Restart the mask sequence from ``seed`` (masks then repeat exactly). The Trainer
        calls it on every module that has it at the start of each epoch."""
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
        check_floating(xp, x, "Dropout")
        self._shape = tuple(x.shape)
        if not self.training or self.p == 0.0:
            self._scaled_mask = None
            return x
        u = self._uniform(x, tuple(x.shape))
        # keep with probability 1 - p, and scale the kept values by 1 / (1 - p)
        self._scaled_mask = xp.astype(u >= self.p, x.dtype) * (1.0 / (1.0 - self.p))
        return x * self._scaled_mask

    def backward(self, grad_out: Any) -> Any:
        check_grad(grad_out, require_forward(self._shape, "Dropout"), "Dropout")
        if self._scaled_mask is None:
            return grad_out
        return grad_out * self._scaled_mask


class Dropout2d(Dropout):
    """Channel dropout for ``(N, C, H, W)`` inputs, as ``torch.nn.Dropout2d``: in training mode
    each whole channel ``x[n, c]`` is zeroed with probability ``p`` and the kept ones are scaled by
    ``1 / (1 - p)``; in evaluation mode ``y = x``. Backward multiplies by the same mask.

    A subclass of :class:`Dropout`, so it draws its masks the same way and the Trainer reseeds it
    each epoch like every dropout layer.

    >>> import numpy as np, nnx
    >>> y = nnx.Dropout2d(0.5, rng=0)(np.ones((2, 3, 4, 4), np.float32))
    >>> sorted({float(v) for v in y.reshape(2, 3, -1).std(axis=2).ravel()})  # whole channels
    [0.0]
    """

    def forward(self, x: Any) -> Any:
        if x.ndim != 4:
            raise ValueError(
                f"Dropout2d: expected input of shape (N, C, H, W), got shape {tuple(x.shape)}"
            )
        xp = namespace(x)
        check_floating(xp, x, "Dropout2d")
        self._shape = tuple(x.shape)
        if not self.training or self.p == 0.0:
            self._scaled_mask = None
            return x
        u = self._uniform(x, (x.shape[0], x.shape[1], 1, 1))
        self._scaled_mask = xp.astype(u >= self.p, x.dtype) * (1.0 / (1.0 - self.p))
        return x * self._scaled_mask
