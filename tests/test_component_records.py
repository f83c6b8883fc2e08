"""Crafted loss-scaler and history records are refused in one line before anything changes: a
scale of NaN or 1e300 skipped every step, 0 or 1e-300 ended in ZeroDivisionError, missing keys in
KeyError; the scale itself stays within the range a record may hold."""

import math

import pytest

from nnx.training.precision import MAX_SCALE, MIN_SCALE, LossScaler

GOOD = LossScaler().state_dict()


@pytest.mark.parametrize(
    "change",
    [
        {"scale": math.nan},
        {"scale": 1e300},
        {"scale": 0.0},
        {"scale": 1e-300},
        {"scale": math.inf},
        {"growth_factor": 1.0},
        {"backoff_factor": 1.5},
        {"growth_interval": 0},
        {"good_steps": -1},
        {"dynamic": 1},
        {"extra": 1},
    ],
    ids=str,
)
def test_a_crafted_field_is_refused_in_one_line(change):
    scaler = LossScaler()
    before = scaler.state_dict()
    with pytest.raises((ValueError, TypeError)) as err:
        scaler.load_state_dict({**GOOD, **change})
    assert "\n" not in str(err.value) and str(err.value).startswith("LossScaler: ")
    assert scaler.state_dict() == before


@pytest.mark.parametrize("key", sorted(GOOD))
def test_a_missing_key_is_named(key):
    state = {k: v for k, v in GOOD.items() if k != key}
    with pytest.raises(ValueError, match=rf"the state lacks \['{key}'\]"):
        LossScaler().load_state_dict(state)


def test_the_scale_stays_within_what_a_record_may_hold():
    low = LossScaler(init_scale=MIN_SCALE * 2)
    for _ in range(5):
        low.update(True)
    assert low.scale == MIN_SCALE
    high = LossScaler(init_scale=MAX_SCALE / 2, growth_interval=1)
    for _ in range(5):
        high.update(False)
    assert high.scale == MAX_SCALE
    LossScaler().load_state_dict(low.state_dict())
    LossScaler().load_state_dict(high.state_dict())


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"epoch": 1, "train_loss": 0.5}, "has no 'seconds'"),
        ({"epoch": 1, "seconds": "x"}, "has seconds 'x', not a number"),
        ({"epoch": 1, "seconds": 1.0, "train_loss": [1]}, "has train_loss"),
    ],
)
def test_a_history_record_the_run_could_not_finish_with_is_refused(record, message):
    """``{"epoch": 1}`` without ``seconds`` loaded, then the run died at its end with
    ``KeyError: 'seconds'`` and wrote a garbage row."""
    from nnx.training.history import History

    history = History([{"epoch": 1, "seconds": 1.0}])
    with pytest.raises((TypeError, ValueError), match=message) as err:
        history.load_state_dict({"records": [record]})
    assert "\n" not in str(err.value) and history.records == [{"epoch": 1, "seconds": 1.0}]
