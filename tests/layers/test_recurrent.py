"""LSTM and GRU: finite differences through time on every backend, PyTorch in float64."""

import numpy as np
import pytest

import nnx
from tests.conftest import host_normal


class Flat(nnx.Module):
    """The output and the final states as one flat array, so gradcheck weighs all of them.
    ``wrt`` picks what the checked input is: the sequence ``"x"`` or the initial ``"h0"`` /
    ``"c0"`` (the other arrays are fixed)."""

    def __init__(self, rnn, x, h0, c0=None, wrt="x"):
        self.rnn, self.x, self.h0, self.c0, self.wrt = rnn, x, h0, c0, wrt

    def forward(self, v):
        x = v if self.wrt == "x" else self.x
        h0 = v if self.wrt == "h0" else self.h0
        c0 = v if self.wrt == "c0" else self.c0
        xp = nnx.namespace(v)
        if isinstance(self.rnn, nnx.LSTM):
            out, (h, c) = self.rnn(x, (h0, c0))
            parts = [out, h, c]
        else:
            out, h = self.rnn(x, h0)
            parts = [out, h]
        self.shapes = [tuple(p.shape) for p in parts]
        return xp.concat([xp.reshape(p, (-1,)) for p in parts])

    def backward(self, g):
        xp = nnx.namespace(g)
        pieces, start = [], 0
        for shape in self.shapes:
            size = int(np.prod(shape))
            pieces.append(xp.reshape(g[start : start + size], shape))
            start += size
        dx = self.rnn.backward(*pieces)
        if self.wrt == "x":
            return dx
        return self.rnn.grad_hx[0 if self.wrt == "h0" else 1]


def _check(backend, cls, wrt="x", **opts):
    opts.setdefault("batch_first", True)
    rnn = cls(2, 2, rng=0, **opts)
    d = 2 if opts.get("bidirectional") else 1
    layers = opts.get("num_layers", 1)
    bf = opts.get("batch_first", True)
    x = backend.asarray(host_normal((2, 3, 2) if bf else (3, 2, 2), seed=1))
    h0 = backend.asarray(host_normal((layers * d, 2, 2), seed=2))
    c0 = backend.asarray(host_normal((layers * d, 2, 2), seed=3))
    wrapped = Flat(rnn, x, h0, c0, wrt)
    v = {"x": x, "h0": h0, "c0": c0}[wrt]
    result = nnx.gradcheck(wrapped, v)
    assert result.ok, str(result)


@pytest.mark.parametrize("cls", [nnx.LSTM, nnx.GRU])
def test_gradients_bidirectional(backend, cls):
    _check(backend, cls, bidirectional=True)


@pytest.mark.parametrize("wrt", ["h0", "c0"])
def test_initial_state_gradients(backend, wrt):
    _check(backend, nnx.LSTM, wrt=wrt)


def test_gru_initial_state_gradient(backend):
    _check(backend, nnx.GRU, wrt="h0")


def test_multilayer_bidirectional_initial_state_gradient():
    _check(nnx.get_backend("numpy"), nnx.LSTM, wrt="c0", num_layers=2, bidirectional=True)


OPTIONS = [
    {"num_layers": 2},
    {"num_layers": 2, "bidirectional": True, "batch_first": False},
    {"bias": False},
]


@pytest.mark.parametrize("opts", OPTIONS, ids=["2-layers", "2-bidir-timefirst", "nobias"])
@pytest.mark.parametrize("cls", [nnx.LSTM, nnx.GRU])
def test_gradients_options(cls, opts):
    _check(nnx.get_backend("numpy"), cls, **opts)


def _copy(torch, rnn, ref):
    ref.load_state_dict({k: torch.tensor(v) for k, v in nnx.torch_state_dict(rnn).items()})


CONFIGS = [
    (1, False, True, True),
    (2, True, True, False),
    (3, False, False, True),
    (2, True, False, True),
]


@pytest.mark.torch
@pytest.mark.parametrize("length", [1, 2, 7])
@pytest.mark.parametrize(
    "config", CONFIGS, ids=["1", "2-bidir-timefirst", "3-nobias", "2-bidir-nobias"]
)
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_matches_pytorch(kind, config, length):
    torch = pytest.importorskip("torch")
    layers, bi, bias, bf = config
    opts = {"num_layers": layers, "bidirectional": bi, "bias": bias, "batch_first": bf}
    rnn = getattr(nnx, kind)(3, 5, rng=0, dtype="float64", **opts)
    ref = getattr(torch.nn, kind)(3, 5, dtype=torch.float64, **opts)
    _copy(torch, rnn, ref)
    assert [n for n, _ in rnn.named_parameters()] == [n for n, _ in ref.named_parameters()]
    rng = np.random.default_rng(length)
    x = rng.standard_normal((2, length, 3) if bf else (length, 2, 3))
    d = 2 if bi else 1
    h0, c0 = rng.standard_normal((2, layers * d, 2, 5))
    out, state = rnn(x, (h0, c0) if kind == "LSTM" else h0)
    g = rng.standard_normal(out.shape)
    gh, gc = rng.standard_normal((2, *h0.shape))
    dx = rnn.backward(g, gh, gc) if kind == "LSTM" else rnn.backward(g, gh)
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    tout, tstate = ref(tx, (th, tc) if kind == "LSTM" else th)
    th_n = tstate[0] if kind == "LSTM" else tstate
    loss = (tout * torch.tensor(g)).sum() + (th_n * torch.tensor(gh)).sum()
    if kind == "LSTM":
        loss = loss + (tstate[1] * torch.tensor(gc)).sum()
        np.testing.assert_allclose(state[1], tstate[1].detach().numpy(), rtol=1e-10, atol=1e-12)
    loss.backward()
    close = {"rtol": 1e-9, "atol": 1e-12}
    np.testing.assert_allclose(out, tout.detach().numpy(), **close)
    np.testing.assert_allclose(
        state[0] if kind == "LSTM" else state, th_n.detach().numpy(), **close
    )
    np.testing.assert_allclose(dx, tx.grad.numpy(), **close)
    np.testing.assert_allclose(rnn.grad_hx[0], th.grad.numpy(), **close)
    if kind == "LSTM":
        np.testing.assert_allclose(rnn.grad_hx[1], tc.grad.numpy(), **close)
    for name, p in rnn.named_parameters():
        np.testing.assert_allclose(p.grad.T, getattr(ref, name).grad.numpy(), **close, err_msg=name)


@pytest.mark.torch
def test_zero_initial_state_and_output_gradient_only():
    torch = pytest.importorskip("torch")
    rnn = nnx.LSTM(3, 4, batch_first=True, rng=0, dtype="float64")
    ref = torch.nn.LSTM(3, 4, batch_first=True, dtype=torch.float64)
    _copy(torch, rnn, ref)
    x = host_normal((2, 5, 3))
    out, _ = rnn(x)
    dx = rnn.backward(np.ones(out.shape))
    tx = torch.tensor(x, requires_grad=True)
    ref(tx)[0].sum().backward()
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_float32_and_strict_device(backend):
    rnn = nnx.GRU(2, 3, batch_first=True, rng=0, device=backend)
    out, h = rnn(backend.asarray(host_normal((2, 4, 2)), dtype="float32"))
    assert out.dtype == backend.xp.float32 and tuple(h.shape) == (1, 2, 3)
    dx = rnn.backward(out)
    assert dx.dtype == backend.xp.float32


def test_bad_input():
    lstm = nnx.LSTM(3, 4, batch_first=True, rng=0)
    x = np.ones((2, 5, 3), dtype=np.float32)
    with pytest.raises(
        ValueError,
        match=r"expected input of shape \(N, T, input_size\) with input_size = 3, got \(2, 5, 2\)",
    ):
        lstm(np.ones((2, 5, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"h_0 must have shape \(1, 2, 4\), got \(1, 3, 4\)"):
        lstm(x, (np.zeros((1, 3, 4), dtype=np.float32), np.zeros((1, 2, 4), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"hx must be a tuple \(h_0, c_0\)"):
        lstm(x, (np.zeros((1, 2, 4), dtype=np.float32),))
    with pytest.raises(TypeError, match="input dtype float64 does not match"):
        lstm(np.ones((2, 5, 3)))
    with pytest.raises(ValueError, match="hidden_size must be a positive integer, got 0"):
        nnx.GRU(3, 0)
    with pytest.raises(nnx.BackwardBeforeForwardError):
        nnx.GRU(3, 2, batch_first=True).backward(np.ones((1, 1, 2)))
    out, _ = lstm(x)
    with pytest.raises(ValueError, match=r"gradient has shape \(2, 5, 3\)"):
        lstm.backward(np.ones((2, 5, 3), dtype=np.float32))
