"""PyTorch weights in and out (nnx.torch_state_dict, nnx.load_torch_state_dict,
nnx.save_torch_weights): models trained in PyTorch give equal outputs in their nnx twins on every
backend, nnx weights give equal outputs in PyTorch, every module with a torch.nn twin has its
names and shapes, .safetensors files round trip without PyTorch, and bad input gets one line."""

import functools
import sys
import warnings

import numpy as np
import pytest

import nnx

# ------------------------------------------------------------------ twins: (nnx, torch, input)


def _mlp(torch):
    t = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    n = nnx.Sequential(nnx.Linear(6, 16), nnx.Tanh(), nnx.Linear(16, 3))
    return n, t, (5, 6)


def _cnn(torch):
    nn = torch.nn
    t = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(36, 3),
    )
    n = nnx.Sequential(
        nnx.Conv2d(2, 4, 3, padding=1),
        nnx.BatchNorm2d(4),
        nnx.ReLU(),
        nnx.MaxPool2d(2),
        nnx.Flatten(),
        nnx.Linear(36, 3),
    )
    return n, t, (5, 2, 6, 6)


class _First(nnx.Module):
    """The output sequence of an RNN (final states dropped), so it fits a Sequential."""

    def __init__(self, rnn):
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x)[0]

    def backward(self, g):
        return self.rnn.backward(g)


def _lstm(torch):
    class TFirst(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.LSTM(4, 5, num_layers=2, batch_first=True, bidirectional=True)

        def forward(self, x):
            return self.rnn(x)[0]

    n = _First(nnx.LSTM(4, 5, num_layers=2, batch_first=True, bidirectional=True))
    return n, TFirst(), (3, 7, 4)


def _encoder(torch):
    t = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True)
    n = nnx.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True)
    return n, t, (3, 5, 8)


TWINS = {"mlp": _mlp, "cnn-batchnorm": _cnn, "lstm": _lstm, "transformer-encoder": _encoder}


@functools.cache
def _trained(kind):
    """The torch model of ``kind`` after six SGD steps in float64 (running statistics moved),
    its state dict, and a fixed evaluation input."""
    import torch

    torch.manual_seed(0)
    _, tmodel, shape = TWINS[kind](torch)
    tmodel = tmodel.double().train()
    opt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(1)
    for _ in range(6):
        opt.zero_grad()
        out = tmodel(torch.tensor(rng.standard_normal(shape)))
        ((out - 0.5) ** 2).mean().backward()
        opt.step()
    x = rng.standard_normal(shape)
    tmodel.eval()
    with torch.no_grad():
        expected = tmodel(torch.tensor(x)).numpy()
    return tmodel.state_dict(), x, expected


@pytest.mark.torch
@pytest.mark.parametrize("kind", list(TWINS))
def test_trained_in_pytorch_equal_outputs_in_nnx(backend, kind):
    """Train in PyTorch, load the state dict (torch tensors) into the nnx twin on ``backend``,
    evaluation-mode outputs equal in float64."""
    torch = pytest.importorskip("torch")
    state, x, expected = _trained(kind)
    model, _, _ = TWINS[kind](torch)
    model = model.to(backend, dtype="float64")
    result = nnx.load_torch_state_dict(model, state)
    assert result == ([], [])
    model.eval()
    with nnx.backend.float64_scope(backend):
        out = nnx.to_numpy(model(backend.asarray(x)))
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-12)
    assert int(model.state_dict().get("1.num_batches_tracked", 6)) == 6


@pytest.mark.torch
@pytest.mark.parametrize("kind", list(TWINS))
def test_nnx_weights_give_equal_outputs_in_pytorch(kind):
    """nnx -> torch_state_dict -> the torch twin: equal outputs, and the state dict read back
    from PyTorch loads into a fresh nnx model bit for bit."""
    torch = pytest.importorskip("torch")
    model, tmodel, shape = TWINS[kind](torch)
    model = model.to(dtype="float64")
    if kind == "cnn-batchnorm":  # running statistics that are not the defaults
        model.train()
        model(np.random.default_rng(3).standard_normal(shape))
    model.eval()
    sd = nnx.torch_state_dict(model)
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    tmodel = tmodel.double().eval()
    tmodel.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    x = np.random.default_rng(2).standard_normal(shape)
    with torch.no_grad():
        expected = tmodel(torch.tensor(x)).numpy()
    np.testing.assert_allclose(nnx.to_numpy(model(x)), expected, rtol=1e-10, atol=1e-12)
    again, _, _ = TWINS[kind](torch)
    again = again.to(dtype="float64")
    nnx.load_torch_state_dict(again, tmodel.state_dict())
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=name)


# ------------------------------------------------------------------ every module with a twin

MODULES = [
    ("Linear", (3, 4), {}),
    ("Linear", (3, 4), {"bias": False}),
    ("Bilinear", (2, 3, 4), {}),
    ("Conv1d", (2, 3, 3), {}),
    ("Conv2d", (2, 4, 3), {"groups": 2}),
    ("Conv3d", (2, 3, 2), {}),
    ("ConvTranspose1d", (2, 3, 3), {}),
    ("ConvTranspose2d", (4, 2, 3), {"groups": 2}),
    ("ConvTranspose3d", (2, 3, 2), {}),
    ("BatchNorm1d", (3,), {}),
    ("BatchNorm2d", (3,), {"affine": False}),
    ("BatchNorm3d", (3,), {"track_running_stats": False}),
    ("SyncBatchNorm", (3,), {}),
    ("LayerNorm", (4,), {}),
    ("GroupNorm", (2, 4), {}),
    ("RMSNorm", (4,), {}),
    ("InstanceNorm1d", (3,), {"affine": True, "track_running_stats": True}),
    ("InstanceNorm2d", (3,), {"affine": True}),
    ("Embedding", (5, 3), {}),
    ("EmbeddingBag", (5, 3), {}),
    ("PReLU", (3,), {}),
    ("RNN", (3, 4), {"num_layers": 2, "bidirectional": True}),
    ("LSTM", (3, 4), {"num_layers": 2}),
    ("GRU", (3, 4), {"bias": False}),
    ("RNNCell", (3, 4), {}),
    ("LSTMCell", (3, 4), {}),
    ("GRUCell", (3, 4), {}),
    ("MultiheadAttention", (8, 2), {}),
    ("MultiheadAttention", (8, 2), {"bias": False}),
    ("TransformerEncoderLayer", (8, 2, 16), {}),
    ("TransformerDecoderLayer", (8, 2, 16), {}),
    ("Transformer", (8, 2, 1, 1, 16), {}),
    ("AdaptiveLogSoftmaxWithLoss", (16, 10, [4, 7]), {"head_bias": True}),
]


@pytest.mark.torch
def test_every_twin_has_pytorch_names_shapes_and_values():
    """For each module with a torch.nn twin: the same state-dict names in the same order and
    the same shapes; PyTorch's random values go in and come back out unchanged."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    for name, args, kwargs in MODULES:
        label = f"{name}{args}{kwargs}"
        model = getattr(nnx, name)(*args, **kwargs).to(dtype="float64")
        with warnings.catch_warnings():  # Transformer's note on nested tensors
            warnings.simplefilter("ignore", UserWarning)
            tmodel = getattr(torch.nn, name)(*args, **kwargs).double()
        state = tmodel.state_dict()
        for v in state.values():
            if v.is_floating_point():
                v.copy_(torch.randn(v.shape))
        mine = nnx.torch_state_dict(model)
        assert list(mine) == list(state), label
        assert [v.shape for v in mine.values()] == [tuple(v.shape) for v in state.values()], label
        nnx.load_torch_state_dict(model, state)
        for key, value in nnx.torch_state_dict(model).items():
            np.testing.assert_array_equal(value, state[key].numpy(), err_msg=f"{label} {key}")


# ------------------------------------------------------------------ files


def _pair():
    a = nnx.Sequential(nnx.Linear(4, 6, rng=0), nnx.BatchNorm1d(6), nnx.Linear(6, 2, rng=1))
    b = nnx.Sequential(nnx.Linear(4, 6, rng=2), nnx.BatchNorm1d(6), nnx.Linear(6, 2, rng=3))
    a(np.random.default_rng(0).standard_normal((8, 4)).astype("float32"))  # running stats move
    return a.eval(), b.eval()


def test_safetensors_round_trip_without_torch(tmp_path, monkeypatch):
    """Written and read with the safetensors package alone (``import torch`` fails here): the
    file holds PyTorch's names and layout, and a second model loaded from it is the same."""
    st = pytest.importorskip("safetensors.numpy")
    monkeypatch.setitem(sys.modules, "torch", None)  # any import of torch now raises
    a, b = _pair()
    path = nnx.save_torch_weights(a, tmp_path / "w.safetensors")
    raw = st.load_file(str(path))
    assert sorted(raw) == sorted(nnx.torch_state_dict(a))
    assert raw["0.weight"].shape == (6, 4) and raw["1.num_batches_tracked"] == 1
    assert nnx.load_torch_state_dict(b, str(path)) == ([], [])
    x = np.random.default_rng(1).standard_normal((3, 4)).astype("float32")
    np.testing.assert_array_equal(nnx.to_numpy(a(x)), nnx.to_numpy(b(x)))
    with pytest.raises(
        ImportError, match=r"w\.pt' is a PyTorch file \(use \.safetensors .*\) and needs PyTorch"
    ):
        nnx.load_torch_state_dict(b, tmp_path / "w.pt")


@pytest.mark.torch
def test_pt_file_read_with_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    a, b = _pair()
    path = nnx.save_torch_weights(a, tmp_path / "w.pt")
    loaded = torch.load(path, weights_only=True)
    assert loaded["0.weight"].shape == (6, 4)
    nnx.load_torch_state_dict(b, path)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        np.testing.assert_array_equal(v, w, err_msg=k)
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(nnx.NnxFileError, match=r"holds a list, not a state dict"):
        nnx.load_torch_state_dict(b, tmp_path / "list.pt")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(nnx.NnxFileError, match=r"junk\.pth.* is not a PyTorch weights file") as e:
        nnx.load_torch_state_dict(b, tmp_path / "junk.pth")
    # PyTorch's paragraph (terminal escapes, "weights_only=False" advice) is not passed on
    assert "\x1b" not in _one_line(e) and "weights_only` set to `False" not in str(e.value)
    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole.pt")  # the model, not its state dict
    with pytest.raises(nnx.NnxFileError, match=r"pickled Python objects \(torch\.nn\..*Linear\)"):
        nnx.load_torch_state_dict(b, tmp_path / "whole.pt")


# ------------------------------------------------------------------ bad input: one line


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def test_mismatches_named_in_one_line():
    a, b = _pair()
    sd = nnx.torch_state_dict(a)
    del sd["2.bias"]
    sd["2.extra"] = np.zeros(2)
    with pytest.raises(ValueError, match=r"missing keys \['2\.bias'\], unexpected keys") as e:
        nnx.load_torch_state_dict(b, sd)
    assert "'2.extra'" in _one_line(e)
    before = b.state_dict()
    result = nnx.load_torch_state_dict(b, sd, strict=False)
    assert result.missing_keys == ["2.bias"] and result.unexpected_keys == ["2.extra"]
    np.testing.assert_array_equal(nnx.to_numpy(b[2].bias.value), before["2.bias"])
    np.testing.assert_array_equal(nnx.to_numpy(b[0].weight.value), a.state_dict()["0.weight"])

    bad = nnx.torch_state_dict(a)
    bad["0.weight"] = bad["0.weight"].T  # nnx's own layout: not PyTorch's
    with pytest.raises(ValueError, match=r"'0\.weight' has shape \(4, 6\), .* needs \(6, 4\)"):
        nnx.load_torch_state_dict(b, bad)
    bad["0.weight"] = np.full((6, 4), np.nan, np.float32)  # was loaded silently
    with pytest.raises(ValueError, match=r"'0\.weight' has NaN or infinite values"):
        nnx.load_torch_state_dict(b, bad)
    np.testing.assert_array_equal(nnx.to_numpy(b[0].weight.value), a.state_dict()["0.weight"])
    bad["0.weight"] = "text"
    with pytest.raises(TypeError, match=r"'0\.weight' has dtype <U4, not a number type"):
        nnx.load_torch_state_dict(b, bad)


def test_files_refused_in_one_line(tmp_path):
    _, b = _pair()
    with pytest.raises(
        ValueError, match=r"suffix must be \.safetensors, \.pt or \.pth, not '\.npz'"
    ):
        nnx.load_torch_state_dict(b, tmp_path / "w.npz")
    with pytest.raises(ValueError, match=r"suffix must be"):
        nnx.save_torch_weights(b, tmp_path / "w.bin")
    with pytest.raises(nnx.NnxFileError, match=r"no such file"):
        nnx.load_torch_state_dict(b, tmp_path / "absent.safetensors")
    pytest.importorskip("safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(nnx.NnxFileError, match=r"not a readable \.safetensors file") as e:
        nnx.load_torch_state_dict(b, tmp_path / "bad.safetensors")
    _one_line(e)
    with pytest.raises(TypeError, match=r"expected a state dict"):
        nnx.load_torch_state_dict(b, [1, 2])
    with pytest.raises(nnx.UnbuiltModuleError):
        nnx.torch_state_dict(nnx.Sequential(nnx.Linear(None, 3)))


def test_checkpoint_dict_gets_a_hint_and_long_lists_are_cut():
    a, b = _pair()
    with pytest.raises(ValueError, match=r"'model' holds a mapping: pass state_dict\['model'\]"):
        nnx.load_torch_state_dict(b, {"model": nnx.torch_state_dict(a), "epoch": 3})
    many = nnx.Sequential(*[nnx.Linear(2, 2) for _ in range(10)])
    with pytest.raises(ValueError, match=r"missing keys \['0\.weight', .*, \.\.\. 8 more\]") as e:
        nnx.load_torch_state_dict(many, {})
    _one_line(e)
