"""nnx.export_onnx: every supported layer family exported, run in onnxruntime (CPU) and compared
with nnx's own forward in evaluation mode, float32, relative error <= 1e-5 (the largest
difference over the largest magnitude of the nnx output)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import nnx
from nnx.onnx import UnsupportedLayerError, export_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = 1e-5


def _flat(out):
    if isinstance(out, dict):
        return [a for v in out.values() for a in _flat(v)]
    if isinstance(out, tuple):
        return [a for v in out for a in _flat(v)]
    return [nnx.to_numpy(out)]


def _rel_err(got, want):
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(float(np.max(np.abs(want))), 1e-30) if want.size else 1.0
    return float(np.max(np.abs(got.astype(np.float64) - want), initial=0.0)) / scale


def _session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # the suite runs in parallel
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def roundtrip(model, inputs, tmp_path, *, others=(), **kw):
    """Export ``model`` on ``inputs`` (a tuple), then compare onnxruntime with nnx's eval forward
    on those inputs and on each tuple in ``others`` (other batch sizes)."""
    example = inputs if len(inputs) > 1 else inputs[0]
    path = export_onnx(model, example, tmp_path / "m.onnx", **kw)
    session = _session(path)
    model.eval()
    for xs in (inputs, *others):
        want = _flat(model(*xs))
        feeds = {i.name: nnx.to_numpy(x) for i, x in zip(session.get_inputs(), xs, strict=True)}
        got = session.run(None, feeds)
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert _rel_err(g, w) <= TOL, f"output {i} ({session.get_outputs()[i].name})"
    return path


def _randomize(model, seed=1):
    """Move parameters and running statistics off their initial values (ones, zeros)."""
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.value = p.value + 0.3 * rng.standard_normal(p.value.shape).astype(np.float32)
    for b in model.buffers():
        if b.value.dtype == np.float32:
            b.value = np.abs(b.value + 0.3 * rng.standard_normal(b.value.shape)).astype(np.float32)
    return model


def _x(*shape, seed=0, scale=2.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


# ---------------------------------------------------------------------------- activations
ACTIVATIONS = [
    nnx.ReLU(), nnx.LeakyReLU(0.1), nnx.Sigmoid(), nnx.Tanh(), nnx.Softmax(), nnx.LogSoftmax(),
    nnx.Softmax(axis=0), nnx.GELU(), nnx.GELU("tanh"), nnx.ELU(0.7), nnx.SELU(), nnx.SiLU(),
    nnx.Softplus(), nnx.Softplus(beta=2.0, threshold=3.0), nnx.Mish(), nnx.Hardtanh(-0.5, 2.0),
    nnx.ReLU6(), nnx.CELU(0.5), nnx.Hardshrink(0.7), nnx.Softshrink(0.3), nnx.Hardsigmoid(),
    nnx.Hardswish(), nnx.LogSigmoid(), nnx.Softsign(), nnx.Tanhshrink(), nnx.Threshold(0.1, -2.0),
    nnx.Softmin(), nnx.GLU(), nnx.PReLU(), nnx.PReLU(3), nnx.RReLU(rng=0), nnx.Identity(),
]  # fmt: skip


def test_every_activation_matches_nnx(tmp_path):
    """All of them side by side in one file (output i is ACTIVATIONS[i]); the slow test below
    exports each alone. (N, 3, 4): per-channel PReLU sees 3 channels, GLU halves the last axis."""
    model = _randomize(
        nnx.Sequential(nnx.Linear(4, 4, rng=1), nnx.Parallel(*ACTIVATIONS, merge=None))
    )
    roundtrip(model, (_x(5, 3, 4),), tmp_path, others=[(_x(2, 3, 4, seed=1),)])


@pytest.mark.slow
@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: repr(a))
def test_activation_alone_matches_nnx(act, tmp_path):
    model = _randomize(nnx.Sequential(nnx.Linear(4, 4, rng=1), act))
    roundtrip(model, (_x(5, 3, 4),), tmp_path, others=[(_x(2, 3, 4, seed=1),)])


def test_every_activation_class_has_a_converter():
    from nnx.layers import activations, activations_extra, activations_learned
    from nnx.onnx.export import _CONVERTERS

    classes = {
        obj
        for mod in (activations, activations_extra, activations_learned)
        for obj in vars(mod).values()
        if isinstance(obj, type) and issubclass(obj, nnx.Module) and not obj.__name__[0] == "_"
        and obj.__module__ == mod.__name__
    }  # fmt: skip
    assert classes and not {c.__name__ for c in classes if c not in _CONVERTERS}


# ---------------------------------------------------------------------------- spatial layers
X1, X2, X3 = _x(2, 4, 11), _x(2, 4, 9, 8), _x(2, 4, 5, 6, 5)
SPATIAL = [
    (nnx.Conv2d(4, 6, 3, padding=1, rng=0), X2),
    (nnx.Conv2d(4, 6, (3, 2), stride=2, dilation=(1, 2), groups=2, rng=0), X2),
    (nnx.Conv2d(4, 6, 4, padding="same", bias=False, rng=0), X2),
    (nnx.Conv2d(4, 6, 3, padding=2, padding_mode="reflect", rng=0), X2),
    (nnx.Conv2d(4, 4, 3, padding=1, padding_mode="replicate", groups=4, rng=0), X2),
    (nnx.Conv1d(4, 6, 4, padding="same", dilation=2, rng=0), X1),
    (nnx.Conv1d(4, 4, 3, stride=2, padding="valid", groups=4, rng=0), X1),
    (nnx.Conv3d(4, 2, 3, padding=1, rng=0), X3),
    (nnx.MaxPool2d(2), X2),
    (nnx.MaxPool2d(3, 2, 1, ceil_mode=True), X2),
    (nnx.MaxPool2d(3, 1, 1, dilation=2), X2),
    (nnx.MaxPool1d(3, 2, ceil_mode=True), X1),
    (nnx.AvgPool2d(2), X2),
    (nnx.AvgPool2d(3, 2, 1, ceil_mode=True), X2),
    (nnx.AvgPool2d(3, 2, 1, count_include_pad=False), X2),
    (nnx.AvgPool2d(3, 2, 1, divisor_override=4), X2),
    (nnx.AvgPool1d(4, 3, 2, ceil_mode=True, count_include_pad=False), X1),
    (nnx.AdaptiveAvgPool2d((3, 5)), X2),
    (nnx.AdaptiveAvgPool2d(1), X2),
    (nnx.AdaptiveAvgPool2d((None, 3)), X2),
    (nnx.AdaptiveAvgPool1d(4), X1),
    (nnx.AdaptiveMaxPool2d((3, 4)), X2),
    (nnx.ZeroPad2d((1, 2, 0, 3)), X2),
    (nnx.ConstantPad1d((2, 1), 3.5), X1),
    (nnx.ReflectionPad2d(2), X2),
    (nnx.ReplicationPad1d((3, 1)), X1),
    (nnx.BatchNorm2d(4), X2),
    (nnx.BatchNorm1d(4), X1),
    (nnx.BatchNorm1d(4, affine=False), _x(6, 4)),
    (nnx.BatchNorm2d(4, track_running_stats=False), X2),
    (nnx.SyncBatchNorm(4), X2),
    (nnx.InstanceNorm2d(4), X2),
    (nnx.InstanceNorm1d(4, affine=True, track_running_stats=True), X1),
    (nnx.InstanceNorm3d(4, affine=True), X3),
    (nnx.GroupNorm(2, 4), X2),
    (nnx.GroupNorm(4, 4, affine=False), X1),
    (nnx.LocalResponseNorm(2, alpha=0.1, beta=0.7, k=1.5), X2),
    (nnx.LocalResponseNorm(3), X1),
    (nnx.LayerNorm((9, 8)), X2),
    (nnx.LayerNorm(8, elementwise_affine=False), X2),
    (nnx.RMSNorm(8), X2),
    (nnx.Flatten(), X2),
    (nnx.Flatten(2), X2),
    (nnx.Flatten(1, 2), X2),
    (nnx.Unflatten(1, (2, -1)), X2),
    (nnx.Dropout2d(0.5), X2),
    (nnx.PixelShuffle(2), X2),
    (nnx.Upsample(scale_factor=2), X2),
    (nnx.Upsample(size=(5, 7), mode="nearest-exact"), X2),
    (nnx.Upsample(scale_factor=1.5, mode="bilinear"), X2),
    (nnx.UpsamplingBilinear2d(size=(4, 11)), X2),
    (nnx.Upsample(scale_factor=(1.7, 2.0), mode="bicubic"), X2),
    (nnx.Upsample(size=4, mode="linear", align_corners=True), X1),
    (nnx.Upsample(scale_factor=2, mode="trilinear"), X3),
    (nnx.PixelUnshuffle(2), _x(2, 3, 4, 6)),
    (nnx.ChannelShuffle(2), X2),
    (nnx.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, rng=0), X2),
    (nnx.ConvTranspose1d(4, 4, 3, stride=3, dilation=2, groups=2, rng=0), X1),
]


EXAMPLES = list({id(x): x for _, x in SPATIAL}.values())  # each example input once


@pytest.mark.parametrize("x", EXAMPLES, ids=lambda x: str(x.shape))
def test_spatial_layers_match_nnx(x, tmp_path):
    """Every SPATIAL case of this input shape side by side in one file; the slow test below
    exports each alone. A batch of one as well: the batch axis is free."""
    layers = [layer for layer, example in SPATIAL if example is x]
    assert layers
    model = _randomize(nnx.Parallel(*layers, merge=None))
    roundtrip(model, (x,), tmp_path, others=[(x[:1],)])


@pytest.mark.slow
@pytest.mark.parametrize("layer, x", SPATIAL, ids=lambda v: repr(v) if isinstance(v, nnx.Module)
                         else "x")  # fmt: skip
def test_spatial_layer_alone_matches_nnx(layer, x, tmp_path):
    model = _randomize(nnx.Sequential(layer))
    roundtrip(model, (x,), tmp_path, others=[(x[:1],)])


def test_a_small_cnn_matches_nnx(tmp_path):
    model = _randomize(
        nnx.Sequential(
            nnx.Conv2d(1, 4, 3, padding=1, rng=0),
            nnx.BatchNorm2d(4),
            nnx.ReLU(),
            nnx.MaxPool2d(2),
            nnx.Conv2d(4, 8, 3, rng=1),
            nnx.GELU(),
            nnx.AdaptiveAvgPool2d(1),
            nnx.Flatten(),
            nnx.Dropout(0.5),
            nnx.Linear(8, 3, rng=2),
            nnx.LogSoftmax(),
        )  # fmt: skip
    )
    roundtrip(model, (_x(3, 1, 10, 10),), tmp_path, others=[(_x(7, 1, 10, 10, seed=2),)])


# ---------------------------------------------------------------------------- sequences
def _graph(layer, n_inputs=1):
    x = nnx.Input("x")
    return nnx.Graph(x, layer(*[x] * n_inputs))


S3, S2 = _x(5, 3, 8, scale=1.0), _x(5, 8, scale=1.0)


@pytest.mark.parametrize("batch_first", [False, True])
def test_multihead_attention_matches_nnx(batch_first, tmp_path):
    model = _randomize(_graph(nnx.MultiheadAttention(8, 2, batch_first=batch_first, rng=0), 3))
    roundtrip(model, (S3,), tmp_path, others=[(_x(4, 3, 8, seed=3, scale=1.0),)])


def _masks(n, length, heads=0, seed=0):
    """A boolean attention mask with one fully masked row (nnx gives it zero weights) and a
    key padding mask; with ``heads`` a floating ``(N * heads, L, L)`` mask instead."""
    rng = np.random.default_rng(seed)
    if heads:
        attn = rng.standard_normal((n * heads, length, length)).astype(np.float32)
    else:
        attn = rng.random((length, length)) < 0.3
        attn[1, :] = True
    return attn, rng.random((n, length)) < 0.25


@pytest.mark.parametrize("heads", [0, 2], ids=["bool-mask", "float-per-head-mask"])
def test_multihead_attention_with_masks(heads, tmp_path):
    x, mask, padding = nnx.Input("x"), nnx.Input("mask"), nnx.Input("padding")
    mha = nnx.MultiheadAttention(8, 2, batch_first=True, rng=0)
    model = _randomize(nnx.Graph([x, mask, padding], mha(x, x, x, mask, padding)))
    seq = _x(3, 5, 8, scale=1.0)
    roundtrip(model, (seq, *_masks(3, 5, heads)), tmp_path)


def test_transformer_encoder_with_masks(tmp_path):
    x, mask, padding = nnx.Input("x"), nnx.Input("mask"), nnx.Input("padding")
    layer = nnx.TransformerEncoderLayer(8, 2, 16, batch_first=True, rng=0)
    encoder = nnx.TransformerEncoder(layer, 2)
    model = _randomize(nnx.Graph([x, mask, padding], encoder(x, mask, padding)))
    roundtrip(model, (_x(3, 5, 8, scale=1.0), *_masks(3, 5, seed=1)), tmp_path)


def test_transformer_decoder_layer_time_major(tmp_path):
    tgt, memory = nnx.Input("tgt"), nnx.Input("memory")
    layer = nnx.TransformerDecoderLayer(8, 2, 16, activation="gelu", rng=0)
    model = _randomize(nnx.Graph([tgt, memory], layer(tgt, memory)))
    x = (_x(4, 3, 8, scale=1.0), _x(6, 3, 8, seed=1, scale=1.0))
    path = roundtrip(model, x, tmp_path, others=[(x[0][:, :1], x[1][:, :1])], batch_axis=1)
    shapes = [i.shape for i in _session(path).get_inputs()]
    assert shapes == [[4, "tgt_1", 8], [6, "memory_1", 8]]  # one name per input


def test_transformer_decoder_unbatched(tmp_path):
    tgt, memory = nnx.Input("tgt"), nnx.Input("memory")
    layer = nnx.TransformerDecoderLayer(8, 2, 16, norm_first=True, rng=0)
    decoder = nnx.TransformerDecoder(layer, 2, norm=nnx.LayerNorm(8))
    model = _randomize(nnx.Graph([tgt, memory], decoder(tgt, memory)))
    roundtrip(model, (S2, _x(6, 8, seed=2, scale=1.0)), tmp_path, batch_axis=None)


def test_encoder_decoder_transformer_with_masks(tmp_path):
    names = ["src", "tgt", "src_mask", "tgt_mask", "memory_mask", "src_padding"]
    src, tgt, *masks = (nnx.Input(n) for n in names)
    transformer = nnx.Transformer(8, 2, 1, 2, 16, batch_first=True, rng=0)
    model = _randomize(nnx.Graph([src, tgt, *masks], transformer(src, tgt, *masks)))
    rng = np.random.default_rng(3)
    x = (
        _x(3, 6, 8, scale=1.0), _x(3, 4, 8, seed=1, scale=1.0), np.zeros((6, 6), np.float32),
        nnx.to_numpy(nnx.Transformer.generate_square_subsequent_mask(4)),
        rng.random((4, 6)) < 0.3, rng.random((3, 6)) < 0.3,
    )  # fmt: skip
    small = (x[0][:1], x[1][:1], *x[2:5], x[5][:1])
    axes = {"src": 0, "tgt": 0, "src_padding": 0}
    roundtrip(model, x, tmp_path, others=[small], batch_axis=axes)


@pytest.mark.parametrize(
    "kw",
    [{}, {"batch_first": True, "norm_first": True}, {"activation": "gelu", "norm_first": True}],
    ids=str,
)
def test_transformer_encoder_layer_matches_nnx(kw, tmp_path):
    layer = nnx.TransformerEncoderLayer(8, 2, 16, rng=0, **kw)
    roundtrip(_randomize(nnx.Sequential(layer)), (S3,), tmp_path)


def test_transformer_encoder_unbatched_matches_nnx(tmp_path):
    layer = nnx.TransformerEncoderLayer(8, 2, 16, activation=nnx.SiLU(), rng=0)
    model = nnx.Sequential(nnx.TransformerEncoder(layer, 2, norm=nnx.LayerNorm(8)))
    roundtrip(_randomize(model), (S2,), tmp_path, others=[(_x(5, 8, seed=4, scale=1.0),)])


@pytest.mark.parametrize("cls", [nnx.LSTM, nnx.GRU, nnx.RNN], ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    "kw", [{}, {"batch_first": True, "bias": False}, {"bidirectional": True, "num_layers": 2}],
    ids=str,
)  # fmt: skip
def test_recurrent_matches_nnx_outputs_and_final_states(cls, kw, tmp_path):
    model = _randomize(_graph(cls(8, 5, rng=0, **kw)))
    roundtrip(model, (S3,), tmp_path, others=[(_x(5, 3, 8, seed=5, scale=1.0),)])


def test_recurrent_unbatched_and_relu_rnn(tmp_path):
    x = nnx.Input("x")
    lstm = nnx.LSTM(8, 5, num_layers=2, bidirectional=True, rng=0)
    rnn = nnx.RNN(8, 4, nonlinearity="relu", rng=1)
    model = nnx.Graph(x, [lstm(x)[0], rnn(x)[1]])
    roundtrip(_randomize(model), (S2,), tmp_path)


def test_tied_embedding_and_standardize(tmp_path):
    emb = nnx.Embedding(11, 6, rng=0)
    ids = nnx.Input("ids")
    norm = nnx.Standardize((5, 6)).set_statistics(_x(5, 6, seed=3), 1 + np.abs(_x(5, 6, seed=4)))
    h = norm(emb(ids))
    model = nnx.Graph(ids, nnx.TiedLinear(emb, bias=True)(nnx.Tanh()(h)))
    tokens = np.random.default_rng(0).integers(0, 11, (3, 5))
    path = roundtrip(_randomize(model), (tokens,), tmp_path)
    weights = [t for t in onnx.load(str(path)).graph.initializer if tuple(t.dims) == (11, 6)]
    assert len(weights) == 1  # the tied weight is stored once


def test_embedding_lstm_language_model_graph(tmp_path):
    """Integer ids in (Gather), LSTM, a Linear head on the outputs: a char-RNN in one file."""
    ids = nnx.Input("ids")
    h = nnx.Embedding(12, 8, rng=0)(ids)
    h = nnx.SinusoidalPositionalEncoding(8, max_len=16)(nnx.PositionalEmbedding(16, 8, rng=1)(h))
    out = nnx.LSTM(8, 6, batch_first=True, rng=2)(h, name="lstm")
    model = nnx.Graph(ids, {"logits": nnx.Linear(6, 12, rng=3)(out[0]), "state": out[1]})
    tokens = np.random.default_rng(0).integers(0, 12, (3, 7))
    path = roundtrip(model, (tokens,), tmp_path, others=[(tokens[:2],)])
    session = _session(path)
    assert [i.name for i in session.get_inputs()] == ["ids"]
    assert [o.name for o in session.get_outputs()] == ["logits", "state_0", "state_1"]
    # the axes that follow the batch are left free in the file, the others are the example's
    assert session.get_inputs()[0].shape == ["N", 7]
    assert [o.shape for o in session.get_outputs()] == [["N", 7, 12], [1, "N", 6], [1, "N", 6]]


@pytest.mark.parametrize("opset", [17, 18, 21])
def test_newer_opsets(opset, tmp_path):
    """ReduceMean takes its axes as an input from opset 18 on; the IR version follows."""
    model = nnx.Sequential(
        nnx.Conv1d(4, 4, 3, padding=1, rng=0), nnx.GroupNorm(2, 4), nnx.RMSNorm(6), nnx.GLU(),
        nnx.LayerNorm(3),
    )  # fmt: skip
    x = _x(2, 4, 6)
    path = export_onnx(_randomize(model), x, tmp_path / "m.onnx", opset=opset)
    assert onnx.load(str(path)).opset_import[0].version == opset
    assert _rel_err(_session(path).run(None, {"input": x})[0], model.eval()(x)) <= TOL


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"opset": 16}, "opset must be an integer >= 17"),
        ({"batch_axis": -1}, "batch_axis must be a non-negative integer"),
        ({"batch_axis": {"x": 0}}, r"batch_axis names \['x'\], inputs are \['input'\]"),
    ],
)
def test_bad_options_are_refused(kw, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        export_onnx(nnx.Sequential(nnx.ReLU()), _x(2, 2), tmp_path / "m.onnx", **kw)


def test_an_example_input_that_is_not_an_array_is_one_line(tmp_path):
    # a nested list was an AttributeError: 'list' object has no attribute 'ndim'
    model = nnx.Sequential(nnx.Linear(4, 2, rng=0))
    with pytest.raises(TypeError, match="example input 'input' is a list, not an array"):
        export_onnx(model, [[1.0, 2.0, 3.0, 4.0]], tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_batch_axis_none_keeps_every_size(tmp_path):
    model = nnx.Sequential(nnx.Linear(4, 2, rng=0))
    session = _session(export_onnx(model, _x(3, 4), tmp_path / "m.onnx", batch_axis=None))
    assert session.get_inputs()[0].shape == [3, 4]
    assert session.get_outputs()[0].shape == [3, 2]


@pytest.mark.parametrize("name", ["mlp", "cnn", "transformer", "lstm"])
def test_presets_export(name, tmp_path):
    """The training command's models (nnx.models presets), the language models fed whole-number
    float ids as the Trainer hands them over."""
    from nnx.models import get_preset

    kw = {"transformer": {"d_model": 16, "nhead": 2, "dim_feedforward": 32}}.get(name, {})
    shape = {"mlp": (12,), "cnn": (1, 8, 8)}.get(name, (10,))
    model = _randomize(get_preset(name)(shape, 7, **kw))
    if name in ("transformer", "lstm"):
        x = np.random.default_rng(0).integers(0, 7, (3, *shape)).astype(np.float32)
    else:
        x = _x(3, *shape)
    roundtrip(model, (x,), tmp_path, others=[(x[:2],)])


# ---------------------------------------------------------------------------- graphs, containers
def test_graph_with_two_inputs_skip_connection_and_named_outputs(tmp_path):
    pixels, side = nnx.Input("pixels"), nnx.Input("side")
    shared = nnx.Linear(12, 12, rng=2)  # called twice: its weights are stored once
    h = nnx.Concat()(
        nnx.ReLU()(nnx.Linear(3, 8, rng=0)(pixels, name="encode_pixels")),
        nnx.Linear(2, 4, rng=1)(side, name="encode_side"),
    )
    h = nnx.Add()(h, nnx.Tanh()(shared(h)))
    h = shared(h)
    block = nnx.Residual(nnx.Sequential(nnx.Linear(12, 12, rng=4), nnx.ELU()))
    branches = nnx.Parallel(nnx.Linear(12, 3, rng=5), nnx.Linear(12, 2, rng=6), merge="concat")
    model = nnx.Graph([pixels, side], {"logits": branches(block(h)), "features": h})
    x = (_x(5, 3), _x(5, 2, seed=1))
    path = roundtrip(model, x, tmp_path, others=[(_x(2, 3, seed=2), _x(2, 2, seed=3))])
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["pixels", "side"]
    assert [o.name for o in proto.graph.output] == ["logits", "features"]
    weights = [t for t in proto.graph.initializer if tuple(t.dims) == (12, 12)]
    assert len(weights) == 2  # shared's weight once, the residual block's once


def test_sequential_with_parallel_tuple_output(tmp_path):
    model = nnx.Sequential(
        nnx.Linear(4, 6, rng=0), nnx.Parallel(nnx.Sigmoid(), nnx.Tanh(), merge=None)
    )
    path = roundtrip(model, (_x(3, 4),), tmp_path)
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["output_0", "output_1"]


def test_input_from_another_backend(tmp_path):
    strict = nnx.get_backend("strict")
    model = nnx.Sequential(nnx.Conv1d(2, 3, 3, rng=0), nnx.AvgPool1d(2), nnx.Flatten()).to(strict)
    x = strict.asarray(_x(2, 2, 9))
    path = export_onnx(model, x, tmp_path / "m.onnx")
    got = _session(path).run(None, {"input": nnx.to_numpy(x)})[0]
    assert _rel_err(got, nnx.to_numpy(model(x))) <= TOL


# ---------------------------------------------------------------------------- modes, refusals
def test_training_mode_exports_the_evaluation_graph_and_keeps_the_mode(tmp_path):
    model = _randomize(
        nnx.Sequential(nnx.Linear(4, 4, rng=0), nnx.Dropout(0.5, rng=0), nnx.BatchNorm1d(4))
    )
    model.train()
    path = export_onnx(model, _x(8, 4), tmp_path / "m.onnx")
    assert all(m.training for m in model.modules())
    x = _x(8, 4, seed=1)
    got = _session(path).run(None, {"input": x})[0]
    assert _rel_err(got, model.eval()(x)) <= TOL


def test_unsupported_layer_is_refused_by_class_and_path(tmp_path):
    model = nnx.Sequential(
        nnx.Linear(4, 4, rng=0), nnx.Sequential(nnx.ReLU(), nnx.Bilinear(4, 4, 2, rng=0))
    )
    with pytest.raises(UnsupportedLayerError) as info:
        export_onnx(model, (_x(3, 4),), tmp_path / "m.onnx")
    message = str(info.value)
    assert "Bilinear" in message and "'1.1'" in message and "\n" not in message
    assert isinstance(info.value, NotImplementedError)
    assert not (tmp_path / "m.onnx").exists()


def test_unsupported_option_is_refused_in_one_line(tmp_path):
    model = nnx.Sequential(nnx.Conv1d(2, 2, 3, padding=1, padding_mode="circular", rng=0))
    with pytest.raises(UnsupportedLayerError, match=r"Conv1d at '0'.*circular"):
        export_onnx(model, _x(1, 2, 5), tmp_path / "m.onnx")
    model = nnx.Sequential(nnx.AdaptiveMaxPool1d(3))
    with pytest.raises(UnsupportedLayerError, match="unequal windows"):
        export_onnx(model, _x(1, 2, 5), tmp_path / "m.onnx")


def test_a_wrong_example_input_gets_the_layers_own_message(tmp_path):
    model = nnx.Sequential(nnx.Linear(3, 2, rng=0), nnx.MaxPool2d(2))
    with pytest.raises(ValueError, match=r"MaxPool2d.*expected input of shape \(N, C, H, W\)"):
        export_onnx(model, _x(2, 3), tmp_path / "m.onnx")


def test_graph_nested_in_a_sequential(tmp_path):
    x = nnx.Input("x")
    inner = nnx.Graph(x, nnx.Add()(x, nnx.Tanh()(nnx.Linear(4, 4, rng=1)(x))))
    model = nnx.Sequential(nnx.Linear(3, 4, rng=0), inner, nnx.Softmax())
    roundtrip(_randomize(model), (_x(5, 3),), tmp_path, others=[(_x(1, 3),)])


def test_graph_inputs_are_checked(tmp_path):
    x = nnx.Input("x")
    model = nnx.Graph(x, nnx.ReLU()(x))
    with pytest.raises(ValueError, match=r"inputs are \['x'\]"):
        export_onnx(model, {"y": _x(2, 2)}, tmp_path / "m.onnx")


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'nnx-trainer\[onnx\]'"):
        nnx.export_onnx(nnx.Sequential(nnx.ReLU()), _x(2, 2), tmp_path / "m.onnx")


# ---------------------------------------------------------------------------- wide sweep
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40))
def test_random_convolution_and_pooling_geometries(seed, tmp_path):
    rng = np.random.default_rng(seed)
    nd = int(rng.integers(1, 3))
    k, s, d = (int(v) for v in rng.integers(1, 4, 3))
    groups = int(rng.choice([1, 2]))
    conv_cls = nnx.Conv1d if nd == 1 else nnx.Conv2d
    padding = "same" if s == 1 and rng.random() < 0.3 else int(rng.integers(0, 3))
    mode = str(rng.choice(["zeros", "reflect", "replicate"]))
    conv = conv_cls(4, 6, k, stride=s, padding=padding, dilation=d, groups=groups,
                    padding_mode=mode, rng=seed)  # fmt: skip
    pk = int(rng.integers(1, 4))
    pool_kw = {"stride": int(rng.integers(1, 3)), "padding": int(rng.integers(0, pk // 2 + 1)),
               "ceil_mode": bool(rng.random() < 0.5)}  # fmt: skip
    pool_cls = [nnx.MaxPool1d, nnx.AvgPool1d] if nd == 1 else [nnx.MaxPool2d, nnx.AvgPool2d]
    pool = pool_cls[int(rng.integers(0, 2))](pk, **pool_kw)
    x = _x(3, 4, *[int(v) for v in rng.integers(9, 14, nd)], seed=seed)
    model = _randomize(nnx.Sequential(conv, nnx.Tanh(), pool))
    roundtrip(model, (x,), tmp_path, others=[(x[:1],)])
