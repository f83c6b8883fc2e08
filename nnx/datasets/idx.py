"""MNIST and Fashion-MNIST: read from a local folder, or download once into a cache folder.

A folder is searched for, in order: a Keras-style ``mnist.npz`` (``x_train``, ``y_train``,
``x_test``, ``y_test``), then the four standard IDX files, gzipped (``*.gz``) or raw. Without
a folder, the files are looked up in the cache (``$NNX_DATA/<name>`` or
``~/.cache/nnx/<name>``) and the missing ones downloaded from the data set's usual public
location, checked against their SHA-256 and written atomically.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from ..io.npz import NpzReader
from .download import Source, cache_dir, ensure_cached, fetch_files, verify_files
from .errors import DataFileError, DatasetError

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


SOURCES = {
    "mnist": Source(
        urls=(
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ),
        sha256={
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        sizes={
            "train-images-idx3-ubyte.gz": 9912422,
            "train-labels-idx1-ubyte.gz": 28881,
            "t10k-images-idx3-ubyte.gz": 1648877,
            "t10k-labels-idx1-ubyte.gz": 4542,
        },
    ),
    "fashion-mnist": Source(
        # https first (the publisher's GitHub copy); its S3 site serves plain http only. The
        # SHA-256 checksums, not the transport, are what make a downloaded file trusted.
        urls=(
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ),
        sha256={
            "train-images-idx3-ubyte.gz": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
            "train-labels-idx1-ubyte.gz": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
            "t10k-images-idx3-ubyte.gz": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
            "t10k-labels-idx1-ubyte.gz": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
        },
        sizes={
            "train-images-idx3-ubyte.gz": 26421880,
            "train-labels-idx1-ubyte.gz": 29515,
            "t10k-images-idx3-ubyte.gz": 4422102,
            "t10k-labels-idx1-ubyte.gz": 5148,
        },
    ),
}

Split = tuple[np.ndarray, np.ndarray]


def mnist(data_dir: str | os.PathLike | None = None, download: bool = True) -> tuple[Split, Split]:
    """MNIST as ``((x_train, y_train), (x_test, y_test))``: float32 pixels in [0, 1] of shape
    ``(n, 784)`` and int64 labels. See the module docstring for where the files come from."""
    return load_idx_dataset("mnist", data_dir, download)


def fashion_mnist(
    data_dir: str | os.PathLike | None = None, download: bool = True
) -> tuple[Split, Split]:
    """Fashion-MNIST, in the same form as :func:`mnist`."""
    return load_idx_dataset("fashion-mnist", data_dir, download)


def load_idx_dataset(
    name: str, data_dir: str | os.PathLike | None = None, download: bool = True
) -> tuple[Split, Split]:
    """Load ``name`` (a key of :data:`SOURCES`) from ``data_dir``, or from the cache, downloading."""
    if data_dir is not None:
        folder = Path(data_dir)
        if not folder.is_dir():
            raise DatasetError(f"{name}: data folder {folder} does not exist")
        found = _find_local(folder)
        if found is None:
            raise DatasetError(_missing_message(name, folder))
        return found
    folder = cache_dir() / name
    # The cache is trusted only when verified: each gzipped file's size and SHA-256 (the hash is
    # remembered by size and modification time, so an unchanged cache is not hashed again).
    ensure_cached(name, folder, SOURCES[name], _missing_message(name, folder), download)
    found = _find_local(folder, gz_only=True)
    assert found is not None
    return found


def verify_cache(name: str, folder: Path) -> list[str]:
    """The files of ``name`` in the cache ``folder`` that are missing or fail their size or
    SHA-256 check (see :func:`.download.verify_files`)."""
    return verify_files(folder, SOURCES[name].sha256, SOURCES[name].sizes)


def fetch(name: str, folder: Path, base_url: str | None = None, timeout: float = 60.0) -> None:
    """Download every missing gzipped IDX file of ``name`` into ``folder``, verifying SHA-256."""
    source = SOURCES[name]
    if base_url:
        source = Source((base_url,), source.sha256, source.sizes)
    fetch_files(name, folder, source, _missing_message(name, folder), timeout)


def _missing_message(name: str, folder: Path) -> str:
    files = ", ".join(f"{stem}.gz" for stem in IDX_FILES.values())
    return (
        f"{name}: expected {files} (gzipped or not) or a Keras-style mnist.npz in {folder}; "
        f"download them from {SOURCES[name].urls[0]} and put them there"
    )


def _find_local(folder: Path, gz_only: bool = False) -> tuple[Split, Split] | None:
    """Read the data set from ``folder``: an ``mnist.npz`` or the four IDX files; with
    ``gz_only`` (the verified cache) only the gzipped IDX files."""
    npz = folder / "mnist.npz"
    if npz.is_file() and not gz_only:
        return _read_npz(npz)
    paths = {}
    for key, stem in IDX_FILES.items():
        candidates = (folder / f"{stem}.gz",) if gz_only else (folder / f"{stem}.gz", folder / stem)
        for candidate in candidates:
            if candidate.is_file():
                paths[key] = candidate
                break
        else:
            return None
    splits = []
    for split in ("train", "test"):
        images = _images(paths[f"{split}_images"])
        labels = _labels(paths[f"{split}_labels"])
        splits.append((images, _check_labels(labels, len(images), paths[f"{split}_labels"])))
    return splits[0], splits[1]


def _read_npz(path: Path) -> tuple[Split, Split]:
    names = ("x_train", "y_train", "x_test", "y_test")
    with NpzReader(path, "data file", DataFileError) as reader:
        missing = [k for k in names if k not in reader]
        if missing:
            raise DataFileError(
                f"{path} is not a Keras-style mnist.npz with x_train, y_train, x_test, y_test "
                f"(missing {', '.join(missing)})"
            )
        reader.check()
        arrays = {k: reader.read(k, kinds="iuf") for k in names}
    return tuple(  # type: ignore[return-value]
        (
            _scale(arrays[f"x_{s}"], path),
            _check_labels(arrays[f"y_{s}"], len(arrays[f"x_{s}"]), path),
        )
        for s in ("train", "test")
    )


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as err:
        raise DatasetError(f"cannot read {path}: {err}") from None
    header = 4 + 4 * ndim
    if len(data) < header or struct.unpack(">I", data[:4])[0] != magic:
        raise DatasetError(f"{path} is not an IDX file of unsigned bytes with {ndim} dimension(s)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != int(np.prod(shape)):
        raise DatasetError(
            f"{path} is truncated or padded: header says shape {shape}, "
            f"file holds {len(data) - header} bytes of data"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _images(path: Path) -> np.ndarray:
    return _scale(_read_idx(path, 0x0803, 3), path)


def _labels(path: Path) -> np.ndarray:
    return _read_idx(path, 0x0801, 1)


def _scale(images: np.ndarray, path: Path) -> np.ndarray:
    if images.ndim < 2:
        raise DatasetError(f"{path}: images must have at least 2 dimensions, got {images.shape}")
    return (images.reshape(len(images), -1).astype(np.float32)) / np.float32(255.0)


def _check_labels(labels: np.ndarray, n: int, path: Path) -> np.ndarray:
    if labels.shape != (n,):
        raise DatasetError(f"{path}: {n} images but labels of shape {labels.shape}")
    return labels.astype(np.int64)


__all__ = ["SOURCES", "cache_dir", "fashion_mnist", "fetch", "load_idx_dataset", "mnist"]
