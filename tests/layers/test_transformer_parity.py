"""TransformerDecoderLayer, TransformerEncoder, TransformerDecoder and Transformer (and the
encoder layer beside them) against PyTorch in float64 on NumPy, array-api-strict on device1 and
JAX: every mask kind, pre- and post-norm, GELU, both layouts, unbatched inputs, dropout off in
training and on in evaluation mode, and PyTorch's own module-test configurations; finite
differences on every backend for the decoder layer; the errors."""

import warnings

import numpy as np
import pytest

import nnx
from tests.conftest import host_normal
from tests.layers.torch_oracle import ORACLE_BACKENDS, check_torch_configs, compare

E, H, FF = 4, 2, 3  # d_model, heads, feed-forward width
N, T, S = 2, 3, 4  # batch, target length, source length

# the default run: NumPy; strict:device1 and JAX (whose first calls compile every operation)
# under the slow marker, except for the decoder layer, which runs on all three by default
NUMPY_FIRST = [
    pytest.param(b, marks=[] if b == "numpy" else [pytest.mark.slow]) for b in ORACLE_BACKENDS
]


def _randomize(module, seed=1, scale=0.5):
    """Every parameter drawn anew (LayerNorm weights and biases included), so no parameter
    sits at a special value such as 1 or 0."""
    for i, p in enumerate(module.parameters()):
        value = scale * host_normal(p.shape, seed=seed + i)
        p.value = nnx.backend_of(p.value).asarray(value, dtype=p.dtype)
    return module


def _causal(length, src=None):
    return np.triu(np.ones((length, src or length), dtype=bool), k=1)


def _masks():
    """Mask arguments of the decoder layer by kind (boolean and float attention masks, per-head
    masks, key padding masks of both dtypes, the causal flags)."""
    rng = np.random.default_rng(3)
    mem_bool = rng.random((T, S)) < 0.3
    mem_bool[:, 0] = False  # no fully masked row: PyTorch gives NaN there
    t_pad = np.array([[False, False, True], [False, False, False]])
    m_pad = np.array([[False, False, True, True], [False, False, False, True]])
    return {
        "none": {},
        "bool": {"tgt_mask": _causal(T), "memory_mask": mem_bool},
        "float": {"tgt_mask": host_normal((T, T), seed=4), "memory_mask": host_normal((T, S), 5)},
        "per-head": {
            "tgt_mask": host_normal((N * H, T, T), seed=6),
            "memory_mask": host_normal((N * H, T, S), seed=7),
        },
        "padding": {"tgt_key_padding_mask": t_pad, "memory_key_padding_mask": m_pad},
        "float-padding": {
            "tgt_key_padding_mask": host_normal((N, T), seed=8),
            "memory_key_padding_mask": host_normal((N, S), seed=9),
        },
        "causal": {"tgt_mask": _causal(T), "tgt_is_causal": True},
        "all": {
            "tgt_mask": _causal(T),
            "memory_mask": mem_bool,
            "tgt_key_padding_mask": t_pad,
            "memory_key_padding_mask": m_pad,
        },
    }


MASKS = _masks()
OPTIONS = {
    "post-relu": {},
    "pre-gelu": {"norm_first": True, "activation": "gelu"},
    "post-gelu-nobias": {"activation": "gelu", "bias": False},
    "pre-relu-batch-second": {"norm_first": True, "batch_first": False},
}


def _layouts(opts, *shapes):
    """Shapes ``(N, L, E)`` as the module expects them (``(L, N, E)`` when not batch_first)."""
    if opts.get("batch_first", True):
        return list(shapes)
    return [(s[1], s[0], s[2]) for s in shapes]


def _decoder_pair(torch, opts, dropout=0.0):
    opts = {"batch_first": True, **opts}
    mine = _randomize(nnx.TransformerDecoderLayer(E, H, FF, dropout, rng=0, **opts))
    theirs = torch.nn.TransformerDecoderLayer(E, H, FF, dropout, **{"batch_first": True, **opts})
    return mine, theirs


# ------------------------------------------------------------------ decoder layer, PyTorch


@pytest.mark.torch
@pytest.mark.parametrize("backend", ORACLE_BACKENDS)
def test_decoder_layer_matches_torch(backend):
    _decoder_matches("post-relu", "all", backend)


@pytest.mark.torch
@pytest.mark.parametrize("name, mask", [("pre-gelu", "float"), ("pre-relu-batch-second", "bool")])
def test_decoder_layer_options_match_torch(name, mask):
    _decoder_matches(name, mask, "numpy")


def _decoder_matches(name, mask, backend):
    torch = pytest.importorskip("torch")
    opts = OPTIONS[name]
    mine, theirs = _decoder_pair(torch, opts)
    shapes = _layouts(opts, (N, T, E), (N, S, E))
    compare(mine, theirs, shapes, backend=backend, kwargs=MASKS[mask])


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("backend", ORACLE_BACKENDS)
@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("name", OPTIONS)
def test_decoder_layer_matches_torch_sweep(name, mask, backend):
    _decoder_matches(name, mask, backend)


@pytest.mark.torch
@pytest.mark.parametrize("mask", ["per-head", "float-padding", "causal"])
def test_decoder_layer_mask_kinds(mask):
    _decoder_matches("post-relu", mask, "numpy")


@pytest.mark.torch
def test_decoder_layer_dropout_in_eval_mode_and_unbatched():
    torch = pytest.importorskip("torch")
    mine, theirs = _decoder_pair(torch, {"norm_first": True}, dropout=0.3)
    compare(mine, theirs, [(N, T, E), (N, S, E)], train=False)
    # unbatched: (T, E) and (S, E), key padding masks (T,) and (S,)
    mine, theirs = _decoder_pair(torch, {})
    kwargs = {
        "tgt_mask": _causal(T),
        "tgt_key_padding_mask": np.array([False, False, True]),
        "memory_key_padding_mask": np.array([False, True, False, True]),
    }
    compare(mine, theirs, [(T, E), (S, E)], kwargs=kwargs)


@pytest.mark.torch
def test_memory_is_causal_matches_torch_with_its_mask():
    """PyTorch needs the mask when ``memory_is_causal`` is given (a hint); nnx adds the same
    causal mask, so both together give PyTorch's result."""
    torch = pytest.importorskip("torch")
    mine, theirs = _decoder_pair(torch, {})
    kwargs = {"memory_mask": _causal(T, S), "memory_is_causal": True}
    compare(mine, theirs, [(N, T, E), (N, S, E)], kwargs=kwargs)


# ------------------------------------------------------------------ stacks and Transformer


def _encoder_pair(torch, opts, layers=2, norm=True):
    opts = {"batch_first": True, **opts}
    layer = nnx.TransformerEncoderLayer(E, H, FF, 0.0, rng=0, **opts)
    mine = nnx.TransformerEncoder(layer, layers, nnx.LayerNorm(E) if norm else None)
    _randomize(mine)
    tlayer = torch.nn.TransformerEncoderLayer(E, H, FF, 0.0, **{"batch_first": True, **opts})
    theirs = torch.nn.TransformerEncoder(
        tlayer, layers, torch.nn.LayerNorm(E) if norm else None, enable_nested_tensor=False
    )
    return mine, theirs


@pytest.mark.torch
@pytest.mark.parametrize("backend", NUMPY_FIRST)
def test_encoder_stack_matches_torch(backend):
    torch = pytest.importorskip("torch")
    mine, theirs = _encoder_pair(torch, {"norm_first": True, "activation": "gelu"})
    kwargs = {"mask": _causal(S), "src_key_padding_mask": MASKS["all"]["memory_key_padding_mask"]}
    compare(mine, theirs, (N, S, E), backend=backend, kwargs=kwargs)


@pytest.mark.torch
def test_encoder_stack_variants_match_torch():
    torch = pytest.importorskip("torch")
    mine, theirs = _encoder_pair(torch, {"batch_first": False}, layers=3, norm=False)
    kwargs = {"mask": host_normal((S, S), seed=11)}
    compare(mine, theirs, (S, N, E), kwargs=kwargs)
    mine, theirs = _encoder_pair(torch, {"norm_first": True})  # unbatched, padding (S,)
    kwargs = {"src_key_padding_mask": np.array([False, False, True, False])}
    compare(mine, theirs, (S, E), kwargs=kwargs)
    mine, theirs = _encoder_pair(torch, {})  # float padding mask, causal flag with its mask
    kwargs = {
        "mask": _causal(S),
        "is_causal": True,
        "src_key_padding_mask": host_normal((N, S), seed=12),
    }
    # (PyTorch warns about the mismatched key_padding_mask and attn_mask dtypes; the oracle
    # ignores PyTorch's own warnings)
    compare(mine, theirs, (N, S, E), kwargs=kwargs)


def _decoder_stack_pair(torch, opts, layers=2):
    opts = {"batch_first": True, **opts}
    layer = nnx.TransformerDecoderLayer(E, H, FF, 0.0, rng=0, **opts)
    mine = _randomize(nnx.TransformerDecoder(layer, layers, nnx.LayerNorm(E)))
    tlayer = torch.nn.TransformerDecoderLayer(E, H, FF, 0.0, **{"batch_first": True, **opts})
    theirs = torch.nn.TransformerDecoder(tlayer, layers, torch.nn.LayerNorm(E))
    return mine, theirs


@pytest.mark.torch
@pytest.mark.parametrize("backend", NUMPY_FIRST)
def test_decoder_stack_matches_torch(backend):
    """The memory gradient is the sum over the layers."""
    torch = pytest.importorskip("torch")
    mine, theirs = _decoder_stack_pair(torch, {"norm_first": True})
    compare(mine, theirs, [(N, T, E), (N, S, E)], backend=backend, kwargs=MASKS["all"])


def _transformer_pair(torch, opts, dropout=0.0):
    opts = {"batch_first": True, **opts}
    kw = {"num_encoder_layers": 2, "num_decoder_layers": 2, "dim_feedforward": FF, **opts}
    mine = _randomize(nnx.Transformer(E, H, dropout=dropout, rng=0, **kw))
    with warnings.catch_warnings():  # PyTorch's notes on its inference fast path
        warnings.simplefilter("ignore", UserWarning)
        theirs = torch.nn.Transformer(E, H, dropout=dropout, **{"batch_first": True, **kw})
    return mine, theirs


TRANSFORMER_MASKS = {
    "all": {
        "src_mask": host_normal((S, S), seed=13),
        "tgt_mask": host_normal((T, T), seed=14),
        "memory_mask": host_normal((T, S), seed=15),
        "src_key_padding_mask": host_normal((N, S), seed=16),
        "tgt_key_padding_mask": host_normal((N, T), seed=17),
        "memory_key_padding_mask": host_normal((N, S), seed=18),
    },
    "bool": {
        "tgt_mask": _causal(T),
        "src_key_padding_mask": MASKS["all"]["memory_key_padding_mask"],
        "memory_key_padding_mask": MASKS["all"]["memory_key_padding_mask"],
        "tgt_key_padding_mask": MASKS["all"]["tgt_key_padding_mask"],
        "tgt_is_causal": True,
    },
}


@pytest.mark.torch
@pytest.mark.parametrize("backend", NUMPY_FIRST)
def test_transformer_matches_torch(backend):
    torch = pytest.importorskip("torch")
    mine, theirs = _transformer_pair(torch, {"activation": "gelu"})
    compare(mine, theirs, [(N, S, E), (N, T, E)], backend=backend, kwargs=TRANSFORMER_MASKS["all"])


@pytest.mark.torch
def test_transformer_variants_match_torch():
    torch = pytest.importorskip("torch")
    mine, theirs = _transformer_pair(torch, {"norm_first": True})
    compare(mine, theirs, [(N, S, E), (N, T, E)], kwargs=TRANSFORMER_MASKS["bool"])
    mine, theirs = _transformer_pair(torch, {"batch_first": False, "bias": False}, dropout=0.2)
    compare(mine, theirs, [(S, N, E), (T, N, E)], train=False)


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("backend", ORACLE_BACKENDS)
@pytest.mark.parametrize("masks", TRANSFORMER_MASKS)
@pytest.mark.parametrize("name", OPTIONS)
def test_transformer_matches_torch_sweep(name, masks, backend):
    torch = pytest.importorskip("torch")
    opts = OPTIONS[name]
    mine, theirs = _transformer_pair(torch, opts)
    shapes = _layouts(opts, (N, S, E), (N, T, E))
    compare(mine, theirs, shapes, backend=backend, kwargs=TRANSFORMER_MASKS[masks])


@pytest.mark.torch
def test_square_subsequent_mask_matches_torch():
    torch = pytest.importorskip("torch")
    mine = nnx.Transformer.generate_square_subsequent_mask(4)
    np.testing.assert_array_equal(
        nnx.to_numpy(mine), torch.nn.Transformer.generate_square_subsequent_mask(4).numpy()
    )
    strict = nnx.Transformer.generate_square_subsequent_mask(3, device="strict:device1")
    assert nnx.backend_of(strict) == nnx.get_backend("strict:device1")


# ------------------------------------------------------------------ PyTorch's configurations


def _from_config(cls_name):
    """Build the nnx twin of a common_nn configuration: PyTorch's default layout
    (``batch_first=False``) and its activation functions by name."""

    def make(args, kwargs):
        import torch.nn.functional as F

        args = list(args)
        names = {F.relu: "relu", F.gelu: "gelu"}
        if len(args) > 4 and not isinstance(args[-1], (int, float)):  # activation function
            args[-1] = names[args[-1]]
        if "activation" in kwargs:
            kwargs = {**kwargs, "activation": names.get(kwargs["activation"], kwargs["activation"])}
        module = getattr(nnx, cls_name)(*args, **{"batch_first": False, **kwargs}, rng=0)
        return _randomize(module)

    return make


CONFIG_CLASSES = ["TransformerEncoderLayer", "TransformerDecoderLayer", "Transformer"]


@pytest.mark.torch
@pytest.mark.parametrize(
    "backends", [("numpy",), pytest.param(ORACLE_BACKENDS[1:], marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("name", CONFIG_CLASSES)
def test_pytorch_module_configs(name, backends):
    """Every configuration on NumPy by default, on strict:device1 and JAX under slow.
    ``Transformer``'s configuration passes a float ``src_mask`` as a third input: a constant
    to nnx (no gradient), hence ``differentiable``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Transformer: enable_nested_tensor notes
        check_torch_configs(
            name,
            make=_from_config(name),
            backends=backends,
            differentiable=(0, 1) if name != "TransformerEncoderLayer" else None,
        )


# ------------------------------------------------------------------ finite differences


class _Decoder(nnx.Module):
    """The decoder layer on ``(tgt, memory)`` with fixed masks."""

    def __init__(self, layer, **masks):
        self.layer, self.masks = layer, masks

    def forward(self, tgt, memory):
        return self.layer(tgt, memory, **self.masks)

    def backward(self, g):
        return self.layer.backward(g)


def _ok(result):
    """gradcheck's verdict, except for the key projections' biases: their true gradient is
    exactly zero (softmax ignores a shift of a whole score row), so their relative error
    compares rounding noise with rounding noise."""
    errors = {k: v for k, v in result.errors.items() if not k.endswith("k_proj.bias")}
    return all(v <= result.tol for v in errors.values())


def _decoder_gradients(backend, norm_first=False):
    """d_model 3 with 3 heads, one sample: few parameters, so few finite differences."""
    layer = nnx.TransformerDecoderLayer(
        3, 3, 2, 0.0, batch_first=True, norm_first=norm_first, rng=0
    )
    masks = {
        "tgt_key_padding_mask": backend.asarray(np.array([[False, True]])),
        "memory_mask": backend.asarray(np.array([[False, True, False], [True, False, False]])),
        "tgt_is_causal": True,
    }
    x = (backend.asarray(host_normal((1, 2, 3), seed=20)), backend.asarray(host_normal((1, 3, 3))))
    result = nnx.gradcheck(_Decoder(_randomize(layer), **masks), x)
    assert _ok(result), str(result)


@pytest.mark.parametrize("spec", ["numpy", "strict:device1"])
def test_decoder_layer_gradients(spec):
    _decoder_gradients(nnx.get_backend(spec))


@pytest.mark.slow
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_gradients_every_backend(backend, norm_first):
    _decoder_gradients(backend, norm_first)


@pytest.mark.slow
def test_transformer_gradients():
    model = nnx.Transformer(
        E, H, 1, 1, 2, 0.0, activation="gelu", batch_first=True, norm_first=True, rng=0
    )
    result = nnx.gradcheck(_randomize(model), (host_normal((1, 3, E), 21), host_normal((1, 2, E))))
    assert _ok(result), str(result)


# ------------------------------------------------------------------ construction and errors


def test_stack_copies_the_layer_and_reseeds_its_dropout():
    layer = nnx.TransformerEncoderLayer(E, H, FF, 0.5, batch_first=True, rng=0)
    stack = nnx.TransformerEncoder(layer, 3)
    names = [n for n, _ in stack.named_parameters()]
    assert names[0] == "layers.0.self_attn.q_proj.weight" and "layers.2.norm2.bias" in names
    weights = [nnx.to_numpy(m.linear1.weight.value) for m in stack.layers]
    assert all(np.array_equal(w, nnx.to_numpy(layer.linear1.weight.value)) for w in weights)
    assert all(m.linear1 is not layer.linear1 for m in stack.layers)  # copies, as in PyTorch
    seeds = {m.dropout.seed for m in stack.layers} | {layer.dropout.seed}
    assert len(seeds) == 4  # each copy draws its own masks
    x = host_normal((N, S, E)).astype(np.float32)
    np.testing.assert_array_equal(nnx.TransformerEncoder(layer, 0)(x), x)  # as PyTorch allows


def test_transformer_reset_gives_distinct_layers():
    model = nnx.Transformer(8, 2, 2, 1, 16, batch_first=True, rng=0)
    first, second = (nnx.to_numpy(m.linear1.weight.value) for m in model.encoder.layers)
    assert not np.array_equal(first, second)
    assert abs(float(np.abs(first).max()) - np.sqrt(6 / 24)) < 0.05  # Xavier-uniform bound
    assert [n for n, _ in model.named_parameters()][-2:] == [
        "decoder.norm.weight",
        "decoder.norm.bias",
    ]


def test_errors():
    layer = nnx.TransformerDecoderLayer(E, H, FF, batch_first=True, rng=0)
    tgt, mem = np.ones((N, T, E), np.float32), np.ones((N, S, E), np.float32)
    with pytest.raises(
        ValueError,
        match=r"TransformerDecoderLayer: memory must have shape .*d_model = 4, got \(2, 4, 5\)",
    ):
        layer(tgt, np.ones((N, S, 5), np.float32))
    with pytest.raises(
        ValueError, match=r"tgt and memory must both be batched with the same batch size"
    ):
        layer(tgt, np.ones((3, S, E), np.float32))
    with pytest.raises(TypeError, match="TransformerDecoderLayer: tgt .*int64"):
        layer(np.ones((N, T, E), np.int64), mem)
    with pytest.raises(
        ValueError, match="activation must be 'relu', 'gelu' or an nnx Module, got 'tanh'"
    ):
        nnx.TransformerDecoderLayer(E, H, activation="tanh")
    with pytest.raises(
        ValueError, match="TransformerDecoderLayer: d_model must be a positive integer, got 0"
    ):
        nnx.TransformerDecoderLayer(0, H)
    with pytest.raises(ValueError, match=r"embed_dim \(4\) must be divisible by num_heads \(3\)"):
        nnx.TransformerDecoderLayer(E, 3)
    with pytest.raises(nnx.BackwardBeforeForwardError):
        nnx.TransformerDecoderLayer(E, H, batch_first=True).backward(tgt)
    with pytest.raises(
        ValueError, match=r"TransformerEncoder: num_layers must be an integer >= 0, got -1"
    ):
        nnx.TransformerEncoder(nnx.TransformerEncoderLayer(E, H), -1)
    with pytest.raises(
        TypeError, match="TransformerDecoder: the layer must be an nnx Module, got str"
    ):
        nnx.TransformerDecoder("layer", 2)
    with pytest.raises(TypeError, match="TransformerEncoder: norm must be an nnx Module or None"):
        nnx.TransformerEncoder(nnx.TransformerEncoderLayer(E, H), 1, norm="layer")
    with pytest.raises(
        TypeError, match="Transformer: custom_decoder must be an nnx Module or None"
    ):
        nnx.Transformer(E, H, custom_decoder=print)
    model = nnx.Transformer(E, H, 1, 1, FF, batch_first=True, rng=0)
    with pytest.raises(ValueError, match=r"Transformer: src and tgt must have the same batch size"):
        model(np.ones((3, S, E), np.float32), tgt)
    with pytest.raises(ValueError, match="the feature size of src and tgt must be d_model = 4"):
        model(np.ones((N, S, 6), np.float32), tgt)
    with pytest.raises(nnx.BackwardBeforeForwardError):
        model.backward(tgt)


@pytest.mark.slow
def test_a_transformer_larger_than_the_slack_saves_and_loads(tmp_path):
    """load_model lets a rebuilt model draw at most twice the stored numbers (plus a slack):
    the copies of the layers and the Xavier redraw must stay within it."""
    model = nnx.Transformer(256, 4, 2, 2, 1024, batch_first=True, rng=0)
    path = nnx.save_model(tmp_path / "t.npz", model)
    loaded = nnx.load_model(path)
    src = host_normal((1, 3, 256)).astype(np.float32)
    tgt = host_normal((1, 2, 256), seed=1).astype(np.float32)
    np.testing.assert_allclose(
        nnx.to_numpy(loaded.eval()(src, tgt)), nnx.to_numpy(model.eval()(src, tgt)), rtol=1e-5
    )


@pytest.mark.torch
def test_transformer_with_custom_encoder_and_decoder_matches_torch():
    """Custom stacks are called like the built ones (and their matrices redrawn, as PyTorch)."""
    torch = pytest.importorskip("torch")
    enc, tenc = _encoder_pair(torch, {}, layers=1, norm=False)
    dec, tdec = _decoder_stack_pair(torch, {"activation": "gelu"}, layers=1)
    mine = nnx.Transformer(E, H, custom_encoder=enc, custom_decoder=dec, batch_first=True, rng=0)
    _randomize(mine)
    theirs = torch.nn.Transformer(E, H, custom_encoder=tenc, custom_decoder=tdec, batch_first=True)
    kwargs = {"tgt_mask": _causal(T), "tgt_is_causal": True}
    compare(mine, theirs, [(N, S, E), (N, T, E)], kwargs=kwargs)
