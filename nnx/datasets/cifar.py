"""CIFAR-10 (60,000 32x32 colour images, 10 classes) from its binary version, without pickle.

The archive ``cifar-10-binary.tar.gz`` (170,052,171 bytes) is downloaded once into the cache
(``$NNX_DATA/cifar10`` or ``~/.cache/nnx/cifar10``), checked against its size and SHA-256 and
written atomically, and the cached copy is used only while it passes that check (as MNIST's,
:mod:`.download`); or it is read from ``data_dir``, which may hold the archive or the extracted
``.bin`` files (``data_batch_1.bin`` ... ``data_batch_5.bin``, ``test_batch.bin``, directly or in
``cifar-10-batches-bin/``). Each record is one label byte and 3,072 pixel bytes (the red, green
and blue 32x32 planes); the members are read straight from the archive with ``tarfile``, never
unpickled. Images come back flat ``(n, 3072)`` as float32 in ``[0, 1]`` (``image_shape``
``(3, 32, 32)``), labels int64.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np

from .download import Source, cache_dir, ensure_cached, fetch_files
from .errors import DatasetError
from .idx import Split

ARCHIVE = "cifar-10-binary.tar.gz"
URLS = ("https://www.cs.toronto.edu/~kriz/",)
SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
SIZE = 170_052_171
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
RECORD = 1 + 3 * 32 * 32


def cifar10(
    data_dir: str | os.PathLike | None = None, download: bool = True
) -> tuple[Split, Split]:
    """``(x_train, y_train), (x_test, y_test)``: 50,000 and 10,000 images, flat float32."""
    if data_dir is not None:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise DatasetError(f"cifar10: data folder {folder} does not exist")
        found = _find_local(folder)
        if found is None:
            raise DatasetError(_missing_message(folder))
        return found
    # the cache holds the archive only, trusted when its size and SHA-256 check out
    folder = cache_dir() / "cifar10"
    ensure_cached("cifar10", folder, _source(URLS), _missing_message(folder), download)
    return _splits(_read_archive(folder / ARCHIVE), folder / ARCHIVE)


def fetch(folder: Path, urls: tuple[str, ...] | None = None, timeout: float = 60.0) -> None:
    """Download the archive into ``folder`` unless a verified copy is there."""
    fetch_files("cifar10", folder, _source(urls or URLS), _missing_message(folder), timeout)


def _source(urls: tuple[str, ...]) -> Source:
    return Source(urls, {ARCHIVE: SHA256}, {ARCHIVE: SIZE})


def _missing_message(folder: Path) -> str:
    return (
        f"cifar10: expected {ARCHIVE} or the extracted data_batch_1.bin ... data_batch_5.bin and "
        f"test_batch.bin in {folder}; download the binary version from {URLS[0]}{ARCHIVE} and "
        f"put it there"
    )


def _find_local(folder: Path) -> tuple[Split, Split] | None:
    for base in (folder, folder / "cifar-10-batches-bin"):
        if all((base / name).is_file() for name in TRAIN_FILES + TEST_FILES):
            read = {name: (base / name).read_bytes() for name in TRAIN_FILES + TEST_FILES}
            return _splits(read, base)
    archive = folder / ARCHIVE
    if archive.is_file():
        return _splits(_read_archive(archive), archive)
    return None


def _read_archive(path: Path) -> dict[str, bytes]:
    """The ``.bin`` members of the archive, by file name (read in memory, no extraction)."""
    wanted = set(TRAIN_FILES + TEST_FILES)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name in wanted:
                    f = tar.extractfile(member)
                    assert f is not None
                    found[name] = f.read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DatasetError(f"cifar10: cannot read the archive {path}: {err}") from None
    missing = sorted(wanted - set(found))
    if missing:
        raise DatasetError(f"cifar10: the archive {path} lacks {', '.join(missing)}")
    return found


def _records(data: bytes, where: str) -> Split:
    if len(data) == 0 or len(data) % RECORD:
        raise DatasetError(
            f"cifar10: {where} has {len(data)} bytes, not a whole number of {RECORD}-byte records "
            f"(truncated or not the binary version?)"
        )
    rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    labels = rows[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DatasetError(f"cifar10: {where} has label {int(labels.max())}, outside 0..9")
    return rows[:, 1:].astype(np.float32) / np.float32(255.0), labels


def _splits(read: dict[str, bytes], where: Path) -> tuple[Split, Split]:
    out = []
    for names in (TRAIN_FILES, TEST_FILES):
        parts = [_records(read[name], f"{name} in {where}") for name in names]
        out.append((np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])))
    return out[0], out[1]
