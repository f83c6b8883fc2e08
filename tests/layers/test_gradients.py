"""Every layer gradient-checked against central differences in float64, on every backend."""

import numpy as np
import pytest

import nnx
from tests.conftest import host_normal


class Reseeded(nnx.Module):
    """Dropout with its mask sequence restarted before each forward, so masks repeat exactly."""

    def __init__(self, p: float):
        self.inner = nnx.Dropout(p, rng=3)

    def forward(self, x):
        self.inner.reseed(11)
        return self.inner(x)

    def backward(self, grad_out):
        return self.inner.backward(grad_out)


LAYERS = {
    "linear": (
        lambda: nnx.Linear(4, 3, rng=0, init="he_normal", bias_init="glorot_uniform"),
        (5, 4),
    ),
    "linear-3d-input": (lambda: nnx.Linear(4, 3, rng=1, bias_init="he_uniform"), (2, 3, 4)),
    "linear-1d-input": (lambda: nnx.Linear(4, 3, rng=2, bias_init="he_uniform"), (4,)),
    "linear-no-bias": (lambda: nnx.Linear(4, 3, bias=False, rng=3), (5, 4)),
    "relu": (nnx.ReLU, (4, 5)),
    "leaky-relu": (lambda: nnx.LeakyReLU(0.2), (4, 5)),
    "sigmoid": (nnx.Sigmoid, (4, 5)),
    "tanh": (nnx.Tanh, (4, 5)),
    "softmax": (nnx.Softmax, (4, 5)),
    "softmax-axis0": (lambda: nnx.Softmax(axis=0), (4, 5)),
    "gelu": (nnx.GELU, (4, 5)),
    "identity": (nnx.Identity, (3, 2)),
    "flatten": (nnx.Flatten, (2, 3, 2)),
    "dropout-train": (lambda: Reseeded(0.4), (6, 5)),
    "dropout-eval": (lambda: nnx.Dropout(0.4, rng=0).eval(), (6, 5)),
    "mlp": (
        lambda: nnx.Sequential(
            nnx.Flatten(),
            nnx.Linear(6, 5, rng=0, bias_init="he_normal"),
            nnx.Tanh(),
            nnx.Linear(5, 4, rng=1, bias_init="he_normal"),
            nnx.GELU(),
            nnx.Linear(4, 3, rng=2),
            nnx.Softmax(),
        ),
        (4, 2, 3),
    ),
}


@pytest.mark.parametrize("name", LAYERS)
def test_layer_gradients_match_finite_differences(backend, name):
    make, shape = LAYERS[name]
    x = backend.asarray(host_normal(shape, seed=1, away_from_zero=0.05), dtype="float64")
    result = nnx.gradcheck(make(), x)
    assert result.ok, str(result)
    assert "input" in result.errors


def test_dropout_train_gradient_is_the_mask(backend):
    layer = nnx.Dropout(0.5, rng=0)
    x = backend.asarray(np.ones((50, 40)), dtype="float32")
    y = layer(x)
    g = layer.backward(backend.asarray(np.ones((50, 40)), dtype="float32"))
    np.testing.assert_array_equal(nnx.to_numpy(g), nnx.to_numpy(y))  # both are the scaled mask
