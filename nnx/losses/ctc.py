"""Connectionist temporal classification (CTC) loss: the negative log-likelihood of a label
sequence summed over every alignment of it to a longer sequence of per-frame class scores, by the
forward-backward recursion in log space."""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..backend import device, namespace, to_numpy
from ..core.checks import check_floating
from .base import Loss

_WHO = "CTCLoss"


def _lse(xp: Any, *arrays: Any) -> Any:
    """``log(sum(exp(a)))`` of equally shaped arrays, element-wise; -inf where all are -inf."""
    m = arrays[0]
    for a in arrays[1:]:
        m = xp.maximum(m, a)
    m = xp.where(m == -math.inf, 0.0, m)  # all -inf: exp(-inf - 0) = 0, log 0 = -inf
    total = xp.exp(arrays[0] - m)
    for a in arrays[1:]:
        total = total + xp.exp(a - m)
    # log of 0 (every entry -inf) is -inf, spelled without the division-by-zero warning
    return xp.where(total > 0, xp.log(xp.where(total > 0, total, 1.0)) + m, -math.inf)


def _lse_axis(xp: Any, a: Any, axis: int) -> Any:
    """``log(sum(exp(a), axis))``; -inf where every entry along ``axis`` is -inf."""
    m = xp.max(a, axis=axis, keepdims=True)
    m = xp.where(m == -math.inf, 0.0, m)
    total = xp.sum(xp.exp(a - m), axis=axis, keepdims=True)
    out = xp.where(total > 0, xp.log(xp.where(total > 0, total, 1.0)) + m, -math.inf)
    return xp.squeeze(out, axis=axis)


def _shift(xp: Any, a: Any, k: int, pad: Any) -> Any:
    """``a`` moved ``k`` places along axis 1 (right for k > 0, left for k < 0); ``pad``, of shape
    ``(N, min(|k|, L))``, fills the places it leaves."""
    width = a.shape[1]
    if abs(k) >= width:
        return pad
    if k > 0:
        return xp.concat([pad, a[:, : width - k]], axis=1)
    return xp.concat([a[:, -k:], pad], axis=1)


def _host_ints(value: Any, what: str) -> list[int]:
    """Lengths given as an array of any library, a Python int or a sequence of ints, as a list."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return [int(value)]
    if isinstance(value, list | tuple):
        host = list(value)
    else:
        arr = to_numpy(value)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{_WHO}: {what} must be integers, got dtype {arr.dtype}")
        if arr.ndim > 1:
            raise ValueError(f"{_WHO}: {what} must be 1-D, got shape {tuple(arr.shape)}")
        host = arr.reshape(-1).tolist()
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in host):
        raise TypeError(f"{_WHO}: {what} must be integers, got {host!r}")
    return [int(v) for v in host]


def _recursion(
    lp: Any,
    labels: Any,
    il_a: Any,
    tl_a: Any,
    per: Any,
    empty: Any,
    blank: int,
    zero_infinity: bool,
) -> tuple[Any, Any]:
    """The ``(N,)`` negative log-likelihoods and the ``(T, N, C)`` gradient w.r.t. ``lp``
    (scaled by ``per``, one factor per sequence); ``empty`` is each loss for an input length
    of 0. One step per frame, each vectorized over the batch and the extended labels (``jax.jit``
    of this unrolled loop would compile for a long time at long inputs)."""
    xp = namespace(lp)
    num_t, n, num_classes = lp.shape
    dev, dtype, neg = device(lp), lp.dtype, -math.inf
    width = labels.shape[1]
    if width:
        blanks = xp.full((n, width), blank, dtype=xp.int64, device=dev)
        ext = xp.reshape(xp.stack([blanks, labels], axis=2), (n, 2 * width))
        ext = xp.concat([ext, xp.full((n, 1), blank, dtype=xp.int64, device=dev)], axis=1)
    else:
        ext = xp.full((n, 1), blank, dtype=xp.int64, device=dev)
    size = ext.shape[1]  # L = 2 max(U) + 1
    s = xp.arange(size, device=dev)[None, :]
    tl_a = tl_a[:, None]
    valid = s < 2 * tl_a + 1
    end = (s == 2 * tl_a) | (s == 2 * tl_a - 1)
    no_skip = xp.zeros((n, min(2, size)), dtype=xp.bool, device=dev)
    skip = xp.concat([no_skip, ext[:, 2:] != ext[:, :-2]], axis=1)  # s-2 -> s allowed
    skip_left = _shift(xp, skip, -2, no_skip)  # s -> s+2 allowed
    pad1 = xp.full((n, 1), neg, dtype=dtype, device=dev)
    pad2 = xp.full((n, min(2, size)), neg, dtype=dtype, device=dev)
    minus_inf = xp.full((n, size), neg, dtype=dtype, device=dev)
    lpe = xp.take_along_axis(lp, xp.broadcast_to(ext[None, ...], (num_t, n, size)), axis=2)

    alpha = [xp.where((s <= 1) & valid, lpe[0, ...], neg)]
    for t in range(1, num_t):
        a = alpha[-1]
        a2 = xp.where(skip, _shift(xp, a, 2, pad2), neg)
        new = xp.where(valid, _lse(xp, a, _shift(xp, a, 1, pad1), a2) + lpe[t, ...], neg)
        alpha.append(xp.where((t < il_a)[:, None], new, a))  # frozen after T_n - 1
    ll = _lse_axis(xp, xp.where(end, alpha[-1], neg), axis=1)
    nll = -ll
    nll = xp.where(il_a == 0, empty, nll)  # no frames: only the empty target is possible

    beta: list[Any] = []
    for t in range(num_t - 1, -1, -1):
        first = (t == il_a - 1)[:, None]
        start = xp.where(end, lpe[t, ...], neg)
        if beta:
            b = beta[-1]
            b2 = xp.where(skip_left, _shift(xp, b, -2, pad2), neg)
            rec = xp.where(valid, _lse(xp, b, _shift(xp, b, -1, pad1), b2) + lpe[t, ...], neg)
            rec = xp.where((t < il_a - 1)[:, None], rec, neg)
        else:
            rec = minus_inf
        beta.append(xp.where(first, start, rec))
    beta.reverse()
    alpha_all, beta_all = xp.stack(alpha), xp.stack(beta)  # (T, N, L)

    finite = xp.isfinite(nll)
    nll_safe = xp.where(finite, nll, 0.0)
    lpe_safe = xp.where(lpe == neg, 0.0, lpe)  # a class of probability 0 has occupancy 0
    gamma = xp.exp(alpha_all + beta_all - lpe_safe + nll_safe[None, :, None])  # (T, N, L)
    onehot = xp.astype(ext[:, :, None] == xp.arange(num_classes, device=dev), dtype)
    occupancy = xp.permute_dims(xp.permute_dims(gamma, (1, 0, 2)) @ onehot, (1, 0, 2))
    grad = xp.exp(lp) - occupancy  # (T, N, C)
    frames = (xp.arange(num_t, device=dev)[:, None] < il_a[None, :])[:, :, None]
    bad = frames & ~finite[None, :, None]
    grad = xp.where(frames, grad, 0.0)
    grad = xp.where(bad, 0.0 if zero_infinity else math.nan, grad)
    return nll, grad * per[None, :, None]


class CTCLoss(Loss):
    """Connectionist temporal classification loss, as ``torch.nn.CTCLoss``.

    ``forward(log_probs, targets, input_lengths, target_lengths)``:

    - ``log_probs``: ``(T, N, C)`` (or ``(T, C)`` for one sequence) log-probabilities over ``C``
      classes, one of them ``blank``; normally the output of a log-softmax.
    - ``targets``: integer labels, padded ``(N, S)`` (entries past a sequence's length are
      ignored) or concatenated 1-D of length ``sum(target_lengths)`` (for one sequence: its
      ``(S,)`` labels, ``S`` its target length).
    - ``input_lengths``, ``target_lengths``: ``(N,)`` integers (arrays, Python ints or sequences),
      ``input_lengths <= T``.

    With the extended label sequence ``l'`` (a blank before, between and after the ``U`` labels,
    length ``2U + 1``), the forward variables are
    ``alpha_t(s) = lp_t(l'_s) + logsumexp(alpha_{t-1}(s), alpha_{t-1}(s-1), alpha_{t-1}(s-2))``
    (the last only where ``l'_s`` differs from ``l'_{s-2}``: a label, not a repeat), and the loss
    of a sequence of length ``T_n`` is ``-logsumexp(alpha_{T_n - 1}(2U), alpha_{T_n - 1}(2U-1))``;
    the backward variables ``beta`` run the same recursion from the end. The whole computation is
    vectorized over the batch and ``s``, with one step per frame.

    ``reduction="mean"`` divides each loss by its target length (at least 1) and averages over
    the batch; ``"sum"`` adds; ``"none"`` returns ``(N,)`` (a 0-d array for one sequence). An
    input too short for its target (no alignment) has loss ``inf``; ``zero_infinity=True`` makes
    those losses and their gradients 0.

    ``backward`` returns PyTorch's gradient with respect to ``log_probs``:
    ``exp(lp_t(c)) - sum_{s: l'_s = c} exp(alpha_t(s) + beta_t(s) - lp_t(c) + loss)`` for
    ``t < T_n`` (0 after), scaled by the reduction. This is the gradient of the loss composed with
    a log-softmax (the term ``exp(lp)`` sums with the rest to 0 over the classes), which is how
    PyTorch defines it; it assumes ``log_probs`` are normalized. Where the loss is ``inf`` (and
    ``zero_infinity`` is off) it is NaN for ``t < T_n``, as in PyTorch. The lengths and targets
    are read on the host (for the checks and the sizes), as PyTorch's CPU kernel does.
    """

    def __init__(self, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False):
        super().__init__(reduction)
        if isinstance(blank, bool) or not isinstance(blank, numbers.Integral) or blank < 0:
            raise ValueError(f"{_WHO}: blank must be an integer >= 0, got {blank!r}")
        self.blank = int(blank)
        self.zero_infinity = bool(zero_infinity)

    def extra_repr(self) -> str:
        return f"blank={self.blank}, {super().extra_repr()}, zero_infinity={self.zero_infinity}"

    def _expand(self, grad_out: Any) -> Any:
        return namespace(grad_out).reshape(grad_out, (1, -1, 1))

    def _padded_targets(
        self, xp: Any, targets: Any, tl: list[int], n: int, num_classes: int
    ) -> Any:
        """``targets`` as ``(N, max(tl))`` int64 with the blank past each length (host checks)."""
        if not xp.isdtype(targets.dtype, "integral"):
            raise TypeError(f"{_WHO}: targets must be integers, got dtype {targets.dtype}")
        width = max(tl, default=0)
        dev = device(targets)
        if targets.ndim == 1:  # concatenated
            if targets.shape[0] != sum(tl):
                raise ValueError(
                    f"{_WHO}: concatenated targets have length {targets.shape[0]} but "
                    f"target_lengths sum to {sum(tl)}"
                )
            starts = [sum(tl[:i]) for i in range(n)]
            index = [s + min(j, max(k - 1, 0)) for s, k in zip(starts, tl, strict=True)
                     for j in range(width)]  # fmt: skip
            flat = xp.asarray(index, dtype=xp.int64, device=dev)
            if targets.shape[0] == 0:
                padded = xp.zeros((n, width), dtype=xp.int64, device=dev)
            else:
                padded = xp.reshape(xp.take(xp.astype(targets, xp.int64), flat, axis=0), (n, width))
        else:
            if targets.ndim != 2 or targets.shape[0] != n:
                raise ValueError(
                    f"{_WHO}: padded targets must have shape (N, S) = ({n}, S), got "
                    f"{tuple(targets.shape)}"
                )
            if width > targets.shape[1]:
                raise ValueError(
                    f"{_WHO}: a target length of {width} is longer than the padded targets' "
                    f"{targets.shape[1]} columns"
                )
            padded = xp.astype(targets[:, :width], xp.int64)
        inside = xp.arange(width, device=dev)[None, :] < xp.asarray(tl, device=dev)[:, None]
        padded = xp.where(inside, padded, self.blank)
        if width:
            lo, hi = int(xp.min(padded)), int(xp.max(padded))
            if lo < 0 or hi >= num_classes:
                raise ValueError(
                    f"{_WHO}: target labels must be in [0, {num_classes - 1}] for log_probs of "
                    f"{num_classes} classes, got values in [{lo}, {hi}]"
                )
        return padded

    def forward(self, log_probs: Any, targets: Any, input_lengths: Any, target_lengths: Any) -> Any:
        xp = namespace(log_probs)
        check_floating(xp, log_probs, _WHO, "log_probs")
        if log_probs.ndim not in (2, 3) or 0 in tuple(log_probs.shape):
            raise ValueError(
                f"{_WHO}: log_probs must have shape (T, N, C) or (T, C) with no empty axis, got "
                f"{tuple(log_probs.shape)}"
            )
        unbatched = log_probs.ndim == 2
        if unbatched:
            log_probs = xp.expand_dims(log_probs, axis=1)
            if getattr(targets, "ndim", 1) != 1:
                raise ValueError(
                    f"{_WHO}: one sequence (log_probs (T, C)) takes targets of shape (S,), got "
                    f"{tuple(targets.shape)}"
                )
        num_t, n, num_classes = log_probs.shape
        if self.blank >= num_classes:
            raise ValueError(
                f"{_WHO}: blank {self.blank} is out of the label range [0, {num_classes - 1}] of "
                f"log_probs with {num_classes} classes"
            )
        il = _host_ints(input_lengths, "input_lengths")
        tl = _host_ints(target_lengths, "target_lengths")
        for what, lengths in (("input_lengths", il), ("target_lengths", tl)):
            if len(lengths) != n:
                raise ValueError(f"{_WHO}: {what} has {len(lengths)} entries for a batch of {n}")
            if min(lengths) < 0:
                raise ValueError(f"{_WHO}: {what} must be >= 0, got {min(lengths)}")
        if max(il) > num_t:
            raise ValueError(
                f"{_WHO}: input_lengths must be at most T = {num_t} (log_probs' first axis), got "
                f"{max(il)}"
            )
        labels = self._padded_targets(xp, targets, tl, n, num_classes)
        lp = self.widen(log_probs)[0]
        dev, dtype = device(lp), lp.dtype
        il_a, tl_a = xp.asarray(il, device=dev), xp.asarray(tl, device=dev)
        mean = self.reduction == "mean"
        per = xp.asarray(
            [1.0 / (n * max(k, 1)) if mean else 1.0 for k in tl], dtype=dtype, device=dev
        )
        empty = xp.asarray([0.0 if k == 0 else math.inf for k in tl], dtype=dtype, device=dev)
        args = (lp, labels, il_a, tl_a, per, empty)
        nll, grad = _recursion(*args, blank=self.blank, zero_infinity=self.zero_infinity)
        self.save_grad(xp.reshape(grad, (num_t, num_classes)) if unbatched else grad)
        values = xp.where(nll == math.inf, 0.0, nll) if self.zero_infinity else nll
        if self.reduction == "mean":
            values = values / xp.asarray([max(k, 1) for k in tl], dtype=values.dtype, device=dev)
        if unbatched:
            values = xp.reshape(values, ())
        return self.reduce(values)
