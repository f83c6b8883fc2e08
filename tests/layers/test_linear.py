import numpy as np
import pytest

import nnx
from tests.conftest import host_normal


def test_forward_is_x_at_w_plus_b(backend):
    layer = nnx.Linear(3, 2, rng=0, bias_init="he_normal", device=backend)
    x = host_normal((4, 3)).astype(np.float32)
    w, b = nnx.to_numpy(layer.weight.value), nnx.to_numpy(layer.bias.value)
    assert w.shape == (3, 2) and b.shape == (2,)
    y = layer(backend.asarray(x))
    np.testing.assert_allclose(nnx.to_numpy(y), x @ w + b, rtol=1e-6, atol=1e-6)


def test_same_seed_same_initial_weights_and_output_on_every_backend(backend):
    reference = nnx.Sequential(nnx.Linear(5, 4, rng=42), nnx.ReLU(), nnx.Linear(4, 2, rng=43))
    model = nnx.Sequential(
        nnx.Linear(5, 4, rng=42, device=backend),
        nnx.ReLU(),
        nnx.Linear(4, 2, rng=43, device=backend),
    )
    for (name, p), (_, q) in zip(
        reference.named_parameters(), model.named_parameters(), strict=True
    ):
        np.testing.assert_array_equal(nnx.to_numpy(p.value), nnx.to_numpy(q.value), err_msg=name)
    x = host_normal((3, 5)).astype(np.float32)
    np.testing.assert_allclose(
        nnx.to_numpy(model(backend.asarray(x))), nnx.to_numpy(reference(x)), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "init",
    ["he_normal", "he_uniform", "glorot_normal", "glorot_uniform", "xavier_uniform", "zeros"],
)
def test_initializers_have_the_documented_scale(init):
    w = nnx.to_numpy(nnx.Linear(400, 600, init=init, rng=0, dtype="float64").weight.value)
    expected_std = {
        "he_normal": np.sqrt(2 / 400),
        "he_uniform": np.sqrt(2 / 400),
        "glorot_normal": np.sqrt(2 / 1000),
        "glorot_uniform": np.sqrt(2 / 1000),
        "xavier_uniform": np.sqrt(2 / 1000),
        "zeros": 0.0,
    }[init]
    assert w.std() == pytest.approx(expected_std, rel=0.02, abs=1e-12)


def test_custom_initializer_callable():
    layer = nnx.Linear(2, 2, init=lambda shape, rng: np.full(shape, 0.5))
    np.testing.assert_array_equal(
        nnx.to_numpy(layer.weight.value), np.full((2, 2), 0.5, np.float32)
    )


def test_bad_construction_arguments():
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="in_features must be a positive integer"):
            nnx.Linear(bad, 3)
    with pytest.raises(ValueError, match="unknown initializer 'lecun'"):
        nnx.Linear(2, 3, init="lecun")
    with pytest.raises(TypeError, match="rng must be"):
        nnx.Linear(2, 3, rng="seed")


def test_wrong_feature_size_names_layer_and_shapes(backend):
    layer = nnx.Linear(4, 3, rng=0, device=backend)
    with pytest.raises(
        ValueError,
        match=r"Linear\(4, 3\): expected input of shape \(\.\.\., 4\), got shape \(2, 5\)",
    ):
        layer(backend.asarray(np.zeros((2, 5)), dtype="float32"))


def test_integer_input_is_a_type_error(backend):
    layer = nnx.Linear(2, 3, rng=0, device=backend)
    with pytest.raises(
        TypeError, match=r"Linear\(2, 3\): input must be a floating-point array, got dtype int64"
    ):
        layer(backend.asarray(np.ones((4, 2), dtype=np.int64)))


def test_dtype_mismatch_is_a_type_error_not_a_silent_promotion(backend):
    layer = nnx.Linear(2, 3, rng=0, device=backend)
    with pytest.raises(
        TypeError, match="input dtype float64 does not match the parameters' dtype float32"
    ):
        layer(backend.asarray(np.ones((4, 2)), dtype="float64"))


def test_input_on_another_device_is_a_value_error():
    layer = nnx.Linear(2, 3, rng=0, device="strict:device1")
    x = nnx.get_backend("strict").asarray(np.ones((4, 2)), dtype="float32")
    with pytest.raises(
        ValueError, match=r"input is on device .*CPU_DEVICE.* but the parameters are on .*device1"
    ):
        layer(x)


def test_backward_checks(backend):
    layer = nnx.Linear(2, 3, rng=0, device=backend)
    with pytest.raises(
        nnx.BackwardBeforeForwardError, match="Linear.2, 3..backward called before forward"
    ):
        layer.backward(backend.asarray(np.ones((4, 3)), dtype="float32"))
    layer(backend.asarray(np.ones((4, 2)), dtype="float32"))
    with pytest.raises(
        ValueError, match=r"gradient has shape \(4, 2\) but the forward output had shape \(4, 3\)"
    ):
        layer.backward(backend.asarray(np.ones((4, 2)), dtype="float32"))
