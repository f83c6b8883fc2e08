"""Standardize: preprocessing statistics as buffers, so they travel with the model."""

import numpy as np
import pytest

import nnx
from tests.conftest import host_normal


def _fitted(shape, seed=0):
    data = host_normal((50, *shape), seed) * 3.0 + 7.0
    return nnx.Standardize(shape, dtype="float64").fit(data), data


def test_fit_and_forward_match_numpy():
    layer, data = _fitted((3,))
    mean, std = data.mean(axis=0), data.std(axis=0)
    x = host_normal((4, 3), 1)
    np.testing.assert_allclose(
        nnx.to_numpy(layer.to(dtype="float64")(x)), (x - mean) / std, rtol=1e-12
    )


def test_zero_spread_features_are_centred_not_scaled():
    layer = nnx.Standardize(2).fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
    np.testing.assert_array_equal(nnx.to_numpy(layer.std.value), [1.0, 1.0])
    np.testing.assert_array_equal(nnx.to_numpy(layer(np.array([[2.0, 6.0]]))), [[0.0, 1.0]])


@pytest.mark.parametrize("shape", [(3,), (1, 2, 2)])
def test_gradcheck_on_every_backend(backend, shape):
    layer, _ = _fitted(shape)
    layer = layer.to(backend, dtype="float64")
    x = backend.asarray(host_normal((4, *shape), 2), dtype="float64")
    result = nnx.gradcheck(layer, x)
    assert result.ok, result


def test_float16_input_stays_float16(backend):
    layer, _ = _fitted((3,))
    if backend.name == "array_api_strict":
        pytest.skip("array-api-strict has no float16")
    layer = layer.to(backend)
    x = backend.asarray(host_normal((2, 3)), dtype="float16")
    assert nnx.core.checks.dtype_name(layer(x).dtype) == "float16"


def test_statistics_travel_with_the_model_file_and_checkpoint(tmp_path):
    layer, data = _fitted((1, 2, 2))
    model = nnx.Sequential(layer, nnx.Flatten(), nnx.Linear(4, 3, rng=0))
    x = data[:5].astype(np.float32)
    nnx.save_model(tmp_path / "m.npz", model)
    loaded = nnx.load_model(tmp_path / "m.npz")
    np.testing.assert_array_equal(nnx.to_numpy(loaded(x)), nnx.to_numpy(model(x)))
    fresh = nnx.Sequential(nnx.Standardize((1, 2, 2)), nnx.Flatten(), nnx.Linear(4, 3, rng=1))
    fresh.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(nnx.to_numpy(fresh(x)), nnx.to_numpy(model(x)))


def test_buffers_are_not_trained():
    layer, _ = _fitted((3,))
    assert list(layer.parameters()) == []
    assert sorted(name for name, _ in layer.named_buffers()) == ["mean", "std"]


def test_bad_input_is_one_clear_line():
    with pytest.raises(ValueError, match="Standardize: shape must be a positive integer"):
        nnx.Standardize(0)
    with pytest.raises(ValueError, match="Standardize: shape must be"):
        nnx.Standardize((2, -1))
    layer = nnx.Standardize(3)
    with pytest.raises(ValueError, match=r"Standardize\(3,\): input of shape \(2, 4\)"):
        layer(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"fit: samples of shape \(4,\), expected \(3,\)"):
        layer.fit(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        layer.fit(np.array([[1.0, np.nan, 2.0]]))
    with pytest.raises(ValueError, match="0 rows"):
        layer.fit(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="std finite and > 0"):
        layer.set_statistics(np.zeros(3), np.array([1.0, 0.0, 1.0]))
    with pytest.raises(nnx.BackwardBeforeForwardError):
        nnx.Standardize(3).backward(np.zeros((1, 3)))
