"""Mid-epoch checkpoints (ModelCheckpoint(every_n_steps)) resume exactly: training N steps,
stopping (Ctrl-C), and resuming gives bitwise the parameters and history of a run straight
through, for every kind of sampler the Trainer has; what cannot resume exactly is refused."""

import numpy as np
import pytest

import nnx
from nnx.data import ArrayDataset, DataLoader
from nnx.io.checkpoint import CheckpointError, read_record
from nnx.training.callbacks import Callback, ModelCheckpoint

X = np.random.default_rng(0).standard_normal((45, 4)).astype(np.float32)
Y = np.random.default_rng(1).integers(0, 3, 45)


class Samples:
    """A map-style dataset (one sample per index)."""

    def __len__(self):
        return len(X)

    def __getitem__(self, i):
        return X[i], Y[i]


class StopAt(Callback):
    """Ctrl-C once ``step`` optimizer steps are done (after the checkpoint callback ran)."""

    order = 20

    def __init__(self, step):
        self.at = step

    def on_batch_end(self, trainer, batch):
        if trainer.stepped and trainer.step == self.at:
            raise KeyboardInterrupt


def trainer(callbacks=(), accumulate=1, schedule=False, device="numpy", metrics=("accuracy",)):
    model = nnx.Sequential(
        nnx.Linear(4, 8, rng=0), nnx.ReLU(), nnx.Dropout(0.3, rng=1), nnx.Linear(8, 3, rng=2)
    )
    opt = nnx.optim.Adam(model.parameters(), lr=0.01)
    sched = nnx.optim.CosineAnnealingLR(opt, 20) if schedule else None
    return nnx.Trainer(
        model,
        nnx.CrossEntropyLoss(),
        opt,
        device=device,
        metrics=metrics,
        callbacks=list(callbacks),
        progress=False,
        seed=3,
        accumulate=accumulate,
        schedule=sched,
        schedule_interval="batch",
    )


def exact(history):
    return [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in history]


def stop_and_resume(tmp_path, data, stop, every=2, val=None, epochs=3, **options):
    """Train with a checkpoint every ``every`` steps, stopped (Ctrl-C) after step ``stop``;
    return the checkpoint's position and a fresh Trainer (``options``) loaded from it."""
    callbacks = [ModelCheckpoint(tmp_path, every_n_steps=every), StopAt(stop)]
    stopped = trainer(callbacks, **options)
    with pytest.raises(KeyboardInterrupt):
        stopped.fit(data, val, epochs=epochs, batch_size=8)
    position = read_record(tmp_path / "last.npz").get("position")
    resumed = trainer(**options)
    resumed.load_checkpoint(tmp_path / "last.npz")
    return position, resumed


CASES = {
    "arrays, shuffled": lambda: (X, Y),
    "DataLoader shuffle prefetch": lambda: DataLoader(ArrayDataset(X, Y), 8, seed=5, prefetch=2),
    "DataLoader in order, drop_last": lambda: DataLoader(
        ArrayDataset(X, Y), 8, shuffle=False, drop_last=True
    ),
    "map-style dataset": lambda: Samples(),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_stop_mid_epoch_and_resume_equals_training_straight_through(tmp_path, case):
    straight = trainer()
    straight.fit(CASES[case](), epochs=3, batch_size=8)
    # every 3 steps; Ctrl-C at step 10 of 6 (5 with drop_last) per epoch: the last checkpoint
    # is step 9, in the middle of epoch 2
    position, resumed = stop_and_resume(tmp_path, CASES[case](), stop=10, every=3)
    assert position["epoch"] == 1 and position["batch"] in (3, 4)
    resumed.fit(CASES[case](), epochs=3, batch_size=8)
    assert resumed.step == straight.step
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert np.array_equal(a.value, b.value)
    assert exact(resumed.history) == exact(straight.history)


@pytest.mark.parametrize(
    "device",
    [
        pytest.param("torch", marks=pytest.mark.torch),
        pytest.param("jax", marks=pytest.mark.slow),  # eager JAX: ~10 s of op dispatch
        "strict",
    ],
)
def test_stop_mid_epoch_and_resume_is_exact_on_other_backends(tmp_path, device):
    pytest.importorskip({"strict": "array_api_strict"}.get(device, device))
    straight = trainer(device=device)
    straight.fit((X, Y), epochs=2, batch_size=8)
    _, resumed = stop_and_resume(tmp_path, (X, Y), stop=10, every=3, epochs=2, device=device)
    resumed.fit((X, Y), epochs=2, batch_size=8)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert np.array_equal(nnx.to_numpy(a.value), nnx.to_numpy(b.value))
    assert exact(resumed.history) == exact(straight.history)


def test_resume_keeps_the_running_state_of_every_metric(tmp_path):
    metrics = ("accuracy", "f1", "auroc")  # a 0-d total, a vector total, gathered rows
    straight = trainer(metrics=metrics)
    straight.fit((X, Y), epochs=2, batch_size=8)
    _, resumed = stop_and_resume(tmp_path, (X, Y), stop=10, every=3, epochs=2, metrics=metrics)
    resumed.fit((X, Y), epochs=2, batch_size=8)
    assert exact(resumed.history) == exact(straight.history)
    other = trainer(metrics=("accuracy", "auroc", "f1"))
    with pytest.raises(CheckpointError, match="for metric 'f1' where this Trainer has 'auroc'"):
        other.load_checkpoint(tmp_path / "last.npz")


def test_resume_with_accumulation_batch_schedule_and_validation(tmp_path):
    val = (X[:10], Y[:10])
    straight = trainer(accumulate=2, schedule=True)
    straight.fit((X, Y), val, epochs=3, batch_size=8)
    # 6 batches = 3 steps per epoch; the checkpoint of step 4 is after batch 2 of epoch 2
    position, resumed = stop_and_resume(
        tmp_path, (X, Y), stop=5, every=2, accumulate=2, schedule=True, val=val
    )
    assert (position["epoch"], position["batch"]) == (1, 2)
    resumed.fit((X, Y), val, epochs=3, batch_size=8)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert np.array_equal(a.value, b.value)
    assert exact(resumed.history) == exact(straight.history)


def test_a_checkpoint_off_an_accumulation_boundary_is_refused(tmp_path):
    # saved with accumulate=1 after batch 3; accumulate=2 would resume inside a group
    position, _ = stop_and_resume(tmp_path, (X, Y), stop=4, every=3)
    assert position["batch"] == 3
    resumed = trainer(accumulate=2)
    resumed.load_checkpoint(tmp_path / "last.npz")
    with pytest.raises(ValueError, match="not on a boundary of accumulate=2"):
        resumed.fit((X, Y), epochs=2, batch_size=8)


def test_resuming_with_other_batches_is_refused(tmp_path):
    stop_and_resume(tmp_path, (X, Y), stop=4, every=3)
    resumed = trainer()
    resumed.load_checkpoint(tmp_path / "last.npz")
    with pytest.raises(ValueError, match=r"batches differ \(batches 6 -> 3, batch_size 8 -> 16"):
        resumed.fit((X, Y), epochs=2, batch_size=16)
    with pytest.raises(ValueError, match="iterable of batches, which cannot be resumed mid-epoch"):
        resumed.fit([(X[:8], Y[:8])], epochs=2)


def test_every_n_steps_refuses_a_stream_and_bad_counts():
    with pytest.raises(ValueError, match="every_n_steps must be a positive integer"):
        ModelCheckpoint("unused", every_n_steps=0)
    t = trainer([ModelCheckpoint("unused", every_n_steps=2)])
    with pytest.raises(ValueError, match=r"every_n_steps=2\): an iterable of batches"):
        t.fit(iter([(X[:8], Y[:8])]), epochs=1)


def test_a_mid_epoch_checkpoint_is_written_between_epoch_ends(tmp_path):
    t = trainer([ModelCheckpoint(tmp_path, every_n_steps=4, save_best=False)])
    t.fit((X, Y), epochs=1, batch_size=8)
    assert "position" not in read_record(tmp_path / "last.npz")  # the epoch's end replaced it
    with pytest.raises(KeyboardInterrupt):
        trainer([ModelCheckpoint(tmp_path, every_n_steps=4), StopAt(5)]).fit(
            (X, Y), epochs=1, batch_size=8
        )
    record = read_record(tmp_path / "last.npz")
    assert (record["epoch"], record["step"], record["position"]["batch"]) == (0, 4, 4)


def test_a_position_in_another_epoch_than_the_counters_is_refused(tmp_path):
    from nnx.io.checkpoint import read_checkpoint, write_checkpoint
    from nnx.io.npz import json_member

    stop_and_resume(tmp_path, (X, Y), stop=4, every=3)
    meta, arrays = read_checkpoint(tmp_path / "last.npz")
    meta["components"]["position"]["epoch"] = 1
    write_checkpoint(tmp_path / "bad.npz", {**arrays, "__meta__": json_member(meta)})
    with pytest.raises(CheckpointError, match="position is in epoch 1 but it claims 0"):
        trainer().load_checkpoint(tmp_path / "bad.npz")


def test_dataloader_starts_an_epoch_at_a_batch():
    loader = DataLoader(ArrayDataset(X, Y), 8, seed=2)
    loader.set_epoch(1)
    whole = [y.tolist() for _, y in loader]
    loader.set_epoch(1, start=4)
    assert [y.tolist() for _, y in loader] == whole[4:]
    with pytest.raises(ValueError, match=r"start must be a batch in \[0, 6\]"):
        loader.set_epoch(1, start=7)


FAST = ["--dataset", "vertical", "--device", "cpu", "--hidden", "16", "--quiet", "--epochs", "2"]


def _history(folder):
    import csv

    rows = list(csv.DictReader((folder / "history.csv").read_text().splitlines()))
    return [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in rows]


def test_cli_checkpoint_every_and_resume_continue_the_epoch_exactly(tmp_path, monkeypatch, capsys):
    import nnx.cli.run as run
    from nnx.cli.main import main
    from nnx.io.checkpoint import read_checkpoint

    class StopInSecondEpoch(Callback):
        order = 20

        def on_batch_end(self, trainer, batch):
            if trainer.epoch == 1 and batch == 4:
                raise KeyboardInterrupt

    assert main([*FAST, "--out", str(tmp_path / "straight")], prog="train.py") == 0
    plain = run.run_callbacks
    monkeypatch.setattr(run, "run_callbacks", lambda *a: [*plain(*a), StopInSecondEpoch()])
    split = tmp_path / "split"
    status = main([*FAST, "--checkpoint-every", "2", "--out", str(split)], prog="train.py")
    err = capsys.readouterr().err
    assert status == 130 and "of epoch 2 is saved in" in err, err
    position = read_record(split / "last.npz")["position"]
    assert position["epoch"] == 1 and 0 < position["batch"] <= 5
    monkeypatch.setattr(run, "run_callbacks", plain)
    resume = ["--resume", str(split / "last.npz"), "--quiet"]
    assert main([*resume, "--batch-size", "16"], prog="train.py") != 0
    err = capsys.readouterr().err
    assert "--batch-size 16: the checkpoint" in err and len(err.strip().splitlines()) == 1, err
    assert main(resume, prog="train.py") == 0, capsys.readouterr().err
    assert _history(split) == _history(tmp_path / "straight")
    _, a = read_checkpoint(tmp_path / "straight" / "last.npz")
    _, b = read_checkpoint(split / "last.npz")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
