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


def test_rows_of_a_global_batch_get_the_one_process_mask(backend):
    x = backend.asarray(np.ones((7, 3)))
    whole = nnx.Dropout(0.4, rng=5)
    expected = nnx.to_numpy(whole(x))
    for start, stop in [(0, 3), (3, 5), (5, 7), (7, 7)]:
        part = nnx.Dropout(0.4, rng=5)
        part.rows = (start, stop, 7)
        got = part(backend.asarray(np.ones((stop - start, 3))))
        np.testing.assert_array_equal(nnx.to_numpy(got), expected[start:stop])
    part.rows = (0, 3, 7)
    with pytest.raises(ValueError, match=r"rows 0:3 of a global batch of 7.*shape \(2, 3\)"):
        part(backend.asarray(np.ones((2, 3))))


def test_dropout2d_rows_of_a_global_batch_get_the_one_process_mask(backend):
    x = backend.asarray(np.ones((5, 4, 2, 2)))
    expected = nnx.to_numpy(nnx.Dropout2d(0.5, rng=3)(x))
    for start, stop in [(0, 2), (2, 4), (4, 5)]:
        part = nnx.Dropout2d(0.5, rng=3)
        part.rows = (start, stop, 5)
        got = part(backend.asarray(np.ones((stop - start, 4, 2, 2))))
        np.testing.assert_array_equal(nnx.to_numpy(got), expected[start:stop])
