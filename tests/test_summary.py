"""nnx.core.summary: layers, output shapes, parameter counts and sizes."""

import math

import numpy as np
import pytest

import nnx


def _rows(table):
    lines = table.splitlines()
    return lines[2 : lines.index(lines[1], 2)]  # between the two rules


def test_mlp_table_on_every_backend(backend):
    model = nnx.models.build_model("mlp", (1, 4, 4), 3, hidden=[5]).to(backend)
    model.train()
    lines = []
    table = nnx.summary(model, (1, 4, 4), print_fn=lines.append)
    assert lines == [table]
    rows = _rows(table)
    assert rows[0].split() == ["Sequential", "(N,", "3)", "-", "-"]
    assert rows[1].split() == ["0", "(Flatten)", "(N,", "16)", "-", "-"]
    assert rows[2].split() == ["1", "(Linear)", "(N,", "5)", "85", "340", "B"]
    assert rows[4].split() == ["3", "(Linear)", "(N,", "3)", "18", "72", "B"]
    assert "Total params: 103 (412 B)" in table and "Trainable params: 103" in table
    assert model.training and all("forward" not in vars(m) for m in model.modules())


def test_buffers_float64_and_shared_modules():
    block = nnx.Linear(4, 4, rng=0)
    model = nnx.Sequential(block, nnx.Tanh(), block).to(dtype="float64")
    table = nnx.summary(model, (4,), print_fn=None)
    assert "Total params: 20 (160 B)" in table  # the shared block counted once
    if hasattr(nnx, "BatchNorm1d"):
        norm = nnx.Sequential(nnx.Linear(3, 6, rng=0), nnx.BatchNorm1d(6))
        table = nnx.summary(norm, (3,), print_fn=None)
        buffers = sum(math.prod(b.shape) for b in norm.buffers())
        assert f"Non-trainable values (buffers): {buffers}" in table
        assert "Total params: 36" in table


def test_tuple_outputs_and_several_inputs():
    class Split(nnx.Module):
        def forward(self, x):
            return x[:, :2], x[:, 2:]

    class Join(nnx.Module):
        def __init__(self):
            self.split = Split()

        def forward(self, a, b):
            return self.split(a * b)

    table = nnx.summary(Join(), [(5,), (5,)], print_fn=None)
    assert "(N, 2), (N, 3)" in table


def test_the_batch_axis_is_found_wherever_it_is():
    # an LSTM's states are (layers, N, hidden): the batch axis was shown as its size, 2, and a
    # first axis of 2 layers as N
    table = nnx.summary(nnx.LSTM(3, 4, num_layers=2, batch_first=True, rng=0), (5, 3))
    assert "(N, 5, 4), (2, N, 4), (2, N, 4)" in table, table


def test_input_shape_from_the_first_layer(capsys):
    # Keras' model.summary() takes no shape; here it was a TypeError about a missing argument
    mlp = nnx.Sequential(nnx.Linear(3, 4, rng=0), nnx.ReLU(), nnx.Linear(4, 2, rng=1))
    assert nnx.summary(mlp) == nnx.summary(mlp, (3,))
    x = np.random.default_rng(0).normal(size=(10, 1, 2, 2)).astype(np.float32)
    run_like = nnx.Sequential(nnx.Standardize((1, 2, 2)).fit(x), nnx.Flatten(), nnx.Linear(4, 2))
    run_like.summary()
    assert "(N, 1, 2, 2)" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"give input_shape.*the first layer, Conv2d, does not"):
        nnx.summary(nnx.Sequential(nnx.Conv2d(1, 2, 3, rng=0)))


def test_bad_use_is_a_clear_error():
    model = nnx.Sequential(nnx.Linear(4, 2, rng=0))
    with pytest.raises(ValueError, match="input_shape must be the shape of one sample"):
        nnx.summary(model, (0, 4))
    with pytest.raises(ValueError, match=r"forward pass on input shape \(3,\) failed"):
        nnx.summary(model, (3,), print_fn=None)
    assert "forward" not in vars(model[0])
    with pytest.raises(TypeError, match="must be an nnx.Module"):
        nnx.summary(np.zeros(3), (3,))


def test_summary_returns_and_module_summary_prints(capsys):
    """nnx.summary returns the table without printing; Module.summary prints it, returns None
    (Keras' habits), so a REPL shows the table once either way."""
    model = nnx.Sequential(nnx.Linear(3, 2, rng=0), nnx.ReLU())
    table = nnx.summary(model, (3,))
    assert capsys.readouterr().out == ""
    assert model.summary((3,)) is None
    assert capsys.readouterr().out == table + "\n"
    assert "Total params: 8" in table
