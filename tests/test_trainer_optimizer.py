"""The Trainer refuses an optimizer that would leave its model untrained: one holding none of the
model's parameters (built for another model: the loss stayed flat, no warning), or holding
parameters the model does not have."""

import numpy as np
import pytest

import nnx
from nnx.optim import SGD, Adam


def _model(seed=0):
    return nnx.Sequential(nnx.Linear(4, 8, rng=seed), nnx.ReLU(), nnx.Linear(8, 3, rng=seed))


def test_an_optimizer_of_another_model_is_refused_in_one_line():
    model, other = _model(0), _model(1)
    with pytest.raises(ValueError, match="holds none of the model's parameters") as err:
        nnx.Trainer(model, nnx.CrossEntropyLoss(), SGD(other.parameters(), lr=0.1))
    assert "\n" not in str(err.value) and "SGD(model.parameters(), ...)" in str(err.value)


def test_an_optimizer_with_extra_parameters_is_refused_in_one_line():
    model, other = _model(0), _model(1)
    params = list(model.parameters()) + list(other[2].parameters())
    with pytest.raises(ValueError, match=r"holds 2 parameter\(s\) the model does not have") as err:
        nnx.Trainer(model, nnx.CrossEntropyLoss(), Adam(params, lr=0.1))
    assert "\n" not in str(err.value) and "(8, 3)" in str(err.value)


def test_an_optimizer_of_some_of_the_parameters_trains_them():
    model = _model(0)
    head = list(model[2].parameters())  # fine-tuning the last layer only
    trainer = nnx.Trainer(model, nnx.CrossEntropyLoss(), SGD(head, lr=0.1))
    before = np.array(model[0].weight.value, copy=True)
    x = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    trainer.fit((x, np.arange(16) % 3), epochs=1, batch_size=8)
    np.testing.assert_array_equal(model[0].weight.value, before)
