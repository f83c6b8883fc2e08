import numpy as np
import pytest

import nnx


class WrongReLU(nnx.ReLU):
    """A deliberately broken backward: gradcheck must catch it."""

    def backward(self, grad_out):
        return grad_out


def test_reports_every_tensor_and_passes_correct_layers():
    result = nnx.gradcheck(
        nnx.Linear(3, 2, rng=0), np.random.default_rng(0).standard_normal((4, 3))
    )
    assert set(result.errors) == {"input", "weight", "bias"}
    assert result.ok and result.worst[1] < 1e-8
    assert "weight" in str(result) and "ok" in str(result)


def test_catches_a_wrong_backward():
    x = np.array([[-1.0, 2.0, -3.0]])
    result = nnx.gradcheck(WrongReLU(), x)
    assert not result.ok
    assert result.worst[0] == "input" and result.worst[1] > 0.5
    assert "FAIL" in str(result)


def test_leaves_the_module_untouched():
    layer = nnx.Linear(3, 2, rng=0)
    before = layer.state_dict()
    nnx.gradcheck(layer, np.ones((2, 3), dtype=np.float32))
    assert layer.weight.value.dtype == np.float32 and layer.weight.grad is None
    np.testing.assert_array_equal(layer.state_dict()["weight"], before["weight"])


def test_checks_in_float64_even_for_float32_inputs(backend):
    x = backend.asarray(np.random.default_rng(0).standard_normal((3, 4)), dtype="float32")
    assert nnx.gradcheck(nnx.Softmax(), x).ok


def test_argument_errors():
    with pytest.raises(ValueError, match="MSELoss needs a target"):
        nnx.gradcheck(nnx.MSELoss(), np.ones(3))
    with pytest.raises(TypeError, match="expected an nnx Module or Loss"):
        nnx.gradcheck(np.ones(3), np.ones(3))
    with pytest.raises(TypeError, match="must be an nnx.Loss.*wrap it in a subclass"):
        nnx.gradcheck(lambda x: x, np.ones(3))


class PlainLayerNorm(nnx.Module):
    """Normalise each row to zero mean and unit variance (no affine part), written the way
    docs/custom-layer.md teaches. Its Jacobian maps the input itself to zero."""

    def forward(self, x):
        xp = nnx.namespace(x)
        mu = xp.mean(x, axis=-1, keepdims=True)
        self._inv = 1.0 / xp.sqrt(xp.mean((x - mu) ** 2, axis=-1, keepdims=True) + 1e-5)
        self._xhat = (x - mu) * self._inv
        return self._xhat

    def backward(self, grad_out):
        xp = nnx.namespace(grad_out)
        g, xhat = grad_out, self._xhat
        mean_g = xp.mean(g, axis=-1, keepdims=True)
        mean_gx = xp.mean(g * xhat, axis=-1, keepdims=True)
        return self._inv * (g - mean_g - xhat * mean_gx)


class BrokenLayerNorm(PlainLayerNorm):
    def backward(self, grad_out):  # forgets the mean of g * xhat term
        xp = nnx.namespace(grad_out)
        return self._inv * (grad_out - xp.mean(grad_out, axis=-1, keepdims=True))


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_probe_weights_never_equal_an_input_drawn_with_the_same_seed(seed):
    """The docs draw x with default_rng(0) and gradcheck's default seed is 0 too: the probe must
    not be x, or LayerNorm's gradients all vanish and a correct backward fails."""
    x = np.random.default_rng(seed).standard_normal((4, 5))
    good = nnx.gradcheck(PlainLayerNorm(), x, seed=seed)
    assert good.ok, str(good)
    bad = nnx.gradcheck(BrokenLayerNorm(), x, seed=seed)
    assert not bad.ok and bad.worst[0] == "input"
