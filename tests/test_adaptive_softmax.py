"""AdaptiveLogSoftmaxWithLoss: PyTorch parity of output, loss, input and parameter gradients,
log_prob and predict on three backends; gradcheck on every backend; float16; the errors.

The oracle's ``compare_loss`` copies parameters by name unchanged and compares one array output;
this module returns a named tuple and its Linear matrices are ``(in, out)``, the transposes of
PyTorch's, so :func:`_compare` below does the same comparison with the transposes (every
parameter name must still be PyTorch's)."""

import numpy as np
import pytest

import nnx
from nnx.core.checks import dtype_name
from tests.conftest import BACKENDS
from tests.layers.torch_oracle import ORACLE_BACKENDS

# Every backend of tests/conftest.py, JAX under the slow marker: eager JAX compiles each small
# operation per shape on first use, and finite differences call the loss ~50 times.
SLOW_JAX_BACKENDS = [
    pytest.param(
        *p.values, id=p.id, marks=[*p.marks, *([pytest.mark.slow] if p.id == "jax" else [])]
    )
    for p in BACKENDS
]


def _compare(backend, in_features, n_classes, cutoffs, target, *, head_bias=False,
             div_value=4.0, seed=0, head_shift=0.0):  # fmt: skip
    """float64: output, loss, d_input, every parameter gradient (grad_loss and grad_output both
    random), log_prob and predict on fresh rows. ``head_shift`` is added to the head bias of
    the cluster entries, to steer predict towards the tails."""
    import torch

    rng = np.random.default_rng(seed)
    be = nnx.get_backend(backend)
    with nnx.backend.float64_scope(be):
        asm = nnx.AdaptiveLogSoftmaxWithLoss(
            in_features, n_classes, cutoffs, div_value=div_value, head_bias=head_bias, rng=seed
        ).to(be, dtype="float64")
        if head_shift:
            b = nnx.to_numpy(asm.head.bias.value).copy()
            b[asm.shortlist_size :] += head_shift
            asm.head.bias.value = be.asarray(b)
        ref = torch.nn.AdaptiveLogSoftmaxWithLoss(
            in_features, n_classes, cutoffs, div_value=div_value, head_bias=head_bias
        ).double()
        ref.load_state_dict({k: torch.tensor(v) for k, v in nnx.torch_state_dict(asm).items()})
        tparams = dict(ref.named_parameters())
        target = np.asarray(target)
        x = rng.standard_normal((*target.shape, in_features))
        xt = torch.tensor(x, requires_grad=True)
        out = asm(be.asarray(x), be.asarray(target))
        tout = ref(xt, torch.tensor(target))
        np.testing.assert_allclose(nnx.to_numpy(out.output), tout.output.detach(), rtol=1e-10)
        np.testing.assert_allclose(nnx.to_numpy(out.loss), tout.loss.detach(), rtol=1e-10)
        g_loss, g_out = rng.standard_normal(), rng.standard_normal(target.shape)
        (g_loss * tout.loss + (tout.output * torch.tensor(g_out)).sum()).backward()
        dx = asm.backward(be.asarray(np.asarray(g_loss)), be.asarray(g_out))
        np.testing.assert_allclose(nnx.to_numpy(dx), xt.grad, rtol=1e-9, atol=1e-12)
        for name, p in asm.named_parameters():
            tgrad = tparams[name].grad
            if tgrad is None:  # a tail no target reached
                assert p.grad is None, name
                continue
            tgrad = tgrad.numpy()
            expected = tgrad.T if tgrad.ndim == 2 else tgrad
            np.testing.assert_allclose(nnx.to_numpy(p.grad), expected, rtol=1e-9, atol=1e-12)
        rows = rng.standard_normal((9, in_features))
        np.testing.assert_allclose(
            nnx.to_numpy(asm.log_prob(be.asarray(rows))),
            ref.log_prob(torch.tensor(rows)).detach(),
            rtol=1e-10,
        )
        predicted = nnx.to_numpy(asm.predict(be.asarray(rows)))
        np.testing.assert_array_equal(predicted, ref.predict(torch.tensor(rows)).numpy())
    return predicted, asm.shortlist_size


@pytest.mark.torch
@pytest.mark.parametrize(
    "backend",
    # JAX compiles each operation per new shape (every cluster's row count is one): slow
    [pytest.param(b, marks=[pytest.mark.slow] if b == "jax" else []) for b in ORACLE_BACKENDS],
)
def test_matches_pytorch(backend):
    _compare(backend, 6, 9, [2, 5], [0, 3, 8, 1, 5], div_value=2.0, head_bias=True)
    _more_cases(backend)


def _more_cases(backend):
    # every cluster reached; head bias; a class at each cutoff's edge
    _compare(backend, 16, 10, [3, 6], [0, 4, 9, 2, 7, 6, 5, 3], head_bias=True)
    # shortlist only: the tails get no gradient (None), as PyTorch's
    _compare(backend, 16, 10, [3, 6], [0, 1, 2])
    # one example (0-d target), three clusters, div_value 2
    _compare(backend, 16, 12, [2, 5, 9], 10, div_value=2.0)


@pytest.mark.torch
@pytest.mark.parametrize("shift", (0.5, 3.0, 50.0))
def test_predict_follows_the_tails_like_pytorch(shift):
    """A head bias on the cluster entries makes the head choose a cluster for some rows (mixed)
    or for all: predict then takes the argmax of the full log-probabilities, as PyTorch."""
    predicted, shortlist = _compare("numpy", 16, 10, [3, 6], [0, 4, 9], head_bias=True,
                                    head_shift=shift)  # fmt: skip
    if shift == 50.0:
        assert (predicted >= shortlist).all()


class _Loss(nnx.Module):
    """The loss (and sum of outputs) of a fixed target batch, as a layer for gradcheck."""

    def __init__(self, target, **kw):
        self.asm = nnx.AdaptiveLogSoftmaxWithLoss(6, 9, [2, 5], div_value=2.0, rng=3, **kw)
        self.target = target

    def forward(self, x):
        out = self.asm(x, self.target)
        return out.loss + 0.5 * nnx.backend.namespace(x).sum(out.output)

    def backward(self, g):
        return self.asm.backward(g, 0.5 * g * self.ones)

    @property
    def ones(self):
        w = self.asm.head.weight.value
        xp = nnx.backend.namespace(w)
        return xp.ones(self.target.shape, dtype=w.dtype, device=nnx.backend.device(w))


@pytest.mark.parametrize("spec", SLOW_JAX_BACKENDS)
def test_gradcheck(spec):
    backend = nnx.get_backend(spec)
    target = backend.asarray(np.array([0, 3, 8, 1, 5]))  # every cluster reached
    x = backend.asarray(np.random.default_rng(0).standard_normal((5, 6)))
    result = nnx.gradcheck(_Loss(target, head_bias=True), x)
    assert result.ok, str(result)


def test_float16_parameters():
    x = np.random.default_rng(1).standard_normal((6, 16))
    target = np.array([0, 4, 9, 2, 7, 6])
    wide = nnx.AdaptiveLogSoftmaxWithLoss(16, 10, [3, 6], rng=0)
    half = nnx.AdaptiveLogSoftmaxWithLoss(16, 10, [3, 6], rng=0).to(dtype="float16")
    ref = wide(x.astype(np.float32), target)
    out = half(x.astype(np.float16), target)
    assert dtype_name(out.loss.dtype) == "float16" and dtype_name(out.output.dtype) == "float16"
    np.testing.assert_allclose(float(out.loss), float(ref.loss), rtol=1e-2)
    dx = half.backward()
    assert dtype_name(dx.dtype) == "float16"
    np.testing.assert_allclose(dx.astype(np.float32), wide.backward(), atol=2e-3)


def test_names_shapes_and_repr():
    asm = nnx.AdaptiveLogSoftmaxWithLoss(16, 20, [4, 10], head_bias=True)
    shapes = {name: p.shape for name, p in asm.named_parameters()}
    assert shapes == {
        "head.weight": (16, 6),
        "head.bias": (6,),
        "tail.0.0.weight": (16, 4),
        "tail.0.1.weight": (4, 6),
        "tail.1.0.weight": (16, 1),
        "tail.1.1.weight": (1, 10),
    }
    assert "cutoffs=[4, 10]" in asm.extra_repr() and "(tail): Sequential" in repr(asm)


@pytest.mark.parametrize(
    "cutoffs, message",
    [
        ([], r"got \[\]"),
        ([5, 3], r"got \[5, 3\]"),
        ([3, 3], r"got \[3, 3\]"),
        ([0, 3], r"got \[0, 3\]"),
        ([3, 10], r"n_classes - 1 = 9, got \[3, 10\]"),
        ([2.5], r"got \[2.5\]"),
    ],
)
def test_bad_cutoffs(cutoffs, message):
    with pytest.raises(
        ValueError, match=r"AdaptiveLogSoftmaxWithLoss: cutoffs must be .*" + message
    ):
        nnx.AdaptiveLogSoftmaxWithLoss(16, 10, cutoffs)


def test_errors_name_the_module_and_the_value():
    asm = nnx.AdaptiveLogSoftmaxWithLoss(8, 10, [3, 6], div_value=2.0, rng=0)
    x = np.zeros((3, 8), dtype=np.float32)
    with pytest.raises(
        ValueError, match=r"target values must be in \[0, 9\], got values in \[0, 10\]"
    ):
        asm(x, np.array([0, 10, 2]))
    with pytest.raises(ValueError, match=r"a target of shape \(2,\) takes input of shape \(2, 8\)"):
        asm(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"target must be 0-d or 1-D, got shape \(3, 1\)"):
        asm(x, np.zeros((3, 1), dtype=np.int64))
    with pytest.raises(TypeError, match=r"AdaptiveLogSoftmaxWithLoss: target must be an integer"):
        asm(x, np.zeros(3))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 8\), got \(8,\)"):
        asm.log_prob(x[0])
    with pytest.raises(ValueError, match=r"cluster 1 would have a hidden size of .* = 0"):
        nnx.AdaptiveLogSoftmaxWithLoss(8, 10, [3, 6], div_value=4.0)
    with pytest.raises(nnx.BackwardBeforeForwardError):
        nnx.AdaptiveLogSoftmaxWithLoss(8, 10, [3, 6], div_value=2.0).backward()


def test_save_and_load_round_trip(tmp_path):
    asm = nnx.AdaptiveLogSoftmaxWithLoss(16, 20, [4, 10], head_bias=True, rng=0)
    path = nnx.save_model(str(tmp_path / "asm.nnx.npz"), asm)
    loaded = nnx.load_model(path)
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    np.testing.assert_array_equal(loaded.log_prob(x), asm.log_prob(x))
    assert loaded.cutoffs == asm.cutoffs and loaded.state_dict().keys() == asm.state_dict().keys()


@pytest.mark.parametrize("div_value", [0.0, -1.0, float("nan"), float("inf")])
def test_div_value_must_be_a_finite_positive_number(div_value):
    with pytest.raises(ValueError, match="AdaptiveLogSoftmaxWithLoss: div_value must be a finite"):
        nnx.AdaptiveLogSoftmaxWithLoss(8, 10, [4], div_value=div_value)
