"""CIFAR-10 (binary version): reading the .bin records and the archive, and the download path
against a local HTTP server serving a generated fixture archive."""

import hashlib
import io
import tarfile

import numpy as np
import pytest

from nnx.datasets import DatasetError, load_dataset
from nnx.datasets import cifar as cifar_module
from nnx.datasets.cifar import cifar10
from tests.datasets.test_mnist import _Server

PER_FILE = 3


def _records(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=(PER_FILE, 1), dtype=np.uint8)
    pixels = rng.integers(0, 256, size=(PER_FILE, 3072), dtype=np.uint8)
    return np.concatenate([labels, pixels], axis=1).tobytes()


def _files():
    names = cifar_module.TRAIN_FILES + cifar_module.TEST_FILES
    return {name: _records(i) for i, name in enumerate(names)}


def _archive(path):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in _files().items():
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _check(splits):
    (x, y), (xt, yt) = splits
    assert x.shape == (5 * PER_FILE, 3072) and xt.shape == (PER_FILE, 3072)
    assert x.dtype == np.float32 and y.dtype == np.int64 and 0 <= x.min() and x.max() <= 1
    raw = np.frombuffer(_files()["data_batch_2.bin"], np.uint8).reshape(PER_FILE, 3073)
    np.testing.assert_array_equal(x[PER_FILE] * 255, raw[0, 1:])
    assert y[PER_FILE] == raw[0, 0]


def test_reads_bin_files_and_the_archive_from_a_folder(tmp_path):
    folder = tmp_path / "bins" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name, data in _files().items():
        (folder / name).write_bytes(data)
    _check(cifar10(tmp_path / "bins"))
    _check(cifar10(folder))
    (tmp_path / "tar").mkdir()
    _archive(tmp_path / "tar" / cifar_module.ARCHIVE)
    _check(cifar10(tmp_path / "tar"))
    data = load_dataset("cifar10", data_dir=tmp_path / "tar")
    assert data.image_shape == (3, 32, 32) and data.num_classes == 10
    assert data.images().train[0].shape == (5 * PER_FILE, 3, 32, 32)


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        cifar10(tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"expected cifar-10-binary.tar.gz or the extracted"):
        cifar10(tmp_path)
    for name, data in _files().items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "test_batch.bin").write_bytes(_files()["test_batch.bin"][:-5])
    with pytest.raises(DatasetError, match="not a whole number of 3073-byte records"):
        cifar10(tmp_path)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / cifar_module.ARCHIVE).write_bytes(b"not a tar file")
    with pytest.raises(DatasetError, match="cannot read the archive"):
        cifar10(tmp_path / "junk")


@pytest.fixture
def served(tmp_path, monkeypatch):
    root = tmp_path / "server"
    root.mkdir()
    _archive(root / cifar_module.ARCHIVE)
    digest = hashlib.sha256((root / cifar_module.ARCHIVE).read_bytes()).hexdigest()
    with _Server(root) as server:
        monkeypatch.setattr(cifar_module, "URLS", (server.url,))
        monkeypatch.setattr(cifar_module, "SHA256", digest)
        monkeypatch.setattr(cifar_module, "SIZE", (root / cifar_module.ARCHIVE).stat().st_size)
        monkeypatch.setenv("NNX_DATA", str(tmp_path / "cache"))
        yield root


def test_downloads_once_into_the_cache_and_verifies(served, tmp_path):
    _check(cifar10())
    cache = tmp_path / "cache" / "cifar10"
    assert sorted(p.name for p in cache.iterdir()) == [".nnx-verified.json", cifar_module.ARCHIVE]
    good = (cache / cifar_module.ARCHIVE).read_bytes()
    (cache / cifar_module.ARCHIVE).write_bytes(good[:-3] + b"xyz")  # tampered: not trusted
    with pytest.raises(DatasetError, match="fail their size or SHA-256 check"):
        cifar10(download=False)
    _check(cifar10())  # downloaded again
    assert (cache / cifar_module.ARCHIVE).read_bytes() == good
    (served / cifar_module.ARCHIVE).unlink()  # the cached copy is used: nothing downloaded
    _check(cifar10())


def test_corrupted_download_is_refused_and_not_kept(served, tmp_path):
    path = served / cifar_module.ARCHIVE
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    with pytest.raises(DatasetError, match="checksum mismatch for cifar-10-binary.tar.gz"):
        cifar10()
    assert not list((tmp_path / "cache" / "cifar10").iterdir())


def test_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NNX_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(cifar_module, "URLS", ("http://127.0.0.1:9/",))
    with pytest.raises(
        DatasetError, match=r"could not download cifar-10-binary.tar.gz.*put it there"
    ):
        cifar10()
    with pytest.raises(DatasetError, match="expected"):
        cifar10(download=False)


def test_published_checksum_is_well_formed():
    assert len(cifar_module.SHA256) == 64 and int(cifar_module.SHA256, 16) > 0
