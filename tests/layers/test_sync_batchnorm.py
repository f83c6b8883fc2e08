"""SyncBatchNorm in one process (its multi-rank behaviour is tested under MPI in
tests/distributed): a plain BatchNorm there, compared with torch, gradient-checked on every
backend, converted in place, saved and loaded as a model file."""

import numpy as np
import pytest

import nnx
from tests.conftest import host_normal
from tests.layers.torch_oracle import compare


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (4, 3, 5, 4), (2, 3, 2, 3, 2)])
def test_one_process_sync_batchnorm_matches_torch_batchnorm(shape):
    torch = pytest.importorskip("torch")
    theirs = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d}
    tlayer = theirs.get(len(shape), torch.nn.BatchNorm3d)(3, momentum=0.3)
    layer = nnx.SyncBatchNorm(3, momentum=0.3)
    layer.weight.value = np.array([0.5, 1.5, -2.0], np.float32)
    layer.bias.value = np.array([0.1, -0.2, 0.3], np.float32)
    layer = compare(layer, tlayer, shape, steps=3, seed=0)
    compare(layer, tlayer, shape, steps=2, seed=1, train=False)


@pytest.mark.parametrize("train", [True, False])
def test_sync_batchnorm_gradients_match_finite_differences(backend, train):
    layer = nnx.SyncBatchNorm(2, dtype="float64")
    layer(host_normal((4, 2, 3), seed=5) * 2 + 1)  # running statistics that are not 0 and 1
    layer.train(train)
    x = backend.asarray(host_normal((3, 2, 2, 2), seed=1), dtype="float64")
    result = nnx.gradcheck(layer.to(backend), x)
    assert result.ok, str(result)


def test_convert_sync_batchnorm_keeps_parameters_buffers_and_references(tmp_path):
    bn1, bn2 = nnx.BatchNorm1d(4), nnx.BatchNorm2d(3)
    conv = nnx.Sequential(nnx.Conv2d(2, 3, 3), bn2, nnx.ReLU(), nnx.Flatten())
    model = nnx.Sequential(conv, nnx.Linear(3, 4), bn1, nnx.GroupNorm(2, 4))
    model(host_normal((5, 2, 3, 3)).astype(np.float32))
    before = model.state_dict()
    assert nnx.SyncBatchNorm.convert_sync_batchnorm(model) is model
    assert type(bn1) is type(bn2) is nnx.SyncBatchNorm  # the same objects, converted
    assert model[0][1] is bn2 and model[2] is bn1
    assert type(model[3]) is nnx.GroupNorm
    after = model.state_dict()
    assert sorted(after) == sorted(before)
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value)
    nnx.save_model(tmp_path / "model.npz", model)
    loaded = nnx.load_model(tmp_path / "model.npz")
    assert [type(m).__name__ for m in loaded.modules()] == [
        type(m).__name__ for m in model.modules()
    ]


def test_sync_batchnorm_bad_input_and_arguments():
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C, \*\) with C=3"):
        nnx.SyncBatchNorm(3)(np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C, \*\)"):
        nnx.SyncBatchNorm(3)(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="expected more than 1 value per channel"):
        nnx.SyncBatchNorm(3)(np.ones((1, 3), np.float32))
    with pytest.raises(ValueError, match="num_features must be a positive integer"):
        nnx.SyncBatchNorm(0)
