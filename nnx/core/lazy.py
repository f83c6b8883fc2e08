"""Lazy shapes: a layer built with ``None`` as its input size infers it at its first call.

``Linear(None, 64)``, ``Conv2d(None, 16, 3)``, ``BatchNorm2d(None)``, ``GroupNorm(4, None)``: one
mechanism instead of PyTorch's ``Lazy*`` classes. A layer opts in with one line,

    @lazy_input("in_features", axis=-1)
    class Linear(Module): ...

which names the constructor argument that may be None and the input axis it is read from. The
constructor then checks the other arguments (on a throwaway instance, so a seeded generator is
not drawn from) and stores them; the layer has no parameters. Its first ``forward`` reads the
size from the input, runs the real constructor with it (the same arguments, so the same random
stream: ``Linear(None, 4, rng=0)`` becomes ``Linear(3, 4, rng=0)``), records the size in the
architecture record (a saved model rebuilds eagerly) and computes. A first call that fails leaves
the layer as it was (unbuilt).

Until then the layer is *unbuilt*: listing the parameters of a model that holds one
(``parameters()``, ``state_dict()``, an optimizer, ``save_model``, ``summary``) raises
:class:`UnbuiltModuleError`, which says to call the model once (``model.build(x)``); ``to()``
and ``train()``/``eval()`` work and are remembered.
"""

from __future__ import annotations

import functools
import inspect
import types
from typing import Any

from ..io.registry import capture_init, update_init_argument

PENDING = "_lazy_pending"  # instance attribute of an unbuilt lazy layer


class UnbuiltModuleError(ValueError):
    """A lazy layer has not seen an input yet, so its parameters do not exist."""


class _Pending:
    """What an unbuilt layer needs to build itself."""

    __slots__ = ("init", "defaults", "arguments", "name", "axis")

    def __init__(self, init, defaults, arguments, name, axis):
        self.init = init  # the constructor, without Module's argument capture
        self.defaults = defaults  # argument name -> default (inspect.Parameter.empty: none)
        self.arguments = arguments
        self.name = name
        self.axis = axis


# While a layer is unbuilt these instance attributes stand in for its class's methods; building
# deletes them, so a built (or eager) layer runs its class's code with no extra call.
_HOOKS = ("forward", "extra_repr", "penalty")


def lazy_input(argument: str, axis: int, *, multiple_of: str | None = None):
    """Class decorator: ``argument`` of the constructor may be None, and is then read from axis
    ``axis`` of the first input (``multiple_of`` names an argument the size must be a multiple
    of, such as ``groups``: the constructor's checks run with that size as a stand-in).

    The class must define ``__init__`` itself; subclasses inherit the behaviour.
    """

    def decorate(cls: type) -> type:
        init = cls.__dict__["__init__"]
        raw = getattr(init, "__wrapped__", init)  # under Module's argument capture
        signature = inspect.signature(raw)
        defaults = {name: p.default for name, p in signature.parameters.items()}

        @functools.wraps(raw)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            try:
                bound = signature.bind(self, *args, **kwargs)
            except TypeError:
                bound = None  # a wrong call: the constructor raises its own error
            if bound is None or bound.arguments.get(argument, 0) is not None:
                raw(self, *args, **kwargs)
                return
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            arguments.pop(next(iter(arguments)))  # self
            stand_in = arguments.get(multiple_of) if multiple_of else None
            trial = {**arguments, argument: stand_in if _positive(stand_in) else 1}
            if "rng" in trial:
                trial["rng"] = 0  # a check only: the caller's generator is not drawn from
            try:  # the constructor's own argument checks, on a throwaway instance
                raw(object.__new__(type(self)), **trial)
            except (ValueError, TypeError) as err:
                if type(err) not in (ValueError, TypeError):
                    raise
                raise type(err)(
                    f"{err} ({argument}=None, checked with {trial[argument]} standing in)"
                ) from None
            d = self.__dict__
            d[argument] = None
            d[PENDING] = _Pending(raw, defaults, arguments, argument, axis)
            for name, hook in zip(_HOOKS, (_lazy_forward, _pending_repr, _no_penalty), strict=True):
                d[name] = types.MethodType(hook, self)

        cls.__init__ = capture_init(__init__)
        return cls

    return decorate


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _lazy_forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    """The first call: build with the size read from ``x``, then the class's forward."""
    d = self.__dict__
    if PENDING not in d:  # a stale reference to this hook (kept by a caller): already built
        return type(self).forward(self, x, *args, **kwargs)
    before = dict(d)
    try:
        pending = _build(self, x)
        out = type(self).forward(self, x, *args, **kwargs)
    except Exception:
        d.clear()  # not built after all: a wrong first input decides nothing
        d.update(before)
        raise
    update_init_argument(self, pending.name, d[pending.name])
    return out


def _no_penalty(module: Any) -> None:
    return None


def _pending_repr(module: Any) -> str:
    pending = module.__dict__[PENDING]
    shown = []
    for name, value in pending.arguments.items():
        default = pending.defaults[name]
        if name == pending.name or default is inspect.Parameter.empty:
            shown.append(f"{name}={value!r}")
        elif name != "rng" and value != default:
            shown.append(f"{name}={value!r}")
    return ", ".join(shown)


def describe(module: Any) -> str:
    """``Linear(in_features=None, out_features=4)``: an unbuilt layer, for messages."""
    return f"{type(module).__name__}({_pending_repr(module)})"


def is_pending(module: Any) -> bool:
    """Whether ``module`` is a lazy layer that has not seen an input yet."""
    return PENDING in module.__dict__


def unbuilt_error(module: Any, path: str) -> UnbuiltModuleError:
    """The one-line error for listing the parameters of a model holding an unbuilt layer."""
    pending = module.__dict__[PENDING]
    where = f" (at {path!r})" if path else ""
    return UnbuiltModuleError(
        f"{describe(module)}{where} infers {pending.name} at its first call and has no "
        "parameters yet: call the model once on an example input (model.build(x)) before "
        "listing its parameters, building an optimizer, saving it or printing a summary"
    )


def move_pending(module: Any, backend: Any, dtype: Any) -> None:
    """``Module.to`` on an unbuilt layer: the parameters will be created there."""
    arguments = module.__dict__[PENDING].arguments
    if backend is not None and "device" in arguments:
        arguments["device"] = backend
    if dtype is not None and "dtype" in arguments:
        arguments["dtype"] = dtype


def _build(module: Any, x: Any) -> _Pending:
    """Run the real constructor with the size read from ``x``."""
    pending = module.__dict__[PENDING]
    shape = tuple(getattr(x, "shape", ()))
    if not -len(shape) <= pending.axis < len(shape) or len(shape) == 0:
        raise ValueError(
            f"{describe(module)}: cannot infer {pending.name} from axis {pending.axis} of an "
            f"input of shape {shape}"
        )
    size = int(shape[pending.axis])
    for name in (PENDING, *_HOOKS):
        module.__dict__.pop(name, None)
    pending.init(module, **{**pending.arguments, pending.name: size})
    return pending
