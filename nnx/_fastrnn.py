"""NumPy fast path of the LSTM and Elman RNN time loops (forward and backward through time of
:class:`nnx.LSTM` and :class:`nnx.RNN`): the same operations, in the same order, as
:func:`nnx.layers.recurrent.steps.lstm_step`, :func:`~nnx.layers.recurrent.steps.rnn_step` and
their backward steps, and likewise the GRU's (:func:`gru_forward`), written in place into
arrays made once per call.

Why: at the benchmark size (hidden 256, batch 64, 64 steps) one step's gate math is about twenty
NumPy operations on ``(64, 256)`` arrays, each allocating its result, and the portable loop then
stacks the 64 per-step outputs, the cached ``h_{t-1}`` and the 64 gate gradients (16 MB) into the
arrays the big products need. Here every step writes its gates, ``c_t``, ``tanh(c_t)`` and
``h_t`` into its slice of time-major caches and of the ``(N, T, H)`` output, and the backward
writes each step's gate gradient straight into its slice of the ``(N, T, 4H)`` array that the
weight-gradient products read: no per-step allocations, no stacking.

Only NumPy arrays take this path (:func:`nnx._fastconv.applies`, switched off for tests by
:func:`nnx._fastconv.portable_only`); tests check both paths agree
(``tests/layers/test_recurrent_fastpath.py``). It lives outside ``nnx/layers/``, whose code imports no
array library (``tests/test_portability.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class LSTMCache:
    """What the backward needs of one layer and direction: the activated gates ``[i, f, g, o]``
    ``(T, N, 4H)``, ``c_t`` and ``tanh(c_t)`` ``(T, N, H)``, the output ``h`` ``(N, T, H)``, the
    initial states and the order the steps ran in."""

    gates: np.ndarray
    c: np.ndarray
    tc: np.ndarray
    out: np.ndarray
    h0: np.ndarray
    c0: np.ndarray
    order: list[int]


runs = 0  # how many times the fast forward ran (tests check that it did)


def _prev(cache_or_order: list[int], k: int) -> int | None:
    """The time index of the step run before the ``k``-th one (None for the first)."""
    return None if k == 0 else cache_or_order[k - 1]


def lstm_forward(
    gi: np.ndarray, carry: list[np.ndarray], w_hh: np.ndarray, b_hh: Any, reverse: bool
) -> tuple[np.ndarray, list[np.ndarray], LSTMCache]:
    """All steps of one direction: ``gi`` ``(N, T, 4H)``, ``carry = [h0, c0]`` ``(N, H)``.
    Returns the output ``(N, T, H)``, the final ``[h, c]`` and the cache for
    :func:`lstm_backward`."""
    global runs
    runs += 1
    n, t_len, g4 = gi.shape
    hs = g4 // 4
    dt = gi.dtype
    h0, c0 = carry
    order = list(range(t_len - 1, -1, -1)) if reverse else list(range(t_len))
    gates = np.empty((t_len, n, g4), dt)
    cs = np.empty((t_len, n, hs), dt)
    tcs = np.empty((t_len, n, hs), dt)
    out = np.empty((n, t_len, hs), dt)
    ig = np.empty((n, hs), dt)
    scale = np.full(g4, 0.5, dt)
    scale[2 * hs : 3 * hs] = 1.0
    shift = np.full(g4, 0.5, dt)
    shift[2 * hs : 3 * hs] = 0.0
    for k, t in enumerate(order):
        p = _prev(order, k)
        h_prev, c_prev = (h0, c0) if p is None else (out[:, p, :], cs[p])
        a = gates[t]
        np.matmul(h_prev, w_hh, out=a)
        if b_hh is not None:
            a += b_hh  # gi + (h W_hh + b): addition commutes exactly
        a += gi[:, t, :]
        # sigmoid(x) = 0.5 + 0.5 tanh(0.5 x) on i, f, o and tanh on g, over whole contiguous rows
        # (NumPy's tanh on a column slice took ~1.7x as long per element): x 1 + 0 leaves g be
        a *= scale
        np.tanh(a, out=a)
        a *= scale
        a += shift
        i, f, g, o = (a[:, j * hs : (j + 1) * hs] for j in range(4))
        c = cs[t]
        np.multiply(f, c_prev, out=c)
        np.multiply(i, g, out=ig)
        c += ig
        np.tanh(c, out=tcs[t])
        np.multiply(o, tcs[t], out=out[:, t, :])
    last = order[-1]
    cache = LSTMCache(gates, cs, tcs, out, h0, c0, order)
    # the caller gets copies: changing them in place must not change the backward
    return out.copy(), [out[:, last, :].copy(), cs[last].copy()], cache


def lstm_backward(
    cache: LSTMCache, carry: list[np.ndarray], d_y: np.ndarray, w_back: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Backward through time of :func:`lstm_forward`: ``carry = [dh, dc]`` of the final states,
    ``d_y`` ``(N, T, H)`` the output's gradient, ``w_back`` with ``w_back.T`` the ``(4H, H)``
    matrix of ``dh_{t-1} = da W_hh^T``. Returns the initial states' gradients, the gate
    gradients ``(N*T, 4H)`` and ``h_{t-1}`` ``(N*T, H)`` in the rows of ``(N, T)``."""
    gates, cs, tcs, out, order = cache.gates, cache.c, cache.tc, cache.out, cache.order
    t_len, n, g4 = gates.shape
    hs = g4 // 4
    dt = gates.dtype
    wt = w_back.T
    dh = np.array(carry[0], dtype=dt, copy=True)
    dc = np.array(carry[1], dtype=dt, copy=True)
    das = np.empty((n, t_len, g4), dt)
    do = np.empty((n, hs), dt)
    t1 = np.empty((n, hs), dt)
    t2 = np.empty((n, hs), dt)
    for k in range(t_len - 1, -1, -1):
        t = order[k]
        p = _prev(order, k)
        c_prev = cache.c0 if p is None else cs[p]
        a, tc = gates[t], tcs[t]
        i, f, g, o = (a[:, j * hs : (j + 1) * hs] for j in range(4))
        dh += d_y[:, t, :]
        np.multiply(dh, tc, out=do)
        np.multiply(tc, tc, out=t1)  # dc += dh o (1 - tc^2)
        np.subtract(1.0, t1, out=t1)
        np.multiply(dh, o, out=t2)
        t2 *= t1
        dc += t2
        da = das[:, t, :]
        v = da[:, :hs]  # dc g i (1 - i)
        np.multiply(dc, g, out=v)
        v *= i
        np.subtract(1.0, i, out=t1)
        v *= t1
        v = da[:, hs : 2 * hs]  # dc c_{t-1} f (1 - f)
        np.multiply(dc, c_prev, out=v)
        v *= f
        np.subtract(1.0, f, out=t1)
        v *= t1
        v = da[:, 2 * hs : 3 * hs]  # dc i (1 - g^2)
        np.multiply(dc, i, out=v)
        np.multiply(g, g, out=t1)
        np.subtract(1.0, t1, out=t1)
        v *= t1
        v = da[:, 3 * hs :]  # do o (1 - o)
        np.multiply(do, o, out=v)
        np.subtract(1.0, o, out=t1)
        v *= t1
        np.matmul(da, wt, out=dh)
        dc *= f
    return [dh, dc], das.reshape(n * t_len, g4), _h_prev(out, cache.h0, order)


@dataclass
class RNNCache:
    """What the Elman RNN's backward needs: the output ``h`` ``(N, T, H)``, ``h0``, the order
    of the steps and the nonlinearity."""

    out: np.ndarray
    h0: np.ndarray
    order: list[int]
    relu: bool


def _h_prev(out: np.ndarray, h0: np.ndarray, order: list[int]) -> np.ndarray:
    """``h_{t-1}`` of every step ``(N*T, H)`` in ``(N, T)`` order: the initial state, then the
    outputs shifted by one (towards the end for the reverse direction)."""
    n, t_len, hs = out.shape
    first = h0[:, None, :]
    if order[0] == 0:
        hp = np.concatenate([first, out[:, :-1, :]], axis=1)
    else:
        hp = np.concatenate([out[:, 1:, :], first], axis=1)
    return hp.reshape(n * t_len, hs)


def rnn_forward(
    gi: np.ndarray, carry: list[np.ndarray], w_hh: np.ndarray, b_hh: Any, reverse: bool, relu: bool
) -> tuple[np.ndarray, list[np.ndarray], RNNCache]:
    """All steps of one direction of the Elman RNN: ``h_t = act(gi_t + (h_{t-1} W_hh + b))``
    written into the ``(N, T, H)`` output."""
    global runs
    runs += 1
    n, t_len, hs = gi.shape
    (h0,) = carry
    order = list(range(t_len - 1, -1, -1)) if reverse else list(range(t_len))
    out = np.empty((n, t_len, hs), gi.dtype)
    a = np.empty((n, hs), gi.dtype)
    for k, t in enumerate(order):
        p = _prev(order, k)
        np.matmul(h0 if p is None else out[:, p, :], w_hh, out=a)
        if b_hh is not None:
            a += b_hh
        a += gi[:, t, :]
        if relu:
            np.maximum(a, 0.0, out=out[:, t, :])
        else:
            np.tanh(a, out=out[:, t, :])
    return out.copy(), [out[:, order[-1], :].copy()], RNNCache(out, h0, order, relu)


def rnn_backward(
    cache: RNNCache, carry: list[np.ndarray], d_y: np.ndarray, w_back: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Backward through time of :func:`rnn_forward`; returns as :func:`lstm_backward` does."""
    out, order = cache.out, cache.order
    n, t_len, hs = out.shape
    dt = out.dtype
    wt = w_back.T
    dh = np.array(carry[0], dtype=dt, copy=True)
    das = np.empty((n, t_len, hs), dt)
    t1 = np.empty((n, hs), dt)
    for k in range(t_len - 1, -1, -1):
        t = order[k]
        dh += d_y[:, t, :]
        h, da = out[:, t, :], das[:, t, :]
        if cache.relu:  # dh [h > 0]
            np.greater(h, 0.0, out=t1)
        else:  # dh (1 - h^2)
            np.multiply(h, h, out=t1)
            np.subtract(1.0, t1, out=t1)
        np.multiply(dh, t1, out=da)
        np.matmul(da, wt, out=dh)
    return [dh], das.reshape(n * t_len, hs), _h_prev(out, cache.h0, order)


@dataclass
class GRUCache:
    """What the GRU's backward needs: the activated ``[r, z]`` ``(T, N, 2H)``, ``n`` and
    ``h_n = h_{t-1} W_hn + b_hn`` ``(T, N, H)``, the output, ``h0`` and the order of the steps."""

    rz: np.ndarray
    n: np.ndarray
    hn: np.ndarray
    out: np.ndarray
    h0: np.ndarray
    order: list[int]


def gru_forward(
    gi: np.ndarray, carry: list[np.ndarray], w_hh: np.ndarray, b_hh: Any, reverse: bool
) -> tuple[np.ndarray, list[np.ndarray], GRUCache]:
    """All steps of one direction of the GRU (:func:`nnx.layers.recurrent.steps.gru_step`):
    ``r, z = sigmoid(gi_rz + gh_rz)``, ``n = tanh(gi_n + r h_n)``, ``h_t = n + z (h_{t-1} -
    n)`` (``= (1 - z) n + z h_{t-1}``) with ``gh = h_{t-1} W_hh + b_hh``, written in place."""
    global runs
    runs += 1
    n, t_len, g3 = gi.shape
    hs = g3 // 3
    dt = gi.dtype
    (h0,) = carry
    order = list(range(t_len - 1, -1, -1)) if reverse else list(range(t_len))
    rzs = np.empty((t_len, n, 2 * hs), dt)
    ns = np.empty((t_len, n, hs), dt)
    ghs = np.empty((t_len, n, g3), dt)  # h_{t-1} W_hh + b_hh; its last third h_n is kept
    out = np.empty((n, t_len, hs), dt)
    tmp = np.empty((n, hs), dt)
    for k, t in enumerate(order):
        p = _prev(order, k)
        h_prev = h0 if p is None else out[:, p, :]
        gh = ghs[t]
        np.matmul(h_prev, w_hh, out=gh)
        if b_hh is not None:
            gh += b_hh
        a = rzs[t]
        np.add(gi[:, t, : 2 * hs], gh[:, : 2 * hs], out=a)
        a *= 0.5  # sigmoid(x) = 0.5 + 0.5 tanh(0.5 x), over whole contiguous rows
        np.tanh(a, out=a)
        a *= 0.5
        a += 0.5
        r, z = a[:, :hs], a[:, hs:]
        h_n, nt = gh[:, 2 * hs :], ns[t]
        np.multiply(r, h_n, out=nt)
        nt += gi[:, t, 2 * hs :]
        np.tanh(nt, out=nt)
        np.subtract(h_prev, nt, out=tmp)
        tmp *= z
        np.add(nt, tmp, out=out[:, t, :])
    hns = ghs[:, :, 2 * hs :]
    return out.copy(), [out[:, order[-1], :].copy()], GRUCache(rzs, ns, hns, out, h0, order)


def gru_backward(
    cache: GRUCache, carry: list[np.ndarray], d_y: np.ndarray, w_back: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Backward through time of :func:`gru_forward`
    (:func:`nnx.layers.recurrent.steps.gru_step_backward`): ``da_n = dh (1-z)(1-n^2)``,
    ``da_r = da_n h_n r(1-r)``, ``da_z = dh (h_{t-1}-n) z(1-z)``, ``d_gi = [da_r, da_z,
    da_n]``, ``d_gh = [da_r, da_z, da_n r]``, ``dh_{t-1} = dh z + d_gh W_hh^T``. Returns the
    initial state's gradient, ``d_gi`` and ``d_gh`` ``(N*T, 3H)`` and ``h_{t-1}`` ``(N*T, H)``."""
    out, order = cache.out, cache.order
    n, t_len, hs = out.shape
    dt = out.dtype
    wt = w_back.T
    dh = np.array(carry[0], dtype=dt, copy=True)
    dgi = np.empty((n, t_len, 3 * hs), dt)
    dgh = np.empty((n, t_len, 3 * hs), dt)
    t1 = np.empty((n, hs), dt)
    back = np.empty((n, hs), dt)
    for k in range(t_len - 1, -1, -1):
        t = order[k]
        p = _prev(order, k)
        h_prev = cache.h0 if p is None else out[:, p, :]
        dh += d_y[:, t, :]
        r, z = cache.rz[t][:, :hs], cache.rz[t][:, hs:]
        nt, h_n = cache.n[t], cache.hn[t]
        gi_t, gh_t = dgi[:, t, :], dgh[:, t, :]
        vn = gi_t[:, 2 * hs :]  # dh (1 - z)(1 - n^2)
        np.subtract(1.0, z, out=vn)
        vn *= dh
        np.multiply(nt, nt, out=t1)
        np.subtract(1.0, t1, out=t1)
        vn *= t1
        vr = gi_t[:, :hs]  # da_n h_n r (1 - r)
        np.multiply(vn, h_n, out=vr)
        vr *= r
        np.subtract(1.0, r, out=t1)
        vr *= t1
        vz = gi_t[:, hs : 2 * hs]  # dh (h_{t-1} - n) z (1 - z)
        np.subtract(h_prev, nt, out=vz)
        vz *= dh
        vz *= z
        np.subtract(1.0, z, out=t1)
        vz *= t1
        np.copyto(gh_t[:, : 2 * hs], gi_t[:, : 2 * hs])
        np.multiply(vn, r, out=gh_t[:, 2 * hs :])
        np.matmul(gh_t, wt, out=back)
        dh *= z
        dh += back
    return (
        [dh],
        dgi.reshape(n * t_len, 3 * hs),
        dgh.reshape(n * t_len, 3 * hs),
        _h_prev(out, cache.h0, order),
    )


def col_sum(a: np.ndarray) -> np.ndarray:
    """``sum(a, axis=0)`` of a ``(rows, cols)`` gate-gradient array as one matrix-vector product
    (a bias gradient): NumPy's reduction over the leading axis of a ``(4096, 1024)`` float32
    array took a little longer (0.65 against 0.55 ms, one thread, under load) and is no more
    accurate there."""
    return np.ones(a.shape[0], a.dtype) @ a


def forward(
    kind: str, gi: np.ndarray, carry: list[np.ndarray], w_hh: np.ndarray, b_hh: Any, reverse: bool
) -> tuple[np.ndarray, list[np.ndarray], LSTMCache | RNNCache | GRUCache]:
    """One direction's time loop: ``kind`` is ``"lstm"``, ``"gru"``, ``"tanh"`` or ``"relu"``
    (the RNN)."""
    if kind == "lstm":
        return lstm_forward(gi, carry, w_hh, b_hh, reverse)
    if kind == "gru":
        return gru_forward(gi, carry, w_hh, b_hh, reverse)
    return rnn_forward(gi, carry, w_hh, b_hh, reverse, relu=kind == "relu")


def backward(
    cache: LSTMCache | RNNCache | GRUCache,
    carry: list[np.ndarray],
    d_y: np.ndarray,
    w_back: np.ndarray,
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """The backward through time of :func:`forward`'s loop: the initial states' gradients, the
    gate gradients of the input and of the hidden part (the same array but for the GRU) and
    ``h_{t-1}``."""
    if isinstance(cache, GRUCache):
        return gru_backward(cache, carry, d_y, w_back)
    if isinstance(cache, LSTMCache):
        carry, gi, hp = lstm_backward(cache, carry, d_y, w_back)
    else:
        carry, gi, hp = rnn_backward(cache, carry, d_y, w_back)
    return carry, gi, gi, hp
