"""PyTorch weights in and out: nnx models under ``torch.nn``'s parameter names and layouts.

An nnx module that has a ``torch.nn`` twin keeps the same parameter and buffer names as the twin
(``weight``, ``bias``, ``running_mean``, ``weight_ih_l0``, ``self_attn.out_proj.weight``), and a
model's names follow its module tree the way PyTorch's do (``"0.weight"`` inside a Sequential).
Three families keep a different layout, and this module converts them:

- ``Linear`` keeps its weight ``(in, out)``; PyTorch's is ``(out, in)``: transposed.
- ``RNN``/``LSTM``/``GRU`` and their cells keep ``weight_ih*``/``weight_hh*`` as
  ``(in, gates * hidden)``; PyTorch's are ``(gates * hidden, in)`` with the same gate order
  (LSTM: input, forget, cell, output; GRU: reset, update, new): transposed.
- ``MultiheadAttention`` has four ``Linear`` projections; PyTorch stacks the query, key and value
  weights into ``in_proj_weight`` ``(3E, E)`` (biases into ``in_proj_bias``) beside ``out_proj``.

Every other parameter and buffer (convolutions and transposed convolutions, every norm with its
running statistics and ``num_batches_tracked``, ``Embedding``, ``EmbeddingBag``, ``Bilinear``,
``PReLU``) has PyTorch's name and layout already.

:func:`torch_state_dict` gives host NumPy arrays in PyTorch's layout (``torch.from_numpy`` each
to hand them to PyTorch); :func:`load_torch_state_dict` takes such a mapping (NumPy arrays or
torch tensors) or a file: ``.safetensors`` is read without PyTorch (the ``safetensors``
package), ``.pt``/``.pth`` only through ``torch.load(..., weights_only=True)``.
:func:`save_torch_weights` writes ``.safetensors`` (or ``.pt`` when PyTorch is installed).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..backend import import_torch, to_numpy
from ..core.module import Buffer, Module, Parameter
from ..layers.attention import MultiheadAttention
from ..layers.linear import Linear
from ..layers.recurrent.base import _Recurrent
from ..layers.recurrent.cells import _Cell
from .atomic import atomic_write
from .errors import NnxFileError

__all__ = [
    "TorchLoadResult",
    "load_torch_state_dict",
    "save_torch_weights",
    "torch_gradients",
    "torch_state_dict",
]

_SAFETENSORS_HINT = "pip install 'nnx-trainer[safetensors]' (or pip install safetensors)"
_TORCH_SUFFIXES = (".pt", ".pth")


@dataclass(frozen=True)
class _Entry:
    """One PyTorch state-dict entry: its name, the nnx arrays it is made of, and the two
    conversions between them (``pack``: nnx host arrays -> PyTorch layout; ``unpack``: back)."""

    name: str
    sources: tuple[Parameter | Buffer, ...]
    pack: Callable[[list[np.ndarray]], np.ndarray]
    unpack: Callable[[np.ndarray], list[np.ndarray]]


def _same(name: str, item: Parameter | Buffer) -> _Entry:
    return _Entry(name, (item,), lambda a: a[0], lambda t: [t])


def _transposed(name: str, item: Parameter) -> _Entry:
    return _Entry(name, (item,), lambda a: a[0].T, lambda t: [t.T])


def _own(module: Module) -> Iterator[tuple[str, Parameter | Buffer]]:
    """The module's own parameters, then its own buffers (not its children's), in the order
    they were assigned: PyTorch's state-dict order within one module."""
    items = list(vars(module).items())
    yield from ((n, v) for n, v in items if isinstance(v, Parameter))
    yield from ((n, v) for n, v in items if isinstance(v, Buffer))


def _plain(prefix: str, module: Module) -> list[_Entry]:
    return [_same(prefix + n, v) for n, v in _own(module)]


def _linear(prefix: str, module: Module) -> list[_Entry]:
    """``Linear``: the weight transposed to PyTorch's ``(out, in)``."""
    return [
        _transposed(prefix + n, v) if n == "weight" else _same(prefix + n, v)
        for n, v in _own(module)
    ]


def _recurrent(prefix: str, module: Module) -> list[_Entry]:
    """``RNN``/``LSTM``/``GRU`` and the cells: every matrix transposed, gate blocks in place."""
    return [
        _transposed(prefix + n, v)
        if len(v.shape) == 2 and isinstance(v, Parameter)
        else _same(prefix + n, v)
        for n, v in _own(module)
    ]


def _split_t(t: np.ndarray) -> list[np.ndarray]:
    return [w.T for w in np.split(t, 3, axis=0)]


def _attention(prefix: str, module: Module) -> list[_Entry]:
    """``MultiheadAttention``: q, k, v weights stacked ``(out, in)`` into ``in_proj_weight``,
    their biases into ``in_proj_bias``; ``out_proj`` as a Linear."""
    projections = (module.q_proj, module.k_proj, module.v_proj)
    entries = [
        _Entry(
            prefix + "in_proj_weight",
            tuple(p.weight for p in projections),
            lambda a: np.concatenate([w.T for w in a]),
            _split_t,
        )
    ]
    if module.q_proj.bias is not None:
        entries.append(
            _Entry(
                prefix + "in_proj_bias",
                tuple(p.bias for p in projections),
                np.concatenate,
                lambda t: np.split(t, 3),
            )
        )
    return entries + _plain(prefix, module) + _linear(prefix + "out_proj.", module.out_proj)


# module class -> (rule, whether the rule covers the module's children too)
_RULES: dict[type, tuple[Callable[[str, Module], list[_Entry]], bool]] = {
    Linear: (_linear, False),
    _Recurrent: (_recurrent, False),
    _Cell: (_recurrent, False),
    MultiheadAttention: (_attention, True),
}


def _rule(module: Module) -> tuple[Callable[[str, Module], list[_Entry]], bool]:
    for klass in type(module).__mro__:
        if klass in _RULES:
            return _RULES[klass]
    return _plain, False


def _entries(model: Module) -> list[_Entry]:
    """Every PyTorch state-dict entry of ``model``, in PyTorch's order (each module's own
    parameters, then its buffers, then its children's, depth first)."""
    if not isinstance(model, Module):
        raise TypeError(f"expected an nnx Module, got {type(model).__name__}")
    list(model.named_parameters())  # raises UnbuiltModuleError, naming the layer, while lazy
    entries: list[_Entry] = []
    covered: list[str] = []
    for path, module in model.named_modules():
        if any(c == "" or path == c or path.startswith(c + ".") for c in covered):
            continue
        rule, whole = _rule(module)
        entries.extend(rule(f"{path}." if path else "", module))
        if whole:
            covered.append(path)
    return entries


def _host(value: Any) -> np.ndarray:
    """A host copy of an nnx array (a parameter's value or gradient)."""
    return np.array(to_numpy(value), copy=True)


def torch_state_dict(model: Module) -> dict[str, np.ndarray]:
    """``model``'s parameters and buffers under PyTorch's names and in PyTorch's layout, as
    host NumPy arrays (copies): what ``twin.state_dict()`` of the ``torch.nn`` twin holds.

    Hand it to PyTorch with ``twin.load_state_dict({k: torch.from_numpy(v) for k, v in
    sd.items()})``; the arrays keep the model's dtype (``float32`` by default), so load into a
    twin of the same dtype or let ``load_state_dict`` cast. A parameter shared by two modules
    is listed under each name, as PyTorch lists tied weights.

    >>> import nnx
    >>> sd = nnx.torch_state_dict(nnx.Sequential(nnx.Linear(3, 2), nnx.ReLU()))
    >>> {k: v.shape for k, v in sd.items()}
    {'0.weight': (2, 3), '0.bias': (2,)}
    """
    return {e.name: e.pack([_host(s.value) for s in e.sources]) for e in _entries(model)}


def torch_gradients(model: Module) -> dict[str, np.ndarray]:
    """The parameter gradients of ``model`` under PyTorch's names and layout (zeros where a
    parameter has no gradient): to compare with ``{n: p.grad for n, p in
    twin.named_parameters()}`` of the ``torch.nn`` twin. Buffers are left out."""
    out = {}
    for e in _entries(model):
        if all(isinstance(s, Parameter) for s in e.sources):
            grads = [np.zeros(s.shape) if s.grad is None else _host(s.grad) for s in e.sources]
            out[e.name] = e.pack(grads)
    return out


class TorchLoadResult(NamedTuple):
    """What :func:`load_torch_state_dict` did not match (empty lists under ``strict=True``):
    PyTorch names the model has but the state dict lacks, and names the model does not have."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def _tensor_to_numpy(name: str, value: Any) -> np.ndarray:
    """One state-dict value (NumPy array, torch tensor, any array nnx reads) on the host."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
        value = value.detach().cpu()  # duck typing: no torch import unless a tensor came in
        if str(value.dtype) == "torch.bfloat16":  # NumPy has no bfloat16
            value = value.float()
        return value.numpy()
    try:
        host = to_numpy(value)
    except Exception as e:  # noqa: BLE001  anything that is not an array
        raise TypeError(
            f"state dict entry {name!r} is a {type(value).__name__}, not an array: {e}"
        ) from None
    if not isinstance(host, np.ndarray) or host.dtype == object:
        raise TypeError(f"state dict entry {name!r} is a {type(value).__name__}, not an array")
    return host


def _few(keys: list[str], shown: int = 12) -> str:
    """A list of keys for a one-line message: the first ``shown``, then how many more."""
    more = len(keys) - shown
    return str(keys[:shown])[:-1] + (f", ... {more} more]" if more > 0 else "]")


def load_torch_state_dict(
    model: Module, state_dict: Mapping[str, Any] | str | os.PathLike, strict: bool = True
) -> TorchLoadResult:
    """Load a PyTorch state dict into the nnx twin ``model`` (names and layouts converted; see
    the module docstring), onto the backend and dtype the model is on now.

    ``state_dict`` is a mapping of PyTorch names to NumPy arrays or torch tensors (what
    ``twin.state_dict()`` returns), or the path of a file: ``.safetensors`` (read with the
    ``safetensors`` package, no PyTorch needed) or ``.pt``/``.pth`` (read with
    ``torch.load(path, weights_only=True, map_location="cpu")``, so no code in the file runs).

    With ``strict=True`` (the default, like PyTorch) every name must match: a ValueError lists
    the missing and unexpected keys. With ``strict=False`` the matching entries are loaded and
    the rest reported in the returned :class:`TorchLoadResult`. A shape that differs is always
    a ValueError naming the key, and so is a NaN or infinite value; nothing is changed unless
    every loaded entry fits.
    """
    if isinstance(state_dict, (str, os.PathLike)):
        state_dict = _read_weights(state_dict)
    if not isinstance(state_dict, Mapping):
        raise TypeError(
            f"expected a state dict (a mapping of names to arrays) or a file path, "
            f"got {type(state_dict).__name__}"
        )
    entries = _entries(model)
    names = {e.name for e in entries}
    missing = [e.name for e in entries if e.name not in state_dict]
    unexpected = [str(k) for k in state_dict if k not in names]
    if strict and (missing or unexpected):
        nested = [k for k in unexpected if isinstance(state_dict[k], Mapping)]
        hint = f"; {nested[0]!r} holds a mapping: pass state_dict[{nested[0]!r}]" if nested else ""
        raise ValueError(
            f"PyTorch state dict does not fit {type(model).__name__}: "
            f"missing keys {_few(missing)}, unexpected keys {_few(unexpected)}{hint}"
        )
    current = {id(item): (name, item) for name, item in model._state_entries().items()}
    state = model.state_dict()  # everything not in the file keeps its value
    for e in entries:
        if e.name not in state_dict:
            continue
        value = _tensor_to_numpy(e.name, state_dict[e.name])
        if value.dtype.kind not in "fiub":
            raise TypeError(
                f"PyTorch state dict entry {e.name!r} has dtype {value.dtype}, not a number type"
            )
        if value.dtype.kind == "f" and not np.isfinite(value).all():  # never a silent NaN model
            raise ValueError(f"PyTorch state dict entry {e.name!r} has NaN or infinite values")
        expected = e.pack([np.empty(s.shape, dtype=np.int8) for s in e.sources]).shape
        if tuple(value.shape) != tuple(expected):
            raise ValueError(
                f"PyTorch state dict entry {e.name!r} has shape {tuple(value.shape)}, "
                f"but {type(model).__name__} needs {tuple(expected)}"
            )
        for source, part in zip(e.sources, e.unpack(value), strict=True):
            state[current[id(source)][0]] = part
    model.load_state_dict(state)
    return TorchLoadResult(missing, unexpected)


def _check_suffix(path: Path, action: str) -> str:
    suffix = path.suffix.lower()
    if suffix != ".safetensors" and suffix not in _TORCH_SUFFIXES:
        raise ValueError(
            f"cannot {action} PyTorch weights {str(path)!r}: the suffix must be .safetensors, "
            f".pt or .pth, not {path.suffix or 'none'!r}"
        )
    return suffix


def _import_safetensors(path: Path) -> Any:
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError(
            f"reading or writing {str(path)!r} needs the safetensors package: {_SAFETENSORS_HINT}"
        ) from None
    return safetensors.numpy


def _import_torch(path: Path) -> Any:
    return import_torch(
        f"{str(path)!r} is a PyTorch file (use .safetensors to do without PyTorch) and"
    )


def _read_weights(path: str | os.PathLike) -> Mapping[str, Any]:
    """The state dict in a ``.safetensors`` or ``.pt``/``.pth`` file."""
    path = Path(path)
    suffix = _check_suffix(path, "read")
    reader = _import_safetensors(path) if suffix == ".safetensors" else _import_torch(path)
    if not path.is_file():
        raise NnxFileError(f"{str(path)!r}: no such file")
    if suffix == ".safetensors":
        try:
            return reader.load_file(str(path))
        except Exception as e:  # noqa: BLE001  the reader's own errors are many kinds
            raise NnxFileError(f"{str(path)!r} is not a readable .safetensors file: {e}") from None
    try:
        loaded = reader.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001
        raise NnxFileError(_torch_load_failure(path, e)) from None
    if not isinstance(loaded, Mapping):
        raise NnxFileError(
            f"{str(path)!r} holds a {type(loaded).__name__}, not a state dict "
            "(save model.state_dict(), not the model)"
        )
    return loaded


def _torch_load_failure(path: Path, e: Exception) -> str:
    """One line for a ``torch.load(weights_only=True)`` failure. PyTorch's own message is a
    paragraph with terminal escapes and advice to load with ``weights_only=False``; the
    reason sits after ``WeightsUnpickler error:``."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    reason = text.split("WeightsUnpickler error:", 1)[-1].strip()
    reason = reason.splitlines()[0].strip() if reason else type(e).__name__
    found = re.match(r"Unsupported global: GLOBAL (\S+)", reason)
    if found:  # torch.save(model) pickles the module's class, not just tensors
        return (
            f"{str(path)!r} holds pickled Python objects ({found.group(1)}), not only tensors, "
            "so torch.load(weights_only=True) does not read it: save model.state_dict() instead"
        )
    return (
        f"{str(path)!r} is not a PyTorch weights file torch.load(weights_only=True) can read: "
        f"{reason[:200]}"
    )


def save_torch_weights(model: Module, path: str | os.PathLike) -> Path:
    """Write :func:`torch_state_dict` of ``model`` to ``path`` atomically: ``.safetensors``
    (with the ``safetensors`` package, no PyTorch needed) or ``.pt``/``.pth`` (with
    ``torch.save``, when PyTorch is installed). PyTorch reads it back with
    ``safetensors.torch.load_file`` or ``torch.load``, and :func:`load_torch_state_dict` too.
    Returns the path."""
    path = Path(path)
    suffix = _check_suffix(path, "write")
    # np.array, not np.ascontiguousarray, which turns a 0-d num_batches_tracked into shape (1,)
    state = {k: np.array(v, order="C") for k, v in torch_state_dict(model).items()}
    if suffix == ".safetensors":
        data = _import_safetensors(path).save(state)
    else:
        torch = _import_torch(path)
        buffer = io.BytesIO()
        torch.save({k: torch.from_numpy(v) for k, v in state.items()}, buffer)
        data = buffer.getvalue()
    with atomic_write(path) as f:
        f.write(data)
    return path
