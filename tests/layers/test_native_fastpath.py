"""The native fast paths (nnx/_native.py: PyTorch's and JAX's own convolution and pooling
kernels, forward and gradient; JAX's window sums for average pooling; PyTorch's fused
attention) equal the portable path, run when they should, and stop inside
``_fastconv.portable_only()``."""

import contextlib

import numpy as np
import pytest

import nnx
from nnx import _fastconv, _native
from tests.conftest import _backend_param, host_normal

NATIVE = [
    _backend_param("torch", pytest.mark.torch),
    _backend_param("jax"),
    _backend_param("torch:cuda", pytest.mark.gpu, pytest.mark.torch),
    _backend_param("jax:gpu", pytest.mark.gpu),
]

# (constructor, input shape); the first ones run by default, the rest under -m slow
CONVS = {
    "stride2-dilation-groups": (
        lambda: nnx.Conv2d(4, 6, 3, stride=(2, 3), padding=(1, 2), dilation=(2, 1), groups=2),
        (2, 4, 11, 10),
    ),
    "same-even-kernel-reflect": (  # asymmetric "same" padding, a padding mode padded first
        lambda: nnx.Conv2d(2, 4, (4, 2), padding="same", padding_mode="reflect"),
        (2, 2, 7, 6),
    ),
    "conv1d-same-dilation-groups": (
        lambda: nnx.Conv1d(4, 2, 3, padding="same", dilation=2, groups=2, bias=False),
        (2, 4, 10),
    ),
    "conv3d-stride2": (lambda: nnx.Conv3d(2, 3, 3, stride=2, padding=1), (2, 2, 5, 6, 5)),
    "slow:depthwise-x2-stride-dilation-5x5": (
        lambda: nnx.Conv2d(2, 4, 5, stride=(1, 2), padding=(2, 1), dilation=(1, 2), groups=2),
        (2, 2, 8, 9),
    ),
    "slow:plain": (lambda: nnx.Conv2d(3, 4, 3), (3, 3, 7, 6)),
    "slow:6-16-5x5": (lambda: nnx.Conv2d(3, 4, 5, stride=2), (2, 3, 9, 8)),
    "slow:conv3d-one-channel-5": (
        lambda: nnx.Conv3d(1, 2, (5, 1, 5), padding=(2, 0, 1)),
        (2, 1, 6, 2, 7),
    ),
    "slow:padding-beyond-kernel": (lambda: nnx.Conv2d(2, 3, 2, padding=3), (2, 2, 4, 5)),
    "slow:pointwise-stride2": (lambda: nnx.Conv2d(3, 4, 1, stride=2), (3, 3, 7, 7)),
    "slow:5x5-pad2": (lambda: nnx.Conv2d(1, 3, 5, padding=2), (2, 1, 9, 9)),
    "slow:groups-circular": (
        lambda: nnx.Conv2d(4, 6, 3, padding=2, padding_mode="circular", groups=2),
        (2, 4, 5, 7),
    ),
    "slow:depthwise-replicate": (
        lambda: nnx.Conv2d(3, 3, (3, 2), padding=1, padding_mode="replicate", groups=3),
        (2, 3, 6, 5),
    ),
    "slow:stride-leaves-a-border": (lambda: nnx.Conv2d(2, 2, 3, stride=3), (2, 2, 8, 10)),
    "slow:conv1d-stride2": (lambda: nnx.Conv1d(2, 4, 3, stride=2, padding=1), (3, 2, 9)),
    "slow:conv3d-groups-dilation": (
        lambda: nnx.Conv3d(4, 2, 2, dilation=(1, 2, 1), groups=2, padding=(1, 0, 1)),
        (1, 4, 4, 5, 4),
    ),
    "slow:zero-batch": (lambda: nnx.Conv2d(2, 3, 3, padding=1), (0, 2, 5, 5)),
}

# transposed convolutions: PyTorch's kernels only (JAX keeps the portable code)
CONV_TRANSPOSES = {
    "t2d-stride-outpad-groups-dilation": (
        lambda: nnx.ConvTranspose2d(
            4, 6, 3, stride=(2, 3), padding=(1, 2), output_padding=(1, 0), groups=2, dilation=(2, 1)
        ),
        (2, 4, 5, 4),
    ),
    "t1d-no-bias": (lambda: nnx.ConvTranspose1d(3, 2, 4, stride=2, bias=False), (2, 3, 6)),
    "slow:t3d": (lambda: nnx.ConvTranspose3d(2, 3, 3, stride=2, padding=1), (2, 2, 3, 4, 3)),
    "slow:t2d-depthwise": (lambda: nnx.ConvTranspose2d(3, 3, 2, stride=2, groups=3), (2, 3, 4, 5)),
}

POOLS = {
    "max-ceil-pad": (lambda: nnx.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), (2, 3, 9, 8)),
    "max1d-indices": (
        lambda: nnx.MaxPool1d(3, stride=2, padding=1, ceil_mode=True, return_indices=True),
        (2, 3, 10),
    ),
    "avg-exclude-pad": (
        lambda: nnx.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        (2, 3, 9, 8),
    ),
    "slow:max-dilation": (lambda: nnx.MaxPool2d((3, 2), stride=1, dilation=(2, 1)), (2, 2, 9, 8)),
    "slow:max3d": (lambda: nnx.MaxPool3d(2, stride=1, padding=1, dilation=2), (1, 2, 5, 6, 5)),
    "slow:avg-divisor": (
        lambda: nnx.AvgPool2d(3, stride=2, padding=1, divisor_override=5),
        (2, 3, 9, 8),
    ),
    "slow:avg1d": (lambda: nnx.AvgPool1d(3, stride=2, padding=1, ceil_mode=True), (2, 3, 10)),
    "slow:avg3d": (lambda: nnx.AvgPool3d(2, stride=1, padding=1), (1, 2, 5, 6, 5)),
}


def _cases(table):
    return [
        pytest.param(
            k, id=k.removeprefix("slow:"), marks=[pytest.mark.slow] * k.startswith("slow:")
        )
        for k in table
    ]


def _run(layer, x, seed=2):
    """Forward and backward: every output, the input gradient and the parameter gradients."""
    layer.zero_grad()
    out = layer(x)
    outs = list(out) if isinstance(out, tuple) else [out]
    g = nnx.backend.backend_of(x).asarray(host_normal(tuple(outs[0].shape), seed=seed))
    dx = layer.backward(g)
    return [nnx.to_numpy(a) for a in [*outs, dx, *(p.grad for p in layer.parameters())]]


def _both_paths(make, shape, be, data=None, native_runs=True):
    """The layer's results on the native path and on the portable path (the same layer, so
    the same weights); asserts the native kernels ran in the first (where ``native_runs``) and
    not in the second."""
    x = be.asarray(host_normal(shape, seed=1) if data is None else data)
    layer = make().to(dtype="float64").to(be)
    results, counts = [], []
    for native in (True, False):
        before = sum(_native.calls.values())
        with contextlib.nullcontext() if native else _fastconv.portable_only():
            results.append(_run(layer, x))
        counts.append(sum(_native.calls.values()) - before)
    assert (counts[0] >= 2 if native_runs else counts[0] == 0) and counts[1] == 0, counts
    return results


def _assert_same(native, portable):
    assert len(native) == len(portable)
    for a, b in zip(native, portable, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def _conv_cases():
    """Every case on every native backend; by default only the torch ones and one JAX case
    (eager JAX compiles each small operation of the portable path: seconds per case)."""
    cheap_on_jax = "conv1d-same-dilation-groups"
    for spec in NATIVE:
        for case in _cases(CONVS):
            (name,) = case.values
            slow = name.startswith("slow:") or ("jax" in spec.id and name != cheap_on_jax)
            marks = [*spec.marks, *[pytest.mark.slow] * slow]
            yield pytest.param(spec.values[0], name, id=f"{case.id}-{spec.id}", marks=marks)


@pytest.mark.parametrize(("spec", "name"), list(_conv_cases()))
def test_native_convolution_equals_portable_path(spec, name):
    be = nnx.get_backend(spec)
    make, shape = CONVS[name]
    # JAX keeps the portable code where each group has one input channel (nnx._native)
    one_channel = make().weight.value.shape[1] == 1
    with nnx.backend.float64_scope(be):
        native, portable = _both_paths(
            make, shape, be, native_runs=be.name == "torch" or not one_channel
        )
    _assert_same(native, portable)


@pytest.mark.torch
@pytest.mark.parametrize("name", _cases(CONV_TRANSPOSES))
def test_torch_transposed_convolution_equals_portable_path(name):
    make, shape = CONV_TRANSPOSES[name]
    _assert_same(*_both_paths(make, shape, nnx.get_backend("torch")))


@pytest.mark.torch
def test_torch_transposed_convolution_with_output_size():
    be = nnx.get_backend("torch")
    layer = nnx.ConvTranspose2d(2, 3, 3, stride=2, rng=0).to(dtype="float64").to(be)
    x = be.asarray(host_normal((2, 2, 4, 4), seed=1))
    results = []
    for ctx in (contextlib.nullcontext(), _fastconv.portable_only()):
        with ctx:
            layer.zero_grad()
            y = layer(x, output_size=(10, 10))
            dx = layer.backward(be.asarray(host_normal(tuple(y.shape), seed=2)))
            results.append([nnx.to_numpy(a) for a in (y, dx, layer.weight.grad, layer.bias.grad)])
    assert results[0][0].shape == (2, 3, 10, 10)
    _assert_same(*results)


@pytest.mark.torch
@pytest.mark.parametrize("name", _cases(POOLS))
def test_torch_pooling_equals_portable_path(name):
    make, shape = POOLS[name]
    _assert_same(*_both_paths(make, shape, nnx.get_backend("torch")))


@pytest.mark.slow  # eager JAX runs the portable side slowly (seconds per case)
@pytest.mark.parametrize(
    "name", [k for k in _cases(POOLS) if "avg" in k.values[0]] + _cases({"slow:lp": None})
)
def test_jax_average_pooling_equals_portable_path(name):
    pytest.importorskip("jax")
    make, shape = POOLS.get(name) or (lambda: nnx.LPPool2d(2, 3, stride=2), (2, 2, 7, 7))
    be = nnx.get_backend("jax")
    with nnx.backend.float64_scope(be):
        _assert_same(*_both_paths(make, shape, be))


@pytest.mark.torch
@pytest.mark.parametrize("make", [lambda: nnx.MaxPool2d(2, stride=1), lambda: nnx.MaxPool1d(3)])
def test_torch_max_pooling_ties_go_to_the_first_maximum(make):
    # integer-valued data: many windows hold their maximum twice; both paths pick the first
    data = np.round(host_normal((2, 2, 6, 6), seed=3))
    data = data[:, :, 0] if make().nd == 1 else data
    _assert_same(*_both_paths(make, data.shape, nnx.get_backend("torch"), data))


def test_numpy_arrays_take_no_native_path():
    assert _native.library(np.zeros(2)) is None


@pytest.mark.torch
def test_arrays_of_other_libraries_or_mixed_ones_take_the_portable_path():
    torch = pytest.importorskip("torch")
    assert _native.library(torch.zeros(2)) is torch
    assert _native.library(torch.zeros(2), np.zeros(2)) is None
    with _fastconv.portable_only():
        assert _native.library(torch.zeros(2)) is None


def test_compiled_jax_step_traces_the_native_kernels():
    """nnx.compile's step on JAX runs lax convolutions inside the traced explicit backward and
    gives the same loss and weights as eager NumPy."""
    pytest.importorskip("jax")

    def model():
        return nnx.Sequential(
            nnx.Conv2d(2, 3, 3, padding=1, rng=0),
            nnx.ReLU(),
            nnx.MaxPool2d(2),
            nnx.Conv2d(3, 2, 3, stride=2, rng=1),
            nnx.Flatten(),
            nnx.Linear(2, 2, rng=2),
        )

    x, y = host_normal((4, 2, 6, 6), seed=1).astype(np.float32), np.arange(4) % 2
    results = []
    for be in (nnx.get_backend("numpy"), nnx.get_backend("jax")):
        m, loss = model().to(be), nnx.CrossEntropyLoss()
        opt = nnx.optim.SGD(m.parameters(), lr=0.1)
        before = _native.calls["conv_backward"]
        if be.name == "jax":
            step = nnx.compile(m, loss, opt)
            values = [float(nnx.to_numpy(step(be.asarray(x), be.asarray(y, dtype="int32"))[0]))]
            values += [float(nnx.to_numpy(step(be.asarray(x), be.asarray(y, dtype="int32"))[0]))]
            assert _native.calls["conv_backward"] - before == 2  # traced once, both conv layers
            with pytest.raises(nnx.BackwardBeforeForwardError):  # the traced input is dropped
                m[0].backward(be.asarray(np.ones((4, 3, 6, 6), np.float32)))
        else:
            values = []
            for _ in range(2):
                opt.zero_grad()
                values.append(float(loss(m(x), y)))
                m.backward(loss.backward(), need_input_grad=False)
                opt.step()
        results.append((values, [nnx.to_numpy(p.value) for p in m.parameters()]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# (constructor kwargs, query length, key length, forward kwargs, whether the fused kernel runs)
ATTENTION = {
    "self": ({}, 5, 5, {}, True),
    "cross-causal-batch-first": (
        {"batch_first": True, "bias": False},
        6,
        4,
        {"is_causal": True},
        True,
    ),
    "eval-dropout": ({"dropout": 0.5, "eval": True}, 3, 7, {}, True),
    "need-weights": ({}, 4, 4, {"need_weights": True}, False),
    "key-padding-mask": (
        {},
        4,
        5,
        {"key_padding_mask": np.arange(10).reshape(2, 5) % 4 == 3},
        False,
    ),
    "slow:attn-mask": ({}, 4, 5, {"attn_mask": np.triu(np.ones((4, 5), bool), 2)}, False),
    "slow:train-dropout": ({"dropout": 0.5}, 3, 3, {}, False),
    "slow:self-causal": ({"batch_first": True}, 6, 6, {"is_causal": True}, True),
}


@pytest.mark.torch
@pytest.mark.parametrize("name", _cases(ATTENTION))
def test_torch_attention_equals_portable_path(name):
    """On torch tensors MultiheadAttention runs PyTorch's fused CPU attention kernel and its
    backward kernel where nnx's semantics allow (no masks but the causal one, no dropout, no
    weights returned): the same outputs and gradients as the portable code; elsewhere the
    portable code runs."""
    make_kw, length, src, fwd_kw, fused = ATTENTION[name]
    make_kw, be = dict(make_kw), nnx.get_backend("torch")
    evaluate = make_kw.pop("eval", False)
    layer = nnx.MultiheadAttention(8, 2, rng=0, **make_kw).to(dtype="float64").to(be)
    layer.eval() if evaluate else layer.train()
    first = (2, length, 8) if layer.batch_first else (length, 2, 8)
    other = (2, src, 8) if layer.batch_first else (src, 2, 8)
    q = be.asarray(host_normal(first, seed=1))
    kv = be.asarray(host_normal(other, seed=2))
    fwd_kw = {k: be.asarray(v) if isinstance(v, np.ndarray) else v for k, v in fwd_kw.items()}
    results, counts = [], []
    for native in (True, False):
        before = _native.calls["attention_forward"] + _native.calls["attention_backward"]
        with contextlib.nullcontext() if native else _fastconv.portable_only():
            layer.zero_grad()
            out = layer(q, kv, kv, **fwd_kw)
            outs = list(out) if isinstance(out, tuple) else [out]
            g = be.asarray(host_normal(tuple(outs[0].shape), seed=3))
            grads = layer.backward(g)
        after = _native.calls["attention_forward"] + _native.calls["attention_backward"]
        counts.append(after - before)
        results.append(
            [nnx.to_numpy(a) for a in [*outs, *grads, *(p.grad for p in layer.parameters())]]
        )
    assert counts == ([2, 0] if fused else [0, 0]), counts
    if "train-dropout" not in name:  # two dropout draws differ; only the routing is checked
        _assert_same(*results)


@pytest.mark.torch
def test_torch_build_without_the_fused_attention_kernels_takes_the_portable_path(monkeypatch):
    """A PyTorch build without the private fused CPU attention ops (older than about 2.2) runs
    the portable attention instead of failing."""
    be = nnx.get_backend("torch")
    torch = _native.native_library(be.asarray(np.zeros(1)))
    monkeypatch.setitem(_native._has_attention_ops, id(torch), False)
    layer = nnx.MultiheadAttention(8, 2, rng=0, batch_first=True).to(be)
    q = be.asarray(host_normal((2, 3, 8), seed=1).astype("float32"))
    before = _native.calls["attention_forward"]
    out = layer(q, q, q)
    layer.backward(be.asarray(np.ones(tuple(out.shape), "float32")))
    assert _native.calls["attention_forward"] == before


@pytest.mark.parametrize("spec", [s for s in NATIVE if "torch" in s.id])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_native_relu_equals_portable_path_bit_for_bit(spec, dtype):
    """The PyTorch ReLU backward gives the portable path's bits, -0.0, NaN, infinities and the
    signs of zero gradients included."""
    be = nnx.get_backend(spec)
    special = np.array([-0.0, 0.0, np.nan, np.inf, -np.inf, 1e-45, -1e-45, 2.0, -2.0])
    x = np.concatenate([special, host_normal((3, 7), seed=1).ravel()]).astype(dtype)
    g = np.concatenate([-special[::-1], host_normal((3, 7), seed=2).ravel()]).astype(dtype)
    x, g = be.asarray(x.reshape(6, 5)), be.asarray(g.reshape(6, 5))
    layer = nnx.ReLU()
    results, counts = [], []
    for native in (True, False):
        before = _native.calls["relu_backward"]
        with contextlib.nullcontext() if native else _fastconv.portable_only():
            y = layer(x)
            results.append([nnx.to_numpy(y), nnx.to_numpy(layer.backward(g))])
        counts.append(_native.calls["relu_backward"] - before)
    assert counts == [1, 0]
    for a, b in zip(*results, strict=True):
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}"))
    assert np.signbit(results[0][1]).any() and np.isnan(results[0][1]).any()
    with pytest.raises(ValueError, match=r"ReLU.backward: gradient has shape \(5, 6\)"):
        layer.backward(be.asarray(np.zeros((5, 6), dtype)))
