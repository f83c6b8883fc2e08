"""Calling modules from containers: the backward call with or without ``dL/dx``, and the
capture and restore of a module's call state when one module runs several times per forward.

Containers (``Sequential``, ``Residual``, ``Parallel``, ``Graph``) and custom layers that call
child modules use these; nothing here depends on :class:`~nnx.core.module.Module` itself (any
object with ``backward`` and ``modules()`` works), so :mod:`nnx.core.module` imports this module
and not the other way round.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any


def call_backward(module: Any, grad_out: Any, need_input_grad: bool) -> Any:
    """``module.backward(grad_out)``, asking for the input gradient only when it is needed.

    A module whose ``backward`` takes ``need_input_grad`` is told whether its caller uses
    ``dL/dx`` (so ``Linear`` can leave out ``grad @ W.T``); one that does not take it computes
    the input gradient anyway. Returns ``dL/dx``, or None when it was not needed. Containers
    call their children's backward through this.
    """
    if accepts_need_input_grad(module):
        return module.backward(grad_out, need_input_grad=need_input_grad)
    grad_in = module.backward(grad_out)
    return grad_in if need_input_grad else None


def accepts_need_input_grad(module: Any) -> bool:
    """Whether ``module.backward`` takes ``need_input_grad`` (looked up once per class)."""
    return backward_takes_flag(type(module))


@functools.cache
def backward_takes_flag(cls: type) -> bool:
    try:
        return "need_input_grad" in inspect.signature(cls.backward).parameters
    except (TypeError, ValueError):
        return False


@functools.cache
def backward_declares(cls: type, name: str) -> bool:
    """Whether the class that defines the ``backward`` that ``cls`` runs sets ``name = True`` in
    its own body: a promise about that ``backward`` (a subclass that writes its own makes none,
    whatever it inherits). Containers read two such promises (:class:`Sequential`):
    ``fresh_input_grad`` (``backward`` returns ``dL/dx`` as a new array that nothing else
    holds, ``Linear``) and ``overwrites_grad`` (``backward`` takes ``overwrite_grad=True`` and
    may then compute ``dL/dx`` in the memory of ``grad_out``, ``ReLU``)."""
    for klass in cls.__mro__:
        if "backward" in vars(klass):
            return vars(klass).get(name) is True
    return False


def backward_flags(layers: list[Any]) -> tuple[list[bool], list[bool], list[bool]]:
    """Per layer of a container, what its ``backward`` offers: whether it takes
    ``need_input_grad`` (:func:`accepts_need_input_grad`), returns a fresh ``dL/dx`` and may
    overwrite its ``grad_out`` (:func:`backward_declares`)."""
    return (
        [accepts_need_input_grad(m) for m in layers],
        [backward_declares(type(m), "fresh_input_grad") for m in layers],
        [backward_declares(type(m), "overwrites_grad") for m in layers],
    )


def capture_call_state(module: Any) -> list[tuple[Any, dict[str, Any]]]:
    """What ``module`` and its sub-modules cached in their last forward call (their attributes).

    A container that calls one module several times in a forward pass captures the state after
    each call and hands it back with :func:`restore_call_state` before the matching backward, so
    each backward sees its own call's cache. Parameters and buffers are the same objects in
    every capture, so their gradients add up. Modules must rebind their cache attributes in
    ``forward`` (``self._x = x``), never mutate a cached object in place. After the last
    backward, :func:`restore_final_state` puts back each module's state as its last forward call
    left it.
    """
    return [(m, dict(vars(m))) for m in module.modules()]


def restore_call_state(state: list[tuple[Any, dict[str, Any]]]) -> None:
    """Put back the attributes saved by :func:`capture_call_state`."""
    for m, attributes in state:
        d = vars(m)
        d.clear()
        d.update(attributes)


def restore_final_state(states: list[Any]) -> None:
    """After the backward passes of modules called several times: put back, in call order, the
    state of every captured call, so each module ends as its last forward call left it
    (counters and other state it keeps between calls included)."""
    for state in states:
        if state is not None:
            restore_call_state(state)
