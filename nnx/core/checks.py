"""Input checks shared by layers and losses: clear errors instead of deep library tracebacks.

Each check is a few attribute reads (shape, dtype, device); none touches array data, so none
forces a host/device synchronisation. The label ranges a DataLoader records
(:func:`remember_label_range`) let a loss skip reading its labels back.
"""

from __future__ import annotations

import math
import numbers
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from ..backend import device, namespace, same_device, to_numpy

# a layer's name in messages, or a function making it (built only when a check fails)
Who = str | Callable[[], str]


class BackwardBeforeForwardError(RuntimeError, ValueError):
    """``backward`` was called on a module that has not run ``forward`` yet."""


def positive_int(value: Any, name: str, who: str) -> int:
    """``value`` as an int, or a ValueError naming it when it is not a positive integer."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{who}: {name} must be a positive integer, got {value!r}")
    return int(value)


def _is_finite_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def real_in_range(
    value: Any,
    name: str,
    who: str,
    low: float = 0.0,
    high: float = math.inf,
    high_open: bool = False,
) -> float:
    """``value`` as a float in ``[low, high]`` (``[low, high)`` with ``high_open``), else ValueError."""
    ok = _is_finite_real(value) and low <= value and (value < high if high_open else value <= high)
    if not ok:
        interval = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{who}: {name} must be a finite number in {interval}, got {value!r}")
    return float(value)


def non_negative(value: Any, name: str, who: str) -> float:
    """``value`` as a float, or a ValueError naming it when it is not a finite number >= 0."""
    if not (_is_finite_real(value) and value >= 0):
        raise ValueError(f"{who}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def article(word: str) -> str:
    """``"a"`` or ``"an"`` for ``word`` as read aloud: an Adam, an SGD, an RMSprop, a StepLR.

    >>> [f"{article(w)} {w}" for w in ("Adam", "SGD", "RMSprop", "StepLR", "Linear")]
    ['an Adam', 'an SGD', 'an RMSprop', 'a StepLR', 'a Linear']
    """
    if word[:1].lower() in "aeiou":
        return "an"
    spelled = len(word) > 1 and word[:2].isupper()  # an acronym: its letters are read out
    return "an" if spelled and word[0] in "FHLMNRSX" else "a"


def dtype_name(dtype: Any) -> str:
    """A short dtype name for messages (``float32``, not ``torch.float32``)."""
    return str(dtype).rsplit(".", 1)[-1]


_NARROW = ("float16", "bfloat16")
_IS_NARROW: dict[Any, bool] = {}


def is_narrow(dtype: Any) -> bool:
    """Whether ``dtype`` is a 16-bit float (float16, bfloat16), remembered per dtype."""
    key = (type(dtype), dtype)
    try:
        return _IS_NARROW[key]
    except KeyError:
        result = _IS_NARROW[key] = dtype_name(dtype) in _NARROW
        return result
    except TypeError:  # an unhashable dtype
        return dtype_name(dtype) in _NARROW


def widened(xp: Any, x: Any) -> Any:
    """``x`` in float32 when it is a 16-bit float (float16, bfloat16), else ``x`` itself: sums,
    counts and means over many elements accumulate in at least float32 (a float16 sum passes
    its largest value, 65504, at 65,505 ones)."""
    return xp.astype(x, xp.float32) if is_narrow(x.dtype) else x


def equals_int(xp: Any, labels: Any, value: int) -> Any:
    """``labels == value`` for integer ``labels``; all False where ``value`` lies outside the
    labels' dtype (``uint8 == -100``: array-api-strict raises OverflowError on the plain
    comparison, NumPy 2 on some versions)."""
    info = xp.iinfo(labels.dtype)
    if info.min <= value <= info.max:
        return labels == value
    return xp.zeros(labels.shape, dtype=xp.bool, device=device(labels))


def indexable_labels(xp: Any, labels: Any, num_classes: int) -> Any:
    """Integer ``labels`` in a dtype that holds every class index ``0 .. num_classes - 1``
    (``uint8`` labels of 300 classes compare against ``arange(300)`` in int32)."""
    if num_classes - 1 <= _largest_int(xp, labels.dtype):
        return labels
    return xp.astype(labels, xp.int32 if num_classes <= 2**31 else xp.int64)


_LARGEST_INT: dict[Any, int] = {}


def _largest_int(xp: Any, dtype: Any) -> int:
    """``xp.iinfo(dtype).max``, remembered per dtype."""
    key = (type(dtype), dtype)
    try:
        return _LARGEST_INT[key]
    except KeyError:
        result = _LARGEST_INT[key] = int(xp.iinfo(dtype).max)
        return result
    except TypeError:  # an unhashable dtype
        return int(xp.iinfo(dtype).max)


_FLOATING: dict[Any, bool] = {}


def _is_floating(xp: Any, dtype: Any) -> bool:
    """``xp.isdtype(dtype, "real floating")``, remembered per dtype (it runs on every layer call)."""
    key = (type(dtype), dtype)  # the type first: dtypes of two libraries are never compared
    try:
        return _FLOATING[key]
    except KeyError:
        result = _FLOATING[key] = bool(xp.isdtype(dtype, "real floating"))
        return result
    except TypeError:  # an unhashable dtype
        return bool(xp.isdtype(dtype, "real floating"))


_KINDS: dict[Any, bool] = {}


def is_dtype(xp: Any, dtype: Any, kind: str) -> bool:
    """``xp.isdtype(dtype, kind)``, remembered per dtype and kind (losses ask on every call)."""
    key = (type(dtype), dtype, kind)
    try:
        return _KINDS[key]
    except KeyError:
        result = _KINDS[key] = bool(xp.isdtype(dtype, kind))
        return result
    except TypeError:  # an unhashable dtype
        return bool(xp.isdtype(dtype, kind))


def _name(who: Who) -> str:
    """The layer's name for a message: ``who`` itself, or what it returns when it is a function
    (hot layers pass their ``_who`` method, so the name is only built for an error)."""
    return who() if callable(who) else who


def check_floating(xp: Any, x: Any, who: Who, what: str = "input") -> None:
    """Raise TypeError unless ``x`` has a real floating dtype."""
    if not _is_floating(xp, x.dtype):
        raise TypeError(
            f"{_name(who)}: {what} must be a floating-point array, got dtype {dtype_name(x.dtype)}; "
            f"cast it first, e.g. xp.astype(x, xp.float32)"
        )


def check_same_dtype(
    x: Any, ref: Any, who: Who, what: str = "input", ref_what: str = "parameters"
) -> None:
    """Raise TypeError when ``x`` and ``ref`` differ in dtype (no silent promotion), or are
    arrays of different libraries (a NumPy input to a model on array-api-strict or torch)."""
    if type(x) is not type(ref) and _library(x) != _library(ref):
        raise TypeError(
            f"{_name(who)}: the {what} is a {_library(x)} array but the {ref_what} are {_library(ref)} "
            f"arrays; convert the {what} with nnx.get_backend(...).asarray(...) or move the "
            f"module with .to(...)"
        )
    if x.dtype != ref.dtype:
        raise TypeError(
            f"{_name(who)}: {what} dtype {dtype_name(x.dtype)} does not match the {ref_what}' dtype "
            f"{dtype_name(ref.dtype)}; cast the {what} or move the module with .to(dtype=...)"
        )


def _library(x: Any) -> str:
    """``numpy``, ``torch``, ``array_api_strict``, ...: the library an array belongs to."""
    return type(x).__module__.split(".", 1)[0]


def check_same_device(
    x: Any, ref: Any, who: Who, what: str = "input", ref_what: str = "parameters"
) -> None:
    """Raise ValueError when ``x`` and ``ref`` live on different devices."""
    if same_device(x, ref):
        return
    dx, dr = device(x), device(ref)
    if dx != dr:
        raise ValueError(
            f"{_name(who)}: {what} is on device {dx!r} but the {ref_what} are on {dr!r}; "
            f"move one of them (backend.asarray(...) or module.to(...))"
        )


def check_grad(grad: Any, expected_shape: tuple, who: Who) -> None:
    """Raise ValueError when an upstream gradient's shape differs from the forward output's."""
    shape = tuple(getattr(grad, "shape", ()))
    if shape != tuple(expected_shape):
        raise ValueError(
            f"{_name(who)}.backward: gradient has shape {shape} but the forward output had shape "
            f"{tuple(expected_shape)}"
        )


def require_forward(cached: Any, who: Who) -> Any:
    """Return what forward cached, or raise :class:`BackwardBeforeForwardError`."""
    if cached is None:
        raise BackwardBeforeForwardError(
            f"{_name(who)}.backward called before forward: run forward first"
        )
    return cached


# Label arrays whose smallest and largest values are known without reading them: batches a
# DataLoader cut from a data set's labels, whose range is read once per data set (on the first
# request: nothing is read when no loss asks, as under the Trainer, which checks the labels
# itself). A loss that finds its labels here need not read them back (two reductions and, on a
# GPU, a device synchronisation per batch); any other array, such as a batch the user made, is
# checked as it comes. Weak references to the last few batches only (those in flight).
class LabelRange:
    """The smallest and largest value of the integer array ``labels``, read on first request."""

    __slots__ = ("labels", "_range")

    def __init__(self, labels: Any):
        self.labels = labels
        self._range: tuple[int, int] | None = None

    def get(self) -> tuple[int, int]:
        if self._range is None:
            xp = namespace(self.labels)
            ends = to_numpy(xp.stack([xp.min(self.labels), xp.max(self.labels)]))
            self._range = (int(ends[0]), int(ends[1]))
        return self._range


_KNOWN_RANGES: deque[tuple[Any, LabelRange]] = deque(maxlen=16)


def remember_label_range(batch: Any, source: LabelRange) -> None:
    """Record that ``batch`` (fresh labels cut from ``source.labels``) lies in its range."""
    try:
        ref = weakref.ref(batch)
    except TypeError:  # an array type without weak references: the loss checks it itself
        return
    _KNOWN_RANGES.append((ref, source))


def known_label_range(labels: Any) -> tuple[int, int] | None:
    """``(lo, hi)`` of the data set this very array was cut from
    (:func:`remember_label_range`), else None."""
    for ref, source in reversed(tuple(_KNOWN_RANGES)):  # a copy: a prefetch thread may append
        if ref() is labels:
            return source.get()
    return None
