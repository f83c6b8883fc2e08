"""Recurrent layers, LSTM and GRU, with backpropagation through time written out.

Both follow PyTorch's equations, gate order and parameter names, with nnx's ``(in, out)``
weights: for layer ``k`` (suffix ``_reverse`` for the backward direction of a bidirectional
layer) ``weight_ih_l{k}`` is ``(in, G*H)``, ``weight_hh_l{k}`` is ``(H, G*H)`` and the biases
``bias_ih_l{k}``, ``bias_hh_l{k}`` are ``(G*H,)``, with ``G = 4`` (LSTM: i, f, g, o) or
``G = 3`` (GRU: r, z, n). Inputs are ``(N, T, in)`` (``(T, N, in)`` with
``batch_first=False``); states ``(num_layers * num_directions, N, H)``.
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import Backend, device, get_backend, namespace, one_blas_thread
from ..core.checks import (
    check_floating,
    check_grad,
    check_same_device,
    check_same_dtype,
    positive_int,
    require_forward,
)
from ..core.init import Seed, as_rng, reserve
from ..core.module import Module, Parameter


def _sigmoid(xp: Any, a: Any) -> Any:
    return 0.5 + 0.5 * xp.tanh(0.5 * a)


class _Recurrent(Module):
    """Parameters, shape checks, the layer/direction loops; subclasses give one cell's step
    forward and the matching step backward."""

    GATES = 0
    _cache = None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        batch_first: bool,
        bidirectional: bool,
        rng: Seed,
        dtype: Any,
        device: str | Backend,
    ):
        who = type(self).__name__
        self.input_size = positive_int(input_size, "input_size", who)
        self.hidden_size = positive_int(hidden_size, "hidden_size", who)
        self.num_layers = positive_int(num_layers, "num_layers", who)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if bidirectional else 1
        backend = get_backend(device)
        host = as_rng(rng)
        h, g = self.hidden_size, self.GATES * self.hidden_size
        bound = 1.0 / math.sqrt(h)  # PyTorch: every parameter ~ U(-1/sqrt(H), 1/sqrt(H))
        for k in range(self.num_layers):
            fan_in = self.input_size if k == 0 else h * self.num_directions
            for suffix in self._suffixes():
                shapes = {"weight_ih": (fan_in, g), "weight_hh": (h, g)}
                if self.bias:
                    shapes.update({"bias_ih": (g,), "bias_hh": (g,)})
                for name, shape in shapes.items():
                    full = f"{name}_l{k}{suffix}"
                    reserve(shape)
                    value = host.uniform(-bound, bound, size=shape)
                    setattr(self, full, Parameter(backend.asarray(value, dtype=dtype), full))

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if not self.bias:
            text += ", bias=False"
        if not self.batch_first:
            text += ", batch_first=False"
        if self.bidirectional:
            text += ", bidirectional=True"
        return text

    def _params(self, k: int, suffix: str) -> tuple[Parameter, Parameter, Any, Any]:
        p = [getattr(self, f"{n}_l{k}{suffix}", None) for n in ("weight_ih", "weight_hh")]
        b = [getattr(self, f"{n}_l{k}{suffix}", None) for n in ("bias_ih", "bias_hh")]
        return p[0], p[1], b[0], b[1]

    def _check(self, xp: Any, x: Any) -> None:
        who = type(self).__name__
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            layout = "(N, T, input_size)" if self.batch_first else "(T, N, input_size)"
            raise ValueError(
                f"{who}: expected input of shape {layout} with input_size = {self.input_size}, "
                f"got {tuple(x.shape)}"
            )
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"{who}: input of shape {tuple(x.shape)} is empty")
        check_floating(xp, x, who)
        w = self.weight_ih_l0.value
        check_same_dtype(x, w, who)
        check_same_device(x, w, who)

    def _check_state(self, state: Any, n: int, what: str, ref: Any) -> None:
        who = type(self).__name__
        shape = (self.num_layers * self.num_directions, n, self.hidden_size)
        if tuple(state.shape) != shape:
            raise ValueError(f"{who}: {what} must have shape {shape}, got {tuple(state.shape)}")
        check_same_dtype(state, ref, who, what, "input")
        check_same_device(state, ref, who, what, "input")

    # ---------------------------------------------------------------- forward
    def _run(self, x: Any, states: list[Any]) -> tuple[Any, list[Any]]:
        """All layers and directions; ``states`` is a list of ``(L*D, N, H)`` initial state
        arrays (h, and c for the LSTM). Returns the last layer's output and the final states."""
        xp = namespace(x)
        t_len = x.shape[1]
        caches, finals = [], [[] for _ in states]
        inp = x
        for k in range(self.num_layers):
            outs, layer_caches = [], []
            for d, suffix in enumerate(self._suffixes()):
                w_ih, w_hh, b_ih, b_hh = self._params(k, suffix)
                # (N, T, G*H): every time step's input part in one 2-D matmul
                n_t = inp.shape[0] * inp.shape[1]
                gi = xp.reshape(
                    xp.reshape(inp, (n_t, inp.shape[-1])) @ w_ih.value, (*inp.shape[:2], -1)
                )
                if b_ih is not None:
                    gi = gi + b_ih.value
                index = k * self.num_directions + d
                carry = [s[index, ...] for s in states]
                order = range(t_len - 1, -1, -1) if d == 1 else range(t_len)
                hs: list[Any] = [None] * t_len
                steps: list[Any] = [None] * t_len
                with one_blas_thread(x):  # T small products in a row (see one_blas_thread)
                    for t in order:
                        carry, steps[t] = self._step(xp, gi[:, t, :], carry, w_hh.value, b_hh)
                        hs[t] = carry[0]
                for f, c in zip(finals, carry, strict=True):
                    f.append(c)
                outs.append(xp.stack(hs, axis=1))
                layer_caches.append((inp, steps, order))
            caches.append(layer_caches)
            inp = outs[0] if len(outs) == 1 else xp.concat(outs, axis=-1)
        self._cache = caches
        return inp, [xp.stack(f, axis=0) for f in finals]

    def _initial(self, xp: Any, x: Any, hx: Any) -> list[Any]:
        n = x.shape[0]
        shape = (self.num_layers * self.num_directions, n, self.hidden_size)
        if hx is None:
            zero = xp.zeros(shape, dtype=x.dtype, device=device(x))
            self._given_states = False
            return [zero] * self.STATES
        given = list(hx) if self.STATES > 1 else [hx]
        if len(given) != self.STATES:
            raise ValueError(f"{type(self).__name__}: hx must be a tuple (h_0, c_0)")
        for s, what in zip(given, ("h_0", "c_0"), strict=False):
            self._check_state(s, n, what, x)
        self._given_states = True
        return given

    def _forward(self, x: Any, hx: Any) -> tuple[Any, list[Any]]:
        xp = namespace(x)
        self._check(xp, x)
        if not self.batch_first:
            x = xp.permute_dims(x, (1, 0, 2))
        states = self._initial(xp, x, hx)
        out, finals = self._run(x, states)
        self._shapes = (tuple(out.shape), tuple(finals[0].shape))
        if not self.batch_first:
            out = xp.permute_dims(out, (1, 0, 2))
        return out, finals

    # ---------------------------------------------------------------- backward
    def _backward(self, grad_output: Any, grad_finals: list[Any]) -> Any:
        caches = require_forward(self._cache, type(self).__name__)
        out_shape, state_shape = self._shapes
        xp = namespace(grad_output)
        g_out = grad_output if self.batch_first else xp.permute_dims(grad_output, (1, 0, 2))
        check_grad(g_out, out_shape, type(self).__name__)
        for g in grad_finals:
            if g is not None:
                check_grad(g, state_shape, f"{type(self).__name__} (final state)")
        h = self.hidden_size
        n, t_len = out_shape[0], out_shape[1]
        init_grads = [[None] * (self.num_layers * self.num_directions) for _ in grad_finals]
        for k in range(self.num_layers - 1, -1, -1):
            d_inp = None
            for d, suffix in enumerate(self._suffixes()):
                w_ih, w_hh, b_ih, b_hh = self._params(k, suffix)
                inp, steps, order = caches[k][d]
                index = k * self.num_directions + d
                carry = []
                for g in grad_finals:
                    if g is None:
                        carry.append(xp.zeros((n, h), dtype=g_out.dtype, device=device(g_out)))
                    else:
                        carry.append(g[index, ...])
                d_y = g_out[..., d * h : (d + 1) * h] if self.num_directions > 1 else g_out
                d_gi: list[Any] = [None] * t_len
                d_gh: list[Any] = [None] * t_len
                h_prev: list[Any] = [None] * t_len
                with one_blas_thread(g_out):
                    for t in reversed(list(order)):
                        carry[0] = carry[0] + d_y[:, t, :]
                        carry, d_gi[t], d_gh[t] = self._step_backward(
                            xp, steps[t], carry, w_hh.value
                        )
                        h_prev[t] = steps[t][0]
                for grads, c in zip(init_grads, carry, strict=True):
                    grads[index] = c
                # the weight gradients of all time steps in one matmul each
                gi = xp.reshape(xp.stack(d_gi, axis=1), (n * t_len, -1))
                gh = xp.reshape(xp.stack(d_gh, axis=1), (n * t_len, -1))
                hp = xp.reshape(xp.stack(h_prev, axis=1), (n * t_len, h))
                x2 = xp.reshape(inp, (n * t_len, inp.shape[-1]))
                w_ih.accumulate(x2.T @ gi)
                w_hh.accumulate(hp.T @ gh)
                if b_ih is not None:
                    b_ih.accumulate(xp.sum(gi, axis=0))
                    b_hh.accumulate(xp.sum(gh, axis=0))
                term = xp.reshape(gi @ w_ih.value.T, (n, t_len, inp.shape[-1]))
                d_inp = term if d_inp is None else d_inp + term
            g_out = d_inp
        self.grad_hx = [xp.stack(g, axis=0) for g in init_grads]
        return g_out if self.batch_first else xp.permute_dims(g_out, (1, 0, 2))


class LSTM(_Recurrent):
    """Long short-term memory, PyTorch's equations (gates i, f, g, o in that order)::

        [a_i, a_f, a_g, a_o] = x_t W_ih + b_ih + h_{t-1} W_hh + b_hh
        i = sigmoid(a_i), f = sigmoid(a_f), g = tanh(a_g), o = sigmoid(a_o)
        c_t = f * c_{t-1} + i * g,     h_t = o * tanh(c_t)

    Backward through time (``dh``, ``dc`` flow from step ``t`` to ``t - 1``; ``dh`` also
    receives the output gradient of step ``t``)::

        dh += dy_t
        do = dh * tanh(c_t)
        dc += dh * o * (1 - tanh(c_t)^2)
        di = dc * g,   dg = dc * i,   df = dc * c_{t-1}
        da = [di i (1 - i), df f (1 - f), dg (1 - g^2), do o (1 - o)]
        dc_{t-1} = dc * f,   dh_{t-1} = da W_hh^T,   dx_t = da W_ih^T
        dW_ih += x_t^T da,   dW_hh += h_{t-1}^T da,   db_ih = db_hh += sum(da)

    ``forward(x, hx=None)`` returns ``(output, (h_n, c_n))``; ``output`` is ``(N, T, D*H)``
    (both directions concatenated), ``hx = (h_0, c_0)`` defaults to zeros.
    ``backward(grad_output, grad_h_n=None, grad_c_n=None)`` returns ``dL/dx`` and leaves the
    initial states' gradients in ``grad_hx = [dh_0, dc_0]``.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, bidirectional: as in PyTorch
            (``batch_first=True`` by default here).
        rng, dtype, device: initial values ``U(-1/sqrt(H), 1/sqrt(H))`` and placement.
    """

    GATES = 4
    STATES = 2

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        bidirectional: bool = False,
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            bidirectional,
            rng,
            dtype,
            device,
        )

    def _step(self, xp: Any, gi: Any, carry: list[Any], w_hh: Any, b_hh: Any) -> Any:
        h_prev, c_prev = carry
        a = gi + h_prev @ w_hh
        if b_hh is not None:
            a = a + b_hh.value
        hs = self.hidden_size
        i = _sigmoid(xp, a[:, :hs])
        f = _sigmoid(xp, a[:, hs : 2 * hs])
        g = xp.tanh(a[:, 2 * hs : 3 * hs])
        o = _sigmoid(xp, a[:, 3 * hs :])
        c = f * c_prev + i * g
        tc = xp.tanh(c)
        h = o * tc
        return [h, c], (h_prev, c_prev, i, f, g, o, tc)

    def _step_backward(self, xp: Any, cache: Any, carry: list[Any], w_hh: Any) -> Any:
        h_prev, c_prev, i, f, g, o, tc = cache
        dh, dc = carry
        do = dh * tc
        dc = dc + dh * o * (1.0 - tc * tc)
        da = xp.concat(
            [
                dc * g * i * (1.0 - i),
                dc * c_prev * f * (1.0 - f),
                dc * i * (1.0 - g * g),
                do * o * (1.0 - o),
            ],
            axis=1,
        )
        return [da @ w_hh.T, dc * f], da, da

    def forward(self, x: Any, hx: Any = None) -> tuple[Any, tuple[Any, Any]]:
        out, (h_n, c_n) = self._forward(x, hx)
        return out, (h_n, c_n)

    def backward(self, grad_output: Any, grad_h_n: Any = None, grad_c_n: Any = None) -> Any:
        return self._backward(grad_output, [grad_h_n, grad_c_n])


class GRU(_Recurrent):
    """Gated recurrent unit, PyTorch's equations (gates r, z, n; ``b_hn`` inside the reset
    product)::

        [x_r, x_z, x_n] = x_t W_ih + b_ih,     [h_r, h_z, h_n] = h_{t-1} W_hh + b_hh
        r = sigmoid(x_r + h_r),  z = sigmoid(x_z + h_z),  n = tanh(x_n + r * h_n)
        h_t = (1 - z) * n + z * h_{t-1}

    Backward through time::

        dh += dy_t
        dn = dh (1 - z),   dz = dh (h_{t-1} - n),   da_n = dn (1 - n^2)
        da_r = da_n h_n r (1 - r),   da_z = dz z (1 - z)
        d[x_r, x_z, x_n] = [da_r, da_z, da_n],   d[h_r, h_z, h_n] = [da_r, da_z, da_n * r]
        dh_{t-1} = dh z + d[h_r, h_z, h_n] W_hh^T,   dx_t = d[x_r, x_z, x_n] W_ih^T

    ``forward(x, hx=None)`` returns ``(output, h_n)``; ``backward(grad_output, grad_h_n=None)``
    returns ``dL/dx`` and leaves ``grad_hx = [dh_0]``. Arguments as for :class:`LSTM`.
    """

    GATES = 3
    STATES = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        bidirectional: bool = False,
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            bidirectional,
            rng,
            dtype,
            device,
        )

    def _step(self, xp: Any, gi: Any, carry: list[Any], w_hh: Any, b_hh: Any) -> Any:
        (h_prev,) = carry
        gh = h_prev @ w_hh
        if b_hh is not None:
            gh = gh + b_hh.value
        hs = self.hidden_size
        r = _sigmoid(xp, gi[:, :hs] + gh[:, :hs])
        z = _sigmoid(xp, gi[:, hs : 2 * hs] + gh[:, hs : 2 * hs])
        h_n = gh[:, 2 * hs :]
        n = xp.tanh(gi[:, 2 * hs :] + r * h_n)
        h = (1.0 - z) * n + z * h_prev
        return [h], (h_prev, r, z, n, h_n)

    def _step_backward(self, xp: Any, cache: Any, carry: list[Any], w_hh: Any) -> Any:
        h_prev, r, z, n, h_n = cache
        (dh,) = carry
        da_n = dh * (1.0 - z) * (1.0 - n * n)
        da_r = da_n * h_n * r * (1.0 - r)
        da_z = dh * (h_prev - n) * z * (1.0 - z)
        d_gi = xp.concat([da_r, da_z, da_n], axis=1)
        d_gh = xp.concat([da_r, da_z, da_n * r], axis=1)
        return [dh * z + d_gh @ w_hh.T], d_gi, d_gh

    def forward(self, x: Any, hx: Any = None) -> tuple[Any, Any]:
        out, (h_n,) = self._forward(x, hx)
        return out, h_n

    def backward(self, grad_output: Any, grad_h_n: Any = None) -> Any:
        return self._backward(grad_output, [grad_h_n])
