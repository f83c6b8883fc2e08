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

import inspect
import math
import numbers
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import Backend, get_backend
from ..core.init import allocation_limit
from ..core.module import Buffer, Module, Parameter, register_module
from .npz import Header, NpzReader, json_member, write_npz
from .registry import (
    ModelFileError,
    init_arguments,
    lookup,
    registered_modules,
    registered_name,
)

FORMAT = "nnx-model"
VERSION = 1
_META = "__model__"


class _Encoder:
    """Turns a module tree into JSON records; each module instance gets one record."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.index: dict[int, int] = {}

    def module(self, module: Module, where: str) -> int:
        key = id(module)
        if key in self.index:
            return self.index[key]
        cls = type(module)
        name = registered_name(cls)
        if name is None:
            raise ModelFileError(
                f"cannot save {where} ({cls.__module__}.{cls.__qualname__}): its class is not registered; decorate it "
                "with @nnx.register_module so that load_model can rebuild it"
            )
        slot = len(self.records)
        self.index[key] = slot
        self.records.append({})  # reserved so that this module's number stays its own
        if hasattr(module, "get_config"):
            arguments, signature = module.get_config(), None
            if not isinstance(arguments, dict):
                raise ModelFileError(f"{where}: {cls.__name__}.get_config() must return a dict")
        else:
            signature, arguments = init_arguments(module)
        args: dict[str, Any] = {}
        for arg, value in arguments.items():
            if arg == "device" and isinstance(value, (str, Backend)):
                # where the weights go is load_model's choice, not the file's
                args[arg] = {"__device__": value if isinstance(value, str) else value.name}
                continue
            encoded = self.value(value, f"{where} ({cls.__name__}) argument {arg!r}")
            if encoded is not _DROP:
                args[arg] = encoded
            elif signature is not None and arg in signature.parameters:
                param = signature.parameters[arg]
                if param.default is inspect.Parameter.empty and param.kind not in (
                    inspect.Parameter.VAR_POSITIONAL,
                    inspect.Parameter.VAR_KEYWORD,
                ):
                    raise ModelFileError(
                        f"cannot save {where}: {cls.__name__} argument {arg!r} is a "
                        f"{type(value).__name__}, which cannot be stored as JSON, and it has "
                        "no default; define get_config() on the class"
                    )
        self.records[slot] = {"type": name, "args": args}
        return slot

    def value(self, value: Any, where: str) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real):
            number = float(value)
            return number if math.isfinite(number) else {"__float__": repr(number)}
        if isinstance(value, Module):
            return {"__module__": self.module(value, where)}
        if isinstance(value, Backend):
            return {"__device__": value.name}
        if isinstance(value, (tuple, list)):
            items = [self.value(v, f"{where}[{i}]") for i, v in enumerate(value)]
            if any(item is _DROP for item in items):
                return _DROP
            return {"__tuple__": items} if isinstance(value, tuple) else items
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            entries = {k: self.value(v, f"{where}[{k!r}]") for k, v in value.items()}
            if any(item is _DROP for item in entries.values()):
                return _DROP
            return {"__dict__": entries}
        dtype = _dtype_name(value)
        if dtype is not None:
            return {"__dtype__": dtype}
        return _DROP  # a Generator, a function, an array: the constructor's default instead


_DROP = object()


def _dtype_name(value: Any) -> str | None:
    """The name of a NumPy, PyTorch or array-API dtype object (``float32``), else None."""
    try:
        if isinstance(value, np.dtype) or (
            isinstance(value, type) and issubclass(value, np.generic)
        ):
            return np.dtype(value).name
    except TypeError:
        return None
    text = str(value).rsplit(".", 1)[-1]
    if type(value).__name__ in ("dtype", "DType") and text in _DTYPES:
        return text
    return None


_DTYPES = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool")


def module_config(model: Module) -> dict[str, Any]:
    """The architecture of ``model`` as JSON-ready data: ``{"type", "args"}`` for a model made of
    one module; with sub-modules, ``{"modules": [...], "root": 0}`` where arguments refer to
    other records as ``{"__module__": n}``. Raises :class:`ModelFileError` for an unregistered
    class or an argument that cannot be stored."""
    encoder = _Encoder()
    encoder.module(model, "the model")
    if len(encoder.records) == 1:
        return encoder.records[0]
    return {"modules": encoder.records, "root": 0}


# ---------------------------------------------------------------------------- rebuild


class _Decoder:
    def __init__(self, records: list[Any], device: Backend | None, where: str) -> None:
        self.records = records
        self.device = device
        self.where = where
        self.built: dict[int, Module] = {}
        self.building: set[int] = set()

    def module(self, slot: Any) -> Module:
        if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < len(self.records):
            raise ModelFileError(f"{self.where}: module reference {slot!r} points nowhere")
        if slot in self.built:
            return self.built[slot]
        if slot in self.building:
            raise ModelFileError(f"{self.where}: module {slot} contains itself")
        self.building.add(slot)
        record = self.records[slot]
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("type"), str)
            or not isinstance(record.get("args"), dict)
        ):
            raise ModelFileError(f"{self.where}: module record {slot} is malformed: {record!r}")
        cls = lookup(record["type"], self.where)
        args = {k: self.value(v) for k, v in record["args"].items()}
        try:
            if "from_config" in dir(cls) and hasattr(cls, "get_config"):
                module = cls.from_config(args)
            else:
                positional, keywords = _call_arguments(cls, args)
                module = cls(*positional, **keywords)
        except Exception as err:
            raise ModelFileError(
                f"{self.where}: rebuilding {record['type']} failed ({type(err).__name__}: {err})"
            ) from None
        self.building.discard(slot)
        self.built[slot] = module
        return module

    def value(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((tag, inner),) = value.items()
            if tag == "__module__":
                return self.module(inner)
            if tag == "__tuple__" and isinstance(inner, list):
                return tuple(self.value(v) for v in inner)
            if tag == "__dict__" and isinstance(inner, dict):
                return {k: self.value(v) for k, v in inner.items()}
            if tag == "__dtype__" and inner in _DTYPES:
                return inner
            if tag == "__float__" and inner in ("nan", "inf", "-inf"):
                return float(inner)
            if tag == "__device__":
                return "cpu" if self.device is None else self.device
        raise ModelFileError(f"{self.where}: unknown value {value!r} in the architecture record")


def _call_arguments(cls: type, args: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Positional and keyword arguments for ``cls(...)`` from saved name -> value pairs."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return [], dict(args)
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    has_varargs = any(
        p.kind is inspect.Parameter.VAR_POSITIONAL and args.get(p.name) for p in params.values()
    )
    for name, p in params.items():
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            positional.extend(args.get(name, ()))
        elif p.kind is inspect.Parameter.VAR_KEYWORD:
            keywords.update(args.get(name, {}))
        elif p.kind is inspect.Parameter.POSITIONAL_ONLY or (
            p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and has_varargs
        ):
            positional.append(args[name] if name in args else p.default)
        elif name in args:
            keywords[name] = args[name]
    unknown = set(args) - set(params)
    if unknown:
        raise TypeError(
            f"the saved arguments {sorted(unknown)} are not in {cls.__name__}'s signature"
        )
    return positional, keywords


def build_from_config(
    config: dict[str, Any], device: str | Backend | None = None, where: str = "model config"
) -> Module:
    """Rebuild a module tree from :func:`module_config`'s record (fresh weights)."""
    target = None if device is None else get_backend(device)
    if isinstance(config, dict) and "modules" in config:
        records, root = config.get("modules"), config.get("root", 0)
        if not isinstance(records, list):
            raise ModelFileError(f"{where}: 'modules' must be a list")
    else:
        records, root = [config], 0
    return _Decoder(records, target, where).module(root)


# ---------------------------------------------------------------------------- tied entries


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
        state = {name: reader.read(f"model/{name}", entries[name].shape) for name in entries}
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
