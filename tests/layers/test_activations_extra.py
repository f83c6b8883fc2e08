"""The activations added for sequence models, and nnx.special.erf, against PyTorch and math."""

import math

import numpy as np
import pytest

import nnx
from nnx.core.special import erf, erfc
from tests.conftest import host_normal

NEW = {
    "elu": (lambda: nnx.ELU(), lambda F, t: F.elu(t)),
    "elu-0.5": (lambda: nnx.ELU(alpha=0.5), lambda F, t: F.elu(t, alpha=0.5)),
    "selu": (nnx.SELU, lambda F, t: F.selu(t)),
    "silu": (nnx.SiLU, lambda F, t: F.silu(t)),
    "softplus": (nnx.Softplus, lambda F, t: F.softplus(t)),
    "softplus-b2-t1": (
        lambda: nnx.Softplus(beta=2.0, threshold=1.0),
        lambda F, t: F.softplus(t, beta=2.0, threshold=1.0),
    ),
    "mish": (nnx.Mish, lambda F, t: F.mish(t)),
    "hardtanh": (nnx.Hardtanh, lambda F, t: F.hardtanh(t)),
    "hardtanh-2-3": (
        lambda: nnx.Hardtanh(-2.0, 3.0),
        lambda F, t: F.hardtanh(t, -2.0, 3.0),
    ),
    "logsoftmax": (nnx.LogSoftmax, lambda F, t: F.log_softmax(t, dim=-1)),
    "logsoftmax-0": (lambda: nnx.LogSoftmax(dim=0), lambda F, t: F.log_softmax(t, dim=0)),
    "gelu": (nnx.GELU, lambda F, t: F.gelu(t)),
    "gelu-tanh": (lambda: nnx.GELU(approximate="tanh"), lambda F, t: F.gelu(t, approximate="tanh")),
}


@pytest.mark.parametrize("name", NEW)
def test_gradients_match_finite_differences(backend, name):
    x = backend.asarray(3.0 * host_normal((3, 4), seed=3, away_from_zero=0.05))
    result = nnx.gradcheck(NEW[name][0](), x)
    assert result.ok, str(result)


@pytest.mark.torch
@pytest.mark.parametrize("name", NEW)
def test_matches_pytorch(name):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    # a spread that crosses every branch: tails, thresholds and the Hardtanh limits
    x = np.concatenate(
        [
            4.0 * host_normal((5, 8), away_from_zero=0.01),
            [[-40.0, -9.0, 25.0, 9.0, 2.7, -2.7, 0.3, -0.3]],
        ]
    )
    g = host_normal(x.shape, seed=2)
    layer = NEW[name][0]()
    y = layer(x)
    dx = layer.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = NEW[name][1](F, tx)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("name", NEW)
def test_float32_in_float32_out(backend, name):
    layer = NEW[name][0]()
    x = backend.asarray(host_normal((2, 3)), dtype="float32")
    y = layer(x)
    assert y.dtype == backend.xp.float32
    assert layer.backward(y).dtype == backend.xp.float32


def test_erf_float64_matches_math():
    x = np.concatenate([np.linspace(-8, 8, 20001), [-40.0, 1e-300, -1e-8, 2.0, -2.0, 30.0]])
    ref = np.array([math.erf(v) for v in x])
    assert np.max(np.abs(erf(x) - ref)) < 1e-14
    refc = np.array([math.erfc(v) for v in x])
    assert np.max(np.abs(erfc(x) - refc) / np.maximum(refc, 1e-300)) < 1e-11


def test_erf_float32_is_within_float32_rounding(backend):
    host = np.linspace(-6, 6, 4001, dtype=np.float32)
    got = nnx.to_numpy(erf(backend.asarray(host, dtype="float32")))
    assert got.dtype == np.float32
    ref = np.array([math.erf(float(v)) for v in host])
    assert np.max(np.abs(got - ref)) <= 4 * np.finfo(np.float32).eps


@pytest.mark.torch
def test_erf_against_torch():
    torch = pytest.importorskip("torch")
    x = np.linspace(-7, 7, 1401)
    np.testing.assert_allclose(erf(x), torch.erf(torch.tensor(x)).numpy(), rtol=0, atol=1e-14)


def test_bad_arguments():
    with pytest.raises(ValueError, match="approximate must be 'none' or 'tanh', got 'fast'"):
        nnx.GELU(approximate="fast")
    with pytest.raises(ValueError, match="alpha must be a finite number, got nan"):
        nnx.ELU(alpha=float("nan"))
    with pytest.raises(ValueError, match="beta must be a finite number > 0, got 0"):
        nnx.Softplus(beta=0)
    with pytest.raises(ValueError, match=r"max_val \(1\) must be greater than min_val \(2\)"):
        nnx.Hardtanh(2, 1)
    with pytest.raises(ValueError, match="dim must be an integer or None, got 'x'"):
        nnx.LogSoftmax(dim="x")
    with pytest.raises(ValueError, match=r"dim 3 is out of range for input of shape \(2, 2\)"):
        nnx.LogSoftmax(dim=3)(np.ones((2, 2)))
    with pytest.raises(TypeError, match="must be a floating-point array"):
        nnx.Mish()(np.ones(3, dtype=np.int64))
    with pytest.raises(nnx.BackwardBeforeForwardError):
        nnx.SiLU().backward(np.ones(3))


def test_log_softmax_survives_huge_logits(backend):
    layer = nnx.LogSoftmax()
    y = nnx.to_numpy(layer(backend.asarray(np.array([[1e4, 0.0, -1e4]]), dtype="float32")))
    np.testing.assert_allclose(y, [[0.0, -1e4, -2e4]])
