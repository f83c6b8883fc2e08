"""One process per run folder: an exclusive lock, and the clean-up of interrupted writes.

:func:`lock_run_folder` takes an exclusive ``fcntl.flock`` on ``<folder>/.nnx.lock`` and writes
the holder's pid into it. The kernel drops the lock when the holder exits for any reason,
``kill -9`` included, so a lock file left by a dead process never blocks the next run. A second
process that tries to lock the same folder fails at once with :class:`RunFolderBusy`, whose
message names the holder's pid. (On systems without ``fcntl``, such as Windows, no lock is taken.)

>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> with lock_run_folder(folder):
...     try:
...         lock_run_folder(folder)
...     except RunFolderBusy as err:
...         print("busy")
busy
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".nnx.lock"


class RunFolderBusy(RuntimeError):
    """Another live process holds the run folder's lock; the message names its pid."""

    def __init__(self, folder: Path, pid: int | None):
        self.folder, self.pid = folder, pid
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(f"run folder {folder} is in use by {holder}")


class RunLock:
    """An exclusive lock on a run folder; release it with :meth:`release` or a ``with`` block."""

    def __init__(self, folder: Path, fd: int | None):
        self.folder, self._fd = folder, fd

    @property
    def path(self) -> Path:
        return self.folder / LOCK_NAME

    def release(self) -> None:
        """Remove the lock file (while still holding it) and drop the lock."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def lock_run_folder(folder: str | os.PathLike) -> RunLock:
    """Lock ``folder`` (which must exist) for this process, or raise :class:`RunFolderBusy`."""
    folder = Path(folder)
    if fcntl is None:  # pragma: no cover - Windows
        return RunLock(folder, None)
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise RunFolderBusy(folder, pid) from None
        except BaseException:
            os.close(fd)
            raise
        # The holder before us may have removed the file between our open and our flock: then
        # we locked an orphan, and a third process could lock the new file. Lock the file that
        # is at the path now.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return RunLock(folder, fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text)
    except (OSError, ValueError):
        return None


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files that an interrupted atomic write (``kill -9``, power loss)
    left in ``folder``; call it only while holding the folder's lock. Returns what was removed."""
    removed = []
    for p in Path(folder).glob(".*.tmp"):
        try:
            if p.is_file() and not p.is_symlink():
                p.unlink()
                removed.append(p)
        except OSError:
            pass
    return removed
