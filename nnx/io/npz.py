"""The one ``.npz`` reader and writer of nnx: model files, checkpoints and the user's data files.

A file is read as the untrusted input it may be. :class:`NpzReader` opens the zip archive itself
and, before allocating anything, refuses:

* a path that is not a regular file (a folder, a FIFO, ``/dev/zero``): it is never opened for
  reading, so nothing blocks or reads forever;
* a file that is not a zip archive (a pickle, a PyTorch ``.pt``), a member that is not a
  ``.npy`` array, an encrypted member or a compression method other than stored or deflate;
* a member that ends past the end of the file (truncated), or that expands more than
  ``MAX_COMPRESSION`` times (a zip bomb);
* a ``.npy`` header whose shape x itemsize disagrees with the member's stored size, exceeds the
  per-member or total cap, or differs from the shape the caller expects (a model's parameter
  shapes); an object or structured dtype (those need pickle, which is never used);
* a JSON record larger than ``max_record_bytes`` or nested deeper than ``MAX_JSON_DEPTH``.

Every refusal is an :class:`~nnx.io.errors.NnxFileError` with a one-line message naming the file
and what is wrong. :func:`write_npz` writes atomically (temporary file, fsync, rename).

>>> import os, tempfile, numpy as np
>>> path = os.path.join(tempfile.mkdtemp(), "a.npz")
>>> _ = write_npz(path, {"w": np.ones((2, 3)), "__meta__": json_member({"format": "demo"})})
>>> with NpzReader(path) as reader:
...     reader.header("w").shape, reader.read_json("__meta__"), reader.read("w").sum()
((2, 3), {'format': 'demo'}, np.float64(6.0))
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..core.checks import dtype_name
from .atomic import atomic_write
from .errors import NnxFileError

MAX_MEMBER_BYTES = 8 << 30  # one array; the largest real parameter is far smaller
MAX_TOTAL_BYTES = 32 << 30  # every array of a file together
MAX_RECORD_BYTES = 4 << 20  # a JSON record (architecture, history of thousands of epochs)
MAX_JSON_DEPTH = 64  # records nest a few levels; a crafted one can nest until RecursionError
MAX_COMPRESSION = 100  # np.savez stores members uncompressed; a zip bomb claims far more
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_KIND_NAMES = {"f": "a real floating type", "u": "bytes", "fiub": "numbers", "fiu": "numbers"}


class Header(NamedTuple):
    """A member's ``.npy`` header: ``shape``, ``fortran`` order, ``dtype``, ``offset`` of the data
    in the member, and ``nbytes`` (shape x itemsize), read without touching the data."""

    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    offset: int
    nbytes: int


def _kind_of_file(mode: int) -> str | None:
    """What a non-regular file is, in words (None for a regular file)."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: str | os.PathLike, what: str = "file", error: type = NnxFileError) -> Any:
    """Open ``path`` for binary reading if it is a regular file. A folder, FIFO or device is
    refused by its kind before it is opened (and checked again on the opened descriptor, which
    is opened non-blocking, so a FIFO swapped in meanwhile cannot hang the reader)."""
    p = Path(path)
    try:
        kind = _kind_of_file(os.stat(p).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        raise error(f"{what} {p} does not exist") from None
    except OSError as err:
        raise error(f"{what} {p} cannot be read ({err.strerror or err})") from None
    if kind is not None:
        raise error(f"{what} {p} is {kind}, not a file")
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as err:
        raise error(f"{what} {p} cannot be opened ({err.strerror or err})") from None
    try:
        kind = _kind_of_file(os.fstat(fd).st_mode)
        if kind is not None:
            raise error(f"{what} {p} is {kind}, not a file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class NpzReader:
    """The members of an ``.npz`` file, each checked header-first (see the module docstring).

    Args:
        path: the file.
        what: how messages name the file (``"model file"``, ``"checkpoint"``, ``"data file"``).
        error: the exception class raised (:class:`NnxFileError` or a subclass of it).
        max_member_bytes, max_total_bytes: caps on one array's and all arrays' declared size.
        max_record_bytes: cap on a JSON record read by :meth:`read_json`.

    Use as a context manager; :meth:`check` reads every header before any array is read.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        what: str = "file",
        error: type[NnxFileError] = NnxFileError,
        max_member_bytes: int = MAX_MEMBER_BYTES,
        max_total_bytes: int = MAX_TOTAL_BYTES,
        max_record_bytes: int = MAX_RECORD_BYTES,
    ):
        self.path = Path(path)
        self.what = what
        self.error = error
        self.max_member_bytes = max_member_bytes
        self.max_total_bytes = max_total_bytes
        self.max_record_bytes = max_record_bytes
        self._headers: dict[str, Header] = {}
        self.handle = open_regular(self.path, what, error)
        try:
            self._open_zip()
        except BaseException:
            self.handle.close()
            raise

    def _fail(self, what: str) -> NnxFileError:
        return self.error(f"{self.what} {self.path} {what}")

    def _open_zip(self) -> None:
        size = os.fstat(self.handle.fileno()).st_size
        magic = self.handle.read(4)
        self.handle.seek(0)
        if size == 0:
            raise self._fail("is empty (an interrupted copy?), not an nnx .npz file")
        if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise self._fail("is not an nnx .npz file (not a zip archive)")
        try:
            self.zip = zipfile.ZipFile(self.handle)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as err:
            raise self._fail(
                f"is truncated or corrupted (its zip directory is missing or damaged: {err})"
            ) from None
        self.members: dict[str, zipfile.ZipInfo] = {}
        try:
            for info in self.zip.infolist():
                self._check_member(info, size)
        except BaseException:
            self.zip.close()
            raise

    def _check_member(self, info: zipfile.ZipInfo, size: int) -> None:
        name = info.filename
        if not name.endswith(".npy"):
            raise self._fail(f"is not an nnx .npz file (member {name!r} is not a .npy array)")
        key = name[: -len(".npy")]
        if key in self.members:
            raise self._fail(f"is corrupted (member {name!r} appears twice)")
        if info.flag_bits & 0x1:
            raise self._fail(f"has an encrypted member {name!r}; nnx files are never encrypted")
        if info.compress_type not in _METHODS:
            raise self._fail(
                f"member {name!r} uses zip compression method {info.compress_type}; only "
                "stored and deflate are read"
            )
        if info.header_offset + info.compress_size > size:
            raise self._fail(f"is truncated (member {name!r} ends past the end of the file)")
        stored = info.compress_size if info.compress_type != zipfile.ZIP_STORED else None
        if stored is not None and info.file_size > MAX_COMPRESSION * max(stored, 1024):
            raise self._fail(
                f"member {name!r} expands {stored} bytes to {info.file_size} (a zip bomb?)"
            )
        if stored is None and info.file_size != info.compress_size:
            raise self._fail(f"is corrupted (member {name!r} has inconsistent sizes)")
        self.members[key] = info

    def close(self) -> None:
        self.zip.close()
        self.handle.close()

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __contains__(self, key: str) -> bool:
        return key in self.members

    def keys(self) -> list[str]:
        """The member names without ``.npy``, in file order."""
        return list(self.members)

    def _corrupt(self, key: str, err: BaseException) -> NnxFileError:
        if isinstance(err, EOFError):
            return self._fail(f"is truncated (entry {key!r} is cut short)")
        return self._fail(f"is truncated or corrupted (entry {key!r}: {type(err).__name__}: {err})")

    def header(
        self, key: str, kinds: str | None = None, shape: tuple[int, ...] | None = None
    ) -> Header:
        """Member ``key``'s checked ``.npy`` header; its dtype kind must be in ``kinds`` (when
        given: ``"f"`` real floating, ``"iu"`` integers, ``"b"`` booleans, ...) and its shape
        ``shape`` (when given)."""
        if key in self._headers:
            header = self._headers[key]
        else:
            info = self.members.get(key)
            if info is None:
                raise self._fail(f"has no entry {key!r}")
            try:
                with self.zip.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        header_shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        header_shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise ValueError(f"unsupported .npy version {version}")
                    offset = f.tell()
            except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as err:
                raise self._corrupt(key, err) from None
            if shape is not None and tuple(header_shape) != tuple(shape):
                raise self._fail(
                    f"entry {key!r} has shape {tuple(header_shape)}, expected {tuple(shape)}"
                )
            if dtype.hasobject:
                raise self._fail(
                    f"entry {key!r} has dtype object, which needs pickle (never loaded)"
                )
            if dtype.fields is not None or dtype.subdtype is not None:
                raise self._fail(f"entry {key!r} has structured dtype {dtype}; nnx stores numbers")
            nbytes = math.prod(header_shape) * dtype.itemsize
            if info.file_size - offset != nbytes:
                raise self._fail(
                    f"entry {key!r} claims shape {tuple(header_shape)} ({nbytes} bytes) but stores "
                    f"{info.file_size - offset} bytes"
                )
            if nbytes > self.max_member_bytes:
                raise self._fail(
                    f"entry {key!r} ({nbytes} bytes) is larger than the {self.max_member_bytes} "
                    "bytes allowed for one array"
                )
            header = Header(tuple(header_shape), fortran, dtype, offset, nbytes)
            self._headers[key] = header
        if shape is not None and header.shape != tuple(shape):
            raise self._fail(f"entry {key!r} has shape {header.shape}, expected {tuple(shape)}")
        if kinds is not None and header.dtype.kind not in kinds:
            raise self._fail(
                f"entry {key!r} has dtype {header.dtype}, not "
                + _KIND_NAMES.get(kinds, f"kind {kinds}")
            )
        return header

    def check(self, expected: Mapping[str, tuple[int, ...]] | None = None) -> dict[str, Header]:
        """Every member's header, checked before any array is read: the caps, and for each key
        in ``expected`` the exact shape (keys absent from the file are the caller's to judge)."""
        expected = expected or {}
        headers = {key: self.header(key, shape=expected.get(key)) for key in self.members}
        total = sum(h.nbytes for h in headers.values())
        if total > self.max_total_bytes:
            raise self._fail(
                f"declares {total} bytes of arrays, more than the {self.max_total_bytes} allowed"
            )
        return headers

    def read(
        self,
        key: str,
        shape: tuple[int, ...] | None = None,
        kinds: str = "fiub",
        max_bytes: int | None = None,
    ) -> np.ndarray:
        """Member ``key`` as a NumPy array, after its header: dtype kind in ``kinds``, exactly
        ``shape`` when given, at most ``max_bytes``. The member's CRC is checked."""
        header = self.header(key, kinds, shape)
        if max_bytes is not None and header.nbytes > max_bytes:
            raise self._fail(
                f"entry {key!r} ({header.nbytes} bytes) is larger than the {max_bytes} allowed"
            )
        try:
            with self.zip.open(self.members[key]) as f:
                f.read(header.offset)
                data = f.read(header.nbytes + 1)  # reading to the end checks the CRC
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as err:
            raise self._corrupt(key, err) from None
        if len(data) != header.nbytes:
            raise self._corrupt(key, EOFError())
        array = np.frombuffer(data, dtype=header.dtype)
        return array.reshape(header.shape, order="F" if header.fortran else "C").copy()

    def memmap(self, key: str, kinds: str = "fiub") -> np.memmap:
        """Member ``key`` memory-mapped read-only, nothing read (for data larger than memory):
        it must be stored uncompressed (``np.savez``, not ``np.savez_compressed``). The header
        is checked as for :meth:`read`; the CRC cannot be, without reading the whole member."""
        header = self.header(key, kinds)
        info = self.members[key]
        if info.compress_type != zipfile.ZIP_STORED:
            raise self._fail(
                f"entry {key!r} is compressed, so it cannot be memory-mapped; save the file with "
                f"np.savez (uncompressed) to stream it"
            )
        self.handle.seek(info.header_offset)
        local = self.handle.read(30)  # the member's local header: its name and extra lengths
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise self._corrupt(key, EOFError())
        start = info.header_offset + 30 + int.from_bytes(local[26:28], "little")
        start += int.from_bytes(local[28:30], "little") + header.offset
        order = "F" if header.fortran else "C"
        return np.memmap(self.path, header.dtype, "r", start, header.shape, order)

    def read_finite(
        self, key: str, shape: tuple[int, ...] | None = None, kinds: str = "fiub"
    ) -> np.ndarray:
        """:meth:`read`, refusing floating values that hold NaN or infinity."""
        value = self.read(key, shape, kinds)
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise self._fail(f"entry {key!r} holds NaN or infinity")
        return value

    def read_like(self, key: str, entry: Any) -> np.ndarray:
        """Member ``key`` to load into ``entry`` (a Parameter or Buffer): exactly its shape, a
        floating dtype for a floating entry (integer and bool weights are refused), an integer
        one for an integer buffer, bool for a bool one, and finite. The one check that
        checkpoints and model files share."""
        return self.read_finite(key, tuple(entry.shape), entry_kinds(entry.value))

    def read_all(self, kinds: str = "fiub") -> dict[str, np.ndarray]:
        """Every member as an array, after every header has been checked."""
        self.check()
        return {key: self.read(key, kinds=kinds) for key in self.members}

    def read_json(
        self,
        key: str,
        max_bytes: int | None = None,
        max_depth: int = MAX_JSON_DEPTH,
        name: str | None = None,
    ) -> Any:
        """Member ``key`` (UTF-8 bytes) parsed as JSON: at most ``max_bytes`` (default the
        reader's ``max_record_bytes``), nested at most ``max_depth`` levels. Messages call it
        the ``name`` record (default ``key``)."""
        label = key if name is None else name
        cap = self.max_record_bytes if max_bytes is None else max_bytes
        header = self.header(key, "u")
        if header.nbytes > cap:
            raise self._fail(
                f"has a {label} record of {header.nbytes} bytes, more than the {cap} allowed"
            )
        raw = self.read(key, kinds="u").tobytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise self._fail(f"has a corrupted {label} record: {err}") from None
        depth = json_depth(raw)
        if depth > max_depth:
            raise self._fail(
                f"has a {label} record nested {depth} levels deep (at most {max_depth})"
            )
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as err:
            raise self._fail(f"has a corrupted {label} record: {err}") from None


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(raw: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in JSON text, strings skipped (no recursion)."""
    code = np.frombuffer(_STRINGS.sub(b"", raw), dtype=np.uint8)
    step = np.isin(code, (ord("["), ord("{"))).astype(np.int64) - np.isin(
        code, (ord("]"), ord("}"))
    )
    return int(np.cumsum(step).max(initial=0))


def json_member(value: Any) -> np.ndarray:
    """``value`` as UTF-8 JSON bytes in a ``uint8`` array, the way nnx stores records."""
    try:
        text = json.dumps(value, allow_nan=True)
    except TypeError as err:
        raise TypeError(f"record must be JSON-serialisable: {err}") from None
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def write_npz(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` (host NumPy arrays of numbers) to ``path`` atomically."""
    for key, value in arrays.items():
        if np.asarray(value).dtype.hasobject:
            raise TypeError(f"entry {key!r} is an object array; only numbers are stored")
    with atomic_write(path) as f:
        np.savez(f, **arrays)
    return Path(path)


def entry_kinds(value: Any) -> str:
    """The dtype kinds a stored value may have to load into ``value``: floats for floats,
    integers (signed or not) for integer buffers, booleans for boolean buffers."""
    try:
        kind = np.dtype(dtype_name(value.dtype)).kind
    except TypeError:  # a dtype NumPy does not name (bfloat16, ...): a floating one
        kind = "f"
    return {"f": "f", "i": "iu", "u": "iu", "b": "b"}.get(kind, kind)
