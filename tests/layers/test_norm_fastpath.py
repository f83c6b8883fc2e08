"""BatchNorm's NumPy fast reductions (nnx/_fastreduce.py) equal the portable reductions, take
only channel-major arrays, and leave the layer's forward and gradients unchanged."""

import contextlib

import numpy as np
import pytest

import nnx
from nnx import _fastconv, _fastreduce
from tests.conftest import host_normal


def _channel_major(shape, seed):
    """An ``(N, C, ...)`` array whose memory is ``(C, N, ...)``, as a convolution's output."""
    a = host_normal((shape[1], shape[0], *shape[2:]), seed=seed)
    return np.moveaxis(a, 0, 1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(5, 3, 4, 6), (7, 2, 9), (4, 1, 1, 1)])
def test_channel_sums_equal_the_portable_sums(shape, dtype):
    a = _channel_major(shape, 1).astype(dtype)
    b = _channel_major(shape, 2).astype(dtype)
    axes = (0, *range(2, len(shape)))
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(_fastreduce.channel_sum(a), a.sum(axis=axes), rtol=tol, atol=tol)
    np.testing.assert_allclose(
        _fastreduce.channel_sum(a, b), (a * b).sum(axis=axes), rtol=tol, atol=tol
    )


def test_other_layouts_and_arrays_are_left_to_the_portable_path():
    nchw = host_normal((4, 3, 5, 5), seed=3)  # plain (N, C, H, W) memory: would need a copy
    cm = _channel_major((4, 3, 5, 5), 4)
    assert _fastreduce.channel_sum(nchw) is None
    assert _fastreduce.channel_sum(cm, nchw) is None
    assert _fastreduce.channel_sum(cm, cm.astype("float32")) is None  # mixed dtypes
    assert _fastreduce.channel_sum(cm[:0]) is None  # empty batch
    assert _fastreduce.channel_sum(host_normal((6,), seed=5)) is None
    with _fastconv.portable_only():
        assert _fastreduce.channel_sum(cm) is None
    assert _fastreduce.channel_sum(cm) is not None


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_with_and_without_the_fast_path_agree(training, monkeypatch):
    taken = []
    original = _fastreduce.channel_sum

    def counting(*args):
        result = original(*args)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(_fastreduce, "channel_sum", counting)
    x = _channel_major((6, 4, 5, 3), 6)
    g = _channel_major((6, 4, 5, 3), 7)
    results = []
    for portable in (False, True):
        bn = nnx.BatchNorm2d(4, dtype="float64").train(training)
        bn.weight.value = host_normal((4,), seed=8)
        bn.running_mean.value = host_normal((4,), seed=9)  # eval: not the batch's statistics
        with _fastconv.portable_only() if portable else contextlib.nullcontext():
            y = bn(x)
            dx = bn.backward(g)
        results.append([y, dx, bn.weight.grad, bn.bias.grad, bn.running_mean.value])
    assert any(taken), "the fast reductions never ran"
    for fast, portable in zip(*results, strict=True):
        np.testing.assert_allclose(fast, portable, rtol=1e-12, atol=1e-12)


def test_float16_statistics_do_not_overflow(backend):
    # 64*32*32 = 65536 values near 2 per channel: a float16 running sum passes 65504 (inf); the
    # statistics must be means accumulated as NumPy and torch do (float32), not float16 sums
    xp = backend.xp
    if not hasattr(xp, "float16"):
        pytest.skip(f"{backend.name} has no float16")
    x = 2.0 + 0.5 * _channel_major((64, 2, 32, 32), 10)
    assert _fastreduce.channel_sum(x.astype("float16")) is None  # 16-bit: the portable path
    bn = nnx.BatchNorm2d(2, dtype="float16", device=backend)
    y = bn(backend.asarray(x, dtype="float16"))
    mean = nnx.to_numpy(bn.running_mean.value).astype("float64")
    assert np.isfinite(nnx.to_numpy(y).astype("float64")).all()
    np.testing.assert_allclose(mean, 0.1 * x.mean(axis=(0, 2, 3)), rtol=2e-3)
