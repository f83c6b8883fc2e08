"""Inputs, targets and outputs that are an array, a tuple of arrays or a dict of arrays.

Multi-input and multi-output models take and return such structures; the Trainer, the data
pipeline and ``gradcheck`` walk them with these helpers. Lists count as tuples.

>>> import numpy as np
>>> leaves({"a": np.zeros(2), "b": np.ones(3)})[1][0]
'b'
>>> map_structure(lambda a: a.shape, (np.zeros(2), np.ones((3, 1))))
((2,), (3, 1))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def is_array_tuple(value: Any) -> bool:
    """True for a tuple or list (of arrays), the positional form of several inputs/outputs."""
    return isinstance(value, (tuple, list))


def leaves(value: Any) -> list[tuple[str, Any]]:
    """``[(key, array), ...]``: key ``""`` for a single array, ``"0"``, ``"1"``, ... for a
    tuple's entries and the dict's keys for a dict."""
    if isinstance(value, Mapping):
        return [(str(k), v) for k, v in value.items()]
    if is_array_tuple(value):
        return [(str(i), v) for i, v in enumerate(value)]
    return [("", value)]


def first_leaf(value: Any) -> Any:
    """The first array of a structure (its backend and sample count stand for all)."""
    if isinstance(value, Mapping):
        if not value:
            raise ValueError("an empty dict holds no arrays")
        return next(iter(value.values()))
    if is_array_tuple(value):
        if not value:
            raise ValueError("an empty tuple holds no arrays")
        return value[0]
    return value


def map_structure(fn: Callable[[Any], Any], value: Any) -> Any:
    """Apply ``fn`` to every array of ``value``, keeping its form (array, tuple or dict)."""
    if isinstance(value, Mapping):
        return {k: fn(v) for k, v in value.items()}
    if is_array_tuple(value):
        return tuple(fn(v) for v in value)
    return fn(value)


def call_with(module: Any, inputs: Any) -> Any:
    """``module(inputs)``, ``module(*inputs)`` for a tuple and ``module(**inputs)`` for a dict."""
    if isinstance(inputs, Mapping):
        return module.forward(**inputs)
    if is_array_tuple(inputs):
        return module.forward(*inputs)
    return module.forward(inputs)
