"""Every crafted file is refused by every nnx file loader: one line, an NnxFileError, little memory.

The loaders all read through nnx.io.npz.NpzReader; this test holds each of them to the promise,
so that a loader that bypasses the reader (or a reader check that goes missing) fails here.
"""

from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest

import nnx
from nnx.datasets import DatasetError, load_file
from nnx.io.checkpoint import read_checkpoint

from .crafted import CRAFTED, REBUILT, good_checkpoint, tiny_model, tiny_trainer

MAX_PEAK = 50 * 2**20  # no loader may allocate more than this for any crafted file


def _load_model(path):
    return nnx.load_model(path)


def _load_checkpoint(path):
    return nnx.load_checkpoint(path, tiny_model())


def _trainer_load_checkpoint(path):
    return tiny_trainer().load_checkpoint(path)


def _read_checkpoint(path):
    return read_checkpoint(path)


def _load_data_file(path):
    return load_file(path)


LOADERS = {
    "load_model": _load_model,
    "load_checkpoint": _load_checkpoint,
    "Trainer.load_checkpoint": _trainer_load_checkpoint,
    "read_checkpoint": _read_checkpoint,
    "datasets.load_file": _load_data_file,
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("crafted")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX files")
@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("name", CRAFTED)
def test_every_loader_refuses_every_crafted_file(folder, name, loader):
    path = CRAFTED[name](folder)
    tracemalloc.start()
    try:
        with pytest.raises(nnx.NnxFileError) as err:
            LOADERS[loader](path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(err.value)
    assert "\n" not in message and str(path) in message, message
    assert "does not exist" not in message, message
    assert peak < MAX_PEAK, f"{loader} allocated {peak} bytes for {name}"
    # one class under its every name: the old ones still catch it
    assert isinstance(err.value, (nnx.CheckpointError, nnx.ModelFileError, ValueError))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX files")
@pytest.mark.parametrize(
    "name, message",
    [
        ("truncated", "is truncated"),
        ("truncated-member", "is truncated (member"),
        ("bad-compression", "uses zip compression method 14; only stored and deflate"),
        ("unknown-compression", "uses zip compression method 99"),
        ("encrypted", "has an encrypted member"),
        ("huge-header", "claims shape (400000000000,)"),
        ("zip-bomb", "(a zip bomb?)"),
        ("deep-json", "nested 200000 levels deep (at most 64)"),
        ("huge-json", "more than the 4194304 allowed"),
        ("object-dtype", "has dtype object, which needs pickle"),
        ("not-a-zip", "is not an nnx .npz file (not a zip archive)"),
        ("folder", "is a folder, not a file"),
        ("fifo", "is a FIFO (named pipe), not a file"),
        ("dev-zero", "/dev/zero is a character device, not a file"),
        ("torch-pickle", "is not an nnx .npz file (not a zip archive)"),
        ("torch-zip", "member 'archive/data.pkl' is not a .npy array"),
        ("huge-architecture", "would need 400000000 numbers; the file stores 2 numbers"),
    ],
)
def test_each_refusal_says_what_is_wrong(folder, name, message):
    with pytest.raises(nnx.NnxFileError) as err:
        nnx.load_model(CRAFTED[name](folder))
    assert message in str(err.value)
    assert "does not exist" not in str(err.value)


def test_the_huge_embedded_architecture_is_refused_before_it_is_built(folder):
    with pytest.raises(nnx.NnxFileError, match="would need 400000000 numbers"):
        nnx.load_model(REBUILT["huge-embedded-architecture"](folder))


def test_a_data_file_error_is_both_a_dataset_and_a_file_error(folder):
    with pytest.raises(DatasetError) as err:
        load_file(CRAFTED["not-a-zip"](folder))
    assert isinstance(err.value, nnx.NnxFileError)


def test_the_good_file_loads_everywhere(folder):
    path = good_checkpoint(folder)
    model = nnx.load_model(path)
    assert isinstance(model, nnx.Sequential)
    nnx.load_checkpoint(path, tiny_model())
    tiny_trainer().load_checkpoint(path)
    meta, arrays = read_checkpoint(path)
    assert meta["version"] == 2 and "model/0.weight" in arrays
    assert all(np.isfinite(a).all() for a in arrays.values())


def test_resume_does_not_build_a_huge_embedded_architecture(folder):
    from nnx.cli.resume import model_from_checkpoint

    path = REBUILT["huge-embedded-architecture"](folder)
    tracemalloc.start()
    try:
        model = model_from_checkpoint(path)  # None: the run's settings build the model instead
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert model is None and peak < MAX_PEAK
    assert isinstance(model_from_checkpoint(good_checkpoint(folder)), nnx.Sequential)
