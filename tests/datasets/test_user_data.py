"""The user's own data (.npz, .csv) through nnx.datasets.load_file and the training command."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx.datasets import DatasetError, load_file


def _npz(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _blobs(n=60, features=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, features)) + y[:, None] * 3.0
    return x.astype(np.float32), y.astype(np.int64)


def test_npz_with_and_without_a_test_split(tmp_path):
    x, y = _blobs()
    data = load_file(_npz(tmp_path, x_train=x, y_train=y, x_test=x[:9], y_test=y[:9]))
    assert data.task == "classification" and data.num_classes == 3 and data.name == "data.npz"
    assert data.train[0].shape == (60, 3) and data.test[0].shape == (9, 3)
    held = load_file(_npz(tmp_path, "held.npz", x_train=x, y_train=y.astype(np.int32)), seed=1)
    assert held.train[0].shape == (48, 3) and held.test[0].shape == (12, 3)
    assert held.train[1].dtype == np.int64
    together = np.concatenate([held.train[0], held.test[0]])
    assert sorted(map(tuple, together)) == sorted(map(tuple, x))  # a split, nothing lost
    images = load_file(
        _npz(
            tmp_path, "img.npz", x_train=np.ones((10, 1, 4, 4), np.uint8), y_train=np.arange(10) % 2
        )
    )
    assert images.train[0].dtype == np.float32 and images.train[0].shape[1:] == (1, 4, 4)
    reg = load_file(_npz(tmp_path, "reg.npz", x_train=x, y_train=x.sum(axis=1)))
    assert reg.task == "regression" and reg.train[1].shape == (48, 1) and reg.num_outputs == 1


def test_csv_labels_by_name_index_and_kind(tmp_path):
    rows = ["a,b,label"] + [f"{i * 0.5},{-i},{'cat' if i % 2 else 'dog'}" for i in range(10)]
    (tmp_path / "names.csv").write_text("\n".join(rows) + "\n")
    data = load_file(tmp_path / "names.csv", label_column="label")
    assert data.task == "classification" and data.num_classes == 2
    assert data.train[0].shape == (8, 2) and data.train[0].dtype == np.float32
    by_index = load_file(tmp_path / "names.csv", label_column=-1)
    np.testing.assert_array_equal(by_index.train[1], data.train[1])
    rows = ["y,x1,x2"] + [f"{i % 3},{i},{i * 2}" for i in range(12)]
    (tmp_path / "ints.csv").write_text("\n".join(rows))
    ints = load_file(tmp_path / "ints.csv", label_column="y")
    assert ints.num_classes == 3 and ints.train[0].shape[1] == 2
    (tmp_path / "reg.csv").write_text("x,t\n" + "\n".join(f"{i},{i / 3}" for i in range(10)))
    assert load_file(tmp_path / "reg.csv", label_column="t").task == "regression"


X, Y = _blobs(10)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x_train": X}, "missing y_train"),
        ({"x_train": X, "y_train": Y, "x_test": X}, "x_test and y_test come together"),
        ({"x_train": X, "y_train": Y, "labels": Y}, "unexpected arrays ['labels']"),
        ({"x_train": X.astype(str), "y_train": Y}, "x_train must be numbers, got dtype <U"),
        ({"x_train": X[:, 0], "y_train": Y}, "x_train must have shape (samples, features...)"),
        (
            {"x_train": np.where(X > 2, np.nan, X), "y_train": Y},
            "x_train has NaN or infinite values",
        ),
        ({"x_train": X, "y_train": Y[:5]}, "x_train has 10 samples but y_train has shape (5,)"),
        (
            {"x_train": X, "y_train": Y - 1},
            "y_train holds label -1; class labels must be integers 0..K-1",
        ),
        (
            {"x_train": X, "y_train": Y[:, None]},
            "integer labels y_train must have shape (samples,)",
        ),
        ({"x_train": X, "y_train": np.full(10, np.inf)}, "y_train has NaN or infinite values"),
        (
            {"x_train": X, "y_train": Y.astype(bool)},
            "y_train must be integer class labels or floating",
        ),
        ({"x_train": X, "y_train": Y * 0}, "needs at least 2 classes"),
        (
            {"x_train": X, "y_train": Y, "x_test": X[:, :2], "y_test": Y},
            "x_test samples have shape (2,)",
        ),
        (
            {"x_train": X, "y_train": Y, "x_test": X, "y_test": Y * 0.5},
            "y_test (float32, shape (10, 1)) does not match y_train (int64",
        ),
    ],
)
def test_bad_npz_files(tmp_path, arrays, message):
    with pytest.raises(DatasetError) as err:
        load_file(_npz(tmp_path, **arrays))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "text, column, message",
    [
        ("a,b\n1,2\n3,4\n", None, "a .csv needs label_column: a column name"),
        ("a,b\n1,2\n3,4\n", "c", "no column 'c'; the header has a, b"),
        ("a,b\n1,2\n3,4\n", 5, "column index 5 is out of range for 2 columns"),
        ("a,b\n1,x\n3,4\n", "a", "line 2, column 'b' is 'x', not a number"),
        ("a,b\n1,\n3,4\n", "a", "line 2, column 'b' is empty"),
        ("a,b\n1,2,3\n3,4\n", "a", "line 2 has 3 columns, the header 2"),
        ("a,b\n,2\n3,4\n", "a", "line 2 has no label in column 'a'"),
        ("a,b\n", "a", "needs a header row and at least one data row"),
        ("a\n1\n2\n", "a", "no feature columns besides the label column"),
        ("a,b\nnan,1\n1,2\n", "a", "has NaN or infinite labels"),
    ],
)
def test_bad_csv_files(tmp_path, text, column, message):
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(DatasetError) as err:
        load_file(tmp_path / "d.csv", label_column=column)
    assert message in str(err.value)


def test_file_level_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_file(tmp_path / "none.npz")
    (tmp_path / "d.txt").write_text("1,2")
    with pytest.raises(DatasetError, match="must end in .npz, .csv or .npy"):
        load_file(tmp_path / "d.txt")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DatasetError, match="is not an nnx .npz file \\(not a zip archive\\)"):
        load_file(tmp_path / "junk.npz")
    path = tmp_path / "objects.npz"
    np.savez(path, x_train=np.array([{"a": 1}] * 3, dtype=object), y_train=np.arange(3))
    with pytest.raises(DatasetError, match="has dtype object, which needs pickle"):
        load_file(path)
    x, y = _blobs(10)
    with pytest.raises(DatasetError, match="label_column applies to .csv files"):
        load_file(_npz(tmp_path, x_train=x, y_train=y), label_column="y")


def _run(*args, cwd, command=None):
    command = command or [sys.executable, "-m", "nnx.cli"]
    return subprocess.run(
        [*command, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def _one_line_error(done, message):
    assert done.returncode == 2, done.stdout
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_the_command_trains_on_the_users_npz_and_csv(tmp_path):
    x, y = _blobs(90)
    np.savez(tmp_path / "mine.npz", x_train=x, y_train=y)
    fast = ["--device", "cpu", "--epochs", "3", "--hidden", "8", "--quiet"]
    done = _run("--dataset", "mine.npz", *fast, "--out", "r", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert summary["dataset"] == "mine.npz" and "test_accuracy" in summary
    assert config["settings"]["dataset"] == str((tmp_path / "mine.npz").resolve())
    assert config["dataset"]["train"] + config["dataset"]["val"] + config["dataset"]["test"] == 90
    rows = ["f1,f2,f3,kind"] + [
        f"{a},{b},{c},{'abc'[k]}" for (a, b, c), k in zip(x, y, strict=True)
    ]
    (tmp_path / "mine.csv").write_text("\n".join(rows))
    done = _run(
        "--dataset", "mine.csv", "--label-column", "kind", *fast, "--out", "c", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    _one_line_error(
        _run("--dataset", "mine.csv", *fast, cwd=tmp_path), "a .csv needs --label-column"
    )
    _one_line_error(_run("--dataset", "gone.npz", *fast, cwd=tmp_path), "gone.npz does not exist")
    _one_line_error(
        _run("--dataset", "digits", "--label-column", "y", *fast, cwd=tmp_path),
        "--label-column applies to a .csv or .npy --dataset",
    )
    np.savez(tmp_path / "nan.npz", x_train=np.where(x > 4, np.nan, x), y_train=y)
    _one_line_error(
        _run("--dataset", "nan.npz", *fast, cwd=tmp_path), "x_train has NaN or infinite values"
    )


def test_version_flag_and_console_script(tmp_path):
    done = _run("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"nnx {nnx.__version__}"
    from importlib.metadata import distribution, entry_points

    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")

    root = Path(__file__).resolve().parents[2]
    declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    assert declared == {"nnx-train": "nnx.cli.main:cli", "nnx-predict": "nnx.cli.predict:cli"}
    from nnx.cli.main import cli
    from nnx.cli.predict import cli as predict_cli

    assert callable(cli) and callable(predict_cli)
    origin = json.loads(distribution("nnx-trainer").read_text("direct_url.json") or "{}")
    if origin.get("url") != root.as_uri():  # installed from another checkout: its own metadata
        pytest.skip(f"nnx-trainer is installed from {origin.get('url')}, not this checkout")
    (script,) = entry_points(group="console_scripts", name="nnx-train")
    assert script.value == "nnx.cli.main:cli"
    installed = Path(sys.executable).parent / "nnx-train"
    if not installed.is_file():
        pytest.skip("the package is not installed with its scripts here")
    done = _run("--version", cwd=tmp_path, command=[str(installed)])
    assert done.returncode == 0 and done.stdout.strip() == f"nnx {nnx.__version__}"
    done = _run("--epochs", "0", cwd=tmp_path, command=[str(installed)])
    assert done.returncode == 2 and done.stderr.startswith("nnx-train: error: --epochs")
