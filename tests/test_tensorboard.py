"""TensorBoardLogger and --tensorboard: the event files read back record by record (TFRecord
framing, tensorboardX's own Event protobuf), scalars equal to the history, histograms when asked,
purge on a continued fit, one-line errors."""

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx.cli.main import main
from tests.test_train_script import FAST


def read_events(folder):
    """Every Event in the event files of ``folder``, files in name (time) order."""
    from tensorboardX.proto.event_pb2 import Event

    events = []
    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (length,) = struct.unpack_from("<Q", data, i)
            i += 12  # length, its masked CRC
            event = Event()
            event.ParseFromString(data[i : i + length])
            events.append(event)
            i += length + 4  # the record, its masked CRC
    return events


def scalars(events):
    """``{tag: {step: value}}`` of the scalar summaries."""
    out = {}
    for e in events:
        for v in e.summary.value:
            if not v.HasField("histo"):
                out.setdefault(v.tag, {})[e.step] = v.simple_value
    return out


def _fit(tmp_path, epochs, **kwargs):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = nnx.Sequential(nnx.Linear(4, 8, rng=0), nnx.ReLU(), nnx.Linear(8, 2, rng=1))
    logger = nnx.TensorBoardLogger(tmp_path / "tb", **kwargs)
    trainer = nnx.Trainer(
        model,
        nnx.CrossEntropyLoss(),
        nnx.optim.SGD(model.parameters(), lr=0.1),
        device="cpu",
        callbacks=[logger],
        progress=False,
    )
    trainer.fit((x, y), (x, y), epochs=epochs, batch_size=16)
    return trainer, model


def test_scalars_and_histograms_read_back(tmp_path):
    pytest.importorskip("tensorboardX")
    trainer, model = _fit(tmp_path, 3, histogram_freq=2)
    events = read_events(tmp_path / "tb")
    found = scalars(events)
    assert set(found) >= {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "lr"}
    for epoch, row in enumerate(trainer.history, start=1):
        for key, tag in (("train_loss", "loss/train"), ("val_accuracy", "accuracy/val")):
            assert found[tag][epoch] == pytest.approx(row[key], rel=1e-6), (tag, epoch)
        assert found["lr"][epoch] == pytest.approx(0.1)
    histos = {
        (e.step, v.tag): v.histo for e in events for v in e.summary.value if v.HasField("histo")
    }
    names = [n for n, _ in model.named_parameters()]
    expected = {(2, f"{kind}/{n}") for kind in ("weights", "gradients") for n in names}
    assert set(histos) == expected  # epoch 2 only: histogram_freq=2 over 3 epochs
    assert histos[(2, "weights/0.weight")].num == 4 * 8
    assert histos[(2, "gradients/2.bias")].num == 2


def test_no_histograms_by_default_and_purge_on_continue(tmp_path):
    """A second fit of the same Trainer continues at epoch 3: its writer starts with a
    SessionLog START at step 3, so TensorBoard drops any earlier events from step 3 on."""
    pytest.importorskip("tensorboardX")
    trainer, _ = _fit(tmp_path, 2)
    logger = next(c for c in trainer.callbacks if isinstance(c, nnx.TensorBoardLogger))
    trainer.fit((np.ones((8, 4), "float32"), np.zeros(8, "int64")), epochs=3, batch_size=8)
    events = read_events(tmp_path / "tb")
    assert not any(v.HasField("histo") for e in events for v in e.summary.value)
    starts = [e.step for e in events if e.HasField("session_log") and e.session_log.status == 1]
    assert starts == [3]
    assert sorted(scalars(events)["loss/train"]) == [1, 2, 3]
    assert logger.writer is None  # closed at the end of fit


def test_bad_arguments_in_one_line(tmp_path, monkeypatch):
    pytest.importorskip("tensorboardX")
    with pytest.raises(ValueError, match=r"histogram_freq must be >= 0"):
        nnx.TensorBoardLogger(tmp_path, histogram_freq=-1)
    with pytest.raises(TypeError, match=r"histogram_freq must be an int"):
        nnx.TensorBoardLogger(tmp_path, histogram_freq="2")
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match=r"needs the tensorboardX package: pip install"):
        nnx.TensorBoardLogger(tmp_path)


def test_tensorboard_flag_writes_the_run_folder(tmp_path):
    pytest.importorskip("tensorboardX")
    out = tmp_path / "r"
    assert main([*FAST, "--epochs", "2", "--out", str(out), "--quiet", "--tensorboard"]) == 0
    found = scalars(read_events(out / "tensorboard"))
    assert sorted(found["loss/train"]) == [1, 2] and sorted(found["loss/val"]) == [1, 2]
    # the test set's results at the last epoch, equal to summary.json's
    summary = json.loads((out / "summary.json").read_text())
    assert found["loss/test"] == {2: pytest.approx(summary["test_loss"], rel=1e-6)}
    assert found["accuracy/test"] == {2: pytest.approx(summary["test_accuracy"], rel=1e-6)}


def test_tensorboard_flag_without_tensorboardx_is_one_line(tmp_path, monkeypatch, capsys):
    """The command refuses --tensorboard before training when tensorboardX is missing."""
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    assert main([*FAST, "--out", str(tmp_path / "r"), "--tensorboard"]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "--tensorboard needs the tensorboardX package: pip install" in err
    assert not (tmp_path / "r").exists()
