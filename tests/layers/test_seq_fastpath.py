"""The NumPy fast path of the transformer layers (nnx/_fastseq.py: LayerNorm in row blocks, the
attention core a few samples at a time, packed q/k/v projections) gives what the portable code
gives: outputs, input gradients and every parameter gradient, with masks, layouts and a fully
masked row; and it ran."""

import contextlib
import copy

import numpy as np
import pytest

import nnx
from nnx import _fastconv, _fastseq


def _grads(m):
    return {name: p.grad for name, p in m.named_parameters()}


def _both(make, run):
    """``run(module)`` on two copies of one module, portable and fast: both results."""
    m = make()
    twin = copy.deepcopy(m)
    with _fastconv.portable_only():
        slow = run(m), _grads(m)
    fast = run(twin), _grads(twin)
    return slow, fast


def _close(a, b, tol):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _close(a[k], b[k], tol)
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _close(x, y, tol)
    else:
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "kw, shape",
    [(dict(), (3, 300, 8)), (dict(bias=False), (7, 8)), (dict(elementwise_affine=False), (5, 8))],
)
def test_layer_norm_fast_equals_portable(dtype, kw, shape):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)

    def make():
        m = nnx.LayerNorm(8, dtype=dtype, **kw)
        if m.weight is not None:  # not the identity affine map
            m.weight.value = rng.standard_normal(8).astype(dtype)
        return m

    before = _fastseq.runs
    slow, fast = _both(make, lambda m: (m(x), m.backward(g)))
    assert _fastseq.runs == before + 1
    _close(slow, fast, 1e-5 if dtype == "float32" else 1e-12)
    assert fast[0][1].dtype == np.dtype(dtype)


def test_layer_norm_fast_forward_portable_backward():
    """After a fast forward, the portable backward (taken when the gradient is not a NumPy
    float array) gets its state from the fast cache (layer_norm_state) and agrees."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 8)).astype("float32")
    g = rng.standard_normal((4, 8)).astype("float32")
    m = nnx.LayerNorm(8)
    m(x)
    fast = m.backward(g)
    m._xhat, m._r = _fastseq.layer_norm_state(m._fast, x.shape)
    m._fast = None
    np.testing.assert_allclose(m.backward(g), fast, rtol=1e-5, atol=1e-5)


MHA_CASES = {
    "self": ("self", dict(), {}),
    "self-causal-padding": ("self", dict(), {"is_causal": True, "padding": True}),
    "cross-kv-same-bool-mask": ("cross", dict(bias=False), {"bool_mask": True}),
    "distinct-seq-first": ("distinct", dict(batch_first=False), {"float_mask": True}),
}


@pytest.mark.parametrize("case", list(MHA_CASES))
def test_attention_fast_equals_portable(case):
    kind, kw, opts = MHA_CASES[case]
    rng = np.random.default_rng(2)
    n, length, src, e = 5, 6, 7 if kind != "self" else 6, 8
    batch_first = kw.get("batch_first", True)
    kw = {"batch_first": True, **kw}

    def arr(length):
        shape = (n, length, e) if batch_first else (length, n, e)
        return rng.standard_normal(shape)

    q = arr(length)
    k = q if kind == "self" else arr(src)
    v = q if kind == "self" else (k if kind == "cross" else arr(src))
    call = {"is_causal": opts.get("is_causal", False)}
    if opts.get("padding"):
        pad = np.zeros((n, src), dtype=bool)
        pad[0, :] = True  # a fully masked row: zero weights, not NaN
        pad[1, -2:] = True
        call["key_padding_mask"] = pad
    if opts.get("bool_mask"):
        call["attn_mask"] = rng.random((length, src)) < 0.3
    if opts.get("float_mask"):
        call["attn_mask"] = rng.standard_normal((n * 2, length, src))
    g = rng.standard_normal((n, length, e) if batch_first else (length, n, e))

    def make():
        return nnx.MultiheadAttention(e, 2, rng=0, dtype="float64", **kw)

    def run(m):
        out, w = m(q, k, v, need_weights=True, **call)
        return out, w, m.backward(g)

    def run_distinct(m):
        return m(q, k, v, **call), m.backward_distinct(g)

    before = _fastseq.attention_runs
    slow, fast = _both(make, run)
    assert _fastseq.attention_runs == before + 1
    _close(slow, fast, 1e-10)
    assert np.isfinite(fast[0][0]).all()
    slow_d, fast_d = _both(make, run_distinct)
    _close(slow_d, fast_d, 1e-10)
    assert len(fast_d[0][1]) == {"self": 1, "cross": 2, "distinct": 3}[kind]
    # the distinct gradients are the sums of backward's three
    dq, dk, dv = fast[0][2]
    if kind == "self":
        sums = (dq + dk + dv,)
    else:
        sums = (dq, dk + dv) if kind == "cross" else (dq, dk, dv)
    _close(sums, fast_d[0][1], 1e-10)


@pytest.mark.parametrize("per_sample_mask", [False, True])
@pytest.mark.parametrize("heads", [2, 4])  # 1 / sqrt(head_dim) 0.5 (folded into q_proj), 0.71
def test_attention_fast_path_in_several_blocks_equals_portable(monkeypatch, per_sample_mask, heads):
    # a score budget of two samples a block: the masks' and weights' slices across blocks
    monkeypatch.setattr(_fastseq, "SCORE_BYTES", 2 * heads * 6 * 7 * 8)
    rng = np.random.default_rng(5)
    q, kv = rng.standard_normal((5, 6, 8)), rng.standard_normal((5, 7, 8))
    g = rng.standard_normal((5, 6, 8))
    pad = np.zeros((5, 7), dtype=bool)
    pad[3, :] = True  # a fully masked row in the second block
    shape = (5 * heads, 6, 7) if per_sample_mask else (6, 7)
    call = {"attn_mask": rng.standard_normal(shape), "key_padding_mask": pad}

    def run(m):
        out, w = m(q, kv, kv, need_weights=True, average_attn_weights=False, **call)
        return out, w, m.backward(g)

    def make():
        return nnx.MultiheadAttention(8, heads, rng=0, dtype="float64", batch_first=True)

    before = _fastseq.attention_runs
    slow, fast = _both(make, run)
    assert _fastseq.attention_runs == before + 1
    _close(slow, fast, 1e-10)
    assert not fast[0][1][3].any()  # the fully masked sample's weights are zero


def test_attention_dropout_in_training_takes_portable_path():
    m = nnx.MultiheadAttention(8, 2, dropout=0.5, batch_first=True, rng=0)
    x = np.ones((2, 3, 8), dtype="float32")
    before = _fastseq.attention_runs
    m(x, x, x)
    assert _fastseq.attention_runs == before
    m.eval()
    m(x, x, x)
    assert _fastseq.attention_runs == before + 1


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("layer", ["encoder", "decoder"])
def test_transformer_layers_fast_equal_portable(layer, norm_first):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5, 8))
    mem = rng.standard_normal((3, 4, 8))
    g = rng.standard_normal((3, 5, 8))
    causal = np.triu(np.ones((5, 5), dtype=bool), k=1)
    cls = nnx.TransformerEncoderLayer if layer == "encoder" else nnx.TransformerDecoderLayer

    def make():
        kw = dict(dropout=0.0, batch_first=True, norm_first=norm_first, rng=0, dtype="float64")
        return cls(8, 2, 16, **kw)

    def run(m):
        y = m(x, src_mask=causal) if layer == "encoder" else m(x, mem, tgt_mask=causal)
        return y, m.backward(g)

    slow, fast = _both(make, run)
    _close(slow, fast, 1e-10)


@pytest.mark.parametrize("portable", [False, True])
@pytest.mark.parametrize(
    "make",
    [
        lambda: nnx.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True, rng=0),
        lambda: nnx.TransformerEncoderLayer(
            8, 2, 16, dropout=0.0, batch_first=True, norm_first=True, rng=0
        ),
        lambda: nnx.LSTM(8, 8, num_layers=2, batch_first=True, rng=0),
        lambda: nnx.RNN(8, 8, batch_first=True, rng=0),
        lambda: nnx.GRU(8, 8, bidirectional=True, batch_first=True, rng=0),
    ],
    ids=["encoder", "encoder-norm-first", "lstm-2-layers", "rnn", "gru-bidirectional"],
)
def test_need_input_grad_false_gives_the_same_parameter_gradients(make, portable):
    """``backward(g, need_input_grad=False)`` (what Sequential asks of its first trainable
    layer) returns None and leaves every parameter gradient as the full backward does."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 8)).astype("float32")
    m = make()
    twin = copy.deepcopy(m)
    with _fastconv.portable_only() if portable else contextlib.nullcontext():
        y = m(x)
        y = y[0] if isinstance(y, tuple) else y
        g = rng.standard_normal(y.shape).astype("float32")
        assert m.backward(g) is not None
        twin(x)
        assert twin.backward(g, need_input_grad=False) is None
    _close(_grads(m), _grads(twin), 1e-6)
    if hasattr(m, "grad_hx"):
        _close(m.grad_hx, twin.grad_hx, 1e-6)


def test_layer_norm_fast_path_keeps_xhat_not_the_callers_input():
    """A caller changing its input in place between forward and backward (an in-place residual
    ``x += ln(x)``) changes neither path's gradients: both keep the normalized input."""
    rng = np.random.default_rng(2)
    x0 = rng.standard_normal((6, 8)).astype("float64")
    g = rng.standard_normal((6, 8))
    m = nnx.LayerNorm(8, dtype="float64")
    m.weight.value = rng.standard_normal(8)
    reference = copy.deepcopy(m)
    reference(x0.copy())
    expected = reference.backward(g), reference.weight.grad
    for portable in (False, True):
        layer, x = copy.deepcopy(m), x0.copy()
        with _fastconv.portable_only() if portable else contextlib.nullcontext():
            x += layer(x)
            got = layer.backward(g), layer.weight.grad
        _close(got, expected, 1e-12)


def test_layer_norm_fast_path_promotes_a_wider_gradient_as_the_portable_path():
    """A float64 gradient into a float32 LayerNorm gives what the portable path gives (float64),
    not a gradient cast down to float32."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 8)).astype("float32")
    g = rng.standard_normal((4, 8))
    slow, fast = _both(lambda: nnx.LayerNorm(8), lambda m: (m(x), m.backward(g)))
    assert fast[0][1].dtype == slow[0][1].dtype == np.dtype("float64")
    _close(slow, fast, 1e-6)


@pytest.mark.parametrize("portable", [False, True])
def test_attention_forward_that_fails_leaves_no_state_for_backward(portable):
    """After a good self-attention forward, a forward refused for its mask leaves no cache: the
    backward says to run forward, instead of mixing the two calls."""
    rng = np.random.default_rng(4)
    m = nnx.MultiheadAttention(8, 2, batch_first=True, rng=0)
    x = rng.standard_normal((2, 3, 8)).astype("float32")
    k = rng.standard_normal((2, 5, 8)).astype("float32")
    with _fastconv.portable_only() if portable else contextlib.nullcontext():
        m(x, x, x)
        with pytest.raises(ValueError, match="attn_mask"):
            m(x, k, k, attn_mask=np.zeros((4, 4), bool))
        with pytest.raises(RuntimeError, match="forward"):
            m.backward(np.ones((2, 3, 8), "float32"))
