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
import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write
from .module import Module

FORMAT = "nnx-checkpoint"
VERSION = 1
_META = "__meta__"


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded: missing, truncated, corrupted, or for another model."""


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


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` of a checkpoint file, fully read and checked (no pickle)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    try:
        with open(p, "rb") as handle, np.load(handle, allow_pickle=False) as f:
            arrays = {key: f[key] for key in f.files}  # reading every member checks its CRC
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, KeyError) as err:
        raise CheckpointError(
            f"checkpoint {p} is truncated or corrupted ({type(err).__name__}: {err})"
        ) from None
    if _META not in arrays:
        raise CheckpointError(f"{p} is not an nnx checkpoint (no {_META} record)")
    try:
        meta = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"checkpoint {p} has a corrupted record: {err}") from None
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(
            f"{p} is not a version-{VERSION} nnx checkpoint "
            f"(format {meta.get('format')!r}, version {meta.get('version')!r})"
        )
    return meta, arrays


def load_checkpoint(
    path: str | os.PathLike, model: Module, optimizer: Any = None, schedule: Any = None
) -> dict[str, Any]:
    """Load a checkpoint into ``model`` (and ``optimizer``, ``schedule`` when given).

    Returns the JSON record saved with it. Raises :class:`CheckpointError` for an unreadable
    file or a different architecture, before changing anything.
    """
    meta, arrays = read_checkpoint(path)
    _check_architecture(path, meta["architecture"], architecture(model))
    model_state = {k[len("model/") :]: v for k, v in arrays.items() if k.startswith("model/")}
    optim_state = None
    if optimizer is not None:
        saved = meta.get("optimizer")
        if saved is None:
            raise CheckpointError(f"checkpoint {path} holds no optimizer state")
        if saved["type"] != type(optimizer).__name__:
            raise CheckpointError(
                f"checkpoint {path} was saved with a {saved['type']} optimizer, "
                f"not {type(optimizer).__name__}"
            )
        entries = []
        for i, entry in enumerate(saved["state"]):
            restored = {}
            for key, value in entry.items():
                restored[key] = arrays[f"optimizer/{i}/{key}"] if value == "array" else value
            entries.append(restored)
        optim_state = {**saved, "state": entries}
    schedule_state = meta.get("schedule")
    if schedule is not None and (
        schedule_state is None or schedule_state.get("type") != type(schedule).__name__
    ):
        found = None if schedule_state is None else schedule_state.get("type")
        raise CheckpointError(
            f"checkpoint {path} holds schedule state {found!r}, not {type(schedule).__name__}"
        )
    try:
        model.load_state_dict(model_state)
        if optim_state is not None:
            optimizer.load_state_dict(optim_state)
        if schedule is not None:
            schedule.load_state_dict(schedule_state)
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} does not fit: {err}") from None
    return meta.get("record", {})


def _embedded_model(model: Module) -> dict[str, Any]:
    """``{"model": record}`` so that ``nnx.load_model`` and ``--resume`` can rebuild the model
    from the checkpoint alone; ``{"model": None, "model_error": why}`` when a module cannot be
    described (an unregistered class), which leaves the checkpoint usable with the model given."""
    from .registry import ModelFileError
    from .saving import model_record

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
