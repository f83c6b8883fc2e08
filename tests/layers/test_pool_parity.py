"""Pooling parity with PyTorch: MaxPool3d, AvgPool3d, AdaptiveAvgPool3d, AdaptiveMaxPool1d/2d/3d,
LPPool1d/2d/3d, MaxUnpool1d/2d/3d, FractionalMaxPool2d/3d and ``return_indices`` of every max
pool, in float64 on NumPy, array-api-strict (device1) and JAX; indices compared exactly (ties
included); PyTorch's own module inputs (``common_modules``; ``common_nn`` has none for these
classes); gradcheck on every backend; one-line errors; FractionalMaxPool's seeded samples."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import nnx
from nnx.backend import backend_available
from tests.conftest import BACKENDS as ALL_BACKENDS
from tests.conftest import host_normal
from tests.layers.torch_oracle import ORACLE_BACKENDS, check_torch_configs, compare

BACKENDS = [b for b in ORACLE_BACKENDS if backend_available(b)[0]]
NEW = [
    "MaxPool3d",
    "AvgPool3d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
    "LPPool1d",
    "LPPool2d",
    "LPPool3d",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "MaxUnpool3d",
    "FractionalMaxPool2d",
    "FractionalMaxPool3d",
]
FRACTIONAL = ("FractionalMaxPool2d", "FractionalMaxPool3d")

# (class name, args, kwargs, input shape); kwargs "_random_samples" is filled in per input
CASES = [
    ("MaxPool3d", (2,), {}, (2, 2, 4, 5, 4)),
    (
        "MaxPool3d",
        (3,),
        dict(stride=2, padding=1, dilation=(1, 2, 1), ceil_mode=True),
        (1, 2, 6, 7, 5),
    ),
    (
        "AvgPool3d",
        (3,),
        dict(stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        (1, 2, 6, 7, 5),
    ),
    ("AvgPool3d", ((2, 3, 2),), dict(stride=(1, 2, 1), divisor_override=5), (1, 2, 4, 7, 5)),
    ("AdaptiveAvgPool3d", ((2, None, 3),), {}, (2, 2, 5, 4, 7)),
    ("AdaptiveMaxPool1d", (3,), {}, (2, 3, 7)),
    ("AdaptiveMaxPool2d", ((4, 5),), {}, (2, 2, 5, 3)),
    ("AdaptiveMaxPool3d", ((3, None, 2),), {}, (1, 2, 5, 3, 7)),
    ("LPPool1d", (2, 3), dict(stride=2), (2, 2, 9)),
    ("LPPool2d", (3, (2, 3)), dict(stride=1, ceil_mode=True), (2, 2, 5, 7)),
    ("LPPool3d", (1.5, 2), dict(ceil_mode=True), (1, 2, 5, 5, 3)),
    ("LPPool2d", (float("inf"), 2), {}, (2, 2, 6, 7)),
    ("LPPool1d", (float("-inf"), 2), dict(stride=1), (2, 2, 6)),
    ("FractionalMaxPool2d", (2,), dict(output_ratio=0.5), (2, 3, 9, 13)),
    ("FractionalMaxPool2d", ((3, 2),), dict(output_size=(5, 1)), (2, 2, 11, 6)),
    ("FractionalMaxPool3d", ((4, 2, 3),), dict(output_size=(10, 3, 2)), (2, 2, 16, 7, 5)),
]
SLOW_CASES = [
    ("MaxPool3d", ((1, 2, 3),), dict(stride=(2, 1, 2), padding=(0, 1, 1)), (2, 2, 5, 6, 7)),
    ("MaxPool3d", (2,), dict(stride=1, dilation=2, ceil_mode=True), (1, 1, 6, 6, 6)),
    ("MaxPool1d", (3,), dict(stride=2, padding=1, ceil_mode=True), (2, 2, 10)),
    ("AvgPool3d", (2,), dict(stride=1, padding=1), (2, 1, 3, 4, 5)),
    ("AvgPool3d", (3,), dict(stride=2, padding=1, ceil_mode=True), (1, 2, 6, 7, 5)),
    (
        "AvgPool1d",
        (3,),
        dict(stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        (2, 2, 10),
    ),
    ("AdaptiveAvgPool3d", (1,), {}, (2, 3, 3, 4, 5)),
    ("AdaptiveAvgPool3d", ((7, 2, 5),), {}, (1, 2, 3, 4, 5)),
    ("AdaptiveAvgPool1d", (4,), {}, (2, 2, 7)),
    ("AdaptiveMaxPool1d", (9,), {}, (2, 2, 4)),
    ("AdaptiveMaxPool2d", (1,), {}, (2, 3, 6, 5)),
    ("AdaptiveMaxPool2d", ((3, None),), {}, (2, 3, 5, 6)),
    ("AdaptiveMaxPool3d", ((4, 4, 4),), {}, (2, 2, 6, 5, 9)),
    ("LPPool1d", (1, 2), {}, (2, 2, 8)),
    ("LPPool2d", (2, 3), dict(stride=2, ceil_mode=True), (2, 2, 8, 7)),
    ("LPPool3d", (2, (1, 2, 3)), dict(stride=1), (1, 2, 3, 4, 5)),
    ("LPPool3d", (float("inf"), 2), dict(ceil_mode=True), (1, 2, 5, 5, 3)),
    ("FractionalMaxPool2d", ((2, 3),), dict(output_size=(4, 3)), (1, 3, 7, 6)),
    ("FractionalMaxPool2d", (3,), dict(output_ratio=(0.4, 0.7)), (2, 2, 12, 10)),
    ("FractionalMaxPool3d", (2,), dict(output_ratio=(0.5, 0.6, 0.7)), (2, 2, 8, 9, 10)),
    ("FractionalMaxPool3d", (2,), dict(output_size=(1, 2, 1)), (1, 2, 3, 4, 3)),
]


def _samples(name, shape, seed=0):
    if name not in FRACTIONAL:
        return None
    return np.random.default_rng(seed).random((shape[0], shape[1], len(shape) - 2))


def _pair(name, args, kwargs, samples=None, **extra):
    """The nnx module and its PyTorch twin, with the same ``_random_samples`` if any."""
    import torch

    kwargs = {**kwargs, **extra}
    nkw, tkw = dict(kwargs), dict(kwargs)
    if samples is not None:
        nkw["_random_samples"], tkw["_random_samples"] = samples, torch.tensor(samples)
    return getattr(nnx, name)(*args, **nkw), getattr(torch.nn, name)(*args, **tkw)


def _inputs(name, shape, seed=1):
    x = host_normal(shape, seed=seed)
    if name.startswith("LPPool"):
        x = np.abs(x) + 0.1  # x ** 1.5 and the window sums stay real
    return x


def _run_case(name, args, kwargs, shape, backend):
    samples = _samples(name, shape)
    module, tmodule = _pair(name, args, kwargs, samples)
    compare(module, tmodule, shape, backend=backend, inputs=[_inputs(name, shape)])
    if "Max" in name and "Unpool" not in name:
        _same_indices(name, args, kwargs, shape, backend, samples)


def _same_indices(name, args, kwargs, shape, backend, samples=None, x=None):
    """Values and indices of ``return_indices=True`` equal PyTorch's (ties: rounded inputs)."""
    import torch

    x = np.round(host_normal(shape, seed=2)) if x is None else x
    module, tmodule = _pair(name, args, kwargs, samples, return_indices=True)
    be = nnx.get_backend(backend)
    with nnx.backend.float64_scope(be):
        y, idx = module.to(be, dtype="float64")(be.asarray(x))
        ty, tidx = tmodule(torch.tensor(x))
        np.testing.assert_array_equal(nnx.to_numpy(idx), tidx.numpy(), err_msg=f"{name} indices")
        np.testing.assert_array_equal(nnx.to_numpy(y), ty.numpy(), err_msg=f"{name} values")
    return nnx.to_numpy(y), nnx.to_numpy(idx)


# JAX compiles every operation for each new shape, seconds per case: by default JAX runs one
# small case of the irregular-window code; the rest under slow
JAX_DEFAULT = ("AdaptiveMaxPool1d",)


def _on(backends, default=lambda b: b != "jax"):
    """``backends`` as parameters, those not ``default`` marked slow."""
    return [b if default(b) else pytest.param(b, marks=pytest.mark.slow) for b in backends]


def _case_params(cases, slow=False):
    tag = "wide" if slow else "case"
    out = []
    for i, case in enumerate(cases):
        for b in BACKENDS:
            fast = not slow and (b != "jax" or case[0] in JAX_DEFAULT)
            marks = [] if fast else [pytest.mark.slow]
            out.append(pytest.param(case, b, marks=marks, id=f"{case[0]}-{tag}{i}-{b}"))
    return out


@pytest.mark.torch
@pytest.mark.parametrize("case, backend", _case_params(CASES) + _case_params(SLOW_CASES, slow=True))
def test_pool_matches_torch(case, backend):
    _run_case(*case, backend)


@pytest.mark.torch
@pytest.mark.parametrize("backend", _on(BACKENDS))
def test_max_pool_indices_match_torch_with_ties(backend):
    for name, args, kwargs, shape in [
        ("MaxPool1d", (3,), dict(stride=2, padding=1), (2, 2, 9)),
        (
            "MaxPool2d",
            ((2, 3),),
            dict(stride=(1, 2), dilation=(2, 1), ceil_mode=True),
            (1, 2, 7, 9),
        ),
        ("MaxPool3d", (3, 2, 1), {}, (1, 2, 5, 6, 7)),
        ("AdaptiveMaxPool2d", ((3, 4),), {}, (2, 2, 5, 7)),
    ]:
        _same_indices(name, args, kwargs, shape, backend)


@pytest.mark.torch
def test_nan_wins_the_window_as_in_torch():
    x = np.round(host_normal((1, 2, 6, 7), seed=3))
    x[0, 0, 1, 2] = x[0, 1, 4, 4] = x[0, 1, 4, 6] = np.nan
    y, _ = _same_indices("AdaptiveMaxPool2d", (3,), {}, x.shape, "numpy", x=x)
    assert np.isnan(y).sum() >= 2
    s = _samples("FractionalMaxPool2d", x.shape)
    _same_indices("FractionalMaxPool2d", (2,), dict(output_size=3), x.shape, "numpy", s, x=x)


@pytest.mark.torch
@pytest.mark.parametrize("backend", _on(BACKENDS))
def test_max_unpool_inverts_max_pool_as_torch(backend):
    import torch

    from tests.layers.torch_oracle import compare_loss

    for nd, kernel, stride, padding, shape, size in [
        (1, 3, 2, 1, (2, 2, 9), None),
        (2, 2, 2, 0, (2, 2, 5, 7), (5, 7)),  # output_size restores the odd sizes
        (3, 2, 2, 0, (1, 2, 4, 4, 6), None),
    ]:
        x = host_normal(shape, seed=4)
        pool = getattr(torch.nn, f"MaxPool{nd}d")(kernel, stride, padding, return_indices=True)
        y, idx = pool(torch.tensor(x))
        tunpool = getattr(torch.nn, f"MaxUnpool{nd}d")(kernel, stride, padding)
        unpool = getattr(nnx, f"MaxUnpool{nd}d")(kernel, stride, padding)
        if size is None:
            compare_loss(unpool, tunpool, [y.numpy(), idx.numpy()], backend=backend)
            continue
        be = nnx.get_backend(backend)
        with nnx.backend.float64_scope(be):
            out = unpool(be.asarray(y.numpy()), be.asarray(idx.numpy()), output_size=size)
            want = tunpool(y, idx, output_size=size)
            np.testing.assert_array_equal(nnx.to_numpy(out), want.numpy())
            # nnx's own indices feed its unpooling: the maxima back in place, zeros elsewhere
            ny, nidx = getattr(nnx, f"MaxPool{nd}d")(kernel, stride, padding, return_indices=True)(
                be.asarray(x)
            )
            back = nnx.to_numpy(unpool(ny, nidx, output_size=(1, 1, *size)))
            np.testing.assert_array_equal(back, want.numpy())


@pytest.mark.torch
def test_common_nn_configurations():
    # torch 2.x's common_nn has none for these classes (its pooling tests moved to
    # common_modules, run below under slow); any that a later release adds run here
    for name in NEW:
        check_torch_configs(name, minimum=0)


def _module_inputs(name):
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.testing._internal import common_modules

    fn = getattr(common_modules, f"module_inputs_torch_nn_{name}", None)
    if fn is None:
        return []
    return fn(None, "cpu", torch.float64, requires_grad=False, training=True)


MODULE_DB = [n for n in NEW if "Unpool" not in n] + ["MaxPool1d", "MaxPool2d"]


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("name", MODULE_DB)
def test_pytorch_module_inputs(name):
    """PyTorch's own module-test inputs (``common_modules``), batched ones (nnx's pools take
    ``(N, C, *spatial)`` only), on three backends; ``return_indices`` ones compare indices."""
    import torch

    ran = 0
    for mi in _module_inputs(name):
        x = mi.forward_input.args[0]
        nd = {"1d": 1, "2d": 2, "3d": 3}[name[-2:]]
        if x.ndim != nd + 2:
            continue
        args = mi.constructor_input.args
        kwargs = {
            k: v.numpy() if isinstance(v, torch.Tensor) else v
            for k, v in mi.constructor_input.kwargs.items()
        }
        samples = kwargs.pop("_random_samples", None)
        indices = kwargs.pop("return_indices", False)
        host = x.detach().numpy()
        if name.startswith("LPPool"):
            host = np.abs(host) + 0.1
        for backend in BACKENDS:
            module, tmodule = _pair(name, args, kwargs, samples)
            compare(module, tmodule, host.shape, backend=backend, inputs=[host])
            if indices:
                _same_indices(name, args, kwargs, host.shape, backend, samples, x=host)
        ran += 1
    assert ran >= 1, name


def _every_backend(jax_default=False):
    """Every backend of the suite (as the ``backend`` fixture), JAX under slow unless
    ``jax_default``: its per-shape compilation costs seconds per layer."""
    return [
        p
        if jax_default or p.values[0] != "jax"
        else pytest.param(*p.values, id=p.id, marks=[*p.marks, pytest.mark.slow])
        for p in ALL_BACKENDS
    ]


GRADCHECK = {
    "maxpool3d": (lambda: nnx.MaxPool3d(2, stride=1, padding=1), (1, 2, 3, 3, 2)),
    "avgpool3d": (lambda: nnx.AvgPool3d(2, stride=1, padding=1, ceil_mode=True), (1, 1, 3, 2, 3)),
    "adaptive-avgpool3d": (lambda: nnx.AdaptiveAvgPool3d((2, 1, 3)), (1, 2, 3, 2, 4)),
    "adaptive-maxpool1d": (lambda: nnx.AdaptiveMaxPool1d(3), (2, 2, 5)),
    "adaptive-maxpool2d": (lambda: nnx.AdaptiveMaxPool2d((2, 3)), (1, 2, 3, 5)),
    "adaptive-maxpool3d": (lambda: nnx.AdaptiveMaxPool3d(2), (1, 1, 3, 3, 3)),
    "lppool1d": (lambda: nnx.LPPool1d(2, 2, stride=1), (2, 2, 5)),
    "lppool2d": (lambda: nnx.LPPool2d(2, 2, ceil_mode=True), (1, 2, 3, 5)),
    "lppool3d-inf": (lambda: nnx.LPPool3d(float("inf"), 2), (1, 1, 2, 4, 2)),
    "fractional2d": (
        lambda: nnx.FractionalMaxPool2d(2, output_size=3, _random_samples=[[[0.3, 0.8]]] * 2),
        (2, 1, 5, 5),
    ),
    "fractional3d": (
        lambda: nnx.FractionalMaxPool3d(2, output_size=2, _random_samples=[[[0.3, 0.8, 0.1]]]),
        (1, 1, 4, 5, 4),
    ),
}
DEFAULT_GRADCHECK = ("fractional2d", "lppool2d")


@pytest.mark.parametrize(
    "name, spec",
    [
        pytest.param(name, *p.values, id=f"{name}-{p.id}", marks=p.marks)
        for name in GRADCHECK
        for p in (
            _every_backend()
            if name in DEFAULT_GRADCHECK
            else [
                pytest.param(*p.values, id=p.id, marks=[*p.marks, pytest.mark.slow])
                for p in ALL_BACKENDS
            ]
        )
    ],
)
def test_gradcheck(name, spec):
    backend = nnx.get_backend(spec)
    make, shape = GRADCHECK[name]
    x = backend.asarray(host_normal(shape, seed=5, away_from_zero=0.05), dtype="float64")
    result = nnx.gradcheck(make(), x)
    assert result.ok, str(result)


class _Unpooled(nnx.Module):
    """``MaxUnpool2d`` with fixed indices, for gradcheck (indices have no gradient)."""

    def __init__(self, indices):
        self.unpool = nnx.MaxUnpool2d(2)
        self.indices = indices

    def forward(self, x):
        return self.unpool(x, self.indices)

    def backward(self, grad_out):
        return self.unpool.backward(grad_out)


@pytest.mark.parametrize("spec", _every_backend())
def test_max_unpool_gradcheck(spec):
    backend = nnx.get_backend(spec)
    x = backend.asarray(host_normal((1, 2, 4, 4), seed=6), dtype="float64")
    y, idx = nnx.MaxPool2d(2, return_indices=True)(x)
    assert nnx.gradcheck(_Unpooled(idx), y).ok


def test_lppool_zero_window_sum_has_zero_gradient():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 0] = 2.0
    pool = nnx.LPPool2d(2, 2)
    y = pool(x)
    assert y[0, 0, 0, 0] == 2.0 and y[0, 0, 1, 1] == 0.0
    g = pool.backward(np.ones_like(y))
    assert np.all(np.isfinite(g)) and g[0, 0, 0, 0] == 1.0 and np.all(g[0, 0, 2:, 2:] == 0)


def test_fractional_samples_are_seeded_and_resume_exactly():
    x = host_normal((2, 3, 9, 9), seed=7)
    a = nnx.FractionalMaxPool2d(2, output_size=4, rng=0)
    b = nnx.FractionalMaxPool2d(2, output_size=4, rng=0)
    first, second = a(x), a(x)
    np.testing.assert_array_equal(b(x), first)  # same seed, same windows
    assert not np.array_equal(first, second)  # a new draw per call
    a.reseed(11)
    b.reseed(11)  # the Trainer reseeds every epoch: a resumed run repeats the windows
    np.testing.assert_array_equal(a(x), b(x))
    np.testing.assert_array_equal(a(x), b(x))
    c = nnx.FractionalMaxPool2d(2, output_size=4, rng=1)
    assert not np.array_equal(c(x), nnx.FractionalMaxPool2d(2, output_size=4, rng=0)(x))


def test_fractional_rows_take_this_ranks_share_of_the_global_draw():
    x = host_normal((4, 2, 7, 7), seed=8)
    whole = nnx.FractionalMaxPool2d(2, output_size=3, rng=5)(x)
    part = nnx.FractionalMaxPool2d(2, output_size=3, rng=5)
    part.set_rows((2, 4, 4))
    np.testing.assert_array_equal(part(x[2:]), whole[2:])


def test_fractional_fixed_samples_survive_save_and_load(tmp_path):
    samples = np.random.default_rng(0).random((1, 2, 3))
    pool = nnx.FractionalMaxPool3d(2, output_ratio=0.6, _random_samples=samples)
    x = host_normal((1, 2, 5, 6, 5), seed=9)
    nnx.save_model(tmp_path / "m.npz", pool)
    np.testing.assert_array_equal(nnx.load_model(tmp_path / "m.npz")(x), pool(x))


@pytest.mark.parametrize("spec", _every_backend())
def test_layers_keep_dtype_and_device(spec):
    backend = nnx.get_backend(spec)
    x = backend.asarray(host_normal((2, 2, 4, 6, 5)), dtype="float32")
    for layer in (
        nnx.MaxPool3d(2),
        nnx.AvgPool3d(2, 1, 1),
        nnx.AdaptiveAvgPool3d(2),
        nnx.AdaptiveMaxPool3d((3, 2, 1)),
        nnx.LPPool3d(2, 2),
        nnx.FractionalMaxPool3d(2, output_size=(2, 3, 2), rng=0),
    ):
        y = layer(x * 0 + 1)
        assert y.dtype == x.dtype and nnx.backend.device(y) == nnx.backend.device(x), layer
        g = layer.backward(y * 0 + 1)
        assert tuple(g.shape) == tuple(x.shape) and g.dtype == x.dtype, layer
    y, idx = nnx.MaxPool3d(2, return_indices=True)(x)
    z = nnx.MaxUnpool3d(2)(y, idx, output_size=x.shape)
    assert z.dtype == x.dtype and tuple(z.shape) == tuple(x.shape)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: nnx.MaxPool3d(2, padding=(0, 2, 0)), r"MaxPool3d: padding \(0, 2, 0\) must be"),
        (lambda: nnx.AvgPool3d((2, 2)), "AvgPool3d: kernel_size must be"),
        (lambda: nnx.AdaptiveAvgPool3d((1, 2)), "AdaptiveAvgPool3d: output_size must be"),
        (lambda: nnx.AdaptiveMaxPool1d(0), "AdaptiveMaxPool1d: output_size must be"),
        (lambda: nnx.LPPool2d(0, 2), "LPPool2d: norm_type must be a non-zero number, got 0"),
        (lambda: nnx.LPPool1d(2, 0), "LPPool1d: kernel_size must be"),
        (lambda: nnx.MaxUnpool2d(2, padding=-1), "MaxUnpool2d: padding must be"),
        (lambda: nnx.FractionalMaxPool2d(2), "FractionalMaxPool2d: give exactly one of"),
        (
            lambda: nnx.FractionalMaxPool2d(2, output_size=2, output_ratio=0.5),
            "FractionalMaxPool2d: give exactly one of",
        ),
        (lambda: nnx.FractionalMaxPool3d(2, output_ratio=1.0), "FractionalMaxPool3d: output_ratio"),
        (
            lambda: nnx.FractionalMaxPool2d(2, output_size=2, _random_samples=[[[0.5, 1.5]]]),
            r"FractionalMaxPool2d: _random_samples must be an array of shape \(N, C, 2\)",
        ),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs():
    f32 = np.float32
    cases = [
        (nnx.MaxPool3d(2), np.zeros((2, 4, 4, 4), f32), r"MaxPool3d\(.*\(N, C, D, H, W\)"),
        (nnx.AvgPool3d(5), np.zeros((1, 1, 4, 4, 4), f32), r"AvgPool3d\(.*too small"),
        (
            nnx.AdaptiveMaxPool2d(2),
            np.zeros((1, 4, 4), f32),
            r"AdaptiveMaxPool2d\(2\).*\(N, C, H, W\)",
        ),
        (nnx.AdaptiveAvgPool3d(2), np.zeros((1, 1, 0, 2, 2), f32), "AdaptiveAvgPool3d.*non-empty"),
        (nnx.LPPool1d(2, 4), np.zeros((1, 1, 3), f32), r"LPPool1d\(.*too small"),
        (
            nnx.FractionalMaxPool2d(3, output_size=4, rng=0),
            np.zeros((1, 1, 5, 5), f32),
            r"FractionalMaxPool2d\(.*too small for output size \(4, 4\)",
        ),
        (
            nnx.FractionalMaxPool2d(2, output_size=2, _random_samples=np.full((1, 2, 2), 0.5)),
            np.zeros((1, 3, 5, 5), f32),
            r"FractionalMaxPool2d\(.*_random_samples has shape \(1, 2, 2\)",
        ),
    ]
    for layer, x, match in cases:
        with pytest.raises(ValueError, match=match):
            layer(x)
    with pytest.raises(ValueError, match=r"output \+ kernel - 1 < input"):  # PyTorch's 3-d rule
        nnx.FractionalMaxPool3d(2, output_size=1, rng=0)(np.zeros((1, 1, 2, 3, 3), f32))
    with pytest.raises(TypeError, match="floating-point"):
        nnx.AdaptiveMaxPool1d(2)(np.zeros((1, 1, 4), np.int32))
    unpool, x = nnx.MaxUnpool2d(2), np.ones((1, 1, 2, 2), f32)
    for idx, kwargs, match in [
        (np.zeros((1, 1, 2, 3), np.int64), {}, r"MaxUnpool2d\(.*indices must have the input's"),
        (np.full((1, 1, 2, 2), 16), {}, r"MaxUnpool2d\(.*index 16 outside the output plane of 16"),
        (np.zeros((1, 1, 2, 2), f32), {}, r"MaxUnpool2d\(.*indices must be integers"),
        (np.zeros((1, 1, 2, 2), np.int64), dict(output_size=(6, 4)), r"axis 0 must be between 2"),
        (np.zeros((1, 1, 2, 2), np.int64), dict(output_size=(4,)), "must have 2 or 4 entries"),
    ]:
        with pytest.raises(ValueError, match=match):
            unpool(x, idx, **kwargs)
    with pytest.raises(nnx.BackwardBeforeForwardError):
        nnx.FractionalMaxPool3d(2, output_size=2).backward(np.zeros((1, 1, 2, 2, 2), f32))
    pool = nnx.AdaptiveMaxPool3d(2)
    pool(np.zeros((1, 1, 3, 3, 3), f32))
    with pytest.raises(ValueError, match="gradient has shape"):
        pool.backward(np.zeros((1, 1, 3, 3, 3), f32))


@pytest.mark.slow
@pytest.mark.skipif(not backend_available("jax")[0], reason="JAX not installed")
def test_fractional_draws_under_nnx_compile():
    from nnx.optim import SGD

    be = nnx.get_backend("jax")
    x = be.asarray(host_normal((2, 2, 6, 6), seed=10), dtype="float32")
    y = be.asarray(np.zeros((2, 2)), dtype="float32")
    for warm in (False, True):
        pool = nnx.FractionalMaxPool2d(2, output_size=3, rng=0)
        model = nnx.Sequential(pool, nnx.Flatten(), nnx.Linear(18, 2, rng=0)).to(be)
        if warm:
            model(x)  # makes the JAX key, which nnx.compile then threads through each step
        step = nnx.compile(model, nnx.MSELoss(), SGD(model.parameters(), lr=0.1))
        if not warm:
            with pytest.raises(ValueError, match="FractionalMaxPool2d.*run one forward before"):
                step(x, y)
            continue
        first, _ = step(x, y)
        second, _ = step(x, y)
        assert np.isfinite(float(first)) and float(first) != float(second)
        assert model(x).shape == (2, 2)


def test_fractional_training_resumes_exactly(tmp_path):
    """3 epochs straight == 1 epoch, checkpoint, a fresh Trainer resuming for 2 more: the
    Trainer reseeds the layer's samples at each epoch, as it does Dropout's masks."""
    from nnx.optim import SGD

    rng = np.random.default_rng(0)
    data = (rng.standard_normal((24, 1, 6, 6)), rng.integers(0, 2, 24))

    def trainer():
        model = nnx.Sequential(
            nnx.FractionalMaxPool2d(2, output_size=3, rng=1), nnx.Flatten(), nnx.Linear(9, 2, rng=0)
        )
        opt = SGD(model.parameters(), lr=0.1)
        return nnx.Trainer(model, nnx.CrossEntropyLoss(), opt, seed=3, progress=False)

    straight = trainer()
    straight.fit(data, epochs=3, batch_size=10)
    first = trainer()
    first.fit(data, epochs=1, batch_size=10)
    first.save_checkpoint(tmp_path / "one.npz")
    resumed = trainer()
    resumed.load_checkpoint(tmp_path / "one.npz")
    resumed.fit(data, epochs=3, batch_size=10)
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        np.testing.assert_array_equal(a, b, err_msg=name)
