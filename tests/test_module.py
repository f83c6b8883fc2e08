import numpy as np
import pytest

import nnx

from .conftest import host_normal


def _mlp(device="cpu"):
    return nnx.Sequential(
        nnx.Linear(4, 8, rng=0, device=device),
        nnx.ReLU(),
        nnx.Dropout(0.1, rng=0),
        nnx.Linear(8, 3, rng=1, device=device),
    )


def test_named_parameters_and_structure():
    model = _mlp()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "3.weight", "3.bias"]
    assert [p.name for p in model.parameters()] == ["weight", "bias", "weight", "bias"]
    assert len(model) == 4 and isinstance(model[1], nnx.ReLU)
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert len(list(model.modules())) == 5
    assert nnx.Sequential(nnx.Linear(2, 2, bias=False)).state_dict().keys() == {"0.weight"}


def test_repr_is_readable():
    assert repr(_mlp()) == (
        "Sequential(\n"
        "  (0): Linear(in_features=4, out_features=8, bias=True)\n"
        "  (1): ReLU()\n"
        "  (2): Dropout(p=0.1)\n"
        "  (3): Linear(in_features=8, out_features=3, bias=True)\n"
        ")"
    )
    assert (
        repr(nnx.Sequential(nnx.Sequential(nnx.Tanh())))
        == "Sequential(\n  (0): Sequential(\n    (0): Tanh()\n  )\n)"
    )
    assert "shape=(4, 8)" in repr(_mlp()[0].weight)


def test_backward_sets_grads_and_zero_grad_clears_them(backend):
    model = _mlp(backend)
    x = backend.asarray(np.ones((5, 4)), dtype="float32")
    model.backward(model(x))
    assert all(p.grad is not None and tuple(p.grad.shape) == p.shape for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_train_eval_propagate():
    model = nnx.Sequential(nnx.Sequential(nnx.Dropout(0.5)), nnx.ReLU())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_to_moves_and_casts(backend):
    model = _mlp().eval().to(backend, dtype="float64")
    for p in model.parameters():
        assert backend.owns(p.value) and p.value.dtype == backend.xp.float64
    model.to(dtype="float32")
    assert all(p.value.dtype == backend.xp.float32 for p in model.parameters())
    y = model(backend.asarray(np.ones((2, 4)), dtype="float32"))
    np.testing.assert_allclose(
        nnx.to_numpy(y),
        nnx.to_numpy(_mlp().eval()(np.ones((2, 4), np.float32))),
        rtol=1e-5,
        atol=1e-6,
    )


def test_state_dict_round_trip_across_backends(backend):
    source = _mlp()
    state = source.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    state["0.weight"][0, 0] = 123.0  # the dict holds copies, not views of the parameters
    assert nnx.to_numpy(source[0].weight.value)[0, 0] != 123.0
    target = nnx.Sequential(
        nnx.Linear(4, 8, rng=5), nnx.ReLU(), nnx.Dropout(0.1), nnx.Linear(8, 3, rng=6)
    ).to(backend, dtype="float64")
    target.load_state_dict(state)
    for name, p in target.named_parameters():
        assert backend.owns(p.value) and p.value.dtype == backend.xp.float64
        np.testing.assert_allclose(nnx.to_numpy(p.value), state[name], rtol=1e-7)


def test_load_state_dict_errors_change_nothing():
    model = _mlp()
    before = model.state_dict()
    bad = dict(before)
    del bad["3.bias"]
    bad["extra"] = np.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys \['3.bias'\], unexpected keys \['extra'\]"):
        model.load_state_dict(bad)
    wrong = {k: np.zeros_like(v) for k, v in before.items()}
    wrong["3.weight"] = np.zeros((3, 8))
    with pytest.raises(
        ValueError,
        match=r"'3.weight' has shape \(3, 8\), but the module.s entry has shape \(8, 3\)",
    ):
        model.load_state_dict(wrong)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])  # no partial load


def test_sequential_rejects_non_modules():
    with pytest.raises(TypeError, match="argument 1 must be an nnx.Module, got function"):
        nnx.Sequential(nnx.ReLU(), lambda x: x)


def _relu_mlp(linear=nnx.Linear, relu=nnx.ReLU):
    return nnx.Sequential(linear(5, 6, rng=0), relu(), linear(6, 4, rng=1), relu(), linear(4, 3))


def _layer_by_layer(model, x, g):
    """dL/dx and the parameter gradients, each layer's backward called on its own."""
    model.zero_grad()
    model(x)
    for layer in reversed(list(model)):
        g = layer.backward(g)
    return [nnx.to_numpy(a) for a in (g, *(p.grad for p in model.parameters()))]


def test_sequential_masks_linears_input_gradient_in_place_with_the_same_results(backend):
    """Inside Sequential, ReLU computes its dL/dx in the memory of the Linear's fresh dL/dx:
    the same gradients, bit for bit, as the layers called one by one, and the gradient given
    to the model is left as it was."""
    model = _relu_mlp().to(backend)
    x = backend.asarray(host_normal((7, 5), seed=1), dtype="float32")
    g = backend.asarray(host_normal((7, 3), seed=2), dtype="float32")
    kept = nnx.to_numpy(g).copy()
    want = _layer_by_layer(model, x, g)
    model.zero_grad()
    model(x)
    got = [model.backward(g, need_input_grad=True)] + [p.grad for p in model.parameters()]
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(nnx.to_numpy(a), b)
    np.testing.assert_array_equal(nnx.to_numpy(g), kept)
    last = nnx.Sequential(nnx.Linear(5, 3, rng=0), nnx.ReLU()).to(backend)  # g reaches a ReLU
    last(x)
    last.backward(g)
    np.testing.assert_array_equal(nnx.to_numpy(g), kept)


def test_relu_overwrites_only_a_gradient_nothing_else_holds():
    """ReLU called on its own keeps the caller's array; a Linear subclass with a backward of its
    own (which may keep what it returns) makes no promise, so the ReLU below leaves it alone;
    a ReLU subclass with its own backward (without overwrite_grad) still runs."""
    relu = nnx.ReLU()
    relu(np.array([[-1.0, 2.0]], dtype=np.float32))
    g = np.array([[3.0, 4.0]], dtype=np.float32)
    np.testing.assert_array_equal(relu.backward(g), [[0.0, 4.0]])
    np.testing.assert_array_equal(g, [[3.0, 4.0]])
    mine = g.copy()
    masked = relu.backward(mine, overwrite_grad=True)
    assert masked is mine  # NumPy: computed in the array given
    np.testing.assert_array_equal(masked, [[0.0, 4.0]])

    class Keeping(nnx.Linear):
        def backward(self, grad_out, need_input_grad=True):
            self.kept = super().backward(grad_out, need_input_grad)
            if self.kept is not None:
                self.kept_copy = self.kept.copy()
            return self.kept

    class MyReLU(nnx.ReLU):
        def backward(self, grad_out):
            return super().backward(grad_out)

    x = host_normal((7, 5), seed=1).astype(np.float32)
    g = host_normal((7, 3), seed=2).astype(np.float32)
    for linear, relu_type in ((Keeping, nnx.ReLU), (nnx.Linear, MyReLU)):
        model = _relu_mlp(linear, relu_type)
        want = _layer_by_layer(model, x, g)
        model.zero_grad()
        model(x)
        got = [model.backward(g, need_input_grad=True)] + [p.grad for p in model.parameters()]
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
        if linear is Keeping:
            for layer in (model[2], model[4]):
                np.testing.assert_array_equal(layer.kept, layer.kept_copy)


def test_mask_in_place_on_numpy_only():
    from nnx.backend import mask_in_place

    g = host_normal((4, 3)).astype(np.float32)
    keep = host_normal((4, 3), seed=1) > 0
    want = g * keep.astype(np.float32)
    out = mask_in_place(g, keep)
    assert out is g
    np.testing.assert_array_equal(out, want)
    g.flags.writeable = False
    assert mask_in_place(g, keep) is None
    strict = nnx.get_backend("strict")
    assert mask_in_place(strict.asarray(want), strict.asarray(keep)) is None


def test_module_without_forward():
    class Empty(nnx.Module):
        pass

    with pytest.raises(NotImplementedError, match="Empty does not implement forward"):
        Empty()(np.ones(2))


def test_backward_without_input_gradient_gives_the_same_parameter_gradients(backend):
    """A container's backward skips dL/dx by default (need_input_grad=False): the layers before
    the first parametrized one are not run and that layer leaves out its input matmul; every
    parameter gradient stays the same as with need_input_grad=True."""

    class Scale(nnx.Module):  # a custom layer whose backward does not take the flag
        def forward(self, x):
            return 2.0 * x

        def backward(self, grad_out):
            return 2.0 * grad_out

    def build():
        return nnx.Sequential(
            nnx.Flatten(), Scale(), nnx.Linear(6, 5, rng=0), nnx.ReLU(), nnx.Linear(5, 3, rng=1)
        ).to(backend, dtype="float64")

    x = backend.asarray(np.random.default_rng(0).standard_normal((4, 2, 3)))
    full, lean = build(), build()
    g = backend.asarray(np.random.default_rng(1).standard_normal((4, 3)))
    full(x)
    lean(x)
    assert full.backward(g, need_input_grad=True).shape == (4, 2, 3)
    assert lean.backward(g) is None
    for (name, a), (_, b) in zip(full.named_parameters(), lean.named_parameters(), strict=True):
        np.testing.assert_array_equal(nnx.to_numpy(a.grad), nnx.to_numpy(b.grad), err_msg=name)
    first = nnx.Sequential(Scale(), nnx.Sequential(nnx.Linear(6, 2, rng=0))).to(
        backend, dtype="float64"
    )
    first(backend.asarray(np.ones((1, 6))))
    assert first.backward(backend.asarray(np.ones((1, 2)))) is None
    assert first[1][0].weight.grad is not None


def test_backward_adds_into_grad_and_zero_grad_clears():
    layer = nnx.Linear(3, 2, rng=0, dtype="float64")
    x = np.ones((4, 3))
    layer(x)
    layer.backward(np.ones((4, 2)))
    once = np.array(layer.weight.grad, copy=True)
    layer(x)
    layer.backward(np.ones((4, 2)))
    np.testing.assert_allclose(layer.weight.grad, 2 * once)
    layer.zero_grad()
    assert layer.weight.grad is None and layer.bias.grad is None


def test_shared_parameter_is_listed_once_and_gets_the_sum_of_its_gradients():
    a = nnx.Linear(3, 3, rng=0, dtype="float64")
    b = nnx.Linear(3, 3, rng=1, dtype="float64")
    b.weight = a.weight  # weight tying
    model = nnx.Sequential(a, nnx.Tanh(), b)
    names = [name for name, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.bias"]
    assert list(model.state_dict()) == names
    x = host_normal((5, 3))
    model(x)
    model.zero_grad()
    model.backward(np.ones((5, 3)))
    shared = np.array(a.weight.grad, copy=True)
    # the sum of both uses, computed by hand from each layer's own contribution
    h = np.tanh(x @ a.weight.value + a.bias.value)
    from_b = h.T @ np.ones((5, 3))
    g_h = np.ones((5, 3)) @ a.weight.value.T * (1 - h**2)
    from_a = x.T @ g_h
    np.testing.assert_allclose(shared, from_a + from_b, rtol=1e-12)


def test_a_module_reachable_twice_is_listed_once():
    inner = nnx.Linear(2, 2, rng=0)
    model = nnx.Sequential(inner, nnx.ReLU(), inner)
    assert len(list(model.parameters())) == 2
    assert sum(1 for m in model.modules() if m is inner) == 1


class _Counter(nnx.Module):
    """A module with a float buffer and an integer buffer."""

    def __init__(self):
        self.scale = nnx.Parameter(np.ones(2, dtype=np.float32), "scale")
        self.running = nnx.Buffer(np.zeros(2, dtype=np.float32), "running")
        self.count = nnx.Buffer(np.zeros((), dtype=np.int64), "count")


def test_buffers_are_state_but_not_parameters(backend):
    m = _Counter().to(backend)
    assert [n for n, _ in m.named_parameters()] == ["scale"]
    assert [n for n, _ in m.named_buffers()] == ["running", "count"]
    state = m.state_dict()
    assert sorted(state) == ["count", "running", "scale"]
    m.running.value = backend.asarray(np.array([1.5, 2.5], dtype=np.float32))
    m.count.value = backend.asarray(np.array(3, dtype=np.int64))
    restored = _Counter().to(backend).load_state_dict(m.state_dict())
    np.testing.assert_array_equal(nnx.to_numpy(restored.running.value), [1.5, 2.5])
    assert int(nnx.to_numpy(restored.count.value)) == 3
    # to(dtype=...) casts floating buffers, integer buffers keep their dtype
    m.to(backend, dtype="float64")
    assert m.running.value.dtype == backend.xp.float64
    assert m.count.value.dtype == backend.xp.int64
    assert backend.owns(m.running.value) and backend.owns(m.count.value)
