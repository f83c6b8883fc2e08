"""A ``.npy`` data file: one 2-D array, the label in the column ``label_column`` names. Small
files are read whole; above the streaming threshold the file is memory-mapped, the features are
a view of it and the labels are read once in chunks, with the same results and messages."""

import json
import pickle

import numpy as np
import pytest

from nnx.datasets import file_checks
from nnx.datasets.errors import DataFileError
from nnx.datasets.files import load_file
from tests.datasets.streaming import assert_streamed_run_matches_whole


def _matrix(n=240, label="last", kind="classes", seed=0):
    """Features of very different scales (Standardize matters) and the label column at
    ``label`` (first, last or middle)."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 3).astype(np.float32)
    x = rng.normal(size=(n, 4))
    x[:, 0] += 2.5 * y
    x = x * np.array([1.0, 3.0, 1000.0, 0.001]) + np.array([50.0, -7.0, 4000.0, 2.0])
    if kind == "regression":
        y = x[:, 0] * 0.5 + rng.normal(size=n)
    at = {"first": 0, "last": 4, "middle": 2}[label]
    return np.insert(x, at, y, axis=1).astype(np.float32), at


@pytest.mark.parametrize(
    "label, kind, dtype",
    [("last", "classes", "float32"), ("first", "classes", "int16"), ("last", "regression", "f8")],
)
def test_a_npy_is_read_whole_or_mapped_with_the_same_splits(tmp_path, label, kind, dtype):
    a, at = _matrix(label=label, kind=kind)
    np.save(tmp_path / "d.npy", a.astype(dtype))
    column = -1 if label == "last" else at
    whole = load_file(tmp_path / "d.npy", column, seed=3)
    mapped = load_file(tmp_path / "d.npy", str(column), seed=3, stream_bytes=0)
    assert isinstance(mapped.train[0], np.memmap) and not isinstance(whole.train[0], np.memmap)
    assert np.shares_memory(mapped.train[0], mapped.test[0])  # one view of the file
    train_rows, test_rows = mapped.rows
    np.testing.assert_array_equal(mapped.train[0][train_rows], whole.train[0])
    np.testing.assert_array_equal(mapped.train[1][train_rows], whole.train[1])
    np.testing.assert_array_equal(mapped.test[0][test_rows], whole.test[0])
    np.testing.assert_array_equal(mapped.test[1][test_rows], whole.test[1])
    task = "regression" if kind == "regression" else "classification"
    assert (whole.task, mapped.task) == (task, task)
    assert whole.num_classes == mapped.num_classes == (None if kind == "regression" else 3)
    assert whole.train[1].dtype == (np.float32 if kind == "regression" else np.int64)
    assert whole.train[0].shape[1] == 4 and whole.label_column == mapped.label_column == at


def test_the_command_trains_on_a_mapped_npy_as_on_the_file_read_whole(tmp_path, monkeypatch):
    a, _ = _matrix()
    np.save(tmp_path / "d.npy", a)
    args = ["--device", "cpu", "--quiet", "--dataset", str(tmp_path / "d.npy"), "--epochs", "3"]
    args += ["--label-column", "-1", "--hidden", "16"]
    assert_streamed_run_matches_whole(tmp_path, monkeypatch, args)


def test_nnx_predict_reads_the_training_npy_without_its_label_column(tmp_path, capsys):
    from nnx.cli.main import main
    from nnx.cli.predict import main as predict

    a, _ = _matrix(60, label="first")
    np.save(tmp_path / "d.npy", a)
    np.save(tmp_path / "x.npy", a[:, 1:])
    args = ["--device", "cpu", "--quiet", "--dataset", str(tmp_path / "d.npy"), "--epochs", "1"]
    assert main([*args, "--label-column", "0", "--out", str(tmp_path / "r")], prog="t") == 0
    record = json.loads((tmp_path / "r" / "config.json").read_text())["dataset"]
    assert (record["label_column"], record["columns"]) == (0, 5)
    capsys.readouterr()
    outputs = []
    for name in ("d.npy", "x.npy"):  # the label column, when present, is ignored
        assert predict([str(tmp_path / "r"), "--input", str(tmp_path / name)], prog="p") == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 61


def _one_line(path, column, message, stream):
    with pytest.raises(DataFileError) as err:
        load_file(path, column, stream_bytes=0 if stream else None)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("stream", [False, True])
def test_bad_npy_files_fail_in_one_line_whichever_way_they_are_read(tmp_path, monkeypatch, stream):
    monkeypatch.setattr(file_checks, "CHUNK_BYTES", 64)  # a few rows per chunk
    p = tmp_path / "bad.npy"
    np.save(p, np.arange(10.0))
    _one_line(p, -1, "must be a 2-D array (samples, columns) with no empty axis", stream)
    np.save(p, np.array([[1, "a"]] * 3, dtype=object), allow_pickle=True)
    _one_line(p, -1, "a .npy data file must hold numbers, got dtype object", stream)
    p.write_bytes(pickle.dumps(np.ones((3, 3))))
    _one_line(p, -1, "not a readable .npy array", stream)
    a, _ = _matrix(40)
    np.save(p, a)
    _one_line(p, 5, "column index 5 is out of range for 5 columns", stream)
    _one_line(p, "label", "label_column must be a 0-based index (-1: the last column)", stream)
    _one_line(p, None, "a .npy needs label_column", stream)
    bad = a.copy()
    bad[37, 1] = np.nan
    np.save(p, bad)
    _one_line(p, -1, "x_train has NaN or infinite values (first at index (37, 1))", stream)
    bad = a.copy()
    bad[38, 4] = np.inf
    np.save(p, bad)
    _one_line(p, -1, "column 4 has NaN or infinite labels", stream)
    bad = a.astype(np.int32)
    bad[39, 0] = -2
    np.save(p, bad)
    _one_line(p, 0, "y_train holds label -2; class labels must be integers 0..K-1", stream)


def test_a_mapped_npy_needs_its_label_column_first_or_last(tmp_path):
    a, at = _matrix(label="middle")
    np.save(tmp_path / "d.npy", a)
    whole = load_file(tmp_path / "d.npy", at)  # read whole, any column will do
    train_rows = file_checks.held_out(len(a), 0)[0]
    np.testing.assert_array_equal(whole.train[0], np.delete(a[train_rows], at, axis=1))
    _one_line(tmp_path / "d.npy", at, "its label column must be the first or the last", True)
