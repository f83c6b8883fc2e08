import numpy as np
import pytest

import nnx


def test_flatten_and_back(backend):
    layer = nnx.Flatten()
    x = backend.asarray(np.arange(24.0).reshape(2, 3, 4), dtype="float32")
    y = layer(x)
    assert tuple(y.shape) == (2, 12)
    g = layer.backward(y)
    np.testing.assert_array_equal(nnx.to_numpy(g), nnx.to_numpy(x))


def test_flatten_checks():
    with pytest.raises(ValueError, match="start_dim must be an integer"):
        nnx.Flatten(1.5)
    with pytest.raises(ValueError, match="start_dim=2 is out of range for an input of 1 axes"):
        nnx.Flatten(2)(np.ones(3))
    with pytest.raises(ValueError, match="start_dim comes after end_dim"):
        nnx.Flatten(2, 1)(np.ones((2, 3, 4)))
    with pytest.raises(nnx.BackwardBeforeForwardError):
        nnx.Flatten().backward(np.ones((2, 3)))


def test_identity(backend):
    layer = nnx.Identity()
    x = backend.asarray(np.ones((2, 3)), dtype="float32")
    assert layer(x) is x
    assert layer.backward(x) is x
    with pytest.raises(ValueError, match="gradient has shape"):
        layer.backward(backend.asarray(np.ones((3, 3)), dtype="float32"))
