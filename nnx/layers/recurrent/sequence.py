"""The sequence layers ``RNN``, ``LSTM`` and ``GRU``: PyTorch's equations, gate order and
parameter names (see ``base.py``) with nnx's ``(in, out)`` weights; their steps live in
``steps.py``, shared with the cells.

Inputs are ``(T, N, in)`` (``(N, T, in)`` with ``batch_first=True``; PyTorch's default
``batch_first=False``) or one unbatched sequence ``(T, in)``; states ``(num_layers * num_directions, N, H)`` (``(num_layers * num_directions, H)``
unbatched).
"""

from __future__ import annotations

from typing import Any

from ...backend import Backend
from ...core.init import Seed
from .base import _Recurrent
from .steps import (
    gru_step,
    gru_step_backward,
    lstm_step,
    lstm_step_backward,
    rnn_step,
    rnn_step_backward,
)


class RNN(_Recurrent):
    """Elman RNN, PyTorch's ``torch.nn.RNN``: for every layer and direction::

        h_t = act(x_t W_ih + b_ih + h_{t-1} W_hh + b_hh),   act = tanh or ReLU

    Backward through time (``dh`` flows from step ``t`` to ``t - 1`` and also receives the
    output gradient of step ``t``)::

        dh += dy_t
        da = dh * (1 - h_t^2)   (tanh)        da = dh * [h_t > 0]   (ReLU)
        dh_{t-1} = da W_hh^T,   dx_t = da W_ih^T
        dW_ih += x_t^T da,   dW_hh += h_{t-1}^T da,   db_ih = db_hh += sum(da)

    Shapes (``D`` = 2 if bidirectional else 1, ``L`` = num_layers): input ``(T, N, in)``
    (``(N, T, in)`` with ``batch_first=True``) or one unbatched sequence ``(T, in)``;
    ``h_0`` and ``h_n`` ``(L*D, N, H)`` (``(L*D, H)`` unbatched); output ``(T, N, D*H)``
    (both directions concatenated). Weights ``weight_ih_l{k}`` ``(in, H)``, ``weight_hh_l{k}``
    ``(H, H)`` (nnx's ``(in, out)`` layout, the transpose of PyTorch's), biases ``(H,)``;
    suffix ``_reverse`` for the backward direction.

    ``forward(x, hx=None)`` returns ``(output, h_n)`` (``hx`` is ``h_0``, zeros by default).
    ``backward(grad_output, grad_h_n=None)`` returns ``dL/dx`` and leaves ``dL/dh_0`` in
    ``grad_hx = [dh_0]``; ``need_input_grad=False`` (what :class:`~nnx.Sequential` passes the
    first trainable layer) returns None and skips the input-gradient product.

    Args:
        input_size, hidden_size, num_layers, nonlinearity (``"tanh"`` or ``"relu"``), bias,
            batch_first (False: time first, as in PyTorch), dropout, bidirectional: as in
            PyTorch; ``dropout`` acts on the outputs of every layer but the last in training
            mode, drawn by a :class:`nnx.Dropout` child, ``dropout_layer`` (seeded from ``rng``;
            ``dropout_layer.reseed(seed)`` restarts its masks, as the Trainer does before each batch).
        rng, dtype, device: initial values ``U(-1/sqrt(H), 1/sqrt(H))`` and placement.

    >>> import numpy as np, nnx
    >>> rnn = nnx.RNN(3, 4, num_layers=2, rng=0)
    >>> out, h_n = rnn(np.ones((5, 2, 3), np.float32))      # (T, N, in)
    >>> out.shape, h_n.shape
    ((5, 2, 4), (2, 2, 4))
    >>> rnn.backward(np.ones_like(out)).shape
    (5, 2, 3)
    """

    GATES = 1
    STATES = 1
    FOLD_BIAS = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            rng,
            dtype,
            device,
        )

    def _fast_kind(self) -> str:
        return self.nonlinearity

    def _step(self, xp: Any, gi: Any, carry: list[Any], w_hh: Any, b_hh: Any) -> Any:
        return rnn_step(xp, gi, carry, w_hh, b_hh, self.nonlinearity == "relu")

    def _step_backward(self, xp: Any, cache: Any, carry: list[Any], w_hh: Any) -> Any:
        return rnn_step_backward(xp, cache, carry, w_hh, self.nonlinearity == "relu")

    def forward(self, x: Any, hx: Any = None) -> tuple[Any, Any]:
        out, (h_n,) = self._forward(x, hx)
        return out, h_n

    def backward(self, grad_output: Any, grad_h_n: Any = None, need_input_grad: bool = True) -> Any:
        return self._backward(grad_output, [grad_h_n], need_input_grad)


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

    ``forward(x, hx=None)`` returns ``(output, (h_n, c_n))``; ``output`` is ``(T, N, D*H)``
    (``(N, T, D*H)`` with ``batch_first=True``; both directions concatenated),
    ``hx = (h_0, c_0)`` defaults to zeros.
    ``backward(grad_output, grad_h_n=None, grad_c_n=None)`` returns ``dL/dx`` and leaves the
    initial states' gradients in ``grad_hx = [dh_0, dc_0]`` (``need_input_grad=False``: None,
    as for :class:`RNN`).

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional: as in
            PyTorch (``batch_first=False`` by default: time first, ``(T, N, in)``);
            ``dropout`` acts on the outputs of every layer but the last in training mode,
            drawn as in :class:`RNN`.
        rng, dtype, device: initial values ``U(-1/sqrt(H), 1/sqrt(H))`` and placement.
    """

    GATES = 4
    STATES = 2
    FOLD_BIAS = True

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
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
            dropout,
            bidirectional,
            rng,
            dtype,
            device,
        )

    _step = staticmethod(lstm_step)
    _step_backward = staticmethod(lstm_step_backward)

    def _fast_kind(self) -> str:
        return "lstm"

    def forward(self, x: Any, hx: Any = None) -> tuple[Any, tuple[Any, Any]]:
        out, (h_n, c_n) = self._forward(x, hx)
        return out, (h_n, c_n)

    def backward(
        self,
        grad_output: Any,
        grad_h_n: Any = None,
        grad_c_n: Any = None,
        need_input_grad: bool = True,
    ) -> Any:
        return self._backward(grad_output, [grad_h_n, grad_c_n], need_input_grad)


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
    returns ``dL/dx`` (None with ``need_input_grad=False``) and leaves ``grad_hx = [dh_0]``.
    Arguments as for :class:`LSTM`.
    """

    GATES = 3
    STATES = 1

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
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
            dropout,
            bidirectional,
            rng,
            dtype,
            device,
        )

    _step = staticmethod(gru_step)
    _step_backward = staticmethod(gru_step_backward)

    def _fast_kind(self) -> str:
        return "gru"

    def forward(self, x: Any, hx: Any = None) -> tuple[Any, Any]:
        out, (h_n,) = self._forward(x, hx)
        return out, h_n

    def backward(self, grad_output: Any, grad_h_n: Any = None, need_input_grad: bool = True) -> Any:
        return self._backward(grad_output, [grad_h_n], need_input_grad)
