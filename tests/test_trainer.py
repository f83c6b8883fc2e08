"""The Trainer: fitting on every backend, callbacks, checkpoints, exact resume, NaN guard."""

import csv
import json
import sys

import numpy as np
import pytest

import nnx
from nnx import callbacks as cbs
from nnx.data import ArrayDataset, train_val_split
from nnx.datasets import load_dataset
from nnx.optim import SGD, Adam, ExponentialLR

TIMING = ("seconds", "samples_per_s")


def _mlp(n_in=2, hidden=16, n_out=3, dropout=0.0, seed=0):
    layers = [nnx.Linear(n_in, hidden, rng=seed, init="he_normal"), nnx.ReLU()]
    if dropout:
        layers.append(nnx.Dropout(dropout))
    layers.append(nnx.Linear(hidden, n_out, rng=seed + 1))
    return nnx.Sequential(*layers)


def _vertical():
    data = load_dataset("vertical", seed=0)
    return data.train, data.test


def _trainer(device="cpu", dropout=0.0, callbacks=(), lr=0.05, schedule=False, **kw):
    model = _mlp(dropout=dropout)
    opt = Adam(model.parameters(), lr=lr)
    sched = ExponentialLR(opt, gamma=0.9) if schedule else None
    return nnx.Trainer(
        model,
        nnx.CrossEntropyLoss(),
        opt,
        device=device,
        callbacks=callbacks,
        seed=7,
        schedule=sched,
        progress=False,
        **kw,
    )


def test_fit_on_every_backend(backend):
    train, test = _vertical()
    trainer = _trainer(backend, dropout=0.1)
    history = trainer.fit(train, test, epochs=15, batch_size=32)
    assert len(history) == 15 and history["epoch"] == list(range(1, 16))
    assert {
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "lr",
        "seconds",
        "samples_per_s",
    } <= set(history.keys())
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]
    assert history["val_accuracy"][-1] > 0.9
    assert all(backend.owns(p.value) for p in trainer.model.parameters())
    assert trainer.model.training  # train mode restored after validation
    pred = trainer.predict(test[0])
    assert backend.owns(pred) and tuple(pred.shape) == (len(test[0]), 3)
    result = trainer.evaluate(test)
    assert result["accuracy"] == pytest.approx(history["val_accuracy"][-1])


def test_float32_stays_float32(backend):
    train, _ = _vertical()
    trainer = _trainer(backend)
    trainer.fit(train, epochs=1, batch_size=64)
    assert all(p.value.dtype == backend.xp.float32 for p in trainer.model.parameters())
    assert trainer.predict(train[0]).dtype == backend.xp.float32


def test_mlp_on_digits_reaches_95_percent():
    pytest.importorskip("sklearn")
    data = load_dataset("digits")
    train, val = train_val_split(ArrayDataset(*data.train), 0.2, seed=0)
    model = nnx.Sequential(
        nnx.Linear(64, 128, rng=0, init="he_normal"), nnx.ReLU(), nnx.Linear(128, 10, rng=1)
    )
    trainer = nnx.Trainer(
        model,
        nnx.CrossEntropyLoss(),
        Adam(model.parameters(), lr=1e-3),
        device="cpu",
        progress=False,
    )
    history = trainer.fit(train, val, epochs=30, batch_size=32)
    assert history["val_accuracy"][-1] >= 0.95
    assert trainer.evaluate(data.test)["accuracy"] >= 0.95


def test_one_host_sync_per_epoch(monkeypatch):
    import nnx.losses.classification
    import nnx.training.data_checks
    import nnx.training.totals

    calls = []  # every host read of the Trainer's modules (data checks, epoch totals)
    for module in (
        nnx.training.data_checks,
        nnx.training.totals,
        nnx.losses.classification,
        nnx.metrics,
    ):
        real = module.to_numpy
        monkeypatch.setattr(module, "to_numpy", lambda x, real=real: calls.append(1) or real(x))
    train, test = _vertical()
    trainer = _trainer("strict:device1")
    trainer.fit(train, test, epochs=3, batch_size=8)  # 30 batches per epoch
    # the label check and the NaN check of the data once, then train + validation per epoch
    assert len(calls) == 2 + 3 * 2


def _copy_of(history):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in history]


@pytest.mark.parametrize(
    "device",
    [
        "numpy",
        "strict:device1",
        pytest.param(
            "jax",
            marks=pytest.mark.skipif(
                not nnx.backend.backend_available("jax")[0], reason="JAX is not installed"
            ),
        ),
    ],
)
def test_exact_resume(tmp_path, device):
    """4 epochs straight == 2 epochs, checkpoint, a fresh Trainer resuming for 2 more."""
    train, test = _vertical()
    kw = dict(dropout=0.3, schedule=True)
    straight = _trainer(device, **kw)
    straight.fit(train, test, epochs=4, batch_size=25)  # 240 samples: a partial last batch

    first = _trainer(device, **kw)
    first.fit(train, test, epochs=2, batch_size=25)
    first.save_checkpoint(tmp_path / "half.npz")
    resumed = _trainer(device, **kw)
    resumed.model.to(dtype="float32")
    resumed.load_checkpoint(tmp_path / "half.npz")
    assert resumed.epoch == 2 and resumed.step == first.step
    resumed.fit(train, test, epochs=4, batch_size=25)

    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert _copy_of(straight.history) == _copy_of(resumed.history)
    assert resumed.optimizer.lr == straight.optimizer.lr


@pytest.mark.parametrize("device", ["numpy", "strict", "strict:device1"])
def test_early_stopping_restores_the_best_epoch(device):
    train, test = _vertical()
    snapshots = []

    class Snapshot(cbs.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            snapshots.append(trainer.model.state_dict())

    # train_loss falls every epoch, so in "max" mode epoch 1 stays the best
    stopper = cbs.EarlyStopping(monitor="train_loss", mode="max", patience=2)
    trainer = _trainer(device, callbacks=[Snapshot(), stopper])
    history = trainer.fit(train, test, epochs=20, batch_size=32)
    assert len(history) == 3 and stopper.stopped_epoch == 3 and stopper.best_epoch == 1
    for k, v in trainer.model.state_dict().items():
        np.testing.assert_array_equal(v, snapshots[0][k])


def test_early_stopping_min_delta_and_bad_monitor():
    train, test = _vertical()
    stopper = cbs.EarlyStopping(monitor="val_loss", patience=1, min_delta=1e9)
    assert len(_trainer(callbacks=[stopper]).fit(train, test, epochs=10)) == 2
    with pytest.raises(KeyError, match="give fit\\(\\) validation data"):
        _trainer(callbacks=[cbs.EarlyStopping()]).fit(train, epochs=2)
    with pytest.raises(ValueError, match="patience must be a positive integer"):
        cbs.EarlyStopping(patience=0)


@pytest.mark.parametrize("device", ["numpy", "strict", "strict:device1"])
def test_checkpoints_and_logs(tmp_path, device):
    train, test = _vertical()
    ckpt = cbs.ModelCheckpoint(tmp_path, monitor="val_accuracy")
    trainer = _trainer(
        device,
        callbacks=[
            ckpt,
            cbs.CSVLogger(tmp_path / "h.csv"),
            cbs.JSONLinesLogger(tmp_path / "h.jsonl"),
        ],
    )
    history = trainer.fit(train, test, epochs=5, batch_size=32)
    rows = list(csv.DictReader((tmp_path / "h.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    assert float(rows[-1]["val_loss"]) == history["val_loss"][-1]
    lines = [json.loads(s) for s in (tmp_path / "h.jsonl").read_text().splitlines()]
    assert lines == history.records
    last = nnx.io.checkpoint.read_record(tmp_path / "last.npz")
    best = nnx.io.checkpoint.read_record(tmp_path / "best.npz")
    assert last["epoch"] == 5
    best_epoch = 1 + int(np.argmax(history["val_accuracy"]))  # first of equal bests
    assert best["epoch"] == best_epoch


@pytest.mark.parametrize("device", ["numpy", "strict", "strict:device1"])
def test_nan_guard_names_the_epoch_and_keeps_the_last_good_checkpoint(tmp_path, device):
    train, test = _vertical()

    class Poison(cbs.Callback):
        def on_epoch_begin(self, trainer, epoch):
            if epoch == 2:
                w = trainer.model[0].weight
                w.value = w.value * float("nan")

    trainer = _trainer(device, callbacks=[Poison(), cbs.ModelCheckpoint(tmp_path)])
    with pytest.raises(nnx.NonFiniteLossError, match=r"became nan at epoch 3, batch 1 of 8"):
        trainer.fit(train, test, epochs=5, batch_size=32)
    record = nnx.io.checkpoint.read_record(tmp_path / "last.npz")
    assert record["epoch"] == 2 and len(trainer.history) == 2


@pytest.mark.parametrize("device", ["numpy", "strict", "strict:device1"])
def test_interrupt_saves_a_checkpoint_that_resumes_exactly(tmp_path, device):
    train, test = _vertical()

    class CtrlC(cbs.Callback):
        def on_batch_end(self, trainer, batch):
            if trainer.epoch == 2 and batch == 3:
                raise KeyboardInterrupt

    straight = _trainer(device, dropout=0.2)
    straight.fit(train, test, epochs=4, batch_size=32)
    interrupted = _trainer(
        device, dropout=0.2, callbacks=[CtrlC(), cbs.ModelCheckpoint(tmp_path / "a")]
    )
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(train, test, epochs=4, batch_size=32)
    resumed = _trainer(device, dropout=0.2)
    resumed.load_checkpoint(tmp_path / "a" / "last.npz")
    assert resumed.epoch == 2
    resumed.fit(train, test, epochs=4, batch_size=32)
    for k, v in straight.model.state_dict().items():
        np.testing.assert_array_equal(v, resumed.model.state_dict()[k])

    early = _trainer(device, callbacks=[CtrlC(), cbs.ModelCheckpoint(tmp_path / "b")])
    early.epoch = 2  # interrupted during the first epoch of this fit: the start state is saved
    with pytest.raises(KeyboardInterrupt):
        early.fit(train, test, epochs=4, batch_size=32)
    assert nnx.io.checkpoint.read_record(tmp_path / "b" / "last.npz")["epoch"] == 2


def test_resume_into_a_different_architecture_is_refused(tmp_path):
    train, _ = _vertical()
    trainer = _trainer()
    trainer.fit(train, epochs=1)
    trainer.save_checkpoint(tmp_path / "c.npz")
    narrow = _mlp(hidden=8)
    other = nnx.Trainer(narrow, nnx.CrossEntropyLoss(), SGD(narrow.parameters()), device="cpu")
    with pytest.raises(nnx.CheckpointError, match="different architecture"):
        other.load_checkpoint(tmp_path / "c.npz")


def test_dropout_is_off_during_evaluation():
    train, test = _vertical()
    trainer = _trainer(dropout=0.5)
    trainer.fit(train, epochs=1)
    assert trainer.evaluate(test) == trainer.evaluate(test)
    assert trainer.model.training


def test_regression_with_sgd_and_clipping():
    data = load_dataset("sine")
    model = nnx.Sequential(nnx.Linear(1, 32, rng=0), nnx.Tanh(), nnx.Linear(32, 1, rng=1))
    trainer = nnx.Trainer(
        model,
        nnx.MSELoss(),
        SGD(model.parameters(), lr=0.1, momentum=0.9),
        device="cpu",
        metrics=("mae",),
        clip_norm=1.0,
        progress=False,
    )
    history = trainer.fit(data.train, data.test, epochs=30, batch_size=16)
    assert history["val_mae"][-1] < 0.5 * history["val_mae"][0]
    assert history["val_loss"][-1] < 0.05


def test_bad_input_is_a_clear_error():
    train, _ = _vertical()
    with pytest.raises(
        ValueError, match="class labels run from 0 to 2, but the model has 2 outputs"
    ):
        model = _mlp(n_out=2)
        nnx.Trainer(
            model, nnx.CrossEntropyLoss(), SGD(model.parameters()), device="cpu", progress=False
        ).fit(train, epochs=1)
    with pytest.raises(TypeError, match="loss must be an nnx.Loss, got a str"):
        model = _mlp()
        nnx.Trainer(model, "mse", SGD(model.parameters()))
    with pytest.raises(TypeError, match="ArrayDataset or an \\(x, y\\) pair"):
        _trainer().fit([1, 2, 3])


def test_progress_bar_shows_epochs_and_metrics(monkeypatch):
    import io

    import tqdm.auto

    real = tqdm.auto.tqdm
    # a StringIO is not a terminal, so the bar would stay quiet: switch it on for this test
    monkeypatch.setattr(tqdm.auto, "tqdm", lambda *a, **k: real(*a, **{**k, "disable": False}))
    train, test = _vertical()
    stream = io.StringIO()
    bar = cbs.ProgressBar(stream=stream)
    _trainer(callbacks=[bar]).fit(train, test, epochs=2, batch_size=32)
    text = stream.getvalue()
    assert "epoch 2/2" in text and "val acc" in text and "16/16" in text
    assert bar._bar is None  # closed at the end


def test_quiet_progress_bar_prints_nothing():
    import io

    train, _ = _vertical()
    stream = io.StringIO()
    _trainer(callbacks=[cbs.ProgressBar(quiet=True, stream=stream)]).fit(train, epochs=1)
    assert stream.getvalue() == ""


def test_curves_png(tmp_path, caplog, monkeypatch):
    train, test = _vertical()
    trainer = _trainer()
    history = trainer.fit(train, test, epochs=3)
    pytest.importorskip("matplotlib")
    path = nnx.save_curves(history, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert nnx.save_curves(history, tmp_path / "other.png") is None
    assert "matplotlib is not installed" in caplog.text
    assert not (tmp_path / "other.png").exists()


def test_non_finite_weights_are_never_checkpointed_and_the_message_names_the_last_good(tmp_path):
    """The loss can stay finite while a step leaves inf weights: ModelCheckpoint refuses to save
    them, and the error names the last checkpoint that holds finite state."""
    train, test = _vertical()

    class Overflow(cbs.Callback):  # runs before ModelCheckpoint (order 10)
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 1:
                w = trainer.model[0].weight
                w.value = w.value * float("inf")

    trainer = _trainer(callbacks=[Overflow(), cbs.ModelCheckpoint(tmp_path)])
    with pytest.raises(nnx.NonFiniteLossError) as info:
        trainer.fit(train, test, epochs=4, batch_size=32)
    message = str(info.value)
    assert "non-finite in epoch 2" in message and "holds infinity" in message
    assert f"The last good checkpoint is {tmp_path / 'last.npz'} (epoch 1)" in message
    meta, arrays = nnx.io.checkpoint.read_checkpoint(tmp_path / "last.npz")
    assert meta["components"]["counters"]["epoch"] == 1 and all(
        np.all(np.isfinite(a)) for a in arrays.values()
    )
    with pytest.raises(nnx.io.checkpoint.NonFiniteStateError, match="holds infinity"):
        trainer.save_checkpoint(tmp_path / "other.npz")
    assert not (tmp_path / "other.npz").exists()


class _NaNWhenEvaluating(nnx.Module):
    def forward(self, x):
        return x if self.training else x * float("nan")

    def backward(self, grad_out):
        return grad_out


def test_a_nan_validation_loss_stops_training():
    train, test = _vertical()
    model = nnx.Sequential(_mlp(), _NaNWhenEvaluating())
    trainer = nnx.Trainer(
        model, nnx.CrossEntropyLoss(), Adam(model.parameters()), device="cpu", progress=False
    )
    with pytest.raises(
        nnx.NonFiniteLossError,
        match=r"validation loss became nan at epoch 1; .*\. No checkpoint was written",
    ):
        trainer.fit(train, test, epochs=3)
    assert trainer.epoch == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_in_the_data_is_named_as_such(bad):
    x, y = _vertical()[0]
    x = np.array(x, copy=True)
    x[3, 1] = bad
    with pytest.raises(ValueError, match="the training inputs hold NaN or infinite values"):
        _trainer().fit((x, y), epochs=1)
    from nnx.training.data_checks import check_finite_data

    x[3, 1], x[4, 0] = np.finfo(np.float32).max, -np.finfo(np.float32).max  # finite: fine
    check_finite_data(("training", nnx.data.ArrayDataset(x, y), (x, y)))


def test_bad_counts_empty_data_and_complex_inputs_are_clear_errors():
    (x, y), _ = _vertical()
    trainer = _trainer()
    for epochs in (2.7, -1, True):
        with pytest.raises(ValueError, match=r"Trainer.fit: epochs must be a whole number >= 0"):
            trainer.fit((x, y), epochs=epochs)
    with pytest.raises(ValueError, match="Trainer: seed must be a whole number >= 0, got -3"):
        model = _mlp()
        nnx.Trainer(model, nnx.CrossEntropyLoss(), Adam(model.parameters()), seed=-3)
    empty = (x[:0], y[:0])
    with pytest.raises(ValueError, match="the training data has 0 rows"):
        trainer.fit(empty, epochs=1)
    with pytest.raises(ValueError, match="the validation data has 0 rows"):
        trainer.fit((x, y), empty, epochs=1)
    with pytest.raises(ValueError, match="Trainer.evaluate: the data has 0 rows"):
        trainer.evaluate(empty)
    with pytest.raises(ValueError, match="Trainer.predict: x has 0 rows"):
        trainer.predict(x[:0])
    with pytest.raises(
        TypeError, match=r"the inputs are complex \(complex64\); nnx trains on real numbers"
    ):
        trainer.fit((np.asarray(x) + 1j, y), epochs=1)
    with pytest.raises(TypeError, match="the inputs are complex"):
        trainer.predict(np.asarray(x) * 1j)


@pytest.mark.parametrize("order", [-20, 5, 15, 25])
def test_ctrl_c_during_epoch_end_callbacks_never_leaves_the_log_ahead_of_last_npz(tmp_path, order):
    """Wherever Ctrl-C falls among the epoch-end callbacks, history.csv holds no epoch that
    last.npz lacks (a resume refuses a checkpoint older than the log)."""
    train, _ = _vertical()

    class CtrlC(cbs.Callback):
        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == 1:
                raise KeyboardInterrupt

    CtrlC.order = order
    callbacks = [CtrlC(), cbs.ModelCheckpoint(tmp_path), cbs.CSVLogger(tmp_path / "history.csv")]
    trainer = _trainer(callbacks=callbacks)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(train, epochs=4, batch_size=64)
    saved = nnx.io.checkpoint.read_record(tmp_path / "last.npz")["epoch"]
    with open(tmp_path / "history.csv") as f:
        logged = len(list(csv.DictReader(f)))
    assert logged <= saved


class _Terminal:
    """A fake 80-column terminal: what tqdm writes, with isatty() True so the bar is drawn."""

    def __init__(self):
        import io

        self.buffer = io.StringIO()

    def write(self, text):
        return self.buffer.write(text)

    def flush(self):
        pass

    def isatty(self):
        return True


def test_progress_bar_fits_80_columns_with_a_20_column_bar_and_epoch_lines():
    import re

    train, test = _vertical()
    screen, log = _Terminal(), _Terminal()
    bar = cbs.ProgressBar(stream=screen, line_stream=log, ncols=80)
    _trainer(callbacks=[bar]).fit(train, test, epochs=12, batch_size=8)
    frames = [f for f in re.split(r"[\r\n]", screen.buffer.getvalue()) if "%|" in f]
    assert frames and any("val acc" in f for f in frames)  # abbreviated metrics shown
    for frame in frames:
        frame = frame.replace("\x1b[A", "")
        assert len(frame) <= 80, frame
        drawn = frame.split("|")[1]  # the bar between the two pipes
        assert len(drawn) >= 20, frame
    lines = log.buffer.getvalue().splitlines()
    assert [line.split("  ")[0] for line in lines] == [f"epoch {i}/12" for i in range(1, 13)]
    assert all(len(line) <= 80 and "val loss" in line and line.endswith("s") for line in lines)


def test_epoch_lines_wider_than_the_terminal_break_between_items():
    # with --metrics accuracy,f1,auroc a digits epoch line was 91 columns, cut mid-word by an
    # 80-column terminal; a log (not a terminal) keeps one line per epoch
    logs = {"train_loss": 0.5, "val_loss": 0.4, "val_accuracy": 0.9, "val_f1": 0.89,
            "val_auroc": 0.99, "seconds": 0.05}  # fmt: skip
    one = cbs.progress.epoch_line(12, 30, logs)
    assert "\n" not in one and len(one) > 80 and cbs.progress.epoch_line(12, 30, logs, 200) == one
    wrapped = cbs.progress.epoch_line(12, 30, logs, 80).splitlines()
    assert len(wrapped) == 2 and all(len(line) <= 80 for line in wrapped)
    assert wrapped[1].startswith(" " * len("epoch 12/30  ") + "val")
    assert " ".join(" ".join(wrapped).split()) == " ".join(one.split())
    train, test = _vertical()
    screen, log = _Terminal(), _Terminal()
    bar = cbs.ProgressBar(stream=screen, line_stream=log, ncols=40)
    _trainer(callbacks=[bar]).fit(train, test, epochs=2, batch_size=8)
    lines = log.buffer.getvalue().splitlines()
    assert len(lines) > 2 and all(len(line) <= 40 for line in lines), lines


def test_epoch_lines_alone_when_quiet_and_none_by_default_off_a_terminal(capsys):
    train, test = _vertical()
    _trainer(callbacks=[cbs.ProgressBar(quiet=True, lines=True)]).fit(train, test, epochs=2)
    out = capsys.readouterr()
    assert out.err == "" and out.out.startswith("epoch 1/2  train loss ")
    assert len(out.out.splitlines()) == 2
    _trainer(callbacks=[cbs.ProgressBar()]).fit(train, test, epochs=1)  # not a TTY: silent
    assert capsys.readouterr() == ("", "")
