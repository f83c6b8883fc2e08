"""Adaptive softmax (Grave et al., 2017): a log-softmax over a large vocabulary split into a
frequent shortlist, scored by a head layer, and rarer clusters, each behind a smaller tail
network, with its negative log-likelihood loss."""

from __future__ import annotations

import bisect
import math
import numbers
from typing import Any, NamedTuple

from ..backend import Backend, device, namespace, to_numpy
from ..core.checks import check_floating, positive_int, require_forward, widened
from ..core.init import Seed, as_rng
from ..core.module import Module, Sequential
from ..layers.linear import Linear

_WHO = "AdaptiveLogSoftmaxWithLoss"


class ASMOutput(NamedTuple):
    """What :class:`AdaptiveLogSoftmaxWithLoss` returns (PyTorch's ``_ASMoutput``): ``output``,
    the log-probability of each target ``(N,)``, and ``loss``, ``mean(-output)`` (0-d)."""

    output: Any
    loss: Any


def _log_softmax(xp: Any, z: Any) -> Any:
    """Log-softmax over axis 1 of a 2-D array, shifted by the row maximum."""
    z = z - xp.max(z, axis=1, keepdims=True)
    return z - xp.log(xp.sum(xp.exp(z), axis=1, keepdims=True))


def _onehot(xp: Any, labels: Any, size: int, dtype: Any) -> Any:
    return xp.astype(labels[:, None] == xp.arange(size, device=device(labels)), dtype)


def _check_cutoffs(cutoffs: Any, n_classes: int) -> list[int]:
    values = list(cutoffs)
    ok = (
        len(values) > 0
        and all(isinstance(c, numbers.Integral) and not isinstance(c, bool) for c in values)
        and values == sorted(values)
        and len(set(values)) == len(values)
        and min(values) >= 1
        and max(values) <= n_classes - 1
    )
    if not ok:
        raise ValueError(
            f"{_WHO}: cutoffs must be a non-empty sequence of unique, increasing integers between "
            f"1 and n_classes - 1 = {n_classes - 1}, got {values!r}"
        )
    return [int(c) for c in values]


class AdaptiveLogSoftmaxWithLoss(Module):
    """Adaptive softmax with its loss, as ``torch.nn.AdaptiveLogSoftmaxWithLoss``.

    The classes ``0 .. n_classes - 1`` are split by ``cutoffs = [c_0, c_1, ...]`` into a
    shortlist ``[0, c_0)`` and clusters ``[c_i, c_{i+1})`` (the last ends at ``n_classes``). The
    ``head`` (``Linear(in_features, c_0 + n_clusters)``, bias when ``head_bias``) scores the
    shortlist classes and one entry per cluster; cluster ``i``'s ``tail.i`` is
    ``Linear(in_features, in_features // div_value^(i+1)) -> Linear(.., c_{i+1} - c_i)``, both
    without bias. Then ``log p(c) = log_softmax(head)[c]`` for a shortlist class and
    ``log_softmax(head)[c_0 + i] + log_softmax(tail_i)[c - c_i]`` for class ``c`` of cluster
    ``i``.

    ``forward(input, target)``: ``input`` ``(N, in_features)`` with integer ``target`` ``(N,)``,
    or ``(in_features,)`` with a 0-d target. Returns :class:`ASMOutput` ``(output, loss)``:
    ``output = log p(target)`` ``(N,)`` (0-d for one example) and ``loss = mean(-output)``. Each
    tail runs only on the rows whose targets fall in its cluster (read on the host, as PyTorch
    does). ``backward(grad_loss=None, grad_output=None)`` adds the parameter gradients and returns
    ``dL/dinput`` for ``L = grad_loss * loss + sum(grad_output * output)`` (``grad_loss``
    defaults to 1): with ``g_n = grad_output_n - grad_loss / N``, the head logits get
    ``g_n (onehot(head target) - softmax(head))`` and the tail logits
    ``g_n (onehot(c - c_i) - softmax(tail_i))``.

    :meth:`log_prob` gives the ``(N, n_classes)`` log-probabilities and :meth:`predict` the most
    likely class; both are forward only and leave the cached forward pass alone.

    Parameters are named as PyTorch's (``head.weight``, ``head.bias``, ``tail.0.0.weight``,
    ``tail.0.1.weight``, ...) and are nnx Linear matrices, ``(in, out)``: the transposes of
    PyTorch's. 16-bit parameters compute the log-softmaxes and the loss in float32.

    Args: ``in_features``, ``n_classes``, ``cutoffs``, ``div_value`` (4.0), ``head_bias``
    (False) as PyTorch; ``rng``, ``dtype``, ``device`` as :class:`~nnx.Linear` (initial weights
    are nnx Linear's Glorot-uniform, not PyTorch's). Every tail's hidden size must be at least 1
    (PyTorch allows an empty one, which makes that cluster uniform).
    """

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        cutoffs: Any,
        div_value: float = 4.0,
        head_bias: bool = False,
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        self.in_features = positive_int(in_features, "in_features", _WHO)
        self.n_classes = positive_int(n_classes, "n_classes", _WHO)
        cut = _check_cutoffs(cutoffs, self.n_classes)
        if (
            isinstance(div_value, bool)
            or not isinstance(div_value, numbers.Real)
            or not math.isfinite(div_value)
            or div_value <= 0
        ):
            raise ValueError(f"{_WHO}: div_value must be a finite number > 0, got {div_value!r}")
        self.div_value = float(div_value)
        self.head_bias = bool(head_bias)
        self.cutoffs = [*cut, self.n_classes]
        self.shortlist_size = self.cutoffs[0]
        self.n_clusters = len(self.cutoffs) - 1
        self.head_size = self.shortlist_size + self.n_clusters
        host_rng = as_rng(rng)
        kw: dict[str, Any] = {"rng": host_rng, "dtype": dtype, "device": device}
        self.head = Linear(self.in_features, self.head_size, bias=self.head_bias, **kw)
        tails = []
        for i in range(self.n_clusters):
            hsz = int(self.in_features // (self.div_value ** (i + 1)))
            if hsz < 1:
                raise ValueError(
                    f"{_WHO}: cluster {i} would have a hidden size of in_features // "
                    f"div_value^{i + 1} = {hsz}; use a larger in_features or a smaller div_value"
                )
            osz = self.cutoffs[i + 1] - self.cutoffs[i]
            tails.append(
                Sequential(
                    Linear(self.in_features, hsz, bias=False, **kw),
                    Linear(hsz, osz, bias=False, **kw),
                )
            )
        self.tail = Sequential(*tails)  # a holder named like PyTorch's ModuleList, never chained
        self._cache: Any = None

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, n_classes={self.n_classes}, "
            f"cutoffs={self.cutoffs[:-1]}, div_value={self.div_value}, head_bias={self.head_bias}"
        )

    def _targets(self, xp: Any, input: Any, target: Any) -> tuple[Any, Any, bool]:
        check_floating(xp, input, _WHO)
        if not hasattr(target, "ndim") or not xp.isdtype(target.dtype, "integral"):
            raise TypeError(f"{_WHO}: target must be an integer array, got {target!r:.80}")
        if target.ndim == 1:
            if input.ndim != 2 or input.shape[0] != target.shape[0]:
                raise ValueError(
                    f"{_WHO}: a target of shape {tuple(target.shape)} takes input of shape "
                    f"({target.shape[0]}, {self.in_features}), got {tuple(input.shape)}"
                )
            return input, target, True
        if target.ndim == 0:
            if input.ndim != 1:
                raise ValueError(
                    f"{_WHO}: a 0-d target takes input of shape ({self.in_features},), got "
                    f"{tuple(input.shape)}"
                )
            return xp.expand_dims(input, axis=0), xp.reshape(target, (1,)), False
        raise ValueError(f"{_WHO}: target must be 0-d or 1-D, got shape {tuple(target.shape)}")

    def forward(self, input: Any, target: Any) -> ASMOutput:
        xp = namespace(input)
        x, t, batched = self._targets(xp, input, target)
        host = [int(v) for v in to_numpy(t).reshape(-1).tolist()]
        n, dev = len(host), device(x)
        if n == 0:
            raise ValueError(f"{_WHO}: empty batch")
        if min(host) < 0 or max(host) >= self.n_classes:
            raise ValueError(
                f"{_WHO}: target values must be in [0, {self.n_classes - 1}], got values in "
                f"[{min(host)}, {max(host)}]"
            )
        sl = self.shortlist_size
        cluster = [bisect.bisect_right(self.cutoffs, v) - 1 for v in host]  # -1: shortlist
        gather = xp.asarray([v if k < 0 else sl + k for v, k in zip(host, cluster, strict=True)],
                            dtype=xp.int64, device=dev)  # fmt: skip
        head_lp = _log_softmax(xp, widened(xp, self.head(x)))
        output = xp.take_along_axis(head_lp, gather[:, None], axis=1)[:, 0]
        pieces = [xp.zeros((1,), dtype=head_lp.dtype, device=dev)]
        position = [0] * n  # where each row's tail term sits in concat(pieces)
        clusters = []
        for i in range(self.n_clusters):
            rows = [r for r in range(n) if cluster[r] == i]
            if not rows:
                continue
            rows_a = xp.asarray(rows, dtype=xp.int64, device=dev)
            rel = xp.asarray([host[r] - self.cutoffs[i] for r in rows], dtype=xp.int64, device=dev)
            tail_lp = _log_softmax(xp, widened(xp, self.tail[i](xp.take(x, rows_a, axis=0))))
            pieces.append(xp.take_along_axis(tail_lp, rel[:, None], axis=1)[:, 0])
            start = sum(p.shape[0] for p in pieces[:-1])
            for j, r in enumerate(rows):
                position[r] = start + j
            clusters.append((i, rows_a, rel, tail_lp))
        pos = xp.asarray(position, dtype=xp.int64, device=dev)
        output = output + xp.take(xp.concat(pieces), pos, axis=0)
        loss = -xp.mean(output)
        self._cache = (x, gather, head_lp, pos, clusters, batched)
        narrow = x.dtype

        def back(a: Any) -> Any:
            return a if a.dtype == narrow else xp.astype(a, narrow)

        return ASMOutput(back(output if batched else xp.reshape(output, ())), back(loss))

    def backward(
        self, grad_loss: Any = None, grad_output: Any = None, need_input_grad: bool = True
    ) -> Any:
        """Parameter gradients into ``.grad``; returns ``dL/dinput`` (None when
        ``need_input_grad`` is False) for ``L = grad_loss * loss + sum(grad_output * output)``."""
        x, gather, head_lp, pos, clusters, batched = require_forward(self._cache, _WHO)
        xp = namespace(head_lp)
        n, wide = head_lp.shape[0], head_lp.dtype
        scale = 1.0 if grad_loss is None else grad_loss
        g = xp.full((n,), -1.0 / n, dtype=wide, device=device(head_lp)) * scale
        if grad_output is not None:
            expected = (n,) if batched else ()
            if tuple(getattr(grad_output, "shape", ())) != expected:
                raise ValueError(
                    f"{_WHO}.backward: grad_output has shape "
                    f"{tuple(getattr(grad_output, 'shape', ()))}, the output had {expected}"
                )
            g = g + xp.reshape(widened(xp, grad_output), (n,))

        def narrow(a: Any) -> Any:
            return a if a.dtype == x.dtype else xp.astype(a, x.dtype)

        d_head = g[:, None] * (_onehot(xp, gather, self.head_size, wide) - xp.exp(head_lp))
        dx = self.head.backward(narrow(d_head), need_input_grad=need_input_grad)
        d_rows = [xp.zeros((1, self.in_features), dtype=x.dtype, device=device(x))]
        for i, rows_a, rel, tail_lp in clusters:
            g_rows = xp.take(g, rows_a, axis=0)
            size = tail_lp.shape[1]
            d_tail = g_rows[:, None] * (_onehot(xp, rel, size, wide) - xp.exp(tail_lp))
            d_rows.append(self.tail[i].backward(narrow(d_tail), need_input_grad=need_input_grad))
        if not need_input_grad:
            return None
        dx = dx + xp.take(xp.concat(d_rows, axis=0), pos, axis=0)
        return dx if batched else xp.reshape(dx, (self.in_features,))

    # ------------------------------------------------------------------ forward-only helpers
    def _full_log_prob(self, xp: Any, x: Any, head_lp: Any) -> Any:
        sl = self.shortlist_size
        parts = [head_lp[:, :sl]]
        for i in range(self.n_clusters):
            first, second = self.tail[i]
            hidden = (x @ first.weight.value) @ second.weight.value
            parts.append(_log_softmax(xp, widened(xp, hidden)) + head_lp[:, sl + i : sl + i + 1])
        return xp.concat(parts, axis=1)

    def _head(self, input: Any) -> tuple[Any, Any]:
        xp = namespace(input)
        check_floating(xp, input, _WHO)
        if input.ndim != 2 or input.shape[1] != self.in_features:
            raise ValueError(
                f"{_WHO}: expected input of shape (N, {self.in_features}), got {tuple(input.shape)}"
            )
        logits = input @ self.head.weight.value
        if self.head.bias is not None:
            logits = logits + self.head.bias.value
        return xp, widened(xp, logits)

    def log_prob(self, input: Any) -> Any:
        """Log-probabilities of every class, ``(N, n_classes)``, for input ``(N, in_features)``."""
        xp, logits = self._head(input)
        out = self._full_log_prob(xp, input, _log_softmax(xp, logits))
        return out if out.dtype == input.dtype else xp.astype(out, input.dtype)

    def predict(self, input: Any) -> Any:
        """The most likely class of each row, ``(N,)``: the head's choice when it is a shortlist
        class (no tail is larger then), else the argmax of :meth:`log_prob`."""
        xp, logits = self._head(input)
        head_choice = xp.argmax(logits, axis=1)
        if bool(xp.all(head_choice < self.shortlist_size)):
            return head_choice
        full = self._full_log_prob(xp, input, _log_softmax(xp, logits))
        return xp.where(head_choice < self.shortlist_size, head_choice, xp.argmax(full, axis=1))
