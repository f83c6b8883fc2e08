"""Checkpoints: round trips across backends, atomic writes, and clear errors for bad files."""

import os
import zipfile

import numpy as np
import pytest

import nnx
from nnx.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from nnx.optim import SGD, Adam, StepLR


def _model(seed=0, hidden=4):
    return nnx.Sequential(
        nnx.Linear(3, hidden, rng=seed), nnx.Tanh(), nnx.Linear(hidden, 2, rng=seed + 1)
    )


def _trained(backend):
    model = _model().to(backend)
    opt = Adam(model.parameters(), lr=0.01)
    schedule = StepLR(opt, step_size=1, gamma=0.5)
    x = backend.asarray(np.random.default_rng(0).standard_normal((5, 3)), dtype="float32")
    loss = nnx.MSELoss()
    for _ in range(3):
        loss(model(x), backend.asarray(np.zeros((5, 2)), dtype="float32"))
        model.backward(loss.backward())
        opt.step()
        schedule.step()
    return model, opt, schedule


def test_round_trip_onto_another_backend(backend, tmp_path):
    model, opt, schedule = _trained(backend)
    path = nnx.save_checkpoint(tmp_path / "c.npz", model, opt, schedule, epoch=3, note="hi")
    target = nnx.get_backend("strict:device1")
    other = _model(seed=5).to(target)
    other_opt = Adam(other.parameters(), lr=1.0)
    other_schedule = StepLR(other_opt, step_size=1, gamma=0.5)
    record = nnx.load_checkpoint(path, other, other_opt, other_schedule)
    assert record == {"epoch": 3, "note": "hi"}
    for (name, a), (_, b) in zip(
        model.state_dict().items(), other.state_dict().items(), strict=True
    ):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert all(target.owns(p.value) for p in other.parameters())
    assert other_opt.lr == opt.lr == 0.01 * 0.5**3 and other_schedule.last_step == 3
    for s, t in zip(opt.state, other_opt.state, strict=True):
        assert s["step"] == t["step"] == 3
        np.testing.assert_array_equal(nnx.to_numpy(s["exp_avg"]), nnx.to_numpy(t["exp_avg"]))
        assert target.owns(t["exp_avg"])


def test_the_file_holds_no_pickles(tmp_path):
    model, opt, schedule = _trained(nnx.get_backend("cpu"))
    path = nnx.save_checkpoint(tmp_path / "c.npz", model, opt, schedule)
    with np.load(path, allow_pickle=False) as f:
        assert all(f[k].dtype != object for k in f.files)


def test_wrong_architecture_is_refused_and_nothing_changes(tmp_path):
    path = nnx.save_checkpoint(tmp_path / "c.npz", _model())
    wider = _model(seed=3, hidden=5)
    before = wider.state_dict()
    with pytest.raises(
        CheckpointError, match=r"different architecture: 0.bias: saved \(4,\), model \(5,\)"
    ):
        nnx.load_checkpoint(path, wider)
    for k, v in wider.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    relu = nnx.Sequential(nnx.Linear(3, 4), nnx.ReLU(), nnx.Linear(4, 2))
    with pytest.raises(CheckpointError, match="layers: saved"):
        nnx.load_checkpoint(path, relu)


def test_wrong_optimizer_type(tmp_path):
    model, opt, _ = _trained(nnx.get_backend("cpu"))
    path = nnx.save_checkpoint(tmp_path / "c.npz", model, opt)
    with pytest.raises(CheckpointError, match="saved with a Adam optimizer, not SGD"):
        nnx.load_checkpoint(path, model, SGD(model.parameters(), lr=0.1))


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "not_zip"])
def test_damaged_files_are_clear_errors(tmp_path, damage):
    path = nnx.save_checkpoint(tmp_path / "c.npz", _model())
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":  # corrupt one byte inside the stored arrays: the CRC catches it
        i = data.index(b"model/2.weight") + 300
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_text("hello")
    target = _model(seed=9)
    before = target.state_dict()
    with pytest.raises(CheckpointError, match="truncated or corrupted|not an nnx checkpoint"):
        nnx.load_checkpoint(path, target)
    for k, v in target.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_foreign_npz_and_pickled_arrays_are_refused(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(CheckpointError, match="not an nnx checkpoint"):
        read_checkpoint(tmp_path / "plain.npz")
    np.savez(tmp_path / "pickle.npz", __meta__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        read_checkpoint(tmp_path / "pickle.npz")
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.npz")


def test_a_crash_mid_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = nnx.save_checkpoint(tmp_path / "c.npz", _model(), epoch=1)
    good = path.read_bytes()

    def crash(f, **arrays):
        f.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        nnx.save_checkpoint(path, _model(seed=4), epoch=2)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["c.npz"]  # the temporary file is gone too


def test_write_is_a_rename_of_a_complete_file(tmp_path, monkeypatch):
    renames = []
    real = os.replace

    def spy(src, dst):
        assert zipfile.is_zipfile(src)  # complete before it takes the checkpoint's name
        renames.append((os.path.dirname(src), dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_checkpoint(tmp_path / "c.npz", {"__meta__": np.zeros(1, np.uint8)})
    assert renames == [(str(tmp_path), tmp_path / "c.npz")]
