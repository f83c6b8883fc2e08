"""Custom losses, metrics and callbacks written with public helpers only."""

import numpy as np
import pytest

import nnx
from nnx.metrics import Metric
from nnx.optim import SGD
from tests.conftest import host_normal


class LogCoshLoss(nnx.Loss):
    """``L = mean(log(cosh(pred - target)))``; ``dL/dpred = tanh(pred - target) / N``."""

    def forward(self, pred, target):
        xp = self.check_same_shape_target(pred, target)
        d = pred - target
        self.save_grad(self.reduction_scale(pred) * xp.tanh(d))
        # log(cosh(d)) = |d| + log1p(exp(-2|d|)) - log(2), finite for any d
        a = xp.abs(d)
        return self.reduce(a + xp.log1p(xp.exp(-2.0 * a)) - 0.6931471805599453)


class MeanError(Metric):
    """Mean of ``pred - target`` (the bias of a regressor)."""

    name = "mean_error"

    def batch_stats(self, xp, pred, target):
        return xp.sum(pred - target), int(np.prod(pred.shape))


class CountBatches(nnx.Callback):
    def __init__(self):
        self.batches = 0
        self.epochs = []

    def on_batch_end(self, trainer, batch):
        self.batches += 1

    def on_epoch_end(self, trainer, epoch, logs):
        self.epochs.append(logs["train_mean_error"])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_custom_loss_from_public_helpers(backend, reduction):
    pred, target = host_normal((3, 2), seed=0), host_normal((3, 2), seed=1)
    loss = LogCoshLoss(reduction)
    result = nnx.gradcheck(loss, backend.asarray(pred), backend.asarray(target))
    assert result.ok, str(result)
    value = float(nnx.to_numpy(loss(backend.asarray(pred), backend.asarray(target))))
    expected = np.log(np.cosh(pred - target))
    assert value == pytest.approx(expected.mean() if reduction == "mean" else expected.sum())
    with pytest.raises(ValueError, match="LogCoshLoss: target shape"):
        loss(backend.asarray(pred), backend.asarray(target[:, :1]))


def test_custom_metric_and_callback_in_the_trainer():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], dtype=np.float32)) + 0.1
    model = nnx.Sequential(nnx.Linear(3, 1, rng=0))
    counter = CountBatches()
    trainer = nnx.Trainer(
        model,
        LogCoshLoss(),
        SGD(model.parameters(), lr=0.1),
        device="cpu",
        metrics=[MeanError(), "mse"],
        callbacks=[counter],
        progress=False,
    )
    history = trainer.fit((x, y), epochs=2, batch_size=8)
    assert counter.batches == 6 and len(counter.epochs) == 2
    pred = nnx.to_numpy(trainer.predict(x))
    assert trainer.evaluate((x, y))["mean_error"] == pytest.approx(
        float(np.mean(pred - y)), rel=1e-5
    )
    assert history.last["train_loss"] < history.records[0]["train_loss"]


def test_plain_functions_get_a_message_saying_how_to_wrap_them():
    def my_loss(pred, target):
        return ((pred - target) ** 2).mean()

    model = nnx.Sequential(nnx.Linear(3, 1, rng=0))
    with pytest.raises(TypeError, match=r"function 'my_loss'.*class MyLoss\(nnx.Loss\)"):
        nnx.Trainer(model, my_loss, SGD(model.parameters()))
    with pytest.raises(TypeError, match="save_grad"):
        nnx.gradcheck(my_loss, np.ones(3), np.ones(3))
    with pytest.raises(TypeError, match="Metric subclass that implements batch_stats"):
        nnx.Trainer(model, nnx.MSELoss(), SGD(model.parameters()), metrics=[my_loss])


def test_old_private_names_still_work():
    class OldStyle(nnx.Loss):
        def forward(self, pred, target):
            xp = self._check_same_shape_target(pred, target)
            self._grad = self._scale(pred) * (pred - target)
            return self._reduce(xp, 0.5 * (pred - target) ** 2)

    class OldMetric(Metric):
        name = "old"

        def _batch(self, xp, pred, target):
            return xp.sum(pred), 1

    assert nnx.gradcheck(OldStyle(), np.ones((2, 2)), np.zeros((2, 2))).ok
    m = OldMetric()
    m.update(np.ones(3), np.ones(3))
    assert m.compute() == 3.0
