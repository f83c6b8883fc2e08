"""RNN and the cells RNNCell, LSTMCell, GRUCell: PyTorch in float64 on three backends (a spread of
options and PyTorch's own module-test inputs), hand-written time loops against PyTorch autograd,
gradcheck on every backend, dropout between layers, the cells' call-stack contract, errors."""

import itertools

import numpy as np
import pytest

import nnx
from tests.conftest import host_normal
from tests.layers.torch_oracle import ORACLE_BACKENDS, compare

SEQUENCE = (nnx.RNN, nnx.LSTM, nnx.GRU)


class Joined(nnx.Module):
    """A recurrent module as one array in the oracle's terms: positional inputs ``x`` and the
    initial states (none, ``h``, or ``h, c``), one flat output (the output and the final
    states, or the cell's new states), and ``backward`` returning one gradient per input."""

    def __init__(self, rnn):
        self.rnn = rnn

    def forward(self, x, *states):
        xp = nnx.namespace(x)
        hx = None if not states else states[0] if len(states) == 1 else tuple(states)
        result = self.rnn(x, hx)
        if isinstance(self.rnn, SEQUENCE):
            out, final = result
            parts = [out, *(final if isinstance(final, tuple) else (final,))]
        else:
            parts = list(result) if isinstance(result, tuple) else [result]
        self.shapes, self.given = [tuple(p.shape) for p in parts], len(states)
        return xp.concat([xp.reshape(p, (-1,)) for p in parts])

    def backward(self, g):
        xp = nnx.namespace(g)
        pieces, start = [], 0
        for shape in self.shapes:
            size = int(np.prod(shape))
            pieces.append(xp.reshape(g[start : start + size], shape))
            start += size
        if isinstance(self.rnn, SEQUENCE):
            dx = self.rnn.backward(*pieces)
            return (dx, *self.rnn.grad_hx[: self.given]) if self.given else dx
        return self.rnn.backward(*pieces)


def torch_joined(tmodule):
    """The PyTorch twin of :class:`Joined`: the same flat output, the torch module held as
    ``rnn`` so its names (``rnn.weight_ih_l0``) are the ones nnx's mapping gives :class:`Joined`
    (:func:`nnx.torch_state_dict`: the matrices transposed to PyTorch's layout)."""
    import torch

    sequence = isinstance(tmodule, torch.nn.RNNBase)

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = tmodule

        def forward(self, x, *states):
            hx = None if not states else states[0] if len(states) == 1 else tuple(states)
            result = self.rnn(x, hx)
            if sequence:
                out, final = result
                parts = [out, *(final if isinstance(final, tuple) else (final,))]
            else:
                parts = list(result) if isinstance(result, tuple) else [result]
            return torch.cat([p.reshape(-1) for p in parts])

    return Twin()


def _shapes(n_states, x_shape, state_shape):
    return [x_shape, *[state_shape] * n_states] if n_states else x_shape


# ----------------------------------------------------------------------------- RNN vs PyTorch
def _rnn_case(backend, opts, h0=True, train=True, unbatched=False, t_len=3, n=2):
    import torch

    opts = dict(opts)
    layers, d = opts.get("num_layers", 1), 2 if opts.get("bidirectional") else 1
    bf = opts.get("batch_first", False)
    mine = Joined(nnx.RNN(3, 4, rng=0, **opts))
    ref = torch_joined(torch.nn.RNN(3, 4, **opts))
    if unbatched:
        x_shape, h_shape = (t_len, 3), (layers * d, 4)
    else:
        x_shape, h_shape = (n, t_len, 3) if bf else (t_len, n, 3), (layers * d, n, 4)
    compare(mine, ref, _shapes(int(h0), x_shape, h_shape), backend=backend, train=train)


SPREAD = {
    "2-layers-bidir-relu-h0": {"num_layers": 2, "bidirectional": True, "nonlinearity": "relu"},
    "nobias-batch-first": {"bias": False, "batch_first": True},
    "dropout-eval": {"num_layers": 2, "dropout": 0.5},
}


# by default the first case on every backend and the others on one; all of them under slow
RUNS = [(case, backend) for case in SPREAD for backend in ORACLE_BACKENDS]
DEFAULT_RUNS = {
    ("2-layers-bidir-relu-h0", "numpy"),
    ("2-layers-bidir-relu-h0", "strict:device1"),
    ("2-layers-bidir-relu-h0", "jax"),
    ("nobias-batch-first", "strict:device1"),
    ("dropout-eval", "numpy"),
}


def _default_or_slow(runs, default):
    return [r if r in default else pytest.param(*r, marks=pytest.mark.slow) for r in runs]


@pytest.mark.torch
@pytest.mark.parametrize(("case", "backend"), _default_or_slow(RUNS, DEFAULT_RUNS))
def test_rnn_matches_pytorch(backend, case):
    _rnn_case(backend, SPREAD[case], h0=case != "nobias-batch-first", train=case != "dropout-eval")


@pytest.mark.torch
def test_rnn_unbatched_matches_pytorch():
    _rnn_case("numpy", {"num_layers": 2, "bidirectional": True}, unbatched=True)


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("backend", ORACLE_BACKENDS)
def test_rnn_matches_pytorch_sweep(backend):
    for layers, bi, nl, bias, bf, h0, unbatched in itertools.product(
        (1, 2),
        (False, True),
        ("tanh", "relu"),
        (True, False),
        (False, True),
        (False, True),
        (False, True),
    ):
        opts = {"num_layers": layers, "bidirectional": bi, "nonlinearity": nl, "bias": bias}
        opts["batch_first"] = bf
        _rnn_case(backend, opts, h0=h0, unbatched=unbatched, t_len=1 + layers)


# ----------------------------------------------------------------------------- cells vs PyTorch
CELLS = {"RNNCell": 1, "LSTMCell": 2, "GRUCell": 1}


def _cell_case(backend, name, h=True, unbatched=False, **opts):
    import torch

    mine = Joined(getattr(nnx, name)(3, 4, rng=0, **opts))
    ref = torch_joined(getattr(torch.nn, name)(3, 4, **opts))
    x_shape, h_shape = ((3,), (4,)) if unbatched else ((2, 3), (2, 4))
    compare(mine, ref, _shapes(CELLS[name] if h else 0, x_shape, h_shape), backend=backend)


CELL_RUNS = [(name, backend) for name in CELLS for backend in ORACLE_BACKENDS]
CELL_DEFAULT = {("RNNCell", "jax"), ("LSTMCell", "strict:device1"), ("GRUCell", "numpy")}


@pytest.mark.torch
@pytest.mark.parametrize(("name", "backend"), _default_or_slow(CELL_RUNS, CELL_DEFAULT))
def test_cell_matches_pytorch(backend, name):
    _cell_case(backend, name)


@pytest.mark.torch
def test_cell_options_match_pytorch():
    _cell_case("numpy", "RNNCell", nonlinearity="relu", bias=False)
    _cell_case("numpy", "LSTMCell", h=False, unbatched=True)
    _cell_case("numpy", "GRUCell", unbatched=True, bias=False)


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("backend", ORACLE_BACKENDS)
@pytest.mark.parametrize("name", CELLS)
def test_cell_matches_pytorch_sweep(backend, name):
    for h, unbatched, bias in itertools.product((False, True), (False, True), (False, True)):
        _cell_case(backend, name, h=h, unbatched=unbatched, bias=bias)
    if name == "RNNCell":
        _cell_case(backend, name, nonlinearity="relu")


# ------------------------------------------------------- PyTorch's own module-test inputs
def _module_db_samples(name):
    """PyTorch's module-test inputs for ``torch.nn.<name>`` (``common_modules.module_db``; its
    ``common_nn`` has no recurrent configurations): ``(kwargs, host inputs)``, packed sequences
    and LSTM projections (which nnx does not have) left out."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.testing._internal.common_modules import module_db

    info = next(m for m in module_db if m.module_cls is getattr(torch.nn, name))
    samples = info.module_inputs_func(
        info, device="cpu", dtype=torch.float64, requires_grad=False, training=True
    )
    found = []
    for s in samples:
        args, kwargs = s.constructor_input.args, dict(s.constructor_input.kwargs)
        inputs = []
        for a in s.forward_input.args:
            inputs.extend(a if isinstance(a, tuple) else (a,))
        if not all(isinstance(a, torch.Tensor) for a in inputs) or kwargs.get("proj_size"):
            continue
        kwargs.pop("proj_size", None)
        found.append((args, kwargs, [a.numpy() for a in inputs]))
    return found


def _run_module_db(name, backends, step=1):
    import torch

    samples = _module_db_samples(name)
    assert len(samples) >= 2, name
    for args, kwargs, inputs in samples[::step]:
        for backend in backends:
            mine = Joined(getattr(nnx, name)(*args, rng=0, **kwargs))
            ref = torch_joined(getattr(torch.nn, name)(*args, **kwargs))
            try:
                compare(mine, ref, [a.shape for a in inputs], inputs=inputs, backend=backend)
            except AssertionError as e:
                raise AssertionError(f"{name}{args}{kwargs} on {backend}: {e}") from None
    return len(samples)


@pytest.mark.torch
@pytest.mark.slow
def test_pytorch_module_db_sample():
    # RNN's 32 inputs cover nonlinearity x bias x batch_first x bidirectional, with and without
    # h_0, all unbatched and two layers. Importing common_modules costs ~4 s of CPU, so even
    # this sample (every 8th RNN input, every cell input, NumPy) runs under slow; the default
    # run covers the same options with test_rnn_matches_pytorch and test_cell_matches_pytorch
    assert len(_module_db_samples("RNN")) == 32
    _run_module_db("RNN", ("numpy",), step=8)
    for name in ("RNNCell", "LSTMCell", "GRUCell"):
        _run_module_db(name, ("numpy",))


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("name", ["RNN", "RNNCell", "LSTMCell", "GRUCell", "LSTM", "GRU"])
def test_pytorch_module_db_all(name):
    _run_module_db(name, ORACLE_BACKENDS)


# ------------------------------------------------------- time loops written by hand
def _torch_params(tcell):
    return {n: p for n, p in tcell.named_parameters()}


@pytest.mark.torch
@pytest.mark.parametrize("backend", ["numpy", "strict:device1"])
@pytest.mark.parametrize("name", CELLS)
def test_time_loop_matches_pytorch_autograd(backend, name):
    """Four steps unrolled by hand: forward in order, backward in reverse order; gradients of
    every x_t, of h_0 (and c_0) and of every parameter equal PyTorch autograd through the loop."""
    import torch

    be = nnx.get_backend(backend)
    lstm = name == "LSTMCell"
    cell = getattr(nnx, name)(3, 4, rng=0, dtype="float64", device=be)
    tcell = getattr(torch.nn, name)(3, 4, dtype=torch.float64)
    tcell.load_state_dict({k: torch.tensor(v) for k, v in nnx.torch_state_dict(cell).items()})
    steps = 4
    xs, gs, gcs = (
        host_normal((steps, 2, 3), 1),
        host_normal((steps, 2, 4), 2),
        host_normal((steps, 2, 4), 3),
    )
    h0, c0 = host_normal((2, 4), 4), host_normal((2, 4), 5)

    # nnx: the loop, then backward in reverse call order
    h, c = be.asarray(h0), be.asarray(c0)
    for t in range(steps):
        h, c = cell(be.asarray(xs[t]), (h, c)) if lstm else (cell(be.asarray(xs[t]), h), None)
    dxs = [None] * steps
    dh = be.asarray(np.zeros((2, 4)))
    dc = be.asarray(np.zeros((2, 4)))
    for t in reversed(range(steps)):
        if lstm:
            dxs[t], dh, dc = cell.backward(be.asarray(gs[t]) + dh, be.asarray(gcs[t]) + dc)
        else:
            dxs[t], dh = cell.backward(be.asarray(gs[t]) + dh)
    with pytest.raises(nnx.BackwardBeforeForwardError, match=f"{name}.backward: every forward"):
        cell.backward(be.asarray(gs[0]))

    # PyTorch autograd through the same loop: loss = sum_t <h_t, g_t> (+ <c_t, gc_t>)
    txs = [torch.tensor(x, requires_grad=True) for x in xs]
    th, tc = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    h_t, c_t, loss = th, tc, 0.0
    for t in range(steps):
        if lstm:
            h_t, c_t = tcell(txs[t], (h_t, c_t))
            loss = loss + (c_t * torch.tensor(gcs[t])).sum()
        else:
            h_t = tcell(txs[t], h_t)
        loss = loss + (h_t * torch.tensor(gs[t])).sum()
    loss.backward()

    close = {"rtol": 1e-9, "atol": 1e-12}
    for t in range(steps):
        np.testing.assert_allclose(nnx.to_numpy(dxs[t]), txs[t].grad.numpy(), **close)
    np.testing.assert_allclose(nnx.to_numpy(dh), th.grad.numpy(), **close)
    if lstm:
        np.testing.assert_allclose(nnx.to_numpy(dc), tc.grad.numpy(), **close)
    tparams = _torch_params(tcell)
    for n, p in cell.named_parameters():
        np.testing.assert_allclose(
            nnx.to_numpy(p.grad).T, tparams[n].grad.numpy(), **close, err_msg=n
        )


# ------------------------------------------------------- the call stack of a cell
def test_cell_call_stack_contract():
    cell = nnx.GRUCell(2, 3, rng=0, dtype="float64")
    x, h = host_normal((4, 2), 1), host_normal((4, 3), 2)
    with pytest.raises(nnx.BackwardBeforeForwardError, match="GRUCell.backward called before"):
        cell.backward(np.ones((4, 3)))
    h1 = cell(x, h)
    h2 = cell(x, h1)
    cell.zero_grad()  # parameter gradients only: both calls are still on the stack
    dx2, dh1 = cell.backward(np.ones_like(h2))
    dx1, dh0 = cell.backward(np.ones_like(h1) + dh1)
    assert dx1.shape == (4, 2) and dh0.shape == (4, 3)
    # one call differentiated of two, then a new forward: the leftover call is dropped
    cell(x, h)
    cell(x)
    assert cell.backward(np.ones((4, 3))).shape == (4, 2)  # called as cell(x): dx only
    cell(x, h)
    assert len(cell.backward(np.ones((4, 3)))) == 2  # the stack held that call only
    # evaluation mode keeps only the last call (generation loops hold no history)
    cell.eval()
    for _ in range(5):
        cell(x, h)
    cell.backward(np.ones((4, 3)))
    with pytest.raises(nnx.BackwardBeforeForwardError, match="evaluation mode"):
        cell.backward(np.ones((4, 3)))
    # need_input_grad=False: dx is None, dh still computed
    cell.train()
    cell(x, h)
    dx, dh = cell.backward(np.ones((4, 3)), need_input_grad=False)
    assert dx is None and dh.shape == (4, 3)


def test_cell_called_twice_in_a_container():
    """Sequential(cell, Tanh, cell): each call differentiated at its own input, and the stack
    empty after every step (no history kept from one step to the next)."""
    cell = nnx.RNNCell(3, 3, rng=0)
    model = nnx.Sequential(cell, nnx.Tanh(), cell)
    x = host_normal((2, 3), 1)
    assert nnx.gradcheck(model, x).ok
    model.to(dtype="float64")
    for _ in range(3):
        model.zero_grad()
        model.backward(np.ones((2, 3)) + model(x))
        assert cell._calls == []


# ------------------------------------------------------- gradcheck on every backend
GRADCHECK = {
    "rnn-2-bidir-h0": (lambda: nnx.RNN(2, 2, num_layers=2, bidirectional=True, rng=0), 1),
    "rnncell": (lambda: nnx.RNNCell(2, 2, rng=0), 1),
    "lstmcell": (lambda: nnx.LSTMCell(2, 2, rng=0), 2),
    "grucell": (lambda: nnx.GRUCell(2, 2, rng=0), 1),
}
MORE_GRADCHECK = {
    "rnn-relu-batch-first": (lambda: nnx.RNN(2, 3, nonlinearity="relu", batch_first=True), 0),
    "rnn-unbatched-h0": (lambda: nnx.RNN(2, 3, num_layers=2, rng=0), 1),
    "lstmcell-nobias-no-state": (lambda: nnx.LSTMCell(2, 3, bias=False, rng=0), 0),
}


@pytest.mark.parametrize("name", GRADCHECK)
def test_gradcheck(backend, name):
    _gradcheck(backend, *GRADCHECK[name])


@pytest.mark.parametrize("name", MORE_GRADCHECK)
def test_gradcheck_options(name):
    _gradcheck(nnx.get_backend("numpy"), *MORE_GRADCHECK[name], unbatched="unbatched" in name)


def _gradcheck(backend, make, n_states, unbatched=False):
    module = Joined(make())
    cell = not isinstance(module.rnn, SEQUENCE)
    d = 2 if getattr(module.rnn, "bidirectional", False) else 1
    layers = getattr(module.rnn, "num_layers", 1)
    hidden = module.rnn.hidden_size
    x = host_normal((2, 2) if cell else (2, 1, 2), 1, away_from_zero=0.1)
    shape = (2, hidden) if cell else (layers * d, 1, hidden)
    if unbatched:
        x, shape = x[0], (layers * d, hidden)
    states = [host_normal(shape, 2 + i) for i in range(n_states)]
    inputs = tuple(backend.asarray(a) for a in (x, *states))
    result = nnx.gradcheck(module, inputs if n_states else inputs[0])
    assert result.ok, str(result)


class ReseededRNN(nnx.Module):
    """An RNN with dropout in training mode, its masks restarted before each forward."""

    def __init__(self):
        self.rnn = nnx.RNN(2, 3, num_layers=3, dropout=0.4, rng=0)

    def forward(self, x):
        self.rnn.dropout_layer.reseed(5)
        return self.rnn(x)[0]

    def backward(self, g):
        return self.rnn.backward(g)


def test_dropout_between_layers():
    x = host_normal((4, 2, 2), 1)
    assert nnx.gradcheck(ReseededRNN(), x).ok
    rnn = ReseededRNN().rnn.to(dtype="float64")
    rnn.dropout_layer.reseed(1)
    a, _ = rnn(x)
    rnn.dropout_layer.reseed(1)
    b, _ = rnn(x)
    np.testing.assert_array_equal(a, b)  # the same seed, the same masks
    assert not np.allclose(a, rnn(x)[0])  # the next masks differ
    assert not np.allclose(a, rnn.eval()(x)[0])  # no dropout in evaluation mode
    other = nnx.RNN(2, 3, num_layers=3, dropout=0.4, rng=1)
    assert rnn.dropout_layer.seed != other.dropout_layer.seed
    with pytest.warns(UserWarning, match="dropout=0.5 acts between stacked layers only"):
        nnx.RNN(2, 3, dropout=0.5)
    # p = 1 (allowed, as in PyTorch): the second layer sees zeros, whatever the input
    full = nnx.RNN(2, 3, num_layers=2, dropout=1.0, rng=0, dtype="float64")
    np.testing.assert_array_equal(full(x)[0], full(2.0 * x + 1.0)[0])


def test_lstm_gru_take_dropout_and_unbatched_input():
    for cls in (nnx.LSTM, nnx.GRU):
        layer = cls(2, 3, num_layers=2, dropout=0.3, rng=0)
        out, _ = layer(np.ones((4, 2), np.float32))  # one unbatched sequence (T, in)
        assert out.shape == (4, 3)
        assert layer.backward(np.ones((4, 3), np.float32)).shape == (4, 2)
        assert layer.grad_hx[0].shape == (2, 3)


# ------------------------------------------------------- errors
def test_errors_name_the_module():
    cases = [
        (lambda: nnx.RNN(3, 4, nonlinearity="sigmoid"), ValueError, "RNN: nonlinearity must be"),
        (lambda: nnx.RNNCell(3, 4, nonlinearity="gelu"), ValueError, "RNNCell: nonlinearity"),
        (lambda: nnx.RNN(3, 4, num_layers=2, dropout=1.5), ValueError, "RNN: dropout must be"),
        (lambda: nnx.GRUCell(0, 4), ValueError, "GRUCell: input_size must be a positive"),
        (
            lambda: nnx.RNN(3, 4)(np.ones((5, 2, 2), np.float32)),
            ValueError,
            r"RNN: expected input of shape \(T, N, input_size\) with input_size = 3, got",
        ),
        (
            lambda: nnx.RNN(3, 4)(np.ones((5, 2, 3), np.float32), np.ones((1, 3, 4), np.float32)),
            ValueError,
            r"RNN: h_0 must have shape \(1, 2, 4\), got \(1, 3, 4\)",
        ),
        (
            lambda: nnx.RNN(3, 4)(np.ones((5, 3), np.float32), np.ones((1, 2, 4), np.float32)),
            ValueError,
            r"RNN: h_0 must have shape \(1, 4\), got \(1, 2, 4\) \(the input is one unbatched",
        ),
        (
            lambda: nnx.RNNCell(3, 4)(np.ones((2, 5), np.float32)),
            ValueError,
            r"RNNCell: expected input of shape \(N, input_size\) or \(input_size,\) with "
            r"input_size = 3, got \(2, 5\)",
        ),
        (
            lambda: nnx.GRUCell(3, 4)(np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)),
            ValueError,
            r"GRUCell: h must have shape \(2, 4\) for an input of shape \(2, 3\), got \(3, 4\)",
        ),
        (
            lambda: nnx.LSTMCell(3, 4)(np.ones((2, 3), np.float32), np.ones((2, 4), np.float32)),
            ValueError,
            r"LSTMCell: hx must be a tuple \(h, c\)",
        ),
        (
            lambda: nnx.RNNCell(3, 4)(np.ones((2, 3))),
            TypeError,
            "RNNCell: input dtype float64 does not match",
        ),
    ]
    for make, error, message in cases:
        with pytest.raises(error, match=message) as info:
            make()
        assert "\n" not in str(info.value)
    cell = nnx.LSTMCell(3, 4)
    cell(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"LSTMCell.backward: gradient has shape \(2, 5\)"):
        cell.backward(np.ones((2, 5), np.float32))
    assert cell.backward(np.ones((2, 4), np.float32)).shape == (2, 3)  # the call is still there


@pytest.mark.slow
def test_dropout_under_compile_matches_eager():
    """nnx.compile threads the dropout child's JAX key: compiled steps draw the eager masks."""
    pytest.importorskip("jax")
    from nnx.optim import SGD
    from tests.layers.zoo.zoo_recurrent import RecurrentOutput

    def model():
        rnn = nnx.RNN(2, 3, num_layers=2, dropout=0.5, batch_first=True, rng=0, device="jax")
        return nnx.Sequential(
            RecurrentOutput(rnn), nnx.Flatten(), nnx.Linear(6, 1, rng=1, device="jax")
        )

    eager, compiled = model(), model()
    eager_opt, compiled_opt = SGD(eager.parameters(), lr=0.1), SGD(compiled.parameters(), lr=0.1)
    step = nnx.compile(compiled, nnx.MSELoss(), compiled_opt)
    be, loss_fn = nnx.get_backend("jax"), nnx.MSELoss()
    for i in range(2):
        x = be.asarray(host_normal((4, 2, 2), i), dtype="float32")
        y = be.asarray(host_normal((4, 1), 10 + i), dtype="float32")
        eager_opt.zero_grad()
        want = loss_fn(eager(x), y)
        eager.backward(loss_fn.backward())
        eager_opt.step()
        loss, _ = step(x, y)
        np.testing.assert_allclose(float(loss), float(want), rtol=1e-5)
    for (name, a), b in zip(
        eager.state_dict().items(), compiled.state_dict().values(), strict=True
    ):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=name)
