"""The walk behind ``export_onnx`` (:mod:`nnx.onnx.write`): one converter per layer class.

The exporter walks the model the way its ``forward`` runs: a :class:`~nnx.Sequential` chains
its layers, a :class:`~nnx.Graph` evaluates its nodes in topological order, the other
containers (``Residual``, ``Parallel``, ``Add``, ``Concat``) emit their merge. Every other module
is looked up by its exact class in the converter registry (:func:`register_converter`): a
converter receives the export context, the module and its inputs, emits ONNX nodes and returns
the names of its outputs. A module without a converter stops the export with
:class:`UnsupportedLayerError`, naming its class and its path in the model.

The graph is built with ``onnx.helper``, handed in by ``export_onnx``, which alone imports the
``onnx`` package (``pip install 'nnx-trainer[onnx]'``). Weights keep nnx's layout where ONNX
can use it (``Linear``: ``MatMul`` by the ``(in, out)`` matrix, then ``Add``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..backend import to_numpy
from ..core.containers import Add, Concat, Parallel, Residual
from ..core.graph import Graph, _split
from ..core.module import Module, Sequential

OPSET = 17


class OnnxExportError(ValueError):
    """The model or the example input cannot be exported; the message says why, in one line."""


class UnsupportedLayerError(OnnxExportError, NotImplementedError):
    """A module has no ONNX converter (or uses an option its converter cannot express)."""


Converter = Callable[["Exporter", Module, list["Tensor"], str], Any]
_CONVERTERS: dict[type, Converter] = {}


def register_converter(*classes: type) -> Callable[[Converter], Converter]:
    """Decorator: ``fn(ctx, module, inputs, path) -> outputs`` converts modules of exactly these
    classes (a subclass needs its own entry: its ``forward`` may differ). ``inputs`` are
    :class:`Tensor` s; the converter returns output names (a tuple of them, nested as the
    module's ``forward`` returns them)."""

    def wrap(fn: Converter) -> Converter:
        for cls in classes:
            _CONVERTERS[cls] = fn
        return fn

    return wrap


class Tensor:
    """A value of the ONNX graph: its ``name`` and, where known, the example ``value`` (the nnx
    forward's array at that point, used for the static sizes some converters need)."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: Any = None):
        self.name = name
        self.value = value

    @property
    def shape(self) -> tuple[int, ...]:
        if self.value is None:
            raise OnnxExportError(f"export_onnx: the shape of {self.name!r} is not known here")
        return tuple(int(s) for s in self.value.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)


def _pair(names: Any, value: Any) -> Any:
    """Converter output names (nested tuples) paired with the forward's values."""
    if isinstance(names, str):
        return Tensor(names, value)
    if value is None:
        return tuple(_pair(n, None) for n in names)
    if not isinstance(value, tuple) or len(value) != len(names):
        raise OnnxExportError("export_onnx: a converter's outputs do not match its forward")
    return tuple(_pair(n, v) for n, v in zip(names, value, strict=True))


class Exporter:
    """What converters build with: :meth:`op` adds a node, :meth:`const` an initializer,
    :meth:`convert` converts a sub-module (running its nnx forward alongside for the sizes)."""

    def __init__(self, onnx: Any, opset: int = 17):
        self.onnx = onnx
        self.opset = opset
        self.helper = onnx.helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._used: set[str] = set()
        self._consts: dict[Any, str] = {}

    def fresh(self, hint: str) -> str:
        base = "".join(c if c.isalnum() or c in "_." else "_" for c in hint) or "t"
        name, i = base, 1
        while name in self._used:
            name, i = f"{base}_{i}", i + 1
        self._used.add(name)
        return name

    def const(self, array: Any, hint: str = "const", key: Any = None) -> str:
        """An initializer holding ``array`` (a host copy); ``key`` shares one between calls
        (a parameter used twice is stored once)."""
        if key is not None and key in self._consts:
            return self._consts[key]
        host = np.ascontiguousarray(np.asarray(to_numpy(array)))
        name = self.fresh(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(host, name))
        if key is not None:
            self._consts[key] = name
        return name

    def param(self, p: Any, hint: str, transform: Callable[[Any], Any] | None = None,
              tag: str = "") -> str:  # fmt: skip
        """A parameter or buffer's value as an initializer, stored once per (array, tag)."""
        value = p.value if hasattr(p, "value") else p
        host = to_numpy(value)
        return self.const(host if transform is None else transform(host), hint, (id(p), tag))

    def scalar(self, x: float, like: str = "float32") -> str:
        return self.const(np.asarray(x, dtype=like), "c", ("scalar", float(x), like))

    def ints(self, values: Any, hint: str = "shape") -> str:
        values = tuple(int(v) for v in values)
        return self.const(np.asarray(values, dtype=np.int64), hint, ("ints", values))

    def op(self, op_type: str, inputs: list[Any], outputs: int = 1, hint: str = "",
           **attrs: Any) -> Any:  # fmt: skip
        """Add one node; returns its output name (a list of them for ``outputs > 1``).
        An input may be a name, a :class:`Tensor` or None (an omitted optional input)."""
        names = ["" if x is None else x.name if isinstance(x, Tensor) else str(x) for x in inputs]
        outs = [self.fresh(hint or op_type.lower()) for _ in range(outputs)]
        node_name = self.fresh(f"{op_type}_node")
        self.nodes.append(self.helper.make_node(op_type, names, outs, name=node_name, **attrs))
        return outs[0] if outputs == 1 else outs

    def reduce(self, op_type: str, x: Any, axes: Any) -> str:
        """``ReduceMean``, ``ReduceMax``, ``ReduceSum`` over ``axes``, keeping them (the axes are
        an attribute before opset 18, ``ReduceSum``'s before 13)."""
        axes = [int(a) for a in axes]
        if self.opset < 18 and op_type != "ReduceSum":
            return self.op(op_type, [x], axes=axes, keepdims=1)
        return self.op(op_type, [x, self.ints(axes, "axes")], keepdims=1)

    def reduce_mean(self, x: Any, axes: Any) -> str:
        return self.reduce("ReduceMean", x, axes)

    def convert(self, module: Module, inputs: list[Tensor], path: str) -> Any:
        """Convert ``module`` applied to ``inputs``; returns its outputs as :class:`Tensor` s
        (nested tuples as its forward returns them)."""
        values = [t.value for t in inputs]
        known = all(v is not None for v in values)
        container = _CONTAINERS.get(type(module))
        if container is not None:
            return container(self, module, inputs, path)
        fn = _CONVERTERS.get(type(module))
        if fn is None:
            raise UnsupportedLayerError(
                f"export_onnx: {type(module).__name__} at {_where(path)} has no ONNX converter "
                "(docs/onnx.md lists the supported layers; nnx.onnx.register_converter adds one)"
            )
        # nnx's forward first: its checks name a wrong example input before any converter
        # reads the input's sizes
        value = module.forward(*values) if known else None
        return _pair(fn(self, module, inputs, path), value)


def refuse(module: Module, path: str, why: str) -> UnsupportedLayerError:
    """The error for a module whose options ONNX (or this exporter) cannot express."""
    return UnsupportedLayerError(
        f"export_onnx: {type(module).__name__} at {_where(path)} cannot be exported: {why}"
    )


def _where(path: str) -> str:
    return f"'{path}'" if path else "the top of the model"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _sequential(ctx: Exporter, model: Sequential, inputs: list[Tensor], path: str) -> Any:
    x: Any = inputs[0] if len(inputs) == 1 else tuple(inputs)
    for i, layer in enumerate(model):
        x = ctx.convert(layer, list(x) if isinstance(x, tuple) else [x], _join(path, str(i)))
    return x


def _residual(ctx: Exporter, model: Residual, inputs: list[Tensor], path: str) -> Tensor:
    a = ctx.convert(model.block, inputs, _join(path, "block"))
    b = ctx.convert(model.shortcut, inputs, _join(path, "shortcut"))
    return _add(ctx, [a, b])


def _add(ctx: Exporter, terms: list[Tensor]) -> Tensor:
    total = terms[0]
    for t in terms[1:]:
        value = None if total.value is None or t.value is None else total.value + t.value
        total = Tensor(ctx.op("Add", [total, t], hint="sum"), value)
    return total


def _concat(ctx: Exporter, parts: list[Tensor], axis: int) -> Tensor:
    values = [p.value for p in parts]
    value = None
    if all(v is not None for v in values):
        value = np.concatenate([to_numpy(v) for v in values], axis=axis)
        axis = axis % value.ndim
    return Tensor(ctx.op("Concat", parts, axis=axis, hint="concat"), value)


def _parallel(ctx: Exporter, model: Parallel, inputs: list[Tensor], path: str) -> Any:
    branches = list(model)
    if len(inputs) == 1:
        inputs = inputs * len(branches)
    if len(inputs) != len(branches):
        raise OnnxExportError(
            f"export_onnx: Parallel at {_where(path)} got {len(inputs)} inputs for "
            f"{len(branches)} branches"
        )
    outs = [
        ctx.convert(b, [x], _join(path, str(i)))
        for i, (b, x) in enumerate(zip(branches, inputs, strict=True))
    ]
    if model.merge is None:
        return tuple(outs)
    if model.merge == "add":
        return _add(ctx, outs)
    return _concat(ctx, outs, model.axis)


def _add_module(ctx: Exporter, model: Add, inputs: list[Tensor], path: str) -> Tensor:
    return _add(ctx, inputs)


def _concat_module(ctx: Exporter, model: Concat, inputs: list[Tensor], path: str) -> Tensor:
    return _concat(ctx, inputs, model.axis)


_CONTAINERS: dict[type, Callable[..., Any]] = {
    Sequential: _sequential,
    Residual: _residual,
    Parallel: _parallel,
    Add: _add_module,
    Concat: _concat_module,
    Graph: lambda ctx, model, inputs, path: _graph(ctx, model, inputs, path),
}


def _graph(ctx: Exporter, model: Graph, inputs: list[Tensor], path: str) -> Any:
    if len(inputs) != len(model.inputs):
        raise OnnxExportError(
            f"export_onnx: the Graph at {_where(path)} takes {len(model.inputs)} inputs "
            f"{list(model.inputs)}, got {len(inputs)}"
        )
    values: dict[str, Any] = dict(zip(model.inputs, inputs, strict=True))

    def lookup(ref: str) -> Any:
        base, index = _split(ref)
        return values[base] if index is None else values[base][index]

    for name, module, refs in model.nodes:
        args = [lookup(r) for r in refs]
        for a in args:
            if not isinstance(a, Tensor):
                raise OnnxExportError(
                    f"export_onnx: node {_join(path, name)!r} takes a tuple as one input; "
                    "index it (h[0]) in the graph"
                )
        values[name] = ctx.convert(module, args, _join(path, name))
    if isinstance(model.outputs, str):
        return lookup(model.outputs)
    if isinstance(model.outputs, dict):
        return {k: lookup(r) for k, r in model.outputs.items()}
    return tuple(lookup(r) for r in model.outputs)
