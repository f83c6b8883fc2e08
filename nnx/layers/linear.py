"""Fully connected layer: ``y = x @ W + b``."""

from __future__ import annotations

from typing import Any

from ..backend import Backend, get_backend, is_writeable, namespace
from ..checks import (
    check_floating,
    check_grad,
    check_same_device,
    check_same_dtype,
    positive_int,
    require_forward,
)
from ..init import Initializer, Seed, as_rng, get_initializer
from ..module import Module, Parameter


class Linear(Module):
    """Affine map ``y = x @ W + b`` over the last axis.

    Backward: ``dW = x^T g``, ``db = sum(g)`` over all leading axes, ``dx = g @ W^T``.

    Args:
        in_features, out_features: sizes of the last axis of input and output.
        bias: learn an additive bias ``b`` (default True).
        init, bias_init: initializer names from :mod:`nnx.init` (or callables ``(shape, rng)``).
        rng: seed or ``numpy.random.Generator`` for the initial values (drawn on the host).
        dtype: parameter dtype, ``"float32"`` (default) or ``"float64"``.
        device: backend spec or :class:`nnx.Backend` to create the parameters on (default CPU).

    Shapes: input ``(..., in_features)``; output ``(..., out_features)``;
    ``weight`` is ``(in_features, out_features)`` and ``bias`` is ``(out_features,)``.

    >>> import numpy as np, nnx
    >>> layer = nnx.Linear(3, 2, rng=0)
    >>> layer(np.ones((5, 3), dtype=np.float32)).shape
    (5, 2)
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init: str | Initializer = "glorot_uniform",
        bias_init: str | Initializer = "zeros",
        rng: Seed = None,
        dtype: Any = "float32",
        device: str | Backend = "cpu",
    ):
        self.in_features = positive_int(in_features, "in_features", "Linear")
        self.out_features = positive_int(out_features, "out_features", "Linear")
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
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    def _who(self) -> str:
        return f"Linear({self.in_features}, {self.out_features})"

    def forward(self, x: Any) -> Any:
        w = self.weight.value
        xp = namespace(x)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"{self._who()}: expected input of shape (..., {self.in_features}), "
                f"got shape {tuple(x.shape)}"
            )
        check_floating(xp, x, self._who())
        check_same_dtype(x, w, self._who())
        check_same_device(x, w, self._who())
        y = x @ w
        if self.bias is not None:
            if is_writeable(y):
                y += self.bias.value  # y is a fresh matmul result: adding in place saves a copy
            else:
                y = y + self.bias.value
        self._x = x
        return y

    def backward(self, grad_out: Any) -> Any:
        x = require_forward(self._x, self._who())
        check_grad(grad_out, (*x.shape[:-1], self.out_features), self._who())
        xp = namespace(x)
        if x.ndim == 2:
            x2, g2 = x, grad_out
        else:  # fold every leading axis into one batch axis
            x2 = xp.reshape(x, (-1, self.in_features))
            g2 = xp.reshape(grad_out, (-1, self.out_features))
        self.weight.grad = x2.T @ g2
        if self.bias is not None:
            self.bias.grad = xp.sum(g2, axis=0)
        return grad_out @ self.weight.value.T
