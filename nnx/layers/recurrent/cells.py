"""Single-step recurrent cells, ``RNNCell``, ``LSTMCell``, ``GRUCell``, for time loops written by
hand (PyTorch's ``torch.nn.*Cell``), on the step functions the sequence layers use.

The call contract (each call is one time step; the loop is the user's):

* every ``forward`` pushes its own cache (its input, its state, the gates) on the cell's stack of
  calls, so one cell can be called ``T`` times in a row;
* every ``backward`` pops the most recent call's cache: call ``backward`` once per ``forward``,
  in reverse call order (the last step first), passing the gradient of that call's output
  (``dh``; ``dh, dc`` for ``LSTMCell``) with the gradient that flowed back from the later steps
  already added. Parameter gradients are accumulated (added into ``p.grad``) by every backward;
* ``backward`` returns the gradients of that call's inputs, mirroring how it was called:
  ``dx`` for ``cell(x)`` (the zero initial state is no input), ``(dx, dh)`` for ``cell(x, h)``,
  ``(dx, dh, dc)`` for ``LSTMCell``'s ``cell(x, (h, c))``. ``need_input_grad=False`` skips
  ``dx`` (it is then None);
* a ``backward`` with no call left raises :class:`nnx.BackwardBeforeForwardError`;
* the first ``forward`` after a ``backward`` starts a fresh stack: calls left over from a loop
  that was differentiated only part of the way (truncated backpropagation through time) are
  dropped;
* in evaluation mode (``cell.eval()``) a ``forward`` keeps only its own call, so generation loops
  hold no history; differentiate time loops in training mode;
* ``zero_grad()`` clears the parameter gradients only (as in PyTorch), never the stack.
"""

from __future__ import annotations

from typing import Any

from ...backend import Backend, device, get_backend, namespace
from ...core.checks import (
    BackwardBeforeForwardError,
    check_floating,
    check_grad,
    check_same_device,
    check_same_dtype,
    positive_int,
)
from ...core.init import Seed, as_rng
from ...core.module import Module
from .base import init_uniform
from .steps import (
    gru_step,
    gru_step_backward,
    lstm_step,
    lstm_step_backward,
    rnn_step,
    rnn_step_backward,
)


class _Cell(Module):
    """Parameters, checks and the stack of calls; subclasses give the step functions."""

    GATES = 0
    STATES = 1
    _fresh = False  # a backward ran since the last forward: the next forward starts a new stack

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool,
        rng: Seed,
        dtype: Any,
        device: str | Backend,
    ):
        who = type(self).__name__
        self.input_size = positive_int(input_size, "input_size", who)
        self.hidden_size = positive_int(hidden_size, "hidden_size", who)
        self.bias = bool(bias)
        h, g = self.hidden_size, self.GATES * self.hidden_size
        shapes = {"weight_ih": (self.input_size, g), "weight_hh": (h, g)}
        if self.bias:
            shapes.update({"bias_ih": (g,), "bias_hh": (g,)})
        init_uniform(self, shapes, h, as_rng(rng), get_backend(device), dtype)
        if not self.bias:
            self.bias_ih = self.bias_hh = None
        # The stack of calls is one list, appended to and popped from in place (unlike other
        # caches, which forward rebinds): a container that calls this cell twice captures and
        # restores the cell's attributes around each call (nnx.core.calls), and every capture
        # then shares this one stack, which its backward passes, in reverse call order, empty.
        self._calls: list[tuple[Any, ...]] = []

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            text += ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            text += f", nonlinearity={self.nonlinearity!r}"
        return text

    def _step(self, xp: Any, gi: Any, carry: list[Any], w_hh: Any, b_hh: Any) -> Any:
        raise NotImplementedError

    def _step_backward(self, xp: Any, cache: Any, carry: list[Any], w_hh: Any) -> Any:
        raise NotImplementedError

    # ---------------------------------------------------------------- forward
    def _states(self, xp: Any, x: Any, hx: Any, unbatched: bool) -> list[Any]:
        """The states as ``(N, H)`` arrays: zeros for ``hx=None``, else checked."""
        who = type(self).__name__
        n = x.shape[0]
        if hx is None:
            zero = xp.zeros((n, self.hidden_size), dtype=x.dtype, device=device(x))
            return [zero] * self.STATES
        given = list(hx) if self.STATES > 1 and isinstance(hx, tuple | list) else [hx]
        if len(given) != self.STATES:
            raise ValueError(f"{who}: hx must be a tuple (h, c), got {type(hx).__name__}")
        shape = (self.hidden_size,) if unbatched else (n, self.hidden_size)
        for s, what in zip(given, ("h", "c"), strict=False):
            if tuple(getattr(s, "shape", ())) != shape:
                raise ValueError(
                    f"{who}: {what} must have shape {shape} for an input of shape "
                    f"{(self.input_size,) if unbatched else (n, self.input_size)}, got "
                    f"{tuple(getattr(s, 'shape', ()))}"
                )
            check_same_dtype(s, x, who, what, "input")
            check_same_device(s, x, who, what, "input")
        return [xp.expand_dims(s, axis=0) for s in given] if unbatched else given

    def _call(self, x: Any, hx: Any) -> list[Any]:
        who = type(self).__name__
        xp = namespace(x)
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size or x.shape[0] == 0:
            raise ValueError(
                f"{who}: expected input of shape (N, input_size) or (input_size,) with "
                f"input_size = {self.input_size}, got {tuple(x.shape)}"
            )
        check_floating(xp, x, who)
        w_ih = self.weight_ih.value
        check_same_dtype(x, w_ih, who)
        check_same_device(x, w_ih, who)
        unbatched = x.ndim == 1
        x2 = xp.expand_dims(x, axis=0) if unbatched else x
        states = self._states(xp, x2, hx, unbatched)
        gi = x2 @ w_ih
        if self.bias_ih is not None:
            gi = gi + self.bias_ih.value
        b_hh = None if self.bias_hh is None else self.bias_hh.value
        new, cache = self._step(xp, gi, states, self.weight_hh.value, b_hh)
        if self._fresh or not self.training:
            self._calls = []  # a new stack: after a backward, or in evaluation mode
        self._calls.append((x2, cache, hx is not None, unbatched))
        self._fresh = False
        return [s[0, ...] for s in new] if unbatched else new

    # ---------------------------------------------------------------- backward
    def _backward(self, grads: list[Any], need_input_grad: bool) -> Any:
        who = type(self).__name__
        if not self._calls:
            if self._fresh:
                raise BackwardBeforeForwardError(
                    f"{who}.backward: every forward call has been differentiated already "
                    f"(one backward per forward, in reverse call order"
                    + (
                        "; in evaluation mode a cell keeps only its last call)"
                        if not self.training
                        else ")"
                    )
                )
            raise BackwardBeforeForwardError(
                f"{who}.backward called before forward: run forward first"
            )
        x2, cache, given, unbatched = self._calls[-1]
        h_prev = cache[0]
        xp = namespace(h_prev)
        shape = tuple(h_prev.shape[1:]) if unbatched else tuple(h_prev.shape)
        carry = []
        for g in grads:
            if g is None:
                carry.append(xp.zeros(h_prev.shape, dtype=h_prev.dtype, device=device(h_prev)))
                continue
            check_grad(g, shape, who)  # before the pop: a bad gradient leaves the call there
            carry.append(xp.expand_dims(g, axis=0) if unbatched else g)
        self._calls.pop()
        self._fresh = True
        carry, d_gi, d_gh = self._step_backward(xp, cache, carry, self.weight_hh.value)
        self.weight_ih.accumulate(x2.T @ d_gi)
        self.weight_hh.accumulate(h_prev.T @ d_gh)
        if self.bias_ih is not None:
            self.bias_ih.accumulate(xp.sum(d_gi, axis=0))
            self.bias_hh.accumulate(xp.sum(d_gh, axis=0))
        dx = d_gi @ self.weight_ih.value.T if need_input_grad else None
        if unbatched:
            dx = None if dx is None else dx[0, ...]
            carry = [c[0, ...] for c in carry]
        return (dx, *carry) if given else dx


class RNNCell(_Cell):
    """One step of an Elman RNN, PyTorch's ``torch.nn.RNNCell``::

        h' = act(x W_ih + b_ih + h W_hh + b_hh),   act = tanh or ReLU
        backward: da = dh' (1 - h'^2) (tanh) or dh' [h' > 0] (ReLU),
                  dx = da W_ih^T,  dh = da W_hh^T,  dW_ih += x^T da,  dW_hh += h^T da,
                  db_ih = db_hh += sum(da)

    Shapes: ``x`` ``(N, input_size)`` or ``(input_size,)``; ``h``, ``h'`` ``(N, H)`` or ``(H,)``.
    Weights ``weight_ih`` ``(input_size, H)``, ``weight_hh`` ``(H, H)`` (nnx's ``(in, out)``
    layout, the transpose of PyTorch's), ``bias_ih``, ``bias_hh`` ``(H,)``, all initialized
    ``U(-1/sqrt(H), 1/sqrt(H))``.

    ``forward(x, hx=None)`` returns ``h'`` (``hx`` defaults to zeros). ``backward(grad_h,
    need_input_grad=True)`` differentiates the most recent call not yet differentiated and
    returns ``dx`` (call ``cell(x)``) or ``(dx, dh)`` (call ``cell(x, h)``); see the module
    docstring of :mod:`nnx.layers.recurrent.cells` for the whole contract.

    >>> import numpy as np, nnx
    >>> cell = nnx.RNNCell(3, 4, rng=0)
    >>> xs, h0 = np.ones((2, 5, 3), np.float32), np.zeros((5, 4), np.float32)
    >>> h1 = cell(xs[0], h0); h2 = cell(xs[1], h1)           # two time steps
    >>> dx1, dh1 = cell.backward(np.ones_like(h2))            # step 2 first
    >>> dx0, dh0 = cell.backward(np.ones_like(h1) + dh1)      # then step 1
    >>> dx0.shape, dh0.shape, cell.weight_hh.grad.shape
    ((5, 3), (5, 4), (4, 4))
    """

    GATES = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(
                f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}"
            )
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, rng, dtype, device)

    def _step(self, xp: Any, gi: Any, carry: list[Any], w_hh: Any, b_hh: Any) -> Any:
        return rnn_step(xp, gi, carry, w_hh, b_hh, self.nonlinearity == "relu")

    def _step_backward(self, xp: Any, cache: Any, carry: list[Any], w_hh: Any) -> Any:
        return rnn_step_backward(xp, cache, carry, w_hh, self.nonlinearity == "relu")

    def forward(self, x: Any, hx: Any = None) -> Any:
        return self._call(x, hx)[0]

    def backward(self, grad_h: Any, need_input_grad: bool = True) -> Any:
        return self._backward([grad_h], need_input_grad)


class LSTMCell(_Cell):
    """One LSTM step, PyTorch's ``torch.nn.LSTMCell`` (the equations of :class:`nnx.LSTM`,
    gates i, f, g, o)::

        [a_i, a_f, a_g, a_o] = x W_ih + b_ih + h W_hh + b_hh
        c' = f c + i g,   h' = o tanh(c')

    Shapes: ``x`` ``(N, input_size)`` or ``(input_size,)``; ``h``, ``c`` ``(N, H)`` or ``(H,)``;
    ``weight_ih`` ``(input_size, 4H)``, ``weight_hh`` ``(H, 4H)``, biases ``(4H,)``.

    ``forward(x, hx=None)`` with ``hx = (h, c)`` (zeros by default) returns ``(h', c')``.
    ``backward(grad_h, grad_c=None, need_input_grad=True)`` (``None``: zeros) differentiates
    the most recent call not yet differentiated and returns ``dx`` (call ``cell(x)``) or
    ``(dx, dh, dc)`` (call ``cell(x, (h, c))``); the contract is in
    :mod:`nnx.layers.recurrent.cells`.
    """

    GATES = 4
    STATES = 2

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        super().__init__(input_size, hidden_size, bias, rng, dtype, device)

    _step = staticmethod(lstm_step)
    _step_backward = staticmethod(lstm_step_backward)

    def forward(self, x: Any, hx: Any = None) -> tuple[Any, Any]:
        h, c = self._call(x, hx)
        return h, c

    def backward(self, grad_h: Any, grad_c: Any = None, need_input_grad: bool = True) -> Any:
        return self._backward([grad_h, grad_c], need_input_grad)


class GRUCell(_Cell):
    """One GRU step, PyTorch's ``torch.nn.GRUCell`` (the equations of :class:`nnx.GRU`, gates
    r, z, n)::

        r = sigmoid(x_r + h_r),  z = sigmoid(x_z + h_z),  n = tanh(x_n + r * h_n)
        h' = (1 - z) n + z h,   [x_r, x_z, x_n] = x W_ih + b_ih,  [h_r, h_z, h_n] = h W_hh + b_hh

    Shapes: ``x`` ``(N, input_size)`` or ``(input_size,)``; ``h``, ``h'`` ``(N, H)`` or ``(H,)``;
    ``weight_ih`` ``(input_size, 3H)``, ``weight_hh`` ``(H, 3H)``, biases ``(3H,)``.

    ``forward(x, hx=None)`` returns ``h'``; ``backward(grad_h, need_input_grad=True)`` returns
    ``dx`` or ``(dx, dh)`` as :class:`RNNCell`.
    """

    GATES = 3

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        super().__init__(input_size, hidden_size, bias, rng, dtype, device)

    _step = staticmethod(gru_step)
    _step_backward = staticmethod(gru_step_backward)

    def forward(self, x: Any, hx: Any = None) -> Any:
        return self._call(x, hx)[0]

    def backward(self, grad_h: Any, need_input_grad: bool = True) -> Any:
        return self._backward([grad_h], need_input_grad)
