"""Shared fixtures: every backend available in this run, and host-data helpers.

NumPy and array-api-strict (default device and ``Device("device1")``, which catches arrays created
on the wrong device) always run; PyTorch and JAX run when importable and CuPy when a CUDA GPU is
usable. Unavailable backends are skipped with the reason.

JAX runs the suite in 64-bit mode, switched on here before any test creates an array: the
float64 gradient checks and PyTorch comparisons need it. The float32 default that JAX users get
(x64 off) is tested in tests/test_jax.py under ``jax.enable_x64(False)``.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.backend import backend_available

try:
    import jax
except ImportError:
    pass
else:
    jax.config.update("jax_enable_x64", True)


def _backend_param(spec: str, *marks: pytest.MarkDecorator) -> object:
    ok, why = backend_available(spec)
    skip = [] if ok else [pytest.mark.skip(reason=f"backend {spec!r} unavailable: {why}")]
    return pytest.param(spec, id=spec.replace(":", "-"), marks=[*marks, *skip])


BACKENDS = [
    _backend_param("numpy"),
    _backend_param("strict"),
    _backend_param("strict:device1"),
    _backend_param("torch"),
    _backend_param("jax"),
    _backend_param("torch:cuda", pytest.mark.gpu),
    _backend_param("cupy", pytest.mark.gpu),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> nnx.Backend:
    """Each available backend in turn."""
    return nnx.get_backend(request.param)


def host_normal(shape: tuple[int, ...], seed: int = 0, away_from_zero: float = 0.0) -> np.ndarray:
    """Standard-normal float64 host data; ``away_from_zero`` pushes values off kinks at 0."""
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.sign(x) * (np.abs(x) + away_from_zero)
