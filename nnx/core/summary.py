"""``nnx.summary``: a table of a model's layers, output shapes and parameter counts.

Like Keras' ``model.summary()`` or torchinfo: one forward pass on zeros of the given input shape
(in evaluation mode, on the model's own backend and dtype) records every module's output shape.
``nnx.summary(model, shape)`` returns the table as a string (pass ``print_fn=print`` to print it
as well); ``model.summary(shape)`` prints it and returns None, as Keras' does, so a REPL shows the
table once either way.

>>> import nnx
>>> model = nnx.Sequential(nnx.Flatten(), nnx.Linear(64, 32, rng=0), nnx.ReLU(),
...                        nnx.Linear(32, 10, rng=1))
>>> model.summary((1, 8, 8))
Layer (type)    Output shape   Params     Size
----------------------------------------------
Sequential      (N, 10)             -        -
  0 (Flatten)   (N, 64)             -        -
  1 (Linear)    (N, 32)         2,080   8.1 KB
  2 (ReLU)      (N, 32)             -        -
  3 (Linear)    (N, 10)           330   1.3 KB
----------------------------------------------
Total params: 2,410 (9.4 KB)
Trainable params: 2,410
Non-trainable values (buffers): 0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..backend import backend_of, get_backend
from .module import Buffer, Module, Parameter, set_summary_table

_BATCH = 2  # a batch of two: a batch axis of 1 could hide broadcasting mistakes


def summary(
    model: Module,
    input_shape: Sequence[int] | Sequence[Sequence[int]] | None = None,
    *,
    dtype: Any = None,
    print_fn: Callable[[str], Any] | None = None,
) -> str:
    """Return a table of ``model``'s modules (and pass it to ``print_fn`` too, when given).

    Args:
        model: any module.
        input_shape: the shape of one sample, without the batch axis (``(64,)``,
            ``(1, 28, 28)``); a list of shapes for a model taking several inputs. None: the
            shape the model's first layer fixes, a ``Standardize`` or a ``Linear`` (a model of
            the training command's starts with ``Standardize``); else a ValueError asks for it.
        dtype: the input dtype (default: the dtype of the model's first floating parameter, else
            float32); ``"int64"`` for models that take token indices.
        print_fn: called with the table (default None: only returned; ``Module.summary``
            prints it).

    Each row is a module (sub-modules indented under their container) with its output shape
    (``N`` marks the batch axes: those that change when a second pass runs a batch one
    longer), its own parameter count and their size in bytes; modules not
    called by the forward pass show ``-`` as their shape. A module listed twice (shared) is
    counted once.
    """
    if not isinstance(model, Module):
        raise TypeError(f"summary: model must be an nnx.Module, got {type(model).__name__}")
    shapes = _input_shapes(_own_input_shape(model) if input_shape is None else input_shape)
    params = list(model.parameters())
    backend = backend_of(params[0].value) if params else get_backend("cpu")
    if dtype is None:
        floating = [p for p in params if backend.xp.isdtype(p.dtype, "real floating")]
        dtype = str(floating[0].dtype).rsplit(".", 1)[-1] if floating else "float32"
    outputs: dict[int, Any] = {}
    again: dict[int, Any] = {}  # a batch one longer: the axes that change are the batch axes
    sink = [outputs]  # where the forward passes record, the first pass's then the second's
    named = list(model.named_modules())
    originals = {}
    for _, module in named:
        originals[id(module)] = module.__dict__.get("forward")
        module.forward = _recording(module, sink)
    modes = {id(m): m.training for _, m in named}
    model.eval()
    try:
        model(*[backend.asarray(np.zeros((_BATCH, *s)), dtype=dtype) for s in shapes])
    except Exception as err:
        raise ValueError(
            f"summary: the forward pass on input shape {_show_input(shapes)} failed "
            f"({type(err).__name__}: {err})"
        ) from err
    else:
        sink[0] = again
        try:  # a model tied to the batch size fails here: then axis 0 is taken as the batch
            model(*[backend.asarray(np.zeros((_BATCH + 1, *s)), dtype=dtype) for s in shapes])
        except Exception:  # noqa: BLE001
            again.clear()
    finally:
        for _, module in named:
            if originals[id(module)] is None:
                del module.forward
            else:
                module.forward = originals[id(module)]
            module.training = modes[id(module)]

    rows = [("Layer (type)", "Output shape", "Params", "Size")]
    for name, module in named:
        depth = name.count(".") + 1 if name else 0
        label = (
            type(module).__name__
            if not name
            else f"{name.rsplit('.', 1)[-1]} ({type(module).__name__})"
        )
        own = [v for v in vars(module).values() if isinstance(v, Parameter)]
        count = sum(math.prod(p.shape) for p in own)
        size = sum(_nbytes(p) for p in own)
        rows.append(
            (
                "  " * depth + label,
                _show(outputs.get(id(module)), again.get(id(module))),
                f"{count:,}" if count else "-",
                _bytes(size) if count else "-",
            )
        )
    total = sum(math.prod(p.shape) for p in params)
    total_size = sum(_nbytes(p) for p in params)
    buffers = list(model.buffers())
    buffer_count = sum(math.prod(b.shape) for b in buffers)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = []
    for i, row in enumerate(rows):
        lines.append(
            f"{row[0]:<{widths[0]}}   {row[1]:<{widths[1]}}   "
            f"{row[2]:>{widths[2]}}   {row[3]:>{widths[3]}}".rstrip()
        )
        if i == 0:
            lines.append("-" * len(lines[0]))
    lines.append("-" * len(lines[0]))
    lines.append(f"Total params: {total:,} ({_bytes(total_size)})")
    lines.append(f"Trainable params: {total:,}")
    lines.append(
        f"Non-trainable values (buffers): {buffer_count:,}"
        + (f" ({_bytes(sum(_nbytes(b) for b in buffers))})" if buffer_count else "")
    )
    table = "\n".join(lines)
    if print_fn is not None:
        print_fn(table)
    return table


set_summary_table(summary)


def _recording(module: Module, sink: list[dict[int, Any]]) -> Any:
    forward = (
        type(module).forward.__get__(module)
        if "forward" not in module.__dict__
        else module.__dict__["forward"]
    )

    def record(*args: Any, **kwargs: Any) -> Any:
        out = forward(*args, **kwargs)
        sink[0][id(module)] = out
        return out

    return record


def _input_shapes(input_shape: Any) -> list[tuple[int, ...]]:
    def one(shape: Any) -> tuple[int, ...]:
        if isinstance(shape, int) and not isinstance(shape, bool):
            shape = (shape,)
        if not isinstance(shape, (tuple, list)) or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape
        ):
            raise ValueError(
                f"summary: input_shape must be the shape of one sample (positive integers, "
                f"without the batch axis), or a list of such shapes; got {input_shape!r}"
            )
        return tuple(int(d) for d in shape)

    if (
        isinstance(input_shape, (tuple, list))
        and input_shape
        and all(isinstance(s, (tuple, list)) for s in input_shape)
    ):
        return [one(s) for s in input_shape]
    return [one(input_shape)]


def _own_input_shape(model: Module) -> tuple[int, ...]:
    """The sample shape fixed by the first layer of ``model`` (``Sequential`` entered): a
    ``Standardize``'s ``shape`` or a ``Linear``'s ``in_features`` (duck-typed: the layers
    package is above this one)."""
    from .module import Sequential

    first: Any = model
    while isinstance(first, Sequential) and len(first) > 0:
        first = first[0]
    name = type(first).__name__
    shape = getattr(first, "shape", None)
    if name == "Standardize" and isinstance(shape, tuple):
        return tuple(int(d) for d in shape)
    if name == "Linear" and isinstance(getattr(first, "in_features", None), int):
        return (first.in_features,)
    raise ValueError(
        f"summary: give input_shape, the shape of one sample such as (64,) or (1, 28, 28): "
        f"the first layer, {name}, does not fix it"
    )


def _show_input(shapes: list[tuple[int, ...]]) -> str:
    return str(shapes[0]) if len(shapes) == 1 else str(shapes)


def _show(value: Any, other: Any = None) -> str:
    """The shape(s) of ``value`` with ``N`` on the batch axes: the axes whose size differs in
    ``other``, the output for a batch one longer (else axis 0 when it has the batch's size)."""
    if value is None:
        return "-"
    if isinstance(value, (tuple, list)):
        others = other if isinstance(other, (tuple, list)) and len(other) == len(value) else ()
        return ", ".join(
            _show(v, o) for v, o in zip(value, others or [None] * len(value), strict=True)
        )
    if isinstance(value, dict):
        others = other if isinstance(other, dict) else {}
        return ", ".join(f"{k}: {_show(v, others.get(k))}" for k, v in value.items())
    shape = getattr(value, "shape", None)
    if shape is None:
        return type(value).__name__
    dims = [str(d) for d in tuple(shape)]
    bigger = getattr(other, "shape", None)
    if bigger is not None and len(tuple(bigger)) == len(dims):
        dims = ["N" if str(b) != d else d for d, b in zip(dims, tuple(bigger), strict=True)]
    elif dims and dims[0] == str(_BATCH):
        dims[0] = "N"
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _nbytes(entry: Parameter | Buffer) -> int:
    itemsize = np.dtype(str(entry.dtype).rsplit(".", 1)[-1]).itemsize
    return math.prod(entry.shape) * itemsize


def _bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
