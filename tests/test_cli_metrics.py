"""--metrics in the training command, curves.png's markers and panels, confusion.png."""

import csv
import json
import sys

import numpy as np
import pytest

import nnx
from nnx.metrics import ConfusionMatrix
from nnx.training.history import History
from nnx.training.plots import best_epoch, save_confusion

FAST = ["--dataset", "vertical", "--device", "cpu", "--hidden", "16", "--quiet", "--epochs", "2"]


def _main(capsys, *args):
    from nnx.cli.main import main

    capsys.readouterr()
    status = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def _one_line(capsys, message, *args):
    status, _, err = _main(capsys, *args)
    assert status == 2, err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_metrics_become_columns_keys_and_pictures(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run-f1"
    status, _, err = _main(
        capsys, *FAST, "--metrics", "accuracy,f1,auroc", "--schedule", "cosine", "--log-loss",
        "--out", out,
    )  # fmt: skip
    assert status == 0, err
    rows = list(csv.DictReader((out / "history.csv").read_text().splitlines()))
    for split in ("train", "val"):
        for name in ("accuracy", "f1", "auroc"):
            assert 0 <= float(rows[-1][f"{split}_{name}"]) <= 1
    assert len({r["lr"] for r in rows}) == 2  # the cosine schedule, recorded per epoch
    summary = json.loads((out / "summary.json").read_text())
    assert {f"{s}_{m}" for s in ("train", "val", "test") for m in ("f1", "auroc")} <= set(summary)
    assert "test_confusion_matrix" not in summary
    for picture in ("curves.png", "confusion.png"):
        assert (out / picture).read_bytes()[:4] == b"\x89PNG"
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["metrics"] == ["accuracy", "f1", "auroc"]


def test_the_printed_summary_shows_every_metric_in_80_columns(tmp_path):
    # it showed accuracy alone (f1 and auroc only in summary.json), and the file list of a run
    # with confusion.png was 81 columns
    from nnx.cli.run import _print_summary

    summary = {"backend": "numpy", "device": "cpu", "dataset": "digits", "epochs": 2,
               "stopped_early": False, "train_seconds": 0.1, "seconds_per_epoch": 0.05,
               "samples_per_s": 1e4}  # fmt: skip
    for i, split in enumerate(("train", "val", "test")):
        summary.update({f"{split}_loss": 0.5, f"{split}_accuracy": 0.9, f"{split}_f1": 0.8 + i,
                        f"{split}_auroc": 0.95, f"{split}_precision_weighted": 0.7})  # fmt: skip
    said: list[str] = []
    pictures = [tmp_path / "curves.png", tmp_path / "confusion.png"]
    _print_summary(summary, tmp_path / "run-with-a-name", pictures, said.append)
    lines = "\n".join(said).splitlines()
    assert all(len(line) <= 80 for line in lines if "outputs in" not in line), lines
    text = " ".join("\n".join(said).split())
    for i, split in enumerate(("train", "val", "test")):
        assert f"{split} loss 0.5000 accuracy 0.9000 f1 {0.8 + i:.4f} auroc 0.9500" in text, text
    assert "precision_weighted 0.7000" in text and "curves.png, confusion.png" in text


def test_confusion_png_names_the_classes_of_a_csv(tmp_path, capsys, monkeypatch):
    # a .csv with labels cat/dog drew its confusion matrix with ticks 0 and 1
    from nnx.cli import run as cli_run

    drawn = {}
    monkeypatch.setattr(
        cli_run, "save_confusion", lambda m, p, labels=None, title=None: drawn.update(labels=labels)
    )
    rng = np.random.default_rng(0)
    lines = ["a,b,kind"] + [
        f"{v:.3f},{-v:.3f},{'dog' if v > 0 else 'cat'}" for v in rng.normal(size=40)
    ]
    (tmp_path / "pets.csv").write_text("\n".join(lines) + "\n")
    args = ["--dataset", tmp_path / "pets.csv", "--label-column", "kind", "--device", "cpu"]
    status, _, err = _main(capsys, *args, "--hidden", 4, "--epochs", 1, "--quiet", "--out",
                           tmp_path / "r")  # fmt: skip
    assert status == 0, err
    assert drawn["labels"] == ["cat", "dog"]


def test_classifiers_always_measure_accuracy_for_best_npz(tmp_path, capsys):
    out = tmp_path / "r"
    assert _main(capsys, *FAST, "--metrics", "F1_Micro", "--out", out)[0] == 0
    rows = list(csv.DictReader((out / "history.csv").read_text().splitlines()))
    assert list(rows[0])[2:4] == ["train_accuracy", "train_f1_micro"]
    # single-label classes: micro F1 is the accuracy
    assert float(rows[-1]["val_f1_micro"]) == pytest.approx(float(rows[-1]["val_accuracy"]))
    assert (out / "best.npz").is_file()


def test_bad_metric_names_are_one_line(tmp_path, capsys):
    _one_line(
        capsys, "--metrics: unknown metric 'f2'; choose from accuracy",
        *FAST, "--metrics", "accuracy,f2", "--out", tmp_path / "a",
    )  # fmt: skip
    _one_line(
        capsys, "--metrics mae does not fit the classification data set 'vertical'",
        *FAST, "--metrics", "mae", "--out", tmp_path / "b",
    )  # fmt: skip
    _one_line(capsys, "names a metric twice", *FAST, "--metrics", "f1,f1", "--out", tmp_path / "c")
    _one_line(
        capsys, "--metrics: has an empty metric name (a stray comma?): 'f1,,accuracy'",
        *FAST, "--metrics", "f1,,accuracy", "--out", tmp_path / "e",
    )  # fmt: skip
    assert not (tmp_path / "b").exists()  # refused before the run folder was made
    _one_line(
        capsys, "--metrics applies to the data-set runs; the lstm language model measures",
        "--model", "lstm", "--metrics", "f1", "--out", tmp_path / "d",
    )  # fmt: skip


def test_best_epoch_follows_the_monitor_direction():
    h = History(
        [
            {"epoch": 1, "val_loss": 0.5, "val_f1": 0.7, "lr": 0.1},
            {"epoch": 2, "val_loss": 0.3, "val_f1": 0.9, "lr": 0.1},
            {"epoch": 3, "val_loss": 0.4, "val_f1": 0.9, "lr": 0.01},
        ]
    )
    assert best_epoch(h, "val_loss") == 2 and best_epoch(h, "val_f1") == 2
    assert best_epoch(h, "val_f1", mode="min") == 1
    assert best_epoch(History([{"epoch": 1, "val_auroc": float("nan")}]), "val_auroc") is None


def test_curves_with_every_option_and_confusion_without_matplotlib(tmp_path, caplog, monkeypatch):
    pytest.importorskip("matplotlib")
    h = History([{"epoch": e, "train_loss": 1.0 / e, "lr": 0.1 / e} for e in (1, 2, 3)])
    path = nnx.save_curves(h, tmp_path / "c.png", monitor="train_loss", log_loss=True, title="t")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert save_confusion(np.eye(3), tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=r"must be square \(C, C\)"):
        save_confusion(np.ones((2, 3)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="3 labels for a 2 x 2 matrix"):
        save_confusion(np.eye(2), tmp_path / "x.png", labels=["a", "b", "c"])
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert save_confusion(np.eye(2), tmp_path / "n.png") is None
    assert "matplotlib is not installed" in caplog.text and not (tmp_path / "n.png").exists()


def test_curves_panels_follow_the_metrics_order(tmp_path, monkeypatch):
    # --metrics accuracy,f1,auroc drew accuracy, auroc, f1 (sorted by name)
    pytest.importorskip("matplotlib")
    from nnx.training import plots

    drawn = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig))
    rows = [{"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.5, "train_f1": 0.4,
             "train_auroc": 0.6, "val_loss": 1.0, "val_accuracy": 0.5, "val_f1": 0.4,
             "val_auroc": 0.6} for e in (1, 2)]  # fmt: skip
    nnx.save_curves(History(rows), tmp_path / "c.png")
    titles = [ax.get_title() for ax in drawn[0].axes if ax.get_title()]
    assert titles[:4] == ["loss", "accuracy", "f1", "auroc"], titles


def test_evaluate_with_a_confusion_matrix():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
    model = nnx.Sequential(nnx.Linear(4, 3, rng=rng)).to("cpu", dtype="float64")
    trainer = nnx.Trainer(
        model, nnx.CrossEntropyLoss(), nnx.optim.SGD(model.parameters(), lr=0.1), device="cpu",
        metrics=("accuracy", "f1"), progress=False,
    )  # fmt: skip
    got = trainer.evaluate((x, y), batch_size=16, metrics=["f1", ConfusionMatrix()])
    predicted = nnx.to_numpy(trainer.predict(x)).argmax(1)
    np.testing.assert_array_equal(got["confusion_matrix"], metrics.confusion_matrix(y, predicted))
    assert got["f1"] == pytest.approx(metrics.f1_score(y, predicted, average="macro"))
    assert set(trainer.evaluate((x, y))) == {"loss", "accuracy", "f1"}  # the Trainer's own
