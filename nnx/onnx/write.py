"""``export_onnx``: the example run, the file's declared inputs and outputs (names, dtypes,
free batch axes) and the write. The walk over the model and the converter registry are in
:mod:`nnx.onnx.export`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..backend import namespace, to_numpy
from ..core.graph import Graph
from ..core.module import Module
from ..io.atomic import atomic_write
from .export import OPSET, Exporter, OnnxExportError, Tensor

INSTALL_HINT = "pip install 'nnx-trainer[onnx]'"


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
    for n, a in zip(names, arrays, strict=True):
        if not (hasattr(a, "ndim") and hasattr(a, "dtype")):  # a nested list, a number...
            raise TypeError(
                f"export_onnx: example input {n!r} is a {type(a).__name__}, not an array "
                f"(a list or tuple holds one array per input)"
            )
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
