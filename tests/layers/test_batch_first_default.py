"""The sequence layers take PyTorch's ``batch_first=False`` default: the signatures, the layout a
default module reads (``(L, N, E)``, compared with PyTorch's default module in float64), saved
models keeping the layout they were saved with, and the language-model presets staying batch
first."""

import inspect
import warnings

import numpy as np
import pytest

import nnx
from nnx.models import lstm as lstm_preset
from nnx.models import transformer as transformer_preset
from tests.conftest import host_normal
from tests.layers.test_rnn_cells import Joined, torch_joined
from tests.layers.torch_oracle import compare

CLASSES = [
    "MultiheadAttention",
    "TransformerEncoderLayer",
    "TransformerDecoderLayer",
    "Transformer",
    "RNN",
    "LSTM",
    "GRU",
]
E, H, FF, L, S, N = 4, 2, 6, 3, 5, 2  # L, S: target and source lengths, N: batch


@pytest.mark.parametrize("name", CLASSES)
def test_default_is_false_as_in_pytorch(name):
    assert inspect.signature(getattr(nnx, name)).parameters["batch_first"].default is False


def test_default_instances_and_the_stacks():
    assert not nnx.MultiheadAttention(E, H).batch_first
    assert not nnx.LSTM(3, 4).batch_first and not nnx.GRU(3, 4).batch_first
    assert not nnx.TransformerEncoderLayer(E, H, FF).batch_first
    assert not nnx.TransformerDecoderLayer(E, H, FF).batch_first
    # the Transformer passes its own setting to the layers it builds; the stacks copy theirs
    for flag in (False, True):
        model = nnx.Transformer(E, H, 1, 1, FF, batch_first=flag)
        assert model.batch_first is flag
        assert model.encoder.layers[0].batch_first is flag
        assert model.decoder.layers[0].batch_first is flag
    stack = nnx.TransformerEncoder(nnx.TransformerEncoderLayer(E, H, FF, batch_first=True), 2)
    assert all(layer.batch_first for layer in stack.layers)
    assert repr(nnx.LSTM(3, 4)) == "LSTM(3, 4)"
    assert repr(nnx.GRU(3, 4, batch_first=True)) == "GRU(3, 4, batch_first=True)"


def test_saved_models_keep_their_layout(tmp_path):
    """Constructor arguments are recorded with the defaults filled in, so a file saved when the
    default was True (the same record as an explicit True) loads batch first."""
    assert nnx.module_config(nnx.LSTM(3, 4))["args"]["batch_first"] is False
    old = nnx.LSTM(3, 4, batch_first=True, rng=0)
    assert nnx.module_config(old)["args"]["batch_first"] is True
    loaded = nnx.load_model(nnx.save_model(tmp_path / "old.npz", old))
    assert loaded.batch_first is True
    x = host_normal((N, S, 3)).astype(np.float32)  # (N, T, in)
    np.testing.assert_array_equal(nnx.to_numpy(loaded(x)[0]), nnx.to_numpy(old(x)[0]))
    layer = nnx.TransformerEncoderLayer(E, H, FF, dropout=0.0, batch_first=True, rng=0)
    again = nnx.load_model(nnx.save_model(tmp_path / "layer.npz", layer))
    assert again.batch_first is True
    default = nnx.load_model(nnx.save_model(tmp_path / "new.npz", nnx.GRU(3, 4, rng=0)))
    assert default.batch_first is False


def test_language_model_presets_stay_batch_first():
    lm = lstm_preset.build((8,), 5, embedding_dim=4, hidden_size=6)
    assert lm.lstm.batch_first is True
    tlm = transformer_preset.build((8,), 5, d_model=4, nhead=2, num_layers=1, dim_feedforward=8)
    assert all(block.batch_first for block in tlm._blocks)
    ids = np.array([[0, 1, 2, 3, 4, 0, 1, 2], [4, 3, 2, 1, 0, 4, 3, 2]])
    for model in (lm, tlm):
        assert tuple(model(ids).shape) == (2, 5, 8)  # (N, V, T) logits of (N, T) windows


# ------------------------------------------------------------------ (L, N, E) vs PyTorch


def _torch_mha(torch):
    class AttentionOutput(torch.nn.MultiheadAttention):
        """PyTorch's module returning the output only (nnx's default ``need_weights=False``)."""

        def forward(self, query, key, value):
            return super().forward(query, key, value, need_weights=False)[0]

    return AttentionOutput(E, H)


@pytest.mark.torch
def test_attention_default_layout_matches_pytorch():
    torch = pytest.importorskip("torch")
    compare(
        nnx.MultiheadAttention(E, H, rng=0), _torch_mha(torch), [(L, N, E), (S, N, E), (S, N, E)]
    )


@pytest.mark.torch
@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_recurrent_default_layout_matches_pytorch(name):
    torch = pytest.importorskip("torch")
    mine = Joined(getattr(nnx, name)(3, 4, num_layers=2, rng=0))
    compare(mine, torch_joined(getattr(torch.nn, name)(3, 4, num_layers=2)), (S, N, 3))


@pytest.mark.torch
def test_encoder_layer_and_stack_default_layout_match_pytorch():
    torch = pytest.importorskip("torch")
    mine = nnx.TransformerEncoderLayer(E, H, FF, 0.0, rng=0)
    theirs = torch.nn.TransformerEncoderLayer(E, H, FF, 0.0)
    compare(mine, theirs, (S, N, E))
    stack = nnx.TransformerEncoder(nnx.TransformerEncoderLayer(E, H, FF, 0.0, rng=1), 2)
    with warnings.catch_warnings():  # PyTorch: enable_nested_tensor needs batch_first
        warnings.simplefilter("ignore", UserWarning)
        tstack = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(E, H, FF, 0.0), 2)
    compare(stack, tstack, (S, N, E))


@pytest.mark.torch
def test_decoder_layer_and_stack_default_layout_match_pytorch():
    torch = pytest.importorskip("torch")
    mine = nnx.TransformerDecoderLayer(E, H, FF, 0.0, rng=0)
    theirs = torch.nn.TransformerDecoderLayer(E, H, FF, 0.0)
    compare(mine, theirs, [(L, N, E), (S, N, E)])
    stack = nnx.TransformerDecoder(nnx.TransformerDecoderLayer(E, H, FF, 0.0, rng=1), 2)
    tstack = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(E, H, FF, 0.0), 2)
    compare(stack, tstack, [(L, N, E), (S, N, E)])


@pytest.mark.torch
def test_transformer_default_layout_matches_pytorch():
    torch = pytest.importorskip("torch")
    mine = nnx.Transformer(E, H, 1, 1, FF, 0.0, rng=0)
    with warnings.catch_warnings():  # PyTorch's notes on its inference fast path
        warnings.simplefilter("ignore", UserWarning)
        theirs = torch.nn.Transformer(E, H, 1, 1, FF, 0.0)
    compare(mine, theirs, [(S, N, E), (L, N, E)])  # src (S, N, E), tgt (L, N, E)
