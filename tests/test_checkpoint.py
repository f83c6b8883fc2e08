"""Checkpoints: round trips across backends, atomic writes, and clear errors for bad files."""

import os
import zipfile

import numpy as np
import pytest

import nnx
from nnx.io.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
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
    with pytest.raises(CheckpointError, match="saved with an Adam optimizer, not an SGD"):
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
    with pytest.raises(CheckpointError, match="truncated|corrupted|not an nnx .npz file"):
        nnx.load_checkpoint(path, target)
    for k, v in target.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_foreign_npz_and_pickled_arrays_are_refused(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(CheckpointError, match="not an nnx checkpoint"):
        read_checkpoint(tmp_path / "plain.npz")
    np.savez(tmp_path / "pickle.npz", __meta__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="has dtype object"):
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


# ------------------------------------------------------------ crafted checkpoints, every field


def _trainer_on_digits_like(tmp_path):
    from nnx import callbacks as cbs

    model = _model()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    schedule = StepLR(opt, step_size=2, gamma=0.5)
    trainer = nnx.Trainer(
        model,
        nnx.MSELoss(),
        opt,
        device="cpu",
        metrics=("mae",),
        schedule=schedule,
        callbacks=[cbs.EarlyStopping("val_loss", patience=3), cbs.ModelCheckpoint(tmp_path)],
        progress=False,
    )
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((16, 3)), rng.standard_normal((16, 2)))
    trainer.fit(data, data, epochs=2, batch_size=8)
    return trainer


def _meta_arrays(path):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    import json

    return json.loads(arrays.pop("__meta__").tobytes()), arrays


def _craft(path, meta, arrays):
    import json

    data = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, __meta__=data, **arrays)


def _set(path_keys, value):
    def mutate(meta, arrays):
        node = meta
        for key in path_keys[:-1]:
            node = node[key]
        node[path_keys[-1]] = value

    return mutate


def _array(key, make):
    def mutate(meta, arrays):
        arrays[key] = make(arrays[key])

    return mutate


def _drop(key):
    def mutate(meta, arrays):
        del arrays[key]

    return mutate


W = "model/0.weight"
M = "optimizer/state/0/momentum_buffer"
C = ["components"]
OPT = [*C, "optimizer"]
CB = C  # each callback is a component of its own
MUTATIONS = {
    "format": _set(["format"], "other"),
    "version": _set(["version"], 99),
    "no-architecture": _set(["architecture"], None),
    "modules-not-list": _set(["architecture", "modules"], "Sequential"),
    "parameter-shape-text": _set(["architecture", "parameters", 0, 1], ["3", 4]),
    "components-not-dict": _set(C, []),
    "optimizer-type": _set([*OPT, "type"], "Adam"),
    "optimizer-lr-text": _set([*OPT, "lr"], "fast"),
    "optimizer-lr-nan": _set([*OPT, "lr"], float("nan")),
    "optimizer-lr-negative": _set([*OPT, "lr"], -1.0),
    "momentum-negative": _set([*OPT, "hyperparameters", "momentum"], -0.5),
    "nesterov-text": _set([*OPT, "hyperparameters", "nesterov"], "yes"),
    "hyperparameter-missing": lambda m, a: m["components"]["optimizer"]["hyperparameters"].pop(
        "dampening"
    ),
    "hyperparameter-unknown": _set([*OPT, "hyperparameters", "betas"], [0.9, 0.99]),
    "state-not-list": _set([*OPT, "state"], {}),
    "state-too-short": lambda m, a: m["components"]["optimizer"]["state"].pop(),
    "step-negative": _set([*OPT, "state", 0, "step"], -1),
    "step-text": _set([*OPT, "state", 0, "step"], "2"),
    "state-key-of-adam": _set([*OPT, "state", 0, "exp_avg"], {"__array__": "optimizer/x"}),
    "state-array-text": _set([*OPT, "state", 0, "momentum_buffer"], "array"),
    "optimizer-missing": lambda m, a: m["components"].pop("optimizer"),
    "schedule-type": _set([*C, "schedule", "type"], "ExponentialLR"),
    "schedule-base-lr": _set([*C, "schedule", "base_lr"], -0.1),
    "schedule-step-float": _set([*C, "schedule", "last_step"], 1.5),
    "epoch-negative": _set([*C, "counters", "epoch"], -1),
    "epoch-text": _set([*C, "counters", "epoch"], "2"),
    "epoch-beyond-history": _set([*C, "counters", "epoch"], 5),
    "seed-text": _set([*C, "counters", "seed"], "0"),
    "counters-not-dict": _set([*C, "counters"], [2]),
    "history-not-list": _set([*C, "history", "records"], "none"),
    "history-epoch-text": _set([*C, "history", "records", 0, "epoch"], "x"),
    "history-record-text": _set([*C, "history", "records", 1], "epoch 2"),
    "callback-not-dict": _set([*CB, "EarlyStopping.1"], []),
    "early-stopping-wait": _set([*CB, "EarlyStopping.1", "wait"], -2),
    "early-stopping-best": _set([*CB, "EarlyStopping.1", "best"], "low"),
    "checkpoint-best": _set([*CB, "ModelCheckpoint.1", "best"], [1]),
    "scheduler-callback-type": _set([*CB, "LRScheduler.1", "type"], "ExponentialLR"),
    "weight-complex": _array(W, lambda a: a.astype(np.complex128) + 1j),
    "weight-bool": _array(W, lambda a: a > 0),
    "weight-int": _array(W, lambda a: a.astype(np.int64)),
    "weight-object": _array(W, lambda a: np.array(list(a.ravel()), dtype=object).reshape(a.shape)),
    "weight-shape": _array(W, lambda a: a.T.copy()),
    "weight-nan": _array(W, lambda a: np.full_like(a, np.nan)),
    "weight-missing": _drop(W),
    "weight-reference-elsewhere": _set([*C, "model", "0.weight"], {"__array__": "model/0.bias"}),
    "extra-entry": lambda m, a: a.__setitem__("model/9.weight", np.zeros(3)),
    "momentum-buffer-shape": _array(M, lambda a: a[:1].copy()),
    "momentum-buffer-int": _array(M, lambda a: a.astype(np.int32)),
    "momentum-buffer-inf": _array(M, lambda a: a + np.inf),
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_every_crafted_field_is_refused_before_anything_changes(tmp_path, name):
    source = _trainer_on_digits_like(tmp_path)
    meta, arrays = _meta_arrays(tmp_path / "last.npz")
    MUTATIONS[name](meta, arrays)
    _craft(tmp_path / "bad.npz", meta, arrays)
    trainer = _trainer_on_digits_like(tmp_path / "fresh")
    trainer.optimizer.state[0].clear()
    before = trainer.model.state_dict()
    lr, epoch, history = trainer.optimizer.lr, trainer.epoch, list(trainer.history)
    with pytest.raises(CheckpointError):
        trainer.load_checkpoint(tmp_path / "bad.npz")
    after = trainer.model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert trainer.optimizer.lr == lr and not trainer.optimizer.state[0]
    assert trainer.epoch == epoch and list(trainer.history) == history
    assert source.epoch == 2  # the original is a well-formed checkpoint: it loads
    trainer.load_checkpoint(tmp_path / "last.npz")
    assert trainer.epoch == 2


def _npy_header(shape, dtype="<f8"):
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def test_a_tiny_file_claiming_a_huge_array_is_refused_without_allocating(tmp_path):
    import tracemalloc

    model = _model()
    nnx.save_checkpoint(tmp_path / "good.npz", model)
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(tmp_path / "good.npz") as good, zipfile.ZipFile(path, "w") as z:
        for info in good.infolist():
            if info.filename != "model/0.weight.npy":
                z.writestr(info.filename, good.read(info))
        z.writestr("model/0.weight.npy", _npy_header((10**12,)) + b"\0" * 16)
    assert path.stat().st_size < 4096
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=r"claims shape \(1000000000000,\)"):
            read_checkpoint(path)
        with pytest.raises(CheckpointError, match=r"has shape \(1000000000000,\), expected"):
            nnx.load_checkpoint(path, model)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


def test_a_zip_bomb_is_refused_before_it_is_expanded(tmp_path):
    model = _model()
    nnx.save_checkpoint(tmp_path / "good.npz", model)
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(tmp_path / "good.npz") as good, zipfile.ZipFile(path, "w") as z:
        for info in good.infolist():
            z.writestr(info.filename, good.read(info))
        n = 4 * 2**20  # 32 MiB of zeros deflate to ~32 KiB
        z.writestr(
            "model/bomb.npy",
            _npy_header((n,)) + bytes(8 * n),
            compress_type=zipfile.ZIP_DEFLATED,
        )
    with pytest.raises(CheckpointError, match="zip bomb"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="zip bomb|not part of this model"):
        nnx.load_checkpoint(path, model)
