"""An .npz data file larger than the streaming threshold is memory-mapped, never loaded whole:
the checks read it in chunks, the splits are views of the file, the model's Standardize layer
is fitted in one streaming pass, and the command trains on it as on the file loaded whole."""

import numpy as np
import pytest

from nnx.datasets import file_checks
from nnx.datasets.errors import DataFileError
from nnx.datasets.files import load_file
from tests.datasets.streaming import assert_streamed_run_matches_whole
from tests.test_cli_trust import _features


def test_a_large_npz_is_memory_mapped_with_the_same_held_out_rows(tmp_path):
    x, y = _features()
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    whole = load_file(tmp_path / "d.npz", seed=3)
    mapped = load_file(tmp_path / "d.npz", seed=3, stream_bytes=0)
    assert isinstance(mapped.train[0], np.memmap) and isinstance(mapped.train[1], np.memmap)
    train_rows, test_rows = mapped.rows
    np.testing.assert_array_equal(mapped.train[0][train_rows], whole.train[0])
    np.testing.assert_array_equal(mapped.test[1][test_rows], whole.test[1])
    assert (mapped.task, mapped.num_classes) == (whole.task, whole.num_classes)


def test_a_mapped_file_is_checked_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(file_checks, "CHUNK_BYTES", 64)  # 4 rows of 4 float32 features per chunk
    x, y = _features(40)
    x[37, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x_train=x, y_train=y)
    with pytest.raises(DataFileError, match="x_train has NaN or infinite values"):
        load_file(tmp_path / "nan.npz", stream_bytes=0)
    x, y = _features(40)
    y[38] = -1
    np.savez(tmp_path / "label.npz", x_train=x, y_train=y)
    with pytest.raises(DataFileError, match="y_train holds label -1"):
        load_file(tmp_path / "label.npz", stream_bytes=0)
    np.savez_compressed(tmp_path / "packed.npz", x_train=x, y_train=y)
    with pytest.raises(DataFileError, match="compressed, so it cannot be memory-mapped"):
        load_file(tmp_path / "packed.npz", stream_bytes=0)


def test_the_command_trains_on_a_streamed_file_as_on_the_file_loaded_whole(tmp_path, monkeypatch):
    x, y = _features()
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    args = ["--device", "cpu", "--quiet", "--dataset", str(tmp_path / "d.npz"), "--epochs", "3"]
    assert_streamed_run_matches_whole(tmp_path, monkeypatch, [*args, "--hidden", "16"])


def _csv(path, labels, x):
    with open(path, "w") as f:
        f.write("a,b,label,c\n")
        for row, label in zip(x, labels, strict=True):
            f.write(f"{row[0]},{row[1]},{label},{row[2]}\n")


@pytest.mark.parametrize("kind", ["integers", "names", "regression"])
def test_a_large_csv_is_converted_in_chunks_once_and_mapped(tmp_path, monkeypatch, kind):
    from nnx.datasets import csv_stream

    monkeypatch.setenv("NNX_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(csv_stream, "CHUNK_ROWS", 7)
    x = np.random.default_rng(0).normal(size=(50, 3))
    labels = {
        "integers": [str(i % 3) for i in range(50)],
        "names": [("cat", "dog", "ant")[i % 3] for i in range(50)],
        "regression": [f"{v:.3f}" for v in np.random.default_rng(1).normal(size=50)],
    }[kind]
    _csv(tmp_path / "d.csv", labels, x)
    whole = load_file(tmp_path / "d.csv", "label", seed=2)
    converted = []
    plain = csv_stream._convert
    monkeypatch.setattr(csv_stream, "_convert", lambda *a: converted.append(1) or plain(*a))
    for _ in range(2):  # the second load maps the first one's conversion
        mapped = load_file(tmp_path / "d.csv", "label", seed=2, stream_bytes=0)
    assert converted == [1] and isinstance(mapped.train[0], np.memmap)
    train_rows, test_rows = mapped.rows
    np.testing.assert_array_equal(mapped.train[0][train_rows], whole.train[0])
    np.testing.assert_array_equal(mapped.train[1][train_rows], whole.train[1])
    np.testing.assert_array_equal(mapped.test[1][test_rows], whole.test[1])
    assert (mapped.task, mapped.num_classes) == (whole.task, whole.num_classes)
    names = ("class_names", "feature_names", "label_name")
    assert [getattr(mapped, k) for k in names] == [getattr(whole, k) for k in names]


def test_a_streamed_csv_names_the_bad_line_as_a_whole_read_does(tmp_path, monkeypatch):
    from nnx.datasets import csv_stream

    monkeypatch.setenv("NNX_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(csv_stream, "CHUNK_ROWS", 4)
    (tmp_path / "bad.csv").write_text(
        "a,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)) + "x,1\n"
    )
    for stream_bytes in (None, 0):
        with pytest.raises(DataFileError, match="line 22, column 'a' is 'x', not a number"):
            load_file(tmp_path / "bad.csv", "label", stream_bytes=stream_bytes)
    assert not list((tmp_path / "cache" / "csv").iterdir())  # no half conversion left
