"""Shared fixtures: every backend available in this run, and host-data helpers.

NumPy and array-api-strict (default device and ``Device("device1")``, which catches arrays created
on the wrong device) always run; PyTorch and JAX run when importable, and CuPy, ``torch:cuda`` and
``jax:gpu`` (the ``gpu`` marker: ``-m gpu`` runs only them) when a CUDA GPU is usable.
Unavailable backends are skipped with the reason.

Tests that need PyTorch (the oracle comparisons, the torch backend, the benchmarks against torch)
carry the ``torch`` marker: the torch backend's parameters get it here, the others are marked
where they are written. Without PyTorch they skip with one reason, and ``-m torch`` runs only
them (.ci/run does, after installing PyTorch). A test that skips for want of PyTorch without the
marker fails, so none can be left out of that second run.

JAX runs the suite in 64-bit mode, switched on here before any test creates an array: the
float64 gradient checks and PyTorch comparisons need it. The float32 default that JAX users get
(x64 off) is tested in tests/test_jax.py under ``jax.enable_x64(False)``.
"""

from __future__ import annotations

import importlib.util

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
    _backend_param("torch", pytest.mark.torch),
    _backend_param("jax"),
    _backend_param("torch:cuda", pytest.mark.gpu, pytest.mark.torch),
    _backend_param("cupy", pytest.mark.gpu),
    _backend_param("jax:gpu", pytest.mark.gpu),
]


HAVE_TORCH = importlib.util.find_spec("torch") is not None


# Backends whose sweeps the default run samples: the first case of each test function runs by
# default, the others under the slow marker (-m slow runs them all). Eager JAX compiles every
# small operation once per new shape, which makes a gradient check there cost ten times the
# NumPy one, and it runs the same portable code as array-api-strict (which does run every case
# by default, on two devices). Its own risks, immutable arrays and tracing, are held by the first
# case of each test, the PyTorch comparisons on JAX and the compiled steps of the layer zoo.
SAMPLED_BACKENDS = ("jax",)


def _sample_sweeps(items: list[pytest.Item]) -> None:
    seen: set[tuple[str, str, str]] = set()
    for item in items:
        spec = getattr(item, "callspec", None)
        backend = spec.params.get("backend") if spec is not None else None
        if backend not in SAMPLED_BACKENDS:
            continue
        key = (str(item.path), item.originalname, backend)
        if key in seen:
            item.add_marker(pytest.mark.slow)
        seen.add(key)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _sample_sweeps(items)
    if HAVE_TORCH:
        return
    skip = pytest.mark.skip(reason="needs PyTorch (pip install torch); not installed")
    for item in items:
        if item.get_closest_marker("torch"):
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """A test skipped because PyTorch is missing must carry the ``torch`` marker."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not item.get_closest_marker("torch"):
        reason = str(report.longrepr)
        if "could not import 'torch'" in reason or "backend 'torch" in reason:
            report.outcome = "failed"
            report.longrepr = (
                f"{item.nodeid} needs PyTorch ({reason.strip()}) but is not marked "
                f"@pytest.mark.torch, so the PyTorch-only CI run would never run it"
            )


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> nnx.Backend:
    """Each available backend in turn."""
    return nnx.get_backend(request.param)


def host_normal(shape: tuple[int, ...], seed: int = 0, away_from_zero: float = 0.0) -> np.ndarray:
    """Standard-normal float64 host data; ``away_from_zero`` pushes values off kinks at 0."""
    x = np.random.default_rng(seed).standard_normal(shape)
    return np.sign(x) * (np.abs(x) + away_from_zero)
