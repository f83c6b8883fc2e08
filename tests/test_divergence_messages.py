"""The one line a diverging or NaN-initialised run ends with: advice that fits the case, and no
NumPy RuntimeWarning printed before it."""

import warnings

import numpy as np
import pytest

import nnx
from nnx.optim import SGD

X = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
Y = np.arange(32) % 3


def _trainer(lr=0.1, callbacks=(), **options):
    model = nnx.Sequential(nnx.Linear(4, 8, rng=0), nnx.ReLU(), nnx.Linear(8, 3, rng=1))
    opt = SGD(model.parameters(), lr=lr)
    return nnx.Trainer(
        model,
        nnx.CrossEntropyLoss(),
        opt,
        device="cpu",
        progress=False,
        callbacks=callbacks,
        **options,
    )


def test_nan_initial_weights_give_the_one_line_nan_message(tmp_path):
    trainer = _trainer(callbacks=[nnx.ModelCheckpoint(tmp_path)])
    trainer.model[0].weight.value[0, 0] = np.nan
    with pytest.raises(nnx.NonFiniteLossError) as err:
        trainer.fit((X, Y), epochs=1, batch_size=8)
    text = str(err.value)
    assert "\n" not in text and "before training" in text and "No checkpoint was written" in text
    assert "learning rate" not in text


def test_a_diverging_run_prints_no_runtime_warning_before_its_line():
    trainer = _trainer(lr=1e30)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(nnx.NonFiniteLossError, match="lower learning rate"):
            trainer.fit((X * 1e3, Y), epochs=3, batch_size=8)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], caught
    assert np.geterr()["over"] == "warn"  # the global state is as it was


def test_a_tiny_learning_rate_is_not_advised_lower():
    trainer = _trainer(lr=1e-9)
    with pytest.raises(nnx.NonFiniteLossError) as err:
        trainer.fit((X * 1e30, Y), epochs=1, batch_size=8)
    assert "lower learning rate" not in str(err.value) and "already 1e-09" in str(err.value)


def test_float16_overflow_says_so_and_does_not_advise_a_lower_tiny_lr():
    trainer = _trainer(lr=1e-9, precision="float16")
    with pytest.raises(nnx.NonFiniteLossError) as err:
        trainer.fit((X * 1e6, Y), epochs=1, batch_size=8)
    text = str(err.value)
    assert "float16" in text and "bfloat16" in text and "lower learning rate" not in text, text


def test_features_beyond_float32_say_so_not_nan():
    trainer = _trainer()
    big = X.astype(np.float64) * 1e39
    with pytest.raises(ValueError) as err:
        trainer.fit((big, Y), epochs=1, batch_size=8)
    text = str(err.value)
    assert "beyond float32's largest" in text and "NaN" not in text and "\n" not in text, text
    with pytest.raises(ValueError, match="the training inputs hold NaN or infinite values"):
        trainer.fit((np.full((32, 4), np.nan), Y), epochs=1, batch_size=8)
