"""LayerNorm, RMSNorm, Embedding (+ TiedLinear), MultiheadAttention, TransformerEncoderLayer
and positional embeddings: finite differences on every backend, PyTorch in float64."""

import numpy as np
import pytest

import nnx
from nnx.layers.embedding import one_hot_scatter
from tests.conftest import host_normal

# ------------------------------------------------------------------ helpers


class Fixed(nnx.Module):
    """Calls ``layer`` on fixed (non-differentiated) arguments; ``x`` itself is ignored."""

    def __init__(self, layer, *args):
        self.layer, self.args = layer, args

    def forward(self, x):
        return self.layer(*self.args)

    def backward(self, g):
        self.layer.backward(g)
        return g * 0.0


class QKV(nnx.Module):
    """Attention with query, key and value stacked in one input ``(3, N, L, E)`` so that
    gradcheck checks each of the three input gradients."""

    def __init__(self, mha, reseed=None, **masks):
        self.mha, self.masks, self.reseed = mha, masks, reseed

    def forward(self, x):
        if self.reseed is not None:  # the same dropout mask at every evaluation
            self.mha.dropout.reseed(self.reseed)
        return self.mha(x[0, ...], x[1, ...], x[2, ...], **self.masks)

    def backward(self, g):
        xp = nnx.namespace(g)
        return xp.stack(self.mha.backward(g), axis=0)


class SelfAttention(nnx.Module):
    def __init__(self, layer, **masks):
        self.layer, self.masks = layer, masks

    def forward(self, x):
        return self.layer(x, **self.masks)

    def backward(self, g):
        return self.layer.backward(g)


def _to(backend, a):
    if a is None:
        return None
    if a.dtype == bool or np.issubdtype(a.dtype, np.integer):
        return backend.asarray(a)
    return backend.asarray(a, dtype="float64")


# ------------------------------------------------------------------ LayerNorm / RMSNorm

NORMS = {
    "layernorm": lambda: nnx.LayerNorm(4),
    "layernorm-2d": lambda: nnx.LayerNorm((3, 4), eps=1e-3),
    "layernorm-nobias": lambda: nnx.LayerNorm(4, bias=False),
    "layernorm-noaffine": lambda: nnx.LayerNorm(4, elementwise_affine=False),
    "rmsnorm": lambda: nnx.RMSNorm(4),
    "rmsnorm-eps": lambda: nnx.RMSNorm((3, 4), eps=1e-2),
    "rmsnorm-noaffine": lambda: nnx.RMSNorm(4, elementwise_affine=False),
}


def _randomize(layer, seed=1):
    for i, p in enumerate(layer.parameters()):
        backend = nnx.backend_of(p.value)
        p.value = backend.asarray(host_normal(p.shape, seed=seed + i), dtype=p.dtype)
    return layer


@pytest.mark.parametrize("name", NORMS)
def test_norm_gradients(backend, name):
    layer = _randomize(NORMS[name]())
    x = backend.asarray(host_normal((2, 3, 4), seed=3))
    result = nnx.gradcheck(layer, x)
    assert result.ok, str(result)


@pytest.mark.torch
@pytest.mark.parametrize("name", NORMS)
def test_norm_matches_pytorch(name):
    torch = pytest.importorskip("torch")
    layer = _randomize(NORMS[name]().to(dtype="float64"))
    shape = layer.normalized_shape
    kw = {"elementwise_affine": layer.elementwise_affine}
    if isinstance(layer, nnx.LayerNorm):
        ref = torch.nn.LayerNorm(
            shape, eps=layer.eps, bias=layer.bias is not None, dtype=torch.float64, **kw
        )
    else:
        ref = torch.nn.RMSNorm(shape, eps=layer.eps, dtype=torch.float64, **kw)
    for name_, p in layer.named_parameters():
        getattr(ref, name_).data = torch.tensor(nnx.to_numpy(p.value))
    x = host_normal((2, 3, 4), seed=4)
    g = host_normal((2, 3, 4), seed=5)
    y = layer(x)
    dx = layer.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = ref(tx)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name_, p in layer.named_parameters():
        np.testing.assert_allclose(p.grad, getattr(ref, name_).grad.numpy(), rtol=1e-10, atol=1e-12)


def test_norm_bad_input():
    with pytest.raises(
        ValueError, match=r"LayerNorm: expected input of shape \(\.\.\., 4\), got \(2, 3\)"
    ):
        nnx.LayerNorm(4)(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="input dtype float64 does not match"):
        nnx.RMSNorm(3)(np.ones((2, 3)))
    with pytest.raises(ValueError, match="eps must be a number >= 0 or None, got -1"):
        nnx.LayerNorm(3, eps=-1)
    with pytest.raises(ValueError, match="normalized_shape must be a positive integer, got 0"):
        nnx.RMSNorm((3, 0))


# ------------------------------------------------------------------ Embedding

IDS = np.array([[1, 4, 1], [0, 4, 2]])


# The padding row's gradient is zero by definition (PyTorch's semantics), although the output
# does depend on its value, so finite differences are only compared with a padding row that the
# ids do not use; test_embedding_padding_row_* and the PyTorch comparison cover the other case.
@pytest.mark.parametrize("padding_idx", [None, 3, -2])
@pytest.mark.parametrize("scatter", ["auto", "portable"])
def test_embedding_gradients(backend, padding_idx, scatter):
    emb = nnx.Embedding(5, 3, padding_idx=padding_idx, rng=0, scatter=scatter)
    result = nnx.gradcheck(
        Fixed(emb, backend.asarray(IDS)), backend.asarray(np.zeros(1)), check_input=False
    )
    assert result.ok, str(result)


def test_embedding_padding_row_starts_at_zero_and_gets_no_gradient(backend):
    emb = nnx.Embedding(5, 3, padding_idx=4, rng=0, device=backend)
    assert np.all(nnx.to_numpy(emb.weight.value)[4] == 0)
    y = emb(backend.asarray(IDS))
    emb.backward(backend.asarray(np.ones(tuple(y.shape)), dtype="float32"))
    grad = nnx.to_numpy(emb.weight.grad)
    assert np.all(grad[4] == 0) and grad[1, 0] == 2.0 and grad[3, 0] == 0.0


@pytest.mark.torch
@pytest.mark.parametrize("spec", ["numpy", "torch"])
def test_scatter_fast_paths_equal_the_portable_one_hot_path(spec):
    if spec == "torch":
        pytest.importorskip("torch")
    backend = nnx.get_backend(spec)
    rng = np.random.default_rng(0)
    ids = backend.asarray(rng.integers(0, 50, size=300))
    g = backend.asarray(rng.standard_normal((300, 7)))
    fast = nnx.backend.scatter_add_rows(ids, g, 50)
    assert fast is not None
    # a tiny budget forces many vocabulary and batch blocks in the portable path
    for budget in (1 << 22, 64, 1):
        portable = one_hot_scatter(ids, g, 50, budget=budget)
        np.testing.assert_allclose(
            nnx.to_numpy(fast), nnx.to_numpy(portable), rtol=1e-12, atol=1e-12
        )


def test_scatter_without_fast_path_on_strict():
    backend = nnx.get_backend("strict")
    ids = backend.asarray(np.array([0, 1]))
    assert nnx.backend.scatter_add_rows(ids, backend.asarray(np.ones((2, 2))), 3) is None


@pytest.mark.torch
def test_embedding_matches_pytorch():
    torch = pytest.importorskip("torch")
    emb = nnx.Embedding(6, 4, padding_idx=2, rng=0, dtype="float64")
    ref = torch.nn.Embedding(6, 4, padding_idx=2, dtype=torch.float64)
    ref.weight.data = torch.tensor(nnx.to_numpy(emb.weight.value))
    ids = np.array([[0, 2, 5, 5], [1, 2, 3, 0]])
    g = host_normal((2, 4, 4), seed=1)
    y = emb(ids)
    emb.backward(g)
    ty = ref(torch.tensor(ids))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(emb.weight.grad, ref.weight.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_weight_tying_sums_both_gradients(backend):
    emb = nnx.Embedding(5, 3, rng=0, dtype="float64", device=backend)
    head = nnx.TiedLinear(emb)
    model = nnx.Sequential(emb, nnx.Tanh(), head)
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "2.bias"]  # the shared weight is listed once
    result = nnx.gradcheck(
        Fixed(model, backend.asarray(IDS)), backend.asarray(np.zeros(1)), check_input=False
    )
    assert result.ok, str(result)


@pytest.mark.torch
def test_tied_linear_matches_pytorch():
    torch = pytest.importorskip("torch")
    emb = nnx.Embedding(5, 3, rng=0, dtype="float64")
    head = nnx.TiedLinear(emb)
    w = torch.tensor(nnx.to_numpy(emb.weight.value), requires_grad=True)
    ids = np.array([[1, 2], [4, 1]])
    g = host_normal((2, 2, 5), seed=2)
    y = head(emb(ids))
    emb.backward(head.backward(g))
    ty = torch.nn.functional.embedding(torch.tensor(ids), w) @ w.T
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(emb.weight.grad, w.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_embedding_bad_input():
    emb = nnx.Embedding(5, 3, rng=0)
    with pytest.raises(TypeError, match="ids must be an integer array, got dtype float64"):
        emb(np.ones(3))
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 4\], got ids from 0 to 5"):
        emb(np.array([0, 5]))
    with pytest.raises(ValueError, match=r"padding_idx must be within \[-5, 4\], got 5"):
        nnx.Embedding(5, 3, padding_idx=5)
    with pytest.raises(ValueError, match="scatter must be 'auto' or 'portable'"):
        nnx.Embedding(5, 3, scatter="fast")


# ------------------------------------------------------------------ MultiheadAttention

N, L, S, E, H = 2, 3, 4, 4, 2


def _masks():
    rng = np.random.default_rng(3)
    bool_attn = rng.random((L, S)) < 0.3
    bool_attn[:, 0] = False  # no fully masked row here
    padding = np.array([[False, False, True, True], [False, False, False, True]])
    all_masked = np.zeros((N, S), dtype=bool)
    all_masked[1, :] = True  # sample 1 sees no key at all
    return {
        "none": {},
        "bool-attn": {"attn_mask": bool_attn},
        "float-attn": {"attn_mask": host_normal((L, S), seed=4)},
        "per-head-attn": {"attn_mask": host_normal((N * H, L, S), seed=5)},
        "padding": {"key_padding_mask": padding},
        "float-padding": {"key_padding_mask": host_normal((N, S), seed=6)},
        "causal": {"is_causal": True},
        "causal-padding": {"is_causal": True, "key_padding_mask": padding},
        "all-masked": {"key_padding_mask": all_masked},
    }


MASKS = _masks()


def _attention_ok(result):
    """gradcheck's verdict, except for k_proj.bias: its true gradient is exactly zero (a bias
    added to every key shifts each score row by a constant, which softmax ignores), so its
    relative error compares rounding noise with rounding noise. It is checked to be ~0."""
    errors = {k: v for k, v in result.errors.items() if not k.endswith("k_proj.bias")}
    return all(v <= result.tol for v in errors.values())


# every backend: the mask kinds; NumPy only: their combinations and variants (the strict
# backends make each finite-difference evaluation ~10x slower)
EVERY_BACKEND = ["none", "bool-attn", "padding", "causal", "all-masked"]


@pytest.mark.parametrize("mask", [m for m in MASKS if m not in EVERY_BACKEND])
def test_attention_gradients_more_masks(mask):
    test_attention_gradients(nnx.get_backend("numpy"), mask)


@pytest.mark.parametrize("mask", EVERY_BACKEND)
def test_attention_gradients(backend, mask):
    mha = nnx.MultiheadAttention(E, H, batch_first=True, rng=0)
    _randomize(mha)
    masks = {k: (_to(backend, v) if k != "is_causal" else v) for k, v in MASKS[mask].items()}
    if mask == "none":  # query, key, value of one length, stacked
        wrapped, x = QKV(mha), host_normal((3, N, L, E), seed=7)
    else:  # query of length L, key and value of length S
        wrapped, x = CrossQKV(mha, **masks), host_normal((N, L + 2 * S, E), seed=7)
    result = nnx.gradcheck(wrapped, backend.asarray(x))
    assert _attention_ok(result), str(result)
    assert np.max(np.abs(nnx.to_numpy(_kbias_grad(wrapped, backend, x)))) < 1e-12


def _kbias_grad(wrapped, backend, x):
    wrapped.mha.to(backend, dtype="float64")
    y = wrapped(backend.asarray(x, dtype="float64"))
    wrapped.backward(backend.asarray(host_normal(tuple(y.shape), seed=1)))
    return wrapped.mha.k_proj.bias.grad


class CrossQKV(nnx.Module):
    """query (N, L, E), key and value (N, S, E) concatenated along the length axis."""

    def __init__(self, mha, **masks):
        self.mha, self.masks = mha, masks

    def forward(self, x):
        q, k, v = x[:, :L, :], x[:, L : L + S, :], x[:, L + S :, :]
        return self.mha(q, k, v, **self.masks)

    def backward(self, g):
        xp = nnx.namespace(g)
        return xp.concat(self.mha.backward(g), axis=1)


def test_attention_dropout_gradients(backend):
    mha = nnx.MultiheadAttention(E, H, dropout=0.4, batch_first=True, rng=0)
    result = nnx.gradcheck(QKV(mha, reseed=3), backend.asarray(host_normal((3, N, L, E), seed=7)))
    assert _attention_ok(result), str(result)


def test_attention_batch_second_gradients(backend):
    mha = nnx.MultiheadAttention(E, H, batch_first=False, bias=False, rng=0)
    result = nnx.gradcheck(QKV(mha), backend.asarray(host_normal((3, L, N, E), seed=8)))
    assert result.ok, str(result)


def test_fully_masked_row_gives_no_nan(backend):
    mha = nnx.MultiheadAttention(E, H, batch_first=True, rng=0, dtype="float64", device=backend)
    _randomize(mha)
    x = backend.asarray(host_normal((N, S, E), seed=9))
    mask = backend.asarray(MASKS["all-masked"]["key_padding_mask"])
    out, weights = mha(x, x, x, key_padding_mask=mask, need_weights=True)
    out, weights = nnx.to_numpy(out), nnx.to_numpy(weights)
    assert np.all(np.isfinite(out)) and np.all(weights[1] == 0.0)
    np.testing.assert_allclose(
        out[1], np.broadcast_to(nnx.to_numpy(mha.out_proj.bias.value), (S, E))
    )
    grads = mha.backward(backend.asarray(np.ones((N, S, E))))
    assert all(np.all(np.isfinite(nnx.to_numpy(g))) for g in grads)


def _torch_mha(torch, mha, bias=True, batch_first=True):
    ref = torch.nn.MultiheadAttention(
        mha.embed_dim, mha.num_heads, bias=bias, batch_first=batch_first, dtype=torch.float64
    )
    ref.load_state_dict({k: torch.tensor(v) for k, v in nnx.torch_state_dict(mha).items()})
    return ref


def _torch_mask(torch, spec, length, src):
    kw = {}
    if "attn_mask" in spec:
        kw["attn_mask"] = torch.tensor(spec["attn_mask"])
    if "key_padding_mask" in spec:
        kw["key_padding_mask"] = torch.tensor(spec["key_padding_mask"])
    if spec.get("is_causal"):
        causal = torch.triu(torch.ones(length, src, dtype=torch.bool), diagonal=1)
        if "attn_mask" in kw:
            raise AssertionError("not used")
        kw["attn_mask"] = causal
    return kw


@pytest.mark.torch
@pytest.mark.parametrize("average", [True, False])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mask", [m for m in MASKS if m != "all-masked"])
def test_attention_matches_pytorch(mask, bias, average):
    torch = pytest.importorskip("torch")
    mha = nnx.MultiheadAttention(E, H, bias=bias, batch_first=True, rng=1, dtype="float64")
    _randomize(mha)
    ref = _torch_mha(torch, mha, bias=bias)
    length = L
    q = host_normal((N, length, E), seed=10)
    k = host_normal((N, S, E), seed=11)
    v = host_normal((N, S, E), seed=12)
    g = host_normal((N, length, E), seed=13)
    spec = MASKS[mask]
    out, weights = mha(q, k, v, **spec, need_weights=True, average_attn_weights=average)
    grads = mha.backward(g)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    tout, tweights = ref(
        tq,
        tk,
        tv,
        need_weights=True,
        average_attn_weights=average,
        **_torch_mask(torch, spec, length, S),
    )
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(weights, tweights.detach().numpy(), rtol=1e-10, atol=1e-12)
    for mine, t in zip(grads, (tq, tk, tv), strict=True):
        np.testing.assert_allclose(mine, t.grad.numpy(), rtol=1e-9, atol=1e-12)
    wq, wk, wv = (p.weight.grad.T for p in (mha.q_proj, mha.k_proj, mha.v_proj))
    np.testing.assert_allclose(
        np.concatenate([wq, wk, wv]), ref.in_proj_weight.grad.numpy(), rtol=1e-9, atol=1e-12
    )
    np.testing.assert_allclose(
        mha.out_proj.weight.grad.T, ref.out_proj.weight.grad.numpy(), rtol=1e-9, atol=1e-12
    )
    if bias:
        bq, bk, bv = (p.bias.grad for p in (mha.q_proj, mha.k_proj, mha.v_proj))
        np.testing.assert_allclose(
            np.concatenate([bq, bk, bv]), ref.in_proj_bias.grad.numpy(), rtol=1e-9, atol=1e-12
        )


@pytest.mark.torch
def test_attention_batch_second_matches_pytorch():
    torch = pytest.importorskip("torch")
    mha = nnx.MultiheadAttention(E, H, batch_first=False, rng=1, dtype="float64")
    ref = _torch_mha(torch, mha, batch_first=False)
    x = host_normal((L, N, E), seed=14)
    out = mha(x, x, x)
    tx = torch.tensor(x)
    np.testing.assert_allclose(
        out, ref(tx, tx, tx, need_weights=False)[0].detach().numpy(), rtol=1e-10, atol=1e-12
    )


def test_attention_bad_input():
    mha = nnx.MultiheadAttention(E, H, batch_first=True, rng=0)
    x = np.ones((N, L, E), dtype=np.float32)
    with pytest.raises(ValueError, match=r"embed_dim \(5\) must be divisible by num_heads \(2\)"):
        nnx.MultiheadAttention(5, 2)
    with pytest.raises(
        ValueError, match=r"key must have shape \(N, L, E\) with E = 4, got \(2, 3, 5\)"
    ):
        mha(x, np.ones((N, L, 5), dtype=np.float32), x)
    with pytest.raises(
        ValueError, match=r"attn_mask must have shape \(3, 3\) or \(4, 3, 3\), got \(2, 2\)"
    ):
        mha(x, x, x, attn_mask=np.zeros((2, 2), dtype=bool))
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(2, 3\), got \(3,\)"):
        mha(x, x, x, key_padding_mask=np.zeros(3, dtype=bool))
    with pytest.raises(TypeError, match="attn_mask must be boolean .* got dtype int64"):
        mha(x, x, x, attn_mask=np.zeros((L, L), dtype=np.int64))
    empty = np.ones((N, 0, E), dtype=np.float32)
    with pytest.raises(ValueError, match="query length 0 and key/value length 3"):
        mha(empty, x, x)
    with pytest.raises(ValueError, match="query length 3 and key/value length 0"):
        mha(x, empty, empty)
    with pytest.raises(nnx.BackwardBeforeForwardError):
        nnx.MultiheadAttention(E, H, batch_first=True).backward(x)


# ------------------------------------------------------------------ Transformer encoder layer

ENCODERS = {
    "post-relu": {"norm_first": False, "activation": "relu"},
    "pre-gelu": {"norm_first": True, "activation": "gelu"},
    "post-gelu-nobias": {"norm_first": False, "activation": "gelu", "bias": False},
    "pre-relu-batch-second": {"norm_first": True, "activation": "relu", "batch_first": False},
}


@pytest.mark.parametrize("name", ["post-gelu-nobias", "pre-relu-batch-second"])
def test_encoder_layer_gradients_more(name):
    test_encoder_layer_gradients(nnx.get_backend("numpy"), name)


@pytest.mark.parametrize("name", ["post-relu", "pre-gelu"])
def test_encoder_layer_gradients(backend, name):
    layer = nnx.TransformerEncoderLayer(
        4, 2, dim_feedforward=4, dropout=0.0, rng=0, **{"batch_first": True, **ENCODERS[name]}
    )
    _randomize(layer)
    padding = backend.asarray(np.array([[False, False, True], [False, False, False]]))
    wrapped = SelfAttention(layer, src_key_padding_mask=padding, is_causal=name.startswith("pre"))
    if ENCODERS[name].get("batch_first") is False:
        wrapped = SelfAttention(layer, is_causal=True)
    result = nnx.gradcheck(wrapped, backend.asarray(host_normal((2, 3, 4), seed=15)))
    assert _attention_ok(result), str(result)


def _copy_encoder(torch, layer, ref):
    ref.load_state_dict({k: torch.tensor(v) for k, v in nnx.torch_state_dict(layer).items()})


@pytest.mark.torch
@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_layer_matches_pytorch(name):
    torch = pytest.importorskip("torch")
    opts = ENCODERS[name]
    opts = {"batch_first": True, **opts}
    layer = nnx.TransformerEncoderLayer(
        8, 2, dim_feedforward=12, dropout=0.0, rng=0, dtype="float64", **opts
    )
    _randomize(layer)
    ref = torch.nn.TransformerEncoderLayer(
        8, 2, dim_feedforward=12, dropout=0.0, dtype=torch.float64, **{"batch_first": True, **opts}
    )
    _copy_encoder(torch, layer, ref)
    shape = (2, 5, 8) if opts.get("batch_first", True) else (5, 2, 8)
    x = host_normal(shape, seed=16)
    g = host_normal(shape, seed=17)
    padding = np.array([[False] * 5, [False, False, False, True, True]])
    causal = np.triu(np.ones((5, 5), dtype=bool), k=1)
    y = layer(x, src_mask=causal, src_key_padding_mask=padding)
    dx = layer.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = ref(tx, src_mask=torch.tensor(causal), src_key_padding_mask=torch.tensor(padding))
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(
        layer.linear1.weight.grad.T, ref.linear1.weight.grad.numpy(), rtol=1e-9, atol=1e-11
    )
    np.testing.assert_allclose(
        layer.norm1.weight.grad, ref.norm1.weight.grad.numpy(), rtol=1e-9, atol=1e-11
    )


def test_encoder_layer_bad_activation():
    with pytest.raises(
        ValueError, match="activation must be 'relu', 'gelu' or an nnx Module, got 'swish'"
    ):
        nnx.TransformerEncoderLayer(4, 2, activation="swish")


# ------------------------------------------------------------------ positional embeddings


def test_positional_embedding_gradients(backend):
    layer = nnx.PositionalEmbedding(5, 3, rng=0)
    result = nnx.gradcheck(layer, backend.asarray(host_normal((2, 4, 3), seed=18)))
    assert result.ok, str(result)


def test_sinusoidal_encoding_values_and_gradient(backend):
    layer = nnx.SinusoidalPositionalEncoding(4, max_len=6, device=backend)
    x = backend.asarray(np.zeros((1, 3, 4)), dtype="float32")
    y = nnx.to_numpy(layer(x))[0]
    t = np.arange(3)[:, None]
    expect = np.concatenate([np.sin(t), np.cos(t), np.sin(t / 100.0), np.cos(t / 100.0)], axis=1)[
        :, [0, 1, 2, 3]
    ]
    np.testing.assert_allclose(y, expect, rtol=1e-6, atol=1e-7)
    assert [n for n, _ in layer.named_parameters()] == [] and [
        n for n, _ in layer.named_buffers()
    ] == ["table"]
    result = nnx.gradcheck(layer, backend.asarray(host_normal((2, 3, 4), seed=19)))
    assert result.ok, str(result)
    with pytest.raises(
        ValueError, match=r"expected input of shape \(\.\.\., L, 4\) with L <= 6, got \(1, 7, 4\)"
    ):
        layer(backend.asarray(np.zeros((1, 7, 4)), dtype="float32"))
