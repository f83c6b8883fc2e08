"""One time step of the Elman RNN, the LSTM and the GRU, and its backward: the one home of the
gate math, used by the sequence layers (``RNN``, ``LSTM``, ``GRU``) and the cells.

Every step takes ``gi = x_t W_ih + b_ih`` (the input part, ``(N, G*H)``; the sequence layers
compute it for all time steps in one product), the carried states ``carry`` (``[h]``, or
``[h, c]`` for the LSTM, each ``(N, H)``), ``w_hh`` ``(H, G*H)`` and ``b_hh`` ``(G*H,)`` or None.
It returns the new states and a cache whose first entry is ``h_{t-1}``.

Every step backward takes that cache and the gradients of the new states (``[dh]`` or
``[dh, dc]``, the output gradient of the step already added to ``dh``) and returns the gradients
of the previous states, ``d_gi`` (the gradient of ``gi``: ``dx_t = d_gi W_ih^T``,
``dW_ih += x_t^T d_gi``, ``db_ih += sum d_gi``) and ``d_gh`` (the gradient of
``h_{t-1} W_hh + b_hh``: ``dW_hh += h_{t-1}^T d_gh``, ``db_hh += sum d_gh``). The caller does
those products, over all time steps at once where it can.
"""

from __future__ import annotations

from typing import Any


def sigmoid(xp: Any, a: Any) -> Any:
    """``1 / (1 + exp(-a))`` as ``0.5 + 0.5 tanh(a / 2)``: no overflow for large ``|a|``."""
    return 0.5 + 0.5 * xp.tanh(0.5 * a)


def _hh(h_prev: Any, w_hh: Any, b_hh: Any) -> Any:
    gh = h_prev @ w_hh
    return gh if b_hh is None else gh + b_hh


# ------------------------------------------------------------------ Elman RNN
def rnn_step(
    xp: Any, gi: Any, carry: list[Any], w_hh: Any, b_hh: Any, relu: bool = False
) -> tuple[list[Any], tuple[Any, ...]]:
    """``h_t = act(gi + h_{t-1} W_hh + b_hh)``, ``act`` = tanh or ReLU."""
    (h_prev,) = carry
    a = gi + _hh(h_prev, w_hh, b_hh)
    h = xp.maximum(a, 0.0) if relu else xp.tanh(a)
    return [h], (h_prev, h)


def rnn_step_backward(
    xp: Any, cache: tuple[Any, ...], carry: list[Any], w_hh: Any, relu: bool = False
) -> tuple[list[Any], Any, Any]:
    """``da = dh (1 - h_t^2)`` (tanh) or ``dh [h_t > 0]`` (ReLU); ``dh_{t-1} = da W_hh^T``."""
    _, h = cache
    (dh,) = carry
    da = dh * xp.astype(h > 0.0, dh.dtype) if relu else dh * (1.0 - h * h)
    return [da @ w_hh.T], da, da


# ------------------------------------------------------------------ LSTM
def lstm_step(
    xp: Any, gi: Any, carry: list[Any], w_hh: Any, b_hh: Any
) -> tuple[list[Any], tuple[Any, ...]]:
    """Gates i, f, g, o of ``a = gi + h_{t-1} W_hh + b_hh``; ``c_t = f c_{t-1} + i g``,
    ``h_t = o tanh(c_t)``."""
    h_prev, c_prev = carry
    a = gi + _hh(h_prev, w_hh, b_hh)
    hs = w_hh.shape[0]
    i_f = sigmoid(xp, a[:, : 2 * hs])  # i and f side by side: one call per operation
    i, f = i_f[:, :hs], i_f[:, hs:]
    g = xp.tanh(a[:, 2 * hs : 3 * hs])
    o = sigmoid(xp, a[:, 3 * hs :])
    c = f * c_prev + i * g
    tc = xp.tanh(c)
    h = o * tc
    return [h, c], (h_prev, c_prev, i, f, g, o, tc)


def lstm_step_backward(
    xp: Any, cache: tuple[Any, ...], carry: list[Any], w_hh: Any
) -> tuple[list[Any], Any, Any]:
    """``do = dh tanh(c_t)``, ``dc += dh o (1 - tanh(c_t)^2)``, then
    ``da = [dc g i(1-i), dc c_{t-1} f(1-f), dc i (1-g^2), do o(1-o)]``;
    ``dc_{t-1} = dc f``, ``dh_{t-1} = da W_hh^T``."""
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


# ------------------------------------------------------------------ GRU
def gru_step(
    xp: Any, gi: Any, carry: list[Any], w_hh: Any, b_hh: Any
) -> tuple[list[Any], tuple[Any, ...]]:
    """``r = sigmoid(x_r + h_r)``, ``z = sigmoid(x_z + h_z)``, ``n = tanh(x_n + r h_n)``,
    ``h_t = (1 - z) n + z h_{t-1}`` with ``[h_r, h_z, h_n] = h_{t-1} W_hh + b_hh``."""
    (h_prev,) = carry
    gh = _hh(h_prev, w_hh, b_hh)
    hs = w_hh.shape[0]
    r = sigmoid(xp, gi[:, :hs] + gh[:, :hs])
    z = sigmoid(xp, gi[:, hs : 2 * hs] + gh[:, hs : 2 * hs])
    h_n = gh[:, 2 * hs :]
    n = xp.tanh(gi[:, 2 * hs :] + r * h_n)
    h = (1.0 - z) * n + z * h_prev
    return [h], (h_prev, r, z, n, h_n)


def gru_step_backward(
    xp: Any, cache: tuple[Any, ...], carry: list[Any], w_hh: Any
) -> tuple[list[Any], Any, Any]:
    """``da_n = dh (1-z)(1-n^2)``, ``da_r = da_n h_n r(1-r)``, ``da_z = dh (h_{t-1}-n) z(1-z)``;
    ``d_gi = [da_r, da_z, da_n]``, ``d_gh = [da_r, da_z, da_n r]``,
    ``dh_{t-1} = dh z + d_gh W_hh^T``."""
    h_prev, r, z, n, h_n = cache
    (dh,) = carry
    da_n = dh * (1.0 - z) * (1.0 - n * n)
    da_r = da_n * h_n * r * (1.0 - r)
    da_z = dh * (h_prev - n) * z * (1.0 - z)
    d_gi = xp.concat([da_r, da_z, da_n], axis=1)
    d_gh = xp.concat([da_r, da_z, da_n * r], axis=1)
    return [dh * z + d_gh @ w_hh.T], d_gi, d_gh
