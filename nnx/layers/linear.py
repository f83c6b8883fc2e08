"""Fully connected layer: ``y = x @ W + b``."""

from __future__ import annotations

from typing import Any

from ..backend import Backend, get_backend, is_writeable, namespace
from ..core.checks import (
    check_floating,
    check_grad,
    check_same_device,
    check_same_dtype,
    non_negative,
    positive_int,
    require_forward,
)
from ..core.init import Initializer, Seed, as_rng, get_initializer
from ..core.lazy import lazy_input
from ..core.module import Module, Parameter


@lazy_input("in_features", axis=-1)
class Linear(Module):
    """Affine map ``y = x @ W + b`` over the last axis.

    Backward: ``dW = x^T g``, ``db = sum(g)`` over all leading axes, ``dx = g @ W^T``.

    Args:
        in_features, out_features: sizes of the last axis of input and output; ``in_features``
            None reads it from the first input (docs/layers.md, "Lazy shapes").
        bias: learn an additive bias ``b`` (default True).
        init, bias_init: initializer names from :mod:`nnx.init` (or callables ``(shape, rng)``).
        rng: seed or ``numpy.random.Generator`` for the initial values (drawn on the host).
        dtype: parameter dtype, ``"float32"`` (default) or ``"float64"``.
        device: backend spec or :class:`nnx.Backend` to create the parameters on (default CPU).
        weight_l1, weight_l2, bias_l1, bias_l2: penalty strengths. The penalty
            ``l1 * sum|W| + l2 * sum W^2`` (likewise for ``b``) is returned by :meth:`penalty`
            and its gradient ``l1 * sign(W) + 2 * l2 * W`` is added to ``weight.grad`` by
            ``backward``.

    Shapes: input ``(..., in_features)``; output ``(..., out_features)``;
    ``weight`` is ``(in_features, out_features)`` and ``bias`` is ``(out_features,)``.

    >>> import numpy as np, nnx
    >>> layer = nnx.Linear(3, 2, rng=0)
    >>> layer(np.ones((5, 3), dtype=np.float32)).shape
    (5, 2)
    """

    # backward's dL/dx is a new matmul result (or a reshape of one) that nothing else holds:
    # Sequential lets the layer below compute its own dL/dx in it (core.calls.backward_declares)
    fresh_input_grad = True

    def __init__(
        self,
        in_features: int | None,
        out_features: int,
        bias: bool = True,
        init: str | Initializer = "glorot_uniform",
        bias_init: str | Initializer = "zeros",
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
        weight_l1: float = 0.0,
        weight_l2: float = 0.0,
        bias_l1: float = 0.0,
        bias_l2: float = 0.0,
    ):
        self.in_features = positive_int(in_features, "in_features", "Linear")
        self.out_features = positive_int(out_features, "out_features", "Linear")
        self.weight_l1 = non_negative(weight_l1, "weight_l1", "Linear")
        self.weight_l2 = non_negative(weight_l2, "weight_l2", "Linear")
        self.bias_l1 = non_negative(bias_l1, "bias_l1", "Linear")
        self.bias_l2 = non_negative(bias_l2, "bias_l2", "Linear")
        backend = get_backend(device)
        host_rng = as_rng(rng)
        shape = (self.in_features, self.out_features)
        w = get_initializer(init)(shape, host_rng)
        self.weight = Parameter(backend.asarray(w, dtype=dtype), "weight")
        if bias:
            b = get_initializer(bias_init)((self.out_features,), host_rng)
            self.bias = Parameter(backend.asarray(b, dtype=dtype), "bias")
        else:
            self.bias = None
        self._x = None

    def extra_repr(self) -> str:
        text = f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        for name in ("weight_l1", "weight_l2", "bias_l1", "bias_l2"):
            if getattr(self, name):
                text += f", {name}={getattr(self, name)}"
        return text

    def _terms(self):
        yield self.weight, self.weight_l1, self.weight_l2
        if self.bias is not None:
            yield self.bias, self.bias_l1, self.bias_l2

    def penalty(self) -> Any:
        """``l1 * sum|W| + l2 * sum W^2`` plus the same for ``b``; None without penalties."""
        terms = []
        for p, l1, l2 in self._terms():
            xp = namespace(p.value)
            if l1:
                terms.append(l1 * xp.sum(xp.abs(p.value)))
            if l2:
                terms.append(l2 * xp.sum(p.value * p.value))
        return sum(terms[1:], terms[0]) if terms else None

    def _who(self) -> str:
        # built once: the checks run on every call and only need the text when they fail
        who = self.__dict__.get("_who_text")
        if who is None:
            who = self._who_text = f"Linear({self.in_features}, {self.out_features})"
        return who

    def forward(self, x: Any) -> Any:
        w = self.weight.value
        xp = namespace(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"{self._who()}: expected input of shape (..., {self.in_features}), "
                f"got shape {tuple(x.shape)}"
            )
        who = self._who()
        check_floating(xp, x, who)
        if type(x) is not type(w) or x.dtype != w.dtype:  # types first: no cross-library ==
            check_same_dtype(x, w, who)
        check_same_device(x, w, who)
        if x.ndim == 2:
            y = x @ w
        else:  # one 2-D matmul: NumPy's stacked (3-D @ 2-D) matmul is far slower on a busy CPU
            y = xp.reshape(xp.reshape(x, (-1, self.in_features)) @ w, (*x.shape[:-1], w.shape[1]))
        if self.bias is not None:
            if is_writeable(y):
                y += self.bias.value  # y is a fresh matmul result: adding in place saves a copy
            else:
                y = y + self.bias.value
        self._x = x
        return y

    def backward(self, grad_out: Any, need_input_grad: bool = True) -> Any:
        """Parameter gradients into ``.grad``; returns ``dL/dx``, or None when
        ``need_input_grad`` is False (the first layer of a network: saves a whole matmul)."""
        x = self._x
        if x is None:
            require_forward(x, self._who())
        check_grad(grad_out, (*x.shape[:-1], self.out_features), self._who())
        xp = namespace(x)
        if x.ndim == 2:
            x2, g2 = x, grad_out
        else:  # fold every leading axis into one batch axis
            x2 = xp.reshape(x, (-1, self.in_features))
            g2 = xp.reshape(grad_out, (-1, self.out_features))
        bias = self.bias
        if not (self.weight_l1 or self.weight_l2 or self.bias_l1 or self.bias_l2):
            # no penalty (the usual case): the same gradients without the loop over _terms
            self.weight.accumulate(x2.T @ g2)
            if bias is not None:
                bias.accumulate(xp.sum(g2, axis=0))
            if not need_input_grad:
                return None
            grad_in = g2 @ self.weight.value.T
            return grad_in if x.ndim == 2 else xp.reshape(grad_in, x.shape)
        grads = [x2.T @ g2]
        if bias is not None:
            grads.append(xp.sum(g2, axis=0))
        for g, (p, l1, l2) in zip(grads, self._terms(), strict=True):
            if l1:  # d(l1 * sum|p|)/dp = l1 * sign(p)
                g = g + l1 * xp.sign(p.value)
            if l2:  # d(l2 * sum p^2)/dp = 2 * l2 * p
                g = g + (2.0 * l2) * p.value
            p.accumulate(g)
        if not need_input_grad:
            return None
        return xp.reshape(g2 @ self.weight.value.T, x.shape)
