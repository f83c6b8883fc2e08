"""Whole-model files without pickle: the architecture as JSON, the weights as arrays, one file.

:func:`save_model` writes an ``.npz`` holding every parameter and buffer (host arrays, their
dtypes kept) and a JSON record of the architecture: for each module, its registered class name
and the arguments its constructor was called with. :func:`load_model` rebuilds the model from
that record, by calling the registered classes, in a process that has none of the code that
built it (no pickle: arrays are read with ``allow_pickle=False``, the record is JSON).

**How constructor arguments are captured.** ``Module.__init_subclass__`` wraps the ``__init__`` of
every subclass, so creating any module remembers the arguments of its outermost constructor call
(bound to the signature, defaults filled in). No layer writes any code for it. When saving, each
argument becomes JSON: numbers, strings, booleans and None as they are; tuples, lists and dicts
recursively; modules as references to their own records (a module passed twice, say for tied
blocks, is rebuilt once and passed twice); dtypes by name; a ``Backend`` as a marker that
:func:`load_model` replaces by its target ``device``. Anything else (a ``numpy`` random
``Generator``, an initializer function, an array) is dropped, so the constructor's default is
used: the saved weights and buffers restore the values it would have produced. An argument
without a default that cannot be stored raises :class:`ModelFileError` at save time.

A module whose constructor arguments are not plain values or modules can define
``get_config(self) -> dict`` (the constructor's keyword arguments, stored the same way) and,
when needed, a classmethod ``from_config(cls, config) -> Module``.

**Registration.** Every module class defined inside the ``nnx`` package is registered under its
class name as it is defined. A class of yours joins with :func:`register_module`; loading a file
that names a class not registered raises an error listing the registered ones.

>>> import os, tempfile, numpy as np, nnx
>>> model = nnx.Sequential(nnx.Linear(3, 4, rng=0), nnx.ReLU(), nnx.Linear(4, 2, rng=1))
>>> path = nnx.save_model(os.path.join(tempfile.mkdtemp(), "model.nnx.npz"), model)
>>> again = nnx.load_model(path)
>>> x = np.ones((1, 3), dtype=np.float32)
>>> bool(np.array_equal(model(x), again(x)))
True
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import Backend, get_backend
from ..core.init import allocation_limit
from ..core.module import Buffer, Module, Parameter, register_module
from .architecture import build_from_config, module_config
from .npz import Header, NpzReader, json_member, write_npz
from .registry import (
    ModelFileError,
    registered_modules,
)

FORMAT = "nnx-model"
VERSION = 1
_META = "__model__"


def _all_entries(model: Module) -> Iterator[tuple[str, Any]]:
    """Every (dotted path, Parameter/Buffer/Module) reachable, shared ones under every path."""
    stack: list[tuple[str, Module, tuple[int, ...]]] = [("", model, ())]
    while stack:
        prefix, module, ancestors = stack.pop()
        children = []
        for name, value in vars(module).items():
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(value, (Parameter, Buffer)):
                yield path, value
            elif isinstance(value, Module) and id(value) not in ancestors:
                yield path, value
                children.append((path, value, (*ancestors, id(module))))
        stack.extend(reversed(children))


def _ties(model: Module) -> list[list[str]]:
    """``[path, first_path]`` for each parameter, buffer or module reachable along a second path."""
    first: dict[int, str] = {}
    ties = []
    for path, value in _all_entries(model):
        if id(value) in first:
            ties.append([path, first[id(value)]])
        else:
            first[id(value)] = path
    return ties


def _resolve(model: Module, path: str) -> tuple[Any, str]:
    *parents, last = path.split(".")
    owner: Any = model
    for part in parents:
        owner = vars(owner)[part]
    return owner, last


def _retie(model: Module, ties: list[list[str]], where: str) -> None:
    for path, first in ties:
        try:
            owner, name = _resolve(model, path)
            source_owner, source_name = _resolve(model, first)
            shared = vars(source_owner)[source_name]
            if vars(owner)[name] is not shared:
                setattr(owner, name, shared)
        except (KeyError, ValueError, TypeError):
            raise ModelFileError(
                f"{where}: cannot tie {path} to {first}: the rebuilt model has no such entry"
            ) from None


# ---------------------------------------------------------------------------- files


def model_record(model: Module) -> dict[str, Any]:
    """The JSON record :func:`save_model` stores: architecture and tied entries."""
    return {"architecture": module_config(model), "ties": _ties(model)}


def save_model(path: str | os.PathLike, model: Module) -> Path:
    """Write ``model`` (architecture, parameters, buffers) to ``path`` atomically.

    The file is an ``.npz`` archive: ``model/<name>`` holds each parameter and buffer as a host
    array of its own dtype, ``__model__`` a UTF-8 JSON record (format ``nnx-model``, version 1).
    Returns the path. Raises :class:`ModelFileError` when a module cannot be described.
    """
    if not isinstance(model, Module):
        raise TypeError(f"save_model: model must be an nnx.Module, got {type(model).__name__}")
    from .._version import __version__

    meta = {"format": FORMAT, "version": VERSION, "nnx_version": __version__, **model_record(model)}
    arrays = {f"model/{name}": value for name, value in model.state_dict().items()}
    arrays[_META] = json_member(meta)
    return write_npz(path, arrays)


def _reader(path: str | os.PathLike) -> NpzReader:
    return NpzReader(path, "model file", ModelFileError)


def _decode_record(reader: NpzReader, member: str, key: str) -> dict[str, Any]:
    record = reader.read_json(member, name=key)
    if not isinstance(record, dict):
        raise ModelFileError(
            f"model file {reader.path} has a corrupted {key} record (not an object)"
        )
    return record


def model_from_record(
    record: dict[str, Any],
    device: str | Backend | None = None,
    where: str = "model record",
    stored_numbers: int | None = None,
) -> Module:
    """A model with fresh weights from :func:`model_record`'s output (architecture and ties).

    ``stored_numbers``: when the record comes from a file, how many numbers the file stores for
    the model. Building may then draw at most twice that (ties are built before they are tied)
    plus ``ALLOCATION_SLACK``: a record declaring a huge layer next to tiny stored weights is
    refused with :class:`ModelFileError` before the layer's weights are drawn.
    """
    if not isinstance(record, dict) or "architecture" not in record:
        raise ModelFileError(f"{where}: the record holds no architecture")
    if stored_numbers is None:
        model = build_from_config(record["architecture"], device, where=where)
    else:
        budget = 2 * stored_numbers + ALLOCATION_SLACK
        with allocation_limit(budget, f"the file stores {stored_numbers} numbers"):
            model = build_from_config(record["architecture"], device, where=where)
    ties = record.get("ties", [])
    if not isinstance(ties, list) or not all(
        isinstance(t, list) and len(t) == 2 and all(isinstance(s, str) for s in t) for t in ties
    ):
        raise ModelFileError(f"{where}: the record's ties are malformed")
    _retie(model, ties, where)
    return model


def load_model(path: str | os.PathLike, device: str | Backend | None = None) -> Module:
    """Rebuild the model saved by :func:`save_model` (or embedded in a Trainer checkpoint) on
    ``device`` (a backend spec or :class:`nnx.Backend`; default the CPU with NumPy).

    Parameters and buffers keep the dtypes they were saved with. Raises
    :class:`ModelFileError` for a missing, corrupted or foreign file, an unregistered module
    type or weights that do not fit the architecture, before returning anything.
    """
    with _reader(path) as reader:
        p = reader.path
        headers = reader.check()
        if _META in reader:
            meta = _decode_record(reader, _META, "model")
            if meta.get("format") != FORMAT or meta.get("version") != VERSION:
                raise ModelFileError(
                    f"{p} is not a version-{VERSION} nnx model file "
                    f"(format {meta.get('format')!r}, version {meta.get('version')!r})"
                )
            record = meta
        elif "__meta__" in reader:  # a Trainer checkpoint that embeds its model's architecture
            meta = _decode_record(reader, "__meta__", "checkpoint")
            record = meta.get("model") if isinstance(meta.get("model"), dict) else None
            if record is None:
                reason = meta.get("model_error") or "it was written by an older nnx"
                raise ModelFileError(f"checkpoint {p} holds no model architecture ({reason})")
        else:
            raise ModelFileError(f"{p} is not an nnx model file (no {_META} record)")
        stored = {k[len("model/") :]: h for k, h in headers.items() if k.startswith("model/")}
        # the architecture may claim far more than the file stores: building it would allocate
        # all of that, so construction may draw only about what the file holds
        numbers = sum(math.prod(h.shape) for h in stored.values())
        target = get_backend("cpu" if device is None else device)
        model = model_from_record(record, target, where=str(p), stored_numbers=numbers)
        entries = model._state_entries()
        _check_fit(p, entries, stored)
        state = {name: reader.read_like(f"model/{name}", entries[name]) for name in entries}
    _load_state_exactly(model, state, target, p)
    return model


ALLOCATION_SLACK = 1 << 20  # numbers a rebuilt model may draw beyond what the file stores


def _check_fit(p: Path, entries: dict[str, Any], stored: dict[str, Header]) -> None:
    """The stored headers against the rebuilt model's entries, before any array is read."""
    missing, unexpected = sorted(set(entries) - set(stored)), sorted(set(stored) - set(entries))
    if missing or unexpected:
        raise ModelFileError(
            f"{p}: the weights do not fit the architecture: missing {missing}, unexpected {unexpected}"
        )
    for name, entry in entries.items():
        header = stored[name]
        if header.shape != tuple(entry.shape):
            raise ModelFileError(
                f"{p}: weight {name!r} has shape {header.shape}, the rebuilt model's {entry.shape}"
            )


def _load_state_exactly(
    model: Module, state: dict[str, np.ndarray], target: Backend, p: Path
) -> None:
    """Put every saved array on ``target`` with its saved dtype (not the constructor's)."""
    entries = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    missing, unexpected = sorted(set(entries) - set(state)), sorted(set(state) - set(entries))
    if missing or unexpected:
        raise ModelFileError(
            f"{p}: the weights do not fit the architecture: missing {missing}, unexpected {unexpected}"
        )
    values = {}
    for name, entry in entries.items():
        saved = state[name]
        if tuple(saved.shape) != entry.shape:
            raise ModelFileError(
                f"{p}: weight {name!r} has shape {tuple(saved.shape)}, the rebuilt model's "
                f"{entry.shape}"
            )
        if saved.dtype.kind not in "fiub":
            raise ModelFileError(f"{p}: weight {name!r} has unsupported dtype {saved.dtype}")
        values[name] = target.asarray(saved, dtype=saved.dtype.name, copy=True)
    for name, entry in entries.items():
        entry.value = values[name]
        if isinstance(entry, Parameter):
            entry.grad = None


__all__ = [
    "ModelFileError",
    "build_from_config",
    "load_model",
    "model_from_record",
    "model_record",
    "module_config",
    "register_module",
    "registered_modules",
    "save_model",
]
