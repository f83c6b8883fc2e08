"""Checkpoints: one ``.npz`` file holding named state dicts (model, optimizer, schedule, ...)
plus a JSON record.

A checkpoint is a mapping of *components*, name -> object. Each object gives its state with
``state_dict()`` (JSON values and host NumPy arrays, nested in dicts and lists), may check a
state with ``check_state_dict(state)`` (raising ValueError/TypeError), and restores it with
``load_state_dict(state)``. Adding state to a checkpoint means implementing those methods on one
object and naming it in the mapping. The ``"model"`` component is a :class:`~nnx.Module`; its
architecture is stored too, so that :func:`nnx.load_model` can rebuild it from the file alone.

* **Safe to load**: the file is read by :class:`~nnx.io.npz.NpzReader` (no pickle, every
  ``.npy`` header checked before anything is allocated; the model's arrays against the model's
  own shapes), and everything else is JSON.
* **Atomic**: written to a temporary file in the target's folder, flushed, fsync'ed and renamed
  over the target; a crash mid-write leaves the previous checkpoint intact.
* **Portable**: arrays are stored as host NumPy arrays and loaded onto whatever backend and
  dtype the model is on now (saved on CuPy, loaded on NumPy, and the other way round).
* **All or nothing**: every component's state is read and checked (``check_state_dict``) before
  any component is loaded; a truncated or corrupted file, or one saved for another
  architecture, raises :class:`CheckpointError` with nothing changed.

Format version 2 stores ``{"components": {name: state}}`` in the JSON record, each array
replaced by ``{"__array__": member}``; version-1 files (one fixed set of fields) are read by
converting them to version 2.

>>> import tempfile, os, nnx
>>> model = nnx.Sequential(nnx.Linear(3, 2, rng=0))
>>> path = os.path.join(tempfile.mkdtemp(), "model.npz")
>>> _ = nnx.save_checkpoint(path, model, epoch=5)
>>> nnx.load_checkpoint(path, nnx.Sequential(nnx.Linear(3, 2, rng=1)))["epoch"]
5
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..core.checks import article
from ..core.module import Module
from .errors import NnxFileError
from .npz import MAX_RECORD_BYTES, NpzReader, json_member, write_npz

FORMAT = "nnx-checkpoint"
VERSION = 2
READABLE_VERSIONS = (1, 2)
_META = "__meta__"
_ARRAY = "__array__"
_TYPED = ("optimizer", "schedule")  # components whose state names their class

CheckpointError = NnxFileError  # the name checkpoints have always raised


class NonFiniteStateError(FloatingPointError):
    """The state to be saved holds NaN or infinity; nothing was written."""


MAX_META_BYTES = MAX_RECORD_BYTES  # the JSON record (history included) of a checkpoint


def architecture(model: Module) -> dict[str, Any]:
    """What a checkpoint must match: the module types in order and each parameter's shape."""
    return {
        "modules": [type(m).__name__ for m in model.modules()],
        "parameters": [[name, list(p.shape)] for name, p in model.named_parameters()],
        "repr": repr(model),
    }


def _encode(value: Any, member: str, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` as JSON, each NumPy array moved to ``arrays[member/...]`` and referenced."""
    if isinstance(value, np.ndarray):
        if member in arrays:
            raise ValueError(f"checkpoint entry {member!r} is named twice")
        arrays[member] = value
        return {_ARRAY: member}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _encode(v, f"{member}/{k}", arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v, f"{member}/{i}", arrays) for i, v in enumerate(value)]
    return value


def checkpoint_arrays(
    components: Mapping[str, Any], record: Mapping[str, Any] | None = None
) -> dict[str, np.ndarray]:
    """Everything a checkpoint holds, as host arrays (the JSON record under ``__meta__``).

    ``components`` maps a name to an object with ``state_dict()``; ``"model"`` must be a
    :class:`~nnx.Module`. Components that are None, and others than the model whose state is
    empty (``{}``), are not stored. ``record`` holds extra JSON-serialisable entries returned by :func:`load_checkpoint`.
    Raises :class:`NonFiniteStateError` when an array holds NaN or infinity.
    """
    model = components.get("model")
    if not isinstance(model, Module):
        raise TypeError("checkpoint: components must hold the model under 'model'")
    arrays: dict[str, np.ndarray] = {}
    states = {}
    for name, obj in components.items():
        if obj is None:
            continue
        state = obj.state_dict()
        if isinstance(state, Mapping) and not state and name != "model":
            continue
        states[name] = _encode(state, name, arrays)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "architecture": architecture(model),
        **_embedded_model(model),
        "components": states,
        "record": dict(record or {}),
    }
    try:
        arrays[_META] = json_member(meta)
    except TypeError as err:
        raise TypeError(f"checkpoint {err}") from None
    for key, value in arrays.items():
        if value.dtype == object:
            raise TypeError(f"checkpoint entry {key!r} is an object array; only numbers are stored")
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            bad = "NaN" if np.any(np.isnan(value)) else "infinity"
            raise NonFiniteStateError(f"checkpoint entry {key!r} holds {bad}")
    return arrays


def write_checkpoint(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` to ``path`` atomically (temp file, flush, fsync, rename)."""
    return write_npz(path, arrays)


def _components(model: Module, optimizer: Any, schedule: Any) -> dict[str, Any]:
    return {"model": model, "optimizer": optimizer, "schedule": schedule}


def save_checkpoint(
    path: str | os.PathLike,
    model: Module,
    optimizer: Any = None,
    schedule: Any = None,
    **record: Any,
) -> Path:
    """Save ``model`` (and optionally optimizer, schedule and a JSON ``record``) to ``path``."""
    return write_checkpoint(
        path, checkpoint_arrays(_components(model, optimizer, schedule), record)
    )


def _reader(path: str | os.PathLike) -> NpzReader:
    return NpzReader(path, "checkpoint", CheckpointError, max_record_bytes=MAX_META_BYTES)


def _expect(condition: bool, path: Any, what: str) -> None:
    if not condition:
        raise CheckpointError(f"checkpoint {path}: {what}")


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _read_meta(reader: NpzReader) -> dict[str, Any]:
    """The checked version-2 record (a version-1 record converted)."""
    path = reader.path
    if _META not in reader:
        raise CheckpointError(f"{path} is not an nnx checkpoint (no {_META} record)")
    meta = reader.read_json(_META)
    _expect(isinstance(meta, dict), path, "its record is not an object")
    version = meta.get("version")
    if meta.get("format") != FORMAT or version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{path} is not a version-{VERSION} nnx checkpoint (format {meta.get('format')!r}, "
            f"version {version!r}; this nnx reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))})"
        )
    if version == 1:
        meta = _upgrade_v1(path, meta, reader.keys())
    _check_architecture_record(path, meta.get("architecture"))
    _expect(isinstance(meta.get("components"), dict), path, "its components are not an object")
    _expect(isinstance(meta.get("record", {}), dict), path, "its record is not an object")
    return meta


def _upgrade_v1(path: Any, meta: dict[str, Any], members: list[str]) -> dict[str, Any]:
    """A version-1 record (fixed fields: optimizer, schedule, record with counters, history and
    callbacks) as version 2's named components."""
    components: dict[str, Any] = {
        "model": {k[len("model/") :]: {_ARRAY: k} for k in members if k.startswith("model/")}
    }
    optim = meta.get("optimizer")
    if optim is not None:
        _expect(isinstance(optim, dict), path, "its optimizer record is not an object")
        state = optim.get("state")
        _expect(isinstance(state, list), path, "its optimizer state is not a list")
        entries = []
        for i, entry in enumerate(state):
            _expect(isinstance(entry, dict), path, f"optimizer state {i} is not an object")
            for key, value in entry.items():
                if key != "step":
                    _expect(value == "array", path, f"optimizer state {i}/{key} is not an array")
            entries.append(
                {k: v if k == "step" else {_ARRAY: f"optimizer/{i}/{k}"} for k, v in entry.items()}
            )
        components["optimizer"] = {**optim, "state": entries}
    if meta.get("schedule") is not None:
        components["schedule"] = meta["schedule"]
    record = meta.get("record", {})
    _expect(isinstance(record, dict), path, "its record is not an object")
    counters = {k: record[k] for k in ("epoch", "step", "seed") if k in record}
    if counters:
        components["counters"] = counters
    if "history" in record:
        components["history"] = {"records": record["history"]}
    callbacks = record.get("callbacks", {})
    _expect(isinstance(callbacks, dict), path, "its callback states are not an object")
    components.update(callbacks)
    if record.get("loss_scaler") is not None:
        components["loss_scaler"] = record["loss_scaler"]
    rest = {
        k: v for k, v in record.items() if k not in ("history", "callbacks", "loss_scaler")
    }  # epoch, step and seed stay readable in the record, as version 1 returned them
    return {**meta, "version": VERSION, "components": components, "record": rest}


def _check_architecture_record(path: Any, arch: Any) -> None:
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


def _refs(node: Any, found: list[Any]) -> None:
    """Every ``{"__array__": member}`` reference under ``node`` (iteratively: no recursion)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if set(item) == {_ARRAY}:
                found.append(item[_ARRAY])
            else:
                stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _decode(reader: NpzReader, node: Any, kinds: str = "fiu") -> Any:
    """``node`` with each array reference replaced by the checked array it names."""
    if isinstance(node, dict):
        if set(node) == {_ARRAY}:
            key = node[_ARRAY]
            return reader.read_finite(key, kinds=kinds)
        return {k: _decode(reader, v, kinds) for k, v in node.items()}
    if isinstance(node, list):
        return [_decode(reader, v, kinds) for v in node]
    return node


def _model_state(reader: NpzReader, saved: Any, model: Module) -> dict[str, np.ndarray]:
    """The model's arrays, each read against the model's own entry (shape, dtype kind)."""
    path = reader.path
    _expect(isinstance(saved, dict), path, "its model state is not an object")
    entries = model._state_entries()
    missing = sorted(f"model/{n}" for n in set(entries) - set(saved))
    unexpected = sorted(f"model/{n}" for n in set(saved) - set(entries))
    _expect(not missing, path, f"entries {missing} are missing")
    _expect(not unexpected, path, f"entries {unexpected} are not part of this model")
    state = {}
    for name, entry in entries.items():
        ref = saved[name]
        _expect(
            isinstance(ref, dict) and set(ref) == {_ARRAY} and isinstance(ref[_ARRAY], str),
            path,
            f"its model entry {name!r} is not an array",
        )
        state[name] = reader.read_like(ref[_ARRAY], entry)
    return state


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` of a checkpoint file, fully read and checked (no pickle).

    ``meta["components"]`` holds each component's state with arrays as references
    (``{"__array__": key}``) into ``arrays``; ``meta["record"]`` the extra record. Every array
    must be real floating point (or integer, for buffers such as counters) and finite, and its
    header must agree with its stored size.
    """
    with _reader(path) as reader:
        meta = _read_meta(reader)
        reader.check()
        arrays = {
            key: reader.read_finite(key, kinds="fiu") for key in reader.keys() if key != _META
        }
    return meta, arrays


def read_record(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's record without reading its arrays: the extra entries saved with it, plus
    the Trainer's ``counters`` (epoch, step, seed) and ``history`` (a list of epoch records)
    when it holds them, and ``position`` (epoch, batch, loader) for a mid-epoch checkpoint."""
    with _reader(path) as reader:
        meta = _read_meta(reader)
    record = dict(meta.get("record", {}))
    counters = meta["components"].get("counters")
    if isinstance(counters, dict):
        record.update(counters)
    history = meta["components"].get("history")
    if isinstance(history, dict) and "records" in history:
        record["history"] = history["records"]
    position = meta["components"].get("position")  # a mid-epoch checkpoint: where it stopped
    if isinstance(position, dict):
        record["position"] = {k: position.get(k) for k in ("epoch", "batch", "loader")}
    return record


def load_state(
    path: str | os.PathLike,
    components: Mapping[str, Any],
    optional: Collection[str] = (),
    check: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Restore every component of ``components`` (name -> object; None entries skipped) from
    the checkpoint at ``path``; returns the checkpoint's extra record.

    All or nothing: the file's headers are checked first (the model's arrays against the
    model's shapes and dtypes, before any is read); then every component's state is read and
    checked (the architecture, the optimizer's and schedule's types, each object's
    ``check_state_dict`` and then ``check(states)`` for checks across components); only then
    is each loaded with ``load_state_dict``. A component missing from the file is an error
    unless its name is in ``optional`` (it is then left as it is); components the file holds
    but ``components`` does not name are ignored. Any failure raises :class:`CheckpointError`.
    """
    components = {name: obj for name, obj in components.items() if obj is not None}
    with _reader(path) as reader:
        meta = _read_meta(reader)
        saved = meta["components"]
        model = components.get("model")
        if model is not None:
            _check_architecture(path, meta["architecture"], architecture(model))
            reader.check({f"model/{n}": tuple(e.shape) for n, e in model._state_entries().items()})
        else:
            reader.check()
        referenced: list[Any] = []
        _refs(saved, referenced)
        _expect(
            all(isinstance(r, str) for r in referenced), path, "an array reference is not a name"
        )
        members = {k for k in reader.keys() if k != _META}
        missing, unexpected = sorted(set(referenced) - members), sorted(members - set(referenced))
        _expect(not missing, path, f"entries {missing} are missing")
        _expect(not unexpected, path, f"entries {unexpected} are not part of this model")
        states = {}
        for name, obj in components.items():
            if name not in saved:
                _expect(name in optional, path, f"it holds no {name} state")
                continue
            if name == "model":
                states[name] = _model_state(reader, saved[name], obj)
                continue
            state = saved[name]
            if name in _TYPED:
                found = state.get("type") if isinstance(state, dict) else None
                mine = type(obj).__name__
                if found != mine:
                    raise CheckpointError(
                        f"checkpoint {path} was saved with {article(str(found))} {found} {name}, "
                        f"not {article(mine)} {mine}"
                    )
            states[name] = _decode(reader, state)
    for name, state in states.items():  # checks only: nothing changes unless every part fits
        checker = getattr(components[name], "check_state_dict", None)
        if checker is None:
            continue
        try:
            checker(state)
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(
                f"checkpoint {path}: the {name} state does not fit: {err}"
            ) from None
    if check is not None:
        try:
            check(states)
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"checkpoint {path}: {err}") from None
    before = {name: components[name].state_dict() for name in states}
    loaded = []
    try:
        for name, state in states.items():
            components[name].load_state_dict(state)
            loaded.append(name)
    except (KeyError, ValueError, TypeError) as err:
        for done in loaded:
            components[done].load_state_dict(before[done])
        raise CheckpointError(f"checkpoint {path}: the {name} state does not fit: {err}") from None
    return meta.get("record", {})


def load_checkpoint(
    path: str | os.PathLike, model: Module, optimizer: Any = None, schedule: Any = None
) -> dict[str, Any]:
    """Load a checkpoint into ``model`` (and ``optimizer``, ``schedule`` when given).

    Returns the JSON record saved with it. Every field is checked before anything changes (all
    or nothing; see :func:`load_state`): the architecture, every array's dtype (real floating
    point for floating parameters), shape and finiteness, read header-first so that a file
    claiming a huge array is refused without allocating it, and the optimizer's and
    schedule's records. Any failure raises :class:`CheckpointError`.
    """
    return load_state(path, _components(model, optimizer, schedule))


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
