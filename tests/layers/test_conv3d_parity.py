"""Conv3d, ConvTranspose1d/2d/3d (output_size), Fold and Unfold: PyTorch comparison on NumPy,
strict and JAX (including PyTorch's own module-test configurations), gradient checks on every
backend, the NumPy fast path against the portable path in 3-d, errors."""

import numpy as np
import pytest

import nnx
from nnx import _fastconv
from tests.conftest import BACKENDS, host_normal
from tests.layers.torch_oracle import ORACLE_BACKENDS, check_torch_configs, compare

# (nnx/torch class, args, kwargs, input shape): tiny shapes, every option in turn
CASES = {
    "conv3d-plain": ("Conv3d", (2, 3, 2), {}, (2, 2, 3, 4, 3)),
    "conv3d-stride-pad-dilation": (
        "Conv3d",
        (2, 2, (2, 3, 2)),
        dict(stride=(2, 1, 2), padding=(1, 0, 2), dilation=(1, 2, 1)),
        (1, 2, 5, 6, 4),
    ),
    "conv3d-groups-same-reflect": (
        "Conv3d",
        (4, 2, 3),
        dict(padding="same", groups=2, padding_mode="reflect", bias=False),
        (1, 4, 3, 4, 3),
    ),
    "conv3d-circular": (
        "Conv3d",
        (2, 2, 2),
        dict(padding=1, padding_mode="circular"),
        (1, 2, 3, 3, 2),
    ),
    "conv3d-replicate-stride": (
        "Conv3d",
        (1, 2, (1, 2, 2)),
        dict(padding=(0, 1, 1), padding_mode="replicate", stride=2),
        (2, 1, 3, 4, 5),
    ),
    "convt1d-stride-output-padding": (
        "ConvTranspose1d",
        (2, 4, 3),
        dict(stride=3, padding=1, output_padding=2, groups=2),
        (2, 2, 4),
    ),
    "convt1d-dilation": ("ConvTranspose1d", (3, 2, 2), dict(dilation=3, bias=False), (1, 3, 5)),
    "convt1d-output-padding-by-dilation": (
        "ConvTranspose1d",
        (1, 2, 2),
        dict(padding=1, output_padding=1, dilation=2),
        (2, 1, 3),
    ),
    "convt3d-plain": ("ConvTranspose3d", (2, 3, 2), {}, (1, 2, 2, 3, 2)),
    "convt3d-stride-pad-op": (
        "ConvTranspose3d",
        (2, 2, (2, 3, 2)),
        dict(stride=(2, 1, 3), padding=(0, 1, 1), output_padding=(1, 0, 2)),
        (1, 2, 2, 3, 2),
    ),
    "convt3d-groups-dilation": (
        "ConvTranspose3d",
        (4, 2, 2),
        dict(groups=2, dilation=(2, 1, 1), bias=False),
        (1, 4, 2, 2, 3),
    ),
    "unfold": ("Unfold", ((2, 3),), dict(dilation=(1, 2), padding=1, stride=(2, 1)), (2, 3, 5, 6)),
    "unfold-unbatched": ("Unfold", (2,), {}, (2, 3, 4)),
    "fold": ("Fold", ((5, 4), (2, 2)), dict(stride=(2, 1), padding=(1, 0)), (2, 8, 9)),
    "fold-dilated": ("Fold", ((5, 6), 2), dict(dilation=2, stride=2), (1, 12, 4)),
    "fold-unbatched": ("Fold", ((3, 4), (2, 3)), {}, (12, 4)),
}

SAMPLE = ["conv3d-stride-pad-dilation", "convt1d-stride-output-padding", "convt3d-stride-pad-op"]
SAMPLE += ["fold", "unfold"]
# JAX runs each small op eagerly, compiling it for every new shape (seconds per 3-d case): the
# default run compares the sample on NumPy and strict and one case on JAX, the rest under slow
QUICK_BACKENDS = ("numpy", "strict:device1")


def _pair(name):
    import torch

    cls, args, kwargs, shape = CASES[name]
    return (
        getattr(nnx, cls)(*args, rng=0, **kwargs)
        if cls.startswith("Conv")
        else getattr(nnx, cls)(*args, **kwargs),
        getattr(torch.nn, cls)(*args, **kwargs),
        shape,
    )


@pytest.mark.torch
@pytest.mark.parametrize("backend_name", QUICK_BACKENDS)
@pytest.mark.parametrize("name", SAMPLE)
def test_sample_matches_torch(name, backend_name):
    pytest.importorskip("torch")
    module, tmodule, shape = _pair(name)
    compare(module, tmodule, shape, backend=backend_name)


@pytest.mark.torch
def test_one_case_matches_torch_on_jax():
    pytest.importorskip("torch")
    module, tmodule, shape = _pair("unfold")
    compare(module, tmodule, shape, backend="jax")


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("backend_name", ORACLE_BACKENDS)
@pytest.mark.parametrize("name", CASES)
def test_every_case_matches_torch(name, backend_name):
    pytest.importorskip("torch")
    module, tmodule, shape = _pair(name)
    compare(module, tmodule, shape, backend=backend_name)


@pytest.mark.torch
@pytest.mark.parametrize(
    "cls, args, shape, output_size",
    [
        ("ConvTranspose1d", (2, 3, 3, 3, 1), (2, 2, 4), (11,)),
        ("ConvTranspose2d", (2, 3, 3, 2, 1), (1, 2, 3, 4), [1, 3, 6, 8]),
        ("ConvTranspose3d", (1, 2, 2, (2, 3, 1)), (1, 1, 2, 2, 3), (5, 7, 4)),
    ],
)
def test_output_size_matches_torch(cls, args, shape, output_size):
    torch = pytest.importorskip("torch")
    compare(
        getattr(nnx, cls)(*args, rng=0),
        getattr(torch.nn, cls)(*args),
        shape,
        kwargs={"output_size": output_size},
    )


def _skip_unsupported(config):
    """nnx has no complex dtypes (PyTorch's complex configurations need them)."""
    name = config.get("fullname") or config.get("desc") or ""
    return "complex input" if "complex" in name else None


# the default run: NumPy and strict (JAX runs each small op eagerly, compiling it for each new
# shape: seconds per configuration, so JAX runs them under slow; Conv3d's fifteen on NumPy only)
OWN_CONFIGS = [
    ("ConvTranspose1d", 3),
    ("ConvTranspose2d", 4),
    ("ConvTranspose3d", 2),
    ("Fold", 3),
    ("Unfold", 1),
    ("Conv3d", 15),
]
QUICK = ("numpy", "strict:device1")


@pytest.mark.torch
@pytest.mark.parametrize("name, minimum", OWN_CONFIGS)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_pytorchs_own_module_tests(name, minimum):
    """Every configuration of torch.testing._internal.common_nn for these classes."""
    backends = ("numpy",) if name == "Conv3d" else QUICK
    check_torch_configs(name, backends=backends, skip=_skip_unsupported, minimum=minimum)


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("name, minimum", OWN_CONFIGS)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
def test_pytorchs_own_module_tests_on_every_backend(name, minimum):
    check_torch_configs(name, skip=_skip_unsupported, minimum=minimum)


GRADCHECK = {
    "conv3d": (lambda: nnx.Conv3d(1, 2, 2, stride=(1, 2, 1), padding=1), (1, 1, 2, 2, 3)),
    "convt1d": (lambda: nnx.ConvTranspose1d(2, 2, 3, stride=2, output_padding=1), (2, 2, 3)),
    "convt3d": (
        lambda: nnx.ConvTranspose3d(1, 1, 2, stride=(2, 1, 1), padding=(0, 1, 0)),
        (1, 1, 2, 2, 2),
    ),
    "unfold": (lambda: nnx.Unfold(2, padding=1, stride=2), (1, 2, 3, 3)),
    "fold": (lambda: nnx.Fold((2, 3), 2, padding=(1, 0), stride=(2, 1)), (1, 4, 4)),
}


def _gradcheck_params():
    """Every example on every backend of the conftest; on JAX (each small op compiled eagerly
    for each new shape: tens of seconds per 3-d example) and on plain strict (strict:device1
    runs the same library) only ``fold`` in the default run, the rest under slow."""
    for name in GRADCHECK:
        for param in BACKENDS:
            spec = param.values[0]
            marks = list(param.marks)
            if (spec == "jax" and name != "fold") or (spec == "strict" and name != "fold"):
                marks.append(pytest.mark.slow)  # strict:device1 runs the same library
            yield pytest.param(name, spec, marks=marks, id=f"{name}-{param.id or spec}")


@pytest.mark.parametrize("name, spec", list(_gradcheck_params()))
def test_gradcheck_every_backend(name, spec):
    backend = nnx.get_backend(spec)
    make, shape = GRADCHECK[name]
    layer = make()
    if any(True for _ in layer.parameters()):
        layer = layer.to(backend, dtype="float64")
    x = backend.asarray(host_normal(shape, seed=1), dtype="float64")
    result = nnx.gradcheck(layer, x)
    assert result.ok, str(result)


FAST = {
    "conv3d-stride1-same": (lambda: nnx.Conv3d(2, 3, 3, padding=1, rng=0), (2, 2, 4, 5, 4)),
    "conv3d-strided-groups": (
        lambda: nnx.Conv3d(4, 2, (2, 3, 2), stride=(2, 1, 2), dilation=(1, 2, 1), groups=2, rng=1),
        (3, 4, 5, 6, 5),
    ),
    "convt3d-stride2": (
        lambda: nnx.ConvTranspose3d(2, 3, 2, stride=2, padding=1, output_padding=1, rng=2),
        (2, 2, 3, 2, 3),
    ),
}


@pytest.mark.parametrize("chunk_bytes", [1, _fastconv.CHUNK_BYTES])
@pytest.mark.parametrize("name", FAST)
def test_3d_fast_path_equals_portable_path(name, chunk_bytes, monkeypatch):
    monkeypatch.setattr(_fastconv, "CHUNK_BYTES", chunk_bytes)
    make, shape = FAST[name]
    layer = make().to(dtype="float64")
    x = host_normal(shape, seed=1)
    g = host_normal(layer(x).shape, seed=2)

    def run():
        layer.zero_grad()
        y = layer(x)
        return [y, layer.backward(g)] + [p.grad for p in layer.parameters()]

    fast = run()
    with _fastconv.portable_only():
        portable = run()
    for a, b in zip(fast, portable, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_fold_is_the_adjoint_of_unfold():
    unfold, fold = nnx.Unfold(3, padding=1, stride=2), nnx.Fold((5, 6), 3, padding=1, stride=2)
    x, c = host_normal((2, 3, 5, 6), seed=0), host_normal((2, 27, 9), seed=1)
    np.testing.assert_allclose(np.sum(unfold(x) * c), np.sum(x * fold(c)), rtol=1e-12)


def test_conv_transpose_1d_and_3d_shapes_and_repr():
    t1 = nnx.ConvTranspose1d(4, 2, 3, stride=2, padding=1, output_padding=1, rng=0)
    assert t1.weight.shape == (4, 2, 3)
    assert t1(np.ones((1, 4, 5), np.float32)).shape == (1, 2, 10)
    assert repr(t1) == (
        "ConvTranspose1d(4, 2, kernel_size=3, stride=2, padding=1, output_padding=1)"
    )
    t3 = nnx.ConvTranspose3d(2, 4, 2, groups=2, rng=0)
    assert t3.weight.shape == (2, 2, 2, 2, 2)
    assert t3(np.ones((1, 2, 2, 3, 1), np.float32), output_size=(3, 4, 2)).shape == (
        1,
        4,
        3,
        4,
        2,
    )
    c3 = nnx.Conv3d(2, 4, (1, 2, 3), padding="same", rng=0)
    assert c3.weight.shape == (4, 2, 1, 2, 3)
    assert repr(c3) == "Conv3d(2, 4, kernel_size=(1, 2, 3), stride=(1, 1, 1), padding='same')"


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda: nnx.Conv3d(2, 3, (2, 2)),
            "kernel_size must be a positive integer or a tuple of 3",
        ),
        (lambda: nnx.Conv3d(2, 3, 2, stride=2, padding="same"), "padding='same' needs stride 1"),
        (lambda: nnx.ConvTranspose3d(2, 2, 2, padding_mode="reflect"), "only padding_mode='zeros'"),
        (lambda: nnx.ConvTranspose1d(2, 2, 2, stride=2, output_padding=2), "output_padding"),
        (lambda: nnx.ConvTranspose1d(2, 2, 2, padding="same"), "padding must be an int or a tuple"),
        (lambda: nnx.ConvTranspose3d(3, 2, 2, groups=2), "divisible by groups"),
        (lambda: nnx.Unfold((2, 2, 2)), "kernel_size must be a positive integer or a tuple of 2"),
        (lambda: nnx.Fold(4, 2, padding=-1), "padding must be an integer >= 0"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"Conv3d\(.*expected input of shape \(N, C, D, H, W\)"):
        nnx.Conv3d(2, 2, 2)(np.zeros((1, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        nnx.Conv3d(1, 1, 3)(np.zeros((1, 1, 2, 5, 5), np.float32))
    convt = nnx.ConvTranspose1d(1, 1, 3, stride=2)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C, L\)"):
        convt(np.zeros((1, 1, 3, 3), np.float32))
    with pytest.raises(
        ValueError, match=r"output_size \(9,\) is not reachable .* \(7,\) and \(8,\)"
    ):
        convt(np.zeros((1, 1, 3), np.float32), output_size=(9,))
    with pytest.raises(ValueError, match="output_size must have 1 or 3"):
        convt(np.zeros((1, 1, 3), np.float32), output_size=(1, 8))
    with pytest.raises(nnx.BackwardBeforeForwardError):
        nnx.ConvTranspose3d(1, 1, 1).backward(np.zeros((1, 1, 1, 1, 1), np.float32))
    convt(np.zeros((1, 1, 3), np.float32))
    with pytest.raises(ValueError, match="gradient has shape"):
        convt.backward(np.zeros((1, 1, 8), np.float32))
    with pytest.raises(
        ValueError, match=r"Unfold\(.*\(N, C, H, W\) or \(C, H, W\), got shape \(3, 3\)"
    ):
        nnx.Unfold(2)(np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="no block fits"):
        nnx.Unfold(4)(np.zeros((1, 1, 3, 3), np.float32))
    with pytest.raises(
        ValueError, match=r"Fold\(.*\(N, C\*4, 4\) or \(C\*4, 4\).*got shape \(1, 6, 4\)"
    ):
        nnx.Fold(3, 2)(np.zeros((1, 6, 4), np.float32))
