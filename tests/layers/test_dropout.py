import numpy as np
import pytest

import nnx


def test_inverted_dropout_statistics(backend):
    layer = nnx.Dropout(0.25, rng=0)
    x = backend.asarray(np.ones((200, 200)), dtype="float32")
    y = nnx.to_numpy(layer(x))
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)  # kept values are scaled up
    assert y.dtype == np.float32


def test_eval_mode_is_identity_and_train_restores(backend):
    model = nnx.Sequential(nnx.Dropout(0.5, rng=0))
    x = backend.asarray(np.ones((10, 10)), dtype="float32")
    model.eval()
    assert model(x) is x and model.backward(x, need_input_grad=True) is x
    model.train()
    assert np.any(nnx.to_numpy(model(x)) == 0)


def test_same_seed_same_masks_new_masks_each_call(backend):
    x = backend.asarray(np.ones((30, 30)), dtype="float32")
    a, b = nnx.Dropout(0.5, rng=1), nnx.Dropout(0.5, rng=1)
    first, again = nnx.to_numpy(a(x)), nnx.to_numpy(b(x))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, nnx.to_numpy(a(x)))


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan"), "0.5", True])
def test_bad_probability(p):
    with pytest.raises(ValueError, match="p must be a probability in"):
        nnx.Dropout(p)


def test_deep_copy_after_use_continues_the_same_masks(backend):
    # gradcheck deep-copies modules; a used Dropout holds a backend generator
    import copy

    model = nnx.Sequential(nnx.Linear(3, 3, rng=0, device=backend), nnx.Dropout(0.5, rng=0))
    x = backend.asarray(np.ones((8, 3)), dtype="float32")
    model(x)
    twin = copy.deepcopy(model)
    np.testing.assert_array_equal(nnx.to_numpy(model(x)), nnx.to_numpy(twin(x)))
    assert nnx.gradcheck(model.eval(), x).ok
