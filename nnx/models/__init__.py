"""Model presets and user-supplied model builders.

A *builder* is a function ``build(input_shape, num_classes, **options) -> nnx.Module``:
``input_shape`` is the shape of one sample (``(64,)``, ``(1, 8, 8)``, ...), ``num_classes`` the
units of the last layer. :data:`PRESETS` maps the built-in names to their builders; the training
command's ``--model`` takes one of these names or ``package.module:function`` naming the user's
own builder (:func:`resolve_builder`). :func:`generate` draws text from a trained
character-level language model. This package builds models; training is the Trainer's job.

>>> import nnx
>>> model = nnx.models.build_model("mlp", (4,), 3, hidden=[8])
>>> model
Sequential(
  (0): Linear(in_features=4, out_features=8, bias=True)
  (1): ReLU()
  (2): Linear(in_features=8, out_features=3, bias=True)
)
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from ..core.module import Module
from . import cnn, lstm, mlp, transformer
from .generation import generate

Builder = Callable[..., Module]

# One line per preset; the layer issues add theirs here.
PRESETS: dict[str, Builder] = {
    "mlp": mlp.build,
    "cnn": cnn.build,
    "transformer": transformer.build,
    "lstm": lstm.build,
}


class ModelSpecError(ValueError):
    """A model spec names no preset and no importable ``package.module:function``, or its
    builder failed. Messages start with ``model=<spec>``; ``spec`` holds the spec (the training
    command rewords that start as its flag)."""

    def __init__(self, message: str, spec: Any = None):
        super().__init__(message)
        self.spec = spec


def get_preset(name: str) -> Builder:
    """The builder registered under ``name`` in :data:`PRESETS`."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ModelSpecError(
            f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)} "
            "or give package.module:function",
            name,
        ) from None


def resolve_builder(spec: str) -> Builder:
    """A preset name, or ``package.module:function`` imported from ``sys.path`` (the current
    folder is searched too, as ``python -m`` does)."""
    if not isinstance(spec, str) or not spec:
        raise ModelSpecError(
            f"model must be a preset name or package.module:function, got {spec!r}", spec
        )
    if ":" not in spec:
        return get_preset(spec)
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ModelSpecError(f"model={spec!r}: expected package.module:function", spec)
    added = os.getcwd() not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ModelSpecError(f"model={spec!r}: cannot import {module_name} ({err})", spec) from None
    except Exception as err:  # the user's module failed while importing
        raise ModelSpecError(
            f"model={spec!r}: importing {module_name} failed ({type(err).__name__}: {err})", spec
        ) from None
    finally:
        if added:
            sys.path.remove(os.getcwd())
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ModelSpecError(f"model={spec!r}: {module_name} has no attribute {attr!r}", spec)
        target = getattr(target, part)
    if not callable(target):
        raise ModelSpecError(
            f"model={spec!r}: {attr} is a {type(target).__name__}, not a function", spec
        )
    return target


def accepted_options(builder: Builder, options: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``options`` that ``builder`` takes as keyword arguments (all of them when
    it takes ``**options``)."""
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    keywords = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {k: v for k, v in options.items() if k in params and params[k].kind in keywords}


def build_model(
    spec: str | Builder, input_shape: tuple[int, ...], num_classes: int, **options: Any
) -> Module:
    """Call the builder named by ``spec`` and check that it returned an :class:`nnx.Module`.

    Errors (unknown preset, failed import, a builder that raises or returns something else) are
    :class:`ModelSpecError` with a one-line message.
    """
    builder = resolve_builder(spec) if isinstance(spec, str) else spec
    name = spec if isinstance(spec, str) else getattr(spec, "__name__", repr(spec))
    try:
        model = builder(tuple(input_shape), int(num_classes), **options)
    except Exception as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ModelSpecError(
            f"model={name!r} failed to build the model for input shape {tuple(input_shape)} "
            f"and {num_classes} outputs ({type(err).__name__}: {message})",
            name,
        ) from None
    if not isinstance(model, Module):
        raise ModelSpecError(
            f"model={name!r} returned {type(model).__name__}, not an nnx.Module", name
        )
    return model


__all__ = [
    "PRESETS",
    "Builder",
    "ModelSpecError",
    "accepted_options",
    "build_model",
    "generate",
    "get_preset",
    "resolve_builder",
]
