"""EmbeddingBag (nnx/layers/embedding_bag.py) against PyTorch in float64 on every oracle backend:
2-D bags and 1-D input with offsets, sum/mean/max, padding_idx, per_sample_weights (and their
gradient), include_last_offset, empty bags, max_norm, scale_grad_by_freq; PyTorch's own module
configurations; finite differences; errors."""

import numpy as np
import pytest

import nnx
from tests.conftest import _backend_param
from tests.layers.torch_oracle import (
    ORACLE_BACKENDS,
    check_torch_configs,
    compare,
    config_arguments,
)

IDS_2D = np.array([[0, 2, 2, 5], [1, 1, 3, 0], [4, 5, 6, 6]])
IDS_1D = np.array([3, 1, 4, 1, 5, 0, 2, 6, 5])
OFFSETS = np.array([0, 2, 2, 5])  # bag 1 is empty

# name -> (constructor kwargs, input, offsets or None)
CASES = {
    "mean-2d": ({}, IDS_2D, None),
    "sum-1d": ({"mode": "sum"}, IDS_1D, OFFSETS),
    "max-1d": ({"mode": "max"}, IDS_1D, OFFSETS),
    "max-2d-padding": ({"mode": "max", "padding_idx": 2}, IDS_2D, None),
    "mean-1d-padding": ({"padding_idx": 1}, IDS_1D, OFFSETS),
    "sum-2d-padding-neg": ({"mode": "sum", "padding_idx": -1}, IDS_2D, None),
    "sum-last-offset": (
        {"mode": "sum", "include_last_offset": True},
        IDS_1D,
        np.array([0, 2, 2, 5, 9]),
    ),
    "mean-last-offset": ({"include_last_offset": True}, IDS_1D, np.array([0, 4, 9])),
    "max-all-padding-bag": ({"mode": "max", "padding_idx": 1}, IDS_1D, np.array([0, 1, 2, 3])),
}
# every case runs on NumPy by default (test_every_case_matches_pytorch_on_numpy); this one on
# array-api-strict's second device too; the rest, and JAX, under slow
DEFAULT = ("max-1d",)
SLOW_BACKENDS = [
    pytest.param(b, marks=[] if b == "numpy" else [pytest.mark.slow]) for b in ORACLE_BACKENDS
]


def _pair(kwargs):
    import torch

    return nnx.EmbeddingBag(7, 3, rng=0, **kwargs), torch.nn.EmbeddingBag(7, 3, **kwargs)


def _run(name, backend, steps=1):
    kwargs, ids, offsets = CASES[name]
    extra = {} if offsets is None else {"offsets": offsets}
    module, tmodule = _pair(kwargs)
    compare(module, tmodule, ids.shape, inputs=[ids], kwargs=extra, backend=backend, steps=steps)


def _params():
    for name in CASES:
        for backend in ORACLE_BACKENDS:
            default = backend == "strict:device1" and name in DEFAULT
            yield pytest.param(name, backend, marks=[] if default else [pytest.mark.slow])


@pytest.mark.torch
@pytest.mark.parametrize("name, backend", list(_params()))
def test_matches_pytorch(name, backend):
    _run(name, backend)


@pytest.mark.torch
def test_every_case_matches_pytorch_on_numpy():
    for name in CASES:
        try:
            _run(name, "numpy", steps=2)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


@pytest.mark.torch
@pytest.mark.parametrize("backend", SLOW_BACKENDS)
def test_pytorch_module_test_configurations(backend):
    def skip(config):
        return "sparse gradients" if config_arguments(config)[1].get("sparse") else None

    assert check_torch_configs("EmbeddingBag", backends=(backend,), skip=skip, minimum=7) >= 7


@pytest.mark.torch
@pytest.mark.parametrize("backend", SLOW_BACKENDS)
@pytest.mark.parametrize("layout", ["2d", "1d"])
def test_per_sample_weights_and_their_gradient(backend, layout):
    import torch

    be = nnx.get_backend(backend)
    ids, offsets = (IDS_2D, None) if layout == "2d" else (IDS_1D, OFFSETS)
    psw = np.random.default_rng(1).standard_normal(ids.shape)
    module = nnx.EmbeddingBag(7, 3, mode="sum", padding_idx=5, rng=0).to(be, dtype="float64")
    tmodule = torch.nn.EmbeddingBag(7, 3, mode="sum", padding_idx=5).double()
    tmodule.weight.data = torch.tensor(nnx.to_numpy(module.weight.value).copy())
    tpsw = torch.tensor(psw, requires_grad=True)
    toff = None if offsets is None else torch.tensor(offsets)
    with nnx.backend.float64_scope(be):
        off = None if offsets is None else be.asarray(offsets)
        y = module(be.asarray(ids), off, be.asarray(psw))
        ty = tmodule(torch.tensor(ids), toff, per_sample_weights=tpsw)
        np.testing.assert_allclose(nnx.to_numpy(y), ty.detach().numpy(), rtol=1e-9, atol=1e-12)
        g = np.random.default_rng(2).standard_normal(tuple(ty.shape))
        ty.backward(torch.tensor(g))
        grads = module.backward(be.asarray(g))
    assert grads[0] is None and grads[1] is None
    np.testing.assert_allclose(nnx.to_numpy(grads[2]), tpsw.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        nnx.to_numpy(module.weight.grad), tmodule.weight.grad.numpy(), rtol=1e-9, atol=1e-12
    )


@pytest.mark.torch
@pytest.mark.parametrize("backend", SLOW_BACKENDS)
def test_max_norm_renormalizes_the_rows_used_as_pytorch(backend):
    ids = np.array([[0, 2], [2, 4]])
    module, tmodule = _pair({"mode": "sum", "max_norm": 1.0, "norm_type": 3.0})
    module.weight.value = module.weight.value * 3.0  # every row above the norm
    compare(module, tmodule, ids.shape, inputs=[ids], backend=backend)
    w = nnx.to_numpy(module.weight.value)
    norms = np.sum(np.abs(w) ** 3, axis=1) ** (1 / 3)
    np.testing.assert_allclose(norms[[0, 2, 4]], 1.0, rtol=1e-6)
    assert np.all(norms[[1, 3, 5, 6]] > 1.0)


@pytest.mark.torch
@pytest.mark.parametrize("spec", SLOW_BACKENDS)
@pytest.mark.parametrize("mode", ["sum", "mean"])
def test_scale_grad_by_freq_divides_by_the_id_count(spec, mode):
    """The documented semantics, checked against torch.nn.functional.embedding (whose CPU
    kernel is right; EmbeddingBag's CPU kernel of PyTorch 2.13 is not: pytorch#190063)."""
    import torch

    backend = nnx.get_backend(spec)
    ids = np.array([[0, 0, 1, 2], [0, 3, 3, 1]])
    module = nnx.EmbeddingBag(5, 2, mode=mode, scale_grad_by_freq=True, rng=0)
    module = module.to(backend, dtype="float64")
    w = torch.tensor(nnx.to_numpy(module.weight.value).copy(), requires_grad=True)
    rows = torch.nn.functional.embedding(torch.tensor(ids), w, scale_grad_by_freq=True)
    ty = rows.sum(1) if mode == "sum" else rows.mean(1)
    g = np.random.default_rng(0).standard_normal((2, 2))
    ty.backward(torch.tensor(g))
    with nnx.backend.float64_scope(backend):
        y = module(backend.asarray(ids))
        module.backward(backend.asarray(g))
    np.testing.assert_allclose(nnx.to_numpy(y), ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(nnx.to_numpy(module.weight.grad), w.grad.numpy(), rtol=1e-12)


def test_portable_scatter_equals_the_library_one():
    for mode in ("sum", "mean", "max"):
        a = nnx.EmbeddingBag(7, 3, mode=mode, rng=0).to(dtype="float64")
        b = nnx.EmbeddingBag(7, 3, mode=mode, rng=0, scatter="portable").to(dtype="float64")
        g = np.random.default_rng(0).standard_normal((4, 3))
        for m in (a, b):
            m(IDS_1D, OFFSETS)
            m.backward(g)
        np.testing.assert_allclose(a.weight.grad, b.weight.grad, rtol=1e-12, atol=1e-15)


GRAD_BACKENDS = [
    _backend_param("numpy"),
    _backend_param("strict:device1"),
    _backend_param("torch", pytest.mark.torch),
    _backend_param("jax", pytest.mark.slow),
]


@pytest.mark.parametrize("spec", GRAD_BACKENDS)
def test_weight_gradient_matches_finite_differences(spec):
    """gradcheck perturbs inputs, so the weight enters as an input here: a module that copies
    its input into the bag's weight before each forward."""
    backend = nnx.get_backend(spec)
    ids, offsets = backend.asarray(IDS_1D), backend.asarray(OFFSETS)
    for mode in ("sum", "mean", "max"):
        bag = nnx.EmbeddingBag(7, 3, mode=mode, padding_idx=6, rng=0).to(backend, dtype="float64")

        class AsInput(nnx.Module):
            def forward(self, w, bag=bag):
                bag.weight.value = w
                return bag(ids, offsets)

            def backward(self, g, bag=bag):
                bag.weight.grad = None
                bag.backward(g)
                return bag.weight.grad

        w0 = backend.asarray(np.random.default_rng(3).standard_normal((7, 3)))
        result = nnx.gradcheck(AsInput(), w0)
        assert result.ok, f"{mode}: {result}"


def test_float16_bags_stay_float16_and_finite():
    bag = nnx.EmbeddingBag(7, 3, rng=0)
    want = bag(IDS_2D)
    half = bag.to(dtype="float16")
    y = half(IDS_2D)
    assert y.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float32), want, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"mode": "median"}, "EmbeddingBag: mode must be one of"),
        ({"sparse": True}, "EmbeddingBag: sparse=True is not supported"),
        ({"mode": "max", "scale_grad_by_freq": True}, "EmbeddingBag: mode='max' does not"),
        ({"padding_idx": 9}, "EmbeddingBag: padding_idx must be within"),
        ({"max_norm": -1.0}, "EmbeddingBag: max_norm"),
    ],
)
def test_bad_arguments_raise_one_line_naming_the_module(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        nnx.EmbeddingBag(7, 3, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "args, kwargs, pattern",
    [
        ((IDS_1D,), {}, "1-D input needs 1-D integer offsets"),
        ((IDS_2D, np.array([0, 1])), {}, "offsets must be None for 2-D input"),
        ((IDS_1D, np.array([1, 3])), {}, r"offsets\[0\] must be 0"),
        ((IDS_1D, np.array([0, 12])), {}, "non-decreasing and at most the input length 9"),
        ((IDS_1D + 5, OFFSETS), {}, r"ids must lie in \[0, 6\]"),
        ((IDS_2D,), {"per_sample_weights": np.ones((3, 4), np.float32)}, "only supported"),
        ((np.zeros((2, 2, 2), np.int64),), {}, "input must be 1-D"),
        (
            (IDS_1D, np.array([0, 2, 5])),
            {"last": True},
            "the last offset must be the input length 9",
        ),
    ],
)
def test_bad_inputs_raise_one_line_naming_the_module(args, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        last = kwargs.pop("last", False)
        nnx.EmbeddingBag(7, 3, include_last_offset=last, rng=0)(*args, **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.torch
def test_empty_input_and_no_bags_match_pytorch():
    for ids, offsets in ((np.array([], np.int64), np.array([0, 0])), (IDS_1D, np.array([0]))):
        module, tmodule = _pair({"mode": "sum"})
        compare(module, tmodule, ids.shape, inputs=[ids], kwargs={"offsets": offsets})
    bag = nnx.EmbeddingBag(7, 3, rng=0)
    assert bag(IDS_1D, np.array([], np.int64)).shape == (0, 3)


def test_a_given_weight_is_used_and_checked():
    w = np.arange(6.0).reshape(3, 2)
    bag = nnx.EmbeddingBag(3, 2, mode="sum", _weight=w, dtype="float64")
    np.testing.assert_array_equal(bag(np.array([[0, 2]])), [[4.0, 6.0]])
    with pytest.raises(ValueError, match=r"EmbeddingBag: _weight must have shape \(3, 2\)"):
        nnx.EmbeddingBag(3, 2, _weight=np.ones((2, 3)))


def test_float_ids_are_refused():
    with pytest.raises(TypeError, match="EmbeddingBag: input must be an integer array"):
        nnx.EmbeddingBag(7, 3)(np.ones((2, 3)))


@pytest.mark.skipif(not nnx.backend.backend_available("jax")[0], reason="JAX not installed")
def test_embedding_layers_train_under_nnx_compile_with_their_default_index_check():
    """The ids' range is read back to the host eagerly; inside jax.jit it cannot be, and the
    compiled step runs without it instead of failing on a placeholder."""
    from nnx.optim import SGD

    be = nnx.get_backend("jax")
    for layer in (nnx.EmbeddingBag(10, 3, mode="sum", rng=0), nnx.Embedding(10, 3, rng=0)):
        model = nnx.Sequential(
            layer, nnx.Flatten(), nnx.Linear(6 if isinstance(layer, nnx.Embedding) else 3, 2, rng=1)
        ).to(be)
        ids = be.asarray(np.array([[1, 2], [3, 9]]))
        step = nnx.compile(model, nnx.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1))
        loss, _ = step(ids, be.asarray(np.array([0, 1])))
        assert np.isfinite(float(nnx.to_numpy(loss)))
    with pytest.raises(ValueError, match=r"EmbeddingBag: ids must lie in \[0, 9\]"):
        nnx.EmbeddingBag(10, 3, mode="sum", rng=0)(np.array([[1, 12]]))
