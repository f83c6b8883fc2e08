"""``export_onnx``: an nnx model as an ONNX file, one converter per layer class.

The exporter walks the model the way its ``forward`` runs: a :class:`~nnx.Sequential` chains
its layers, a :class:`~nnx.Graph` evaluates its nodes in topological order, the other
containers (``Residual``, ``Parallel``, ``Add``, ``Concat``) emit their merge. Every other module
is looked up by its exact class in the converter registry (:func:`register_converter`): a
converter receives the export context, the module and its inputs, emits ONNX nodes and returns
the names of its outputs. A module without a converter stops the export with
:class:`UnsupportedLayerError`, naming its class and its path in the model.

The graph is built with ``onnx.helper`` (the ``onnx`` package is imported only here, inside
:func:`export_onnx`; ``pip install 'nnx-trainer[onnx]'``). Weights keep nnx's layout where ONNX
can use it (``Linear``: ``MatMul`` by the ``(in, out)`` matrix, then ``Add``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import namespace, to_numpy
from ..core.containers import Add, Concat, Parallel, Residual
from ..core.graph import Graph, _split
from ..core.module import Module, Sequential
from ..io.atomic import atomic_write

OPSET = 17
INSTALL_HINT = "pip install 'nnx-trainer[onnx]'"


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


# ---------------------------------------------------------------------------- the entry point
def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ImportError(
            f"nnx.export_onnx needs the onnx package, which is not installed ({INSTALL_HINT})"
        ) from None
    return onnx


def _example_inputs(model: Module, example_input: Any) -> tuple[list[str], list[Any]]:
    """Input names and arrays: a Graph's own names, else ``input`` (``input_0``... for several)."""
    if isinstance(model, Graph):
        names = list(model.inputs)
        if isinstance(example_input, Mapping):
            if set(example_input) != set(names):
                raise OnnxExportError(
                    f"export_onnx: the graph's inputs are {names}, got {sorted(example_input)}"
                )
            return names, [example_input[n] for n in names]
        arrays = list(example_input) if isinstance(example_input, (tuple, list)) else [
            example_input
        ]  # fmt: skip
        if len(arrays) != len(names):
            raise OnnxExportError(
                f"export_onnx: the graph takes {len(names)} inputs {names}, got {len(arrays)}"
            )
        return names, arrays
    if isinstance(example_input, Mapping):
        raise OnnxExportError("export_onnx: inputs by name are for an nnx.Graph model")
    arrays = list(example_input) if isinstance(example_input, (tuple, list)) else [example_input]
    names = ["input"] if len(arrays) == 1 else [f"input_{i}" for i in range(len(arrays))]
    return names, arrays


def _value_info(ctx: Exporter, name: str, value: Any, free: Any) -> Any:
    """A declared input or output: dtype and shape, the ``free`` axes left open (``N`` where the
    axis is the batch itself); ``free`` None: every axis open."""
    host = to_numpy(value)
    if host.dtype.kind not in "fiub":
        raise OnnxExportError(f"export_onnx: {name!r} has dtype {host.dtype}, not a number")
    elem = ctx.helper.np_dtype_to_tensor_dtype(host.dtype)
    shape: list[Any] = [None] * host.ndim if free is None else list(host.shape)
    for axis, label in (free or {}).items():
        shape[axis] = label
    return ctx.helper.make_tensor_value_info(name, elem, shape)


def _batch_axes(names: list[str], arrays: list[Any], batch_axis: Any) -> list[int | None]:
    """Each input's free axis: ``batch_axis`` for every input (None: none), or a dict by input
    name (an input left out has none)."""

    def check(axis: Any, what: str) -> int | None:
        if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int) or axis < 0):
            raise OnnxExportError(
                f"export_onnx: {what} must be a non-negative integer or None, got {axis!r}"
            )
        return axis

    if isinstance(batch_axis, Mapping):
        unknown = sorted(set(batch_axis) - set(names))
        if unknown:
            raise OnnxExportError(f"export_onnx: batch_axis names {unknown}, inputs are {names}")
        axes = [check(batch_axis.get(n), f"batch_axis[{n!r}]") for n in names]
    else:
        axes = [check(batch_axis, "batch_axis")] * len(names)
    return [
        a if a is not None and arr.ndim > a else None for a, arr in zip(axes, arrays, strict=True)
    ]


def _free_output_axes(model: Module, arrays: list[Any], axes: list[int | None],
                      outs: list[Any], label: str | None) -> list[Any]:  # fmt: skip
    """Which output axes follow the batch size: the model runs again on inputs one sample
    longer along their free axes; an axis that grows by one with them is left open in the file
    (named ``label``). Where that second run fails, every output axis is left open."""
    grown, batch = [], -1
    for a, axis in zip(arrays, axes, strict=True):
        if axis is not None:
            batch = int(a.shape[axis])
            first = a[(slice(None),) * axis + (slice(0, 1), ...)]
            a = namespace(a).concat([a, first], axis=axis)
        grown.append(a)
    try:
        again = [to_numpy(v) for v in _flat_arrays(model(*grown))]
    except Exception:  # noqa: BLE001 (a model whose sizes are tied to the example's batch)
        return [None] * len(outs)
    result = []
    for before, after in zip(outs, again, strict=True):
        before = to_numpy(before)
        result.append({
            axis: label if (n, m) == (batch, batch + 1) else None
            for axis, (n, m) in enumerate(zip(before.shape, after.shape, strict=True))
            if n != m
        })  # fmt: skip
    return result


def _flat_arrays(out: Any) -> list[Any]:
    if isinstance(out, dict):
        return [a for v in out.values() for a in _flat_arrays(v)]
    if isinstance(out, tuple):
        return [a for v in out for a in _flat_arrays(v)]
    return [out]


def _flatten_outputs(out: Any, prefix: str = "output") -> list[tuple[str, Tensor]]:
    """Output names: ``output`` for one array, ``output_0``... for a tuple (nested tuples are
    flattened in order), a dict's keys (``key_0``... for a tuple under a key)."""
    if isinstance(out, Tensor):
        return [(prefix, out)]
    if isinstance(out, dict):
        return [pair for k, v in out.items() for pair in _flatten_outputs(v, k)]
    flat: list[Tensor] = []

    def walk(x: Any) -> None:
        if isinstance(x, Tensor):
            flat.append(x)
        else:
            for v in x:
                walk(v)

    walk(out)
    return [(f"{prefix}_{i}", t) for i, t in enumerate(flat)]


def export_onnx(
    model: Module,
    example_input: Any,
    path: str | os.PathLike[str],
    *,
    opset: int = OPSET,
    batch_axis: int | None | Mapping[str, int | None] = 0,
) -> Path:
    """Write ``model`` as an ONNX file at ``path`` and return the path.

    ``example_input`` is an array (a tuple of arrays for several inputs; for an
    :class:`~nnx.Graph` also a dict by input name): the model runs once on it in evaluation
    mode to learn the static sizes, and the file computes what ``model`` computes in
    evaluation mode (dropout is the identity, batch norms use their running statistics); each
    module's mode is put back afterwards.

    Axis ``batch_axis`` of every input is left free in the file (None keeps the example's
    sizes; a dict by input name gives each input its own axis, or None). A model with one input
    names that axis ``N``; with several, each input's free axis gets its own name
    (``<input>_<axis>``), since they need not agree (a sequence and its mask). The output axes
    that follow it are found by running the model once more on inputs one sample longer.

    The file's inputs are named after a Graph's inputs (else ``input``, or ``input_0``,
    ``input_1``...), its outputs after a Graph's dict outputs (else ``output`` or
    ``output_0``...). Raises :class:`UnsupportedLayerError` naming the first module that has
    no converter, and ImportError (with the pip extra) when ``onnx`` is not installed.
    """
    onnx = _import_onnx()
    if not isinstance(model, Module):
        raise TypeError(f"export_onnx: model must be an nnx.Module, got {type(model).__name__}")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < OPSET:
        raise OnnxExportError(f"export_onnx: opset must be an integer >= {OPSET}, got {opset!r}")
    names, arrays = _example_inputs(model, example_input)
    axes = _batch_axes(names, arrays, batch_axis)
    label = "N" if len(names) == 1 else None
    ctx = Exporter(onnx, opset)
    for n in names:
        ctx._used.add(n)
    inputs = [Tensor(n, a) for n, a in zip(names, arrays, strict=True)]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        outs = _flatten_outputs(ctx.convert(model, inputs, ""))
        values = [t.value for _, t in outs]
        free_in = [
            {} if a is None else {a: label or f"{n}_{a}"} for n, a in zip(names, axes, strict=True)
        ]
        if all(a is None for a in axes):
            free_out: list[Any] = [{} for _ in outs]
        else:
            free_out = _free_output_axes(model, arrays, axes, values, label)
    finally:
        for m, mode in modes:
            m.training = mode
    graph_inputs = [
        _value_info(ctx, t.name, t.value, f) for t, f in zip(inputs, free_in, strict=True)
    ]
    graph_outputs = []
    for (out_name, t), free in zip(outs, free_out, strict=True):
        if out_name in ctx._used:
            out_name = ctx.fresh(out_name)
        ctx._used.add(out_name)
        ctx.nodes.append(ctx.helper.make_node("Identity", [t.name], [out_name]))
        graph_outputs.append(_value_info(ctx, out_name, t.value, free))
    graph = ctx.helper.make_graph(
        ctx.nodes, type(model).__name__, graph_inputs, graph_outputs, ctx.initializers
    )
    proto = ctx.helper.make_model(
        graph,
        opset_imports=[ctx.helper.make_opsetid("", opset)],
        producer_name="nnx",
    )
    # the oldest IR version that carries this opset, so that older runtimes read the file
    proto.ir_version = ctx.helper.find_min_ir_version_for(list(proto.opset_import))
    onnx.checker.check_model(proto)
    target = Path(path)
    with atomic_write(target) as f:
        f.write(proto.SerializeToString())
    return target
