"""Residual, Parallel, Add, Concat and Graph: gradient checks on every backend, PyTorch
comparisons, the input-gradient convention, errors, and the Trainer with several inputs."""

import numpy as np
import pytest

import nnx
from nnx.optim import SGD
from tests.conftest import host_normal


def _mlp(i, o, seed):
    return nnx.Sequential(nnx.Linear(i, o, rng=seed, bias_init="he_uniform"), nnx.Tanh())


def _check(model, x):
    result = nnx.gradcheck(model, x)
    assert result.ok, str(result)
    return result


# ---------------------------------------------------------------------- Residual
def test_residual_gradients(backend):
    x = backend.asarray(host_normal((2, 3)))
    _check(nnx.Residual(_mlp(3, 3, 0)), x)
    _check(nnx.Residual(_mlp(3, 2, 1), shortcut=nnx.Linear(3, 2, rng=2)), x)


def test_residual_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"block gives shape \(2, 2\) but the shortcut \(2, 3\)"):
        nnx.Residual(_mlp(3, 2, 0))(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="Residual: block must be an nnx.Module"):
        nnx.Residual(lambda x: x)


# ---------------------------------------------------------------------- Parallel
@pytest.mark.parametrize("merge", ["concat", "add", None])
def test_parallel_gradients(backend, merge):
    x = backend.asarray(host_normal((2, 3), seed=1))
    _check(nnx.Parallel(_mlp(3, 2, 0), nnx.Linear(3, 2, rng=1), merge=merge), x)


def test_parallel_one_input_per_branch_and_concat_axis(backend):
    a = backend.asarray(host_normal((2, 3), seed=2))
    b = backend.asarray(host_normal((2, 4), seed=3))
    model = nnx.Parallel(_mlp(3, 2, 0), _mlp(4, 2, 1), merge="concat", axis=0)
    model.to(backend, dtype="float64")
    assert tuple(model(a, b).shape) == (4, 2)
    result = _check(model, (a, b))
    assert {"input.0", "input.1"} <= set(result.errors)


def test_parallel_errors():
    x = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="merge must be 'concat', 'add' or None, got 'mul'"):
        nnx.Parallel(nnx.ReLU(), merge="mul")
    with pytest.raises(ValueError, match="got 3 inputs for 2 branches"):
        nnx.Parallel(nnx.ReLU(), nnx.ReLU())(x, x, x)
    with pytest.raises(ValueError, match=r"branch 0 gives shape \(2, 3\) but branch 1 \(2, 2\)"):
        nnx.Parallel(nnx.ReLU(), nnx.Linear(3, 2, rng=0), merge="add")(x)
    with pytest.raises(ValueError, match="backward needs a tuple of 2 gradients"):
        model = nnx.Parallel(nnx.ReLU(), nnx.ReLU(), merge=None)
        model(x)
        model.backward(x)


def test_add_and_concat(backend):
    a = backend.asarray(host_normal((2, 3), seed=4))
    b = backend.asarray(host_normal((2, 3), seed=5))
    _check(nnx.Add(), (a, b))
    _check(nnx.Concat(axis=-1), (a, b))
    with pytest.raises(ValueError, match=r"Concat\(axis=-1\): input 1 has shape \(3, 3\)"):
        nnx.Concat()(np.ones((2, 3)), np.ones((3, 3)))


# ---------------------------------------------------------------------- Graph
def _two_input_graph():
    a, b = nnx.Input("a"), nnx.Input("b")
    ha = nnx.Linear(3, 2, rng=0)(a, name="enc_a")
    hb = nnx.Tanh()(nnx.Linear(4, 2, rng=1)(b, name="enc_b"))
    h = nnx.Concat()(ha, hb)
    skip = nnx.Add()(h, nnx.Tanh()(nnx.Linear(4, 4, rng=2)(h)))  # h fans out to two nodes
    return nnx.Graph([a, b], nnx.Linear(4, 2, rng=3)(skip, name="head"))


def test_graph_two_inputs_positional_and_by_name(backend):
    model = _two_input_graph()
    a = backend.asarray(host_normal((2, 3), seed=6))
    b = backend.asarray(host_normal((2, 4), seed=7))
    result = _check(model, (a, b))
    assert {"input.0", "input.1", "enc_a.weight", "head.bias"} <= set(result.errors)
    result = _check(model, {"a": a, "b": b})
    assert {"input.a", "input.b"} <= set(result.errors)


def test_graph_named_outputs_a_tuple_output_and_a_shared_module(backend):
    x = nnx.Input("x")
    shared = nnx.Linear(3, 3, rng=0, bias_init="he_uniform")
    parts = nnx.Parallel(_mlp(3, 3, 1), nnx.Sigmoid(), merge=None)(shared(x))
    y = nnx.Add()(shared(parts[0]), parts[1])  # shared is called twice
    model = nnx.Graph(x, {"y": y, "code": parts[0]}).to(backend)
    out = model(backend.asarray(np.ones((2, 3)), dtype="float32"))
    assert set(out) == {"y", "code"}
    _check(model, backend.asarray(host_normal((2, 3), seed=8)))


def test_graph_unused_output_and_unused_tuple_element(backend):
    x = nnx.Input("x")
    parts = nnx.Parallel(_mlp(3, 2, 0), _mlp(3, 2, 1), merge=None)(x)
    model = nnx.Graph(x, [nnx.Linear(2, 1, rng=2)(parts[0]), parts[0]])
    x0 = backend.asarray(host_normal((2, 3), seed=9), dtype="float64")
    model.to(backend, dtype="float64")
    y, code = model(x0)
    model.zero_grad()
    g = backend.asarray(np.ones((2, 1)))
    dx = model.backward((g, None), need_input_grad=True)  # a loss on the first output only
    assert tuple(dx.shape) == (2, 3)
    assert model.parallel_0[1][0].weight.grad is not None  # zero gradient for parts[1]
    assert not np.any(nnx.to_numpy(model.parallel_0[1][0].weight.grad))


def test_graph_plain_form_rebuilds_the_same_model():
    model = _two_input_graph()
    again = nnx.Graph(model.inputs, model.outputs, model.nodes)
    a, b = host_normal((2, 3), seed=1), host_normal((2, 4), seed=2)
    model.to("cpu", dtype="float64")
    np.testing.assert_array_equal(model(a, b), again(a, b))
    assert list(model.state_dict()) == list(again.state_dict())


def test_containers_save_and_load_as_whole_models(tmp_path):
    a, b = host_normal((2, 3), seed=1), host_normal((2, 4), seed=2)
    lin = nnx.Linear(4, 4, rng=5)
    models = [
        (_two_input_graph(), (a, b)),
        (
            nnx.Sequential(
                nnx.Residual(_mlp(3, 3, 0)),
                nnx.Parallel(_mlp(3, 2, 1), nnx.Linear(3, 2, rng=2), merge="add"),
            ),
            (a,),
        ),
        (nnx.Sequential(nnx.Linear(4, 4, rng=3), nnx.Tanh(), lin, nnx.Tanh(), lin), (b,)),
    ]
    for model, inputs in models:
        model.to("cpu", dtype="float64")
        nnx.save_model(tmp_path / "m.nnx", model)
        again = nnx.load_model(tmp_path / "m.nnx")
        np.testing.assert_array_equal(again(*inputs), model(*inputs))
        assert list(again.state_dict()) == list(model.state_dict())


def test_graph_errors():
    x, z = nnx.Input("x"), nnx.Input("z")
    y = nnx.Linear(3, 2, rng=0)(z)
    with pytest.raises(ValueError, match=r"depends on Input\('z'\), which is not among the inputs"):
        nnx.Graph(x, y)
    with pytest.raises(TypeError, match="cannot be unpacked"):
        a, b = nnx.ReLU()(x)
    with pytest.raises(TypeError, match="argument 1 is a ndarray"):
        nnx.Add()(x, np.ones(3))
    with pytest.raises(ValueError, match="refers to 'h', which is not an input or an earlier"):
        nnx.Graph(["x"], "out", [("out", nnx.ReLU(), ["h"]), ("h", nnx.ReLU(), ["x"])])
    with pytest.raises(ValueError, match="'forward' cannot name a node"):
        nnx.Graph(["x"], "forward", [("forward", nnx.ReLU(), ["x"])])
    model = nnx.Graph(x, nnx.ReLU()(x))
    with pytest.raises(TypeError, match=r"expected 1 inputs \['x'\], got 2"):
        model(np.ones(2), np.ones(2))


# ---------------------------------------------------------------------- input gradients
def test_containers_skip_the_input_gradient_unless_asked():
    """The default backward returns None and gives the same parameter gradients."""
    x = host_normal((2, 3), seed=3)
    for make in (
        lambda: nnx.Residual(_mlp(3, 3, 0)),
        lambda: nnx.Parallel(_mlp(3, 2, 0), _mlp(3, 2, 1)),
        _two_input_graph,
    ):
        lean, full = make().to("cpu", dtype="float64"), make().to("cpu", dtype="float64")
        inputs = (x, host_normal((2, 4), seed=4)) if isinstance(lean, nnx.Graph) else (x,)
        g = np.ones_like(lean(*inputs))
        full(*inputs)
        assert lean.backward(g) is None
        assert full.backward(g, need_input_grad=True) is not None
        for (name, p), (_, q) in zip(lean.named_parameters(), full.named_parameters(), strict=True):
            np.testing.assert_allclose(p.grad, q.grad, rtol=1e-12, err_msg=name)


# ---------------------------------------------------------------------- PyTorch
def _torch_linear(torch, layer):
    w = torch.tensor(nnx.to_numpy(layer.weight.value), requires_grad=True)
    b = torch.tensor(nnx.to_numpy(layer.bias.value), requires_grad=True)
    return w, b


def _compare(torch, model, y, dx, x_t, tensors, g):
    np.testing.assert_allclose(y, tensors["out"].detach().numpy(), rtol=1e-12, atol=1e-12)
    tensors["out"].backward(torch.tensor(g))
    np.testing.assert_allclose(dx, x_t.grad.numpy(), rtol=1e-9, atol=1e-12)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, tensors[name].grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.torch
def test_residual_mlp_matches_pytorch():
    torch = pytest.importorskip("torch")
    model = nnx.Sequential(
        nnx.Linear(4, 5, rng=0, bias_init="he_uniform"),
        nnx.Residual(nnx.Sequential(nnx.Linear(5, 5, rng=1), nnx.ReLU(), nnx.Linear(5, 5, rng=2))),
        nnx.Tanh(),
        nnx.Residual(nnx.Linear(5, 3, rng=3), shortcut=nnx.Linear(5, 3, rng=4)),
    ).to("cpu", dtype="float64")
    x, g = host_normal((6, 4), seed=1, away_from_zero=0.1), host_normal((6, 3), seed=2)
    y = model(x)
    dx = model.backward(g, need_input_grad=True)
    t = {}
    for name, layer in [("0", model[0]), ("1.block.0", model[1].block[0]),
                        ("1.block.2", model[1].block[2]), ("3.block", model[3].block),
                        ("3.shortcut", model[3].shortcut)]:  # fmt: skip
        t[f"{name}.weight"], t[f"{name}.bias"] = _torch_linear(torch, layer)
    x_t = torch.tensor(x, requires_grad=True)

    def lin(h, name):
        return h @ t[f"{name}.weight"] + t[f"{name}.bias"]

    h = lin(x_t, "0")
    h = h + lin(torch.relu(lin(h, "1.block.0")), "1.block.2")
    h = torch.tanh(h)
    t["out"] = lin(h, "3.block") + lin(h, "3.shortcut")
    _compare(torch, model, y, dx, x_t, t, g)


@pytest.mark.torch
def test_two_branch_concat_model_matches_pytorch():
    torch = pytest.importorskip("torch")
    model = nnx.Sequential(
        nnx.Parallel(
            nnx.Sequential(nnx.Linear(4, 3, rng=0, bias_init="he_uniform"), nnx.Tanh()),
            nnx.Sequential(nnx.Linear(4, 2, rng=1, bias_init="he_uniform"), nnx.Sigmoid()),
            merge="concat",
        ),
        nnx.Linear(5, 2, rng=2, bias_init="he_uniform"),
    ).to("cpu", dtype="float64")
    x, g = host_normal((6, 4), seed=3), host_normal((6, 2), seed=4)
    y = model(x)
    dx = model.backward(g, need_input_grad=True)
    t = {}
    for name, layer in [("0.0.0", model[0][0][0]), ("0.1.0", model[0][1][0]), ("1", model[1])]:
        t[f"{name}.weight"], t[f"{name}.bias"] = _torch_linear(torch, layer)
    x_t = torch.tensor(x, requires_grad=True)
    a = torch.tanh(x_t @ t["0.0.0.weight"] + t["0.0.0.bias"])
    b = torch.sigmoid(x_t @ t["0.1.0.weight"] + t["0.1.0.bias"])
    t["out"] = torch.cat([a, b], dim=1) @ t["1.weight"] + t["1.bias"]
    _compare(torch, model, y, dx, x_t, t, g)


# ---------------------------------------------------------------------- Trainer and data
def _two_input_data(n=24):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, 3)).astype(np.float32)
    b = rng.standard_normal((n, 4)).astype(np.float32)
    y = (a[:, 0] + b[:, 1] > 0).astype(np.int64)
    return a, b, y


def test_trainer_fits_a_two_input_graph_with_tuple_and_dict_inputs(tmp_path):
    a, b, y = _two_input_data()
    for data in [((a, b), y), ({"a": a, "b": b}, y)]:
        model = _two_input_graph()
        trainer = nnx.Trainer(
            model, nnx.CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), device="cpu",
            progress=False,
        )  # fmt: skip
        history = trainer.fit(data, val=data, epochs=3, batch_size=8)
        assert history.last["train_loss"] < history.records[0]["train_loss"]
        assert set(trainer.evaluate(data)) == {"loss", "accuracy"}
        assert tuple(trainer.predict(data[0], batch_size=10).shape) == (24, 2)
        trainer.save_checkpoint(tmp_path / "ckpt.npz")
        other = _two_input_graph()
        again = nnx.Trainer(other, nnx.CrossEntropyLoss(), SGD(other.parameters()), device="cpu")
        again.load_checkpoint(tmp_path / "ckpt.npz")
        np.testing.assert_array_equal(
            nnx.to_numpy(again.predict(data[0])), nnx.to_numpy(trainer.predict(data[0]))
        )


def test_trainer_with_a_multi_output_model_and_tuple_targets():
    class TwoLosses(nnx.Loss):
        """Cross-entropy on the first output plus MSE on the second."""

        def __init__(self):
            super().__init__()
            self.ce, self.mse = nnx.CrossEntropyLoss(), nnx.MSELoss()

        def forward(self, pred, target):
            return self.ce(pred[0], target[0]) + self.mse(pred[1], target[1])

        def backward(self, grad_out=None):
            return self.ce.backward(grad_out), self.mse.backward(grad_out)

    a, b, y = _two_input_data()
    x = nnx.Input("x")
    h = nnx.Tanh()(nnx.Linear(3, 4, rng=0)(x))
    model = nnx.Graph(x, [nnx.Linear(4, 2, rng=1)(h), nnx.Linear(4, 4, rng=2)(h)])
    trainer = nnx.Trainer(
        model, TwoLosses(), SGD(model.parameters(), lr=0.1), device="cpu", metrics=(),
        progress=False, accumulate=2,
    )  # fmt: skip
    history = trainer.fit((a, (y, b)), epochs=3, batch_size=8)
    assert history.last["train_loss"] < history.records[0]["train_loss"]
    logits, recon = trainer.predict(a)
    assert tuple(logits.shape) == (24, 2) and tuple(recon.shape) == (24, 4)


def test_data_pipeline_with_tuples_and_dicts(backend):
    a, b, y = _two_input_data(10)
    data = nnx.data.ArrayDataset({"a": a, "b": b}, (y, b)).to(backend, dtype="float64")
    assert len(data) == 10 and backend.xp.isdtype(data.y[0].dtype, "integral")
    batches = list(nnx.data.DataLoader(data, batch_size=4, shuffle=True, seed=1))
    assert [int(xb["a"].shape[0]) for xb, _ in batches] == [4, 4, 2]
    order = nnx.data.DataLoader(data, 4, seed=1).permutation(0)[:4]
    xb, (yb, bb) = batches[0]
    np.testing.assert_array_equal(nnx.to_numpy(xb["b"]), b[order])
    np.testing.assert_array_equal(nnx.to_numpy(bb), b[order])
    np.testing.assert_array_equal(nnx.to_numpy(yb), y[order])
    with pytest.raises(ValueError, match="10 samples of features but features 'b' of shape"):
        nnx.data.ArrayDataset({"a": a, "b": b[:5]})
    with pytest.raises(ValueError, match=r"targets '1' of shape \(5, 4\)"):
        nnx.data.ArrayDataset((a, b), (y, b[:5]))
