"""``model.to(...)`` after an optimizer step: the optimizer's state follows its parameters to the
new backend, device and dtype at the next step, for every built-in optimizer."""

import numpy as np
import pytest

import nnx
from nnx import optim
from nnx.backend import backend_available

OPTIMIZERS = {
    "SGD": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
    "Adagrad": lambda ps: optim.Adagrad(ps, lr=0.1),
    "Adam": lambda ps: optim.Adam(ps, lr=0.1, amsgrad=True),
    "AdamW": lambda ps: optim.AdamW(ps, lr=0.1),
    "RMSprop": lambda ps: optim.RMSprop(ps, lr=0.1, momentum=0.5),
}
MOVES = [("numpy", "strict"), ("numpy", "jax"), ("strict", "numpy"), ("jax", "numpy")]
MOVES += [pytest.param("numpy", "torch", marks=pytest.mark.torch)]


def test_every_built_in_optimizer_is_covered():
    built_in = {n for n in optim.__all__ if isinstance(getattr(optim, n), type)}
    built_in = {n for n in built_in if issubclass(getattr(optim, n), optim.Optimizer)}
    assert built_in - {"Optimizer"} == set(OPTIMIZERS)


def _run(make, placements, dtype="float64"):
    """Three steps with fixed gradients, the model placed on each backend in turn."""
    model = nnx.Linear(3, 2, rng=0).to("numpy", dtype=dtype)
    opt = make(list(model.parameters()))
    rng = np.random.default_rng(0)
    grads = [[rng.standard_normal(p.shape) for p in model.parameters()] for _ in placements]
    for step, where in enumerate(placements):
        model.to(where)
        backend = nnx.get_backend(where)
        for p, g in zip(model.parameters(), grads[step], strict=True):
            p.grad = backend.asarray(g, dtype=dtype)
        opt.step()
        for s, p in zip(opt.state, model.parameters(), strict=True):
            for k, v in s.items():
                if k != "step":
                    assert type(v) is type(p.value) and v.dtype == p.value.dtype, k
    return [nnx.backend.to_numpy(p.value) for p in model.parameters()]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize(("source", "dest"), MOVES)
def test_moving_the_model_after_a_step_moves_the_optimizer_state(name, source, dest):
    for spec in (source, dest):
        ok, why = backend_available(spec)
        if not ok:
            pytest.skip(why)
    make = OPTIMIZERS[name]
    want = _run(make, ["numpy"] * 3)
    got = _run(make, [source, dest, dest])
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_a_dtype_change_after_a_step_casts_the_state():
    model = nnx.Linear(3, 2, rng=0)
    opt = optim.Adam(list(model.parameters()), lr=0.1)
    for p in model.parameters():
        p.grad = np.ones(p.shape, np.float32)
    opt.step()
    model.to(dtype="float64")
    for p in model.parameters():
        p.grad = np.ones(p.shape, np.float64)
    opt.step()
    assert all(s["exp_avg"].dtype == np.float64 for s in opt.state)
