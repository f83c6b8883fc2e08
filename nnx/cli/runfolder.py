"""Run folders: choosing and creating one (:func:`prepare_out`), one process per folder (an
exclusive lock, :func:`lock_out`), the clean-up of interrupted writes, and the command's own
outputs written atomically (:func:`write_json`, :func:`write_text`).

Every output goes through :func:`nnx.io.atomic.atomic_write`: a temporary file in the same
folder renamed over the destination, so a crash never leaves half a file, and a symlink at the
destination is replaced, never written through.

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

import datetime as _dt
import json
import os
import re
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write
from .settings import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".nnx.lock"
# The files the command writes into a run folder, by exact name; only these (and the temporary
# files their atomic writes leave, ``.NAME.XXXXXXXX.tmp``) are ever treated as nnx's own.
OUTPUT_NAMES = (
    "config.json",
    "summary.json",
    "history.csv",
    "last.npz",
    "best.npz",
    "curves.png",
    "confusion.png",
    "sample.txt",
)
_TEMP = re.compile(r"\.(" + "|".join(map(re.escape, OUTPUT_NAMES)) + r")\.[A-Za-z0-9_]{1,16}\.tmp")


def is_own_temp_file(name: str) -> bool:
    """Whether ``name`` is a temporary file an interrupted atomic write of an nnx output left
    (``.last.npz.k2j4_x9a.tmp``): a user's own ``.draft.tmp`` is not."""
    return _TEMP.fullmatch(name) is not None


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
        """Remove the temp files of interrupted writes and the lock file (while still holding
        the lock), then drop the lock. A signal is an exception that can strike at any
        bytecode, including the instant an atomic write has made its temp file but not yet
        entered the block that removes it on failure: the run leaves its folder clean anyway."""
        if self._fd is None:
            return
        remove_stale_temp_files(self.folder)
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
    of one of the command's outputs (:data:`OUTPUT_NAMES`) left in ``folder``; call it only while
    holding the folder's lock. Returns what was removed; other files are never touched."""
    removed = []
    for p in Path(folder).glob(".*.tmp"):
        try:
            if is_own_temp_file(p.name) and p.is_file() and not p.is_symlink():
                p.unlink()
                removed.append(p)
        except OSError:
            pass
    return removed


def prepare_out(settings: dict[str, Any], resume: Path | None) -> Path:
    """Create the output folder: ``--out``, the resumed run's folder, or a new
    runs/<timestamp> (created atomically: a run started in the same second gets
    runs/<timestamp>-2, -3, ..., so parallel runs never share a folder). Checking that the
    folder holds no other run's files is :func:`refuse_used_out`'s job, under the lock."""
    if settings["out"] is not None:
        out = Path(settings["out"])
    elif resume is not None:
        out = resume.parent
    else:
        return _new_default_folder(Path("runs") / _dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    try:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} exists and is not a folder")
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot create the folder: {err.strerror or err}") from None
    return out


def _new_default_folder(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``, ...: the first that this process creates itself
    (``mkdir`` fails when another process created it first)."""
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10000):
            out = base if n == 1 else base.with_name(f"{base.name}-{n}")
            try:
                out.mkdir()
            except FileExistsError:
                continue
            return out
    except OSError as err:
        raise ConfigError(
            f"cannot create a run folder in {base.parent}: {err.strerror or err}; choose --out"
        ) from None
    raise ConfigError(f"{base.parent} holds 9999 runs named {base.name}; choose --out")


def refuse_used_out(out: Path, settings: dict[str, Any], resume: Path | None) -> None:
    """Refuse a folder holding files that are not nnx's own leftovers (lock, temporary files of
    its writes, by exact name) unless ``--overwrite`` or it is the resumed run's folder. Called
    while holding the folder's lock, so no live run's folder can be taken over."""
    same_run = resume is not None and out.resolve() == resume.parent.resolve()
    if settings["overwrite"] or same_run:
        return
    try:
        used = sorted(
            p.name for p in out.iterdir() if p.name != LOCK_NAME and not is_own_temp_file(p.name)
        )
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot read the folder: {err.strerror or err}") from None
    if used:
        runs = [name for name in used if name in OUTPUT_NAMES]
        kept = [name for name in used if name not in OUTPUT_NAMES]
        parts = []
        if runs:
            parts.append(f"replacing the finished run's {', '.join(runs)}")
        if kept:
            parts.append(f"keeping {', '.join(kept[:3])}" + (", ..." if len(kept) > 3 else ""))
        effect = "; ".join(parts)
        raise ConfigError(
            f"--out folder {out} exists and is not empty; pass --overwrite to write into it "
            f"({effect}) or choose another --out"
        )


def lock_out(out: Path) -> Any:
    """Lock the run folder for this process and remove temp files left by a killed run."""
    try:
        lock = lock_run_folder(out)
    except RunFolderBusy as err:
        raise ConfigError(
            f"--out folder {out} is in use by another run (pid {err.pid}); wait for it to "
            f"finish or choose another --out"
        ) from None
    except OSError as err:
        raise ConfigError(f"--out {out} is not writable: {err.strerror or err}") from None
    remove_stale_temp_files(out)
    return lock


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON at ``path``, atomically (a symlink there is replaced)."""
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_text(path: Path, text: str) -> None:
    """``text`` as UTF-8 at ``path``, atomically (a symlink there is replaced)."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)


def out_folder(settings: dict[str, Any], resume: Path | None) -> Path:
    """The output folder a rank other than 0 reports (rank 0 creates and writes it)."""
    if settings["out"] is not None:
        return Path(settings["out"])
    return resume.parent if resume is not None else Path("runs")
