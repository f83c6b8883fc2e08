"""Data set files downloaded once into a cache and trusted only when verified.

Every file has a published SHA-256 (and, where known, a size). A download streams to a temporary
file that takes its name only when the checksum matches, and is aborted as soon as it announces
or grows past the expected size, and when it is slower than :data:`MIN_RATE` bytes a second or
longer than its whole-download deadline (a server that drips a byte every few seconds never trips
a per-read timeout). A cached file is used only after its size and SHA-256 check out; the result
is remembered by size, modification time and inode change time in the folder's
``.nnx-verified.json``, so an unchanged cache is not hashed again, and a file rewritten with its
old modification time put back (which changes its ctime) is hashed again. Files are fetched over
https where the publisher offers it; the published SHA-256 is what guarantees integrity, on any
transport. MNIST, Fashion-MNIST (:mod:`.idx`) and CIFAR-10
(:mod:`.cifar`) share this code.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write
from .errors import DatasetError

MAX_DOWNLOAD_BYTES = 64 << 20  # for a file of no published size: every IDX file is smaller
# A download averaging fewer bytes a second than this, once ``timeout`` seconds have passed, is
# abandoned; so is one still running after ``timeout + limit / MIN_RATE`` seconds in all.
MIN_RATE = 16 << 10
_MEMO = ".nnx-verified.json"


@dataclass(frozen=True)
class Source:
    """Where a data set's files are published, and their SHA-256 checksums."""

    urls: tuple[str, ...]
    sha256: dict[str, str]
    # each file's size in bytes: a download that grows past it is aborted, and a cached file of
    # another size is not trusted (None: no sizes known, downloads capped at MAX_DOWNLOAD_BYTES)
    sizes: dict[str, int] | None = None


class ChecksumError(ValueError):
    """A downloaded file's SHA-256 differs from the published one, or it is too large."""


def cache_dir() -> Path:
    """``$NNX_DATA`` when set, else ``~/.cache/nnx``."""
    return Path(os.environ.get("NNX_DATA") or Path.home() / ".cache" / "nnx")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _download(
    url: str, target: Path, expected_sha256: str, timeout: float, limit: int = MAX_DOWNLOAD_BYTES
) -> None:
    """Stream ``url`` to ``target`` atomically; the file takes its name only when its SHA-256
    matches (so a failed or corrupted download never leaves a file behind). A download larger
    than ``limit`` bytes is aborted as soon as it says so or grows past it; one slower than
    :data:`MIN_RATE` after ``timeout`` seconds, or longer than ``timeout + limit / MIN_RATE``
    seconds, raises TimeoutError. ``timeout`` also bounds each wait for the server."""
    digest = hashlib.sha256()
    start = time.monotonic()
    deadline = timeout + limit / MIN_RATE
    with atomic_write(target) as out, urllib.request.urlopen(url, timeout=timeout) as response:
        announced = response.headers.get("Content-Length")
        if announced is not None and announced.isdigit() and int(announced) > limit:
            raise ChecksumError(
                f"{target.name} is {int(announced)} bytes, more than the expected {limit}"
            )
        total = 0
        # read1: whatever has arrived (at most 1 MiB), so the clock is checked between drips
        while chunk := response.read1(1 << 20):
            total += len(chunk)
            if total > limit:
                raise ChecksumError(
                    f"download of {target.name} exceeds the expected {limit} bytes; aborted"
                )
            digest.update(chunk)
            out.write(chunk)
            elapsed = time.monotonic() - start
            if elapsed > deadline or (elapsed > timeout and total < MIN_RATE * elapsed):
                raise TimeoutError(
                    f"download of {target.name} too slow: {total} bytes in {elapsed:.0f} s "
                    f"(at least {MIN_RATE} bytes/s are needed); aborted"
                )
        got = digest.hexdigest()
        if got != expected_sha256:
            raise ChecksumError(
                f"checksum mismatch for {target.name}: expected SHA-256 {expected_sha256}, got {got}"
            )


def verify_files(
    folder: Path, sha256: dict[str, str], sizes: dict[str, int] | None = None
) -> list[str]:
    """The files of ``sha256`` (name -> published SHA-256) that are missing from ``folder`` or
    fail their size or SHA-256 check. A file that passed is remembered (size, modification
    and inode change times) in ``folder``'s ``.nnx-verified.json`` and not hashed again while
    those stay the same; any write to the file changes its ctime, which no user can set back."""
    memo = _read_memo(folder)
    bad, changed = [], False
    for filename, expected in sha256.items():
        path = folder / filename
        try:
            st = path.stat()
        except OSError:
            bad.append(filename)
            continue
        record = {
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns,
            "sha256": expected,
        }
        if memo.get(filename) == record:
            continue
        size = (sizes or {}).get(filename)
        if (
            not path.is_file()
            or (size is not None and st.st_size != size)
            or (_sha256(path) != expected)
        ):
            bad.append(filename)
            changed |= memo.pop(filename, None) is not None
            continue
        memo[filename] = record
        changed = True
    if changed:
        try:
            with atomic_write(folder / _MEMO, "w", encoding="utf-8") as f:
                json.dump(memo, f)
        except OSError:  # a read-only cache still works; it is hashed each time
            pass
    return bad


def _read_memo(folder: Path) -> dict[str, Any]:
    try:
        with open(folder / _MEMO, encoding="utf-8") as f:
            memo = json.load(f)
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def fetch_files(
    name: str, folder: Path, source: Source, missing: str, timeout: float = 60.0
) -> None:
    """Download every file of ``source`` that ``folder`` lacks or holds a bad copy of, trying its
    URLs in turn; DatasetError naming each failure, then ``missing`` (what to do instead)."""
    folder.mkdir(parents=True, exist_ok=True)
    for filename, expected in source.sha256.items():
        target = folder / filename
        if target.exists() and _sha256(target) == expected:
            continue
        limit = (source.sizes or {}).get(filename, MAX_DOWNLOAD_BYTES)
        errors = []
        for url in source.urls:
            try:
                _download(url.rstrip("/") + "/" + filename, target, expected, timeout, limit)
                break
            except (urllib.error.URLError, OSError, ChecksumError) as err:
                errors.append(f"{url}: {err}")
            except http.client.HTTPException as err:  # e.g. a malformed status line
                errors.append(f"{url}: bad HTTP response ({type(err).__name__}: {err})")
        else:
            raise DatasetError(
                f"{name}: could not download {filename} ({'; '.join(errors)}). {missing}"
            )


def ensure_cached(
    name: str, folder: Path, source: Source, missing: str, download: bool = True
) -> None:
    """Make the cache ``folder`` hold verified copies of the files of ``source``: missing or bad
    ones are downloaded (or, with ``download=False``, named in a DatasetError)."""
    bad = (
        verify_files(folder, source.sha256, source.sizes)
        if folder.is_dir()
        else list(source.sha256)
    )
    if not bad:
        return
    if not download:
        if folder.is_dir() and any((folder / f).exists() for f in bad):
            raise DatasetError(
                f"{name}: cached files {', '.join(bad)} in {folder} fail their size or "
                f"SHA-256 check; delete them, or allow a download to replace them"
            )
        raise DatasetError(missing)
    fetch_files(name, folder, source, missing)  # replaces the bad files too
    bad = verify_files(folder, source.sha256, source.sizes)
    assert not bad  # fetch_files() wrote every file with its checksum, or raised
