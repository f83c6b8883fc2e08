"""The new schedules inside the Trainer: a monitored metric, per-batch cycles, exact resumes."""

import numpy as np
import pytest

import nnx
from nnx.optim import SGD, Adam, CosineAnnealingWarmRestarts, OneCycleLR, ReduceLROnPlateau

RNG = np.random.default_rng(0)
X = RNG.normal(size=(96, 4)).astype(np.float32)
Y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
TRAIN, VAL = (X[:64], Y[:64]), (X[64:], Y[64:])
BATCHES = 4  # 64 rows in batches of 16


def _trainer(kind):
    model = nnx.Sequential(nnx.Linear(4, 8, rng=0), nnx.ReLU(), nnx.Linear(8, 2, rng=1))
    if kind == "onecycle":
        opt = Adam(model.parameters(), lr=0.01)
        schedule, interval = OneCycleLR(opt, epochs=4, steps_per_epoch=BATCHES), "batch"
    elif kind == "plateau":
        opt = SGD(model.parameters(), lr=0.5, momentum=0.9)
        schedule, interval = ReduceLROnPlateau(opt, patience=0, factor=0.5), "epoch"
    else:
        opt = SGD(model.parameters(), lr=0.1)
        schedule, interval = CosineAnnealingWarmRestarts(opt, t_0=3, t_mult=2), "batch"
    return nnx.Trainer(
        model,
        nnx.CrossEntropyLoss(),
        opt,
        device="cpu",
        schedule=schedule,
        schedule_interval=interval,
        progress=False,
    )


@pytest.mark.parametrize("kind", ["onecycle", "plateau", "restarts"])
def test_two_epochs_saved_and_resumed_equal_four_straight(tmp_path, kind):
    straight = _trainer(kind)
    straight.fit(TRAIN, VAL, epochs=4, batch_size=16)
    first = _trainer(kind)
    first.fit(TRAIN, VAL, epochs=2, batch_size=16)
    first.save_checkpoint(tmp_path / "c.npz")
    resumed = _trainer(kind)
    resumed.load_checkpoint(tmp_path / "c.npz")
    resumed.fit(TRAIN, VAL, epochs=4, batch_size=16)
    assert resumed.history["lr"] == straight.history["lr"]
    assert resumed.history["train_loss"] == straight.history["train_loss"]
    assert resumed.optimizer.lr == straight.optimizer.lr
    for a, b in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        np.testing.assert_array_equal(nnx.to_numpy(a.value), nnx.to_numpy(b.value))


def test_plateau_follows_the_logged_metric():
    trainer = _trainer("plateau")
    history = trainer.fit(TRAIN, VAL, epochs=6, batch_size=16)
    schedule = trainer.schedule
    assert schedule.best == min(history["val_loss"])
    lrs = history["lr"]
    # patience 0: the rate halves after each epoch whose val_loss was no new best
    for i in range(1, len(lrs)):
        improved = history["val_loss"][i - 1] < min(
            history["val_loss"][: i - 1], default=np.inf
        ) * (1 - 1e-4)
        assert lrs[i] == (lrs[i - 1] if improved else lrs[i - 1] * 0.5)


def test_plateau_on_a_metric_never_logged_is_one_line():
    trainer = _trainer("plateau")
    with pytest.raises(ValueError, match="monitor 'val_loss' is not logged; the logs hold epoch"):
        trainer.fit(TRAIN, None, epochs=2, batch_size=16)
    opt = SGD(nnx.Linear(2, 2, rng=0).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="follows 'val_loss', logged once per epoch"):
        nnx.LRScheduler(ReduceLROnPlateau(opt), interval="batch")
