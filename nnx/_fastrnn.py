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
weight-gradient products read: no per-step allocations, no stacking. Further (issue #26):

- the columns of the sigmoid gates' parameters are halved once per call (:func:`prescale`), so
  ``sigmoid(a) = 0.5 + 0.5 tanh(0.5 a)`` needs no pass to halve ``a`` (exact: halving is exact
  in binary floating point, and the outputs equal the portable path's bit for bit in the
  tests' cases);
- the LSTM's and the GRU's gates are gate-major (``(4, N, H)`` per step, the step's product as
  four ``(H, H)`` products in one batched call), so the element-wise work runs on contiguous
  blocks instead of column slices (about half the time per element);
- ``h_{t-1}`` of every step is kept in its own array (the weight gradient reads it; the output
  is the caller's, not copied);
- a layer's next call writes the previous call's arrays again once that call's backward has
  run (:func:`_buffer`, :func:`_reusable`): no page faults of fresh memory.

Only NumPy arrays take this path (:func:`nnx._fastconv.applies`, switched off for tests by
:func:`nnx._fastconv.portable_only`); tests check both paths agree
(``tests/layers/test_recurrent_fastpath.py``). It lives outside ``nnx/layers/``, whose code imports no
array library (``tests/test_portability.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class LoopCache:
    """What every loop's cache keeps for the next call (keyword fields, after each cache's own):
    ``work``, its arrays by name (:func:`_buffer`), and ``done``, whether its backward has run,
    after which the next forward may write those arrays again (:func:`_reusable`)."""

    work: dict[str, np.ndarray] = field(default_factory=dict, kw_only=True)
    done: bool = field(default=False, kw_only=True)


@dataclass
class LSTMCache(LoopCache):
    """What the backward needs of one layer and direction: the activated gates ``[i, f, g, o]``
    ``(T, 4, N, H)``, ``c_t`` and ``tanh(c_t)`` ``(T, N, H)``, every step's ``h_{t-1}``
    ``(N, T, H)``, the initial states and the order the steps ran in."""

    gates: np.ndarray
    c: np.ndarray
    tc: np.ndarray
    hp: np.ndarray
    h0: np.ndarray
    c0: np.ndarray
    order: list[int]


runs = 0  # how many times the fast forward ran (tests check that it did)


def _sigmoid_scale(kind: str, g: int, dtype: Any) -> np.ndarray | None:
    """Per gate column, 0.5 where the gate is a sigmoid (the LSTM's i, f, o, the GRU's r, z),
    1 elsewhere (None: no sigmoid gates)."""
    if kind not in ("lstm", "gru"):
        return None
    hs = g // (4 if kind == "lstm" else 3)
    scale = np.full(g, 0.5, dtype)
    scale[2 * hs : 3 * hs] = 1.0  # the LSTM's g, the GRU's n
    return scale


def prescale(kind: str, *params: Any) -> list[Any]:
    """The parameters (``W_ih``, ``W_hh``, ``b_ih``, ``b_hh``; None for no bias) with the
    columns of the sigmoid gates times 0.5, for :func:`forward`: its loops take
    ``sigmoid(a) = 0.5 + 0.5 tanh(0.5 a)`` and get ``0.5 a`` straight from the products and the
    bias adds, which saves one pass over every step's ``(N, G*H)`` block. Halving is exact in
    binary floating point (the products and sums of halved numbers are the halves of the
    originals, bit for bit, barring subnormal numbers), so the gates equal the portable path's."""
    scale = _sigmoid_scale(kind, params[1].shape[1], params[1].dtype)
    if scale is None:
        return list(params)
    return [None if p is None else p * scale for p in params]


#: the NumPy functions of the backward loops, bound to local names there (one look-up per call)
_STEP_OPS = (np.matmul, np.add, np.subtract, np.multiply, np.copyto)


def _buffer(work: dict[str, np.ndarray], name: str, shape: tuple[int, ...], dt: Any) -> np.ndarray:
    """The array ``work[name]`` if it has this shape and dtype, else a new one kept there. A
    layer hands its previous call's cache to the next forward (and the backward keeps its gate
    gradients in the cache): the big arrays are written again instead of allocated, which at
    the benchmark size (16 MB of gates) saved the page faults of fresh memory, up to 40 ms of
    system time in a step, whenever the allocator had given the last call's memory back."""
    a = work.get(name)
    if a is None or a.shape != shape or a.dtype != dt:
        a = work[name] = np.empty(shape, dt)
    return a


def lstm_forward(
    gi: np.ndarray,
    carry: list[np.ndarray],
    w_hh: np.ndarray,
    b_hh: Any,
    reverse: bool,
    work: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, list[np.ndarray], LSTMCache]:
    """All steps of one direction: ``gi`` ``(N, T, 4H)``, ``carry = [h0, c0]`` ``(N, H)``;
    ``gi``, ``w_hh`` and ``b_hh`` from the parameters of :func:`prescale` (their i, f, o
    columns halved). Returns the output ``(N, T, H)``, the final ``[h, c]`` and the cache for
    :func:`lstm_backward`.

    The gates are kept gate-major, ``(T, 4, N, H)``: the step's product is four ``(N, H) x (H,
    H)`` products in one call (as fast as one ``(N, H) x (H, 4H)``), and every gate of a step
    is then one contiguous block: NumPy's element-wise operations on ``(N, H)`` column slices
    of an ``(N, 4H)`` array took about twice as long."""
    global runs
    runs += 1
    n, t_len, g4 = gi.shape
    hs = g4 // 4
    dt = gi.dtype
    h0, c0 = carry
    order = list(range(t_len - 1, -1, -1)) if reverse else list(range(t_len))
    work = {} if work is None else work
    gates = _buffer(work, "gates", (t_len, 4, n, hs), dt)
    cs = _buffer(work, "c", (t_len, n, hs), dt)
    tcs = _buffer(work, "tc", (t_len, n, hs), dt)
    hp = _buffer(work, "hp", (n, t_len, hs), dt)  # h_{t-1} of every step (weight gradient)
    out = np.empty((n, t_len, hs), dt)  # the caller's: always new
    ig = np.empty((n, hs), dt)
    w4 = np.ascontiguousarray(w_hh.reshape(hs, 4, hs).transpose(1, 0, 2))  # (4, H, H)
    b4 = None if b_hh is None else b_hh.reshape(4, 1, hs)
    # after tanh: x 0.5 + 0.5 on i, f, o (sigmoid), x 1 + 0 on g (tanh)
    scale = np.array([0.5, 0.5, 1.0, 0.5], dt).reshape(4, 1, 1)
    shift = np.array([0.5, 0.5, 0.0, 0.5], dt).reshape(4, 1, 1)
    # (T, ...) views made once: a step takes its slices by one index
    gi_t = gi.reshape(n, t_len, 4, hs).transpose(1, 2, 0, 3)  # (T, 4, N, H)
    out_t, hp_t = out.transpose(1, 0, 2), hp.transpose(1, 0, 2)
    matmul, add, multiply, tanh = np.matmul, np.add, np.multiply, np.tanh
    hp_t[order[0]] = h0
    c_prev = c0
    for k, t in enumerate(order):
        a = gates[t]
        matmul(hp_t[t], w4, out=a)
        if b4 is not None:
            add(a, b4, out=a)  # gi + (h W_hh + b): addition commutes exactly
        add(a, gi_t[t], out=a)
        tanh(a, out=a)
        multiply(a, scale, out=a)
        add(a, shift, out=a)
        i, f, g, o = a
        c = cs[t]
        multiply(f, c_prev, out=c)
        multiply(i, g, out=ig)
        add(c, ig, out=c)
        tc = tcs[t]
        tanh(c, out=tc)
        h = out_t[t]
        multiply(o, tc, out=h)
        if k + 1 < t_len:
            hp_t[order[k + 1]] = h
        c_prev = c
    last = order[-1]
    cache = LSTMCache(gates, cs, tcs, hp, h0, c0, order, work=work)
    # the cache holds no view of the output or the final states: a caller may change them
    return out, [out[:, last, :].copy(), cs[last].copy()], cache


def lstm_backward(
    cache: LSTMCache, carry: list[np.ndarray], d_y: np.ndarray, w_back: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Backward through time of :func:`lstm_forward`: ``carry = [dh, dc]`` of the final states,
    ``d_y`` ``(N, T, H)`` the output's gradient, ``w_back`` with ``w_back.T`` the ``(4H, H)``
    matrix of ``dh_{t-1} = da W_hh^T``. Returns the initial states' gradients, the gate
    gradients ``(N*T, 4H)`` and ``h_{t-1}`` ``(N*T, H)`` in the rows of ``(N, T)``. A step's
    gate gradients are worked out in one contiguous ``(4, N, H)`` block and then copied into
    their ``(N, 4H)`` rows (one pass, cheaper than the element-wise work on column slices)."""
    gates, cs, tcs, order = cache.gates, cache.c, cache.tc, cache.order
    t_len, _, n, hs = gates.shape
    g4 = 4 * hs
    dt = gates.dtype
    wt = w_back.T
    dh = np.array(carry[0], dtype=dt, copy=True)
    dc = np.array(carry[1], dtype=dt, copy=True)
    das = _buffer(cache.work, "das", (n, t_len, g4), dt)  # read by the caller, then free
    d4 = np.empty((4, n, hs), dt)  # one step's gate gradients, gate-major
    di, df, dg, do = d4
    t1 = np.empty((n, hs), dt)
    t2 = np.empty((n, hs), dt)
    das_t, d_y_t = das.transpose(1, 0, 2), d_y.transpose(1, 0, 2)
    das_t4 = das.reshape(n, t_len, 4, hs).transpose(1, 2, 0, 3)  # (T, 4, N, H)
    matmul, add, subtract, multiply, copyto = _STEP_OPS  # local names in the time loop
    for k in range(t_len - 1, -1, -1):
        t = order[k]
        c_prev = cache.c0 if k == 0 else cs[order[k - 1]]
        i, f, g, o = gates[t]
        tc = tcs[t]
        add(dh, d_y_t[t], out=dh)
        multiply(dh, tc, out=do)  # d o, made o (1 - o) below
        multiply(tc, tc, out=t1)  # dc += dh o (1 - tc^2)
        subtract(1.0, t1, out=t1)
        multiply(dh, o, out=t2)
        multiply(t2, t1, out=t2)
        add(dc, t2, out=dc)
        multiply(dc, g, out=di)  # dc g i (1 - i)
        multiply(di, i, out=di)
        subtract(1.0, i, out=t1)
        multiply(di, t1, out=di)
        multiply(dc, c_prev, out=df)  # dc c_{t-1} f (1 - f)
        multiply(df, f, out=df)
        subtract(1.0, f, out=t1)
        multiply(df, t1, out=df)
        multiply(dc, i, out=dg)  # dc i (1 - g^2)
        multiply(g, g, out=t1)
        subtract(1.0, t1, out=t1)
        multiply(dg, t1, out=dg)
        multiply(do, o, out=do)  # do o (1 - o)
        subtract(1.0, o, out=t1)
        multiply(do, t1, out=do)
        copyto(das_t4[t], d4)
        matmul(das_t[t], wt, out=dh)
        multiply(dc, f, out=dc)
    return [dh, dc], das.reshape(n * t_len, g4), cache.hp.reshape(n * t_len, hs)


@dataclass
class RNNCache(LoopCache):
    """What the Elman RNN's backward needs: every step's ``h_{t-1}`` ``(N, T, H)`` (the
    weight gradient reads it; it holds every ``h_t`` but the last), the last step's ``h``,
    ``h0``, the order of the steps and the nonlinearity."""

    hp: np.ndarray
    last: np.ndarray
    h0: np.ndarray
    order: list[int]
    relu: bool


def rnn_forward(
    gi: np.ndarray,
    carry: list[np.ndarray],
    w_hh: np.ndarray,
    b_hh: Any,
    reverse: bool,
    relu: bool,
    work: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, list[np.ndarray], RNNCache]:
    """All steps of one direction of the Elman RNN: ``h_t = act(gi_t + (h_{t-1} W_hh + b))``
    written into the ``(N, T, H)`` output, and as the next step's ``h_{t-1}`` into the
    cache's own array (as the LSTM's: the output is the caller's, not copied, and the
    backward's weight gradient reads ``h_{t-1}`` with no concatenation)."""
    global runs
    runs += 1
    n, t_len, hs = gi.shape
    dt = gi.dtype
    (h0,) = carry
    order = list(range(t_len - 1, -1, -1)) if reverse else list(range(t_len))
    work = {} if work is None else work
    hp = _buffer(work, "hp", (n, t_len, hs), dt)
    out = np.empty((n, t_len, hs), dt)  # the caller's: always new
    a = np.empty((n, hs), dt)
    gi_t, out_t, hp_t = (x.transpose(1, 0, 2) for x in (gi, out, hp))
    hp_t[order[0]] = h0
    for k, t in enumerate(order):
        np.matmul(hp_t[t], w_hh, out=a)
        if b_hh is not None:
            a += b_hh
        a += gi_t[t]
        h = out_t[t]
        if relu:
            np.maximum(a, 0.0, out=h)
        else:
            np.tanh(a, out=h)
        if k + 1 < t_len:
            hp_t[order[k + 1]] = h
    last = out_t[order[-1]]
    cache = RNNCache(hp, last.copy(), h0, order, relu, work=work)
    return out, [last.copy()], cache


def rnn_backward(
    cache: RNNCache, carry: list[np.ndarray], d_y: np.ndarray, w_back: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Backward through time of :func:`rnn_forward`; returns as :func:`lstm_backward` does."""
    hp, order = cache.hp, cache.order
    n, t_len, hs = hp.shape
    dt = hp.dtype
    wt = w_back.T
    dh = np.array(carry[0], dtype=dt, copy=True)
    das = np.empty((n, t_len, hs), dt)
    t1 = np.empty((n, hs), dt)
    hp_t, das_t, d_y_t = hp.transpose(1, 0, 2), das.transpose(1, 0, 2), d_y.transpose(1, 0, 2)
    for k in range(t_len - 1, -1, -1):
        t = order[k]
        dh += d_y_t[t]
        h, da = (hp_t[order[k + 1]] if k + 1 < t_len else cache.last), das_t[t]
        if cache.relu:  # dh [h > 0]
            np.greater(h, 0.0, out=t1)
        else:  # dh (1 - h^2)
            np.multiply(h, h, out=t1)
            np.subtract(1.0, t1, out=t1)
        np.multiply(dh, t1, out=da)
        np.matmul(da, wt, out=dh)
    return [dh], das.reshape(n * t_len, hs), hp.reshape(n * t_len, hs)


@dataclass
class GRUCache(LoopCache):
    """What the GRU's backward needs: the activated ``[r, z]`` ``(T, 2, N, H)``, ``n`` and
    ``h_n = h_{t-1} W_hn + b_hn`` ``(T, N, H)``, every step's ``h_{t-1}`` ``(N, T, H)``, ``h0``
    and the order of the steps."""

    rz: np.ndarray
    n: np.ndarray
    hn: np.ndarray
    hp: np.ndarray
    h0: np.ndarray
    order: list[int]


def gru_forward(
    gi: np.ndarray,
    carry: list[np.ndarray],
    w_hh: np.ndarray,
    b_hh: Any,
    reverse: bool,
    work: dict[str, np.ndarray] | None = None,
) -> tuple[np.ndarray, list[np.ndarray], GRUCache]:
    """All steps of one direction of the GRU (:func:`nnx.layers.recurrent.steps.gru_step`):
    ``r, z = sigmoid(gi_rz + gh_rz)``, ``n = tanh(gi_n + r h_n)``, ``h_t = n + z (h_{t-1} -
    n)`` (``= (1 - z) n + z h_{t-1}``) with ``gh = h_{t-1} W_hh + b_hh``, written in place;
    ``gi``, ``w_hh`` and ``b_hh`` from the parameters of :func:`prescale` (their r, z columns
    halved). Gate-major as :func:`lstm_forward`: ``gh`` ``(3, N, H)`` per step."""
    global runs
    runs += 1
    n, t_len, g3 = gi.shape
    hs = g3 // 3
    dt = gi.dtype
    (h0,) = carry
    order = list(range(t_len - 1, -1, -1)) if reverse else list(range(t_len))
    work = {} if work is None else work
    rzs = _buffer(work, "rz", (t_len, 2, n, hs), dt)
    ns = _buffer(work, "n", (t_len, n, hs), dt)
    ghs = _buffer(work, "gh", (t_len, 3, n, hs), dt)  # h_{t-1} W_hh + b_hh; h_n is kept
    hp = _buffer(work, "hp", (n, t_len, hs), dt)  # h_{t-1} of every step
    out = np.empty((n, t_len, hs), dt)  # the caller's: always new
    tmp = np.empty((n, hs), dt)
    w3 = np.ascontiguousarray(w_hh.reshape(hs, 3, hs).transpose(1, 0, 2))  # (3, H, H)
    b3 = None if b_hh is None else b_hh.reshape(3, 1, hs)
    gi_t = gi.reshape(n, t_len, 3, hs).transpose(1, 2, 0, 3)  # (T, 3, N, H)
    out_t, hp_t = out.transpose(1, 0, 2), hp.transpose(1, 0, 2)
    matmul, add, subtract, multiply, tanh = np.matmul, np.add, np.subtract, np.multiply, np.tanh
    hp_t[order[0]] = h0
    for k, t in enumerate(order):
        h_prev = hp_t[t]
        gh = ghs[t]
        matmul(h_prev, w3, out=gh)
        if b3 is not None:
            add(gh, b3, out=gh)
        a, git = rzs[t], gi_t[t]
        add(git[:2], gh[:2], out=a)  # 0.5 (r, z pre-activations): prescaled
        tanh(a, out=a)  # sigmoid(x) = 0.5 + 0.5 tanh(0.5 x)
        multiply(a, 0.5, out=a)
        add(a, 0.5, out=a)
        r, z = a
        nt = ns[t]
        multiply(r, gh[2], out=nt)
        add(nt, git[2], out=nt)
        tanh(nt, out=nt)
        subtract(h_prev, nt, out=tmp)
        multiply(tmp, z, out=tmp)
        h = out_t[t]
        add(nt, tmp, out=h)
        if k + 1 < t_len:
            hp_t[order[k + 1]] = h
    hns = ghs[:, 2]
    return out, [out[:, order[-1], :].copy()], GRUCache(rzs, ns, hns, hp, h0, order, work=work)


def gru_backward(
    cache: GRUCache, carry: list[np.ndarray], d_y: np.ndarray, w_back: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Backward through time of :func:`gru_forward`
    (:func:`nnx.layers.recurrent.steps.gru_step_backward`): ``da_n = dh (1-z)(1-n^2)``,
    ``da_r = da_n h_n r(1-r)``, ``da_z = dh (h_{t-1}-n) z(1-z)``, ``d_gi = [da_r, da_z,
    da_n]``, ``d_gh = [da_r, da_z, da_n r]``, ``dh_{t-1} = dh z + d_gh W_hh^T``. Returns the
    initial state's gradient, ``d_gi`` and ``d_gh`` ``(N*T, 3H)`` and ``h_{t-1}`` ``(N*T, H)``.
    A step's gradients are worked out in a contiguous ``(3, N, H)`` block, then copied into
    their rows."""
    hp, order = cache.hp, cache.order
    n, t_len, hs = hp.shape
    dt = hp.dtype
    wt = w_back.T
    dh = np.array(carry[0], dtype=dt, copy=True)
    dgi = _buffer(cache.work, "dgi", (n, t_len, 3 * hs), dt)  # read by the caller, then free
    dgh = _buffer(cache.work, "dgh", (n, t_len, 3 * hs), dt)
    d3 = np.empty((3, n, hs), dt)  # one step's [da_r, da_z, da_n]
    vr, vz, vn = d3
    t1 = np.empty((n, hs), dt)
    back = np.empty((n, hs), dt)
    hp_t, d_y_t, dgh_t = (a.transpose(1, 0, 2) for a in (hp, d_y, dgh))
    dgi_t3, dgh_t3 = (a.reshape(n, t_len, 3, hs).transpose(1, 2, 0, 3) for a in (dgi, dgh))
    matmul, add, subtract, multiply, copyto = _STEP_OPS  # local names in the time loop
    for k in range(t_len - 1, -1, -1):
        t = order[k]
        add(dh, d_y_t[t], out=dh)
        r, z = cache.rz[t]
        nt, h_n = cache.n[t], cache.hn[t]
        subtract(1.0, z, out=vn)  # dh (1 - z)(1 - n^2)
        multiply(vn, dh, out=vn)
        multiply(nt, nt, out=t1)
        subtract(1.0, t1, out=t1)
        multiply(vn, t1, out=vn)
        multiply(vn, h_n, out=vr)  # da_n h_n r (1 - r)
        multiply(vr, r, out=vr)
        subtract(1.0, r, out=t1)
        multiply(vr, t1, out=vr)
        subtract(hp_t[t], nt, out=vz)  # dh (h_{t-1} - n) z (1 - z)
        multiply(vz, dh, out=vz)
        multiply(vz, z, out=vz)
        subtract(1.0, z, out=t1)
        multiply(vz, t1, out=vz)
        gi3, gh3 = dgi_t3[t], dgh_t3[t]
        copyto(gi3, d3)
        copyto(gh3[:2], d3[:2])
        multiply(vn, r, out=gh3[2])
        matmul(dgh_t[t], wt, out=back)
        multiply(dh, z, out=dh)
        add(dh, back, out=dh)
    return (
        [dh],
        dgi.reshape(n * t_len, 3 * hs),
        dgh.reshape(n * t_len, 3 * hs),
        hp.reshape(n * t_len, hs),
    )


def col_sum(a: np.ndarray) -> np.ndarray:
    """``sum(a, axis=0)`` of a ``(rows, cols)`` gate-gradient array as one matrix-vector product
    (a bias gradient): NumPy's reduction over the leading axis of a ``(4096, 1024)`` float32
    array took a little longer (0.65 against 0.55 ms, one thread, under load) and is no more
    accurate there."""
    return np.ones(a.shape[0], a.dtype) @ a


def forward(
    kind: str,
    gi: np.ndarray,
    carry: list[np.ndarray],
    w_hh: np.ndarray,
    b_hh: Any,
    reverse: bool,
    old: Any = None,
) -> tuple[np.ndarray, list[np.ndarray], LSTMCache | RNNCache | GRUCache]:
    """One direction's time loop: ``kind`` is ``"lstm"``, ``"gru"``, ``"tanh"`` or ``"relu"``
    (the RNN). ``old``: the same layer and direction's cache of the previous call, or None; its
    arrays are written again (:func:`_buffer`) when :func:`_reusable` says nothing needs them."""
    if kind == "lstm":
        return lstm_forward(gi, carry, w_hh, b_hh, reverse, _reusable(old, LSTMCache))
    if kind == "gru":
        return gru_forward(gi, carry, w_hh, b_hh, reverse, _reusable(old, GRUCache))
    work = _reusable(old, RNNCache)
    return rnn_forward(gi, carry, w_hh, b_hh, reverse, relu=kind == "relu", work=work)


def _reusable(old: Any, kind: type) -> dict[str, np.ndarray] | None:
    """The arrays of the previous call's cache ``old`` for the next forward to write again, or
    None (new arrays): only once that call's backward has run (``done``). Until then a container
    that calls the same layer twice in one forward (shared weights, a triplet loss's three
    passes: :func:`nnx.core.calls.capture_call_state`) still holds that cache for its own
    backward, whose arrays must not change."""
    return old.work if isinstance(old, kind) and old.done else None


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
        result = gru_backward(cache, carry, d_y, w_back)
    else:  # the LSTM and the RNN: one gate-gradient array for both weight products
        loop = lstm_backward if isinstance(cache, LSTMCache) else rnn_backward
        carry, gi, hp = loop(cache, carry, d_y, w_back)
        result = carry, gi, gi, hp
    cache.done = True  # the next forward may write its arrays (_reusable)
    return result
