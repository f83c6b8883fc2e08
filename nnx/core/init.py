"""Weight initializers, drawn on the host from an explicit seeded ``numpy.random.Generator``.

Drawing on the host (in float64, then cast by the backend) means one seed gives the same initial
model on every backend. Each initializer takes ``(shape, rng)`` for a ``(fan_in, fan_out)``
weight matrix or a ``(fan_out,)`` bias and returns a float64 NumPy array.

>>> import numpy as np
>>> w = he_normal((784, 128), np.random.default_rng(0))
>>> w.shape, round(float(w.std()), 2)
((784, 128), 0.05)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

Initializer = Callable[[tuple[int, ...], np.random.Generator], np.ndarray]
Seed = int | np.random.Generator | None


def as_rng(rng: Seed) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed, a Generator (used as is) or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be an int seed, a numpy.random.Generator or None, got {rng!r}")


class AllocationLimitError(ValueError):
    """Building a module would draw more initial values than :func:`allocation_limit` allows."""


_LIMIT: ContextVar[list | None] = ContextVar("nnx_allocation_limit", default=None)


@contextmanager
def allocation_limit(numbers: int, why: str) -> Iterator[None]:
    """Within the block, modules may draw at most ``numbers`` initial values in all; one more
    raises :class:`AllocationLimitError` (saying ``why``) before anything is allocated.

    :func:`nnx.load_model` builds a model from a file's architecture record this way, so that a
    record claiming a huge layer next to tiny stored weights is refused, not allocated.
    """
    token = _LIMIT.set([numbers, why])
    try:
        yield
    finally:
        _LIMIT.reset(token)


def reserve(shape: tuple[int, ...], what: str = "a weight") -> None:
    """Count ``shape``'s values against the active :func:`allocation_limit` (none: no-op).
    Every initial-value draw of a layer calls it before allocating."""
    limit = _LIMIT.get()
    if limit is None:
        return
    count = math.prod(int(d) for d in shape)
    if count > limit[0]:
        raise AllocationLimitError(
            f"{what} of shape {tuple(shape)} would need {count} numbers; {limit[1]}"
        )
    limit[0] -= count


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[0], shape[-1]


def zeros(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """All zeros."""
    reserve(shape)
    return np.zeros(shape)


def he_normal(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Normal with std ``sqrt(2 / fan_in)`` (He et al. 2015; for ReLU networks)."""
    reserve(shape)
    fan_in, _ = _fans(shape)
    return rng.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)


def he_uniform(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Uniform on ``[-a, a]`` with ``a = sqrt(6 / fan_in)``."""
    reserve(shape)
    fan_in, _ = _fans(shape)
    a = math.sqrt(6.0 / fan_in)
    return rng.uniform(-a, a, size=shape)


def glorot_normal(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Normal with std ``sqrt(2 / (fan_in + fan_out))`` (Glorot & Bengio 2010, "Xavier")."""
    reserve(shape)
    fan_in, fan_out = _fans(shape)
    return rng.normal(0.0, math.sqrt(2.0 / (fan_in + fan_out)), size=shape)


def glorot_uniform(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Uniform on ``[-a, a]`` with ``a = sqrt(6 / (fan_in + fan_out))``."""
    reserve(shape)
    fan_in, fan_out = _fans(shape)
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=shape)


INITIALIZERS: dict[str, Initializer] = {
    "zeros": zeros,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "xavier_normal": glorot_normal,
    "xavier_uniform": glorot_uniform,
}


def get_initializer(init: str | Initializer) -> Initializer:
    """Look up an initializer by name, or pass a callable ``(shape, rng) -> ndarray`` through."""
    if callable(init):
        return init
    if isinstance(init, str) and init in INITIALIZERS:
        return INITIALIZERS[init]
    raise ValueError(
        f"unknown initializer {init!r}; choose one of {', '.join(INITIALIZERS)} or pass a callable"
    )
