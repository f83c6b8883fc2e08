"""Module classes by name, and the constructor arguments each module was created with.

Both serve :func:`nnx.save_model` / :func:`nnx.load_model`. ``Module.__init_subclass__`` calls
:func:`capture_init` and :func:`register_builtin` for every subclass, so no layer writes code for
either: every class defined inside the ``nnx`` package is registered under its class name, and
creating any module remembers the arguments of its outermost constructor call. Classes defined
elsewhere join with the ``nnx.register_module`` decorator (in :mod:`nnx.core.module`, which
checks that the class is a Module and calls :func:`register`). This module imports nothing from
nnx but its error class: the module classes import it, never the other way.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from .errors import NnxFileError

_REGISTRY: dict[str, type] = {}
_ARGS = "_nnx_init_args"  # instance attribute: (the __init__ function, its bound arguments)


ModelFileError = NnxFileError  # the name model files have always raised


def register(cls: type, name: str | None = None) -> type:
    """Record ``cls`` under ``name`` (default: its class name) for :func:`lookup`.

    The caller has checked that ``cls`` is a module class (:func:`nnx.register_module` does);
    this table only stores classes. Registering another class under a name already taken raises
    ValueError; registering the same class again (a re-imported module) is allowed.
    """
    key = cls.__name__ if name is None else name
    if not isinstance(key, str) or not key:
        raise ValueError(f"register_module: name must be a non-empty string, got {key!r}")
    known = _REGISTRY.get(key)
    if known is not None and known is not cls and _origin(known) != _origin(cls):
        raise ValueError(
            f"register_module: the name {key!r} is already taken by "
            f"{_origin(known)}; pass name= to register {_origin(cls)} under another"
        )
    _REGISTRY[key] = cls
    cls._nnx_registered_name = key  # type: ignore[attr-defined]
    return cls


def register_builtin(cls: type) -> None:
    """Register ``cls`` when it is defined inside the ``nnx`` package (and is public)."""
    if (
        cls.__module__ == "nnx" or cls.__module__.startswith("nnx.")
    ) and not cls.__name__.startswith("_"):
        register(cls)


def registered_modules() -> dict[str, type]:
    """Registered name -> class, sorted by name."""
    return dict(sorted(_REGISTRY.items()))


def registered_name(cls: type) -> str | None:
    """The name ``cls`` itself is registered under (not inherited from a registered parent)."""
    name = cls.__dict__.get("_nnx_registered_name")
    return name if name is not None and _REGISTRY.get(name) is cls else None


def lookup(name: str, where: str) -> type:
    """The class registered as ``name``; the error lists every registered name."""
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ModelFileError(
            f"{where}: module type {name!r} is not registered; registered: "
            f"{', '.join(registered_modules())}. Import the code that defines it, with the class "
            "decorated by @nnx.register_module, before loading"
        )
    return cls


def _origin(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@functools.cache
def signature(init: Callable[..., None]) -> inspect.Signature:
    return inspect.signature(init)


def capture_init(init: Callable[..., None]) -> Callable[..., None]:
    """Wrap a Module subclass's ``__init__`` so that the outermost call records its arguments,
    bound to the signature with defaults filled in, on the instance."""
    if getattr(init, "_nnx_captures", False):
        return init

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if _ARGS not in self.__dict__:
            try:
                bound = signature(init).bind(self, *args, **kwargs)
            except TypeError:
                bound = None  # a wrong call: __init__ raises its own error just below
            if bound is not None:
                bound.apply_defaults()
                arguments = dict(bound.arguments)
                arguments.pop(next(iter(arguments)))  # self
                self.__dict__[_ARGS] = (init, arguments)
        init(self, *args, **kwargs)

    __init__._nnx_captures = True  # type: ignore[attr-defined]
    return __init__


def init_arguments(module: Any) -> tuple[inspect.Signature | None, dict[str, Any]]:
    """``(signature, arguments)`` of ``module``'s constructor call; ``(None, {})`` when its class
    defines no ``__init__``."""
    recorded = module.__dict__.get(_ARGS)
    if recorded is None:
        return None, {}
    init, arguments = recorded
    return signature(init), dict(arguments)


def update_init_argument(module: Any, name: str, value: Any) -> None:
    """Change one recorded constructor argument of ``module`` (a lazy layer records the input size
    it inferred at its first call, so that a saved model rebuilds with it); no-op when the
    outermost constructor call had no argument ``name``."""
    recorded = module.__dict__.get(_ARGS)
    if recorded is not None and name in recorded[1]:
        recorded[1][name] = value
