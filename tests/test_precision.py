"""Mixed precision on the CPU: the loss-scaler state machine, skipped steps, float32 master
weights and optimizer state, checkpoints. (Speed is a GPU matter; none is measured here.)"""

import numpy as np
import pytest

import nnx
from nnx.optim import SGD, Adam
from nnx.training.precision import LossScaler, MixedPrecision
from nnx.training.step import EagerStep


def test_loss_scaler_grows_after_clean_steps_and_backs_off_on_overflow():
    s = LossScaler(init_scale=1024.0, growth_interval=3)
    assert [s.update(False) for _ in range(2)] == [True, True] and s.scale == 1024.0
    assert s.update(False) and s.scale == 2048.0 and s.good_steps == 0  # 3 clean steps
    assert s.update(False) and s.good_steps == 1
    assert not s.update(True)  # overflow: skip, halve, count again from zero
    assert s.scale == 1024.0 and s.good_steps == 0 and s.skipped_steps == 1
    assert not s.update(True) and s.scale == 512.0 and s.skipped_steps == 2
    for _ in range(3):
        s.update(False)
    assert s.scale == 1024.0
    fixed = LossScaler(init_scale=1.0, dynamic=False, growth_interval=1)
    assert fixed.update(False) and not fixed.update(True) and fixed.scale == 1.0
    assert fixed.skipped_steps == 1


def test_loss_scaler_state_round_trips():
    s = LossScaler(init_scale=64.0, growth_factor=4.0, backoff_factor=0.25, growth_interval=5)
    for found in (False, False, True, False):
        s.update(found)
    t = LossScaler()
    t.load_state_dict(s.state_dict())
    assert t.state_dict() == s.state_dict()
    assert [t.update(False) for _ in range(5)] == [True] * 5 and t.scale == 64.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"init_scale": 0.0}, "init_scale must be positive"),
        ({"growth_factor": 1.0}, "growth_factor must be > 1"),
        ({"backoff_factor": 1.5}, r"backoff_factor must lie in \(0, 1\)"),
        ({"growth_interval": 0}, "growth_interval must be a positive integer"),
    ],
)
def test_loss_scaler_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LossScaler(**kwargs)


def _model(seed=0, device="cpu"):
    return nnx.Sequential(
        nnx.Linear(4, 8, rng=seed, device=device),
        nnx.Tanh(),
        nnx.Linear(8, 3, rng=seed + 1, device=device),
    )


def _mixed(model, loss, optimizer, precision, scaler=None):
    """The eager step of ``model`` wrapped for mixed precision."""
    return MixedPrecision(EagerStep(model, loss, optimizer), precision, scaler=scaler)


def _batch(backend="cpu", n=16):
    be = nnx.get_backend(backend)
    rng = np.random.default_rng(0)
    x = be.asarray(rng.standard_normal((n, 4)), dtype="float32")
    y = be.asarray(rng.integers(0, 3, n).astype(np.int32))
    return x, y


def test_float16_step_updates_float32_masters_like_a_float32_step():
    x, y = _batch()
    ref, mixed = _model(), _model()
    ref_opt, opt = Adam(ref.parameters(), lr=0.01), Adam(mixed.parameters(), lr=0.01)
    step = _mixed(mixed, nnx.CrossEntropyLoss(), opt, "float16")
    loss_fn = nnx.CrossEntropyLoss()
    for _ in range(3):
        ref_opt.zero_grad()
        want = loss_fn(ref(x), y)
        ref.backward(loss_fn.backward())
        ref_opt.step()
        loss, pred = step(x, y)
        assert loss.dtype == np.float32 and pred.dtype == np.float32
        np.testing.assert_allclose(float(loss), float(want), rtol=1e-2)
    assert step.scaler.scale == 2.0**16 and step.scaler.good_steps == 3
    for (name, a), b in zip(ref.state_dict().items(), mixed.state_dict().values(), strict=True):
        assert b.dtype == np.float32, name  # masters stay float32
        np.testing.assert_allclose(b, a, atol=2e-3, err_msg=name)
    for entry in opt.state:  # optimizer state is float32, built on the masters
        assert entry["step"] == 3
        assert all(v.dtype == np.float32 for k, v in entry.items() if k != "step")


def test_updates_smaller_than_float16_spacing_reach_the_masters():
    """Why master weights: lr * g far below float16's spacing still moves the float32 value."""
    x, y = _batch()
    model = _model()
    start = model.state_dict()["0.weight"]
    step = _mixed(model, nnx.CrossEntropyLoss(), SGD(model.parameters(), lr=1e-5), "float16")
    step(x, y)
    moved = model.state_dict()["0.weight"] - start
    spacing = np.spacing(np.abs(start).astype(np.float16)).astype(np.float32)
    assert np.count_nonzero(moved) > 0.9 * moved.size
    assert np.all(np.abs(moved) < 0.5 * spacing)  # float16 weights would round back: no move


def test_overflow_skips_the_step_and_halves_the_scale():
    x, y = _batch()
    model = _model()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = LossScaler(init_scale=2.0**40, growth_interval=2)  # float16 gradients overflow
    step = _mixed(model, nnx.CrossEntropyLoss(), opt, "float16", scaler=scaler)
    before = model.state_dict()
    step(x, y)
    assert step.last_step_skipped and scaler.scale == 2.0**39 and scaler.skipped_steps == 1
    for (name, a), b in zip(before.items(), model.state_dict().values(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)  # nothing applied
    assert opt.state == [{}, {}, {}, {}]  # not even the momentum buffers
    assert all(p.grad is None for p in model.parameters())
    skipped = 1
    while step.last_step_skipped:  # backs off until float16 holds the gradients
        step(x, y)
        skipped += 1
    assert scaler.skipped_steps == skipped - 1 and scaler.scale <= 2.0**24
    assert not np.array_equal(before["0.weight"], model.state_dict()["0.weight"])
    assert opt.state[0]["step"] == 1


def test_bfloat16_where_the_namespace_has_it_and_a_clear_error_elsewhere():
    model = _model()
    with pytest.raises(ValueError, match="bfloat16 needs PyTorch, JAX or CuPy"):
        _mixed(model, nnx.MSELoss(), SGD(model.parameters()), "bfloat16")
    assert _mixed(model, nnx.MSELoss(), SGD(model.parameters()), "mixed16").name == (
        "float16"  # NumPy has no bfloat16
    )
    with pytest.raises(
        ValueError, match=r"'float16' is not available on backend 'array_api_strict'"
    ):
        strict = _model(device="strict")
        _mixed(strict, nnx.MSELoss(), SGD(strict.parameters()), "float16")
    with pytest.raises(ValueError, match="float32 master weights"):
        wide = _model().to(dtype="float64")
        _mixed(wide, nnx.MSELoss(), SGD(wide.parameters()), "float16")
    with pytest.raises(ValueError, match="precision must be one of"):
        nnx.Trainer(model, nnx.MSELoss(), SGD(model.parameters()), "cpu", precision="half")


@pytest.mark.parametrize("spec", [pytest.param("torch", marks=pytest.mark.torch), "jax"])
def test_bfloat16_trains_on_torch_and_jax(spec):
    ok, why = nnx.backend.backend_available(spec)
    if not ok:
        pytest.skip(why)
    model = _model(device=spec)
    opt = Adam(model.parameters(), lr=0.05)
    step = _mixed(model, nnx.CrossEntropyLoss(), opt, "mixed16")
    assert step.name == "bfloat16" and step.scaler.scale == 1.0 and not step.scaler.dynamic
    x, y = _batch(spec)
    losses = [float(step(x, y)[0]) for _ in range(8)]
    assert losses[-1] < losses[0]
    assert all(nnx.core.checks.dtype_name(p.value.dtype) == "float32" for p in model.parameters())


def test_softmax_accumulates_half_input_in_float32():
    x = np.random.default_rng(0).standard_normal((4, 300)).astype(np.float16)
    layer = nnx.Softmax()
    y = layer(x)
    assert y.dtype == np.float16
    want = np.exp(x.astype(np.float64))
    want /= want.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(y.astype(np.float64), want, rtol=1e-3, atol=1e-6)
    g = np.ones_like(x)
    dx = layer.backward(g)  # softmax rows sum to one: the gradient of a constant sum is ~0
    assert dx.dtype == np.float16 and np.abs(dx.astype(np.float64)).max() < 1e-5


def _trainer(precision, **kw):
    model = nnx.Sequential(nnx.Linear(2, 16, rng=0), nnx.ReLU(), nnx.Linear(16, 3, rng=1))
    return nnx.Trainer(
        model,
        nnx.CrossEntropyLoss(),
        Adam(model.parameters(), lr=0.05),
        device="cpu",
        seed=1,
        progress=False,
        precision=precision,
        **kw,
    )


def test_trainer_float16_learns_and_resumes_exactly_with_the_scaler_state(tmp_path):
    data = nnx.datasets.load_dataset("vertical", seed=0)
    straight = _trainer("float16")
    straight.mixed_precision.scaler.growth_interval = 7  # let the scale move during the run
    history = straight.fit(data.train, epochs=4, batch_size=40)
    assert history["train_loss"][-1] < 0.7 * history["train_loss"][0]
    assert straight.mixed_precision.scaler.scale > 2.0**16
    first = _trainer("float16")
    first.mixed_precision.scaler.growth_interval = 7
    first.fit(data.train, epochs=2, batch_size=40)
    first.save_checkpoint(tmp_path / "half.npz")
    resumed = _trainer("float16")
    resumed.load_checkpoint(tmp_path / "half.npz")
    assert resumed.mixed_precision.scaler.state_dict() == first.mixed_precision.scaler.state_dict()
    resumed.fit(data.train, epochs=4, batch_size=40)
    assert (
        resumed.mixed_precision.scaler.state_dict() == straight.mixed_precision.scaler.state_dict()
    )
    for a, b in zip(
        straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert b.dtype == np.float32
        np.testing.assert_array_equal(a, b)
