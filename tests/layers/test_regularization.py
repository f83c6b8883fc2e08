import numpy as np
import pytest

import nnx
from tests.conftest import host_normal


def _layer(backend, **penalties):
    return nnx.Linear(
        4, 3, rng=0, bias_init="he_normal", device=backend, dtype="float64", **penalties
    )


def test_penalty_value_by_hand():
    layer = nnx.Linear(
        2,
        1,
        init=lambda s, r: np.array([[1.0], [-2.0]]),
        weight_l1=0.1,
        weight_l2=0.01,
        bias_l2=0.5,
    )
    layer.bias.value = np.array([3.0], dtype=np.float32)
    # 0.1 * (1 + 2) + 0.01 * (1 + 4) + 0.5 * 9
    assert float(layer.penalty()) == pytest.approx(0.3 + 0.05 + 4.5)
    model = nnx.Sequential(
        layer, nnx.ReLU(), nnx.Linear(1, 1, weight_l2=1.0, init=lambda s, r: np.full(s, 2.0))
    )
    assert float(model.regularization_loss()) == pytest.approx(0.3 + 0.05 + 4.5 + 4.0)
    assert nnx.Sequential(nnx.Linear(2, 2)).regularization_loss() == 0.0


@pytest.mark.parametrize(
    "penalties",
    [
        {"weight_l1": 0.1},
        {"weight_l2": 0.2},
        {"bias_l1": 0.3, "bias_l2": 0.05},
        {"weight_l1": 0.1, "weight_l2": 0.1, "bias_l1": 0.1, "bias_l2": 0.1},
    ],
)
def test_penalty_gradients_match_finite_differences(backend, penalties):
    x = backend.asarray(host_normal((5, 4)), dtype="float64")
    result = nnx.gradcheck(_layer(backend, **penalties), x)
    assert result.ok, str(result)


def test_penalty_adds_to_the_plain_gradient(backend):
    plain, penalised = _layer(backend), _layer(backend, weight_l2=0.5)
    x = backend.asarray(host_normal((5, 4)), dtype="float64")
    g = backend.asarray(np.ones((5, 3)), dtype="float64")
    for layer in (plain, penalised):
        layer(x)
        layer.backward(g)
    expected = nnx.to_numpy(plain.weight.grad) + 2 * 0.5 * nnx.to_numpy(plain.weight.value)
    np.testing.assert_allclose(nnx.to_numpy(penalised.weight.grad), expected)
    np.testing.assert_allclose(nnx.to_numpy(penalised.bias.grad), nnx.to_numpy(plain.bias.grad))


def test_bad_penalty():
    with pytest.raises(ValueError, match="Linear: weight_l2 must be a finite number >= 0, got -1"):
        nnx.Linear(2, 2, weight_l2=-1)
    assert "weight_l1=0.1" in repr(nnx.Linear(2, 2, weight_l1=0.1))
