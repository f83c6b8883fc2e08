"""MNIST readers and the download path, against a local HTTP server serving fixture files."""

import functools
import gzip
import hashlib
import http.server
import struct
import threading

import numpy as np
import pytest

from nnx.datasets import DatasetError, load_dataset, mnist
from nnx.datasets import download as download_module
from nnx.datasets import idx as mnist_module

N_TRAIN, N_TEST = 12, 5


def _idx_images(images):
    return struct.pack(">IIII", 0x0803, *images.shape) + images.tobytes()


def _idx_labels(labels):
    return struct.pack(">II", 0x0801, len(labels)) + labels.tobytes()


def _fixture_files():
    rng = np.random.default_rng(0)
    content = {}
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        content[f"{prefix}-images-idx3-ubyte"] = _idx_images(images)
        content[f"{prefix}-labels-idx1-ubyte"] = _idx_labels(labels)
    return content


def _write(folder, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    for stem, data in _fixture_files().items():
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data, mtime=0))
        else:
            (folder / stem).write_bytes(data)


@pytest.mark.parametrize("gz", [True, False])
def test_reads_idx_files_from_a_folder(tmp_path, gz):
    _write(tmp_path, gz)
    (x, y), (xt, yt) = mnist(tmp_path)
    assert x.shape == (N_TRAIN, 784) and xt.shape == (N_TEST, 784)
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert y.dtype == np.int64 and yt.shape == (N_TEST,)
    raw = _fixture_files()["train-images-idx3-ubyte"]
    np.testing.assert_array_equal(x[0] * 255, np.frombuffer(raw[16 : 16 + 784], np.uint8))


def test_reads_a_keras_npz(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(
        tmp_path / "mnist.npz",
        x_train=rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        y_train=np.arange(6, dtype=np.uint8),
        x_test=rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
        y_test=np.arange(2, dtype=np.uint8),
    )
    data = load_dataset("mnist", data_dir=tmp_path)
    assert data.train[0].shape == (6, 784) and data.test[1].tolist() == [0, 1]


def test_missing_folder_and_files_name_what_is_expected(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        mnist(tmp_path / "nope")
    with pytest.raises(
        DatasetError, match=r"expected train-images-idx3-ubyte.gz.*in " + str(tmp_path)
    ):
        mnist(tmp_path)


def test_truncated_idx_file(tmp_path):
    _write(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="truncated"):
        mnist(tmp_path)


class _Server:
    """A quiet HTTP server on 127.0.0.1 serving one folder."""

    def __init__(self, folder):
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path, monkeypatch):
    """Fixture files on a local server, registered as the 'mnist' source with their checksums."""
    root = tmp_path / "server"
    _write(root)
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.iterdir()}
    with _Server(root) as server:
        source = mnist_module.Source(urls=(server.url,), sha256=sums)
        monkeypatch.setitem(mnist_module.SOURCES, "mnist", source)
        monkeypatch.setenv("NNX_DATA", str(tmp_path / "cache"))
        yield root


def test_downloads_into_the_cache_and_verifies(served, tmp_path):
    (x, y), _ = mnist()
    cache = tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [p.name for p in served.iterdir()] + [".nnx-verified.json"]
    )
    assert x.shape == (N_TRAIN, 784)
    for p in served.iterdir():  # served files deleted: the cache is used, nothing downloaded
        p.unlink()
    (x2, _), _ = mnist()
    np.testing.assert_array_equal(x, x2)


def test_corrupted_download_is_refused_and_not_kept(served, tmp_path):
    bad = served / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-3] + b"xyz")
    with pytest.raises(DatasetError, match="checksum mismatch for train-labels-idx1-ubyte.gz"):
        mnist()
    cache = tmp_path / "cache" / "mnist"
    assert not (cache / "train-labels-idx1-ubyte.gz").exists()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp files left


def test_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NNX_DATA", str(tmp_path / "cache"))
    source = mnist_module.Source(
        urls=("http://127.0.0.1:9/",), sha256=mnist_module.SOURCES["mnist"].sha256
    )
    monkeypatch.setitem(mnist_module.SOURCES, "mnist", source)
    with pytest.raises(
        DatasetError, match=r"could not download train-images-idx3-ubyte.gz.*put them there"
    ):
        mnist()
    with pytest.raises(DatasetError, match="expected"):
        mnist(download=False)


def test_published_checksums_are_well_formed():
    for source in mnist_module.SOURCES.values():
        assert len(source.sha256) == 4
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in source.sha256.values())


def test_a_tampered_cache_is_not_used(served, tmp_path, monkeypatch):
    """Cached files are trusted only when their size and SHA-256 check out; the hash is
    remembered by size and mtime, so an unchanged cache is not hashed again."""
    (x, y), _ = mnist()
    cached = tmp_path / "cache" / "mnist" / "train-labels-idx1-ubyte.gz"
    good = cached.read_bytes()
    hashed = []
    real = download_module._sha256
    monkeypatch.setattr(download_module, "_sha256", lambda p: hashed.append(p.name) or real(p))
    mnist()
    assert hashed == []  # remembered
    tampered = gzip.compress(_idx_labels((np.asarray(y) + 1) % 10))
    cached.write_bytes(tampered)
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.gz in .* fail their size or"):
        mnist(download=False)
    (_, y2), _ = mnist()  # downloads a good copy again
    np.testing.assert_array_equal(y2, y)
    assert cached.read_bytes() == good


def test_a_download_larger_than_expected_is_aborted(served, tmp_path, monkeypatch):
    source = mnist_module.SOURCES["mnist"]
    sizes = {name: (served / name).stat().st_size for name in source.sha256}
    sizes["train-images-idx3-ubyte.gz"] -= 1  # the server sends one byte more than promised
    monkeypatch.setitem(
        mnist_module.SOURCES, "mnist", mnist_module.Source(source.urls, source.sha256, sizes)
    )
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.gz is \d+ bytes, more than"):
        mnist()
    cache = tmp_path / "cache" / "mnist"
    assert not (cache / "train-images-idx3-ubyte.gz").exists()
    assert not list(cache.glob(".*.tmp"))


def test_published_sizes_cover_every_file():
    for source in mnist_module.SOURCES.values():
        assert set(source.sizes) == set(source.sha256)
        assert all(1000 < n < 64 << 20 for n in source.sizes.values())


class _RawServer:
    """A TCP server on 127.0.0.1 that answers every connection with ``respond(socket)``."""

    def __init__(self, respond):
        import socketserver

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                try:
                    respond(self.request)
                except OSError:  # the client gave up: that is the point of these tests
                    pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _use_only(monkeypatch, tmp_path, url):
    monkeypatch.setenv("NNX_DATA", str(tmp_path / "cache"))
    source = mnist_module.SOURCES["mnist"]
    monkeypatch.setitem(
        mnist_module.SOURCES, "mnist", mnist_module.Source((url,), source.sha256, source.sizes)
    )


def test_a_dripping_server_is_abandoned(tmp_path, monkeypatch):
    """A server sending one byte at a time never trips the per-read timeout; the minimum rate
    ends the download (bounded: the server stops after 5 s whatever happens)."""
    import time

    def drip(sock):
        sock.recv(4096)
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 9000\r\n\r\n")
        end = time.monotonic() + 5
        while time.monotonic() < end:
            sock.sendall(b"x")
            time.sleep(0.05)

    monkeypatch.setattr(download_module, "MIN_RATE", 1000)  # bytes/s: the drip sends ~20
    with _RawServer(drip) as server:
        _use_only(monkeypatch, tmp_path, server.url)
        real = download_module._download
        monkeypatch.setattr(  # timeout 0.5 s: the rate is judged after half a second
            download_module, "_download", lambda u, t, e, timeout, limit: real(u, t, e, 0.5, limit)
        )
        start = time.monotonic()
        with pytest.raises(DatasetError, match=r"too slow: \d+ bytes in \d+ s"):
            mnist()
        assert time.monotonic() - start < 4
    assert not [p for p in (tmp_path / "cache" / "mnist").iterdir() if p.name.startswith(".")]


def test_a_bad_status_line_is_one_clear_error(tmp_path, monkeypatch):
    def garbage(sock):
        sock.recv(4096)
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")

    with _RawServer(garbage) as server:
        _use_only(monkeypatch, tmp_path, server.url)
        with pytest.raises(DatasetError, match=r"bad HTTP response \(BadStatusLine"):
            mnist()


def test_a_cache_file_rewritten_with_its_old_mtime_is_hashed_again(served, tmp_path):
    """Same size, same mtime, one byte flipped: the memo's ctime no longer matches."""
    import os

    mnist()
    cached = tmp_path / "cache" / "mnist" / "train-labels-idx1-ubyte.gz"
    st = cached.stat()
    data = bytearray(cached.read_bytes())
    data[-1] ^= 0xFF
    cached.write_bytes(bytes(data))
    os.utime(cached, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (cached.stat().st_size, cached.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.gz in .* fail their size or"):
        mnist(download=False)
