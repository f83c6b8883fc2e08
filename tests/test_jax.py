"""JAX as a backend: specs, 64-bit mode, immutable arrays, seeded randomness.

The suite runs with JAX's 64-bit mode on (tests/conftest.py); the tests here that are about the
float32 default switch it off for their own thread with ``jax.enable_x64(False)``.
"""

import numpy as np
import pytest

import nnx
from nnx.optim import SGD, Adagrad, Adam, AdamW, RMSprop

jax = pytest.importorskip("jax")
jnp = jax.numpy


def _no_gpu() -> bool:
    try:
        jax.devices("gpu")
    except RuntimeError:
        return True
    return False


def test_jax_specs():
    be = nnx.get_backend("jax")
    assert be.name == "jax" and be.xp is jnp and not be.is_gpu
    assert be.device == jax.devices("cpu")[0]
    assert nnx.get_backend("jax:cpu") == be
    x = be.asarray([[1.0, 2.0]], dtype="float32")
    assert be.owns(x) and nnx.backend_of(x) == be
    assert "jax" in nnx.backend.VALID_SPECS and "jax:gpu" in nnx.backend.VALID_SPECS
    with pytest.raises(ValueError, match="unknown backend spec 'jax:tpu'"):
        nnx.get_backend("jax:tpu")
    with pytest.raises(nnx.BackendUnavailableError, match="JAX sees 1 cpu device"):
        nnx.get_backend("jax:cpu:3")


@pytest.mark.skipif(not _no_gpu(), reason="this JAX has a GPU")
def test_jax_gpu_without_a_gpu_is_a_clear_error():
    with pytest.raises(nnx.BackendUnavailableError, match=r"JAX has no GPU here.*jax\[cuda12\]"):
        nnx.get_backend("jax:gpu")


def test_jax_missing_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_jax(name, *args, **kwargs):
        if name == "jax" or name.startswith("jax."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_jax)
    with pytest.raises(nnx.BackendUnavailableError, match=r"nnx-trainer\[jax\]"):
        nnx.get_backend("jax")


def test_float64_without_x64_says_how_to_turn_it_on():
    be = nnx.get_backend("jax")
    with jax.enable_x64(False):
        with pytest.raises(ValueError, match="JAX_ENABLE_X64=1"):
            be.dtype("float64")
        with pytest.raises(ValueError, match="JAX_ENABLE_X64=1"):
            nnx.Linear(2, 3, dtype="float64", device="jax")
        assert be.dtype("int64") == jnp.int32  # class labels: JAX's own integer
        assert be.dtype("float32") == jnp.float32
    assert be.dtype("float64") == jnp.float64  # the suite's global x64 is untouched


def test_gradcheck_turns_x64_on_for_itself_only():
    """gradcheck on float32 JAX input without x64: a real float64 check, never a silent False."""
    with jax.enable_x64(False):
        layer = nnx.Linear(3, 2, rng=0, device="jax")
        x = nnx.get_backend("jax").asarray(np.random.default_rng(0).standard_normal((4, 3)))
        assert x.dtype == jnp.float32
        result = nnx.gradcheck(nnx.Sequential(layer, nnx.Tanh()), x)
        assert result.ok and result.worst[1] < 1e-8, str(result)  # float32 would give ~1e-3
        assert not jax.config.jax_enable_x64  # switched off again after the check
        assert layer.weight.value.dtype == jnp.float32  # the original module is untouched
        # a wrong backward is still caught
        broken = nnx.Sequential(nnx.Linear(3, 2, rng=0, device="jax"), _WrongTanh())
        assert not nnx.gradcheck(broken, x).ok


class _WrongTanh(nnx.Tanh):
    def backward(self, grad_out):
        return 1.5 * super().backward(grad_out)


def test_float32_training_without_x64():
    """What a JAX user gets by default: float32 throughout, no warning (warnings are errors)."""
    with jax.enable_x64(False):
        data = nnx.datasets.load_dataset("vertical", seed=0)
        model = nnx.Sequential(
            nnx.Linear(2, 16, rng=0), nnx.ReLU(), nnx.Dropout(0.2, rng=1), nnx.Linear(16, 3, rng=2)
        )
        trainer = nnx.Trainer(
            model,
            nnx.CrossEntropyLoss(),
            Adam(model.parameters(), lr=0.05),
            device="jax",
            progress=False,
        )
        history = trainer.fit(data.train, epochs=3, batch_size=60)
        assert history["train_loss"][-1] < history["train_loss"][0]
        assert all(p.value.dtype == jnp.float32 for p in model.parameters())
        assert all(nnx.backend_of(p.value).name == "jax" for p in model.parameters())


OPTIMIZERS = [
    (SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (SGD, {"lr": 0.1, "momentum": 0.8, "dampening": 0.3}),
    (Adagrad, {"lr": 0.1, "lr_decay": 0.01}),
    (RMSprop, {"lr": 0.01, "centered": True, "momentum": 0.5}),
    (Adam, {"lr": 0.1, "amsgrad": True}),
    (AdamW, {"lr": 0.1, "weight_decay": 0.1}),
]


@pytest.mark.parametrize("make, kwargs", OPTIMIZERS, ids=lambda v: getattr(v, "__name__", ""))
def test_optimizers_rebind_immutable_jax_arrays(make, kwargs):
    """Each step makes new arrays (JAX cannot write in place) with NumPy's numbers."""
    start = np.random.default_rng(0).standard_normal((3, 4))
    results = {}
    for spec in ("numpy", "jax"):
        be = nnx.get_backend(spec)
        p = nnx.Parameter(be.asarray(start.copy(), dtype="float64"), "p")
        opt = make([p], **kwargs)
        for step in range(3):
            before = p.value
            state_before = {k: v for k, v in opt.state[0].items() if k != "step"}
            p.grad = be.asarray(np.cos(start * (step + 1)), dtype="float64")
            opt.step()
            if spec == "jax":
                assert p.value is not before  # rebound, not written
                assert all(opt.state[0][k] is not v for k, v in state_before.items())
                assert isinstance(p.value, jax.Array)
        results[spec] = nnx.to_numpy(p.value)
    np.testing.assert_allclose(results["jax"], results["numpy"], rtol=1e-13, atol=1e-13)


def test_gradients_accumulate_by_rebinding_on_jax():
    """A parameter used twice gets the sum; JAX's first gradient array is never changed."""
    be = nnx.get_backend("jax")
    layer = nnx.Linear(3, 3, rng=0, device="jax", dtype="float64")
    tied = nnx.Linear(3, 3, rng=1, device="jax", dtype="float64")
    tied.weight = layer.weight  # one parameter in two layers
    model = nnx.Sequential(layer, nnx.Tanh(), tied)
    x = be.asarray(np.random.default_rng(1).standard_normal((5, 3)), dtype="float64")
    assert nnx.gradcheck(model, x).ok
    model(x)
    model.backward(be.xp.ones((5, 3), dtype=be.xp.float64, device=be.device))
    first = layer.weight.grad
    kept = np.array(first)
    layer.weight.accumulate(first)  # doubles it into a new array
    np.testing.assert_array_equal(nnx.to_numpy(layer.weight.grad), 2 * kept)
    np.testing.assert_array_equal(np.asarray(first), kept)


def test_buffers_are_rebound_on_jax():
    class RunningMean(nnx.Module):
        def __init__(self):
            self.mean = nnx.Buffer(nnx.get_backend("jax").asarray(np.zeros(2)), "mean")

        def forward(self, x):
            self.mean.value = 0.5 * self.mean.value + 0.5 * namespace_mean(x)
            return x

    def namespace_mean(x):
        return nnx.namespace(x).mean(x, axis=0)

    m = RunningMean()
    x = nnx.get_backend("jax").asarray([[1.0, 3.0], [3.0, 5.0]])
    m(x)
    m(x)
    np.testing.assert_allclose(nnx.to_numpy(m.mean.value), [1.5, 3.0])
    assert "mean" in m.state_dict()


def test_dropout_masks_come_from_jax_random_and_repeat():
    be = nnx.get_backend("jax")
    x = be.xp.ones((4, 50), dtype=be.xp.float32)
    a, b = nnx.Dropout(0.5, rng=3), nnx.Dropout(0.5, rng=3)
    first = [nnx.to_numpy(a(x)) for _ in range(3)]
    second = [nnx.to_numpy(b(x)) for _ in range(3)]
    for u, v in zip(first, second, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(first[0], first[1])  # a new mask each call
    a.reseed(a.seed)
    np.testing.assert_array_equal(nnx.to_numpy(a(x)), first[0])
    assert isinstance(a._generator.key, jax.Array)  # the key that nnx.compile threads through
