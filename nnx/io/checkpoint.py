"""Checkpoints: one ``.npz`` file with the model, optimizer and schedule state plus a JSON record.

* **Safe to load**: arrays are read with ``allow_pickle=False`` and everything else is JSON, so
  opening an untrusted checkpoint can never run code.
* **Atomic**: written to a temporary file in the target's folder, flushed, fsync'ed and renamed
  over the target; a crash mid-write leaves the previous checkpoint intact.
* **Portable**: arrays are stored as host NumPy arrays and loaded onto whatever backend and
  dtype the model is on now (saved on CuPy, loaded on NumPy, and the other way round).
* **Checked**: a truncated or corrupted file, or one saved for another architecture, raises
  :class:`CheckpointError` before anything is changed.

>>> import tempfile, os, nnx
>>> model = nnx.Sequential(nnx.Linear(3, 2, rng=0))
>>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
>>> _ = nnx.save_checkpoint(path, model, epoch=5)
>>> nnx.load_checkpoint(path, nnx.Sequential(nnx.Linear(3, 2, rng=1)))["epoch"]
5
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..core.checks import article, dtype_name
from ..core.module import Module
from .atomic import atomic_write

FORMAT = "nnx-checkpoint"
VERSION = 1
_META = "__meta__"


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded: missing, truncated, corrupted, or for another model."""


class NonFiniteStateError(FloatingPointError):
    """The state to be saved holds NaN or infinity; nothing was written."""


MAX_META_BYTES = 64 << 20  # the JSON record (history included) of any real run is far smaller
MAX_COMPRESSION = 100  # np.savez stores members uncompressed; a zip bomb claims far more


def architecture(model: Module) -> dict[str, Any]:
    """What a checkpoint must match: the module types in order and each parameter's shape."""
    return {
        "modules": [type(m).__name__ for m in model.modules()],
        "parameters": [[name, list(p.shape)] for name, p in model.named_parameters()],
        "repr": repr(model),
    }


def checkpoint_arrays(
    model: Module, optimizer: Any = None, schedule: Any = None, **record: Any
) -> dict[str, np.ndarray]:
    """Everything a checkpoint holds, as host arrays (the JSON record under ``__meta__``).

    ``record`` holds extra JSON-serialisable entries (epoch, step, history, ...).
    """
    arrays = {f"model/{name}": value for name, value in model.state_dict().items()}
    optim_meta = None
    if optimizer is not None:
        state = optimizer.state_dict()
        entries = []
        for i, per_param in enumerate(state["state"]):
            entry = {}
            for key, value in per_param.items():
                if key == "step":
                    entry[key] = int(value)
                else:
                    arrays[f"optimizer/{i}/{key}"] = value
                    entry[key] = "array"
            entries.append(entry)
        optim_meta = {**state, "state": entries}
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "architecture": architecture(model),
        **_embedded_model(model),
        "optimizer": optim_meta,
        "schedule": None if schedule is None else schedule.state_dict(),
        "record": record,
    }
    try:
        text = json.dumps(meta, allow_nan=True)
    except TypeError as err:
        raise TypeError(f"checkpoint record must be JSON-serialisable: {err}") from None
    arrays[_META] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    for key, value in arrays.items():
        if value.dtype == object:
            raise TypeError(f"checkpoint entry {key!r} is an object array; only numbers are stored")
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            bad = "NaN" if np.any(np.isnan(value)) else "infinity"
            raise NonFiniteStateError(f"checkpoint entry {key!r} holds {bad}")
    return arrays


def write_checkpoint(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` to ``path`` atomically (temp file, flush, fsync, rename)."""
    with atomic_write(path) as f:
        np.savez(f, **arrays)
    return Path(path)


def save_checkpoint(
    path: str | os.PathLike,
    model: Module,
    optimizer: Any = None,
    schedule: Any = None,
    **record: Any,
) -> Path:
    """Save ``model`` (and optionally optimizer, schedule and a JSON ``record``) to ``path``."""
    return write_checkpoint(path, checkpoint_arrays(model, optimizer, schedule, **record))


class _Reader:
    """A checkpoint's zip members, each read only after its ``.npy`` header has been checked
    against what the caller expects and against the member's stored size (so a crafted file
    that claims a huge array, or a zip bomb, is refused before anything is allocated)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"checkpoint {self.path} does not exist")
        try:
            self.zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            raise self._corrupt(err) from None
        self.members = {}
        for info in self.zip.infolist():
            if not info.filename.endswith(".npy"):
                self.close()
                raise CheckpointError(
                    f"{self.path} is not an nnx checkpoint (member {info.filename!r})"
                )
            self.members[info.filename[: -len(".npy")]] = info

    def _corrupt(self, err: BaseException) -> CheckpointError:
        return CheckpointError(
            f"checkpoint {self.path} is truncated or corrupted ({type(err).__name__}: {err})"
        )

    def close(self) -> None:
        self.zip.close()

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def read(
        self,
        key: str,
        shape: tuple[int, ...] | None = None,
        kinds: str = "f",
        max_bytes: int | None = None,
    ) -> np.ndarray:
        """Member ``key`` as an array whose dtype kind is in ``kinds`` (``"f"``: real floating)
        and, when given, of exactly ``shape`` and at most ``max_bytes``."""
        info = self.members.get(key)
        if info is None:
            raise CheckpointError(f"checkpoint {self.path} has no entry {key!r}")
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > MAX_COMPRESSION * max(
            info.compress_size, 1024
        ):
            raise CheckpointError(
                f"checkpoint {self.path}: entry {key!r} expands {info.compress_size} bytes to "
                f"{info.file_size} (a zip bomb?)"
            )
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
                if dtype.hasobject or dtype.kind not in kinds or dtype.fields is not None:
                    raise CheckpointError(
                        f"checkpoint {self.path}: entry {key!r} has dtype {dtype}, not "
                        + {"f": "a real floating type", "u": "bytes"}.get(kinds, f"kind {kinds}")
                    )
                if shape is not None and tuple(header_shape) != tuple(shape):
                    raise CheckpointError(
                        f"checkpoint {self.path}: entry {key!r} has shape {tuple(header_shape)}, "
                        f"expected {tuple(shape)}"
                    )
                size = math.prod(header_shape) * dtype.itemsize
                if info.file_size - offset != size:
                    raise CheckpointError(
                        f"checkpoint {self.path}: entry {key!r} claims shape "
                        f"{tuple(header_shape)} ({size} bytes) but stores "
                        f"{info.file_size - offset} bytes"
                    )
                if max_bytes is not None and size > max_bytes:
                    raise CheckpointError(
                        f"checkpoint {self.path}: entry {key!r} is larger than {max_bytes} bytes"
                    )
                data = f.read(size + 1)
        except CheckpointError:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError) as err:
            raise self._corrupt(err) from None
        if len(data) != size:
            raise self._corrupt(EOFError(f"entry {key!r} is cut short"))
        array = np.frombuffer(data, dtype=dtype)
        order = "F" if fortran else "C"
        return array.reshape(header_shape, order=order).copy()

    def meta(self) -> dict[str, Any]:
        if _META not in self.members:
            raise CheckpointError(f"{self.path} is not an nnx checkpoint (no {_META} record)")
        raw = self.read(_META, kinds="u", max_bytes=MAX_META_BYTES)
        try:
            meta = json.loads(raw.tobytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            raise CheckpointError(f"checkpoint {self.path} has a corrupted record: {err}") from None
        if not isinstance(meta, dict):
            raise CheckpointError(f"checkpoint {self.path} has a corrupted record (not an object)")
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise CheckpointError(
                f"{self.path} is not a version-{VERSION} nnx checkpoint "
                f"(format {meta.get('format')!r}, version {meta.get('version')!r})"
            )
        return meta


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON record saved with a checkpoint (epoch, history, ...), without reading its arrays."""
    with _Reader(path) as reader:
        record = reader.meta().get("record", {})
    if not isinstance(record, dict):
        raise CheckpointError(f"checkpoint {path}: its record is not an object")
    return record


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` of a checkpoint file, fully read and checked (no pickle).

    Every array must be real floating point (or integer, for buffers such as counters) and
    finite, and its header must agree with its stored size.
    """
    with _Reader(path) as reader:
        meta = reader.meta()
        arrays = {}
        for key in reader.members:
            if key != _META:
                arrays[key] = _finite(path, key, reader.read(key, kinds="fiu"))
    return meta, arrays


def _finite(path: Any, key: str, value: np.ndarray) -> np.ndarray:
    if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
        raise CheckpointError(f"checkpoint {path}: entry {key!r} holds NaN or infinity")
    return value


def _kinds(value: Any) -> str:
    """The dtype kinds a stored value may have to load into ``value``: floats for floats,
    integers (signed or not) for integer buffers, booleans for boolean buffers."""
    try:
        kind = np.dtype(dtype_name(value.dtype)).kind
    except TypeError:  # a dtype NumPy does not name (bfloat16, ...): a floating one
        kind = "f"
    return {"f": "f", "i": "iu", "u": "iu", "b": "b"}.get(kind, kind)


def _expect(condition: bool, path: Any, what: str) -> None:
    if not condition:
        raise CheckpointError(f"checkpoint {path}: {what}")


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _check_meta(path: Any, meta: dict[str, Any]) -> None:
    """The JSON record's structure: types and ranges of every field ``load_checkpoint`` uses."""
    arch = meta.get("architecture")
    _expect(isinstance(arch, dict), path, "its architecture record is missing")
    _expect(
        isinstance(arch.get("modules"), list) and all(isinstance(m, str) for m in arch["modules"]),
        path,
        "its architecture record lists no modules",
    )
    params = arch.get("parameters")
    _expect(
        isinstance(params, list)
        and all(
            isinstance(e, list)
            and len(e) == 2
            and isinstance(e[0], str)
            and isinstance(e[1], list)
            and all(_is_int(d) for d in e[1])
            for e in params
        ),
        path,
        "its architecture record has malformed parameter shapes",
    )
    optim = meta.get("optimizer")
    if optim is not None:
        _expect(isinstance(optim, dict), path, "its optimizer record is not an object")
        _expect(isinstance(optim.get("type"), str), path, "its optimizer record has no type")
        lr = optim.get("lr")
        _expect(
            isinstance(lr, (int, float)) and not isinstance(lr, bool) and math.isfinite(lr),
            path,
            f"its optimizer learning rate {lr!r} is not a finite number",
        )
        _expect(
            isinstance(optim.get("hyperparameters"), dict),
            path,
            "its optimizer record has no hyperparameters",
        )
        state = optim.get("state")
        _expect(isinstance(state, list), path, "its optimizer state is not a list")
        for i, entry in enumerate(state):
            _expect(isinstance(entry, dict), path, f"optimizer state {i} is not an object")
            for key, value in entry.items():
                if key == "step":
                    _expect(_is_int(value), path, f"optimizer state {i} has step {value!r}")
                else:
                    _expect(value == "array", path, f"optimizer state {i}/{key} is not an array")
    schedule = meta.get("schedule")
    _expect(
        schedule is None or isinstance(schedule, dict), path, "its schedule record is malformed"
    )
    _expect(isinstance(meta.get("record", {}), dict), path, "its record is not an object")


def load_checkpoint(
    path: str | os.PathLike, model: Module, optimizer: Any = None, schedule: Any = None
) -> dict[str, Any]:
    """Load a checkpoint into ``model`` (and ``optimizer``, ``schedule`` when given).

    Returns the JSON record saved with it. Every field is checked before anything changes (all
    or nothing): the architecture, every array's dtype (real floating point for floating
    parameters), shape and finiteness, read header-first so that a file claiming a huge array
    is refused without allocating it, and the optimizer's and schedule's records. Any failure
    raises :class:`CheckpointError`.
    """
    with _Reader(path) as reader:
        meta = reader.meta()
        _check_meta(path, meta)
        _check_architecture(path, meta["architecture"], architecture(model))
        entries = model._state_entries()
        expected = {f"model/{name}" for name in entries}
        optim_meta = meta.get("optimizer") if optimizer is not None else None
        if optimizer is not None:
            _expect(optim_meta is not None, path, "it holds no optimizer state")
            if optim_meta["type"] != type(optimizer).__name__:
                raise CheckpointError(
                    f"checkpoint {path} was saved with {article(optim_meta['type'])} "
                    f"{optim_meta['type']} optimizer, not {article(type(optimizer).__name__)} "
                    f"{type(optimizer).__name__}"
                )
            _expect(
                len(optim_meta["state"]) == len(optimizer.params),
                path,
                f"it holds optimizer state for {len(optim_meta['state'])} parameters, the "
                f"optimizer has {len(optimizer.params)}",
            )
            for i, entry in enumerate(optim_meta["state"]):
                expected |= {f"optimizer/{i}/{k}" for k in entry if k != "step"}
        stored = {k for k in reader.members if k != _META}
        optional = {k for k in stored if k.startswith("optimizer/")} if optimizer is None else set()
        missing, unexpected = sorted(expected - stored), sorted(stored - expected - optional)
        _expect(not missing, path, f"entries {missing} are missing")
        _expect(not unexpected, path, f"entries {unexpected} are not part of this model")
        model_state = {}
        for name, entry in entries.items():
            key = f"model/{name}"
            value = reader.read(key, tuple(entry.shape), _kinds(entry.value))
            model_state[name] = _finite(path, key, value)
        optim_state = None
        if optimizer is not None:
            restored = []
            for i, (p, entry) in enumerate(zip(optimizer.params, optim_meta["state"], strict=True)):
                item = {}
                for key, value in entry.items():
                    if key == "step":
                        item[key] = value
                    else:
                        name = f"optimizer/{i}/{key}"
                        item[key] = _finite(path, name, reader.read(name, p.shape, "f"))
                restored.append(item)
            optim_state = {**optim_meta, "state": restored}
    schedule_state = meta.get("schedule")
    if schedule is not None and (
        schedule_state is None or schedule_state.get("type") != type(schedule).__name__
    ):
        found = None if schedule_state is None else schedule_state.get("type")
        raise CheckpointError(
            f"checkpoint {path} holds schedule state {found!r}, not {type(schedule).__name__}"
        )
    try:  # checks only: nothing changes unless every part fits
        if optim_state is not None:
            optimizer.check_state_dict(optim_state)
        if schedule is not None:
            schedule.check_state_dict(schedule_state)
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path} does not fit: {err}") from None
    before = model.state_dict()
    try:
        model.load_state_dict(model_state)
        if optim_state is not None:
            optimizer.load_state_dict(optim_state)
        if schedule is not None:
            schedule.load_state_dict(schedule_state)
    except (KeyError, ValueError, TypeError) as err:
        model.load_state_dict(before)
        raise CheckpointError(f"checkpoint {path} does not fit: {err}") from None
    return meta.get("record", {})


def _embedded_model(model: Module) -> dict[str, Any]:
    """``{"model": record}`` so that ``nnx.load_model`` and ``--resume`` can rebuild the model
    from the checkpoint alone; ``{"model": None, "model_error": why}`` when a module cannot be
    described (an unregistered class), which leaves the checkpoint usable with the model given."""
    from .model_file import model_record
    from .registry import ModelFileError

    try:
        return {"model": model_record(model)}
    except ModelFileError as err:
        return {"model": None, "model_error": str(err)}


def _check_architecture(path: Any, saved: dict[str, Any], current: dict[str, Any]) -> None:
    if saved["modules"] == current["modules"] and saved["parameters"] == current["parameters"]:
        return
    saved_params = {name: tuple(shape) for name, shape in saved["parameters"]}
    current_params = {name: tuple(shape) for name, shape in current["parameters"]}
    differences = [
        f"{name}: saved {saved_params.get(name, 'absent')}, model {current_params.get(name, 'absent')}"
        for name in sorted(set(saved_params) | set(current_params))
        if saved_params.get(name) != current_params.get(name)
    ]
    if saved["modules"] != current["modules"]:
        differences.insert(
            0, f"layers: saved {saved['modules'][1:]}, model {current['modules'][1:]}"
        )
    raise CheckpointError(
        f"checkpoint {path} was saved for a different architecture: " + "; ".join(differences)
    )
