"""BatchNorm and GroupNorm: PyTorch comparison across train steps and eval, gradient checks on
every backend, buffers in state dicts and checkpoints, errors."""

import numpy as np
import pytest

import nnx
from tests.conftest import host_normal
from tests.layers.torch_oracle import compare


@pytest.mark.torch
@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(momentum=0.3, eps=1e-3),
        dict(momentum=None),
        dict(affine=False),
        dict(track_running_stats=False),
        dict(affine=False, track_running_stats=False),
    ],
    ids=str,
)
@pytest.mark.parametrize("kind, shape", [("2d", (4, 3, 5, 4)), ("1d", (6, 3)), ("1d", (4, 3, 5))])
def test_batchnorm_several_train_steps_then_eval_match_torch(kind, shape, options):
    torch = pytest.importorskip("torch")
    ours = nnx.BatchNorm2d if kind == "2d" else nnx.BatchNorm1d
    theirs = torch.nn.BatchNorm2d if kind == "2d" else torch.nn.BatchNorm1d
    layer, tlayer = ours(3, **options), theirs(3, **options)
    if layer.affine:  # not the initial ones and zeros, so the affine part is exercised
        layer.weight.value = np.array([0.5, 1.5, -2.0], np.float32)
        layer.bias.value = np.array([0.1, -0.2, 0.3], np.float32)
    layer = compare(layer, tlayer, shape, steps=3, seed=0)
    compare(layer, tlayer, shape, steps=2, seed=1, train=False)
    if layer.track_running_stats:
        assert int(nnx.to_numpy(layer.num_batches_tracked.value)) == 3


@pytest.mark.torch
def test_groupnorm_matches_torch():
    torch = pytest.importorskip("torch")
    for groups, channels, shape, affine in [
        (2, 4, (3, 4, 5, 3), True),
        (1, 3, (2, 3, 4), False),
        (3, 3, (2, 3, 2, 2), True),
        (2, 4, (3, 4), True),
    ]:
        layer = nnx.GroupNorm(groups, channels, affine=affine)
        if affine:
            layer.weight.value = np.linspace(-1, 2, channels).astype(np.float32)
            layer.bias.value = np.linspace(0.5, -0.5, channels).astype(np.float32)
        compare(layer, torch.nn.GroupNorm(groups, channels, affine=affine), shape)


GRADCHECK = {
    "batchnorm2d-train": (lambda: nnx.BatchNorm2d(2), (3, 2, 2, 2)),
    "batchnorm1d-train": (lambda: nnx.BatchNorm1d(3, momentum=None), (4, 3)),
    "batchnorm1d-3d-no-affine": (lambda: nnx.BatchNorm1d(2, affine=False), (2, 2, 3)),
    "batchnorm2d-eval": (lambda: _trained_bn().eval(), (2, 2, 2, 2)),
    "batchnorm2d-no-stats-eval": (
        lambda: nnx.BatchNorm2d(2, track_running_stats=False).eval(),
        (2, 2, 2, 2),
    ),
    "groupnorm": (lambda: nnx.GroupNorm(2, 4), (2, 4, 2, 2)),
    "groupnorm-no-affine": (lambda: nnx.GroupNorm(1, 2, affine=False), (2, 2, 3)),
}


def _trained_bn():
    bn = nnx.BatchNorm2d(2, dtype="float64")
    bn(host_normal((4, 2, 3, 3), seed=5) * 2 + 1)
    bn.weight.value = np.array([0.7, -1.3])
    return bn


@pytest.mark.parametrize("name", GRADCHECK)
def test_norm_gradients_match_finite_differences(backend, name):
    make, shape = GRADCHECK[name]
    x = backend.asarray(host_normal(shape, seed=1), dtype="float64")
    result = nnx.gradcheck(make().to(backend), x)
    assert result.ok, str(result)


def test_buffers_are_state_but_not_parameters(backend):
    bn = nnx.BatchNorm2d(3, device=backend)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in bn.named_buffers()] == [
        "running_mean",
        "running_var",
        "num_batches_tracked",
    ]
    bn(backend.asarray(host_normal((4, 3, 2, 2)), dtype="float32"))
    state = bn.state_dict()
    assert set(state) == {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
    assert state["num_batches_tracked"].dtype == np.int64 and int(state["num_batches_tracked"]) == 1
    fresh = nnx.BatchNorm2d(3, device=backend).load_state_dict(state)
    for name, b in fresh.named_buffers():
        np.testing.assert_array_equal(nnx.to_numpy(b.value), state[name])
    bn.to(dtype="float64")
    assert bn.running_mean.dtype == backend.dtype("float64")
    assert bn.num_batches_tracked.dtype == backend.dtype("int64")


def test_batchnorm_training_with_one_value_per_channel_is_an_error():
    with pytest.raises(ValueError, match="expected more than 1 value per channel when training"):
        nnx.BatchNorm1d(3)(np.ones((1, 3), np.float32))
    # evaluation with running statistics is fine
    assert nnx.BatchNorm1d(3).eval()(np.ones((1, 3), np.float32)).shape == (1, 3)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: nnx.BatchNorm2d(0), "num_features must be a positive integer"),
        (lambda: nnx.BatchNorm2d(3, momentum=1.5), "momentum must be a finite number in"),
        (lambda: nnx.BatchNorm2d(3, eps=0), "eps must be a finite number > 0"),
        (lambda: nnx.GroupNorm(3, 4), r"num_channels \(4\) must be divisible by num_groups \(3\)"),
        (lambda: nnx.GroupNorm(0, 4), "num_groups must be a positive integer"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs():
    with pytest.raises(
        ValueError, match=r"BatchNorm2d\(3\): expected input of shape \(N, C, H, W\) with C=3"
    ):
        nnx.BatchNorm2d(3)(np.ones((2, 3, 4), np.float32))
    with pytest.raises(
        ValueError, match=r"expected input of shape \(N, C\) or \(N, C, L\) with C=3"
    ):
        nnx.BatchNorm1d(3)(np.ones((2, 4), np.float32))
    with pytest.raises(TypeError, match="does not match the parameters' dtype"):
        nnx.BatchNorm1d(3)(np.ones((2, 3), np.float64))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C, \*\) with C=4"):
        nnx.GroupNorm(2, 4)(np.ones((2, 3, 2), np.float32))
    with pytest.raises(nnx.BackwardBeforeForwardError):
        nnx.GroupNorm(2, 4).backward(np.ones((2, 4), np.float32))


def test_dropout2d_drops_whole_channels_and_matches_its_gradient(backend):
    layer = nnx.Dropout2d(0.5, rng=0)
    x = backend.asarray(host_normal((8, 6, 3, 3)) + 10, dtype="float32")
    y = nnx.to_numpy(layer(x))
    kept = (y != 0).reshape(8, 6, 9)
    assert np.all(kept.all(axis=2) | (~kept).all(axis=2))  # each channel all kept or all dropped
    assert 0.25 < kept.mean() < 0.75
    g = nnx.to_numpy(layer.backward(backend.asarray(np.ones((8, 6, 3, 3)), dtype="float32")))
    np.testing.assert_array_equal(g != 0, y != 0)
    np.testing.assert_allclose(g[g != 0], 2.0)
    layer.eval()
    assert layer(x) is x


def test_dropout2d_is_reseeded_by_the_trainer_like_dropout():
    assert issubclass(nnx.Dropout2d, nnx.Dropout)
    a, b = nnx.Dropout2d(0.5, rng=0), nnx.Dropout2d(0.5, rng=1)
    x = np.ones((4, 8, 2, 2), np.float32)
    a.reseed(7)
    b.reseed(7)
    np.testing.assert_array_equal(a(x), b(x))
    with pytest.raises(ValueError, match=r"Dropout2d: expected input of shape \(N, C, H, W\)"):
        a(np.ones((4, 8), np.float32))
