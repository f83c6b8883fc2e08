"""Checkpoint components: any object with state_dict / load_state_dict (and optionally
check_state_dict) is saved and restored by name, all components checked before any loads."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.io.checkpoint import checkpoint_arrays, load_state, write_checkpoint
from nnx.training.history import History
from nnx.training.precision import LossScaler


class Ema:
    """A made-up component: an array and a count."""

    def __init__(self):
        self.average, self.count = np.zeros((2, 3)), 0

    def state_dict(self):
        return {"average": self.average.copy(), "count": self.count, "note": ["a", {"b": 1}]}

    def check_state_dict(self, state):
        if state["average"].shape != (2, 3) or state["count"] < 0:
            raise ValueError("Ema: bad state")

    def load_state_dict(self, state):
        self.average, self.count = state["average"], state["count"]


def _model(seed=0):
    return nnx.Sequential(nnx.Linear(3, 2, rng=seed))


def test_a_new_component_needs_only_its_own_state_dict(tmp_path):
    ema = Ema()
    ema.average += 1.5
    ema.count = 7
    write_checkpoint(tmp_path / "c.npz", checkpoint_arrays({"model": _model(), "ema": ema}))
    again, model = Ema(), _model(seed=1)
    load_state(tmp_path / "c.npz", {"model": model, "ema": again})
    np.testing.assert_array_equal(again.average, ema.average)
    assert again.count == 7
    np.testing.assert_array_equal(model[0].weight.value, _model()[0].weight.value)


def test_every_component_is_checked_before_any_is_loaded(tmp_path):
    ema = Ema()
    ema.count = -1  # its own check refuses it
    write_checkpoint(tmp_path / "c.npz", checkpoint_arrays({"model": _model(), "ema": ema}))
    model = _model(seed=1)
    before = model.state_dict()
    with pytest.raises(nnx.NnxFileError, match="the ema state does not fit: Ema: bad state"):
        load_state(tmp_path / "c.npz", {"model": model, "ema": Ema()})
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, before[key])


def test_a_component_missing_from_the_file_is_refused_unless_optional(tmp_path):
    write_checkpoint(tmp_path / "c.npz", checkpoint_arrays({"model": _model()}))
    with pytest.raises(nnx.NnxFileError, match="it holds no ema state"):
        load_state(tmp_path / "c.npz", {"model": _model(), "ema": Ema()})
    load_state(tmp_path / "c.npz", {"model": _model(), "ema": Ema()}, optional={"ema"})


@pytest.mark.parametrize(
    "records, message",
    [
        ([{"epoch": "x"}], "has epoch 'x'"),
        ([{"epoch": 1}, 5], "record 2 is not an object"),
        ("none", "not a list of records"),
    ],
)
def test_history_checks_its_record(records, message):
    history = History([{"epoch": 1, "train_loss": 0.5}])
    with pytest.raises((TypeError, ValueError), match=message):
        history.load_state_dict({"records": records})
    assert history["epoch"] == [1]


@pytest.mark.parametrize(
    "key, value", [("scale", -1.0), ("scale", "big"), ("good_steps", 1.5), ("dynamic", "yes")]
)
def test_the_loss_scaler_checks_its_record(key, value):
    scaler = LossScaler()
    state = {**scaler.state_dict(), key: value}
    with pytest.raises((TypeError, ValueError), match=key):
        scaler.load_state_dict(state)
    assert scaler.state_dict() == LossScaler().state_dict()
