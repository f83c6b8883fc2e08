"""Checkpoint format versions: a version-1 file (written by older nnx) still resumes exactly; an
unknown version is refused with one line naming it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx.io.checkpoint import VERSION, read_record
from nnx.optim import Adam
from nnx.optim.schedules import StepLR

FIXTURES = Path(__file__).parent / "fixtures"


def _trainer(folder):
    model = nnx.Sequential(nnx.Linear(3, 4, rng=5), nnx.ReLU(), nnx.Linear(4, 2, rng=6))
    opt = Adam(model.parameters(), lr=0.01)
    early = nnx.EarlyStopping(monitor="train_loss", patience=5)
    return nnx.Trainer(
        model,
        nnx.CrossEntropyLoss(),
        opt,
        device="numpy",
        schedule=StepLR(opt, step_size=1, gamma=0.5),
        callbacks=[nnx.ModelCheckpoint(folder, monitor="train_loss"), early],
        progress=False,
        seed=3,
    )


def test_a_version_1_checkpoint_resumes(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.load_checkpoint(FIXTURES / "v1_trainer.npz")
    with np.load(FIXTURES / "v1_expected.npz") as expected:
        for i, p in enumerate(trainer.model.parameters()):
            np.testing.assert_array_equal(p.value, expected[f"p{i}"])
    assert (trainer.epoch, trainer.step, trainer.seed) == (2, 4, 3)
    assert trainer.history["epoch"] == [1, 2]
    assert trainer.schedule.last_step == 2 and trainer.optimizer.lr == pytest.approx(0.0025)
    assert all(s["step"] == 4 for s in trainer.optimizer.state)
    early = next(cb for cb in trainer.callbacks if isinstance(cb, nnx.EarlyStopping))
    assert early.best_epoch == 2 and early.wait == 0
    assert read_record(FIXTURES / "v1_trainer.npz")["epoch"] == 2
    assert isinstance(nnx.load_model(FIXTURES / "v1_trainer.npz"), nnx.Sequential)
    # and it trains on, then saves in today's format
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3)).astype(np.float32)
    trainer.fit((x, (x[:, 0] > 0).astype(np.int64)), epochs=3, batch_size=16)
    meta, _ = nnx.io.checkpoint.read_checkpoint(tmp_path / "last.npz")
    assert meta["version"] == VERSION == 2 and meta["components"]["counters"]["epoch"] == 3


def test_an_unknown_version_is_refused_by_name(tmp_path):
    with np.load(FIXTURES / "v1_trainer.npz") as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    meta["version"] = 7
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "v7.npz", **arrays)
    with pytest.raises(nnx.CheckpointError) as err:
        _trainer(tmp_path).load_checkpoint(tmp_path / "v7.npz")
    assert "version 7; this nnx reads versions 1, 2" in str(err.value)
    assert "\n" not in str(err.value)
