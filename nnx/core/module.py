"""Parameters, buffers, the Module base class and Sequential.

A module computes ``forward(x)``, caching what its ``backward`` needs, and
``backward(grad_out)`` returns the gradient with respect to its input while **adding** each
parameter's gradient into ``param.grad`` (PyTorch semantics: ``zero_grad()`` clears them, so
gradients of several backward passes, or of a parameter shared by several modules, sum up).
Parameters, buffers and sub-modules are found by looking at the module's attributes, in the order
they were assigned; an object reachable along several paths (weight tying) is listed once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import numpy as np

from ..backend import Backend, backend_of, get_backend, to_numpy
from ..io.registry import capture_init, register, register_builtin
from .calls import (
    backward_flags,
    capture_call_state,
    restore_call_state,
    restore_final_state,
)
from .checks import dtype_name
from .lazy import PENDING, move_pending, unbuilt_error

# attribute types that are never a Parameter or a Module (exact types: zero_grad skips them)
_PLAIN = frozenset({bool, int, float, str, type(None), tuple, list, dict, set, frozenset})


class _NamedArray:
    """An array (``value``) with the attribute ``name`` it has in its module."""

    __slots__ = ("value", "name")

    def __init__(self, value: Any, name: str | None = None):
        self.value = value
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)

    @property
    def dtype(self) -> Any:
        return self.value.dtype

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, shape={self.shape}, dtype={self.dtype})"


class Parameter(_NamedArray):
    """A trainable array: ``value`` (the array) and ``grad`` (set by ``backward``, else None)."""

    __slots__ = ("grad",)

    def __init__(self, value: Any, name: str | None = None):
        super().__init__(value, name)
        self.grad: Any = None

    def accumulate(self, grad: Any) -> None:
        """Add ``grad`` into ``self.grad`` (set it when there is none yet).

        Every ``backward`` stores parameter gradients through this, so a parameter used twice in
        one forward pass, or shared by two modules, receives the sum of its gradients.
        """
        # A new array, never ``+=``: the first gradient may be an array the layer also uses
        # elsewhere (its grad_out, say), which must not change under it.
        self.grad = grad if self.grad is None else self.grad + grad


class Buffer(_NamedArray):
    """A non-trainable array that belongs to a module's state (BatchNorm's running statistics).

    Buffers are saved by ``state_dict`` and checkpoints and moved by ``Module.to`` (floating
    buffers take the new dtype, integer ones keep theirs), but optimizers never see them.
    Rebind ``value`` to update one (``buf.value = buf.value * m + ...``), which works on every
    backend, immutable JAX arrays included.
    """

    __slots__ = ()


class Symbolic:
    """Base of symbolic values (:mod:`nnx.core.graph`): calling a module on one records a graph
    node instead of computing.

    ``Module.__call__`` hands such a call to :meth:`record_call` of the symbolic argument, so
    this module does not import the graph code (the graph imports it).
    """

    __slots__ = ()

    def record_call(self, module: Module, inputs: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Record ``module(*inputs, **kwargs)`` and return the symbolic output."""
        raise NotImplementedError(f"{type(self).__name__} does not implement record_call")


class Module:
    """Base class of layers, containers and losses.

    Subclasses implement ``forward`` and ``backward`` and assign their :class:`Parameter` and
    sub-module attributes in ``__init__``; everything else (parameter discovery, moving between
    backends, state dicts, train/eval mode) comes from here.
    """

    training: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Remember every instance's constructor arguments and register nnx's own classes, so
        # that nnx.save_model can describe any model without per-layer code (nnx/io/registry.py).
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = capture_init(cls.__dict__["__init__"])
        register_builtin(cls)

    def __call__(self, *inputs: Any, **kwargs: Any) -> Any:
        for value in inputs:
            if isinstance(value, Symbolic):  # building an nnx.Graph
                return value.record_call(self, inputs, kwargs)
        return self.forward(*inputs, **kwargs)

    def forward(self, x: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_out: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    # ------------------------------------------------------------------ structure
    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct sub-modules with their attribute names."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module (name ``prefix``) and every sub-module with its dotted name, depth first;
        a module reachable along several paths is listed once, under its first name."""
        seen: set[int] = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{n}" if name else n, c) for n, c in module.named_children()]
            stack.extend(reversed(children))

    def modules(self) -> Iterator[Module]:
        """This module and every sub-module, depth first, each once."""
        for _, module in self.named_modules():
            yield module

    def _named_members(
        self, kind: type, prefix: str, unbuilt_ok: bool = False
    ) -> Iterator[tuple[str, Any]]:
        seen: set[int] = set()
        for path, module in self.named_modules():
            if PENDING in module.__dict__ and not unbuilt_ok:  # a lazy layer before its first call
                raise unbuilt_error(module, prefix + path)
            for name, value in vars(module).items():
                if isinstance(value, kind) and id(value) not in seen:
                    seen.add(id(value))
                    yield prefix + (f"{path}.{name}" if path else name), value

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Every parameter with its dotted name (``"0.weight"``), in assignment order; a shared
        parameter is listed once, under its first name. Raises
        :class:`~nnx.core.lazy.UnbuiltModuleError` while a lazy layer (``Linear(None, 64)``) has
        not seen an input: call the model once first (:meth:`build`)."""
        return self._named_members(Parameter, prefix)

    def parameters(self) -> Iterator[Parameter]:
        """Every parameter, in the order of :meth:`named_parameters`."""
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, Buffer]]:
        """Every :class:`Buffer` with its dotted name, like :meth:`named_parameters`."""
        return self._named_members(Buffer, prefix)

    def buffers(self) -> Iterator[Buffer]:
        """Every buffer, in the order of :meth:`named_buffers`."""
        for _, b in self.named_buffers():
            yield b

    def zero_grad(self) -> None:
        """Forget every parameter's gradient."""
        # the walk of named_modules without the names: it runs on every training step
        seen: set[int] = set()
        stack: list[Any] = [self]
        while stack:
            module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            for value in vars(module).values():
                # plain attributes (sizes, flags, tuples) are neither: one set look-up each
                if type(value) in _PLAIN or not isinstance(value, (Parameter, Module)):
                    continue
                if isinstance(value, Parameter):
                    value.grad = None
                else:
                    stack.append(value)

    def build(self, *inputs: Any, **kwargs: Any) -> Module:
        """Run one forward pass on example inputs in evaluation mode (each module's mode is put
        back afterwards) and return the module: lazy layers (``Linear(None, 64)``) infer their
        input sizes and create their parameters, so an optimizer can be built from
        ``parameters()``. Running statistics and random generators are not touched."""
        modes = [(m, m.training) for m in self.modules()]
        self.eval()
        try:
            self(*inputs, **kwargs)
        finally:
            for m, mode in modes:
                m.training = mode
        return self

    def penalty(self) -> Any:
        """This module's own regularization term (a 0-d array), or None when it has none."""
        return None

    def regularization_loss(self) -> Any:
        """Sum of every sub-module's :meth:`penalty` (0.0 when none has one); add it to the
        reported loss. The matching gradients are added by each layer's ``backward``."""
        total: Any = 0.0
        for m in self.modules():
            term = m.penalty()
            if term is not None:
                total = total + term
        return total

    def train(self, mode: bool = True) -> Module:
        """Set training mode (``mode=True``) or evaluation mode on this module and its children."""
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode: dropout off. Same as ``train(False)``."""
        return self.train(False)

    # ------------------------------------------------------------------ placement
    def to(self, backend: str | Backend | None = None, dtype: Any = None) -> Module:
        """Move every parameter to ``backend`` (a spec or Backend) and/or cast it to ``dtype``.

        Returns the module itself. Gradients are dropped (they belong to the old placement); an
        optimizer's state follows each parameter at the optimizer's next ``step()``.
        """
        target = None if backend is None else get_backend(backend)
        for m in self.modules():
            if PENDING in m.__dict__:  # an unbuilt lazy layer: its parameters will be made there
                move_pending(m, target, dtype)
        for _, p in self._named_members(Parameter, "", unbuilt_ok=True):
            dest = target or backend_of(p.value)
            if dest.owns(p.value):
                if dtype is not None and p.value.dtype != dest.dtype(dtype):
                    p.value = dest.xp.astype(p.value, dest.dtype(dtype))
            else:
                p.value = dest.asarray(
                    p.value, dtype=dtype if dtype is not None else dtype_name(p.value.dtype)
                )
            p.grad = None
        for _, b in self._named_members(Buffer, "", unbuilt_ok=True):
            dest = target or backend_of(b.value)
            floating = backend_of(b.value).xp.isdtype(b.value.dtype, "real floating")
            cast = dtype if dtype is not None and floating else dtype_name(b.value.dtype)
            if not dest.owns(b.value) or b.value.dtype != dest.dtype(cast):
                b.value = dest.asarray(to_numpy(b.value), dtype=cast)
        return self

    # ------------------------------------------------------------------ state
    def _state_entries(self) -> dict[str, Parameter | Buffer]:
        return {**dict(self.named_parameters()), **dict(self.named_buffers())}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Dotted parameter and buffer names -> host NumPy copies of their values."""
        return {
            name: np.array(to_numpy(entry.value), copy=True)
            for name, entry in self._state_entries().items()
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> Module:
        """Load values saved by :meth:`state_dict` onto the backend/dtype the module is on now.

        Raises ValueError naming missing or unexpected keys and any shape mismatch; nothing is
        changed unless every entry fits.
        """
        params = self._state_entries()
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        if missing or unexpected:
            raise ValueError(
                f"state dict does not fit {type(self).__name__}: "
                f"missing keys {missing}, unexpected keys {unexpected}"
            )
        new_values = {}
        for name, p in params.items():
            host = to_numpy(state[name])
            if tuple(host.shape) != p.shape:
                raise ValueError(
                    f"state dict entry {name!r} has shape {tuple(host.shape)}, "
                    f"but the module's entry has shape {p.shape}"
                )
            new_values[name] = backend_of(p.value).asarray(host, dtype=p.value.dtype, copy=True)
        for name, p in params.items():
            p.value = new_values[name]
            if isinstance(p, Parameter):
                p.grad = None
        return self

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        """The arguments shown inside this module's parentheses in ``repr``."""
        return ""

    def summary(self, input_shape: Any = None, *, dtype: Any = None) -> None:
        """Print the table of :func:`nnx.summary` (layers, output shapes, parameter counts) for
        samples of ``input_shape``, as Keras' ``model.summary()`` does; returns None, so a REPL
        shows the table once. ``nnx.summary(model, input_shape)`` returns it as a string.
        Without ``input_shape``, a model that starts with ``Standardize`` or ``Linear`` gives
        its own (a trained run's model does)."""
        if _SUMMARY_TABLE is None:  # pragma: no cover - nnx imports nnx.core.summary
            raise RuntimeError("Module.summary needs nnx.core.summary; import nnx first")
        print(_SUMMARY_TABLE(self, input_shape, dtype=dtype))

    def __repr__(self) -> str:
        children = list(self.named_children())
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)


# nnx.core.summary.summary, which imports this module and so registers itself here
# (set_summary_table) rather than being imported by it: no import cycle.
_SUMMARY_TABLE: Any = None


def set_summary_table(table: Any) -> None:
    """Let :meth:`Module.summary` print the tables of ``table`` (``nnx.summary``)."""
    global _SUMMARY_TABLE
    _SUMMARY_TABLE = table


M = TypeVar("M", bound=type)


def register_module(cls: M | None = None, *, name: str | None = None) -> Any:
    """Class decorator: let :func:`nnx.load_model` rebuild instances of ``cls`` by ``name``
    (default: the class name).

    >>> import nnx
    >>> @nnx.register_module
    ... class Scale(nnx.Module):
    ...     def __init__(self, factor: float = 2.0):
    ...         self.factor = factor
    ...     def forward(self, x):
    ...         return x * self.factor
    ...     def backward(self, g):
    ...         return g * self.factor
    >>> nnx.module_config(Scale(3.0))
    {'type': 'Scale', 'args': {'factor': 3.0}}

    Registering another class under a name already taken raises ValueError; pass ``name=`` to
    pick a different one. Registering the same class again (a re-imported module) is allowed.
    """

    def decorate(klass: M) -> M:
        if not (isinstance(klass, type) and issubclass(klass, Module)):
            raise TypeError(f"register_module: {klass!r} is not an nnx.Module subclass")
        return register(klass, name)

    return decorate if cls is None else decorate(cls)


class Sequential(Module):
    """Modules applied in order; ``backward`` runs them in reverse.

    A layer that returns a tuple passes it on as several inputs of the next layer, and
    ``Sequential(a, b)(x1, x2)`` hands both inputs to ``a``; gradients mirror that (a tuple of
    gradients for a tuple output). A module may appear several times (``Sequential(lin, act,
    lin)``): the state each call cached is kept, so every call gets its own backward and the
    shared parameters receive the sum of their gradients.

    >>> import nnx
    >>> model = nnx.Sequential(nnx.Linear(4, 8, rng=0), nnx.ReLU(), nnx.Linear(8, 2, rng=1))
    >>> [name for name, _ in model.named_parameters()]
    ['0.weight', '0.bias', '2.weight', '2.bias']
    """

    def __init__(self, *layers: Module):
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(
                    f"Sequential: argument {i} must be an nnx.Module, got {type(layer).__name__}"
                )
            setattr(self, str(i), layer)
        self._layers = tuple(layers)
        self._reused = reused_positions(layers, "Sequential")
        self._first_trainable = next(
            (i for i, layer in enumerate(layers) if _trainable(layer)), len(layers)
        )
        self._states: list[Any] | None = None

    def __len__(self) -> int:
        return len(self._layers)

    def __getitem__(self, index: int) -> Module:
        return self._layers[index]

    def __iter__(self) -> Iterator[Module]:
        return iter(self._layers)

    def forward(self, *inputs: Any) -> Any:
        x: Any = inputs[0] if len(inputs) == 1 else inputs
        reused = self._reused
        states: list[Any] | None = [None] * len(self._layers) if reused else None
        for i, layer in enumerate(self._layers):
            x = layer.forward(*x) if type(x) is tuple else layer.forward(x)
            if states is not None and i in reused:  # this module runs again: keep this call's cache
                states[i] = capture_call_state(layer)
        self._states = states
        return x

    def backward(self, grad_out: Any, need_input_grad: bool = False) -> Any:
        """Run every layer's backward in reverse; returns ``dL/dx`` when ``need_input_grad``.

        A container is usually the model, whose input is the data: by default nobody needs
        ``dL/dx``, so the layers before the first one with parameters are skipped, that layer is
        asked not to compute its input gradient (see :func:`call_backward`) and None is
        returned. Pass ``need_input_grad=True`` to get ``dL/dx`` (saliency maps, adversarial
        inputs); containers ask their children for it wherever it is used.
        """
        layers, states = self._layers, self._states
        first = 0 if need_input_grad else self._first_trainable
        flags = self.__dict__.get("_takes_flag")  # once per layer list (backward_flags)
        if flags is None or flags[0] is not layers:
            flags = self._takes_flag = (layers, *backward_flags(layers))
        _, takes, fresh, overwrites = flags
        # grad_out is a new array of the layer above that nothing else holds (never the caller's
        # own): a layer that offers to may compute its dL/dx in its memory (ReLU: Linear's
        # dL/dx, masked in place, without a second array of its size)
        owned = False
        for i in range(len(layers) - 1, first - 1, -1):
            if states is not None and states[i] is not None:
                restore_call_state(states[i])
            need = need_input_grad or i > first
            if takes[i]:  # call_backward, inlined
                grad_out = layers[i].backward(grad_out, need_input_grad=need)
            else:
                if owned and overwrites[i]:
                    grad_in = layers[i].backward(grad_out, overwrite_grad=True)
                else:
                    grad_in = layers[i].backward(grad_out)
                grad_out = grad_in if need else None
            owned = fresh[i]
        if states is not None:
            restore_final_state(states)
        return grad_out if need_input_grad else None


def _trainable(module: Module) -> bool:
    """Whether ``module`` has parameters, or will have (it holds an unbuilt lazy layer)."""
    return any(PENDING in m.__dict__ for m in module.modules()) or (
        next(module._named_members(Parameter, ""), None) is not None
    )


def reused_positions(children: Any, who: str) -> frozenset[int]:
    """Positions of ``children`` whose module trees share a module with another position (a
    module called more than once per forward pass); their call state must be captured.

    Raises ValueError when such a shared module has an L1/L2 penalty: its ``backward`` would add
    the penalty's gradient once per call while the penalty counts once in the loss.
    """
    owners: dict[int, tuple[Module, set[int]]] = {}
    for i, child in enumerate(children):
        for m in child.modules():
            owners.setdefault(id(m), (m, set()))[1].add(i)
    positions: set[int] = set()
    for m, where in owners.values():
        if len(where) > 1:
            positions.update(where)
            if m.penalty() is not None:
                raise ValueError(
                    f"{who}: {type(m).__name__} is called {len(where)} times per forward pass and "
                    "has an L1/L2 penalty, whose gradient would be added once per call; use the "
                    "optimizer's weight_decay for a module that is called more than once"
                )
    return frozenset(positions)
