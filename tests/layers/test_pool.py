"""Pooling and upsampling: PyTorch comparison, gradient checks on every backend, errors."""

import numpy as np
import pytest

import nnx
from tests.conftest import host_normal
from tests.layers.torch_oracle import compare

POOL2D = [
    (2, dict()),
    (3, dict(stride=2, padding=1)),
    (3, dict(stride=2, ceil_mode=True)),
    (3, dict(stride=2, padding=1, ceil_mode=True)),
    ((2, 3), dict(stride=(1, 2), padding=(1, 1))),
    (2, dict(stride=1)),
]


@pytest.mark.torch
@pytest.mark.parametrize("kernel, options", POOL2D, ids=str)
@pytest.mark.parametrize("shape", [(2, 3, 7, 8), (1, 2, 6, 5)], ids=str)
def test_max_and_avg_pool2d_match_torch(kernel, options, shape):
    torch = pytest.importorskip("torch")
    compare(nnx.MaxPool2d(kernel, **options), torch.nn.MaxPool2d(kernel, **options), shape)
    compare(nnx.AvgPool2d(kernel, **options), torch.nn.AvgPool2d(kernel, **options), shape)
    compare(
        nnx.AvgPool2d(kernel, count_include_pad=False, **options),
        torch.nn.AvgPool2d(kernel, count_include_pad=False, **options),
        shape,
    )


@pytest.mark.torch
def test_max_pool_dilation_and_avg_divisor_override_match_torch():
    torch = pytest.importorskip("torch")
    options = dict(stride=2, padding=1, dilation=2, ceil_mode=True)
    compare(nnx.MaxPool2d(3, **options), torch.nn.MaxPool2d(3, **options), (2, 2, 9, 8))
    compare(nnx.MaxPool1d(2, **options), torch.nn.MaxPool1d(2, **options), (2, 2, 9))
    compare(
        nnx.AvgPool2d(3, padding=1, divisor_override=4),
        torch.nn.AvgPool2d(3, padding=1, divisor_override=4),
        (2, 2, 6, 6),
    )


@pytest.mark.torch
def test_max_pool_ties_go_to_the_first_maximum_like_torch():
    torch = pytest.importorskip("torch")
    x = np.round(np.random.default_rng(0).standard_normal((2, 3, 6, 6)))  # many ties
    layer = nnx.MaxPool2d(3, stride=1, padding=1)
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.MaxPool2d(3, stride=1, padding=1)(xt).sum().backward()
    layer(x)
    np.testing.assert_array_equal(layer.backward(np.ones((2, 3, 6, 6))), xt.grad.numpy())


@pytest.mark.torch
@pytest.mark.parametrize(
    "kernel, options",
    [
        (2, dict()),
        (3, dict(stride=2, padding=1, ceil_mode=True)),
        (4, dict(stride=3, ceil_mode=True)),
    ],
    ids=str,
)
def test_pool1d_match_torch(kernel, options):
    torch = pytest.importorskip("torch")
    compare(nnx.MaxPool1d(kernel, **options), torch.nn.MaxPool1d(kernel, **options), (2, 3, 11))
    for cip in (True, False):
        compare(
            nnx.AvgPool1d(kernel, count_include_pad=cip, **options),
            torch.nn.AvgPool1d(kernel, count_include_pad=cip, **options),
            (2, 3, 11),
        )


@pytest.mark.torch
@pytest.mark.parametrize("out", [1, (1, 1), (3, 2), (None, 4), 5], ids=str)
def test_adaptive_avg_pool2d_matches_torch(out):
    torch = pytest.importorskip("torch")
    compare(nnx.AdaptiveAvgPool2d(out), torch.nn.AdaptiveAvgPool2d(out), (2, 3, 7, 5))


@pytest.mark.torch
def test_adaptive_avg_pool1d_matches_torch():
    torch = pytest.importorskip("torch")
    for out in (1, 3, 4):
        compare(nnx.AdaptiveAvgPool1d(out), torch.nn.AdaptiveAvgPool1d(out), (2, 3, 10))


@pytest.mark.torch
@pytest.mark.parametrize(
    "options, shape",
    [
        (dict(scale_factor=2), (2, 3, 3, 4)),
        (dict(scale_factor=(2, 3)), (1, 2, 3, 2)),
        (dict(scale_factor=1.5), (1, 2, 4, 3)),
        (dict(size=(5, 7)), (1, 2, 3, 4)),
        (dict(size=(2, 3)), (1, 2, 5, 7)),  # "upsampling" to a smaller size, as torch allows
        (dict(scale_factor=3), (2, 2, 4)),
    ],
    ids=str,
)
def test_upsample_nearest_matches_torch(options, shape):
    torch = pytest.importorskip("torch")
    compare(nnx.Upsample(**options), torch.nn.Upsample(**options, mode="nearest"), shape)


GRADCHECK = {
    "maxpool2d": (lambda: nnx.MaxPool2d(2), (1, 2, 4, 4)),
    "maxpool2d-overlap-pad-ceil": (
        lambda: nnx.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        (1, 2, 4, 5),
    ),
    "maxpool1d-dilation": (lambda: nnx.MaxPool1d(2, stride=1, dilation=2), (2, 2, 5)),
    "avgpool2d-pad-ceil": (
        lambda: nnx.AvgPool2d(3, stride=2, padding=1, ceil_mode=True),
        (1, 2, 4, 5),
    ),
    "avgpool2d-exclude-pad": (
        lambda: nnx.AvgPool2d((2, 3), stride=1, padding=1, count_include_pad=False),
        (1, 2, 3, 3),
    ),
    "avgpool1d": (lambda: nnx.AvgPool1d(3, stride=2, padding=1), (2, 2, 6)),
    "adaptive-avgpool2d": (lambda: nnx.AdaptiveAvgPool2d((2, 3)), (1, 2, 5, 4)),
    "global-avgpool2d": (lambda: nnx.AdaptiveAvgPool2d(1), (2, 3, 3, 3)),
    "adaptive-avgpool1d": (lambda: nnx.AdaptiveAvgPool1d(3), (2, 2, 5)),
    "upsample2d": (lambda: nnx.Upsample(scale_factor=2), (1, 2, 2, 3)),
    "upsample-size": (lambda: nnx.Upsample(size=(3, 5)), (1, 2, 2, 3)),
    "upsample1d": (lambda: nnx.Upsample(scale_factor=1.5), (2, 2, 4)),
}


@pytest.mark.parametrize("name", GRADCHECK)
def test_pool_gradients_match_finite_differences(backend, name):
    make, shape = GRADCHECK[name]
    x = backend.asarray(host_normal(shape, seed=1), dtype="float64")
    result = nnx.gradcheck(make(), x)
    assert result.ok, str(result)


def test_pools_keep_dtype_and_device(backend):
    x = backend.asarray(host_normal((2, 3, 6, 6)), dtype="float32")
    for layer in (
        nnx.MaxPool2d(2),
        nnx.AvgPool2d(3, 1, 1),
        nnx.AdaptiveAvgPool2d(1),
        nnx.Upsample(scale_factor=2),
    ):
        y = layer(x)
        assert y.dtype == x.dtype and nnx.backend.device(y) == nnx.backend.device(x)
        g = layer.backward(y * 0 + 1)
        assert tuple(g.shape) == tuple(x.shape) and g.dtype == x.dtype


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: nnx.MaxPool2d(0), "kernel_size must be a positive integer"),
        (lambda: nnx.MaxPool2d(2, stride=(1, 2, 3)), "stride must be"),
        (
            lambda: nnx.MaxPool2d(2, padding=2),
            r"padding \(2, 2\) must be at most half the kernel size \(2, 2\)",
        ),
        (lambda: nnx.AvgPool1d(3, padding=-1), "padding must be an integer >= 0"),
        (lambda: nnx.AdaptiveAvgPool2d(0), "output_size must be a positive integer"),
        (lambda: nnx.AdaptiveAvgPool2d((1, 2, 3)), "output_size must be"),
        (lambda: nnx.Upsample(scale_factor=2, mode="area"), "mode must be one of 'nearest'"),
        (lambda: nnx.Upsample(), "exactly one of size and scale_factor"),
        (lambda: nnx.Upsample(scale_factor=-1), "scale_factor must be a positive number"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs():
    with pytest.raises(
        ValueError, match=r"expected input of shape \(N, C, H, W\), got shape \(3, 4, 4\)"
    ):
        nnx.MaxPool2d(2)(np.zeros((3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="too small for the kernel"):
        nnx.AvgPool2d(5)(np.zeros((1, 1, 4, 4), np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        nnx.MaxPool1d(2)(np.zeros((1, 1, 4), np.int32))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C, L\)"):
        nnx.AdaptiveAvgPool1d(2)(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="scale_factor"):
        nnx.Upsample(scale_factor=(2, 2))(np.zeros((1, 1, 4), np.float32))
    with pytest.raises(nnx.BackwardBeforeForwardError):
        nnx.MaxPool2d(2).backward(np.zeros((1, 1, 1, 1), np.float32))
    pool = nnx.AvgPool2d(2)
    pool(np.zeros((1, 1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="gradient has shape"):
        pool.backward(np.zeros((1, 1, 4, 4), np.float32))
