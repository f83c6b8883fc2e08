"""The NumPy fast paths of max pooling (nnx/_fastpool.py) equal the portable path."""

import numpy as np
import pytest

import nnx
from nnx import _fastconv, _fastpool
from tests.conftest import host_normal

# (layer, input shape, whether the fast path applies): tiling windows with leftover rows and
# columns, padding, ceil_mode, 1-d and 3-d; overlapping and dilated windows take the portable path
CASES = {
    "2x2": (lambda: nnx.MaxPool2d(2), (3, 2, 8, 6), True),
    "2x2-leftover": (lambda: nnx.MaxPool2d(2), (2, 3, 7, 9), True),
    "3x2-padding": (lambda: nnx.MaxPool2d((3, 2), padding=1), (2, 2, 7, 6), True),
    "2x2-ceil": (lambda: nnx.MaxPool2d(2, ceil_mode=True), (2, 2, 7, 5), True),
    "1d": (lambda: nnx.MaxPool1d(3), (2, 3, 10), True),
    "1x3": (lambda: nnx.MaxPool2d((1, 3)), (2, 2, 3, 7), True),
    "3d": (lambda: nnx.MaxPool3d(2, return_indices=True), (2, 2, 4, 5, 6), True),
    "overlapping": (lambda: nnx.MaxPool2d(3, stride=2), (2, 2, 7, 7), False),
    "dilated": (lambda: nnx.MaxPool2d(2, dilation=2, stride=2), (2, 2, 8, 8), False),
}


def _grads(layer, x, g):
    y = layer(x)
    outputs = list(y) if isinstance(y, tuple) else [y]  # with the indices of return_indices
    return [*outputs, layer.backward(g)]


def _spy(monkeypatch, name):
    """Record what ``_fastpool.<name>`` returns (None: it did not apply)."""
    results = []
    original = getattr(_fastpool, name)
    monkeypatch.setattr(_fastpool, name, lambda *a: results.append(r := original(*a)) or r)
    return results


@pytest.mark.parametrize("values", ["normal", "ties", "nan", "inf"])
@pytest.mark.parametrize("name", CASES)
def test_max_pool_fast_path_equals_portable(name, values, monkeypatch):
    make, shape, applies = CASES[name]
    layer = make()
    x = host_normal(shape, seed=1).astype(np.float32)
    if values == "ties":  # few distinct values: the first maximum of each window wins
        x = np.round(x)
    elif values == "nan":  # the portable rule: a NaN wins only at a window's first offset
        x.reshape(-1)[::7] = np.nan
    elif values == "inf":
        x.reshape(-1)[::5] = -np.inf
        x.reshape(-1)[::11] = np.inf
    y = layer(x)
    g = host_normal((y[0] if isinstance(y, tuple) else y).shape, seed=2).astype(np.float32)
    if values == "inf":  # an infinite gradient must not make NaN where its window lost
        g.reshape(-1)[::3] = np.inf
    forward, backward = (
        _spy(monkeypatch, "max_pool_forward"),
        _spy(monkeypatch, "max_pool_backward"),
    )
    fast = _grads(layer, x, g)
    assert (forward[-1] is not None) == (applies and values != "nan")
    assert (backward[-1] is not None) == applies
    with _fastconv.portable_only():
        forward.clear(), backward.clear()
        portable = _grads(layer, x, g)
        assert forward[-1] is None and backward[-1] is None, "fast path inside portable_only()"
    for a, b in zip(fast, portable, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)  # NaN where NaN


def test_max_pool_forward_fast_path_only_for_numpy():
    strict = nnx.get_backend("strict")
    x = strict.asarray(np.ones((1, 1, 4, 4), np.float32))
    assert _fastpool.max_pool_forward(x, (2, 2), (2, 2), (1, 1), (2, 2)) is None


def test_max_pool_backward_fast_path_only_for_numpy():
    strict = nnx.get_backend("strict")
    g = strict.asarray(np.ones((1, 1, 2, 2), np.float32))
    arg = strict.asarray(np.zeros((1, 1, 2, 2), np.int32))
    assert _fastpool.max_pool_backward(g, arg, (2, 2), (2, 2), (1, 1), (4, 4)) is None


# memory order of an (N, C, H, W) array, outermost axis first
LAYOUTS = {"batch-major": (0, 1, 2, 3), "channel-major": (1, 0, 2, 3), "batch-inner": (1, 2, 3, 0)}


def _in_layout(a, layout):
    """``a`` with the same values, laid out in memory in the order ``LAYOUTS[layout]``."""
    order = LAYOUTS[layout]
    return np.transpose(np.ascontiguousarray(np.transpose(a, order)), np.argsort(order))


@pytest.mark.parametrize("g_layout", list(LAYOUTS))
@pytest.mark.parametrize("x_layout", ["channel-major", "batch-inner"])
def test_max_pool_fast_path_convolution_layouts(x_layout, g_layout, monkeypatch):
    """A convolution's output lies channel by channel in memory, or (batch-innermost columns)
    with the batch innermost; the gradient may come in any layout."""
    x = _in_layout(host_normal((2, 3, 6, 8), seed=3).astype(np.float32), x_layout)
    layer = nnx.MaxPool2d(2)
    g = _in_layout(host_normal((2, 3, 3, 4), seed=4).astype(np.float32), g_layout)
    backward = _spy(monkeypatch, "max_pool_backward")
    fast = _grads(layer, x, g)
    dx = backward[-1]
    assert dx is not None
    # dx in the layout of the input (and of the winning offsets)
    assert np.transpose(dx, LAYOUTS[x_layout]).flags.c_contiguous
    with _fastconv.portable_only():
        portable = _grads(layer, x, g)
    for a, b in zip(fast, portable, strict=True):
        np.testing.assert_array_equal(a, b)
