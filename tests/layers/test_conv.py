"""Convolutions: PyTorch comparison, gradient checks on every backend, portable paths, errors."""

import numpy as np
import pytest

import nnx
from nnx.layers import _spatial
from tests.conftest import host_normal
from tests.layers.torch_oracle import compare

CONV2D = [
    dict(),
    dict(stride=2, padding=1),
    dict(stride=(2, 3), padding=(1, 2), dilation=(2, 1)),
    dict(padding="same", dilation=2, padding_mode="reflect"),
    dict(padding="valid", bias=False),
    dict(padding=2, padding_mode="circular", groups=2),
    dict(padding=(1, 2), padding_mode="replicate", groups=2, stride=2),
    dict(padding=(2, 1), padding_mode="reflect", stride=(1, 2)),
    dict(padding=3, padding_mode="zeros", dilation=3),
]


@pytest.mark.torch
@pytest.mark.parametrize("options", CONV2D, ids=str)
def test_conv2d_matches_torch(options):
    torch = pytest.importorskip("torch")
    layer = nnx.Conv2d(4, 6, 3, rng=0, **options)
    compare(layer, torch.nn.Conv2d(4, 6, 3, **options), (3, 4, 9, 8))


@pytest.mark.torch
@pytest.mark.parametrize(
    "cin, cout, kernel, options, shape",
    [
        (4, 8, 4, dict(padding="same", groups=4), (2, 4, 7, 6)),  # depthwise, even kernel
        (3, 3, (3, 1), dict(groups=3, stride=(2, 1)), (2, 3, 7, 5)),  # depthwise, odd sizes
        (2, 5, (1, 1), dict(), (2, 2, 3, 3)),  # pointwise
        (3, 2, (2, 5), dict(padding=(0, 2), padding_mode="circular"), (1, 3, 5, 5)),
        (2, 3, 3, dict(), (0, 2, 5, 5)),  # zero-size batch
    ],
)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_conv2d_shapes_and_groups_match_torch(cin, cout, kernel, options, shape):
    torch = pytest.importorskip("torch")
    compare(
        nnx.Conv2d(cin, cout, kernel, rng=1, **options),
        torch.nn.Conv2d(cin, cout, kernel, **options),
        shape,
    )


@pytest.mark.torch
@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(stride=2, padding=1, padding_mode="reflect"),
        dict(padding="same", dilation=2, padding_mode="replicate", groups=2),
        dict(padding=2, padding_mode="circular", stride=3),
    ],
    ids=str,
)
def test_conv1d_matches_torch(options):
    torch = pytest.importorskip("torch")
    compare(nnx.Conv1d(4, 6, 3, rng=0, **options), torch.nn.Conv1d(4, 6, 3, **options), (2, 4, 11))


@pytest.mark.torch
@pytest.mark.parametrize(
    "options, shape",
    [
        (dict(), (2, 4, 5, 6)),
        (dict(stride=2, padding=1, output_padding=1), (2, 4, 5, 6)),
        (
            dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2), groups=2, dilation=(1, 2)),
            (2, 4, 4, 3),
        ),
        (dict(stride=1, padding=1, output_padding=1, dilation=2, bias=False), (1, 4, 3, 3)),
        (dict(stride=2), (0, 4, 3, 3)),
    ],
    ids=str,
)
def test_conv_transpose2d_matches_torch(options, shape):
    torch = pytest.importorskip("torch")
    compare(
        nnx.ConvTranspose2d(4, 6, 3, rng=0, **options),
        torch.nn.ConvTranspose2d(4, 6, 3, **options),
        shape,
    )


GRADCHECK = {
    "conv2d": (lambda: nnx.Conv2d(2, 3, 3, rng=0), (2, 2, 4, 4)),
    "conv2d-stride-pad-dilation": (
        lambda: nnx.Conv2d(2, 2, (2, 3), stride=(2, 1), padding=(1, 2), dilation=(1, 2), rng=1),
        (1, 2, 5, 4),
    ),
    "conv2d-same-reflect": (
        lambda: nnx.Conv2d(2, 2, 2, padding="same", padding_mode="reflect", rng=2),
        (1, 2, 4, 3),
    ),
    "conv2d-replicate": (
        lambda: nnx.Conv2d(2, 2, 3, padding=1, padding_mode="replicate", bias=False, rng=3),
        (1, 2, 3, 4),
    ),
    "conv2d-circular-groups": (
        lambda: nnx.Conv2d(2, 4, 3, padding=2, padding_mode="circular", groups=2, rng=4),
        (1, 2, 3, 3),
    ),
    "conv2d-depthwise": (lambda: nnx.Conv2d(3, 3, 2, groups=3, rng=5), (2, 3, 3, 3)),
    "conv1d": (lambda: nnx.Conv1d(2, 3, 3, stride=2, padding=1, rng=6), (2, 2, 7)),
    "conv1d-reflect-dilation": (
        lambda: nnx.Conv1d(2, 2, 2, padding="same", dilation=2, padding_mode="reflect", rng=7),
        (2, 2, 5),
    ),
    "conv-transpose2d": (
        lambda: nnx.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1, rng=8),
        (1, 2, 3, 3),
    ),
    "conv-transpose2d-groups-dilation": (
        lambda: nnx.ConvTranspose2d(2, 4, 2, groups=2, dilation=2, bias=False, rng=9),
        (1, 2, 2, 3),
    ),
}


@pytest.mark.parametrize("name", GRADCHECK)
def test_conv_gradients_match_finite_differences(backend, name):
    make, shape = GRADCHECK[name]
    x = backend.asarray(host_normal(shape, seed=1), dtype="float64")
    result = nnx.gradcheck(make(), x)
    assert result.ok, str(result)


def test_scatter_free_col2im_and_padding_equal_the_in_place_paths(backend):
    xp = backend.xp
    rng = np.random.default_rng(0)
    for kernel, stride, dilation in [((3, 2), (2, 1), (1, 2)), ((2, 2), (3, 2), (2, 1))]:
        pieces = [
            backend.asarray(rng.standard_normal((2, 3, 3, 4)), dtype="float64")
            for _ in range(kernel[0] * kernel[1])
        ]
        size = tuple(
            (o - 1) * s + d * (k - 1) + 1 + 1
            for o, s, d, k in zip((3, 4), stride, dilation, kernel, strict=True)
        )
        fast = _spatial.col2im(pieces, xp, size, kernel, stride, dilation)
        portable = _spatial.col2im(pieces, xp, size, kernel, stride, dilation, functional=True)
        np.testing.assert_allclose(
            nnx.to_numpy(portable), nnx.to_numpy(fast), rtol=1e-15, atol=1e-15
        )
    x = backend.asarray(rng.standard_normal((2, 3, 4, 5)), dtype="float64")
    pads = ((1, 2), (0, 3))
    np.testing.assert_array_equal(
        nnx.to_numpy(_spatial.pad(x, xp, pads, functional=True)),
        nnx.to_numpy(_spatial.pad(x, xp, pads)),
    )


def test_reflect_replicate_circular_padding_match_numpy_pad():
    x = np.arange(2 * 5.0).reshape(1, 2, 1, 5)
    for mode, np_mode in [("reflect", "reflect"), ("replicate", "edge"), ("circular", "wrap")]:
        got = _spatial.pad(x, nnx.namespace(x), ((0, 0), (3, 4)), mode)
        np.testing.assert_array_equal(got, np.pad(x, ((0, 0), (0, 0), (0, 0), (3, 4)), np_mode))


def test_conv2d_float32_and_repr(backend):
    layer = nnx.Conv2d(3, 4, 3, stride=2, padding=1, groups=1, rng=0, device=backend)
    y = layer(backend.asarray(host_normal((2, 3, 8, 8)), dtype="float32"))
    assert tuple(y.shape) == (2, 4, 4, 4) and y.dtype == backend.dtype("float32")
    assert "Conv2d(3, 4, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))" == repr(layer)


def test_weight_shapes_and_pytorch_initialization():
    conv = nnx.Conv2d(6, 8, (3, 5), groups=2, rng=0, dtype="float64")
    assert conv.weight.shape == (8, 3, 3, 5) and conv.bias.shape == (8,)
    bound = 1 / np.sqrt(3 * 15)
    w = nnx.to_numpy(conv.weight.value)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert nnx.Conv1d(4, 2, 3).weight.shape == (2, 4, 3)
    assert nnx.ConvTranspose2d(4, 6, 3, groups=2).weight.shape == (4, 3, 3, 3)


def test_first_layer_skips_the_input_gradient():
    layer = nnx.Conv2d(1, 2, 3, rng=0, dtype="float64")
    x = host_normal((2, 1, 5, 5))
    g = host_normal(layer(x).shape, seed=3)
    assert layer.backward(g, need_input_grad=False) is None
    w_grad = layer.weight.grad
    layer.zero_grad()
    layer.backward(g)
    np.testing.assert_array_equal(layer.weight.grad, w_grad)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: nnx.Conv2d(0, 2, 3), "in_channels must be a positive integer"),
        (
            lambda: nnx.Conv2d(2, 2, (3, 3, 3)),
            "kernel_size must be a positive integer or a tuple of 2",
        ),
        (lambda: nnx.Conv2d(2, 2, 3, stride=0), "stride must be"),
        (lambda: nnx.Conv2d(2, 2, 3, padding=-1), "padding must be an integer >= 0"),
        (
            lambda: nnx.Conv2d(2, 2, 3, padding="full"),
            "padding must be an int, a tuple, 'same' or 'valid'",
        ),
        (lambda: nnx.Conv2d(2, 2, 3, padding="same", stride=2), "padding='same' needs stride 1"),
        (lambda: nnx.Conv2d(3, 2, 3, groups=2), "must both be divisible by groups"),
        (lambda: nnx.Conv2d(2, 2, 3, padding_mode="mirror"), "padding_mode must be one of"),
        (lambda: nnx.ConvTranspose2d(2, 2, 3, stride=2, output_padding=2), "output_padding"),
        (lambda: nnx.ConvTranspose2d(2, 2, 3, padding_mode="reflect"), "only padding_mode='zeros'"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs():
    conv = nnx.Conv2d(2, 3, 3, rng=0)
    with pytest.raises(
        ValueError,
        match=r"expected input of shape \(N, C, H, W\) with C=2, got shape \(1, 3, 5, 5\)",
    ):
        conv(np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C, H, W\)"):
        conv(np.zeros((2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        conv(np.zeros((1, 2, 2, 5), np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        conv(np.zeros((1, 2, 5, 5), np.int64))
    with pytest.raises(TypeError, match="does not match the parameters' dtype"):
        conv(np.zeros((1, 2, 5, 5), np.float64))
    with pytest.raises(ValueError, match="reflect padding 3 must be smaller than the input size 3"):
        nnx.Conv1d(1, 1, 3, padding=3, padding_mode="reflect")(np.zeros((1, 1, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C, L\)"):
        nnx.Conv1d(1, 1, 3)(np.zeros((1, 1, 3, 3), np.float32))
    with pytest.raises(nnx.BackwardBeforeForwardError):
        nnx.Conv2d(1, 1, 1).backward(np.zeros((1, 1, 1, 1), np.float32))
    conv(np.zeros((1, 2, 5, 5), np.float32))
    with pytest.raises(ValueError, match="gradient has shape"):
        conv.backward(np.zeros((1, 3, 5, 5), np.float32))


@pytest.mark.torch
@pytest.mark.parametrize("name", ["Conv1d", "Conv2d"])
def test_convolutions_match_torch_in_pytorchs_own_module_tests(name):
    """Every configuration of torch.testing._internal.common_nn, on NumPy, strict and JAX."""
    from tests.layers.torch_oracle import check_torch_configs

    check_torch_configs(name, minimum=15)


@pytest.mark.parametrize(
    "make",
    [
        lambda: nnx.Conv2d(3, 4, 3, padding=1, rng=0),
        lambda: nnx.Conv1d(3, 4, 3, stride=2, padding=1, padding_mode="reflect", rng=1),
    ],
)
def test_relu_below_a_convolution_masks_its_input_gradient_in_place(make, monkeypatch):
    """A convolution's dL/dx is a fresh array (fresh_input_grad): inside Sequential the ReLU
    below computes its dL/dx in that memory, with the same numbers, bit for bit, as the layers
    called one by one; the gradient given to the model is left as it was."""
    conv = make().to(dtype="float32")
    model = nnx.Sequential(nnx.ReLU(), conv)
    shape = (2, 3, 8) if isinstance(conv, nnx.Conv1d) else (2, 3, 6, 7)
    x = host_normal(shape, seed=3).astype(np.float32)
    y = model(x)
    g = host_normal(y.shape, seed=4).astype(np.float32)
    kept = g.copy()
    seen = []
    original = nnx.ReLU.backward
    monkeypatch.setattr(
        nnx.ReLU,
        "backward",
        lambda self, g, overwrite_grad=False: (
            seen.append(overwrite_grad) or original(self, g, overwrite_grad)
        ),
    )
    got = model.backward(g, need_input_grad=True)
    assert seen == [True]
    model[0](x)
    conv(model[0](x))
    conv.zero_grad()
    want = model[0].backward(conv.backward(g))
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(g, kept)
