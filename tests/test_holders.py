"""ModuleList, ModuleDict, ParameterList, ParameterDict: PyTorch's list and dict operations, and
their members found by parameters(), state_dict, to(), summary, save_model/load_model,
checkpoints and Graph; a member called twice by a custom forward gets the sum of its gradients."""

import os

import numpy as np
import pytest

import nnx
from nnx.core.calls import (
    call_backward,
    capture_call_state,
    restore_call_state,
    restore_final_state,
)
from tests.conftest import host_normal


@nnx.register_module(name="tests.HolderNet")
class HolderNet(nnx.Module):
    """``h = blocks(blocks(x))`` (every member of the ModuleList called twice), then
    ``y = concat(heads["a"](h) * gain["a"], heads["b"](h) * scales[0])`` over channels.

    Backward restores each call's cache (``capture_call_state``), so the reused members get the
    sum of both calls' gradients (docs/architecture.md, "Shared parameters and modules called
    twice")."""

    def __init__(self, channels: int = 2, rng: int = 0):
        self.blocks = nnx.ModuleList()
        self.blocks.append(nnx.Conv1d(channels, channels, 3, padding=1, rng=rng))
        self.blocks.extend([nnx.Tanh(), nnx.Conv1d(channels, channels, 1, rng=rng + 1)])
        self.heads = nnx.ModuleDict({"a": nnx.Conv1d(channels, 1, 1, rng=rng + 2)})
        self.heads["b"] = nnx.Conv1d(channels, 3, 1, rng=rng + 3)
        self.gain = nnx.ParameterDict({"a": np.full((1, 1, 1), 1.5, np.float32)})
        self.scales = nnx.ParameterList([np.full((1, 3, 1), 0.5, np.float32)])

    def forward(self, x):
        xp = nnx.namespace(x)
        self._calls = []
        h = x
        for _ in range(2):
            for layer in self.blocks:
                h = layer(h)
                self._calls.append((layer, capture_call_state(layer)))
        self._a, self._b = self.heads["a"](h), self.heads["b"](h)
        return xp.concat([self._a * self.gain["a"].value, self._b * self.scales[0].value], axis=1)

    def backward(self, grad_out, need_input_grad=True):
        xp = nnx.namespace(grad_out)
        ga, gb = grad_out[:, :1, :], grad_out[:, 1:, :]
        self.gain["a"].accumulate(xp.sum(ga * self._a, axis=(0, 2), keepdims=True))
        self.scales[0].accumulate(xp.sum(gb * self._b, axis=(0, 2), keepdims=True))
        g = call_backward(self.heads["a"], ga * self.gain["a"].value, True)
        g = g + call_backward(self.heads["b"], gb * self.scales[0].value, True)
        for i in range(len(self._calls) - 1, -1, -1):
            layer, state = self._calls[i]
            restore_call_state(state)
            g = call_backward(layer, g, need_input_grad or i > 0)
        restore_final_state([state for _, state in self._calls])
        return g


def _x(backend=None, shape=(2, 2, 5)):
    x = host_normal(shape, seed=3)
    return x if backend is None else backend.asarray(x)


# ---------------------------------------------------------------------------- list and dict API


def test_module_list_operations_follow_python_lists():
    a, b, c, d = (nnx.Linear(2, 2, rng=i) for i in range(4))
    ml = nnx.ModuleList([a, b])
    ml.append(c)
    ml += [d]
    assert len(ml) == 4 and list(ml) == [a, b, c, d] and ml[-1] is d
    assert isinstance(ml[1:3], nnx.ModuleList) and list(ml[1:3]) == [b, c]
    ml.insert(0, d)
    assert list(ml) == [d, a, b, c, d]
    assert ml.pop(0) is d and list(ml) == [a, b, c, d]
    del ml[1]
    assert list(ml) == [a, c, d]
    assert [n for n, _ in ml.named_children()] == ["0", "1", "2"]
    assert [n for n, _ in ml.named_parameters()][-2:] == ["2.weight", "2.bias"]
    ml[0] = b
    assert ml[0] is b and a not in list(ml) and c in ml
    assert list(ml + nnx.ModuleList([a])) == [b, c, d, a]
    del ml[0:2]
    assert list(ml) == [d]
    with pytest.raises(IndexError, match="ModuleList: index 3 is out of range for 1"):
        ml[3]
    with pytest.raises(TypeError, match=r"ModuleList: member '1' must be an nnx.Module, got int"):
        ml.append(3)
    with pytest.raises(TypeError, match="extend takes an iterable"):
        ml.extend(nnx.ReLU())
    with pytest.raises(TypeError, match="indices must be integers"):
        ml["0"]


def test_module_dict_operations_follow_python_dicts():
    a, b, c = (nnx.Linear(2, 2, rng=i) for i in range(3))
    md = nnx.ModuleDict({"a": a})
    md.update([("b", b)])
    md.update(nnx.ModuleDict({"c": c}))
    assert list(md) == ["a", "b", "c"] and md.keys() == ["a", "b", "c"]
    assert md.values() == [a, b, c] and md.items()[1] == ("b", b)
    assert "a" in md and "z" not in md and len(md) == 3 and md.get("z") is None
    assert md.pop("a") is a and list(md) == ["b", "c"]
    md["a"] = a
    del md["b"]
    assert [n for n, _ in md.named_parameters()] == ["c.weight", "c.bias", "a.weight", "a.bias"]
    md.clear()
    assert len(md) == 0 and list(md.parameters()) == []
    with pytest.raises(TypeError, match="keys must be strings"):
        md[1] = a
    with pytest.raises(KeyError, match="without '.'"):
        md["x.y"] = a
    with pytest.raises(KeyError, match="'forward' is the name of an attribute of ModuleDict"):
        md["forward"] = a
    with pytest.raises(ValueError, match="element 0 must be a"):
        md.update([("a",)])
    with pytest.raises(TypeError, match="member 'a' must be an nnx.Module"):
        md.update({"a": 1.0})
    with pytest.raises(KeyError):
        md["missing"]


def test_parameter_holders_wrap_arrays_and_keep_parameters():
    shared = nnx.Parameter(np.ones(3, np.float32), "w")
    pl = nnx.ParameterList([np.zeros((2, 3), np.float32), shared])
    pl.append(np.ones(1, np.float32))
    assert pl[1] is shared and isinstance(pl[0], nnx.Parameter) and pl[0].shape == (2, 3)
    assert [n for n, _ in pl.named_parameters()] == ["0", "1", "2"]
    pd = nnx.ParameterDict({"w": shared})
    pd["b"] = np.zeros(2, np.float32)
    assert pd["w"] is shared and pd["b"].name == "b" and pd.keys() == ["w", "b"]
    assert "ParameterDict(\n  (w): Parameter(shape=(3,), dtype=float32)" in repr(pd)
    for bad in ([1.0, 2.0], nnx.Buffer(np.ones(2))):
        with pytest.raises(TypeError, match="must be an nnx.Parameter or an array"):
            pl.append(bad)
    owner = nnx.Module()
    owner.pl, owner.pd = pl, pd
    assert [n for n, _ in owner.named_parameters()] == ["pl.0", "pl.1", "pl.2", "pd.b"]


def test_holders_have_no_forward():
    for holder in (nnx.ModuleList(), nnx.ModuleDict(), nnx.ParameterList(), nnx.ParameterDict()):
        name = type(holder).__name__
        with pytest.raises(NotImplementedError, match=f"{name} has no forward of its own"):
            holder(np.ones(2))
        with pytest.raises(NotImplementedError, match="has no forward"):
            holder(nnx.Input("x"))  # nor a node of a Graph


# ---------------------------------------------------------------------------- found everywhere


def test_members_found_by_state_dict_to_and_summary():
    net = HolderNet()
    names = [n for n, _ in net.named_parameters()]
    assert names == [
        "blocks.0.weight",
        "blocks.0.bias",
        "blocks.2.weight",
        "blocks.2.bias",
        "heads.a.weight",
        "heads.a.bias",
        "heads.b.weight",
        "heads.b.bias",
        "gain.a",
        "scales.0",
    ]
    state = net.state_dict()
    other = HolderNet(rng=7).load_state_dict(state)
    x = _x().astype(np.float32)
    np.testing.assert_array_equal(other(x), net(x))
    net.to("strict:device1", dtype="float64")
    devices = {str(p.value.device) for p in net.parameters()}
    assert devices == {str(nnx.get_backend("strict:device1").device)}
    net.to("cpu", dtype="float32")
    np.testing.assert_allclose(net(x), other(x), rtol=1e-6)
    table = nnx.summary(net, (2, 5), print_fn=None)
    assert "blocks (ModuleList)" in table and "a (Conv1d)" in table
    assert f"Total params: {sum(int(np.prod(p.shape)) for p in net.parameters()):,}" in table


def test_save_load_and_checkpoint(tmp_path):
    net = HolderNet(rng=1)
    net.blocks.append(nnx.Identity())  # changed after construction: HolderNet's record misses it
    del net.blocks[3]
    path = nnx.save_model(tmp_path / "net.npz", net)
    again = nnx.load_model(path, device="strict")
    x = _x().astype(np.float32)
    np.testing.assert_allclose(nnx.to_numpy(again(nnx.get_backend("strict").asarray(x))), net(x))
    opt = nnx.optim.Adam(net.parameters(), lr=0.1)
    net.zero_grad()
    net(x)
    net.backward(np.ones((2, 4, 5), np.float32))
    opt.step()
    nnx.save_checkpoint(tmp_path / "ck.npz", net, opt, epoch=1)
    restored = HolderNet(rng=5)
    opt2 = nnx.optim.Adam(restored.parameters(), lr=0.1)
    assert nnx.load_checkpoint(tmp_path / "ck.npz", restored, opt2)["epoch"] == 1
    np.testing.assert_array_equal(restored(x), net(x))
    assert nnx.load_model(tmp_path / "ck.npz").blocks[0].in_channels == 2


def test_holders_filled_after_creation_save_and_load(tmp_path):
    ml = nnx.ModuleList()
    ml.append(nnx.Linear(3, 4, rng=0))
    ml.extend([nnx.ReLU(), nnx.Linear(4, 2, rng=1)])
    ml.insert(1, nnx.Tanh())
    md = nnx.ModuleDict()
    md["enc"] = ml[0]  # the same module under two holders: rebuilt once, shared
    md["dec"] = nnx.Linear(2, 3, rng=2)
    pl = nnx.ParameterList()
    pl.append(np.arange(6, dtype=np.float64).reshape(2, 3))
    pd = nnx.ParameterDict()
    pd["t"] = pl[0]  # tied
    pd["u"] = np.ones(4, np.float32)
    for i, holder in enumerate((ml, md, pl, pd)):
        again = nnx.load_model(nnx.save_model(os.path.join(tmp_path, f"h{i}.npz"), holder))
        assert type(again) is type(holder) and len(again) == len(holder)
        saved, loaded = holder.state_dict(), again.state_dict()
        assert list(loaded) == list(saved)
        for k, v in saved.items():
            np.testing.assert_array_equal(loaded[k], v)
            assert loaded[k].dtype == v.dtype
    assert [type(m).__name__ for m in ml] == ["Linear", "Tanh", "ReLU", "Linear"]
    again = nnx.load_model(nnx.save_model(tmp_path / "md.npz", md))
    assert again.keys() == ["enc", "dec"] and again["enc"].out_features == 4
    again = nnx.load_model(nnx.save_model(tmp_path / "pd.npz", pd))
    assert again["t"].shape == (2, 3) and again["t"].dtype == np.float64


def test_a_graph_node_holding_a_module_list():
    x_in = nnx.Input("x")
    net = HolderNet(rng=2)
    graph = nnx.Graph(x_in, nnx.Tanh()(net(x_in, name="body")))
    assert [n for n, _ in graph.named_parameters()][0] == "body.blocks.0.weight"
    x = _x()
    assert nnx.gradcheck(graph, x).ok


@nnx.register_module(name="tests.LoopNet")
class LoopNet(nnx.Module):
    """``y = f(f(x))`` with ``f`` the members of a ModuleList run in order (each called twice)."""

    def __init__(self):
        self.layers = nnx.ModuleList([nnx.Linear(2, 2, rng=0), nnx.Tanh()])

    def forward(self, x):
        self._calls = []
        for _ in range(2):
            for layer in self.layers:
                x = layer(x)
                self._calls.append((layer, capture_call_state(layer)))
        return x

    def backward(self, grad_out, need_input_grad=True):
        for layer, state in reversed(self._calls):
            restore_call_state(state)
            grad_out = call_backward(layer, grad_out, True)
        restore_final_state([state for _, state in self._calls])
        return grad_out


def test_reused_members_accumulate_gradients(backend):
    result = nnx.gradcheck(LoopNet(), _x(backend, (3, 2)))
    assert result.ok, result


def test_reused_members_of_a_bigger_model_accumulate_gradients():
    result = nnx.gradcheck(HolderNet(rng=4), _x())
    assert result.ok, result


@pytest.mark.torch
@pytest.mark.parametrize(
    "backend", ["numpy", "strict:device1", pytest.param("jax", marks=pytest.mark.slow)]
)
def test_holder_model_against_pytorch(backend):
    import torch

    from tests.layers.torch_oracle import compare

    class TorchNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            c = 2
            self.blocks = torch.nn.ModuleList(
                [torch.nn.Conv1d(c, c, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv1d(c, c, 1)]
            )
            self.heads = torch.nn.ModuleDict(
                {"a": torch.nn.Conv1d(c, 1, 1), "b": torch.nn.Conv1d(c, 3, 1)}
            )
            self.gain = torch.nn.ParameterDict({"a": torch.ones(1, 1, 1)})
            self.scales = torch.nn.ParameterList([torch.ones(1, 3, 1)])

        def forward(self, x):
            for _ in range(2):
                for layer in self.blocks:
                    x = layer(x)
            a = self.heads["a"](x) * self.gain["a"]
            return torch.cat([a, self.heads["b"](x) * self.scales[0]], dim=1)

    compare(HolderNet(rng=3), TorchNet(), (3, 2, 6), backend=backend, steps=2)
