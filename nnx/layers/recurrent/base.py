"""The shared base of the sequence layers ``RNN``, ``LSTM`` and ``GRU``: parameters, checks, the
layer and direction loops of forward and backward through time, dropout between layers, and
unbatched input. A subclass gives one step's forward and backward (from ``steps.py``).

Parameter names follow PyTorch with nnx's ``(in, out)`` weights: for layer ``k`` (suffix
``_reverse`` for the backward direction of a bidirectional layer) ``weight_ih_l{k}`` is
``(in, G*H)``, ``weight_hh_l{k}`` is ``(H, G*H)`` and the biases ``bias_ih_l{k}``,
``bias_hh_l{k}`` are ``(G*H,)``, with ``G`` = 1 (RNN), 4 (LSTM: i, f, g, o) or 3 (GRU: r, z, n).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from ... import _fastconv, _fastrnn
from ...backend import Backend, device, get_backend, is_writeable, namespace, one_blas_thread
from ...core.checks import (
    check_floating,
    check_grad,
    check_same_device,
    check_same_dtype,
    positive_int,
    real_in_range,
    require_forward,
)
from ...core.init import Seed, as_rng, reserve
from ...core.module import Module, Parameter
from ..dropout import Dropout


def init_uniform(
    module: Module,
    names: dict[str, tuple[int, ...]],
    hidden: int,
    host: Any,
    backend: Backend,
    dtype: Any,
) -> None:
    """PyTorch's initialization of recurrent layers and cells: every parameter
    ``~ U(-1/sqrt(H), 1/sqrt(H))``, drawn on the host in the order of ``names``."""
    bound = 1.0 / math.sqrt(hidden)
    for name, shape in names.items():
        reserve(shape)
        value = host.uniform(-bound, bound, size=shape)
        setattr(module, name, Parameter(backend.asarray(value, dtype=dtype), name))


def _rows_transposed(xp: Any, w: Any) -> Any:
    """``w`` ``(H, G*H)`` as a view whose ``.T`` is a row-major ``(G*H, H)`` copy: the step
    backward's ``da @ w.T`` then multiplies by a contiguous matrix (NumPy's BLAS call on the
    strided transpose took 40% longer at H = 256), and the copy is made once per backward."""
    flat = xp.reshape(w.T, (w.shape[1] * w.shape[0],))
    return xp.reshape(flat, (w.shape[1], w.shape[0])).T


class _Recurrent(Module):
    """Parameters, shape checks, the layer/direction loops; subclasses give one cell's step
    forward (``_step``) and the matching step backward (``_step_backward``)."""

    GATES = 0
    STATES = 1
    # the step adds b_hh to h_{t-1} W_hh before it meets gi (RNN, LSTM): b_ih goes there too,
    # which saves a pass over the (N, T, G*H) input part (not the GRU: b_hn sits inside r *)
    FOLD_BIAS = False
    BATCH_FIRST = False  # the classes' default (PyTorch's), for repr
    _cache = None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        batch_first: bool,
        dropout: float,
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
        self.dropout = real_in_range(dropout, "dropout", who, 0.0, 1.0)
        if self.dropout > 0 and self.num_layers == 1:
            warnings.warn(  # PyTorch's warning: dropout acts between layers only
                f"{who}: dropout={self.dropout} acts between stacked layers only, and "
                f"num_layers=1 has none",
                UserWarning,
                stacklevel=3,
            )
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if bidirectional else 1
        backend = get_backend(device)
        host = as_rng(rng)
        h, g = self.hidden_size, self.GATES * self.hidden_size
        for k in range(self.num_layers):
            fan_in = self.input_size if k == 0 else h * self.num_directions
            for suffix in self._suffixes():
                shapes = {f"weight_ih_l{k}{suffix}": (fan_in, g), f"weight_hh_l{k}{suffix}": (h, g)}
                if self.bias:
                    shapes.update({f"bias_ih_l{k}{suffix}": (g,), f"bias_hh_l{k}{suffix}": (g,)})
                init_uniform(self, shapes, h, host, backend, dtype)
        # the masks between layers come from a Dropout (its seed, its generator: the Trainer's
        # reseeding, data-parallel rows and nnx.compile's random keys treat it as any Dropout);
        # made only for 0 < p < 1, so that a shared host generator gives the layers built after
        # this one the same values as without it, and p = 1 needs no random numbers
        if 0.0 < self.dropout < 1.0:
            self.dropout_layer = Dropout(self.dropout, rng=host)

    def _fast_kind(self) -> str | None:
        """Which loop of ``nnx/_fastrnn.py`` runs this layer on NumPy arrays (None: none)."""
        return None

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            text += f", nonlinearity={self.nonlinearity!r}"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first != self.BATCH_FIRST:
            text += f", batch_first={self.batch_first}"
        if self.dropout:
            text += f", dropout={self.dropout}"
        if self.bidirectional:
            text += ", bidirectional=True"
        return text

    def _mask(self, x: Any, shape: tuple[int, ...]) -> Any:
        """Inverted-dropout mask ``m / (1 - p)``, ``m ~ Bernoulli(1 - p)`` (zeros for p = 1)."""
        xp = namespace(x)
        if self.dropout == 1.0:
            return xp.zeros(shape, dtype=x.dtype, device=device(x))
        u = self.dropout_layer._uniform(x, shape)
        return xp.astype(u >= self.dropout, x.dtype) * (1.0 / (1.0 - self.dropout))

    def _params(self, k: int, suffix: str) -> tuple[Parameter, Parameter, Any, Any]:
        p = [getattr(self, f"{n}_l{k}{suffix}", None) for n in ("weight_ih", "weight_hh")]
        b = [getattr(self, f"{n}_l{k}{suffix}", None) for n in ("bias_ih", "bias_hh")]
        return p[0], p[1], b[0], b[1]

    def _check(self, xp: Any, x: Any) -> None:
        who = type(self).__name__
        if x.ndim not in (2, 3) or x.shape[-1] != self.input_size:
            layout = "(N, T, input_size)" if self.batch_first else "(T, N, input_size)"
            layout = "(T, input_size)" if x.ndim == 2 else layout
            raise ValueError(
                f"{who}: expected input of shape {layout} with input_size = {self.input_size}, "
                f"got {tuple(x.shape)}"
            )
        if any(s == 0 for s in x.shape[:-1]):
            raise ValueError(f"{who}: input of shape {tuple(x.shape)} is empty")
        check_floating(xp, x, who)
        w = self.weight_ih_l0.value
        check_same_dtype(x, w, who)
        check_same_device(x, w, who)

    # ---------------------------------------------------------------- forward
    def _run(self, x: Any, states: list[Any]) -> tuple[Any, list[Any]]:
        """All layers and directions on batch-first ``x``; ``states`` is a list of
        ``(L*D, N, H)`` initial state arrays (h, and c for the LSTM). Returns the last layer's
        output and the final states."""
        xp = namespace(x)
        t_len = x.shape[1]
        # the previous call's caches go first (a failed forward leaves none); the NumPy loops
        # write their arrays again instead of allocating new ones (nnx/_fastrnn.py)
        previous, self._cache = self._cache, None
        caches, finals = [], [[] for _ in states]
        masks: list[Any] = []
        inp = x
        for k in range(self.num_layers):
            outs, layer_caches = [], []
            for d, suffix in enumerate(self._suffixes()):
                params = [None if p is None else p.value for p in self._params(k, suffix)]
                index = k * self.num_directions + d
                carry = [s[index, ...] for s in states]
                fast = self._fast_kind()
                if fast is not None and not _fastconv.applies(inp, *params[:2], *carry):
                    fast = None
                if fast is not None:  # NumPy's loops take the sigmoid gates' columns halved
                    params = _fastrnn.prescale(fast, *params)
                w_ih, w_hh, b_ih, b_hh = params
                # (N, T, G*H): every time step's input part in one 2-D matmul
                n_t = inp.shape[0] * inp.shape[1]
                gi = xp.reshape(xp.reshape(inp, (n_t, inp.shape[-1])) @ w_ih, (*inp.shape[:2], -1))
                if b_ih is not None and self.FOLD_BIAS:
                    b_hh = b_ih + b_hh  # added to the step's (N, G*H) product instead
                elif b_ih is not None and is_writeable(gi):
                    gi += b_ih  # gi is the product's fresh result: no second full array
                elif b_ih is not None:
                    gi = gi + b_ih
                order = range(t_len - 1, -1, -1) if d == 1 else range(t_len)
                steps: Any
                if fast is not None:
                    with one_blas_thread(x):  # NumPy's in-place loop (nnx/_fastrnn.py)
                        old = None if previous is None else previous[k][d][1]
                        out, carry, steps = _fastrnn.forward(
                            fast, gi, carry, w_hh, b_hh, reverse=d == 1, old=old
                        )
                else:
                    hs: list[Any] = [None] * t_len
                    steps = [None] * t_len
                    with one_blas_thread(x):  # T small products in a row (see one_blas_thread)
                        for t in order:
                            carry, steps[t] = self._step(xp, gi[:, t, :], carry, w_hh, b_hh)
                            hs[t] = carry[0]
                    out = xp.stack(hs, axis=1)
                for f, c in zip(finals, carry, strict=True):
                    f.append(c)
                outs.append(out)
                layer_caches.append((inp, steps, order))
            caches.append(layer_caches)
            inp = outs[0] if len(outs) == 1 else xp.concat(outs, axis=-1)
            if k < self.num_layers - 1 and self.training and self.dropout > 0:
                masks.append(self._mask(x, tuple(inp.shape)))  # dropout between layers
                inp = inp * masks[-1]
            else:
                masks.append(None)
        self._cache, self._masks = caches, masks
        return inp, [xp.stack(f, axis=0) for f in finals]

    def _initial(self, xp: Any, x: Any, hx: Any, unbatched: bool) -> list[Any]:
        """The initial states as ``(L*D, N, H)`` arrays (zeros for ``hx=None``)."""
        who = type(self).__name__
        n = x.shape[0]
        if hx is None:
            shape = (self.num_layers * self.num_directions, n, self.hidden_size)
            return [xp.zeros(shape, dtype=x.dtype, device=device(x))] * self.STATES
        given = list(hx) if self.STATES > 1 else [hx]
        if len(given) != self.STATES:
            raise ValueError(f"{who}: hx must be a tuple (h_0, c_0)")
        lead = self.num_layers * self.num_directions
        shape = (lead, self.hidden_size) if unbatched else (lead, n, self.hidden_size)
        for s, what in zip(given, ("h_0", "c_0"), strict=False):
            if tuple(s.shape) != shape:
                raise ValueError(
                    f"{who}: {what} must have shape {shape}, got {tuple(s.shape)}"
                    + (" (the input is one unbatched sequence)" if unbatched else "")
                )
            check_same_dtype(s, x, who, what, "input")
            check_same_device(s, x, who, what, "input")
        return [xp.expand_dims(s, axis=1) for s in given] if unbatched else given

    def _forward(self, x: Any, hx: Any) -> tuple[Any, list[Any]]:
        xp = namespace(x)
        self._check(xp, x)
        self._unbatched = unbatched = x.ndim == 2
        if unbatched:
            x = xp.expand_dims(x, axis=0)  # one sequence: batch-first with N = 1
        elif not self.batch_first:
            x = xp.permute_dims(x, (1, 0, 2))
        states = self._initial(xp, x, hx, unbatched)
        out, finals = self._run(x, states)
        if unbatched:
            out, finals = out[0, ...], [f[:, 0, :] for f in finals]
        elif not self.batch_first:
            out = xp.permute_dims(out, (1, 0, 2))
        self._shapes = (tuple(out.shape), tuple(finals[0].shape))
        return out, finals

    # ---------------------------------------------------------------- backward
    def _backward(
        self, grad_output: Any, grad_finals: list[Any], need_input_grad: bool = True
    ) -> Any:
        who = type(self).__name__
        caches = require_forward(self._cache, who)
        out_shape, state_shape = self._shapes
        check_grad(grad_output, out_shape, who)
        for g in grad_finals:
            if g is not None:
                check_grad(g, state_shape, f"{who} (final state)")
        xp = namespace(grad_output)
        if self._unbatched:
            g_out = xp.expand_dims(grad_output, axis=0)
            grad_finals = [None if g is None else xp.expand_dims(g, axis=1) for g in grad_finals]
        elif not self.batch_first:
            g_out = xp.permute_dims(grad_output, (1, 0, 2))
        else:
            g_out = grad_output
        h = self.hidden_size
        n, t_len = g_out.shape[0], g_out.shape[1]
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
                w_back = _rows_transposed(xp, w_hh.value)
                if isinstance(steps, _fastrnn.LoopCache):
                    with one_blas_thread(g_out):
                        carry, gi, gh, hp = _fastrnn.backward(steps, carry, d_y, w_back)
                    same, fast_loop = gh is gi, True
                else:
                    d_gi: list[Any] = [None] * t_len
                    d_gh: list[Any] = [None] * t_len
                    h_prev: list[Any] = [None] * t_len
                    with one_blas_thread(g_out):
                        for t in reversed(list(order)):
                            carry[0] = carry[0] + d_y[:, t, :]
                            carry, d_gi[t], d_gh[t] = self._step_backward(
                                xp, steps[t], carry, w_back
                            )
                            h_prev[t] = steps[t][0]
                    # the weight gradients of all time steps in one matmul each; the RNN and
                    # the LSTM have d_gh = d_gi (the same arrays): stacked and summed once
                    gi = xp.reshape(xp.stack(d_gi, axis=1), (n * t_len, -1))
                    same = all(a is b for a, b in zip(d_gi, d_gh, strict=True))
                    fast_loop = False
                    gh = gi if same else xp.reshape(xp.stack(d_gh, axis=1), (n * t_len, -1))
                    hp = xp.reshape(xp.stack(h_prev, axis=1), (n * t_len, h))
                for grads, c in zip(init_grads, carry, strict=True):
                    grads[index] = c
                x2 = xp.reshape(inp, (n * t_len, inp.shape[-1]))
                w_ih.accumulate(x2.T @ gi)
                w_hh.accumulate(hp.T @ gh)
                if b_ih is not None:
                    # NumPy's loops: column sums as one product with a ones vector (nnx/_fastrnn.py)
                    col_sum = _fastrnn.col_sum if fast_loop else (lambda a: xp.sum(a, axis=0))
                    db = col_sum(gi)
                    b_ih.accumulate(db)
                    # its own array (a user's in-place change of one grad must not reach both)
                    b_hh.accumulate(xp.asarray(db, copy=True) if same else col_sum(gh))
                if k == 0 and not need_input_grad:
                    continue  # nobody needs dL/dx: the (N*T, G*H) x (G*H, input) product is saved
                term = xp.reshape(gi @ w_ih.value.T, (n, t_len, inp.shape[-1]))
                d_inp = term if d_inp is None else d_inp + term
            if k > 0 and self._masks[k - 1] is not None:
                d_inp = d_inp * self._masks[k - 1]  # through the dropout between layers
            g_out = d_inp
        grad_hx = [xp.stack(g, axis=0) for g in init_grads]
        if self._unbatched:
            self.grad_hx = [g[:, 0, :] for g in grad_hx]
            return None if g_out is None else g_out[0, ...]
        self.grad_hx = grad_hx
        if g_out is None:
            return None
        return g_out if self.batch_first else xp.permute_dims(g_out, (1, 0, 2))
