"""Unflatten, Flatten's PyTorch arguments, PixelShuffle/Unshuffle, ChannelShuffle and Upsample in
every mode: PyTorch in float64 on three backends (with PyTorch's own interpolate configurations),
gradient checks on every backend, errors."""

import numpy as np
import pytest

import nnx
from tests.conftest import host_normal
from tests.layers.torch_oracle import ORACLE_BACKENDS, check_torch_configs, compare

UPSAMPLE = [
    (dict(scale_factor=2, mode="linear"), (2, 2, 5)),
    (dict(scale_factor=2.5, mode="linear", align_corners=True), (2, 2, 5)),
    (dict(size=3, mode="linear"), (2, 2, 7)),
    (dict(scale_factor=(2, 1.5), mode="bilinear"), (1, 2, 3, 4)),
    (dict(size=(5, 7), mode="bilinear", align_corners=True), (1, 2, 3, 4)),
    (dict(size=(2, 3), mode="bilinear"), (1, 2, 5, 7)),
    (dict(scale_factor=2, mode="bicubic"), (1, 2, 3, 4)),
    (dict(size=(7, 5), mode="bicubic", align_corners=True), (1, 2, 3, 4)),
    (dict(scale_factor=0.6, mode="bicubic"), (1, 2, 5, 7)),
    (dict(scale_factor=(1.5, 2, 2), mode="trilinear"), (1, 1, 2, 3, 2)),
    (dict(scale_factor=2, mode="trilinear", align_corners=True), (1, 1, 2, 3, 2)),
    (dict(scale_factor=1.7, mode="nearest"), (1, 2, 2, 3, 2)),
    (dict(scale_factor=1.7, mode="nearest-exact"), (1, 2, 3, 5)),
    (dict(scale_factor=1.7, mode="bilinear", recompute_scale_factor=True), (1, 2, 3, 5)),
]


@pytest.mark.torch
@pytest.mark.parametrize("backend_spec", ORACLE_BACKENDS)
def test_upsample_matches_torch_in_every_mode(backend_spec):
    torch = pytest.importorskip("torch")
    for options, shape in UPSAMPLE:
        compare(nnx.Upsample(**options), torch.nn.Upsample(**options), shape, backend=backend_spec)


def _interpolate_arguments(config):
    """The keyword arguments a common_nn ``interpolate_*`` configuration passes to
    ``F.interpolate`` (kept in its FunctionalModule's closure)."""
    forward = config["constructor"]().forward
    cells = dict(zip(forward.__code__.co_freevars, forward.__closure__, strict=True))
    return dict(cells["kwargs"].cell_contents)


@pytest.mark.torch
def test_upsample_matches_torch_on_pytorchs_interpolate_configurations():
    torch = pytest.importorskip("torch")
    from tests.layers.torch_oracle import torch_module_configs

    ran = 0
    for config in torch_module_configs("interpolate"):
        kwargs = _interpolate_arguments(config)
        if "input_size" not in config or 0 in config["input_size"]:
            continue  # zero_dim: an empty batch dimension PyTorch tests separately
        # F.interpolate is what torch.nn.Upsample calls: compare against the module
        compare(nnx.Upsample(**kwargs), torch.nn.Upsample(**kwargs), tuple(config["input_size"]))
        ran += 1
    assert ran >= 34, ran  # every interpolate configuration with a non-empty batch


@pytest.mark.torch
@pytest.mark.parametrize("backend_spec", ORACLE_BACKENDS)
def test_shape_layers_match_torch(backend_spec):
    torch = pytest.importorskip("torch")
    cases = [
        (nnx.Unflatten(1, (2, -1)), torch.nn.Unflatten(1, (2, -1)), (3, 8, 2)),
        (nnx.Unflatten(-1, (2, 2, 1)), torch.nn.Unflatten(-1, (2, 2, 1)), (3, 4)),
        (nnx.Flatten(0, 1), torch.nn.Flatten(0, 1), (2, 3, 4)),
        (nnx.Flatten(-2), torch.nn.Flatten(-2), (2, 3, 4, 5)),
        (nnx.PixelShuffle(2), torch.nn.PixelShuffle(2), (2, 8, 3, 2)),
        (nnx.PixelShuffle(3), torch.nn.PixelShuffle(3), (2, 1, 9, 2, 2)),
        (nnx.PixelUnshuffle(2), torch.nn.PixelUnshuffle(2), (2, 2, 4, 6)),
        (nnx.PixelUnshuffle(3), torch.nn.PixelUnshuffle(3), (2, 3, 3)),
        (nnx.ChannelShuffle(2), torch.nn.ChannelShuffle(2), (2, 6, 3)),
        (nnx.ChannelShuffle(3), torch.nn.ChannelShuffle(3), (1, 6, 2, 2)),
    ]
    for layer, tlayer, shape in cases:
        compare(layer, tlayer, shape, backend=backend_spec)
    for name in ("PixelShuffle", "PixelUnshuffle", "Unflatten", "Flatten"):
        check_torch_configs(name, backends=(backend_spec,))


def test_pixel_shuffle_and_unshuffle_are_inverse(backend):
    x = backend.asarray(host_normal((2, 8, 3, 3)), dtype="float32")
    y = nnx.PixelUnshuffle(2)(nnx.PixelShuffle(2)(x))
    np.testing.assert_array_equal(nnx.to_numpy(y), nnx.to_numpy(x))


GRADCHECK = {
    "linear": (lambda: nnx.Upsample(scale_factor=2.5, mode="linear"), (1, 2, 3)),
    "bilinear-corners": (
        lambda: nnx.Upsample(size=(3, 4), mode="bilinear", align_corners=True),
        (1, 1, 2, 3),
    ),
    "bicubic": (lambda: nnx.Upsample(scale_factor=1.5, mode="bicubic"), (1, 1, 3, 2)),
    "trilinear": (lambda: nnx.Upsample(scale_factor=2, mode="trilinear"), (1, 1, 2, 1, 2)),
    "nearest-3d": (lambda: nnx.Upsample(scale_factor=1.5, mode="nearest"), (1, 1, 2, 2, 1)),
    "unflatten": (lambda: nnx.Unflatten(1, (2, 3)), (2, 6)),
    "pixel-shuffle": (lambda: nnx.PixelShuffle(2), (1, 4, 2, 1)),
    "pixel-unshuffle": (lambda: nnx.PixelUnshuffle(2), (1, 1, 2, 4)),
    "channel-shuffle": (lambda: nnx.ChannelShuffle(2), (2, 4, 2)),
}


CHAINS = {
    "4d": (
        lambda: nnx.Sequential(
            nnx.PixelShuffle(2),  # (1, 4, 2, 2) -> (1, 1, 4, 4)
            nnx.Upsample(scale_factor=1.5, mode="bicubic"),  # (1, 1, 6, 6)
            nnx.PixelUnshuffle(2),  # (1, 4, 3, 3)
            nnx.ChannelShuffle(2),
            nnx.Upsample(size=(3, 4), mode="bilinear", align_corners=True),
        ),
        (1, 4, 2, 2),
    ),
    "3d-5d": (
        lambda: nnx.Sequential(
            nnx.Upsample(scale_factor=2.5, mode="linear"),  # (1, 2, 3) -> (1, 2, 7)
            nnx.Unflatten(2, (7, 1, 1)),  # (1, 2, 7, 1, 1)
            nnx.Upsample(scale_factor=(1, 2, 1.5), mode="trilinear"),
            nnx.Upsample(scale_factor=1.5, mode="nearest"),
        ),
        (1, 2, 3),
    ),
}


@pytest.mark.parametrize("name", CHAINS)
def test_chained_layers_match_finite_differences(backend, name):
    """Every layer of this file in two chains, on every backend (each alone: slow marker)."""
    make, shape = CHAINS[name]
    x = backend.asarray(host_normal(shape, seed=1), dtype="float64")
    result = nnx.gradcheck(make(), x)
    assert result.ok, str(result)


@pytest.mark.slow
@pytest.mark.parametrize("name", GRADCHECK)
def test_gradients_match_finite_differences(backend, name):
    make, shape = GRADCHECK[name]
    x = backend.asarray(host_normal(shape, seed=1), dtype="float64")
    result = nnx.gradcheck(make(), x)
    assert result.ok, str(result)


@pytest.mark.parametrize(
    "make, x, message",
    [
        (
            lambda: nnx.Upsample(scale_factor=2, mode="bilinear"),
            np.ones((1, 2, 3)),
            r"mode='bilinear' expects input of shape \(N, C, H, W\)",
        ),
        (
            lambda: nnx.Upsample(scale_factor=2, mode="trilinear"),
            np.ones((1, 2, 3, 3)),
            r"\(N, C, D, H, W\)",
        ),
        (lambda: nnx.PixelShuffle(2), np.ones((1, 3, 2, 2)), r"PixelShuffle\(2\): expected input"),
        (
            lambda: nnx.PixelUnshuffle(2),
            np.ones((1, 3, 3, 2)),
            r"PixelUnshuffle\(2\): expected input",
        ),
        (lambda: nnx.ChannelShuffle(4), np.ones((1, 6, 2)), r"ChannelShuffle\(4\)"),
        (lambda: nnx.Unflatten(1, (2, 2)), np.ones((2, 5)), "does not multiply to"),
    ],
)
def test_bad_shapes_get_one_clear_line(make, x, message):
    with pytest.raises(ValueError, match=message):
        make()(x)


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda: nnx.Upsample(scale_factor=2, mode="nearest", align_corners=True),
            "align_corners only applies",
        ),
        (lambda: nnx.Unflatten(1, (2, -1, -1)), "unflattened_size must be"),
        (lambda: nnx.PixelShuffle(0), "PixelShuffle: upscale_factor must be a positive integer"),
        (lambda: nnx.ChannelShuffle(1.5), "ChannelShuffle: groups"),
    ],
)
def test_bad_arguments_get_one_clear_line(make, message):
    with pytest.raises(ValueError, match=message):
        make()
