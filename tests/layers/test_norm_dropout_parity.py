"""BatchNorm3d, InstanceNorm1d/2d/3d, LocalResponseNorm, the norms' ``bias=False``, and the
channel and alpha dropouts: PyTorch in float64 on three backends (including PyTorch's own
module_db inputs), gradient checks on every backend, statistics, seeding and errors."""

import numpy as np
import pytest

import nnx
from tests.conftest import host_normal
from tests.layers.torch_oracle import ORACLE_BACKENDS, check_torch_module_db, compare

INSTANCE = [
    dict(),
    dict(affine=True),
    dict(affine=True, bias=False),
    dict(track_running_stats=True, momentum=0.2),
    dict(affine=True, track_running_stats=True, eps=1e-3),
    dict(track_running_stats=True, momentum=None),
]
SHAPES = {1: (3, 2, 5), 2: (2, 2, 3, 4), 3: (2, 2, 3, 2, 3)}


@pytest.mark.torch
@pytest.mark.parametrize("backend_spec", ORACLE_BACKENDS)
@pytest.mark.parametrize("options", INSTANCE, ids=str)
def test_instance_norm_matches_torch_in_training_and_evaluation(backend_spec, options):
    torch = pytest.importorskip("torch")
    for d, shape in SHAPES.items():
        name = f"InstanceNorm{d}d"
        layer = getattr(nnx, name)(2, **options)
        tlayer = getattr(torch.nn, name)(2, **options)
        layer = compare(layer, tlayer, shape, steps=2, backend=backend_spec)
        compare(layer, tlayer, shape, steps=1, seed=1, train=False, backend=backend_spec)
        compare(layer, tlayer, shape[1:], seed=2, backend=backend_spec)  # unbatched


@pytest.mark.torch
@pytest.mark.parametrize("backend_spec", ORACLE_BACKENDS)
def test_batchnorm3d_and_bias_free_norms_match_torch(backend_spec):
    torch = pytest.importorskip("torch")
    shape = (2, 3, 2, 3, 2)
    for options in (dict(), dict(bias=False), dict(momentum=None, affine=False)):
        layer = compare(
            nnx.BatchNorm3d(3, **options),
            torch.nn.BatchNorm3d(3, **options),
            shape,
            steps=2,
            backend=backend_spec,
        )
        compare(layer, torch.nn.BatchNorm3d(3, **options), shape, train=False, backend=backend_spec)
    compare(
        nnx.BatchNorm1d(3, bias=False),
        torch.nn.BatchNorm1d(3, bias=False),
        (4, 3),
        backend=backend_spec,
    )
    compare(
        nnx.GroupNorm(2, 4, bias=False),
        torch.nn.GroupNorm(2, 4, bias=False),
        (2, 4, 3),
        backend=backend_spec,
    )


@pytest.mark.torch
@pytest.mark.parametrize("backend_spec", ORACLE_BACKENDS)
@pytest.mark.parametrize(
    "args, shape",
    [
        ((2,), (2, 5, 3)),
        ((3, 1e-2, 0.5, 2.0), (2, 4, 3, 2)),
        ((4, 0.3, 0.9, 0.5), (1, 6, 2, 2, 2)),
        ((1,), (2, 3, 2)),
    ],
    ids=str,
)
def test_local_response_norm_matches_torch(backend_spec, args, shape):
    torch = pytest.importorskip("torch")
    compare(
        nnx.LocalResponseNorm(*args), torch.nn.LocalResponseNorm(*args), shape, backend=backend_spec
    )


def _module_db_kwargs(args, kwargs):
    kwargs = {k: v for k, v in kwargs.items() if k not in ("device", "dtype")}
    return args, kwargs


@pytest.mark.torch
@pytest.mark.parametrize(
    "name",
    [
        "InstanceNorm1d",
        "InstanceNorm2d",
        "InstanceNorm3d",
        "BatchNorm3d",
        "LocalResponseNorm",
        "GroupNorm",
    ],
)
def test_norms_match_torch_on_pytorchs_module_db_inputs(name):
    pytest.importorskip("torch")

    def make(args, kwargs):
        args, kwargs = _module_db_kwargs(args, kwargs)
        return getattr(nnx, name)(*args, **kwargs)

    check_torch_module_db(name, make=make, backends=("numpy", "strict:device1"))


class Reseeded(nnx.Module):
    """A dropout layer with its random stream restarted before each forward (repeatable masks)."""

    def __init__(self, inner):
        self.inner = inner

    def forward(self, x):
        self.inner.reseed(5)
        return self.inner(x)

    def backward(self, g):
        return self.inner.backward(g)


GRADCHECK = {
    "batchnorm3d": (lambda: nnx.BatchNorm3d(2, bias=False), (2, 2, 2, 1, 2)),
    "instancenorm1d-affine": (lambda: nnx.InstanceNorm1d(2, affine=True), (2, 2, 4)),
    "instancenorm2d-running-eval": (
        lambda: nnx.InstanceNorm2d(2, track_running_stats=True).eval(),
        (1, 2, 2, 2),
    ),
    "instancenorm3d-unbatched": (lambda: nnx.InstanceNorm3d(2), (2, 2, 1, 2)),
    "local-response": (lambda: nnx.LocalResponseNorm(3, alpha=0.5, beta=0.7, k=1.5), (2, 4, 2)),
    "dropout1d": (lambda: Reseeded(nnx.Dropout1d(0.4, rng=0)), (2, 3, 3)),
    "dropout3d": (lambda: Reseeded(nnx.Dropout3d(0.4, rng=0)), (2, 3, 1, 2, 1)),
    "alpha-dropout": (lambda: Reseeded(nnx.AlphaDropout(0.3, rng=0)), (3, 4)),
    "feature-alpha-dropout": (lambda: Reseeded(nnx.FeatureAlphaDropout(0.3, rng=0)), (2, 3, 2)),
}


CHAINS = {
    "3d": (
        lambda: nnx.Sequential(
            nnx.InstanceNorm1d(4, affine=True),
            nnx.LocalResponseNorm(3, alpha=0.5, beta=0.7, k=1.5),
            Reseeded(nnx.Dropout1d(0.4, rng=0)),
            Reseeded(nnx.AlphaDropout(0.3, rng=1)),
            Reseeded(nnx.FeatureAlphaDropout(0.3, rng=2)),
        ),
        (2, 4, 3),
    ),
    "5d": (
        lambda: nnx.Sequential(
            # InstanceNorm first: after it, a per-channel scale would be normalized away
            nnx.InstanceNorm3d(2),
            nnx.BatchNorm3d(2, bias=False),
            Reseeded(nnx.Dropout3d(0.4)),
        ),
        (2, 2, 2, 1, 2),
    ),
}


@pytest.mark.parametrize("name", CHAINS)
def test_chained_layers_match_finite_differences(backend, name):
    """Every layer of this file in two chains, on every backend (one gradcheck per chain keeps
    the default run short; each layer alone runs under the slow marker)."""
    make, shape = CHAINS[name]
    x = backend.asarray(host_normal(shape, seed=1, away_from_zero=0.05), dtype="float64")
    result = nnx.gradcheck(make(), x)
    assert result.ok, str(result)


@pytest.mark.slow
@pytest.mark.parametrize("name", GRADCHECK)
def test_gradients_match_finite_differences(backend, name):
    make, shape = GRADCHECK[name]
    x = backend.asarray(host_normal(shape, seed=1, away_from_zero=0.05), dtype="float64")
    result = nnx.gradcheck(make(), x)
    assert result.ok, str(result)


@pytest.mark.parametrize(
    "cls, shape, mask_shape",
    [
        (nnx.Dropout1d, (4, 5, 6), (4, 5, 1)),
        (nnx.Dropout1d, (5, 6), (5, 1)),
        (nnx.Dropout3d, (2, 5, 2, 3, 2), (2, 5, 1, 1, 1)),
        (nnx.Dropout3d, (5, 2, 3, 2), (5, 1, 1, 1)),
        (nnx.FeatureAlphaDropout, (4, 5, 3, 2), (4, 5, 1, 1)),
    ],
)
def test_channel_dropouts_drop_whole_channels_and_are_identity_in_eval(cls, shape, mask_shape):
    x = np.ones(shape)
    layer = cls(0.5, rng=0)
    y = layer(x)
    axes = tuple(i for i, m in enumerate(mask_shape) if m == 1)
    assert np.all(np.ptp(y, axis=axes) == 0)  # one value per channel
    assert len(np.unique(y)) == 2  # both kept and dropped channels occur
    np.testing.assert_array_equal(layer.backward(np.ones(shape)) != 0, np.abs(y - y.min()) > 0)
    assert layer.eval()(x) is x


@pytest.mark.torch
def test_alpha_dropout_values_and_statistics_match_torch():
    torch = pytest.importorskip("torch")
    p = 0.3
    zeros = np.zeros((400, 50))
    ours = np.unique(nnx.AlphaDropout(p, rng=0)(zeros))
    theirs = np.unique(torch.nn.AlphaDropout(p)(torch.tensor(zeros)).numpy())
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)  # the kept and the dropped value
    x = np.random.default_rng(0).standard_normal((500, 400))
    for layer in (nnx.AlphaDropout(p, rng=1), nnx.FeatureAlphaDropout(p, rng=1)):
        y = layer(x.reshape(500, 400, 1) if isinstance(layer, nnx.FeatureAlphaDropout) else x)
        assert abs(y.mean()) < 0.02 and abs(y.std() - 1.0) < 0.02
    kept = nnx.AlphaDropout(p, rng=2)
    y = kept(x)
    g = kept.backward(np.ones_like(x))
    a = 1.0 / np.sqrt((1.7580993408473766**2 * p + 1) * (1 - p))
    assert set(np.unique(g)) == {0.0, a}
    np.testing.assert_allclose(y[g > 0], a * x[g > 0] + 1.7580993408473766 * a * p)


def test_dropouts_repeat_their_masks_after_reseed_and_differ_by_seed():
    x = np.ones((8, 6, 3))
    for cls in (nnx.Dropout1d, nnx.AlphaDropout, nnx.FeatureAlphaDropout):
        a, b = cls(0.5, rng=3), cls(0.5, rng=3)
        first = a(x)
        np.testing.assert_array_equal(first, b(x))
        a.reseed(3), b.reseed(4)
        assert not np.array_equal(a(x), b(x))


@pytest.mark.parametrize(
    "make, x, message",
    [
        (
            lambda: nnx.InstanceNorm2d(3),
            np.ones((3, 4)),
            r"InstanceNorm2d\(3\): expected input of shape \(N, C, H, W\)",
        ),
        (lambda: nnx.InstanceNorm1d(3, affine=True), np.ones((2, 4, 5)), "expected 3 channels"),
        (lambda: nnx.InstanceNorm1d(3), np.ones((2, 3, 1)), "more than 1 spatial element"),
        (lambda: nnx.BatchNorm3d(2), np.ones((2, 2, 3, 3)), r"\(N, C, D, H, W\)"),
        (lambda: nnx.LocalResponseNorm(2), np.ones((2, 3)), "at least 3 axes"),
        (
            lambda: nnx.Dropout1d(0.5),
            np.ones((2, 3, 4, 5)),
            r"Dropout1d: expected input of shape \(N, C, L\)",
        ),
        (lambda: nnx.Dropout3d(0.5), np.ones((2, 3, 4)), "Dropout3d: expected input"),
        (
            lambda: nnx.FeatureAlphaDropout(0.5),
            np.ones((3,)),
            "FeatureAlphaDropout: expected input",
        ),
    ],
)
def test_bad_shapes_get_one_clear_line(make, x, message):
    with pytest.raises(ValueError, match=message):
        make()(x)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: nnx.InstanceNorm1d(0), "InstanceNorm1d: num_features"),
        (lambda: nnx.InstanceNorm2d(2, eps=0.0), "InstanceNorm2d: eps"),
        (lambda: nnx.InstanceNorm3d(2, momentum=1.5), "InstanceNorm3d: momentum"),
        (lambda: nnx.LocalResponseNorm(0), "LocalResponseNorm: size"),
        (lambda: nnx.LocalResponseNorm(2, beta="x"), "LocalResponseNorm: beta"),
        (lambda: nnx.AlphaDropout(1.0), r"AlphaDropout: p must be a probability in \[0, 1\)"),
        (lambda: nnx.Dropout3d(-0.1), "Dropout3d: p"),
    ],
)
def test_bad_arguments_get_one_clear_line(make, message):
    with pytest.raises(ValueError, match=message):
        make()
