"""Shared parameters, modules called twice in one forward pass, and gradient accumulation."""

import numpy as np
import pytest

import nnx
from nnx.optim import SGD
from tests.conftest import host_normal


def _tied_pair():
    """Two Linear layers sharing one weight (weight tying), each with its own bias."""
    a = nnx.Linear(3, 3, rng=0, bias_init="he_uniform")
    b = nnx.Linear(3, 3, rng=1, bias_init="he_uniform")
    b.weight = a.weight
    return a, b


def test_a_module_called_twice_gets_the_sum_of_both_calls_gradients(backend):
    lin = nnx.Linear(3, 3, rng=0, bias_init="he_uniform")
    model = nnx.Sequential(lin, nnx.Tanh(), lin)
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    result = nnx.gradcheck(model, backend.asarray(host_normal((2, 3))))
    assert result.ok, str(result)


def test_reuse_inside_nested_containers(backend):
    lin = nnx.Linear(3, 3, rng=0)
    inner = nnx.Sequential(lin, nnx.Tanh())
    model = nnx.Sequential(inner, lin, nnx.Sigmoid(), inner)
    result = nnx.gradcheck(model, backend.asarray(host_normal((2, 3), seed=1)))
    assert result.ok, str(result)


def test_state_kept_between_calls_survives_the_backward_of_a_reused_module():
    class Counting(nnx.Module):
        calls = 0

        def forward(self, x):
            self.calls = self.calls + 1  # a counter rebound as a plain attribute
            self._x = x
            return x * x

        def backward(self, grad_out):
            return 2.0 * self._x * grad_out

    c = Counting()
    for model in (nnx.Sequential(c, c), nnx.Parallel(c, c, merge="add"), nnx.Residual(c, c)):
        c.calls = 0
        x = np.array([1.5, -2.0])
        model(x)
        assert c.calls == 2
        dx = model.backward(np.ones(2), need_input_grad=True)
        assert c.calls == 2  # as the last forward call left it
        expected = 4 * x**3 if isinstance(model, nnx.Sequential) else 4 * x
        np.testing.assert_allclose(dx, expected)


def test_weight_tying(backend):
    a, b = _tied_pair()
    model = nnx.Sequential(a, nnx.Tanh(), b)
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.bias"]  # the shared weight once
    assert list(model.state_dict()) == names
    assert len(SGD(model.parameters()).params) == 3
    result = nnx.gradcheck(model, backend.asarray(host_normal((2, 3), seed=2)))
    assert result.ok, str(result)


@pytest.mark.torch
def test_tied_and_reused_modules_match_pytorch():
    torch = pytest.importorskip("torch")
    a, b = _tied_pair()
    model = nnx.Sequential(a, nnx.Tanh(), b, nnx.Tanh(), a).to("cpu", dtype="float64")
    x = host_normal((4, 3), seed=3)
    g = host_normal((4, 3), seed=4)
    y = model(x)
    model.zero_grad()
    dx = model.backward(g, need_input_grad=True)

    w = torch.tensor(nnx.to_numpy(a.weight.value), requires_grad=True)
    ba = torch.tensor(nnx.to_numpy(a.bias.value), requires_grad=True)
    bb = torch.tensor(nnx.to_numpy(b.bias.value), requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.tanh(torch.tanh(tx @ w + ba) @ w + bb) @ w + ba
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.weight.grad, w.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.bias.grad, ba.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(b.bias.grad, bb.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_a_reused_module_with_a_penalty_is_refused():
    lin = nnx.Linear(3, 3, rng=0, weight_l2=0.1)
    with pytest.raises(ValueError, match="Linear is called 2 times per forward pass.*penalty"):
        nnx.Sequential(lin, nnx.ReLU(), lin)


# ---------------------------------------------------------------------- accumulation
def _fit(accumulate, batch_size, n, loss, y, epochs=2, momentum=0.9, shuffle=True):
    model = nnx.Sequential(
        nnx.Linear(3, 5, rng=0, weight_l2=0.01, bias_l1=0.01),
        nnx.Tanh(),
        nnx.Linear(5, 2, rng=1),
    ).to("cpu", dtype="float64")
    opt = SGD(model.parameters(), lr=0.1, momentum=momentum)
    x = host_normal((n, 3), seed=5)
    trainer = nnx.Trainer(
        model, loss, opt, device="cpu", metrics=(), progress=False, accumulate=accumulate
    )
    trainer.fit((x, y), epochs=epochs, batch_size=batch_size, shuffle=shuffle)
    return model.state_dict(), trainer


@pytest.mark.parametrize("n", [12, 11])  # 11: the last group is partial and its batch smaller
@pytest.mark.parametrize(
    "make_loss, make_y",
    [
        (lambda: nnx.MSELoss(), lambda n: host_normal((n, 2), seed=6)),
        (lambda: nnx.MSELoss(reduction="sum"), lambda n: host_normal((n, 2), seed=6)),
        (lambda: nnx.CrossEntropyLoss(), lambda n: np.arange(n) % 2),
    ],
    ids=["mse-mean", "mse-sum", "cross-entropy"],
)
def test_accumulating_k_batches_equals_one_step_on_the_k_times_larger_batch(n, make_loss, make_y):
    y = make_y(n)
    # batch 2 with accumulate 3 groups samples exactly as batch 6 does (same shuffled order)
    small, trainer = _fit(3, 2, n, make_loss(), y)
    large, reference = _fit(1, 6, n, make_loss(), y)
    assert trainer.step == reference.step == 2 * 2
    for name in large:
        np.testing.assert_allclose(small[name], large[name], rtol=0, atol=1e-6, err_msg=name)
        assert np.max(np.abs(small[name] - large[name])) < 1e-12


def test_accumulate_is_validated():
    model = nnx.Sequential(nnx.Linear(3, 2, rng=0))
    with pytest.raises(ValueError, match="accumulate"):
        nnx.Trainer(model, nnx.MSELoss(), SGD(model.parameters()), accumulate=0)
