"""The activations of nnx/layers/activations_extra.py and activations_learned.py against PyTorch
(float64, every backend of the oracle, PyTorch's own module-test configurations), at exactly
their corners, by finite differences on every backend, and for stability and float16."""

import math

import numpy as np
import pytest

import nnx
from tests.conftest import _backend_param, host_normal
from tests.layers.torch_oracle import (
    ORACLE_BACKENDS,
    check_torch_configs,
    compare,
    config_arguments,
    torch_module_configs,
)

# name -> (nnx factory, torch factory (given torch.nn), input shape)
CASES = {
    "relu6": (nnx.ReLU6, lambda nn: nn.ReLU6(), (3, 4)),
    "celu": (nnx.CELU, lambda nn: nn.CELU(), (3, 4)),
    "celu-0.5": (lambda: nnx.CELU(0.5), lambda nn: nn.CELU(0.5), (3, 4)),
    "hardshrink": (nnx.Hardshrink, lambda nn: nn.Hardshrink(), (3, 4)),
    "hardshrink-1": (lambda: nnx.Hardshrink(1.0), lambda nn: nn.Hardshrink(1.0), (3, 4)),
    "softshrink": (nnx.Softshrink, lambda nn: nn.Softshrink(), (3, 4)),
    "softshrink-0.2": (lambda: nnx.Softshrink(0.2), lambda nn: nn.Softshrink(0.2), (3, 4)),
    "hardsigmoid": (nnx.Hardsigmoid, lambda nn: nn.Hardsigmoid(), (3, 4)),
    "hardswish": (nnx.Hardswish, lambda nn: nn.Hardswish(), (3, 4)),
    "logsigmoid": (nnx.LogSigmoid, lambda nn: nn.LogSigmoid(), (3, 4)),
    "softsign": (nnx.Softsign, lambda nn: nn.Softsign(), (3, 4)),
    "tanhshrink": (nnx.Tanhshrink, lambda nn: nn.Tanhshrink(), (3, 4)),
    "threshold": (lambda: nnx.Threshold(0.1, 20.0), lambda nn: nn.Threshold(0.1, 20.0), (3, 4)),
    "softmin": (lambda: nnx.Softmin(1), lambda nn: nn.Softmin(1), (3, 4)),
    "softmin-0": (lambda: nnx.Softmin(0), lambda nn: nn.Softmin(0), (3, 4, 2)),
    "softmax2d": (nnx.Softmax2d, lambda nn: nn.Softmax2d(), (2, 3, 2, 2)),
    "softmax2d-3d": (nnx.Softmax2d, lambda nn: nn.Softmax2d(), (3, 2, 2)),
    "glu": (nnx.GLU, lambda nn: nn.GLU(), (3, 4)),
    "glu-1": (lambda: nnx.GLU(1), lambda nn: nn.GLU(1), (2, 6, 3)),
    "prelu": (nnx.PReLU, lambda nn: nn.PReLU(), (3, 4)),
    "prelu-channels": (lambda: nnx.PReLU(3, 0.1), lambda nn: nn.PReLU(3, 0.1), (2, 3, 2, 2)),
    "prelu-1d": (lambda: nnx.PReLU(init=-0.3), lambda nn: nn.PReLU(init=-0.3), (5,)),
    "rrelu-eval": (lambda: nnx.RReLU(0.1, 0.5), lambda nn: nn.RReLU(0.1, 0.5), (3, 4)),
}
# PyTorch's CPU kernel multiplies Hardsigmoid's gradient by 1/6 rounded to float32 (3e-8 off in
# float64); nnx uses 1/6 itself, so that one gradient is compared to 1e-7
TOL = {"hardsigmoid": 1e-7, "Hardsigmoid": 1e-7}
# every case runs on NumPy by default (test_every_case_matches_pytorch_on_numpy); one on every
# oracle backend, the rest under slow (JAX's first call of each operation is slow)
DEFAULT = ("prelu-channels",)
CASE_PARAMS = [pytest.param(k, marks=[] if k in DEFAULT else [pytest.mark.slow]) for k in CASES]
SLOW_BACKENDS = [
    pytest.param(b, marks=[] if b == "numpy" else [pytest.mark.slow]) for b in ORACLE_BACKENDS
]


@pytest.mark.torch
@pytest.mark.parametrize("backend", ORACLE_BACKENDS)
@pytest.mark.parametrize("name", CASE_PARAMS)
def test_matches_pytorch(name, backend):
    import torch

    make, tmake, shape = CASES[name]
    x = 2.5 * np.random.default_rng(1).standard_normal(shape)
    tol = TOL.get(name, 1e-9)
    compare(make(), tmake(torch.nn), shape, inputs=[x], backend=backend, train=False, tol=tol)


@pytest.mark.torch
def test_every_case_matches_pytorch_on_numpy():
    import torch

    for name, (make, tmake, shape) in CASES.items():
        x = 4.0 * np.random.default_rng(2).standard_normal(shape)
        try:
            compare(
                make(), tmake(torch.nn), shape, inputs=[x], train=False, tol=TOL.get(name, 1e-9)
            )
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


# every corner of every piecewise activation, hit exactly
CORNERS = {
    "relu6": (nnx.ReLU6, lambda nn: nn.ReLU6(), [0.0, 6.0, -1.0, 3.0, 7.0]),
    "hardshrink": (nnx.Hardshrink, lambda nn: nn.Hardshrink(), [0.5, -0.5, 0.0, 1.0, -1.0]),
    "softshrink": (nnx.Softshrink, lambda nn: nn.Softshrink(), [0.5, -0.5, 0.0, 1.0, -1.0]),
    "softshrink-0": (
        lambda: nnx.Softshrink(0.0),
        lambda nn: nn.Softshrink(0.0),
        [0.0, 1.0, -1.0, 0.0, 2.0],
    ),
    "hardsigmoid": (nnx.Hardsigmoid, lambda nn: nn.Hardsigmoid(), [3.0, -3.0, 0.0, 4.0, -4.0]),
    "hardswish": (nnx.Hardswish, lambda nn: nn.Hardswish(), [3.0, -3.0, 0.0, 4.0, -4.0]),
    "threshold": (
        lambda: nnx.Threshold(1.5, -2.0),
        lambda nn: nn.Threshold(1.5, -2.0),
        [1.5, 1.0, 2.0, -1.5, 0.0],
    ),
    "celu": (nnx.CELU, lambda nn: nn.CELU(), [0.0, 1.0, -1.0, 0.0, 2.0]),
    "prelu": (nnx.PReLU, lambda nn: nn.PReLU(), [0.0, 1.0, -1.0, 0.0, 2.0]),
    "rrelu-eval": (nnx.RReLU, lambda nn: nn.RReLU(), [0.0, 1.0, -1.0, 0.0, 2.0]),
}


@pytest.mark.torch
@pytest.mark.parametrize("backend", SLOW_BACKENDS)
def test_subgradient_at_the_corners_is_pytorch_choice(backend):
    import torch

    for name, (make, tmake, points) in CORNERS.items():
        x = np.array(points, dtype=np.float64)[None, :]
        tol = TOL.get(name, 1e-9)
        try:
            compare(
                make(), tmake(torch.nn), x.shape, inputs=[x], backend=backend, train=False, tol=tol
            )
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None


CONFIG_CLASSES = [
    "PReLU",
    "ReLU6",
    "CELU",
    "GLU",
    "Hardshrink",
    "Hardsigmoid",
    "Hardswish",
    "LogSigmoid",
    "Softshrink",
    "Softsign",
    "Tanhshrink",
    "Threshold",
]


@pytest.mark.torch
def test_pytorch_module_test_configurations_on_numpy():
    for name in CONFIG_CLASSES:
        check_torch_configs(name, backends=("numpy",), tol=TOL.get(name, 1e-9))


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("name", CONFIG_CLASSES)
def test_pytorch_module_test_configurations(name):
    check_torch_configs(name, tol=TOL.get(name, 1e-9))


@pytest.mark.torch
@pytest.mark.parametrize("backend", SLOW_BACKENDS)
def test_rrelu_pytorch_configurations_in_evaluation(backend):
    """PyTorch's RReLU draws its own randoms in training: its configurations are compared in
    evaluation mode (the mean slope); training is tested by its statistics below."""
    import torch

    configs = torch_module_configs("RReLU")
    assert len(configs) >= 3
    for config in configs:
        args, kwargs = config_arguments(config)
        shape = tuple(config["input_size"])
        compare(
            nnx.RReLU(*args, **kwargs),
            torch.nn.RReLU(*args, **kwargs),
            shape,
            backend=backend,
            train=False,
        )


@pytest.mark.parametrize(
    "spec", ["numpy", pytest.param("strict:device1", marks=pytest.mark.slow),
             pytest.param("jax", marks=pytest.mark.slow)],
)  # fmt: skip
def test_rrelu_training_slopes_are_uniform_and_the_gradient_is_the_drawn_slope(spec):
    backend = nnx.get_backend(spec)
    layer = nnx.RReLU(0.1, 0.3, rng=0)
    x = backend.asarray(-np.abs(host_normal((400, 50), seed=4)) - 0.01)
    y = nnx.to_numpy(layer(x))
    slopes = y / nnx.to_numpy(x)
    assert slopes.min() >= 0.1 and slopes.max() <= 0.3
    assert abs(slopes.mean() - 0.2) < 2e-3 and abs(slopes.std() - 0.2 / math.sqrt(12)) < 2e-3
    grad = nnx.to_numpy(layer.backward(backend.asarray(np.ones((400, 50)))))
    np.testing.assert_allclose(grad, slopes, rtol=1e-5)
    pos = backend.asarray(np.abs(host_normal((3, 4), seed=5)) + 0.1)
    np.testing.assert_array_equal(nnx.to_numpy(layer(pos)), nnx.to_numpy(pos))


def test_rrelu_draws_repeat_after_reseed_and_differ_between_calls():
    layer = nnx.RReLU(rng=3)
    x = -np.ones((4, 5), np.float32)
    first, second = layer(x), layer(x)
    assert not np.array_equal(first, second)
    layer.reseed(layer.seed)
    np.testing.assert_array_equal(layer(x), first)
    again = nnx.RReLU(rng=3)
    np.testing.assert_array_equal(again(x), first)
    layer.eval()
    np.testing.assert_allclose(layer(x), -np.full((4, 5), (1 / 8 + 1 / 3) / 2), rtol=1e-6)


def _rrelu_trainer():
    from nnx.optim import SGD

    model = nnx.Sequential(
        nnx.Linear(3, 8, rng=0), nnx.RReLU(0.05, 0.5), nnx.Linear(8, 4, rng=1), nnx.PReLU(),
        nnx.Linear(4, 2, rng=2),
    )  # fmt: skip
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    return nnx.Trainer(model, nnx.MSELoss(), opt, device="cpu", seed=5, progress=False)


def test_a_run_with_rrelu_and_prelu_resumes_exactly(tmp_path):
    """The Trainer reseeds RReLU (a Dropout subclass) each epoch like dropout: a resumed run
    draws the slopes the uninterrupted one drew, and PReLU's slope is a saved parameter."""
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((40, 3)), rng.standard_normal((40, 2)))
    data = tuple(a.astype(np.float32) for a in data)
    straight = _rrelu_trainer()
    straight.fit(data, epochs=3, batch_size=16)
    first = _rrelu_trainer()
    first.fit(data, epochs=2, batch_size=16)
    first.save_checkpoint(tmp_path / "half.npz")
    resumed = _rrelu_trainer()
    resumed.load_checkpoint(tmp_path / "half.npz")
    resumed.fit(data, epochs=3, batch_size=16)
    want, got = straight.model.state_dict(), resumed.model.state_dict()
    assert "3.weight" in want and float(want["3.weight"][0]) != 0.25  # PReLU's slope learned
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


# JAX's first call of each operation compiles it: the one-check-per-backend tests below leave JAX
# to the slow run (the JAX comparisons with PyTorch above and the layer zoo cover it by default)
GRAD_BACKENDS = [
    _backend_param("numpy"),
    _backend_param("strict"),
    _backend_param("strict:device1"),
    _backend_param("torch", pytest.mark.torch),
    _backend_param("jax", pytest.mark.slow),
]

GRADCHECK = {
    "relu6": nnx.ReLU6,
    "celu": lambda: nnx.CELU(0.7),
    "hardshrink": nnx.Hardshrink,
    "softshrink": nnx.Softshrink,
    "hardsigmoid": nnx.Hardsigmoid,
    "hardswish": nnx.Hardswish,
    "logsigmoid": nnx.LogSigmoid,
    "softsign": nnx.Softsign,
    "tanhshrink": nnx.Tanhshrink,
    "threshold": lambda: nnx.Threshold(0.2, -1.0),
    "softmin": lambda: nnx.Softmin(0),
    "glu": lambda: nnx.GLU(1),
    "prelu": lambda: nnx.PReLU(4),
    "rrelu": lambda: nnx.RReLU(rng=0).eval(),
}


def _off_the_corners(shape, seed):
    """Data away from every corner (0, +-0.5, +-3, 6, the threshold 0.2) by more than the step."""
    host = 2.0 * host_normal(shape, seed=seed, away_from_zero=0.05)
    for corner in (0.5, -0.5, 3.0, -3.0, 0.2, 6.0):
        host = np.where(np.abs(host - corner) < 0.05, host + 0.1, host)
    return host


@pytest.mark.parametrize("spec", GRAD_BACKENDS)
def test_a_chain_of_every_activation_matches_finite_differences(spec):
    """One gradient check per backend through all of them (each alone runs under slow)."""
    backend = nnx.get_backend(spec)
    chain = nnx.Sequential(
        nnx.PReLU(4, -0.4), nnx.CELU(0.7), nnx.Hardswish(), nnx.Softsign(), nnx.Tanhshrink(),
        nnx.LogSigmoid(), nnx.Hardsigmoid(), nnx.Softmin(1), nnx.Softmax2d(), nnx.GLU(1),
    )  # fmt: skip
    x = backend.asarray(_off_the_corners((2, 4, 2, 2), seed=6))
    result = nnx.gradcheck(chain.to(dtype="float64"), x)
    assert result.ok, str(result)


@pytest.mark.slow
@pytest.mark.parametrize("name", GRADCHECK)
def test_gradients_match_finite_differences(backend, name):
    module = GRADCHECK[name]().to(dtype="float64")
    result = nnx.gradcheck(module, backend.asarray(_off_the_corners((3, 4), seed=7)))
    assert result.ok, str(result)


@pytest.mark.slow
def test_softmax2d_gradcheck(backend):
    x = backend.asarray(host_normal((2, 3, 2, 2), seed=8))
    assert nnx.gradcheck(nnx.Softmax2d(), x).ok


def test_logsigmoid_is_finite_at_large_magnitudes_in_float32():
    x = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], np.float32)
    layer = nnx.LogSigmoid()
    y = layer(x)
    assert y.dtype == np.float32 and np.all(np.isfinite(y))
    np.testing.assert_allclose(y, [-1e4, -100.0, -math.log(2.0), 0.0, 0.0], rtol=1e-6, atol=1e-30)
    g = layer.backward(np.ones_like(x))
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, [1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-30)


def test_threshold_takes_an_infinite_value_as_pytorch():
    y = nnx.Threshold(0.0, -math.inf)(np.array([-1.0, 2.0]))
    np.testing.assert_array_equal(y, [-math.inf, 2.0])


def test_softmin_and_celu_are_finite_at_large_magnitudes_in_float32():
    x = np.array([[-1e4, 0.0, 1e4]], np.float32)
    for layer in (nnx.Softmin(), nnx.CELU(0.5), nnx.Softsign(), nnx.Tanhshrink(), nnx.GLU()):
        xin = np.concatenate([x, x], axis=1) if isinstance(layer, nnx.GLU) else x
        y = layer(xin)
        assert np.all(np.isfinite(y)), type(layer).__name__
        assert np.all(np.isfinite(layer.backward(np.ones_like(y)))), type(layer).__name__


HALF = [
    nnx.ReLU6,
    nnx.CELU,
    nnx.Hardswish,
    nnx.Hardsigmoid,
    nnx.LogSigmoid,
    nnx.Softsign,
    nnx.Tanhshrink,
    nnx.Softmin,
    nnx.GLU,
    nnx.Softshrink,
]


def test_float16_close_to_float32():
    x = 3.0 * host_normal((4, 6), seed=9)
    for make in HALF:
        y32 = make()(x.astype(np.float32))
        y16 = make()(x.astype(np.float16))
        assert y16.dtype == np.float16, make.__name__
        np.testing.assert_allclose(y16.astype(np.float32), y32, rtol=1e-2, atol=5e-3)
    layer = nnx.PReLU(6).to(dtype="float16")
    assert layer(x.astype(np.float16)).dtype == np.float16


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda: nnx.CELU(0.0), "CELU: alpha"),
        (lambda: nnx.Softshrink(-1.0), "Softshrink: lambd"),
        (lambda: nnx.Hardshrink("a"), "Hardshrink: lambd"),
        (lambda: nnx.Threshold(math.nan, 1.0), "Threshold: threshold"),
        (lambda: nnx.RReLU(0.5, 0.1), r"RReLU: lower \(0.5\)"),
        (lambda: nnx.PReLU(0), "PReLU: num_parameters"),
        (lambda: nnx.GLU(1.5), "GLU: dim"),
        (lambda: nnx.Softmin("x"), "Softmin: dim"),
    ],
)
def test_bad_arguments_raise_one_line_naming_the_module(make, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        make()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "layer, x, pattern",
    [
        (nnx.GLU(), np.ones((2, 3)), "GLU: the size along dim -1 must be even"),
        (nnx.GLU(2), np.ones((2, 4)), "GLU: dim 2 is out of range"),
        (nnx.Softmax2d(), np.ones((2, 3)), r"Softmax2d: expected input of shape"),
        (nnx.Softmin(3), np.ones((2, 3)), "Softmin: dim 3 is out of range"),
        (nnx.PReLU(3).to(dtype="float64"), np.ones((2, 4)), r"PReLU: num_parameters=3"),
        (nnx.PReLU(3).to(dtype="float64"), np.ones(3), r"PReLU: num_parameters=3"),
    ],
)
def test_bad_inputs_raise_one_line_naming_the_module(layer, x, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        layer(x)
    assert "\n" not in str(info.value)


def test_integer_input_is_refused_with_the_module_name():
    for layer in (nnx.ReLU6(), nnx.RReLU(), nnx.PReLU(), nnx.Softmin()):
        with pytest.raises(TypeError, match=type(layer).__name__):
            layer(np.ones((2, 3), dtype=np.int64))
