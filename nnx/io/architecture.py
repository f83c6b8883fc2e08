"""A model's architecture as a JSON record: every module's registered class name and the
arguments of its constructor call (:func:`module_config`), and the way back
(:func:`build_from_config`). Model files and checkpoints store this record beside the weights;
only registered classes are rebuilt, and only from JSON values, so a record never runs code it
names.
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any

import numpy as np

from ..backend import Backend, get_backend
from ..core.module import Module
from .registry import ModelFileError, init_arguments, lookup, registered_name


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
