"""The NumPy fast path of the convolutions (nnx/_fastconv.py) equals the portable path,
and the two input-gradient routes (flipped-kernel convolution, col2im) equal each other."""

import numpy as np
import pytest

import nnx
from nnx import _fastconv
from nnx.layers import conv
from tests.conftest import host_normal

# (constructor, input shape): strides, dilations, groups, depthwise, every padding mode, odd and
# even sizes, kernels larger than the stride, a zero-size batch, Conv1d and ConvTranspose2d
LAYERS = {
    "plain": (lambda: nnx.Conv2d(3, 4, 3, rng=0), (3, 3, 7, 6)),
    "same-3x3": (lambda: nnx.Conv2d(3, 5, 3, padding=1, bias=False, rng=1), (4, 3, 9, 8)),
    "stride2-dilation": (
        lambda: nnx.Conv2d(4, 6, 3, stride=(2, 3), padding=(1, 2), dilation=(2, 1), rng=2),
        (2, 4, 11, 10),
    ),
    "same-dilation-reflect": (
        lambda: nnx.Conv2d(2, 4, 3, padding="same", dilation=2, padding_mode="reflect", rng=3),
        (3, 2, 8, 9),
    ),
    "groups-circular": (
        lambda: nnx.Conv2d(4, 6, 3, padding=2, padding_mode="circular", groups=2, rng=4),
        (2, 4, 5, 7),
    ),
    "depthwise-replicate": (
        lambda: nnx.Conv2d(
            3, 3, (3, 2), padding=(1, 1), padding_mode="replicate", groups=3, rng=14
        ),
        (2, 3, 6, 5),
    ),
    "pointwise-stride2": (lambda: nnx.Conv2d(3, 4, 1, stride=2, rng=5), (3, 3, 7, 7)),
    "5x5-pad2": (lambda: nnx.Conv2d(1, 3, 5, padding=2, rng=6), (2, 1, 9, 9)),
    # LeNet's two layers: one input channel on the flat grid (Wp/Wo 32/28), and 6 -> 16 channels
    # by batch-innermost columns (Wp/Wo 14/10) with the batch-innermost col2im
    "lenet-conv1": (lambda: nnx.Conv2d(1, 6, 5, padding=2, rng=18), (3, 1, 28, 28)),
    "lenet-conv2": (lambda: nnx.Conv2d(6, 16, 5, rng=19), (3, 6, 14, 14)),
    # large enough for the stride-1 input gradient to go by the flipped-kernel convolution
    "same-3x3-large": (lambda: nnx.Conv2d(4, 4, 3, padding=1, rng=15), (2, 4, 16, 15)),
    "transpose-stride1-large": (
        lambda: nnx.ConvTranspose2d(3, 3, 3, padding=1, rng=16),
        (2, 3, 14, 13),
    ),
    "zero-batch": (lambda: nnx.Conv2d(2, 3, 3, padding=1, rng=7), (0, 2, 5, 5)),
    # batch-innermost col2im in chunks of depth slices
    "conv3d": (lambda: nnx.Conv3d(2, 3, 3, padding=1, dilation=(1, 1, 2), rng=17), (2, 2, 4, 5, 6)),
    "conv1d": (lambda: nnx.Conv1d(2, 4, 3, stride=2, padding=1, rng=8), (3, 2, 9)),
    "conv1d-same-dilation": (
        lambda: nnx.Conv1d(2, 2, 3, padding="same", dilation=2, groups=2, rng=9),
        (2, 2, 10),
    ),
    "transpose-stride2": (
        lambda: nnx.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1, rng=10),
        (2, 3, 4, 5),
    ),
    "transpose-groups-dilation": (
        lambda: nnx.ConvTranspose2d(4, 6, 2, groups=2, dilation=(2, 1), bias=False, rng=11),
        (3, 4, 3, 4),
    ),
    "transpose-stride1-output-padding": (
        lambda: nnx.ConvTranspose2d(2, 3, 3, padding=1, output_padding=1, dilation=2, rng=12),
        (2, 2, 4, 4),
    ),
    "transpose-zero-batch": (lambda: nnx.ConvTranspose2d(2, 3, 2, stride=2, rng=13), (0, 2, 3, 3)),
}


def _run(layer, x, g):
    layer.zero_grad()
    y = layer(x)
    dx = layer.backward(g)
    return [y, dx] + [p.grad for p in layer.parameters()]


def _spied_runs(monkeypatch, layer, x, g, name):
    """``_run`` on the fast path and on the portable one, and whether ``_fastconv.<name>`` ran
    on the fast path (it must not on the portable one)."""
    calls = []
    original = getattr(_fastconv, name)
    monkeypatch.setattr(_fastconv, name, lambda *a: calls.append(1) or original(*a))
    fast = _run(layer, x, g)
    ran = bool(calls)
    with _fastconv.portable_only():
        calls.clear()
        portable = _run(layer, x, g)
        assert not calls
    return fast, portable, ran


@pytest.mark.parametrize("chunk_bytes", [1, 700, _fastconv.CHUNK_BYTES])
@pytest.mark.parametrize("name", LAYERS)
def test_numpy_fast_path_equals_portable_path(name, chunk_bytes, monkeypatch):
    # chunk_bytes=1: one image per chunk; 700: a few; the default: the whole (small) batch
    monkeypatch.setattr(_fastconv, "CHUNK_BYTES", chunk_bytes)
    make, shape = LAYERS[name]
    layer = make().to(dtype="float64")
    x = host_normal(shape, seed=1)
    g = host_normal(layer(x).shape, seed=2)
    calls = []
    original = _fastconv.conv_forward
    monkeypatch.setattr(_fastconv, "conv_forward", lambda *a: calls.append(1) or original(*a))
    fast = _run(layer, x, g)
    assert calls, "the NumPy fast path did not run"
    with _fastconv.portable_only():
        calls.clear()
        portable = _run(layer, x, g)
        assert not calls, "the fast path ran inside portable_only()"
    names = ["output", "input grad", "weight grad", "bias grad"][: len(fast)]
    for what, a, b in zip(names, fast, portable, strict=True):
        assert a.shape == b.shape, what
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12, err_msg=what)


def test_first_layer_skips_the_input_gradient_on_the_fast_path(monkeypatch):
    # Sequential asks its first layer for no input gradient: LeNet's first convolution must then
    # compute only dW and db (no col2im), equal to what the full backward gives them
    layer = nnx.Conv2d(1, 6, 5, padding=2, rng=18).to(dtype="float64")
    x = host_normal((3, 1, 28, 28), seed=1)
    g = host_normal(layer(x).shape, seed=2)
    full = _run(layer, x, g)
    calls = []
    original = conv.conv_input_grad
    monkeypatch.setattr(conv, "conv_input_grad", lambda *a: calls.append(1) or original(*a))
    layer.zero_grad()
    layer(x)
    assert layer.backward(g, need_input_grad=False) is None
    assert not calls, "the input gradient was computed though not asked for"
    for a, b in zip(full[2:], [p.grad for p in layer.parameters()], strict=True):
        np.testing.assert_array_equal(a, b)


def test_fast_path_only_for_numpy_arrays():
    assert _fastconv.applies(np.zeros(2), np.zeros(3))

    class Subclass(np.ndarray):
        pass

    assert not _fastconv.applies(np.zeros(2), np.zeros(2).view(Subclass))
    strict = nnx.get_backend("strict")
    assert not _fastconv.applies(strict.asarray([1.0]))
    with _fastconv.portable_only():
        assert not _fastconv.applies(np.zeros(2))
    assert _fastconv.applies(np.zeros(2))


# (kernel, dilation, groups, input spatial size, output spatial size) of stride-1 convolutions;
# an input larger than "output + d*(k-1)" happens for ConvTranspose2d's output_padding
FLIP = [
    ((3, 3), (1, 1), 1, (6, 5), (4, 3)),
    ((2, 3), (2, 1), 2, (5, 6), (3, 4)),
    ((3, 1), (1, 3), 3, (7, 4), (5, 4)),
    ((3, 3), (2, 2), 1, (8, 7), (3, 3)),  # one extra row and column beyond the last window
]
# ((top, bottom), (left, right)) cut from the input gradient (a zero padding's adjoint): none,
# a "same" padding, uneven, and more than the kernel's span (g itself is sliced)
CROPS = [((0, 0), (0, 0)), ((1, 1), (1, 1)), ((2, 0), (0, 1)), ((4, 1), (1, 3))]


@pytest.mark.parametrize("crop", CROPS, ids=str)
@pytest.mark.parametrize("kernel, dilation, groups, size, out", FLIP, ids=str)
def test_input_gradient_by_flipped_convolution_equals_col2im(
    backend, kernel, dilation, groups, size, out, crop
):
    xp = backend.xp
    (t, b), (left, r) = crop
    if t + b >= size[0] or left + r >= size[1]:
        pytest.skip("crop larger than the input")
    o, cg, n = 2 * groups, 2, 3
    w = backend.asarray(host_normal((o, cg, *kernel), seed=3), dtype="float64")
    g = backend.asarray(host_normal((o, n, *out), seed=4), dtype="float64")
    by_conv = conv._input_grad_by_convolution(g, w, xp, groups, size, dilation, crop)
    by_col2im = conv._input_grad_by_col2im(g, w, xp, groups, size, (1, 1), dilation)
    by_col2im = by_col2im[:, :, t : size[0] - b, left : size[1] - r]
    assert tuple(by_conv.shape) == (cg * groups, n, size[0] - t - b, size[1] - left - r)
    np.testing.assert_allclose(
        nnx.to_numpy(by_conv), nnx.to_numpy(by_col2im), rtol=1e-12, atol=1e-12
    )


@pytest.mark.torch
@pytest.mark.parametrize(
    "layer, tlayer, shape",
    [
        ("Conv2d(4, 3, 3, padding=1, groups=1)", "Conv2d(4, 3, 3, padding=1)", (2, 4, 16, 15)),
        ("Conv2d(4, 4, 3, padding=2, dilation=2, groups=2)", None, (2, 4, 20, 19)),
        ("ConvTranspose2d(3, 3, 3, padding=1)", None, (2, 3, 14, 13)),
        # padding beyond the kernel's span: border outputs see only zeros (g is sliced)
        ("Conv2d(4, 4, 1, padding=(2, 1), bias=False)", None, (2, 4, 7, 6)),
        ("Conv2d(3, 3, 3, padding=(3, 2), dilation=(1, 2))", None, (2, 3, 20, 21)),
        ("ConvTranspose2d(3, 3, 3, padding=2, dilation=2)", None, (2, 3, 30, 31)),
    ],
)
def test_flipped_route_matches_torch(layer, tlayer, shape, monkeypatch):
    """Layers large enough that the stride-1 input gradient takes the flipped-kernel route."""
    torch = pytest.importorskip("torch")
    from tests.layers.torch_oracle import compare

    calls = []
    original = conv._input_grad_by_convolution
    monkeypatch.setattr(
        conv, "_input_grad_by_convolution", lambda *a: calls.append(1) or original(*a)
    )
    module = eval(f"nnx.{layer}", {"nnx": nnx})
    tmodule = eval(f"torch.nn.{tlayer or layer}", {"torch": torch})
    compare(module, tmodule, shape)
    assert calls, "the flipped-kernel route did not run"


@pytest.mark.parametrize(
    "make, shape, expected",
    [
        # LeNet's second layer (5x5, stride 1, col2im route): batch innermost
        (lambda: nnx.Conv2d(3, 4, 5, rng=20), (3, 3, 10, 10), True),
        # short output rows (3x3, stride 1, 12 wide)
        (lambda: nnx.Conv2d(2, 6, 3, padding=1, rng=21), (2, 2, 6, 12), True),
        # stride 2 with 16-wide output rows: the portable col2im measured faster
        (lambda: nnx.Conv2d(2, 3, 3, stride=2, padding=1, rng=22), (2, 2, 8, 32), False),
    ],
)
def test_batch_innermost_input_gradient(make, shape, expected, monkeypatch):
    """The batch-innermost col2im runs where it measured faster, and equals the portable one."""
    layer = make().to(dtype="float64")
    x = host_normal(shape, seed=5)
    g = host_normal(layer(x).shape, seed=6)
    fast, portable, ran = _spied_runs(monkeypatch, layer, x, g, "conv_input_grad_batch_inner")
    assert ran == expected
    for a, b in zip(fast, portable, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-5)])
@pytest.mark.parametrize(
    "make, shape, expected",
    [
        # LeNet's second layer: rows of 10 outputs on a 14-wide grid
        (lambda: nnx.Conv2d(3, 4, 5, rng=23), (3, 3, 10, 14), True),
        # dilation, groups and padding, odd sizes, a batch of one (its axis's stride is free)
        (lambda: nnx.Conv2d(4, 6, 3, padding=1, dilation=2, groups=2, rng=24), (1, 4, 7, 9), True),
        # a "same" 3x3 layer on 16-wide rows: the flat grid wastes 1/8, it stays
        (lambda: nnx.Conv2d(2, 3, 3, padding=1, rng=25), (2, 2, 5, 16), False),
        # stride 2: never
        (lambda: nnx.Conv2d(2, 3, 3, stride=2, rng=26), (2, 2, 9, 9), False),
    ],
)
def test_batch_innermost_columns(make, shape, expected, dtype, tol, monkeypatch):
    """The batch-innermost forward and weight gradient run where the flat grid wastes a fifth
    or more, and equal the portable path."""
    layer = make().to(dtype=dtype)
    x = host_normal(shape, seed=7).astype(dtype)
    g = host_normal(layer(x).shape, seed=8).astype(dtype)
    calls = []
    for name in ("conv_forward_batch_inner", "conv_weight_grad_batch_inner"):
        original = getattr(_fastconv, name)
        monkeypatch.setattr(
            _fastconv, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a)
        )
    fast = _run(layer, x, g)
    assert sorted(set(calls)) == (
        ["conv_forward_batch_inner", "conv_weight_grad_batch_inner"] if expected else []
    )
    with _fastconv.portable_only():
        portable = _run(layer, x, g)
    for a, b in zip(fast, portable, strict=True):
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("chunk_bytes", [1, _fastconv.CHUNK_BYTES])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "make, shape, expected",
    [
        # the ResNet's stride-2 layer (3x3, pad 1), odd and even sizes, groups, uneven strides
        (lambda: nnx.Conv2d(4, 6, 3, stride=2, padding=1, bias=False, rng=30), (3, 4, 8, 9), True),
        (
            lambda: nnx.Conv2d(4, 6, 5, stride=(2, 3), padding=(2, 1), groups=2, rng=31),
            (2, 4, 11, 10),
            True,
        ),
        # a kernel of 4 with stride 2: every class has two pieces per axis; a zero-size batch
        (lambda: nnx.Conv2d(2, 3, 4, stride=2, padding=1, rng=32), (2, 2, 8, 8), True),
        (lambda: nnx.Conv2d(2, 3, 3, stride=2, rng=33), (0, 2, 7, 7), True),
        # the transposed convolution's forward is this map
        (
            lambda: nnx.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1, rng=34),
            (2, 3, 4, 5),
            True,
        ),
        # at most one piece per class (1x1 stride 2, kernel = stride), or dilation: col2im
        (lambda: nnx.Conv2d(3, 4, 1, stride=2, rng=35), (2, 3, 7, 7), False),
        (lambda: nnx.Conv2d(3, 4, 2, stride=2, rng=36), (2, 3, 8, 8), False),
        (lambda: nnx.Conv2d(3, 4, 3, stride=2, dilation=2, rng=37), (2, 3, 9, 9), False),
    ],
)
def test_input_gradient_by_residue_classes(make, shape, expected, dtype, chunk_bytes, monkeypatch):
    """The strided col2im by residue classes runs where it pays and gives the portable col2im's
    numbers bit for bit (same additions, same order), in either float width."""
    monkeypatch.setattr(_fastconv, "CHUNK_BYTES", chunk_bytes)
    layer = make().to(dtype=dtype)
    x = host_normal(shape, seed=7).astype(dtype)
    g = host_normal(layer(x).shape, seed=8).astype(dtype)
    fast, portable, ran = _spied_runs(monkeypatch, layer, x, g, "conv_input_grad_by_residues")
    assert ran == expected
    # the input gradient (the forward, for the transposed layer) is bit-identical
    index = 0 if isinstance(layer, nnx.ConvTranspose2d) else 1
    np.testing.assert_array_equal(fast[index], portable[index])
    for a, b in zip(fast, portable, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-6)
