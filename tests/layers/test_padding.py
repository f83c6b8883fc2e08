"""Padding layers (Zero/Constant/Reflection/Replication/Circular, 1-3 d): PyTorch comparison on
NumPy, strict and JAX, PyTorch's own module-test configurations, gradient checks on every
backend, negative padding (a crop), unbatched inputs, errors."""

import numpy as np
import pytest

import nnx
from tests.conftest import BACKENDS, host_normal
from tests.layers.torch_oracle import ORACLE_BACKENDS, check_torch_configs, compare

MODES = ["Zero", "Constant", "Reflection", "Replication", "Circular"]
# PyTorch's order: last axis first; mixed signs (a negative entry crops)
PADDINGS = {1: (2, -1), 2: (1, -1, 0, 2), 3: (1, 2, -1, 0, 2, 1)}
SHAPES = {1: (2, 3, 5), 2: (2, 2, 4, 5), 3: (1, 2, 3, 4, 3)}


def _make(lib, mode, d, padding):
    args = (padding, 1.5) if mode == "Constant" else (padding,)
    return getattr(lib, f"{mode}Pad{d}d")(*args)


@pytest.mark.torch
@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
def test_matches_torch_batched_and_unbatched(mode, d):
    torch = pytest.importorskip("torch")
    for shape in (SHAPES[d], SHAPES[d][1:]):
        compare(_make(nnx, mode, d, PADDINGS[d]), _make(torch.nn, mode, d, PADDINGS[d]), shape)


# JAX compiles each eager op for each new shape (seconds per layer): one mode on JAX by default
STRICT_AND_JAX = [
    pytest.param(
        mode,
        name,
        marks=[pytest.mark.slow] if name == "jax" and mode != "Reflection" else [],
        id=f"{mode}-{name}",
    )
    for mode in MODES
    for name in ORACLE_BACKENDS[1:]
]


@pytest.mark.torch
@pytest.mark.parametrize("mode, backend_name", STRICT_AND_JAX)
def test_matches_torch_on_strict_and_jax(mode, backend_name):
    torch = pytest.importorskip("torch")
    d = 2
    compare(
        _make(nnx, mode, d, PADDINGS[d]),
        _make(torch.nn, mode, d, PADDINGS[d]),
        SHAPES[d],
        backend=backend_name,
    )


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("backend_name", ORACLE_BACKENDS)
@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("padding", ["int", "large", "crop"])
def test_sweep_matches_torch(mode, d, padding, backend_name):
    torch = pytest.importorskip("torch")
    size = {"int": 2, "large": (3, 4, 2, 1, 0, 3)[: 2 * d], "crop": (-1, -2, 1, -1, -1, 2)[: 2 * d]}
    pads = size[padding]
    shape = (2, 2, 5, 6, 7)[: 2 + d]  # each size above every reflect padding
    compare(_make(nnx, mode, d, pads), _make(torch.nn, mode, d, pads), shape, backend=backend_name)


@pytest.mark.torch
def test_pytorchs_own_module_tests():
    """Every common_nn configuration of the padding layers (ReplicationPad3d has some)."""

    def skip(config):  # nnx has no complex dtypes
        return "complex input" if "complex" in (config.get("desc") or "") else None

    backends = ("numpy", "strict:device1")  # JAX (eager compiles per shape): under slow
    check_torch_configs("ReplicationPad3d", backends=backends, skip=skip, minimum=2)


@pytest.mark.slow
@pytest.mark.torch
def test_pytorchs_own_module_tests_on_every_backend():
    def skip(config):
        return "complex input" if "complex" in (config.get("desc") or "") else None

    check_torch_configs("ReplicationPad3d", skip=skip, minimum=2)


@pytest.mark.torch
def test_constant_pad_of_any_rank_matches_torch():
    torch = pytest.importorskip("torch")
    compare(
        nnx.ConstantPad2d((1, 0, 2, 1), -2.0), torch.nn.ConstantPad2d((1, 0, 2, 1), -2.0), (3, 4)
    )
    compare(nnx.ZeroPad1d(1), torch.nn.ZeroPad1d(1), (1, 2, 2, 3))


@pytest.mark.parametrize(
    "mode, spec",
    [
        pytest.param(
            mode,
            p.values[0],
            marks=[*p.marks, *([pytest.mark.slow] if p.values[0] == "jax" else [])],
            id=f"{mode}-{p.id}",
        )
        for mode in MODES
        for p in BACKENDS
    ],
)
def test_gradcheck_every_backend(mode, spec):
    """Every mode on every backend (on JAX, whose eager ops compile per shape, under slow; the
    default run compares one mode's gradients with PyTorch's on JAX)."""
    backend = nnx.get_backend(spec)
    x = backend.asarray(host_normal((1, 2, 3, 4), seed=1), dtype="float64")
    result = nnx.gradcheck(_make(nnx, mode, 2, (2, -1, 1, 2)), x)
    assert result.ok, str(result)


def test_values_and_repr():
    x = np.arange(4.0).reshape(1, 1, 4)
    np.testing.assert_array_equal(nnx.ReflectionPad1d((2, 1))(x)[0, 0], [2, 1, 0, 1, 2, 3, 2])
    np.testing.assert_array_equal(nnx.ReplicationPad1d((2, 1))(x)[0, 0], [0, 0, 0, 1, 2, 3, 3])
    np.testing.assert_array_equal(nnx.CircularPad1d((2, 1))(x)[0, 0], [2, 3, 0, 1, 2, 3, 0])
    np.testing.assert_array_equal(nnx.ConstantPad1d((1, -2), 7)(x)[0, 0], [7, 0, 1])
    np.testing.assert_array_equal(
        nnx.CircularPad1d((1, -1))(x)[0, 0], [2, 0, 1, 2]
    )  # wraps the kept part
    assert repr(nnx.ZeroPad2d(1)) == "ZeroPad2d((1, 1, 1, 1))"
    assert repr(nnx.ConstantPad3d(1, 2)) == "ConstantPad3d(padding=(1, 1, 1, 1, 1, 1), value=2.0)"
    assert nnx.ReflectionPad3d((1, 2, 3, 4, 5, 6)).padding == (1, 2, 3, 4, 5, 6)


@pytest.mark.parametrize(
    "make, x_shape, match",
    [
        (
            lambda: nnx.ReflectionPad1d(3),
            (1, 2, 3),
            r"reflect padding \(3, 3\) must be smaller than the input size 3",
        ),
        (lambda: nnx.CircularPad2d((0, 0, 4, 0)), (1, 2, 3, 3), "would wrap around more than once"),
        (
            lambda: nnx.CircularPad1d((-2, 3)),
            (1, 2, 4),
            r"must not exceed the size 2 it wraps around",
        ),
        (lambda: nnx.ZeroPad1d((-6, 1)), (1, 2, 5), "crops more than the axis of size 5 has"),
        (lambda: nnx.ReplicationPad1d((-5, 0)), (1, 2, 5), "needs an output size of at least 1"),
        (lambda: nnx.ReflectionPad2d(1), (2, 1, 3, 3, 3), r"expected an input with 3 or 4 axes"),
        (lambda: nnx.ReplicationPad3d(1), (3, 3), r"expected an input with 4 or 5 axes"),
        (lambda: nnx.ZeroPad3d(1), (3, 3), r"expected an input with at least 3 axes"),
    ],
)
def test_bad_inputs(make, x_shape, match):
    with pytest.raises(ValueError, match=match):
        make()(np.zeros(x_shape))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: nnx.ZeroPad2d((1, 2)), r"ZeroPad2d: padding must be an int or a tuple of 4 ints"),
        (
            lambda: nnx.ReflectionPad3d(1.5),
            r"tuple of 6 ints \(left, right, top, bottom, front, back\)",
        ),
        (lambda: nnx.ConstantPad1d(1, "a"), "value must be a real number"),
        (lambda: nnx.CircularPad1d((1, True)), "padding must be an int or a tuple of 2 ints"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_backward_needs_forward_and_shape():
    layer = nnx.ReplicationPad2d(1)
    with pytest.raises(nnx.BackwardBeforeForwardError):
        layer.backward(np.zeros((1, 1, 4, 4)))
    layer(np.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match="gradient has shape"):
        layer.backward(np.zeros((1, 1, 2, 2)))
