"""nnx-predict (nnx/cli/predict.py): a run folder or model file, inputs from .csv/.npy/.npz,
labels with their original names and probabilities, one-line errors."""

import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx.cli.main import main as train_main
from nnx.cli.predict import main as predict_main

ROOT = Path(__file__).resolve().parent.parent


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _separable(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    x[:, 0] += np.where(rng.random(n) < 0.5, 3.0, -3.0)  # two clusters, far apart on column a
    return x, np.where(x[:, 0] > 0, "cat", "dog")


@pytest.fixture(scope="module")
def pets_run(tmp_path_factory):
    """A run trained on a .csv with named labels (cat, dog) and its data."""
    folder = tmp_path_factory.mktemp("pets")
    x, labels = _separable()
    _write_csv(
        folder / "pets.csv",
        ["a", "b", "c", "kind"],
        [[*r, k] for r, k in zip(x, labels, strict=True)],
    )
    args = ["--dataset", folder / "pets.csv", "--label-column", "kind", "--device", "cpu"]
    args += ["--epochs", "10", "--lr", "0.01", "--hidden", "8", "--out", folder / "run", "--quiet"]
    assert train_main([str(a) for a in args], prog="nnx-train") == 0
    return folder


def _predict(capsys, *args):
    status = predict_main([str(a) for a in args], prog="nnx-predict")
    out, err = capsys.readouterr()
    return status, out, err


def test_csv_with_reordered_columns_and_the_label_column_gives_original_names(pets_run, capsys):
    x, labels = _separable(40, seed=1)
    rows = [
        [k, r[2], r[0], r[1]] for r, k in zip(x, labels, strict=True)
    ]  # other order, label kept
    _write_csv(pets_run / "new.csv", ["kind", "c", "a", "b"], rows)
    status, out, err = _predict(capsys, pets_run / "run", "--input", pets_run / "new.csv")
    assert status == 0, err
    table = list(csv.DictReader(io.StringIO(out)))
    assert list(table[0]) == ["label", "label_name", "prob_cat", "prob_dog"]
    assert len(table) == 40
    names = [row["label_name"] for row in table]
    assert np.mean(np.array(names) == labels) >= 0.9
    for row in table:
        probs = [float(row["prob_cat"]), float(row["prob_dog"])]
        assert abs(sum(probs) - 1) < 1e-5
        assert ["cat", "dog"][int(row["label"])] == row["label_name"]
        assert row["label_name"] == ["cat", "dog"][int(np.argmax(probs))]


def test_npy_and_npz_match_the_model_and_output_file(pets_run, capsys, tmp_path):
    # a model file on its own (no config.json beside it): classes are numbered
    shutil.copy(pets_run / "run" / "best.npz", tmp_path / "model.npz")
    x = _separable(10, seed=2)[0].astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", x=x, other=np.zeros(2))
    model = nnx.load_model(tmp_path / "model.npz").eval()
    logits = nnx.to_numpy(model(x)).astype(np.float64)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    for name in ("x.npy", "x.npz"):
        out = tmp_path / f"{name}.csv"
        status, stdout, err = _predict(
            capsys, tmp_path / "model.npz", "--input", tmp_path / name, "--output", out,
            "--batch-size", "3",
        )  # fmt: skip
        assert status == 0 and stdout == "", err
        table = list(csv.DictReader(out.read_text().splitlines()))
        assert list(table[0]) == ["label", "prob_0", "prob_1"]
        probs = np.array([[float(r["prob_0"]), float(r["prob_1"])] for r in table])
        np.testing.assert_allclose(probs, expected, atol=2e-6)
        assert [int(r["label"]) for r in table] == expected.argmax(1).tolist()


def test_regression_run_writes_predictions(tmp_path, capsys):
    x = np.linspace(-1, 1, 60).reshape(-1, 1)
    rows = [[v, 2 * v + 0.5] for v in x[:, 0]]
    _write_csv(tmp_path / "line.csv", ["x", "y"], rows)
    args = ["--dataset", tmp_path / "line.csv", "--label-column", "y", "--device", "cpu"]
    args += ["--epochs", "1", "--hidden", "4", "--out", tmp_path / "run", "--quiet"]
    assert train_main([str(a) for a in args]) == 0
    capsys.readouterr()  # the training's epoch line
    _write_csv(tmp_path / "new.csv", ["x"], [[0.25], [0.5]])
    status, out, err = _predict(capsys, tmp_path / "run", "--input", tmp_path / "new.csv")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "prediction" and len(lines) == 3
    assert all(np.isfinite(float(v)) for v in lines[1:])


@pytest.mark.parametrize(
    "make_input, extra, message",
    [
        (lambda d: np.save(d / "x.npy", np.zeros((3, 5))), [], "samples have 5 features"),
        (lambda d: None, [], "input file {d}/x.npy does not exist"),
        (lambda d: (d / "x.txt").write_text("1,2,3\n"), [], "must end in .csv, .npy, .npz"),
        (lambda d: np.save(d / "x.npy", np.full((2, 3), np.nan)), [], "sample 0 has NaN"),
        (
            lambda d: np.savez(d / "x.npz", a=np.ones((2, 3)), b=np.ones(2)),
            [],
            "name the samples x",
        ),
        (lambda d: _write_csv(d / "x.csv", ["a", "b"], [[1, 2]]), [], "no column 'c'"),
        (
            lambda d: _write_csv(d / "x.csv", ["a", "b", "c", "d"], [[1, 2, 3, 4]]),
            [],
            "column 'd' was not a feature",
        ),
        (lambda d: np.save(d / "x.npy", np.ones((2, 3))), ["--output", "p.txt"], "end in .csv"),
        (
            lambda d: _write_csv(d / "x.csv", ["a", "b", "c", "a"], [[1, 2, 3, 9]]),
            [],
            "names column 'a' more than once",
        ),
        (lambda d: np.save(d / "x.npy", np.ones((2, 3))), ["--batch-size", "0"], "--batch-size"),
        (
            lambda d: np.save(d / "x.npy", np.ones((2, 3))),
            ["--output", "/proc/p.csv"],  # the message named .p.csv.XXXXXXXX.tmp
            "--output /proc/p.csv: cannot write it",
        ),
    ],
)
def test_bad_inputs_are_one_line(pets_run, tmp_path, capsys, make_input, extra, message):
    make_input(tmp_path)
    name = next((p.name for p in tmp_path.iterdir() if p.stem == "x"), "x.npy")
    status, out, err = _predict(capsys, pets_run / "run", "--input", tmp_path / name, *extra)
    assert status == 2 and out == ""
    assert err.startswith("nnx-predict: error: ") and len(err.strip().splitlines()) == 1
    assert message.format(d=tmp_path) in err, err


def test_a_language_model_is_refused(tmp_path, capsys):
    # its (N, V, T) logits came out as "probabilities" over V * T columns, for ids cast from
    # whatever numbers the input held
    from nnx.models import build_model

    nnx.save_model(tmp_path / "lm.npz", build_model("lstm", (8,), 3, hidden_size=4, vocab="abc"))
    np.save(tmp_path / "x.npy", np.array([[0.0], [0.5], [1.0]]))
    status, out, err = _predict(capsys, tmp_path / "lm.npz", "--input", tmp_path / "x.npy")
    assert status == 2 and out == "" and "is a character language model" in err, err


def test_missing_model_and_folder_without_one(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.ones((2, 3)))
    status, _, err = _predict(capsys, tmp_path / "nope", "--input", tmp_path / "x.npy")
    assert status == 2 and "does not exist" in err
    status, _, err = _predict(capsys, tmp_path, "--input", tmp_path / "x.npy")
    assert status == 2 and "without best.npz or last.npz" in err


def test_script_is_a_shim_of_the_command():
    script = (ROOT / "scripts" / "predict.py").read_text()
    assert "from nnx.cli.predict import main" in script and "def " not in script
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "predict.py"), "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == f"nnx {nnx.__version__}"
    # python -m nnx.cli.predict ran the module and exited 0 without doing anything
    done = subprocess.run(
        [sys.executable, "-m", "nnx.cli.predict", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == f"nnx {nnx.__version__}"


def test_summary_throughput_rate_and_time_agree():
    from nnx.cli.run import throughput

    records = [
        {"seconds": 3.0, "samples_per_s": 100.0},  # 300 samples, 2.5 s of it compiling
        {"seconds": 0.5, "samples_per_s": 600.0},  # 300 samples
    ]
    eager = throughput(records, None)
    assert eager["train_seconds"] == 3.5 and eager["seconds_per_epoch"] == 1.75
    assert eager["samples_per_s"] == pytest.approx(600 / 3.5)
    jit = throughput(records, 2.5)
    assert jit["compile_seconds"] == 2.5 and jit["train_seconds"] == pytest.approx(1.0)
    assert jit["samples_per_s"] == pytest.approx(600.0)  # 600 samples in 1 s, compile apart
