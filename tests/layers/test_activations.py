import math

import numpy as np
import pytest

import nnx
from tests.conftest import host_normal

ACTIVATIONS = [nnx.ReLU, lambda: nnx.LeakyReLU(0.1), nnx.Sigmoid, nnx.Tanh, nnx.Softmax, nnx.GELU]


def _run(backend, layer, values, dtype="float64"):
    x = backend.asarray(np.asarray(values), dtype=dtype)
    y = layer(x)
    g = layer.backward(backend.asarray(np.ones(x.shape), dtype=dtype))
    return nnx.to_numpy(y), nnx.to_numpy(g)


def test_relu_values_and_kink(backend):
    y, g = _run(backend, nnx.ReLU(), [-2.0, -0.0, 0.0, 3.0])
    np.testing.assert_array_equal(y, [0, 0, 0, 3])
    np.testing.assert_array_equal(g, [0, 0, 0, 1])  # ReLU'(0) is taken as 0


def test_leaky_relu_values(backend):
    y, g = _run(backend, nnx.LeakyReLU(0.1), [-2.0, 0.0, 3.0])
    np.testing.assert_allclose(y, [-0.2, 0.0, 3.0])
    np.testing.assert_allclose(g, [0.1, 0.1, 1.0])


def test_sigmoid_and_tanh_values(backend):
    y, g = _run(backend, nnx.Sigmoid(), [0.0, 2.0])
    s = 1 / (1 + math.exp(-2.0))
    np.testing.assert_allclose(y, [0.5, s])
    np.testing.assert_allclose(g, [0.25, s * (1 - s)])
    y, g = _run(backend, nnx.Tanh(), [0.5])
    np.testing.assert_allclose(y, [math.tanh(0.5)])
    np.testing.assert_allclose(g, [1 - math.tanh(0.5) ** 2])


def test_sigmoid_saturates_without_overflow(backend):
    y, g = _run(backend, nnx.Sigmoid(), [-1e4, 1e4], dtype="float32")
    np.testing.assert_array_equal(y, [0.0, 1.0])
    assert np.all(np.isfinite(g))


def test_softmax_rows_sum_to_one_and_survive_huge_logits(backend):
    y, _ = _run(backend, nnx.Softmax(), [[1e4, 0.0, -1e4], [1.0, 2.0, 3.0]], dtype="float32")
    np.testing.assert_allclose(y.sum(axis=1), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(y[0], [1.0, 0.0, 0.0])


def test_gelu_values(backend):
    y, _ = _run(backend, nnx.GELU(approximate="tanh"), [-1.0, 0.0, 1.0])
    c = math.sqrt(2 / math.pi)
    expect = [0.5 * v * (1 + math.tanh(c * (v + 0.044715 * v**3))) for v in (-1.0, 0.0, 1.0)]
    np.testing.assert_allclose(y, expect)


@pytest.mark.parametrize("make", ACTIVATIONS)
def test_float32_stays_float32(backend, make):
    layer = make()
    x = backend.asarray(host_normal((3, 4)), dtype="float32")
    y = layer(x)
    g = layer.backward(y)
    assert y.dtype == backend.xp.float32 and g.dtype == backend.xp.float32


@pytest.mark.parametrize("make", ACTIVATIONS)
def test_integer_input_and_backward_before_forward(backend, make):
    layer = make()
    with pytest.raises(TypeError, match="must be a floating-point array, got dtype int64"):
        layer(backend.asarray(np.ones((2, 2), dtype=np.int64)))
    with pytest.raises(nnx.BackwardBeforeForwardError, match="backward called before forward"):
        make().backward(backend.asarray(np.ones((2, 2)), dtype="float32"))


def test_bad_arguments():
    with pytest.raises(ValueError, match="negative_slope must be a finite number, got nan"):
        nnx.LeakyReLU(float("nan"))
    with pytest.raises(ValueError, match="axis must be an integer, got 1.5"):
        nnx.Softmax(axis=1.5)
    with pytest.raises(ValueError, match=r"axis 2 is out of range for input of shape \(2, 2\)"):
        nnx.Softmax(axis=2)(np.ones((2, 2)))


@pytest.mark.torch
@pytest.mark.parametrize(
    "make, reference",
    [
        (nnx.ReLU, "relu"),
        (lambda: nnx.LeakyReLU(0.2), "leaky_relu"),
        (nnx.Sigmoid, "sigmoid"),
        (nnx.Tanh, "tanh"),
        (nnx.Softmax, "softmax"),
        (lambda: nnx.GELU(approximate="tanh"), "gelu"),
    ],
)
def test_matches_pytorch_autograd(make, reference):
    torch = pytest.importorskip("torch")
    fns = {
        "relu": torch.relu,
        "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, 0.2),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "softmax": lambda t: torch.softmax(t, dim=-1),
        "gelu": lambda t: torch.nn.functional.gelu(t, approximate="tanh"),
    }
    x = host_normal((4, 6), away_from_zero=0.01)
    g = host_normal((4, 6), seed=2)
    layer = make()
    y = layer(x)
    dx = layer.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = fns[reference](tx)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-12, atol=1e-12)
