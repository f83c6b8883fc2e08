"""GaussianNLLLoss and PoissonNLLLoss: PyTorch parity (value, input and var gradients) on three
backends, PyTorch's own PoissonNLLLoss configurations, gradcheck on every backend, float16 and
the errors."""

import numpy as np
import pytest

import nnx
from nnx.core.checks import dtype_name
from tests.layers.torch_oracle import (
    ORACLE_BACKENDS,
    compare_loss,
    config_arguments,
    torch_module_configs,
)

REDUCTIONS = ("mean", "sum", "none")
RNG = np.random.default_rng(3)
# JAX compiles each operation per new shape on first use: by default it runs "none" only
GRID = [
    pytest.param(b, r, marks=[pytest.mark.slow] if b == "jax" and r != "none" else [])
    for b in ORACLE_BACKENDS
    for r in REDUCTIONS
]


def _gaussian_inputs(var_shape, shape=(4, 3), target_shape=None):
    x = RNG.standard_normal(shape)
    t = RNG.standard_normal(target_shape or shape)
    v = 0.2 + RNG.random(var_shape)
    v.flat[0] = 0.0  # clamped to eps: PyTorch's gradient passes the clamp unchanged
    if v.size > 1:
        v.flat[1] = 1e-9
    return [x, t, v]


@pytest.mark.torch
@pytest.mark.parametrize("backend, reduction", GRID)
def test_gaussian_nll_matches_pytorch(backend, reduction):
    import torch

    cases = [
        ((4, 3), {}),  # heteroscedastic
        ((4,), {"full": True}),  # one variance per row: var lacks the last axis
        ((4, 1), {"eps": 1e-2}),  # last axis of size 1
        ((1, 3), {"full": True, "eps": 0.5}),  # one size-1 axis elsewhere
    ]
    for var_shape, kw in cases:
        compare_loss(
            nnx.GaussianNLLLoss(reduction=reduction, **kw),
            torch.nn.GaussianNLLLoss(reduction=reduction, **kw),
            _gaussian_inputs(var_shape),
            differentiable=(0, 2),
            backend=backend,
        )
    # a target broadcast along the rows, 3-D input with var missing its last axis
    compare_loss(
        nnx.GaussianNLLLoss(reduction=reduction),
        torch.nn.GaussianNLLLoss(reduction=reduction),
        _gaussian_inputs((2, 3), shape=(2, 3, 2), target_shape=(3, 2)),
        differentiable=(0, 2),
        backend=backend,
    )


@pytest.mark.torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gaussian_nll_float_var_matches_pytorch(reduction):
    import torch

    x, t = RNG.standard_normal((3, 2)), RNG.standard_normal((3, 2))
    loss = nnx.GaussianNLLLoss(reduction=reduction, full=True)
    value = loss(x, t, 0.7)
    d_input, d_var = loss.backward()
    xt = torch.tensor(x, requires_grad=True)
    ref = torch.nn.GaussianNLLLoss(reduction=reduction, full=True)(xt, torch.tensor(t), 0.7)
    ref.sum().backward()
    np.testing.assert_allclose(value, ref.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(d_input, xt.grad.numpy(), rtol=1e-12)
    assert d_var is None


def _poisson_inputs(log_input, shape=(4, 3)):
    x = RNG.standard_normal(shape) if log_input else 0.1 + 2 * RNG.random(shape)
    t = RNG.poisson(2.0, shape).astype(np.float64)
    t.flat[:4] = [0.0, 1.0, 1.5, 2.0]  # the Stirling term's boundary: only where target > 1
    return [x, t]


@pytest.mark.torch
@pytest.mark.parametrize("backend, reduction", GRID)
def test_poisson_nll_matches_pytorch(backend, reduction):
    import torch

    for log_input in (True, False):
        for full in (False, True):
            for eps in (1e-8, 0.5):
                kw = {"log_input": log_input, "full": full, "eps": eps, "reduction": reduction}
                compare_loss(
                    nnx.PoissonNLLLoss(**kw),
                    torch.nn.PoissonNLLLoss(**kw),
                    _poisson_inputs(log_input),
                    backend=backend,
                )


@pytest.mark.torch
def test_poisson_nll_pytorch_module_test_configurations():
    """Every PyTorch common_nn configuration built by a constructor (the no-batch-dim ones; the
    functional wrapper config builds no module)."""
    import torch

    ran = 0
    for config in torch_module_configs("PoissonNLLLoss"):
        if "input_size" not in config:
            continue
        args, kwargs = config_arguments(config)
        x = RNG.standard_normal(config["input_size"])
        t = RNG.poisson(2.0, config["target_size"]).astype(np.float64)
        for backend in ORACLE_BACKENDS:
            compare_loss(
                nnx.PoissonNLLLoss(*args, **kwargs),
                torch.nn.PoissonNLLLoss(*args, **kwargs),
                [x, t],
                backend=backend,
            )
        ran += 1
    assert ran >= 3


class _GaussianOf(nnx.Module):
    """GaussianNLLLoss of (input, var) with a fixed target, as a layer for gradcheck."""

    def __init__(self, target, **kw):
        self.loss, self.target = nnx.GaussianNLLLoss(**kw), target

    def forward(self, x, var):
        return self.loss(x, self.target, var)

    def backward(self, g):
        return self.loss.backward(g)


@pytest.mark.parametrize("reduction", ("none", "mean"))
def test_gaussian_nll_gradcheck(backend, reduction):
    x, t, v = (backend.asarray(a) for a in _gaussian_inputs((4,), shape=(4, 3)))
    v = v + 0.5  # off the clamp: there the gradient is PyTorch's pass-through, not the slope
    result = nnx.gradcheck(_GaussianOf(t, reduction=reduction, full=True), (x, v))
    assert result.ok, str(result)


@pytest.mark.parametrize("log_input", (True, False))
def test_poisson_nll_gradcheck(backend, log_input):
    x, t = (backend.asarray(a) for a in _poisson_inputs(log_input))
    result = nnx.gradcheck(nnx.PoissonNLLLoss(log_input=log_input, full=True), x, t)
    assert result.ok, str(result)


@pytest.mark.parametrize("dtype", ("float16", "bfloat16"))
def test_float16_inputs_accumulate_in_float32(dtype):
    """Means over 2^17 elements whose float16 sum would overflow (2^12 in bfloat16, whose sum of
    ones stops at 256) equal the float32 result within 16-bit rounding; gradients keep the
    input's dtype."""
    be = nnx.get_backend("jax" if dtype == "bfloat16" else "numpy")
    if dtype == "bfloat16" and not nnx.backend.backend_available("jax")[0]:
        pytest.skip("bfloat16 needs JAX")
    n = 2**17 if dtype == "float16" else 2**12  # bfloat16 sums stop growing past 256 ones
    x = np.full((n,), 1.5)
    t = np.full((n,), 0.25)
    v = np.full((n,), 0.5)
    for loss, args in (
        (nnx.GaussianNLLLoss(), (x, t, v)),
        (nnx.PoissonNLLLoss(), (x, t)),
        (nnx.PoissonNLLLoss(log_input=False, full=True), (x, t + 2)),
    ):
        ref = float(nnx.to_numpy(loss(*(be.asarray(a, dtype="float32") for a in args))))
        value = loss(*(be.asarray(a, dtype=dtype) for a in args))
        assert dtype_name(value.dtype) == dtype
        assert abs(float(nnx.to_numpy(value)) - ref) <= 1e-2 * abs(ref)
        grads = loss.backward()
        first = grads[0] if isinstance(grads, tuple) else grads
        assert dtype_name(first.dtype) == dtype


def test_errors_name_the_loss_and_the_value():
    x = np.zeros((4, 3))
    gauss = nnx.GaussianNLLLoss()
    with pytest.raises(ValueError, match=r"GaussianNLLLoss: var has negative entries \(min -1"):
        gauss(x, x, np.full((4, 3), -1.0))
    with pytest.raises(ValueError, match=r"GaussianNLLLoss: var must be >= 0, got -0.5"):
        gauss(x, x, -0.5)
    with pytest.raises(ValueError, match=r"GaussianNLLLoss: var shape \(4, 2\) does not fit"):
        gauss(x, x, np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"GaussianNLLLoss: target shape \(5, 3\)"):
        gauss(x, np.zeros((5, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"GaussianNLLLoss: eps must be a number >= 0, got -1"):
        nnx.GaussianNLLLoss(eps=-1)
    with pytest.raises(ValueError, match=r"PoissonNLLLoss: reduction must be one of"):
        nnx.PoissonNLLLoss(reduction="avg")
    with pytest.raises(ValueError, match=r"PoissonNLLLoss: target shape \(4,\)"):
        nnx.PoissonNLLLoss()(x, np.zeros(4))
