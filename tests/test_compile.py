"""nnx.training.compile: the whole training step traced by jax.jit equals the eager step."""

import numpy as np
import pytest

import nnx
from nnx.optim import SGD, Adam

jax = pytest.importorskip("jax")


def _model(dropout=0.25, seed=0):
    return nnx.Sequential(
        nnx.Linear(4, 16, rng=seed, device="jax"),
        nnx.Tanh(),
        nnx.Dropout(dropout, rng=seed + 1),
        nnx.Linear(16, 3, rng=seed + 2, device="jax"),
    )


def _batches(n=4, size=8):
    be = nnx.get_backend("jax")
    rng = np.random.default_rng(0)
    return [
        (
            be.asarray(rng.standard_normal((size, 4)), dtype="float32"),
            be.asarray(rng.integers(0, 3, size).astype(np.int32)),
        )
        for _ in range(n)
    ]


def _eager_step(model, loss_fn, opt, x, y, clip_norm):
    opt.zero_grad()
    pred = model(x)
    loss = loss_fn(pred, y)
    model.backward(loss_fn.backward())
    nnx.optim.clip_grad_norm(opt.params, clip_norm)
    opt.step()
    return loss, pred


def test_compiled_steps_equal_eager_steps():
    """Adam, dropout, clipping and a changing learning rate: same numbers to float32 rounding."""
    eager_model, compiled_model = _model(), _model()
    eager_opt = Adam(eager_model.parameters(), lr=0.05, amsgrad=True)
    compiled_opt = Adam(compiled_model.parameters(), lr=0.05, amsgrad=True)
    loss_fn = nnx.CrossEntropyLoss()
    step = nnx.compile(compiled_model, nnx.CrossEntropyLoss(), compiled_opt, clip_norm=0.5)
    for i, (x, y) in enumerate(_batches()):
        eager_opt.lr = compiled_opt.lr = 0.05 * 0.9**i  # a schedule: no new trace
        want_loss, want_pred = _eager_step(eager_model, loss_fn, eager_opt, x, y, 0.5)
        loss, pred = step(x, y)
        np.testing.assert_allclose(float(loss), float(want_loss), rtol=1e-5)
        np.testing.assert_allclose(
            nnx.to_numpy(pred), nnx.to_numpy(want_pred), rtol=1e-5, atol=1e-6
        )
    for (name, a), b in zip(
        eager_model.state_dict().items(), compiled_model.state_dict().values(), strict=True
    ):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=name)
    want, got = eager_opt.state_dict(), compiled_opt.state_dict()
    for s, t in zip(want["state"], got["state"], strict=True):
        assert s.keys() == t.keys() and t["step"] == s["step"] == 4
        assert isinstance(t["step"], int)
        for k in s:
            np.testing.assert_allclose(t[k], s[k], rtol=1e-5, atol=1e-7, err_msg=k)
    # the dropout keys moved on exactly as in the eager run: the next masks agree
    assert np.array_equal(
        jax.random.key_data(eager_model[2]._generator.key),
        jax.random.key_data(compiled_model[2]._generator.key),
    )
    assert step.traces == 2  # empty optimizer state, then filled; the lr changes did not retrace
    assert all(p.grad is None for p in compiled_model.parameters())


def test_new_shapes_and_modes_trace_again_and_placeholders_are_dropped():
    model = _model()
    step = nnx.compile(model, nnx.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1))
    (x, y), _ = _batches(2)
    step(x, y)
    step(x, y)
    assert step.traces == 1  # SGD without momentum keeps no state
    step(x[:5], y[:5])  # a partial last batch
    assert step.traces == 2
    model.eval()
    before = nnx.to_numpy(model[0].weight.value)
    step(x, y)  # eval mode (dropout off) is a different program
    assert step.traces == 3 and not np.array_equal(before, nnx.to_numpy(model[0].weight.value))
    # layers cached trace-time placeholders; they are gone, so eager backward asks for forward
    with pytest.raises(nnx.BackwardBeforeForwardError):
        model.backward(x[:, :3])


def test_trainer_jit_matches_the_eager_trainer_and_resumes(tmp_path):
    data = nnx.datasets.load_dataset("vertical", seed=0)

    def trainer(jit):
        model = nnx.Sequential(
            nnx.Linear(2, 16, rng=0), nnx.ReLU(), nnx.Dropout(0.2, rng=1), nnx.Linear(16, 3, rng=2)
        )
        opt = Adam(model.parameters(), lr=0.05)
        return nnx.Trainer(
            model,
            nnx.CrossEntropyLoss(),
            opt,
            device="jax",
            seed=3,
            schedule=nnx.optim.ExponentialLR(opt, gamma=0.8),
            clip_norm=1.0,
            progress=False,
            jit=jit,
        )

    eager, compiled = trainer(False), trainer(True)
    eager.fit(data.train, data.test, epochs=2, batch_size=50)  # 240 samples: a partial batch
    compiled.fit(data.train, data.test, epochs=2, batch_size=50)
    for key in ("train_loss", "train_accuracy", "val_loss", "lr"):
        np.testing.assert_allclose(compiled.history[key], eager.history[key], rtol=1e-4)
    half = trainer(True)
    half.fit(data.train, data.test, epochs=1, batch_size=50)
    half.save_checkpoint(tmp_path / "half.npz")
    resumed = trainer(True)
    resumed.load_checkpoint(tmp_path / "half.npz")
    resumed.fit(data.train, data.test, epochs=2, batch_size=50)
    for a, b in zip(
        compiled.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_compile_needs_a_jax_model():
    model = nnx.Sequential(nnx.Linear(2, 2, rng=0))
    with pytest.raises(ValueError, match=r"needs the model on JAX.*model.to\('jax'\)"):
        nnx.compile(model, nnx.MSELoss(), SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="jit=True .* needs a JAX backend"):
        nnx.Trainer(
            model, nnx.MSELoss(), SGD(model.parameters()), device="numpy", jit=True, progress=False
        )
    other = nnx.Linear(2, 2, rng=1, device="jax")
    jax_model = nnx.Sequential(nnx.Linear(2, 2, rng=0, device="jax"))
    with pytest.raises(ValueError, match=r"optimizer parameters \[0, 1\] are not in the model"):
        nnx.compile(jax_model, nnx.MSELoss(), SGD(other.parameters()))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_running_statistics_are_passed_through_the_compiled_step(momentum):
    """Buffers go in and out of the program like parameters: same running stats as eager."""

    def model():
        return nnx.Sequential(
            nnx.Linear(4, 6, rng=0, device="jax"),
            nnx.BatchNorm1d(6, momentum=momentum, device="jax"),
            nnx.ReLU(),
            nnx.Linear(6, 3, rng=1, device="jax"),
        )

    eager, compiled = model(), model()
    eager_opt, opt = SGD(eager.parameters(), lr=0.1), SGD(compiled.parameters(), lr=0.1)
    step = nnx.compile(compiled, nnx.CrossEntropyLoss(), opt)
    loss_fn = nnx.CrossEntropyLoss()
    for x, y in _batches(3):
        eager_opt.zero_grad()
        loss_fn(eager(x), y)
        eager.backward(loss_fn.backward())
        eager_opt.step()
        step(x, y)
    want, got = eager.state_dict(), compiled.state_dict()
    assert int(got["1.num_batches_tracked"]) == 3
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6, err_msg=name)
