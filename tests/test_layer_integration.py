"""Every layer of the zoo (tests/layers/zoo) through the paths a user puts it on: Sequential,
Graph, save_model/load_model, state_dict round trips, to() between backends, one compiled step
on JAX equal to the eager step, and one mixed-precision step."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import nnx
from nnx.backend import backend_available
from nnx.optim import SGD
from nnx.training.precision import LossScaler, MixedPrecision
from nnx.training.step import EagerStep
from tests.layers.zoo import all_examples

EXAMPLES = all_examples()
KEYS = [
    pytest.param(key, marks=[] if options["sample"] else [pytest.mark.slow])
    for key, (_, _, options) in EXAMPLES.items()
]
JIT_KEYS = [
    pytest.param(key, marks=[] if options["sample_jit"] else [pytest.mark.slow])
    for key, (_, _, options) in EXAMPLES.items()
]
HAVE_JAX = backend_available("jax")[0]


def _sample(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _model(key):
    """The example layer followed by Flatten and a Linear head, in float64 on NumPy."""
    factory, shape, options = EXAMPLES[key]
    layer = factory().to(dtype="float64")
    if not options.get("flatten", True):
        return layer, shape, options
    width = int(np.prod(nnx.to_numpy(layer.eval()(_sample(shape))).shape[1:]))
    layer.train()
    head = nnx.Linear(width, 2, rng=0).to(dtype="float64")
    return nnx.Sequential(layer, nnx.Flatten(), head), shape, options


def _out(model, x):
    return nnx.to_numpy(model(x))


@pytest.mark.parametrize("key", KEYS)
def test_layer_in_sequential_and_graph_saves_loads_and_moves(key, tmp_path):
    model, shape, _ = _model(key)
    model.eval()
    x = _sample(shape, seed=1)
    want = _out(model, x)

    inp = nnx.Input("x")
    graph = nnx.Graph([inp], model(inp))
    np.testing.assert_allclose(_out(graph.eval(), x), want, rtol=1e-12, atol=1e-12)

    nnx.save_model(tmp_path / "m.npz", model)
    loaded = nnx.load_model(tmp_path / "m.npz").eval()
    np.testing.assert_allclose(_out(loaded, x), want, rtol=1e-12, atol=1e-12)

    fresh, _, _ = _model(key)
    fresh.load_state_dict(model.state_dict())
    np.testing.assert_allclose(_out(fresh.eval(), x), want, rtol=1e-12, atol=1e-12)

    for spec in ("strict:device1", "jax"):
        if not backend_available(spec)[0]:
            continue
        be = nnx.get_backend(spec)
        moved = copy.deepcopy(model).to(be)
        with nnx.backend.float64_scope(be):
            np.testing.assert_allclose(
                _out(moved, be.asarray(x)), want, rtol=1e-10, atol=1e-10, err_msg=spec
            )
        back = moved.to("numpy")
        np.testing.assert_allclose(_out(back, x), want, rtol=1e-12, atol=1e-12)


def _one_step(model, x, y, step_cls=EagerStep, **kwargs):
    opt = SGD(model.parameters(), lr=0.1)
    step = step_cls(model, nnx.MSELoss(), opt, **kwargs)
    step.zero_grad()
    loss, _ = step.compute_grads(x, y)
    step.apply()
    return float(nnx.to_numpy(loss))


@pytest.mark.skipif(not HAVE_JAX, reason="JAX not installed")
@pytest.mark.parametrize("key", JIT_KEYS)
def test_layer_compiled_step_equals_the_eager_step_on_jax(key):
    model, shape, options = _model(key)
    if not options.get("flatten", True) or not options.get("jit", True):
        pytest.skip("the example opts out of the compiled step")
    be = nnx.get_backend("jax")
    eager, compiled = copy.deepcopy(model).to(be), copy.deepcopy(model).to(be)
    with nnx.backend.float64_scope(be):
        x, y = be.asarray(_sample(shape, 2)), be.asarray(_sample((shape[0], 2), 3))
        want = _one_step(eager, x, y)
        opt = SGD(compiled.parameters(), lr=0.1)
        loss, _ = nnx.compile(compiled, nnx.MSELoss(), opt)(x, y)
        np.testing.assert_allclose(float(nnx.to_numpy(loss)), want, rtol=1e-10)
        for (name, a), b in zip(
            eager.state_dict().items(), compiled.state_dict().values(), strict=True
        ):
            np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("key", KEYS)
def test_layer_mixed_precision_step_is_finite_and_close_to_float32(key):
    model, shape, options = _model(key)
    if not options.get("flatten", True) or not options.get("half", True):
        pytest.skip("the example opts out of the float16 step")
    model = model.to(dtype="float32")
    x = _sample(shape, 2).astype("float32")
    y = _sample((shape[0], 2), 3).astype("float32")
    full, half = copy.deepcopy(model), copy.deepcopy(model)
    want = _one_step(full, x, y)
    opt = SGD(half.parameters(), lr=0.1)
    scaler = LossScaler(init_scale=64.0)  # small enough that the first step does not overflow
    step = MixedPrecision(EagerStep(half, nnx.MSELoss(), opt), "mixed16", scaler)
    step.zero_grad()
    loss, _ = step.compute_grads(x, y)
    assert step.apply(), "the float16 step overflowed"
    assert np.isfinite(float(loss))
    np.testing.assert_allclose(float(loss), want, rtol=5e-2, atol=5e-3)
    for (name, a), b in zip(full.state_dict().items(), half.state_dict().values(), strict=True):
        assert np.all(np.isfinite(b)), name
        np.testing.assert_allclose(b, a, rtol=5e-2, atol=5e-2, err_msg=name)
