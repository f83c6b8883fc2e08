"""The NumPy fast path of the LSTM, RNN and GRU time loops (nnx/_fastrnn.py) gives what the portable
steps (nnx/layers/recurrent/steps.py) give: outputs, final states, input and initial-state
gradients and every parameter gradient, in both directions, stacked, with given states and
gradients."""

import numpy as np
import pytest

import nnx
from nnx import _fastconv, _fastrnn

# (constructor keywords, input shape, given initial states, given final-state gradients)
CASES = {
    "plain": (dict(), (5, 3, 4), False, False),
    "no-bias-batch-first": (dict(bias=False, batch_first=True), (3, 6, 4), False, True),
    "bidirectional-stacked": (
        dict(num_layers=2, bidirectional=True),
        (4, 2, 4),
        True,
        True,
    ),
    "dropout-train": (dict(num_layers=2, dropout=0.5), (6, 3, 4), False, False),
    "unbatched": (dict(num_layers=2), (7, 4), True, True),
    "one-step": (dict(bidirectional=True), (1, 2, 4), False, True),
    "rnn-tanh": (dict(kind="rnn"), (5, 3, 4), False, False),
    "rnn-relu-bidirectional-stacked": (
        dict(kind="rnn", nonlinearity="relu", num_layers=2, bidirectional=True),
        (4, 2, 4),
        True,
        True,
    ),
    "rnn-unbatched-no-bias": (dict(kind="rnn", bias=False), (6, 4), True, True),
    "gru": (dict(kind="gru"), (5, 3, 4), False, False),
    "gru-bidirectional-stacked": (
        dict(kind="gru", num_layers=2, bidirectional=True, batch_first=True),
        (2, 4, 4),
        True,
        True,
    ),
    "gru-unbatched-no-bias": (dict(kind="gru", bias=False), (6, 4), True, True),
}


def _run(kw, shape, with_hx, with_grads, dtype):
    rng = np.random.default_rng(3)
    kw = dict(kw)
    kind = kw.pop("kind", "lstm")
    lstm = kind == "lstm"
    m = {"lstm": nnx.LSTM, "rnn": nnx.RNN, "gru": nnx.GRU}[kind](4, 5, rng=1, dtype=dtype, **kw)
    n_states = 2 if lstm else 1
    x = rng.standard_normal(shape).astype(dtype)
    hx = None
    lead = m.num_layers * m.num_directions
    state = (lead, 5) if len(shape) == 2 else (lead, shape[0 if kw.get("batch_first") else 1], 5)
    if with_hx:
        hx = tuple(rng.standard_normal(state).astype(dtype) for _ in range(n_states))
        hx = hx if lstm else hx[0]
    if "dropout" in kw:
        m.dropout_layer.reseed(7)
    out, finals = m(x, hx)
    finals = list(finals) if lstm else [finals]
    g = rng.standard_normal(out.shape).astype(dtype)
    grads = [rng.standard_normal(state).astype(dtype) for _ in range(n_states)]
    dx = m.backward(g, *(grads if with_grads else [None] * n_states))
    grads = {name: p.grad for name, p in m.named_parameters()}
    return [out, *finals, dx, *m.grad_hx], grads


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_fast_path_equals_portable(case, dtype):
    kw, shape, with_hx, with_grads = CASES[case]
    before = _fastrnn.runs
    fast, fast_grads = _run(kw, shape, with_hx, with_grads, dtype)
    assert _fastrnn.runs > before  # the fast loop ran
    with _fastconv.portable_only():
        ran = _fastrnn.runs
        slow, slow_grads = _run(kw, shape, with_hx, with_grads, dtype)
        assert _fastrnn.runs == ran  # and the portable one here
    # the same operations in the same order: equal up to the BLAS products' rounding
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-13)
    for a, b in zip(fast, slow, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, **tol)
    assert fast_grads.keys() == slow_grads.keys()
    for name in fast_grads:
        np.testing.assert_allclose(fast_grads[name], slow_grads[name], **tol, err_msg=name)


def test_fast_path_leaves_given_arrays_alone():
    """The in-place loop writes only into its own arrays, never into h_0, c_0 or gradients."""
    rng = np.random.default_rng(0)
    m = nnx.LSTM(3, 4, rng=0)
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    hx = tuple(rng.standard_normal((1, 2, 4)).astype(np.float32) for _ in range(2))
    copies = [a.copy() for a in (x, *hx)]
    out, (h_n, c_n) = m(x, hx)
    g, gh, gc = np.ones_like(out), np.ones_like(h_n), np.ones_like(c_n)
    m.backward(g, gh, gc)
    for a, b in zip((x, *hx), copies, strict=True):
        np.testing.assert_array_equal(a, b)
    for a in (g, gh, gc):
        np.testing.assert_array_equal(a, np.ones_like(a))


@pytest.mark.parametrize("layer", [nnx.LSTM, nnx.RNN, nnx.GRU])
def test_changing_the_output_in_place_leaves_the_backward_alone(layer):
    """The fast loop keeps its own h_t for the backward: the output it returns is a copy."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    g = rng.standard_normal((5, 2, 4)).astype(np.float32)
    grads = []
    for touch in (False, True):
        m = layer(3, 4, rng=0)
        out, finals = m(x)
        if touch:
            out *= 3.0
            for f in finals if isinstance(finals, tuple) else (finals,):
                f *= 3.0
        grads.append([m.backward(g), *(p.grad for p in m.parameters())])
    for a, b in zip(*grads, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("layer", [nnx.LSTM, nnx.GRU, nnx.RNN])
def test_a_second_call_reuses_the_arrays_and_gives_its_own_gradients(layer):
    """The fast loop writes the previous call's cache arrays again: the second call's output
    and gradients are those of a fresh layer on the second input."""
    rng = np.random.default_rng(2)
    x1, x2 = (rng.standard_normal((5, 2, 3)).astype(np.float32) for _ in range(2))
    g = rng.standard_normal((5, 2, 4)).astype(np.float32)
    m = layer(3, 4, num_layers=2, bidirectional=True, rng=0)
    m(x1)
    m.backward(g[..., :4].repeat(2, axis=-1))
    key = {nnx.LSTM: "gates", nnx.GRU: "rz", nnx.RNN: "hp"}[layer]
    first = m._cache[1][1][1].work[key]
    m.zero_grad()
    out, _ = m(x2)
    assert m._cache[1][1][1].work[key] is first
    dx = m.backward(g.repeat(2, axis=-1))
    fresh = layer(3, 4, num_layers=2, bidirectional=True, rng=0)
    out2, _ = fresh(x2)
    np.testing.assert_array_equal(out, out2)
    np.testing.assert_array_equal(dx, fresh.backward(g.repeat(2, axis=-1)))
    for (name, p), q in zip(m.named_parameters(), fresh.parameters(), strict=True):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=name)


class _Encoder(nnx.Module):
    """A recurrent layer as a module whose forward gives its output only (so that a container
    can call one instance twice)."""

    def __init__(self, rnn):
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0]

    def backward(self, g, need_input_grad=True):
        return self.rnn.backward(g, need_input_grad=need_input_grad)


@pytest.mark.parametrize("layer", [nnx.LSTM, nnx.RNN, nnx.GRU])
def test_one_layer_called_twice_in_a_forward_keeps_both_calls_arrays(layer):
    """Shared weights: Sequential(enc, enc) keeps the first call's cache for its backward, so
    the second call must not write the first call's arrays again (they are reused only once a
    call's backward has run). Two training steps, so the reuse after a backward runs too."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5, 4)).astype(np.float32)
    g = rng.standard_normal((3, 5, 4)).astype(np.float32)

    def grads():
        enc = _Encoder(layer(4, 4, batch_first=True, rng=1))
        model = nnx.Sequential(enc, enc)
        result = []
        for _ in range(2):
            model.zero_grad()
            model(x)
            result += [model.backward(g, need_input_grad=True)]
            result += [p.grad.copy() for p in model.parameters()]
        return result

    fast = grads()
    with _fastconv.portable_only():
        portable = grads()
    for a, b in zip(fast, portable, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
