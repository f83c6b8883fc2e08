"""Containers beyond Sequential: a residual connection and parallel branches.

Like every nnx module, a container's ``backward`` is its children's backward passes called in
reverse. Following the input-gradient convention (``docs/architecture.md``), a container's
``backward(grad_out, need_input_grad=False)`` returns ``dL/dx`` only when asked, and asks each
child for exactly what it uses (:func:`~nnx.core.calls.call_backward`). A module may appear in
several branches: each call keeps its own cache (:func:`~nnx.core.calls.capture_call_state`).
"""

from __future__ import annotations

from typing import Any

from ..backend import namespace
from ..layers.shape import Identity
from .calls import call_backward, capture_call_state, restore_call_state, restore_final_state
from .module import Module, reused_positions

MERGES = ("concat", "add", None)


def _check_module(value: Any, who: str, what: str) -> Module:
    if not isinstance(value, Module):
        raise TypeError(f"{who}: {what} must be an nnx.Module, got {type(value).__name__}")
    return value


class Residual(Module):
    """``y = block(x) + shortcut(x)``, with :class:`~nnx.layers.Identity` as the default shortcut.

    Backward: ``dL/dx = block'(x)^T g + shortcut'(x)^T g`` (the gradient fans out to both paths
    and sums where they meet). Both paths must give outputs of the same shape (use a projection
    such as ``Linear`` as the shortcut where the block changes the width).

    Args:
        block: the residual branch, e.g. ``Sequential(Linear(d, d), ReLU(), Linear(d, d))``.
        shortcut: the skip path (default: identity).

    >>> import numpy as np, nnx
    >>> block = nnx.Residual(nnx.Sequential(nnx.Linear(4, 4, rng=0), nnx.ReLU()))
    >>> block(np.ones((2, 4), dtype=np.float32)).shape
    (2, 4)
    """

    def __init__(self, block: Module, shortcut: Module | None = None):
        self.block = _check_module(block, "Residual", "block")
        self.shortcut = (
            Identity() if shortcut is None else _check_module(shortcut, "Residual", "shortcut")
        )
        self._reused = reused_positions((self.block, self.shortcut), "Residual")
        self._states: list[Any] = [None, None]

    def forward(self, x: Any) -> Any:
        a = self.block.forward(x)
        if self._reused:  # block and shortcut share a module: keep the block call's cache
            self._states = [capture_call_state(self.block), None]
        b = self.shortcut.forward(x)
        if self._reused:
            self._states[1] = capture_call_state(self.shortcut)
        if tuple(a.shape) != tuple(b.shape):
            raise ValueError(
                f"Residual: the block gives shape {tuple(a.shape)} but the shortcut "
                f"{tuple(b.shape)}; give a shortcut (e.g. a Linear projection) that matches"
            )
        return a + b

    def backward(self, grad_out: Any, need_input_grad: bool = False) -> Any:
        """Both paths' backward; returns ``dL/dx`` (their sum) only when ``need_input_grad``."""
        g_short = call_backward(self.shortcut, grad_out, need_input_grad)
        if self._reused:
            restore_call_state(self._states[0])
        g_block = call_backward(self.block, grad_out, need_input_grad)
        if self._reused:
            restore_final_state(self._states)
        return g_block + g_short if need_input_grad else None


class Parallel(Module):
    """Branches applied side by side, their outputs merged.

    ``forward(x)`` gives ``x`` to every branch; ``forward(x1, ..., xk)`` with one input per branch
    gives ``xi`` to branch ``i`` (a multi-input model). The outputs are merged by ``merge``:

    * ``"concat"``: concatenated along ``axis``; backward hands each branch its slice of the
      gradient;
    * ``"add"``: summed (same shapes); backward hands each branch the whole gradient;
    * ``None``: returned as a tuple; backward takes a tuple with one gradient per branch.

    Backward returns ``dL/dx`` (the sum over branches, where ``x`` fans out) or one gradient per
    input, only when ``need_input_grad``.

    Args:
        *branches: the modules.
        merge: ``"concat"`` (default), ``"add"`` or ``None``.
        axis: the concatenation axis (default -1).

    >>> import numpy as np, nnx
    >>> two = nnx.Parallel(nnx.Linear(3, 4, rng=0), nnx.Linear(3, 2, rng=1))
    >>> two(np.ones((5, 3), dtype=np.float32)).shape
    (5, 6)
    """

    def __init__(self, *branches: Module, merge: str | None = "concat", axis: int = -1):
        if not branches:
            raise ValueError("Parallel: give at least one branch")
        for i, branch in enumerate(branches):
            _check_module(branch, "Parallel", f"branch {i}")
            setattr(self, str(i), branch)
        if merge not in MERGES:
            raise ValueError(f"Parallel: merge must be 'concat', 'add' or None, got {merge!r}")
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"Parallel: axis must be an integer, got {axis!r}")
        self.merge = merge
        self.axis = axis
        self._branches = tuple(branches)
        self._reused = reused_positions(branches, "Parallel")
        self._states: list[Any] | None = None
        self._sizes: list[int] = []
        self._per_input = False

    def extra_repr(self) -> str:
        return f"merge={self.merge!r}, axis={self.axis}"

    def __len__(self) -> int:
        return len(self._branches)

    def __getitem__(self, index: int) -> Module:
        return self._branches[index]

    def forward(self, *inputs: Any) -> Any:
        branches = self._branches
        if len(inputs) == 1:
            inputs = inputs * len(branches)
            self._per_input = False
        elif len(inputs) == len(branches):
            self._per_input = True
        else:
            raise ValueError(
                f"Parallel: got {len(inputs)} inputs for {len(branches)} branches; give one "
                "input (shared by every branch) or one per branch"
            )
        reused = self._reused
        states: list[Any] | None = [None] * len(branches) if reused else None
        outs = []
        for i, (branch, x) in enumerate(zip(branches, inputs, strict=True)):
            outs.append(branch.forward(x))
            if states is not None and i in reused:
                states[i] = capture_call_state(branch)
        self._states = states
        if self.merge is None:
            return tuple(outs)
        if self.merge == "add":
            first = tuple(outs[0].shape)
            for i, out in enumerate(outs[1:], 1):
                if tuple(out.shape) != first:
                    raise ValueError(
                        f"Parallel(merge='add'): branch 0 gives shape {first} but branch {i} "
                        f"{tuple(out.shape)}"
                    )
            total = outs[0]
            for out in outs[1:]:
                total = total + out
            return total
        axis = self._axis(outs[0])
        for i, out in enumerate(outs):
            same = out.ndim == outs[0].ndim and all(
                a == b
                for d, (a, b) in enumerate(zip(out.shape, outs[0].shape, strict=True))
                if d != axis
            )
            if not same:
                raise ValueError(
                    f"Parallel(merge='concat', axis={self.axis}): branch {i} gives shape "
                    f"{tuple(out.shape)}, which does not fit branch 0's {tuple(outs[0].shape)} "
                    f"outside axis {self.axis}"
                )
        self._sizes = [int(out.shape[axis]) for out in outs]
        return namespace(outs[0]).concat(outs, axis=axis)

    def _axis(self, like: Any) -> int:
        if not -like.ndim <= self.axis < like.ndim:
            raise ValueError(
                f"Parallel: axis {self.axis} is out of range for outputs of shape "
                f"{tuple(like.shape)}"
            )
        return self.axis % like.ndim

    def _branch_grads(self, grad_out: Any) -> list[Any]:
        n = len(self._branches)
        if self.merge is None:
            if not isinstance(grad_out, (tuple, list)) or len(grad_out) != n:
                raise ValueError(
                    f"Parallel(merge=None): backward needs a tuple of {n} gradients, one per "
                    f"branch, got {type(grad_out).__name__}"
                )
            return list(grad_out)
        if self.merge == "add":
            return [grad_out] * n
        axis = self._axis(grad_out)
        grads, start = [], 0
        for size in self._sizes:
            index = (slice(None),) * axis + (slice(start, start + size), ...)
            grads.append(grad_out[index])
            start += size
        return grads

    def backward(self, grad_out: Any, need_input_grad: bool = False) -> Any:
        """Each branch's backward (in reverse order); returns the input gradient(s) only when
        ``need_input_grad``."""
        grads = self._branch_grads(grad_out)
        states = self._states
        result: list[Any] = [None] * len(grads)
        for i in range(len(grads) - 1, -1, -1):
            if states is not None and states[i] is not None:
                restore_call_state(states[i])
            result[i] = call_backward(self._branches[i], grads[i], need_input_grad)
        if states is not None:
            restore_final_state(states)
        if not need_input_grad:
            return None
        if self._per_input:
            return tuple(result)
        total = result[0]
        for g in result[1:]:
            total = total + g
        return total


class Add(Module):
    """``y = x1 + x2 + ...`` of several inputs of one shape (a skip connection in a
    :class:`~nnx.core.graph.Graph`); backward hands every input the gradient ``g``.

    >>> import numpy as np, nnx
    >>> nnx.Add()(np.ones(2), np.ones(2))
    array([2., 2.])
    """

    _n = 0

    def forward(self, *inputs: Any) -> Any:
        if not inputs:
            raise ValueError("Add: give at least one input")
        for i, x in enumerate(inputs[1:], 1):
            if tuple(x.shape) != tuple(inputs[0].shape):
                raise ValueError(
                    f"Add: input 0 has shape {tuple(inputs[0].shape)} but input {i} "
                    f"{tuple(x.shape)}"
                )
        self._n = len(inputs)
        total = inputs[0]
        for x in inputs[1:]:
            total = total + x
        return total

    def backward(self, grad_out: Any, need_input_grad: bool = True) -> Any:
        if not need_input_grad:
            return None
        return grad_out if self._n == 1 else (grad_out,) * self._n


class Concat(Module):
    """Several inputs concatenated along ``axis``; backward splits the gradient back.

    >>> import numpy as np, nnx
    >>> nnx.Concat()(np.ones((2, 1)), np.zeros((2, 3))).shape
    (2, 4)
    """

    def __init__(self, axis: int = -1):
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"Concat: axis must be an integer, got {axis!r}")
        self.axis = axis
        self._sizes: list[int] = []

    def extra_repr(self) -> str:
        return f"axis={self.axis}"

    def forward(self, *inputs: Any) -> Any:
        if not inputs:
            raise ValueError("Concat: give at least one input")
        first = inputs[0]
        if not -first.ndim <= self.axis < first.ndim:
            raise ValueError(
                f"Concat: axis {self.axis} is out of range for inputs of shape {tuple(first.shape)}"
            )
        axis = self.axis % first.ndim
        for i, x in enumerate(inputs):
            if x.ndim != first.ndim or any(
                a != b
                for d, (a, b) in enumerate(zip(x.shape, first.shape, strict=True))
                if d != axis
            ):
                raise ValueError(
                    f"Concat(axis={self.axis}): input {i} has shape {tuple(x.shape)}, which does "
                    f"not fit input 0's {tuple(first.shape)} outside the axis"
                )
        self._sizes = [int(x.shape[axis]) for x in inputs]
        return namespace(first).concat(list(inputs), axis=axis)

    def backward(self, grad_out: Any, need_input_grad: bool = True) -> Any:
        if not need_input_grad:
            return None
        axis = self.axis % grad_out.ndim
        parts, start = [], 0
        for size in self._sizes:
            parts.append(grad_out[(slice(None),) * axis + (slice(start, start + size), ...)])
            start += size
        return parts[0] if len(parts) == 1 else tuple(parts)
